"""``build_dataset``: generate LP instances, label them with high-accuracy solves, store them.

Instance i of a build is ``l2o.datasets.generate(family, seed=seed + i, **size_options)``,
labelled with ``l2o.solve_lp(lp, tol=tol)`` (x*, y*: the optimal primal and the row duals of the
minimization form), or with ``batch=N`` N instances at a time with ``l2o.solve_lp_batch`` (one
stacked PDHG run per N instances, without presolve; the labels meet the same tolerance) and
written to ``DIR/lp_{i:06d}.pt`` in the record format of
:mod:`l2o.datasets.store`, atomically (temporary file + rename). ``DIR/manifest.json`` records
how the dataset was made, so it can be rebuilt from the manifest alone.

Around the solves (:mod:`l2o.datasets.pipeline`): ``workers`` processes generate the instances
and estimate their norms ahead of them (by default, with CUDA solves), and one background
thread writes the labelled records while the next ones are solved; the records are the same
either way, and the LP each label comes from is the stored one (:func:`~l2o.datasets.store.
record_to_lp` of its record).

Resuming: building again into the same directory with the same settings skips every instance
whose record loads and validates, redoes the missing or corrupted ones, and keeps the instances
already left out. A larger ``count`` extends a dataset.

Instances whose solve does not end OPTIMAL (iteration/time limit, numerical error, infeasible)
are never stored with their unconverged iterate as a label: they are listed under ``excluded``
in the manifest (index, seed, status, message), a warning names them, and
:class:`~l2o.datasets.store.LPDataset` skips them.

The command line is ``l2o dataset build --family F --count N [--SIZE-OPTION VALUE ...] --out
DIR [--batch N]`` (:mod:`l2o.cli.dataset`).
"""

from __future__ import annotations

import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from l2o.device import resolve_device

from .generators import family_options, generate
from .pipeline import InstancePool, RecordWriter, default_workers
from .store import (
    DATASET_FORMAT,
    MANIFEST,
    VERSION,
    add_labels,
    load_record,
    read_manifest,
    record_path,
    record_to_lp,
    unlabelled_record,
    write_manifest,
)

__all__ = ["BuildReport", "build_dataset"]

# Settings that must match when a build resumes into an existing directory.
_RESUME_KEYS = ("family", "options", "seed", "tol")


