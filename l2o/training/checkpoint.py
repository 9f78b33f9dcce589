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

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bilevel.persist import UnreadableFileError, atomic_save, safe_load

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "NonFiniteWeightsError",
    "check_finite_weights",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "l2o.train-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("epoch", "model", "optimizer", "rng", "config", "history", "best")


class CheckpointError(ValueError):
    """A checkpoint file that is corrupted, foreign, or does not fit the model."""


class NonFiniteWeightsError(CheckpointError):
    """A model checkpoint whose weights hold nan or inf: a model that cannot predict."""


def check_finite_weights(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Raise :class:`NonFiniteWeightsError` naming ``path`` and the first parameter (or buffer)
    of the state dict ``state`` that holds a nan or an inf.

    A checkpoint written after a diverged step, or edited, loads without complaint and then
    predicts nan for every LP; this says so where the model is loaded.
    """
    for name, value in state.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = value[~finite]
            kinds = ", ".join(kind for kind, present in (
                ("nan", bool(torch.isnan(bad).any())), ("+inf", bool((bad == math.inf).any())),
                ("-inf", bool((bad == -math.inf).any()))) if present)
            raise NonFiniteWeightsError(
                f"{path}: parameter {name!r} holds {bad.numel()} non-finite value(s) ({kinds}) "
                f"of {value.numel()}; a model with non-finite weights cannot predict (did its "
                f"training diverge?)")


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``checkpoint`` (format and version added) atomically, so a run killed while
    writing leaves the previous checkpoint intact."""
    atomic_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION} | checkpoint, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): a truncated/corrupted file, a pickle holding code or
            foreign objects, or a file that is not an l2o training checkpoint.
    """
    path = Path(path)
    try:
        checkpoint = safe_load(path, "l2o checkpoint", map_location=map_location)
    except UnreadableFileError as exc:
        raise CheckpointError(str(exc)) from exc
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
