"""Files that survive a crash, and random-number states that make a resumed run exact.

The one home of these for ``bilevel`` and ``l2o`` alike:

* :func:`atomic_write` / :func:`atomic_save`: write to a temporary file in the target's
  directory, flush and fsync, then ``os.replace`` it over the target (atomic on POSIX and
  Windows), so a process killed mid-write leaves the previous file intact, never half of one.
* :func:`safe_load`: ``torch.load(weights_only=True)`` (loading never runs code from the
  file) with errors in our words: what the file should have been and what is wrong with it.
* :func:`rng_state` / :func:`set_rng_state`: torch's CPU and CUDA generators, Python's
  ``random`` and numpy's global generator, as tensors, numbers and lists (so they load with
  ``weights_only=True`` too).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

__all__ = ["UnreadableFileError", "atomic_save", "atomic_write", "rng_state", "safe_load",
           "set_rng_state"]


class UnreadableFileError(ValueError):
    """A file that is truncated, corrupted, not a torch file, or holds code or foreign objects."""


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it over ``path``.

    The temporary name carries the process id and a clock reading, so concurrent writers
    (several training processes, a dataset build's workers) never share one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def safe_load(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """Load a file written by :func:`atomic_save` with ``torch.load(weights_only=True)``.

    Args:
        path: the file.
        what: what the file should be, for the messages (e.g. "bilevel.solve checkpoint").
        map_location: as for ``torch.load``.

    Raises:
        FileNotFoundError: no such file (or a directory).
        UnreadableFileError (a ValueError): anything ``torch.load`` refuses. The message says
            what is wrong in our words: loading with ``weights_only=False`` (torch's own advice)
            would run code from the file, so it is never suggested.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UnreadableFileError(f"{path}: not a readable {what} ({_reason(exc)})") from exc


def _reason(exc: Exception) -> str:
    """Why ``torch.load`` refused a file, without torch's advice to unpickle it unsafely."""
    text = str(exc)
    if isinstance(exc, EOFError) or "central directory" in text:
        return "the file is truncated or empty"
    if "Weights only load failed" in text or "Unsupported global" in text:
        return "it holds Python objects other than tensors, numbers, strings, lists and dicts"
    return f"it is not a file written by torch.save, or it is corrupted ({type(exc).__name__})"


def rng_state() -> dict[str, Any]:
    """The states of torch's CPU and CUDA generators, Python's ``random`` and numpy's global
    generator. CUDA's are saved once CUDA is in use: a CPU run on a GPU machine creates no CUDA
    context for them (nor fails in a forked child)."""
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
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"][:torch.cuda.device_count()]])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy = state["numpy"]
    keys = numpy["keys"].cpu().numpy().astype(np.uint32)   # a state loaded onto a GPU too
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
