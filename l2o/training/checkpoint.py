"""Training checkpoints: atomic writes, safe loads, and the RNG states that make resume exact.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` reads (tensors, numbers,
strings, lists, dicts: loading never unpickles code):

    format        "l2o.train-checkpoint";  version: 1
    epoch         epochs completed
    model         the model's state_dict;  model_class: "module.Class";  model_config: dict
                  (the model's ``config`` attribute, enough to rebuild it) or None
    optimizer     the optimizer's state_dict
    rng           {"torch": ByteTensor, "cuda": [ByteTensor, ...], "python": [...],
                   "numpy": {...}}: the generators' states after ``epoch`` epochs
    config        the training settings (lr, batch size, seed, loss, ...)
    history       one dict of metrics per completed epoch
    best          {"epoch", "val_loss"} of the best epoch so far
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "l2o.train-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("epoch", "model", "optimizer", "rng", "config", "history", "best")


class CheckpointError(ValueError):
    """A checkpoint file that is corrupted, foreign, or does not fit the model."""


def rng_state() -> dict[str, Any]:
    """The states of torch's CPU and CUDA generators, Python's ``random`` and numpy's global
    generator, as plain tensors / numbers / lists. CUDA's are saved once CUDA is in use: a CPU
    run on a GPU machine creates no CUDA context for them (nor fails in a forked child)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "python": [int(version), [int(v) for v in internal], gauss_next],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``checkpoint`` (format and version added) atomically: temporary file + rename, so
    a run killed while writing leaves the previous checkpoint intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION} | checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): a truncated/corrupted file, a pickle holding code or
            foreign objects, or a file that is not an l2o training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, refused (code-carrying) pickle, not a torch file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: not a readable l2o checkpoint (corrupted or foreign "
                              f"file: {type(exc).__name__}: {first})") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an l2o training checkpoint (no "
                              f"format={CHECKPOINT_FORMAT!r}); it was written by something else")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {checkpoint.get('version')!r}, this "
                              f"l2o reads version {CHECKPOINT_VERSION}")
    missing = [key for key in _REQUIRED if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: corrupted checkpoint (missing {', '.join(missing)})")
    return checkpoint