@dataclass
class BuildReport:
    """What a :func:`build_dataset` call did.

    Attributes:
        out_dir: the dataset directory.
        count: instances of the dataset (stored + excluded).
        stored: records on disk at the end.
        built: instances generated and solved by this call.
        kept: valid records found on disk and kept (resume).
        redone: records found corrupted or foreign and rebuilt.
        excluded: every instance left out (dicts with index, seed, status, message).
        elapsed: seconds.
        solving: seconds in the labelling solves (elapsed - solving: what the build spends
            beside them, the generation ahead of them in workers excepted).
    """

    out_dir: Path
    count: int
    stored: int = 0
    built: int = 0
    kept: int = 0
    redone: int = 0
    excluded: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    solving: float = 0.0


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("bilevel-l2o", "numpy", "scipy", "networkx", "torch_geometric"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _settings(family: str, count: int, seed: int, tol: float,
              size_options: dict[str, Any]) -> dict[str, Any]:
    """Validated build settings (raises ValueError naming a bad family, option or value)."""
    valid = family_options(family)  # raises on an unknown family
    if "seed" in size_options:
        raise ValueError("build_dataset: give the base seed as seed=; instance i uses seed + i")
    unknown = sorted(set(size_options) - set(valid))
    if unknown:
        raise ValueError(f"unknown size option(s) {', '.join(unknown)} for LP family {family!r}; "
                         f"valid: {', '.join(k for k in valid if k != 'seed')}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"build_dataset: count must be a positive integer, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"build_dataset: seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"build_dataset: tol must be a positive number, got {tol!r}")
    options = {k: v for k, v in valid.items() if k != "seed"} | dict(size_options)
    return {"family": family, "options": options, "seed": seed, "tol": float(tol), "count": count}


def _prepare_directory(root: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Create ``root`` or check that it holds a build with the same settings.

    Returns:
        The excluded instances recorded by an earlier build (kept, not solved again).
    """
    if (root / MANIFEST).exists():
        old = read_manifest(root)
        mismatch = [k for k in _RESUME_KEYS if old.get(k) != settings[k]]
        if mismatch:
            diff = "; ".join(f"{k}: {old.get(k)!r} there, {settings[k]!r} now" for k in mismatch)
            raise ValueError(f"{root} holds a dataset built with other settings ({diff}); "
                             f"build into a new directory")
        if int(old["count"]) > settings["count"]:
            raise ValueError(f"{root} already holds {old['count']} instances; count must be at "
                             f"least that (a larger count extends the dataset)")
        return [e for e in old.get("excluded", []) if int(e["index"]) < settings["count"]]
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty and has no {MANIFEST}: refusing to build a dataset "
                         f"into it; choose a new or empty directory")
    root.mkdir(parents=True, exist_ok=True)
    return []


def _valid_record(root: Path, seed: int, family: str, index: int) -> bool:
    """Whether ``root`` holds a valid record of instance ``index`` (False: a corrupted or
    foreign file, or none)."""
    try:
        record = load_record(record_path(root, index))
    except (ValueError, OSError):
        return False
    return (record["index"] == index and record["seed"] == seed + index
            and record["family"] == family and record["status"] == "optimal")


def _progress_bar(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=False)


def build_dataset(family: str, count: int, out_dir: str | os.PathLike, *, seed: int = 0,
                  tol: float = 1e-8, progress: bool = True, device: Any = "auto",
                  time_limit: float | None = None, iteration_limit: int | None = None,
                  keep_names: bool = False, batch: int | None = None,
                  workers: int | None = None, **size_options: Any) -> BuildReport:
    """Generate ``count`` instances of ``family``, label them with ``l2o.solve_lp``, store them.

    Args:
        family: an LP family of :data:`l2o.datasets.FAMILIES`.
        count: number of instances; instance i uses generator seed ``seed + i``.
        out_dir: the dataset directory (created; an existing one must hold the same build).
        seed: base generator seed.
        tol: relative KKT tolerance of the labelling solves (see :func:`l2o.solve_lp`).
        progress: show a rich progress bar.
        device: where the labelling solves run ("auto": CUDA when available; see
            :func:`l2o.device.resolve_device`).
        time_limit, iteration_limit: per-instance solve limits (None: no limit); an instance
            that hits one is excluded, not stored.  With ``batch`` the time limit is that of
            each batch's solve.
        keep_names: store row and column names in the records.
        batch: None (one ``l2o.solve_lp`` per instance) or N: the instances are labelled N at
            a time by ``l2o.solve_lp_batch`` (without presolve).
        workers: processes that generate the instances and estimate their norms ahead of the
            solves (0: none, all on this thread; None: :func:`l2o.datasets.pipeline.
            default_workers`, every core but two with CUDA solves, none with CPU solves).
            The records do not depend on it.
        **size_options: the family's size options (see ``l2o.datasets.family_options``).

    Returns:
        A :class:`BuildReport`.

    Raises:
        ValueError: unknown family/option, bad count/seed/tol/batch/workers, a device this
            machine does not have, or a directory that is not empty and not a dataset, or holds
            a dataset built with other settings.
    """
    from l2o.net.graph import lp_to_graph  # noqa: F401  (here, so that forked workers have it)

    started = time.perf_counter()
    settings = _settings(family, count, seed, tol, size_options)
    for name, value, least in (("batch", batch, 1), ("workers", workers, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < least):
            what = "a positive" if least else "a non-negative"
            raise ValueError(f"build_dataset: {name} must be {what} integer or None, "
                             f"got {value!r}")
    device = resolve_device(device)  # a clear error before any directory is touched
    workers = default_workers(device) if workers is None else workers
    root = Path(out_dir)
    excluded = _prepare_directory(root, settings)
    excluded_ids = {int(e["index"]) for e in excluded}
    manifest = dict(format=DATASET_FORMAT, version=VERSION, **settings,
                    seeds={"first": seed, "last": seed + count - 1, "rule": "instance i: seed + i"},
                    labels={"solver": "l2o.solve_lp_batch" if batch else "l2o.solve_lp",
                                "batch": batch, "tol": float(tol), "dtype": "float64",
                                "time_limit": time_limit, "iteration_limit": iteration_limit,
                                "y": "row duals of the minimization form"},
                    versions=_versions(), complete=False, stored=0, excluded=excluded)
    write_manifest(root, manifest)
    for stale in root.glob(".lp_*.tmp"):  # left by a build killed while writing
        stale.unlink(missing_ok=True)

    report = BuildReport(out_dir=root, count=count)
    limits = {k: v for k, v in (("time_limit", time_limit), ("iteration_limit", iteration_limit))
              if v is not None}
    label = _labeller(tol, device, batch, limits)

    def exclude(record: dict[str, Any], result) -> None:
        """Leave out instance ``record["index"]``, whose solve did not end OPTIMAL (the
        manifest lists it once its batch is done)."""
        i = record["index"]
        entry = {"index": i, "seed": seed + i, "status": result.status.value,
                 "iterations": int(result.iterations),
                 "message": result.message if _finite(result) else "non-finite solution"}
        excluded.append(entry)
        excluded_ids.add(i)
        warnings.warn(f"{family} instance {i} (seed {seed + i}) excluded from {root}: "
                      f"solve ended {result.status.value} ({entry['message']})", stacklevel=3)

    # forks the workers first, before the progress bar's and the writer's threads exist
    with InstancePool(workers) as pool, _progress_bar(progress) as bar, \
            RecordWriter() as writer:
        task = bar.add_task(f"{family} x{count}", total=count, note="")
        on_disk = [i for i in range(count)
                   if i not in excluded_ids and record_path(root, i).exists()]
        valid = dict(zip(on_disk, pool.in_order(partial(_valid_record, root, seed, family),
                                                on_disk, ahead=4 * max(workers, 1))))
        todo = []
        for i in range(count):
            if i in excluded_ids or valid.get(i):
                report.kept += i in valid
                bar.advance(task)
            elif i in valid:  # a corrupted or foreign file
                report.redone += 1
                record_path(root, i).unlink(missing_ok=True)
                todo.append(i)
            else:
                todo.append(i)
        prepare = partial(_prepare, family, seed, keep_names, settings["options"])
        for records in _chunks(pool.in_order(prepare, todo, ahead=2 * (batch or 1)),
                               batch or 1):
            left_out = len(excluded)
            solving = time.perf_counter()
            results = label([record_to_lp(record) for record in records])
            report.solving += time.perf_counter() - solving
            for record, result in zip(records, results):
                if result.status.name == "OPTIMAL" and _finite(result):
                    writer.write(add_labels(
                        record, x_star=result.x, y_star=result.y, status=result.status.value,
                        iterations=result.iterations, objective=result.objective,
                        solve_time=result.solve_time, kkt=result.kkt),
                        record_path(root, record["index"]))
                else:  # never stored with its unconverged iterate as a label
                    exclude(record, result)
                report.built += 1
            if len(excluded) > left_out:  # once a batch: a resumed build skips them
                write_manifest(root, manifest | {"excluded": excluded})
            bar.update(task, advance=len(records),
                       note=f"excluded {len(excluded)}" if excluded else "")

    report.excluded = sorted(excluded, key=lambda e: e["index"])
    report.stored = sum(record_path(root, i).is_file() for i in range(count)
                        if i not in excluded_ids)
    report.elapsed = time.perf_counter() - started
    write_manifest(root, manifest | {"excluded": report.excluded, "stored": report.stored,
                                         "complete": report.stored + len(excluded) == count})
    return report


def _prepare(family: str, seed: int, keep_names: bool, options: dict[str, Any],
             index: int) -> dict[str, Any]:
    """Instance ``index``'s record without its labels: generated, with the ||A||_2 estimates
    of its graph and of its preconditioned graph (what LPDataset would compute on load).
    The CPU work of a build; runs in a worker process (:class:`InstancePool`)."""
    from l2o.net.graph import lp_to_graph

    lp = generate(family, seed=seed + index, **options)
    return unlabelled_record(
        lp, index=index, seed=seed + index, family=family, keep_names=keep_names,
        a_norm=float(lp_to_graph(lp, reverse=False).a_norm),
        a_norm_scaled=float(lp_to_graph(lp, reverse=False, scaling=True).a_norm))


def _finite(result) -> bool:
    return bool(torch.isfinite(result.x).all() and torch.isfinite(result.y).all())


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    items = iter(items)
    while chunk := list(islice(items, size)):
        yield chunk


def _labeller(tol: float, device: Any, batch: int | None,
              limits: dict[str, Any]) -> Callable[[list], list]:
    """The labelling solve of a list of LPs: one ``solve_lp`` each, or one ``solve_lp_batch``."""
    from l2o.pdhg import solve_lp, solve_lp_batch

    if batch is None:
        return lambda lps: [solve_lp(lp, tol=tol, device=device, **limits) for lp in lps]
    return lambda lps: solve_lp_batch(lps, tol=tol, device=device, **limits)
