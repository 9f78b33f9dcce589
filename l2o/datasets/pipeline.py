"""The CPU work around a dataset build's labelling solves, done beside them.

A build (:func:`l2o.datasets.build.build_dataset`) spends, per set-cover instance of the
default size, ~20 ms generating it, ~20 ms on its two ||A||_2 estimates and ~4 ms writing its
record (one CPU core, 2026-12-04), all on the main thread between the solves: with
``--batch`` on a GPU that was most of the build (1000 instances: 46 s, of which the batched
solves ~17 s).  Here that work leaves the main thread:

* :class:`InstancePool`: the per-instance work (generate instance i and estimate its norms;
  on a resume, load and check its record) computed ahead in worker processes (a bounded
  number in flight) and handed back in instance order; the main thread only solves.
* :class:`RecordWriter`: one background thread that writes the labelled records (atomically,
  :func:`l2o.datasets.store.save_record`) while the main thread solves the next batch.

What a build stores does not depend on either: a record is a function of its instance alone.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .store import save_record

if TYPE_CHECKING:  # typing.Self from Python 3.11 on
    from typing_extensions import Self

__all__ = ["InstancePool", "RecordWriter", "default_workers"]

# at most this many worker processes by default: generating ~25 ms an instance, 16 keep up
# with batched solves of ~3 ms an instance (256 set-cover LPs to 1e-4 in 0.69 s on an H200)
MAX_DEFAULT_WORKERS = 16


def default_workers(device: torch.device) -> int:
    """Worker processes of a build by default: with CUDA solves, every CPU core this process
    may use but two (one for the main thread, which drives the GPU and checks every LP of a
    batch on the host, one for the record writer), at least one, at most
    :data:`MAX_DEFAULT_WORKERS`; with CPU solves none (the solves already use every core)."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_DEFAULT_WORKERS, (cores or 1) - 2))


class InstancePool:
    """Functions of an instance index (generate it, check its record on disk) computed ahead
    in worker processes; a context manager (entering it starts the workers, leaving it stops
    them).

    Args:
        workers: 0: each computed here, when asked for; N: in N worker processes.

    The workers are forked where the platform can (no imports to repeat; they never touch
    CUDA, which a fork cannot use), all on entering (before the caller starts other threads,
    a progress bar's or a writer's), and run torch on one thread each.  Tensors in a dict
    travel as numpy arrays (pickling a torch tensor costs milliseconds; an array is a copy).
    """

    def __init__(self, workers: int) -> None:
        self.workers = int(workers)
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Self:
        if self.workers > 0:
            context = (multiprocessing.get_context("fork")
                       if "fork" in multiprocessing.get_all_start_methods() else None)
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context,
                                                 initializer=_worker_init)
            self._executor.submit(int).result()  # starts every worker now
        return self

    def __exit__(self, *exc_info) -> None:
        if self._executor is not None:  # drops the work not started (an interrupted build)
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def in_order(self, function: Callable[[int], Any], indices: Iterable[int],
                 ahead: int) -> Iterator[Any]:
        """``function(i)`` for each i of ``indices``, in that order.

        ``function`` is picklable (module level, or a ``functools.partial`` of one).  With
        workers, at most ``ahead`` instances beyond the one handed out last are computed or
        in computation (a build asks for two batches: the next one is generated while one is
        solved).  An error in ``function`` is raised here, at its instance.
        """
        if self._executor is None:
            yield from map(function, indices)
            return
        pending: deque[Future] = deque()
        for index in indices:
            pending.append(self._executor.submit(_as_arrays, function, index))
            if len(pending) > ahead:
                yield _as_tensors(pending.popleft().result())
        while pending:
            yield _as_tensors(pending.popleft().result())


def _worker_init() -> None:
    torch.set_num_threads(1)  # one core per worker: no oversubscription of the machine


def _as_arrays(function: Callable[[int], Any], index: int) -> Any:
    item = function(index)
    if not isinstance(item, dict):
        return item
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in item.items()}


def _as_tensors(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in item.items()}


class RecordWriter:
    """Writes records with :func:`~l2o.datasets.store.save_record` on one background thread,
    in the order given; a context manager.

    ``write`` returns at once; :meth:`wait` blocks until every record given is on disk and
    raises the first write error, and so does leaving the ``with`` block, also by an exception
    (a build stopped by an error keeps the records it labelled).  Each file is written
    atomically, so a killed build leaves whole records or none, which a resumed build redoes.
    """

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="l2o-record-writer")
        self._pending: deque[Future] = deque()

    def write(self, record: dict[str, Any], path: str | os.PathLike) -> None:
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # raises a failed write's error
        self._pending.append(self._thread.submit(save_record, record, Path(path)))

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.wait()
        finally:
            self._thread.shutdown(wait=True)
