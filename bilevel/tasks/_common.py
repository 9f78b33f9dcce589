"""Helpers shared by the task builders: input conversion and minibatches of indices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["IndexBatches", "as_float_tensor", "select"]


def as_float_tensor(name: str, value: Any, ndim: int, device=None, dtype=None) -> torch.Tensor:
    """``value`` (tensor or array) as a floating tensor with ``ndim`` dims and no NaN/inf."""
    tensor = torch.as_tensor(value)
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int64, torch.int32,
                                                            torch.uint8, torch.bool)):
        raise TypeError(f"{name}: expected real numbers, got dtype {tensor.dtype}")
    if tensor.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if dtype is None:
        dtype = tensor.dtype if tensor.is_floating_point() else torch.get_default_dtype()
    tensor = tensor.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name}: contains NaN or inf")
    return tensor


class IndexBatches:
    """Re-iterable minibatches of row indices: each pass is a fresh random permutation.

    ``for batch in IndexBatches(n, 512)`` yields int64 index tensors of at most 512
    rows covering 0..n-1 once; the task objectives select their rows with them. The
    permutation generator is seeded once, so a run is reproducible.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, device=None) -> None:
        if batch_size < 1 or n < 1:
            raise ValueError(f"IndexBatches: need n >= 1 and batch_size >= 1, "
                             f"got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.device = n, batch_size, device
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        perm = torch.randperm(self.n, generator=self._generator).to(self.device)
        return iter(perm.split(self.batch_size))


def select(batch: torch.Tensor | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The rows ``batch`` (an index tensor) of each tensor; all rows when batch is None."""
    if batch is None:
        return tensors
    return tuple(t[batch] for t in tensors)
