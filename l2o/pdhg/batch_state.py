"""The iteration buffers of a stack of LPs (:mod:`l2o.pdhg.stack`), with per-LP steps.

:class:`BatchState` is an :class:`~l2o.pdhg.iteration.IterationState` whose scalars are per LP:
the steps tau_b = eta_b / omega_b and sigma_b = eta_b omega_b are spread over LP b's columns
(``tau`` (n,)) and rows (``neg_sigma`` (m,)), the Halpern weight w_b = (k_b+1)/(k_b+2) over all
its entries (``weight`` (n + m,), read through the views ``weight_x``, ``weight_y``), and the
metric of the fixed-point error is (B,).  So :func:`~l2o.pdhg.iteration.halpern_iteration` runs
B LPs' iterations as one, and :func:`~l2o.pdhg.statistics.device_statistics` gives (B, K)
statistics.  A restart, a step change or a cold-start probe acts on some LPs only (a (B,) mask,
spread to entries through the segment ids); :meth:`select` keeps the unfinished LPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .batch_fused import batch_iteration_fused, batch_restart_fused
from .iteration import IterationState, halpern_iteration, sparse_addmv_works
from .stack import StackedLP, StackIndex

__all__ = ["BatchState"]

# the buffers by the index they run over: columns (n,), rows (m,), LPs (B,)
_COLS = ("x", "x0", "grad", "x_pre", "x_hat", "x_bar", "tau")
_ROWS = ("y", "y0", "y_hat", "y_bar", "ax_bar", "neg_sigma", "dual_lower", "dual_upper")
_LPS = ("metric_primal", "metric_dual")


@dataclass
class BatchState(IterationState):
    """IterationState of a :class:`~l2o.pdhg.stack.StackedLP` (module docstring).

    Attributes (besides IterationState's, stacked):
        weight: (n + m,) the Halpern weight of each column, then of each row.
        tau, neg_sigma, dual_lower, dual_upper: (n,), (m,), (m,), (m,) per entry.
        metric_primal, metric_dual: (B,) omega_b / eta_b and 1 / (eta_b omega_b).
        batch_plan: the products of the Triton iteration (:mod:`l2o.pdhg.batch_fused`), or
            None for the torch ops.  (``fused_plan``, the single-LP kernels', stays None.)
    """

    batch_plan: Any = None

    @property
    def weight_x(self) -> torch.Tensor:
        return self.weight[: self.x.numel()]

    @property
    def weight_y(self) -> torch.Tensor:
        return self.weight[self.x.numel():]

    @classmethod
    def init(cls, p: StackedLP, x: torch.Tensor, y: torch.Tensor) -> BatchState:
        """The state at the (scaled, projected) start (x, y) (n,), (m,); steps unset."""
        e = torch.empty_like
        lps = x.new_empty(p.count)
        s = cls(x=x.clone(), y=y.clone(), x0=x.clone(), y0=y.clone(), grad=e(x), x_pre=e(x),
                x_hat=e(x), y_hat=e(y), x_bar=e(x), y_bar=e(y), ax_bar=e(y),
                weight=x.new_empty(x.numel() + y.numel()), tau=e(x), neg_sigma=e(y),
                dual_lower=e(y), dual_upper=e(y), metric_primal=lps, metric_dual=lps.clone())
        s.restart_epoch(p, x, y, p.op.rmatvec(y))
        s.fused_grad = sparse_addmv_works(p, s)
        return s

    def iterate(self, p: StackedLP, last: bool = True) -> None:
        """One iteration of every LP of the stack, in place: the Triton kernels of
        ``batch_plan``, or the torch ops of :func:`~l2o.pdhg.iteration.halpern_iteration`."""
        if self.batch_plan is None:
            halpern_iteration(p, self, last)
        else:
            batch_iteration_fused(p, self, self.batch_plan, last)

    def set_steps(self, p: StackedLP, eta: Sequence[float], omega: Sequence[float]) -> None:
        """tau_b = eta_b / omega_b, sigma_b = eta_b omega_b for every LP b, and what depends on
        them (in place: a CUDA graph reads these buffers).  One small host-to-device copy."""
        per_lp = torch.tensor([[o / e, 1.0 / (e * o), e / o, e * o] for e, o in zip(eta, omega)],
                              dtype=self.x.dtype).to(self.x.device)
        self.metric_primal.copy_(per_lp[:, 0])
        self.metric_dual.copy_(per_lp[:, 1])
        self.tau.copy_(per_lp[:, 2][p.col_lp])
        sigma = per_lp[:, 3][p.row_lp]
        torch.neg(sigma, out=self.neg_sigma)
        torch.mul(p.row_upper, self.neg_sigma, out=self.dual_lower)
        torch.mul(p.row_lower, self.neg_sigma, out=self.dual_upper)

    def restart_with_steps(self, p: StackedLP, restart: Sequence[bool], eta: Sequence[float],
                           omega: Sequence[float], x: torch.Tensor, y: torch.Tensor,
                           aty: torch.Tensor) -> None:
        """:meth:`restart_lps` at (x, y, aty) for the LPs b with ``restart[b]``, then
        :meth:`set_steps` (eta, omega): with the Triton plan one small host-to-device copy and
        two kernels (:func:`~l2o.pdhg.batch_fused.batch_restart_fused`, ~30 torch operations
        otherwise), the same values either way."""
        if self.batch_plan is None:
            lps = torch.tensor(list(restart), dtype=torch.bool).to(self.x.device)
            self.restart_lps(p, x, y, aty, lps)
            self.set_steps(p, eta, omega)
            return
        table = torch.tensor([[float(r), e / o, -(e * o), o / e, 1.0 / (e * o)]
                              for r, e, o in zip(restart, eta, omega)],
                             dtype=self.x.dtype).to(self.x.device)
        self.metric_primal.copy_(table[:, 3])
        self.metric_dual.copy_(table[:, 4])
        batch_restart_fused(p, self, table[:, :3].contiguous(), x, y, aty)

    def restart_lps(self, p: StackedLP, x: torch.Tensor, y: torch.Tensor, aty: torch.Tensor,
                    lps: torch.Tensor) -> None:
        """:meth:`restart_epoch` for the LPs of the (B,) bool mask ``lps`` only."""
        cols, rows = lps[p.col_lp], lps[p.row_lp]
        for buffer, value, where in ((self.x0, x, cols), (self.y0, y, rows), (self.x, x, cols),
                                     (self.y, y, rows)):
            buffer.copy_(torch.where(where, value, buffer))
        self.grad.copy_(torch.where(cols, aty - p.c, self.grad))
        self.weight.masked_fill_(torch.cat([cols, rows]), 0.5)

    def load_iterate(self, saved: tuple[torch.Tensor, ...],
                     lps: torch.Tensor | None = None, p: StackedLP | None = None) -> None:
        """Back to the iterate of :meth:`save_iterate`, for the LPs of the (B,) bool mask
        ``lps`` only (all without it; ``p`` gives the segment ids)."""
        if lps is None:
            super().load_iterate(saved)
            return
        cols, rows = lps[p.col_lp], lps[p.row_lp]
        entries = torch.cat([cols, rows])
        for buffer, value, where in zip(self._iterate(), saved,
                                        (cols, rows, cols, rows, cols, entries)):
            buffer.copy_(torch.where(where, value, buffer))

    def select(self, index: StackIndex) -> BatchState:
        """A new state holding the LPs of ``index`` only (new buffers: a new CUDA graph and
        a new ``batch_plan``, None here)."""
        values = {name: getattr(self, name)[index.cols] for name in _COLS}
        values |= {name: getattr(self, name)[index.rows] for name in _ROWS}
        values |= {name: getattr(self, name)[index.lps] for name in _LPS}
        weight = torch.cat([self.weight_x[index.cols], self.weight_y[index.rows]])
        return BatchState(weight=weight, fused_grad=self.fused_grad, fused_plan=None, **values)
