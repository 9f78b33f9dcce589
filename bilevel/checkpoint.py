"""Atomic checkpoints of a :func:`bilevel.solve` run.

The file holds one dict: the algorithm's state (x, y, v / z / momentum, outer optimizer
state, inner step size), the outer step, the batch streams' positions, the RNG states,
the history and the elapsed wall time.  It is written to ``PATH.tmp`` and moved over
PATH with ``os.replace`` (atomic on POSIX and Windows), so a crash mid-write leaves the
previous checkpoint intact.  Everything in it is tensors, numbers, strings, lists and
dicts, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]

FORMAT = "bilevel-solve-v1"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (tmp file, fsync, os.replace)."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        torch.save({"format": FORMAT, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike,
                    map_location: torch.device | str | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ValueError: the file is not a bilevel solve checkpoint (names the path).
    """
    try:
        payload = torch.load(os.fspath(path), map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {os.fspath(path)!r} could not be read: {err}") from err
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        raise ValueError(f"checkpoint {os.fspath(path)!r} is not a bilevel.solve checkpoint "
                         f"(format {found!r}, expected {FORMAT!r})")
    return payload


def rng_state() -> dict:
    """The torch CPU and CUDA generator states."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
