"""Atomic checkpoints of a :func:`bilevel.solve` run.

The file holds one dict: the algorithm's state (x, y, v / z / momentum, outer optimizer
state, inner step size), the outer step, the batch streams' positions, the RNG states,
the history and the elapsed wall time.  It is written atomically (:mod:`bilevel.persist`),
so a crash mid-write leaves the previous checkpoint intact.  Everything in it is tensors,
numbers, strings, lists and dicts, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .persist import atomic_save, rng_state, safe_load, set_rng_state

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]

FORMAT = "bilevel-solve-v2"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically."""
    atomic_save({"format": FORMAT, **payload}, path)


def load_checkpoint(path: str | os.PathLike,
                    map_location: torch.device | str | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ValueError: the file is not a readable bilevel solve checkpoint (names the path and
            what is wrong).
    """
    try:
        payload = safe_load(path, "bilevel.solve checkpoint", map_location=map_location)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from err
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        raise ValueError(f"{os.fspath(path)}: not a checkpoint of this bilevel.solve "
                         f"(format {found!r}, expected {FORMAT!r})")
    return payload
