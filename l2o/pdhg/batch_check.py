"""The check of a stack of LPs in a few Triton kernels (``solve_lp_batch`` with the fused iteration).

The torch check of a stack (:func:`l2o.pdhg.statistics.device_statistics` with the per-LP
:class:`~l2o.lp.segments.Segments` reductions) is ~375 torch operations, ~80 of them segment
sums and maxima by atomic adds and compare-and-swaps into B addresses.  Here the check of one LP
(:mod:`l2o.pdhg.fused_check`) runs on the stack, with its per-element math
(``_column_terms`` / ``_row_terms``) and its host formulas (:func:`~l2o.pdhg.fused_check.
check_rows`); only the reductions change, from whole vectors to LPs:

    prologues, two products     as for one LP, on the stacked vectors           (4 launches)
    column pass, row pass       one program per TILE: BLOCK entries or fewer,    (2 launches)
                                all of one LP; its 17 / 14 partial sums and maxima
    per-LP reduction            one program per LP adds its tiles' partials in   (1 launch)
                                order (maxima by max), float64, and appends the
                                LP's metric omega / eta, 1 / (eta omega)
    host                        one copy of the (B, 33) numbers, then check_rows (B, K)

The tiles of LP b cover its columns (rows) [start_b, end_b) in pieces of BLOCK, so no tile
holds two LPs and no atomic operation is needed: the sums add in a fixed order (the same
result at every run, and no contention on B addresses).  An LP with no rows has no row tiles
(its row sums and maxima are 0, as the torch check's).  Per entry, the primal step tau and the
scalings theta_b, theta_c are read from the stack's spread vectors (``s.tau``,
``p.col_bound_scale`` ...).  Results equal the torch check's up to the order of the sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from l2o.lp.kkt import finite_or_zero

from .fused_check import BLOCK, COL_MAXES, COL_SUMS, ROW_MAXES, ROW_SUMS, check_rows
from .statistics import CheckVectors
from .termination import RAY_CANDIDATES

try:  # Triton ships with CUDA builds of torch; CPU-only installs and CI have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

__all__ = ["BatchCheck", "make_batch_check"]

COL_WIDTH, ROW_WIDTH = COL_SUMS + COL_MAXES, ROW_SUMS + ROW_MAXES
# the per-LP numbers the device hands over: column, row partials reduced, then the two metrics
WIDTH = COL_WIDTH + ROW_WIDTH + 2


@dataclass
class Tiles:
    """The tiles of one index (columns or rows) of a stack (module docstring).

    Attributes:
        start, end: (T,) int64 device: the entries [start_t, end_t) of tile t, all of one LP.
        first: (B + 1,) int64 device: LP b's tiles are first[b] .. first[b + 1] - 1.
    """

    start: torch.Tensor
    end: torch.Tensor
    first: torch.Tensor

    @classmethod
    def of(cls, sizes: list[int], device: torch.device) -> Tiles:
        """The tiles of segments of ``sizes`` entries laid out one after the other."""
        start, end, first, offset = [], [], [0], 0
        for size in sizes:
            pieces = range(offset, offset + size, BLOCK)
            start += pieces
            end += [min(s + BLOCK, offset + size) for s in pieces]
            first.append(len(start))
            offset += size
        as_tensor = lambda v: torch.tensor(v, dtype=torch.int64).to(device)
        return cls(as_tensor(start), as_tensor(end), as_tensor(first))

    @property
    def count(self) -> int:
        return self.start.numel()


@dataclass
class BatchCheck:
    """The buffers and constants of the fused check of a stack (module docstring); the
    interface of :class:`~l2o.pdhg.fused_check.FusedCheck` that
    :class:`~l2o.pdhg.iteration.ChunkRunner` calls (:meth:`statistics`), and :meth:`rows`.

    Attributes:
        xr, yr: (4, n), (4, m) the point and the projected rays.
        x, y, reduced_costs: the unscaled point and its dual slack (outputs).
        col_tiles, row_tiles: the :class:`Tiles`.
        col_partials, row_partials: (T_cols, 17), (T_rows, 14) per-tile sums and maxima.
        reduced: (B, WIDTH) float64 per-LP numbers (the check's output).
        lc, uc, lr, ur: the finite parts of the bounds (0 where infinite).
        c0, rhs_norm, c_norm: (B,) host float64 constants of :func:`check_rows`; tiny.
    """

    xr: torch.Tensor
    yr: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    reduced_costs: torch.Tensor
    col_tiles: Tiles
    row_tiles: Tiles
    col_partials: torch.Tensor
    row_partials: torch.Tensor
    reduced: torch.Tensor
    lc: torch.Tensor
    uc: torch.Tensor
    lr: torch.Tensor
    ur: torch.Tensor
    c0: np.ndarray
    rhs_norm: np.ndarray
    c_norm: np.ndarray
    tiny: float

    @classmethod
    def build(cls, p: Any, t: Any, s: Any) -> BatchCheck:
        """For the :class:`~l2o.pdhg.stack.StackedLP` ``p``, its stacked TerminationData ``t``
        and the :class:`~l2o.pdhg.batch_state.BatchState` ``s`` (one host copy of the per-LP
        constants: once per stack)."""
        n, m = s.x.numel(), s.y.numel()
        device = s.x.device
        like = {"dtype": s.x.dtype, "device": device}
        e = lambda *shape: torch.zeros(shape, **like)
        col_tiles, row_tiles = Tiles.of(p.cols, device), Tiles.of(p.rows, device)
        host = torch.stack([p.c0.to(torch.float64), t.rhs_norm.to(torch.float64),
                            t.c_norm.to(torch.float64)]).cpu().numpy()
        return cls(
            xr=e(4, n), yr=e(4, m), x=e(n), y=e(m), reduced_costs=e(n),
            col_tiles=col_tiles, row_tiles=row_tiles,
            col_partials=e(max(1, col_tiles.count), COL_WIDTH),
            row_partials=e(max(1, row_tiles.count), ROW_WIDTH),
            reduced=torch.zeros(p.count, WIDTH, dtype=torch.float64, device=device),
            lc=finite_or_zero(p.orig_col_lower), uc=finite_or_zero(p.orig_col_upper),
            lr=finite_or_zero(p.orig_row_lower), ur=finite_or_zero(p.orig_row_upper),
            c0=host[0], rhs_norm=host[1], c_norm=host[2], tiny=torch.finfo(s.x.dtype).tiny)

    def statistics(self, p: Any, t: Any, s: Any) -> tuple[torch.Tensor, CheckVectors]:
        """The check's device work for state ``s``: (the (B, WIDTH) per-LP numbers, float64,
        for :meth:`rows`; the vectors).  No host sync; capturable in a CUDA graph."""
        n, m = s.x.numel(), s.y.numel()
        _ray_prologue[(max(1, triton.cdiv(n, BLOCK)),)](
            s.x_hat, s.x_bar, s.x0, t.rec_col_lower, t.rec_col_upper, self.xr, n,
            BLOCK=BLOCK, num_warps=4)
        _ray_prologue[(max(1, triton.cdiv(m, BLOCK)),)](
            s.y_hat, s.y_bar, s.y0, t.dual_rec_lower, t.dual_rec_upper, self.yr, m,
            BLOCK=BLOCK, num_warps=4)
        ax = torch.mm(p.op.csr, self.xr.t())           # (m, 4): A~ x^ and the primal rays
        aty = torch.mm(p.op.csr_t, self.yr[:3].t())    # (n, 3): A~^T y^ and two dual rays
        if self.col_tiles.count:
            _batch_column_pass[(self.col_tiles.count,)](
                self.col_tiles.start, self.col_tiles.end, s.x_hat, s.x_pre, s.x_bar, s.x0,
                s.tau, p.col_bound_scale, p.col_objective_scale, aty, aty.stride(0),
                aty.stride(1), self.xr, p.orig_c, p.col_scale, t.rc_lower, t.rc_upper, self.lc,
                self.uc, self.x, self.reduced_costs, self.col_partials, n,
                BLOCK=BLOCK, WIDTH=COL_WIDTH, num_warps=4)
        if self.row_tiles.count:
            _batch_row_pass[(self.row_tiles.count,)](
                self.row_tiles.start, self.row_tiles.end, s.y_hat, s.y_bar, s.y0, s.ax_bar,
                p.row_bound_scale, p.row_objective_scale, ax, ax.stride(0), ax.stride(1),
                self.yr, p.row_scale, p.orig_row_lower, p.orig_row_upper, self.lr, self.ur,
                t.rec_row_lower, t.rec_row_upper, self.y, self.row_partials, m,
                BLOCK=BLOCK, WIDTH=ROW_WIDTH, num_warps=4)
        _reduce_per_lp[(self.reduced.shape[0],)](
            self.col_partials, self.col_tiles.first, self.row_partials, self.row_tiles.first,
            s.metric_primal, s.metric_dual, self.reduced,
            COL_SUMS=COL_SUMS, COL_WIDTH=COL_WIDTH, ROW_SUMS=ROW_SUMS, ROW_WIDTH=ROW_WIDTH,
            WIDTH=WIDTH, PAD=32, num_warps=1)
        vectors = CheckVectors(
            x=self.x, y=self.y, reduced_costs=self.reduced_costs,
            primal_rays=dict(zip(RAY_CANDIDATES, self.xr[1:])),
            dual_rays=dict(zip(RAY_CANDIDATES, self.yr[1:])), aty_hat=aty[:, 0])
        return self.reduced, vectors

    def rows(self, reduced: np.ndarray) -> np.ndarray:
        """(B, K) float64: the check statistics of every LP, in the flat layout of
        :meth:`~l2o.pdhg.statistics.CheckStatistics.from_values`, from the host copy of
        :meth:`statistics`' (B, WIDTH) numbers."""
        return check_rows(reduced, self.c0, self.rhs_norm, self.c_norm, self.tiny)


