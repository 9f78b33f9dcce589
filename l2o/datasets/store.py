"""On-disk labelled LP datasets: the record format and ``LPDataset``.

A dataset directory (written by :func:`l2o.datasets.build.build_dataset`) holds::

    DIR/manifest.json       how it was built: family, options, seeds, count, tolerance, versions,
                            the instances left out (solve not OPTIMAL) and whether it is complete
    DIR/lp_000000.pt        one record per instance i (generator seed = seed + i)
    DIR/lp_000001.pt
    ...

A record is a plain dict of tensors, ints, floats and strings, so it loads with
``torch.load(weights_only=True)`` (loading never unpickles code):

====================  ======================================================================
key                   value
====================  ======================================================================
``format``            ``"l2o.lp-record"``;  ``version``: 1
``index``, ``seed``   instance number and its generator seed; ``family``, ``name`` (strings)
``sense``, ``c0``     "minimize" / "maximize" and the objective constant (own sense)
``c``                 (n,) float64 objective (own sense)
``A_crow``            (m + 1,) int64, ``A_col`` (nnz,) int64, ``A_values`` (nnz,) float64,
                      ``shape`` [m, n]: the constraint matrix in CSR form
``row_lower/upper``   (m,) float64, ``col_lower/upper`` (n,) float64 (+-inf kept)
``row_names``         list of m strings or None; ``col_names`` likewise (optional)
``x_star``, ``y_star``  (n,), (m,) float64 labels: the optimal primal and the row duals of the
                      minimization form (the sign convention of :class:`l2o.LPResult`)
``status``            "optimal" (only OPTIMAL solves are stored)
``iterations``        PDHG iterations of the labelling solve; ``objective`` its objective
                      (own sense, with c0); ``solve_time`` seconds; ``kkt`` relative errors
``a_norm``            the estimate of ||A||_2 that :func:`l2o.net.lp_to_graph` computes (and
                      ``a_norm_scaled`` that of its preconditioned graph),
                      stored so that loading a graph skips the power iteration
====================  ======================================================================

``LPDataset(DIR)[i]`` turns record i into the bipartite graph of :func:`l2o.net.lp_to_graph`
with the labels attached as ``graph["var"].x_star`` and ``graph["con"].y_star`` (PyG batching
concatenates them per node type, like every node attribute).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from bilevel.persist import atomic_save, atomic_write, safe_load

__all__ = [
    "DATASET_FORMAT",
    "MANIFEST",
    "RECORD_FORMAT",
    "LPDataset",
    "add_labels",
    "load_record",
    "lp_to_record",
    "read_manifest",
    "record_path",
    "record_to_lp",
    "save_record",
    "unlabelled_record",
]

RECORD_FORMAT = "l2o.lp-record"
DATASET_FORMAT = "l2o.lp-dataset"
VERSION = 1
MANIFEST = "manifest.json"

_VECTORS_N = ("c", "col_lower", "col_upper", "x_star")
_VECTORS_M = ("row_lower", "row_upper", "y_star")


def record_path(root: str | os.PathLike, index: int) -> Path:
    """Path of instance ``index``'s record in dataset directory ``root``."""
    return Path(root) / f"lp_{index:06d}.pt"


# ---- records ------------------------------------------------------------------------------------

def lp_to_record(lp, *, index: int, seed: int, family: str, x_star: torch.Tensor,
                 y_star: torch.Tensor, status: str, iterations: int, objective: float,
                 solve_time: float = float("nan"), kkt: dict[str, float] | None = None,
                 a_norm: float = float("nan"), a_norm_scaled: float = float("nan"),
                 keep_names: bool = False) -> dict[str, Any]:
    """The plain-dict record of one labelled LP (see the module docstring for every key):
    :func:`unlabelled_record` with :func:`add_labels`.

    Args:
        lp: the :class:`l2o.LinearProgram`.
        index, seed, family: where it comes from (instance ``index`` of ``family``, ``seed``).
        x_star, y_star: labels, shapes (n,), (m,).
        status, iterations, objective, solve_time, kkt: of the labelling solve.
        a_norm, a_norm_scaled: ||A||_2 estimates to store (nan: :class:`LPDataset` computes
            them on load).
        keep_names: store the row and column names (off by default: generated names cost space).
    """
    record = unlabelled_record(lp, index=index, seed=seed, family=family, a_norm=a_norm,
                               a_norm_scaled=a_norm_scaled, keep_names=keep_names)
    return add_labels(record, x_star=x_star, y_star=y_star, status=status, iterations=iterations,
                      objective=objective, solve_time=solve_time, kkt=kkt)


