"""Reductions of an LP's vectors: over the whole vector (one LP), or per segment (a stack of LPs).

The KKT errors and the infeasibility tests (:mod:`l2o.lp.kkt`, :mod:`l2o.pdhg.termination`) are
sums, dot products and norms of row vectors (m,) and column vectors (n,).  For one LP they reduce
the whole vector to a 0-d tensor (:data:`WHOLE`); for B LPs stacked into one block-diagonal LP
(:func:`l2o.solve_lp_batch`) the entries of LP b are those whose segment id is b, and each
reduction gives a (B,) tensor (:class:`Segments`).  The formulas are written once, against a
:class:`Reducer`, and serve both.
"""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["WHOLE", "Reducer", "Segments", "WholeVector"]


class Reducer(Protocol):
    """Reductions of a vector to one value per LP (0-d for one LP, (B,) for B segments)."""

    def sum(self, v: torch.Tensor) -> torch.Tensor: ...

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...

    def norm(self, v: torch.Tensor) -> torch.Tensor: ...

    def max_abs(self, v: torch.Tensor) -> torch.Tensor: ...


class WholeVector:
    """One LP: the reductions of the whole vector, as 0-d tensors (torch's own kernels)."""

    def sum(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sum(v)

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.dot(a, b)

    def norm(self, v: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(v)

    def max_abs(self, v: torch.Tensor) -> torch.Tensor:
        """||v||_inf, 0 for an empty vector (an LP with no rows or no columns)."""
        if v.numel() == 0:
            return torch.zeros((), dtype=v.dtype, device=v.device)
        return torch.linalg.vector_norm(v, float("inf"))


WHOLE = WholeVector()


class Segments:
    """B LPs stacked: entry i belongs to LP ``index[i]``; each reduction gives a (B,) tensor.

    Sums by ``index_add_``, maxima by ``scatter_reduce_`` ("amax"): one kernel each, no host
    sync, whatever B is.  An empty segment (an LP with no rows) reduces to 0.  nan in one
    segment stays in that segment's value.

    Args:
        index: (N,) int64 segment id of every entry, on the vectors' device.
        count: B, the number of segments.
    """

    def __init__(self, index: torch.Tensor, count: int):
        self.index, self.count = index, count

    def sum(self, v: torch.Tensor) -> torch.Tensor:
        return v.new_zeros(self.count).index_add_(0, self.index, v)

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.sum(a * b)

    def norm(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.sum(v * v))

    def max_abs(self, v: torch.Tensor) -> torch.Tensor:
        # |v| >= 0, so starting from 0 is the max over the segment (0 for an empty one); nan is
        # kept by adding the segment's sum of 0 * v, which is nan exactly when some entry is
        return (v.new_zeros(self.count).scatter_reduce_(0, self.index, v.abs(), "amax")
                + self.sum(v * 0))