def make_batch_check(p: Any, t: Any, s: Any) -> BatchCheck | None:
    """The fused check of this stack, or None where it does not run (no Triton, not CUDA, or
    the iteration runs the torch ops): the torch check serves then."""
    if triton is None or s.batch_plan is None or s.x.device.type != "cuda":
        return None
    return BatchCheck.build(p, t, s)


if triton is not None:
    from .fused_check import _column_terms, _ray_prologue, _row_terms

    # every integer is a value, not a specialization: one compilation per dtype serves every
    # stack (none inside a CUDA graph capture after a compaction)
    @triton.jit(do_not_specialize=["aty_s0", "aty_s1", "n"])
    def _batch_column_pass(start_ptr, end_ptr, x_hat_ptr, x_pre_ptr, x_bar_ptr, x0_ptr, tau_ptr,
                           bound_scale_ptr, objective_scale_ptr, aty_ptr, aty_s0, aty_s1,
                           xr_ptr, c_ptr, d2_ptr, rc_lo_ptr, rc_hi_ptr, lc_ptr, uc_ptr,
                           x_out_ptr, r_out_ptr, partial_ptr, n,
                           BLOCK: tl.constexpr, WIDTH: tl.constexpr):
        tile = tl.program_id(0)
        offs = tl.load(start_ptr + tile) + tl.arange(0, BLOCK)
        mask = offs < tl.load(end_ptr + tile)
        tau = tl.load(tau_ptr + offs, mask=mask, other=1.0)
        theta_b = tl.load(bound_scale_ptr + offs, mask=mask, other=1.0)
        theta_c = tl.load(objective_scale_ptr + offs, mask=mask, other=1.0)
        _column_terms(offs, mask, tau, theta_b, theta_c, x_hat_ptr, x_pre_ptr, x_bar_ptr, x0_ptr,
                      aty_ptr, aty_s0, aty_s1, xr_ptr, c_ptr, d2_ptr, rc_lo_ptr, rc_hi_ptr,
                      lc_ptr, uc_ptr, x_out_ptr, r_out_ptr, partial_ptr + tile * WIDTH, n)

    @triton.jit(do_not_specialize=["ax_s0", "ax_s1", "m"])
    def _batch_row_pass(start_ptr, end_ptr, y_hat_ptr, y_bar_ptr, y0_ptr, ax_bar_ptr,
                        bound_scale_ptr, objective_scale_ptr, ax_ptr, ax_s0, ax_s1, yr_ptr,
                        d1_ptr, row_lo_ptr, row_hi_ptr, lr_ptr, ur_ptr, rec_lo_ptr, rec_hi_ptr,
                        y_out_ptr, partial_ptr, m, BLOCK: tl.constexpr, WIDTH: tl.constexpr):
        tile = tl.program_id(0)
        offs = tl.load(start_ptr + tile) + tl.arange(0, BLOCK)
        mask = offs < tl.load(end_ptr + tile)
        theta_b = tl.load(bound_scale_ptr + offs, mask=mask, other=1.0)
        theta_c = tl.load(objective_scale_ptr + offs, mask=mask, other=1.0)
        _row_terms(offs, mask, theta_b, theta_c, y_hat_ptr, y_bar_ptr, y0_ptr, ax_bar_ptr,
                   ax_ptr, ax_s0, ax_s1, yr_ptr, d1_ptr, row_lo_ptr, row_hi_ptr, lr_ptr, ur_ptr,
                   rec_lo_ptr, rec_hi_ptr, y_out_ptr, partial_ptr + tile * WIDTH, m)

    @triton.jit
    def _reduce_tiles(partial_ptr, first, last, SUMS: tl.constexpr, COUNT: tl.constexpr,
                      PAD: tl.constexpr):
        """The sums (the first SUMS numbers) and maxima (the rest) of COUNT numbers per tile
        over tiles first .. last - 1, in their order, float64 (nan kept by the maxima)."""
        idx = tl.arange(0, PAD)
        inside = idx < COUNT
        total = tl.zeros([PAD], dtype=tl.float64)
        largest = tl.zeros([PAD], dtype=tl.float64)
        for tile in range(first, last):
            v = tl.load(partial_ptr + tile * COUNT + idx, mask=inside, other=0.0).to(tl.float64)
            total += v
            largest = tl.maximum(largest, v, propagate_nan=tl.PropagateNan.ALL)
        return tl.where(idx < SUMS, total, largest)

    @triton.jit
    def _reduce_per_lp(col_partial_ptr, col_first_ptr, row_partial_ptr, row_first_ptr,
                       metric_primal_ptr, metric_dual_ptr, out_ptr,
                       COL_SUMS: tl.constexpr, COL_WIDTH: tl.constexpr, ROW_SUMS: tl.constexpr,
                       ROW_WIDTH: tl.constexpr, WIDTH: tl.constexpr, PAD: tl.constexpr):
        b = tl.program_id(0)
        idx = tl.arange(0, PAD)
        out = out_ptr + b * WIDTH
        cols = _reduce_tiles(col_partial_ptr, tl.load(col_first_ptr + b),
                             tl.load(col_first_ptr + b + 1), COL_SUMS, COL_WIDTH, PAD)
        tl.store(out + idx, cols, mask=idx < COL_WIDTH)
        rows = _reduce_tiles(row_partial_ptr, tl.load(row_first_ptr + b),
                             tl.load(row_first_ptr + b + 1), ROW_SUMS, ROW_WIDTH, PAD)
        tl.store(out + COL_WIDTH + idx, rows, mask=idx < ROW_WIDTH)
        tl.store(out + COL_WIDTH + ROW_WIDTH, tl.load(metric_primal_ptr + b).to(tl.float64))
        tl.store(out + COL_WIDTH + ROW_WIDTH + 1, tl.load(metric_dual_ptr + b).to(tl.float64))