def _f64(value) -> torch.Tensor:
    return torch.as_tensor(value).detach().to("cpu", torch.float64).reshape(-1).clone()


def unlabelled_record(lp, *, index: int, seed: int, family: str, a_norm: float = float("nan"),
                      a_norm_scaled: float = float("nan"),
                      keep_names: bool = False) -> dict[str, Any]:
    """The LP part of a record (every key but the labels and their solve's; those come with
    :func:`add_labels`).  :func:`record_to_lp` gives the LP back exactly, so a build solves
    the LP it stores.  Arguments as for :func:`lp_to_record`."""
    A = lp.A.to_sparse_csr().cpu()
    return {
        "format": RECORD_FORMAT, "version": VERSION,
        "index": int(index), "seed": int(seed), "family": str(family), "name": str(lp.name),
        "sense": str(lp.sense), "c0": float(lp.c0), "c": _f64(lp.c),
        "A_crow": A.crow_indices().to(torch.int64).clone(),
        "A_col": A.col_indices().to(torch.int64).clone(),
        "A_values": _f64(A.values()), "shape": [int(A.shape[0]), int(A.shape[1])],
        "row_lower": _f64(lp.row_lower), "row_upper": _f64(lp.row_upper),
        "col_lower": _f64(lp.col_lower), "col_upper": _f64(lp.col_upper),
        "row_names": list(lp.row_names) if keep_names and lp.row_names is not None else None,
        "col_names": list(lp.col_names) if keep_names and lp.col_names is not None else None,
        "a_norm": float(a_norm), "a_norm_scaled": float(a_norm_scaled),
    }


def add_labels(record: dict[str, Any], *, x_star: torch.Tensor, y_star: torch.Tensor,
               status: str, iterations: int, objective: float,
               solve_time: float = float("nan"),
               kkt: dict[str, float] | None = None) -> dict[str, Any]:
    """``record`` (from :func:`unlabelled_record`) with the labels x* (n,), y* (m,) and their
    solve's status, iterations, objective, seconds and KKT errors (a new dict)."""
    return record | {
        "x_star": _f64(x_star), "y_star": _f64(y_star),
        "status": str(status), "iterations": int(iterations), "objective": float(objective),
        "solve_time": float(solve_time),
        "kkt": {str(k): float(v) for k, v in (kkt or {}).items()},
    }


