"""On-disk datasets of LP graphs with optimal-solution labels, for training PDHG-Net.

Layout of a dataset directory DIR::

    DIR/meta.json            {"format", "family", "options", "seed", "count", "solver", "tol",
                              "dtype"}
    DIR/graph_000000.pt      one labelled graph per instance (``lp_to_graph`` with
    DIR/graph_000001.pt      ``solution`` on both node types), a plain dict of tensors written
    ...                      atomically (temporary file + rename)

Instance i is ``generate(family, seed=seed + i, **options)``, so a dataset is reproducible from
its ``meta.json``. Files hold only tensors, strings and numbers and are read with
``torch.load(weights_only=True)``: loading never unpickles code. :func:`build_dataset` skips the
instances whose file exists, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch_geometric.data import Dataset, HeteroData

from l2o.net.graph import CON, EDGE, REVERSE_EDGE, VAR, lp_to_graph

from .generators import family_options, generate

__all__ = ["LPDataset", "build_dataset", "label_lp"]

FORMAT = 1
SOLVERS = ("highs", "pdhg")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _graph_path(root: Path, index: int) -> Path:
    return root / f"graph_{index:06d}.pt"


def label_lp(lp, solver: str = "highs", tol: float = 1e-8) -> dict[str, Any]:
    """Solve ``lp`` to high accuracy for labels.

    Args:
        lp: the LP.
        solver: "highs" (HiGHS dual simplex: an optimal vertex) or "pdhg" (``l2o.solve_lp``
            to relative tolerance ``tol``, on the GPU when there is one).
        tol: HiGHS feasibility tolerance / PDHG relative KKT tolerance.

    Returns:
        dict with ``x`` (n,), ``y`` (m,) (row duals of the minimization form, the shared sign
        convention), ``objective`` (own sense, with c0) and ``solve_time``.

    Raises:
        RuntimeError: the solver did not reach OPTIMAL (the message names the LP and status).
    """
    if solver == "highs":
        from l2o.lp.reference import solve_highs
        res = solve_highs(lp, tol=tol)
        status, message = res["status"], res["message"]
        out = dict(x=res["x"], y=res["y"], objective=res["objective"],
                   solve_time=res["solve_time"])
    elif solver == "pdhg":
        from l2o.pdhg import solve_lp
        res = solve_lp(lp, tol=tol)
        status, message = res.status, res.message
        out = dict(x=res.x, y=res.y, objective=res.objective, solve_time=res.solve_time)
    else:
        raise ValueError(f"unknown label solver {solver!r}; valid: {', '.join(SOLVERS)}")
    if status.name != "OPTIMAL":
        raise RuntimeError(f"labelling {lp.name!r} with {solver}: status {status.name} "
                           f"({message})")
    return out


def build_dataset(root: str | os.PathLike, family: str, count: int, *, seed: int = 0,
                  solver: str = "highs", tol: float = 1e-8, dtype: str = "float32",
                  progress: Callable[[int, int], None] | None = None,
                  **options: Any) -> "LPDataset":
    """Generate ``count`` instances of ``family``, label them, store them under ``root``.

    Resumes an interrupted build: instances whose file exists are skipped. Building again into
    an existing directory must use the same family, options, seed, solver, tol and dtype (a
    larger ``count`` extends the dataset).

    Args:
        root: dataset directory (created if missing).
        family: an LP family of :data:`l2o.datasets.FAMILIES`.
        count: number of instances.
        seed: instance i uses generator seed ``seed + i``.
        solver, tol: how labels are computed (see :func:`label_lp`).
        dtype: "float32" (default, half the disk) or "float64" floats in the stored graphs.
        progress: called as ``progress(done, count)`` after each instance (and once at start).
        **options: the family's size options (``seed`` excluded).

    Returns:
        The :class:`LPDataset` of ``root``.

    Raises:
        ValueError: bad family/options/solver/dtype, or a directory built with other settings.
        RuntimeError: an instance could not be solved to optimality.
    """
    if "seed" in options:
        raise ValueError("build_dataset: give the base seed as seed=; instance i uses seed + i")
    if count < 1:
        raise ValueError(f"build_dataset: count must be >= 1, got {count}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown label solver {solver!r}; valid: {', '.join(SOLVERS)}")
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(_DTYPES)}")
    valid = family_options(family)                   # raises on an unknown family
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for LP family {family!r}; "
                         f"valid options: {', '.join(k for k in valid if k != 'seed')}")
    settings = dict(format=FORMAT, family=family,
                    options={k: v for k, v in valid.items() if k != "seed"} | options,
                    seed=int(seed), solver=solver, tol=float(tol), dtype=dtype)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / "meta.json"
    if meta_path.exists():
        old = _read_meta(root)
        differences = [f"{key}: {old_value!r} != {new_value!r}" for key, old_value, new_value
                       in _differences(old, settings)]
        if differences:
            raise ValueError(f"{root} holds a dataset built with other settings "
                             f"({'; '.join(differences)}); use a new directory")
        count = max(count, int(old["count"]))
    _write_json_atomic(meta_path, settings | {"count": int(count)})

    done = sum(_graph_path(root, i).exists() for i in range(count))
    if progress is not None:
        progress(done, count)
    for i in range(count):
        path = _graph_path(root, i)
        if path.exists():
            continue
        lp = generate(family, seed=int(seed) + i, **options)
        label = label_lp(lp, solver, tol)
        graph = lp_to_graph(lp, label["x"], label["y"], dtype=_DTYPES[dtype], reverse=False)
        graph.objective = torch.tensor([label["objective"]], dtype=torch.float64)
        graph.solve_time = torch.tensor([label["solve_time"]], dtype=torch.float64)
        graph.instance = torch.tensor([i])   # not 'index': PyG would shift it when batching
        _save_atomic(graph.to_dict(), path)
        done += 1
        if progress is not None:
            progress(done, count)
    return LPDataset(root)


class LPDataset(Dataset):
    """The labelled LP graphs of a directory written by :func:`build_dataset`.

    ``dataset[i]`` is a ``HeteroData`` as made by :func:`l2o.net.lp_to_graph` with
    ``graph["var"].solution`` = x*, ``graph["con"].solution`` = y*, and graph-level
    ``objective``, ``solve_time``, ``instance``; PyG's ``DataLoader`` batches them.

    Args:
        root: the dataset directory.
        reverse: add the reversed edge type ("var", "coef_t", "con") on load (not stored).
        partial: accept a dataset whose build has not finished (only complete graphs are seen).
        transform: optional PyG transform applied on access.

    Raises:
        FileNotFoundError: no ``meta.json`` under ``root``.
        ValueError: unfinished build (unless ``partial``), or a file that is not an LP graph.
    """

    def __init__(self, root: str | os.PathLike, *, reverse: bool = False, partial: bool = False,
                 transform: Callable | None = None) -> None:
        self.path = Path(root)
        self.meta = _read_meta(self.path)
        self.reverse = reverse
        count = int(self.meta["count"])
        self._indices_on_disk = [i for i in range(count) if _graph_path(self.path, i).exists()]
        if len(self._indices_on_disk) < count and not partial:
            raise ValueError(f"{self.path}: {len(self._indices_on_disk)} of {count} graphs built; "
                             f"run the build again to resume, or pass partial=True")
        super().__init__(root=None, transform=transform)

    @property
    def family(self) -> str:
        return self.meta["family"]

    def len(self) -> int:
        return len(self._indices_on_disk)

    def get(self, idx: int) -> HeteroData:
        path = _graph_path(self.path, self._indices_on_disk[idx])
        try:
            data = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # corrupted, truncated or a foreign pickle
            raise ValueError(f"{path}: not a readable LP graph file ({exc})") from exc
        _check_graph_dict(data, path)
        graph = HeteroData.from_dict(data)
        if self.reverse:
            graph[REVERSE_EDGE].edge_index = graph[EDGE].edge_index.flip(0)
            graph[REVERSE_EDGE].edge_attr = graph[EDGE].edge_attr
        return graph

    def __repr__(self) -> str:
        return f"LPDataset({str(self.path)!r}, family={self.family!r}, graphs={len(self)})"


def _differences(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for the settings that differ; options compared one by one."""
    out = []
    for key, value in new.items():
        if key == "options" and isinstance(old.get(key), dict):
            for name in sorted(set(value) | set(old[key])):
                if old[key].get(name) != value.get(name):
                    out.append((name, old[key].get(name), value.get(name)))
        elif old.get(key) != value:
            out.append((key, old.get(key), value))
    return out


def _check_graph_dict(data: Any, path: Path) -> None:
    required = {VAR: ("x", "c", "lower", "upper", "solution"),
                CON: ("x", "lower", "upper", "solution"), EDGE: ("edge_index", "edge_attr")}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an LP graph file (holds a {type(data).__name__})")
    for key, fields in required.items():
        missing = [f for f in fields if not isinstance(data.get(key), dict) or f not in data[key]]
        if missing:
            raise ValueError(f"{path}: not an LP graph file ({key} lacks {', '.join(missing)})")


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{root}: no meta.json (not an LP dataset; build one with "
                                f"l2o.datasets.build_dataset)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "count" not in meta:
        raise ValueError(f"{path}: not an LP dataset description of format {FORMAT}")
    return meta


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
