"""The small datasets the bundled tasks use, read from copies shipped in ``bilevel/data``.

* ijcnn1 (LIBSVM; Prokhorov 2001): 22 features, labels in {-1, +1}, svmlight format, bz2.
  ``ijcnn1.trn`` has 49,990 rows (split here into train / validation), ``ijcnn1.tst``
  91,701 rows (the test set).
* MNIST test set (LeCun et al.): 10,000 images of 28 x 28 pixels, original idx files, gzip.

Everything is returned as ``torch`` tensors on the CPU (float32 features, int64 labels);
move them to a device yourself.
"""

from __future__ import annotations

import bz2
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["DATA_DIR", "Split", "load_ijcnn1", "load_mnist", "read_svmlight"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass
class Split:
    """Train / validation / test arrays of one dataset (tensors on the CPU).

    ``info`` holds dataset-specific extras, e.g. the indices of the corrupted labels.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    info: dict


def _open_text(path: Path):
    if path.suffix == ".bz2":
        return bz2.open(path, "rt")
    if path.suffix == ".gz":
        return gzip.open(path, "rt")
    return open(path)


def read_svmlight(path: str | Path, n_features: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Read a svmlight/LIBSVM file (``label idx:value idx:value ...``, 1-based indices).

    Args:
        path: file, plain or compressed (``.bz2``, ``.gz``).
        n_features: number of columns; default the largest index seen.

    Returns:
        (X, y): dense float64 array of shape (n, n_features) and float64 labels of shape (n,).

    Raises:
        ValueError: a malformed line (named with its line number), an index < 1 or above
            ``n_features``, or a non-finite value.
    """
    path = Path(path)
    with _open_text(path) as fh:
        text = fh.read()
    numbered = [(k, line.split("#", 1)[0].strip()) for k, line in enumerate(text.splitlines(), 1)]
    numbered = [(k, line) for k, line in numbered if line]
    try:  # fast path: one numpy parse of all "index value" pairs
        heads, tails = zip(*(line.partition(" ")[::2] for _, line in numbered)) if numbered \
            else ((), ())
        labels = np.asarray(heads, dtype=np.float64)
        counts = np.asarray([tail.count(":") for tail in tails], dtype=np.int64)
        pairs = np.asarray(" ".join(tails).replace(":", " ").split(), dtype=np.float64)
        if pairs.size != 2 * counts.sum():
            raise ValueError("token count")
        pairs = pairs.reshape(-1, 2)
        if not np.array_equal(pairs[:, 0], np.round(pairs[:, 0])):
            raise ValueError("non-integer index")
    except ValueError:  # slow path, only to name the first bad line
        for lineno, line in numbered:
            parts = line.split()
            try:
                float(parts[0])
                for item in parts[1:]:
                    idx, val = item.split(":")
                    int(idx), float(val)
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: malformed svmlight line ({err})") from None
        raise ValueError(f"{path}: malformed svmlight data") from None
    if labels.size == 0:
        raise ValueError(f"{path}: no data rows")
    rows = np.repeat(np.arange(labels.size), counts)
    col = pairs[:, 0].astype(np.int64) - 1  # svmlight indices are 1-based
    if col.size and col.min() < 0:
        raise ValueError(f"{path}: feature index < 1 (svmlight indices are 1-based)")
    width = int(col.max()) + 1 if col.size else 0
    if n_features is None:
        n_features = width
    elif width > n_features:
        raise ValueError(f"{path}: feature index {width} exceeds n_features={n_features}")
    X = np.zeros((len(labels), n_features))
    X[rows, col] = pairs[:, 1]
    y = labels
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError(f"{path}: non-finite value in the data")
    return X, y


def load_ijcnn1(n_train: int = 35_000, seed: int = 0, data_dir: str | Path | None = None
                ) -> Split:
    """ijcnn1 split as in the bilevel issue: a seeded random split of ``ijcnn1.trn``.

    The 49,990 rows of ``ijcnn1.trn`` are permuted with ``torch.randperm`` under
    ``torch.Generator().manual_seed(seed)``; the first ``n_train`` (35,000) rows are the
    training set and the remaining 14,990 the validation set; ``ijcnn1.tst`` (91,701 rows)
    is the test set.

    Returns:
        :class:`Split` with float32 features of shape (n, 22) and float32 labels in
        {-1, +1} (about 9.7% positive).
    """
    root = Path(data_dir) if data_dir is not None else DATA_DIR / "ijcnn1"
    X, y = read_svmlight(root / "ijcnn1.trn.bz2", n_features=22)
    X_test, y_test = read_svmlight(root / "ijcnn1.tst.bz2", n_features=22)
    if not 0 < n_train < len(y):
        raise ValueError(f"n_train={n_train} must be in (0, {len(y)})")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    X, y = torch.from_numpy(X).float(), torch.from_numpy(y).float()
    tr, va = perm[:n_train], perm[n_train:]
    return Split(X[tr], y[tr], X[va], y[va], torch.from_numpy(X_test).float(),
                 torch.from_numpy(y_test).float(), info={"train_index": tr, "val_index": va})


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as fh:
        return np.frombuffer(fh.read(), np.uint8, offset=offset)


def load_mnist(n_train: int = 5000, n_val: int = 2000, corruption: float = 0.5, seed: int = 0,
               data_dir: str | Path | None = None) -> Split:
    """MNIST hyper-cleaning split, exactly that of ``shared/anchors/hypergrad_anchor.py``.

    From the 10,000 MNIST test images (pixels scaled to [0, 1], flattened to 784), with
    ``g = torch.Generator().manual_seed(seed)``:

    1. ``perm = torch.randperm(10000, generator=g)``: train = perm[:5000],
       val = perm[5000:7000], test = perm[7000:] (3000 images);
    2. ``bad = torch.randperm(5000, generator=g)[:2500]``: these training labels are
       replaced by ``(label + randint(1, 10)) % 10``, a *different* random class.

    Returns:
        :class:`Split` with float32 images (n, 784), int64 labels; ``y_train`` holds the
        noisy labels. ``info`` has ``"y_train_clean"`` (the true labels), ``"corrupted"``
        (bool mask of shape (n_train,)) and ``"bad_index"``.
    """
    root = Path(data_dir) if data_dir is not None else DATA_DIR / "mnist"
    images = _read_idx(root / "t10k-images-idx3-ubyte.gz", 16)
    labels = _read_idx(root / "t10k-labels-idx1-ubyte.gz", 8)
    if images.size != 784 * labels.size:
        raise ValueError(f"{root}: {images.size} pixels for {labels.size} labels")
    n = labels.size
    if n_train + n_val >= n or not 0 <= corruption <= 1:
        raise ValueError(f"bad split: n_train={n_train}, n_val={n_val}, corruption={corruption}")
    X = torch.tensor(images.reshape(-1, 784) / 255.0, dtype=torch.float32)
    Y = torch.tensor(labels.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    tr, va, te = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    y_noisy = Y[tr].clone()
    n_bad = int(round(corruption * n_train))
    bad = torch.randperm(n_train, generator=g)[:n_bad]
    y_noisy[bad] = (y_noisy[bad] + torch.randint(1, 10, (n_bad,), generator=g)) % 10
    corrupted = torch.zeros(n_train, dtype=torch.bool)
    corrupted[bad] = True
    return Split(X[tr], y_noisy, X[va], Y[va], X[te], Y[te],
                 info={"y_train_clean": Y[tr], "corrupted": corrupted, "bad_index": bad})