def check_record(record: Any, path: str | os.PathLike) -> dict[str, Any]:
    """Validate a loaded record's keys, types and shapes; returns it.

    Raises:
        ValueError: naming ``path`` and what is wrong (not a record, a missing key, a shape
            that does not match ``shape``, non-finite labels).
    """
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        what = type(record).__name__ if not isinstance(record, dict) else "dict without format"
        raise ValueError(f"{path}: not an l2o LP record (holds a {what}); is this a dataset "
                         f"directory written by `l2o dataset build`?")
    if record.get("version") != VERSION:
        raise ValueError(f"{path}: LP record version {record.get('version')!r}, this l2o reads "
                         f"version {VERSION}")
    shape = record.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) for s in shape)):
        raise ValueError(f"{path}: corrupted LP record (bad 'shape' {shape!r})")
    m, n = shape
    expected = {key: n for key in _VECTORS_N} | {key: m for key in _VECTORS_M}
    expected |= {"A_crow": m + 1}
    for key, size in expected.items():
        value = record.get(key)
        if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.numel() != size:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{path}: corrupted LP record ('{key}' should have {size} entries, "
                             f"got {got})")
    crow = record["A_crow"]
    if int(crow[0]) != 0 or bool((crow.diff() < 0).any()):
        raise ValueError(f"{path}: corrupted LP record ('A_crow' is not a CSR row pointer)")
    nnz = int(crow[-1])
    for key in ("A_col", "A_values"):
        value = record.get(key)
        if not isinstance(value, torch.Tensor) or value.numel() != nnz:
            raise ValueError(f"{path}: corrupted LP record ('{key}' should have {nnz} entries)")
    if nnz and (int(record["A_col"].min()) < 0 or int(record["A_col"].max()) >= n):
        raise ValueError(f"{path}: corrupted LP record (column index out of range 0..{n - 1})")
    for key in ("x_star", "y_star"):
        if not bool(torch.isfinite(record[key]).all()):
            raise ValueError(f"{path}: LP record has non-finite labels '{key}'")
    for key, kind in (("index", int), ("seed", int), ("iterations", int), ("objective", float),
                      ("c0", float), ("sense", str), ("status", str), ("family", str)):
        if not isinstance(record.get(key), kind):  # bad file content: ValueError like the rest
            raise ValueError(  # noqa: TRY004
                f"{path}: corrupted LP record ('{key}' is not a {kind.__name__})")
    return record


def save_record(record: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``record`` atomically: a temporary file in the same directory, then a rename, so a
    killed writer leaves either the old file or the new one, never half of one."""
    atomic_save(record, path)


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate one record with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated/corrupted file, a foreign pickle, or not an LP record.
    """
    return check_record(safe_load(path, "l2o LP record"), path)


def record_to_lp(record: dict[str, Any]):
    """The :class:`l2o.LinearProgram` of a record (float64, CPU)."""
    from bilevel.linalg.operators import csr_tensor
    from l2o.lp.model import LinearProgram

    A = csr_tensor(record["A_crow"], record["A_col"], record["A_values"], tuple(record["shape"]))
    return LinearProgram(c=record["c"], A=A, row_lower=record["row_lower"],
                         row_upper=record["row_upper"], col_lower=record["col_lower"],
                         col_upper=record["col_upper"], c0=record["c0"], sense=record["sense"],
                         row_names=record.get("row_names"), col_names=record.get("col_names"),
                         name=record.get("name", ""),
                         metadata={"family": record["family"], "seed": record["seed"]})


# ---- manifest -------------------------------------------------------------------------------------

def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a dataset directory.

    Raises:
        FileNotFoundError: ``root`` or its manifest is missing.
        ValueError: the manifest is not valid JSON or not an l2o LP dataset manifest.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset directory")
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root}: no {MANIFEST} (not an LP dataset; build one with "
                                f"`l2o dataset build` or l2o.datasets.build.build_dataset)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupted manifest (not valid JSON: {exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != DATASET_FORMAT:
        raise ValueError(f"{path}: not an l2o LP dataset manifest")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: dataset version {manifest.get('version')!r}, this l2o reads "
                         f"version {VERSION}")
    return manifest


def write_manifest(root: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically."""
    text = (json.dumps(manifest, indent=2) + "\n").encode()
    atomic_write(Path(root) / MANIFEST, lambda handle: handle.write(text))


# ---- the dataset ------------------------------------------------------------------------------

class LPDataset(Dataset):
    """The labelled LPs of a dataset directory, as PyG graphs.

    ``dataset[i]`` is ``l2o.net.lp_to_graph(lp, scaling=scaling)`` (a ``HeteroData``; float
    features in ``dtype``) with the labels attached as ``graph["var"].x_star`` (n,) and
    ``graph["con"].y_star`` (m,), in the graph's coordinates (divided by the per-node ``scale``
    of a preconditioned graph, like everything else in it; ``l2o.net.unscale_solution`` maps
    back), and
    graph-level ``objective`` (1,) and ``instance`` (1,) (the instance number; not ``index``,
    which PyG would shift when batching). A ``torch_geometric.loader.DataLoader`` batches them.
    The i-th item is the i-th stored instance in instance order (left-out instances are skipped).

    Args:
        root: the dataset directory.
        transform: optional callable applied to each graph on access.
        dtype: float dtype of the graph's features, vectors, edge values and labels.
        reverse: also store the reversed edge type (see :func:`l2o.net.lp_to_graph`).
        scaling: graphs of the solver's preconditioned LP (``lp_to_graph(scaling=True)``, what
            ``PDHGNet(scaling=True)`` trains on); must match the model's ``scaling``.
        cache: keep each graph in memory after its first load (every later epoch skips the
            file read and the graph construction; memory grows with the dataset; with
            DataLoader workers each worker holds its own cache).
        partial: accept a directory whose build has not finished (only stored instances are seen).

    Raises:
        FileNotFoundError: missing directory or manifest.
        ValueError: corrupted manifest, an unfinished build (unless ``partial``); on access, a
            corrupted or foreign record file (the message names the file).
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None, *,
                 dtype: torch.dtype = torch.float32, reverse: bool = False,
                 scaling: bool = False, cache: bool = False, partial: bool = False) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.cache: dict[int, Any] | None = {} if cache else None
        self.transform, self.dtype, self.reverse, self.scaling = transform, dtype, reverse, scaling
        excluded = {int(e["index"]) for e in self.manifest.get("excluded", [])}
        count = int(self.manifest["count"])
        self.indices = [i for i in range(count)
                        if i not in excluded and record_path(self.root, i).is_file()]
        if not self.manifest.get("complete", False) and not partial:
            raise ValueError(f"{self.root}: the build has not finished ({len(self.indices)} of "
                             f"{count - len(excluded)} instances stored); run the same "
                             f"`l2o dataset build` again to resume, or pass partial=True")

    @property
    def family(self) -> str:
        return self.manifest["family"]

    def __len__(self) -> int:
        return len(self.indices)

    def record(self, i: int) -> dict[str, Any]:
        """The validated stored record of item ``i`` (plain dict; see the module docstring)."""
        return load_record(record_path(self.root, self.indices[self._position(i)]))

    def load_lp(self, i: int):
        """The :class:`l2o.LinearProgram` of item ``i``."""
        return record_to_lp(self.record(i))

    def labels(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x*, y*) of item ``i``, float64, shapes (n,), (m,)."""
        record = self.record(i)
        return record["x_star"], record["y_star"]

    def __getitem__(self, i: int):
        position = self._position(i)
        if self.cache is not None and position in self.cache:
            graph = self.cache[position]
        else:
            graph = self._graph(position)
            if self.cache is not None:
                self.cache[position] = graph
        # PyG batching copies the graph, so the cached one is never modified by training
        return self.transform(graph.clone()) if self.transform is not None else graph

    def _graph(self, i: int):
        from l2o.net.graph import CON, VAR, lp_to_graph

        record = self.record(i)
        lp = record_to_lp(record)
        cached = record.get("a_norm_scaled" if self.scaling else "a_norm", math.nan)
        have_norm = isinstance(cached, float) and math.isfinite(cached)
        # labels go through lp_to_graph, which scales them along with the LP
        graph = lp_to_graph(lp, record["x_star"], record["y_star"], dtype=self.dtype,
                            reverse=self.reverse, scaling=self.scaling,
                            operator_norm=not have_norm)
        if have_norm:  # the value lp_to_graph computed at build time (same power iteration)
            graph.a_norm = torch.tensor([cached], dtype=self.dtype)
        graph[VAR].x_star = graph[VAR].solution
        graph[CON].y_star = graph[CON].solution
        del graph[VAR].solution, graph[CON].solution
        graph.objective = torch.tensor([record["objective"]], dtype=torch.float64)
        graph.instance = torch.tensor([record["index"]])
        return graph

    def _position(self, i: int) -> int:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"LPDataset index {i} out of range ({len(self)} instances)")
        return i % len(self)

    def __repr__(self) -> str:
        return f"LPDataset({str(self.root)!r}, family={self.family!r}, instances={len(self)})"
