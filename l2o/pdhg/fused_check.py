"""The termination check's device work in a few Triton kernels (CUDA, with the fused iteration).

:func:`l2o.pdhg.statistics.device_statistics` computes the check with ~260 torch operations on
vectors of length n and m (unscaling, KKT residuals, objectives, the fixed-point error, six
infeasibility rays) and seven sparse products.  On a GPU each operation is a kernel of 2-4 us
even inside a CUDA graph: 0.7-1.0 ms per check on LPs of 0.25-1.1M nonzeros (H200,
benchmarks/lp_profile.py), 15-25% of the solve at one check per 192 iterations and more than
half of it on small LPs.  Here the same quantities take:

    column prologue    XR = [x^, proj(x_bar - x^), proj(x^ - x0), proj(x^)]      (4, n)
    row prologue       YR = [y^, proj(y_bar - y^), proj(y^ - y0), proj(y^)]      (4, m)
    two products       A~ XR[0:4]^T  (m, 4),   A~^T YR[0:3]^T  (n, 3)
    column pass        per block of columns: 11 partial sums and 6 partial maxima
    row pass           per block of rows: 8 partial sums and 6 partial maxima
    reductions         the sums and maxima over the blocks (float64)

(proj: the recession cones of :class:`~l2o.pdhg.termination.TerminationData`), and the host turns
the 31 reduced numbers into the :class:`~l2o.pdhg.statistics.CheckStatistics` after the check's
one copy (:meth:`FusedCheck.record`).  The formulas are those of :mod:`l2o.lp.kkt` (through
``kkt_terms``, ``primal_ray_terms`` and ``dual_ray_terms`` of :mod:`l2o.pdhg.termination`),
written per element:

    column j (D2 = col_scale, theta_b, theta_c the scalings, tau the primal step):
        x = x^ D2 / theta_b,   aty = (A~^T y^) / (D2 theta_c),
        slack = ((x^ - x_pre) / tau) / (D2 theta_c)
        sums:  (c - aty - slack)^2,  c x,  l_c slack^+ - u_c slack^-,  (x_bar - x^)^2,
               (x^ - x0)^2,  per primal ray k: c (XR_k D2),
               per dual ray k: l_c r_k^+ - u_c r_k^-  with g_k = -(A~^T YR_k) / D2,
               r_k = proj_K(g_k)                          (finite bounds only, as bound_term)
        maxima: per primal ray |XR_k D2|,  per dual ray |g_k - r_k|
    row i (D1 = row_scale):
        y = y^ D1 / theta_c,   ax = (A~ x^) / (D1 theta_b)
        sums:  (ax - proj_[l_r, u_r](ax))^2,  l_r y^+ - u_r y^-,  (y_bar - y^)^2,
               (y_bar - y^)(A~ x_bar - A~ x^),  (y^ - y0)^2,  per dual ray: l_r yr^+ - u_r yr^-
               with yr = YR_k D1
        maxima: per dual ray |YR_k D1|,  per primal ray |A~ XR_k / D1 - proj_rec(A~ XR_k / D1)|

The rays are, in the order of :data:`~l2o.pdhg.termination.RAY_CANDIDATES` ("step",
"epoch", "iterate"), XR_1..3 and YR_1..3; the dual "iterate" ray uses A~^T y^ (y^ already has
the dual's signs).  Results equal the torch check's up to the order of floating-point sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from l2o.lp.kkt import finite_or_zero

from .statistics import CheckStatistics, CheckVectors
from .termination import RAY_CANDIDATES

try:  # Triton ships with CUDA builds of torch; CPU-only installs and CI have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

__all__ = ["FusedCheck", "check_rows", "make_fused_check"]

BLOCK = 1024
COL_SUMS, COL_MAXES = 11, 6
ROW_SUMS, ROW_MAXES = 8, 6


@dataclass
class FusedCheck:
    """The buffers and constants of the fused check of one solve (module docstring).

    Attributes:
        xr, yr: (4, n) and (4, m) ray buffers (row 0: x^ / y^, rows 1-3: the projected rays).
        x, y, reduced_costs: the unscaled point and its dual slack (outputs).
        col_partials, row_partials: per-block partial sums and maxima.
        lc, uc, lr, ur: the finite parts of the column and row bounds (0 where infinite: an
            infinite bound contributes nothing to a dual objective, l2o.lp.kkt).
        thetas: (theta_b, theta_c) as a device tensor (a Python float would reach Triton as
            float32).
        c0, rhs_norm, c_norm, tiny: host constants of the record.
        maxima: (31,) bool, which of the reduced numbers are maxima (the others are sums).
    """

    xr: torch.Tensor
    yr: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    reduced_costs: torch.Tensor
    col_partials: torch.Tensor
    row_partials: torch.Tensor
    lc: torch.Tensor
    uc: torch.Tensor
    lr: torch.Tensor
    ur: torch.Tensor
    thetas: torch.Tensor
    c0: float
    rhs_norm: float
    c_norm: float
    tiny: float
    maxima: torch.Tensor

    @classmethod
    def build(cls, p: Any, t: Any, s: Any) -> FusedCheck:
        """Buffers and constants for the scaled LP ``p``, its :class:`TerminationData` ``t`` and
        the iteration state ``s`` (a few host syncs: once per solve)."""
        n, m = s.x.numel(), s.y.numel()
        like = {"dtype": s.x.dtype, "device": s.x.device}
        e = lambda *shape: torch.zeros(shape, **like)
        return cls(
            xr=e(4, n), yr=e(4, m), x=e(n), y=e(m), reduced_costs=e(n),
            col_partials=e(max(1, triton.cdiv(n, BLOCK)), COL_SUMS + COL_MAXES),
            row_partials=e(max(1, triton.cdiv(m, BLOCK)), ROW_SUMS + ROW_MAXES),
            lc=finite_or_zero(p.orig_col_lower), uc=finite_or_zero(p.orig_col_upper),
            lr=finite_or_zero(p.orig_row_lower), ur=finite_or_zero(p.orig_row_upper),
            thetas=torch.tensor([float(p.bound_scale), float(p.objective_scale)], **like),
            c0=float(p.c0), rhs_norm=float(t.rhs_norm), c_norm=float(t.c_norm),
            tiny=torch.finfo(s.x.dtype).tiny,
            maxima=torch.tensor([False] * COL_SUMS + [True] * COL_MAXES + [False] * ROW_SUMS
                                + [True] * ROW_MAXES, device=s.x.device))

    def statistics(self, p: Any, t: Any, s: Any) -> tuple[torch.Tensor, CheckVectors]:
        """The check's device work for state ``s``: (the 31 reduced numbers, float64; the
        vectors).  No host sync; capturable in a CUDA graph."""
        n, m = s.x.numel(), s.y.numel()
        grid_n, grid_m = (max(1, triton.cdiv(n, BLOCK)),), (max(1, triton.cdiv(m, BLOCK)),)
        _ray_prologue[grid_n](s.x_hat, s.x_bar, s.x0, t.rec_col_lower, t.rec_col_upper,
                              self.xr, n, BLOCK=BLOCK, num_warps=4)
        _ray_prologue[grid_m](s.y_hat, s.y_bar, s.y0, t.dual_rec_lower, t.dual_rec_upper,
                              self.yr, m, BLOCK=BLOCK, num_warps=4)
        # (the products and the reduction through s.parallel: on a sharded LP they gather)
        ax = s.parallel.a_mm(p, self.xr)               # (m, 4): A~ x^ and the primal rays
        aty = s.parallel.at_mm(p, self.yr[:3])         # (n, 3): A~^T y^ and two dual rays
        _column_pass[grid_n](
            s.x_hat, s.x_pre, s.x_bar, s.x0, s.tau, aty, aty.stride(0), aty.stride(1), self.xr,
            p.orig_c, p.col_scale, t.rc_lower, t.rc_upper, self.lc, self.uc,
            self.x, self.reduced_costs, self.col_partials, n, self.thetas,
            BLOCK=BLOCK, WIDTH=COL_SUMS + COL_MAXES, num_warps=4)
        _row_pass[grid_m](
            s.y_hat, s.y_bar, s.y0, s.ax_bar, ax, ax.stride(0), ax.stride(1), self.yr,
            p.row_scale, p.orig_row_lower, p.orig_row_upper, self.lr, self.ur,
            t.rec_row_lower, t.rec_row_upper, self.y, self.row_partials, m, self.thetas,
            BLOCK=BLOCK, WIDTH=ROW_SUMS + ROW_MAXES, num_warps=4)
        cp, rp = self.col_partials, self.row_partials
        reduced = torch.cat([cp[:, :COL_SUMS].sum(0), cp[:, COL_SUMS:].amax(0),
                             rp[:, :ROW_SUMS].sum(0), rp[:, ROW_SUMS:].amax(0)])
        vectors = CheckVectors(
            x=self.x, y=self.y, reduced_costs=self.reduced_costs,
            primal_rays=dict(zip(RAY_CANDIDATES, self.xr[1:])),
            dual_rays=dict(zip(RAY_CANDIDATES, self.yr[1:])), aty_hat=aty[:, 0])
        return s.parallel.combine(reduced.to(torch.float64), self.maxima), vectors

    def record(self, values: list[float], metric_primal: float,
               metric_dual: float) -> CheckStatistics:
        """The :class:`CheckStatistics` of the reduced numbers (host arithmetic)."""
        row = check_rows(np.array([[*values, metric_primal, metric_dual]]), self.c0,
                         self.rhs_norm, self.c_norm, self.tiny)
        return CheckStatistics.from_values(row[0].tolist())


def check_rows(reduced: np.ndarray, c0: Any, rhs_norm: Any, c_norm: Any,
               tiny: float) -> np.ndarray:
    """The check statistics in the flat layout of :meth:`CheckStatistics.from_values`, (P, K),
    of P rows of reduced numbers (the passes' sums and maxima, then the metric's
    omega / eta and 1 / (eta omega)), (P, 31 + 2) float64: float64 host arithmetic, one row
    per LP (:mod:`l2o.pdhg.batch_check` gives one per LP of a stack).  c0, rhs_norm, c_norm:
    floats or (P,) arrays; tiny: the smallest normal number of the iteration's dtype.  nan
    stays nan (the sqrt of a negative sum too)."""
    def take(width: int) -> np.ndarray:
        nonlocal reduced
        part, reduced = reduced[:, :width], reduced[:, width:]
        return part.T

    dual_sq, cx, slack_bound, dx_sq, ex_sq, *col_rays = take(COL_SUMS)
    primal_ray_cx, dual_ray_col_bound = col_rays[:3], col_rays[3:]
    col_max = take(COL_MAXES)
    primal_ray_norm, dual_ray_residual = col_max[:3], col_max[3:]
    primal_sq, y_bound, dy_sq, dy_adx, ey_sq, *dual_ray_row_bound = take(ROW_SUMS)
    row_max = take(ROW_MAXES)
    dual_ray_norm, primal_ray_violation = row_max[:3], row_max[3:]
    metric_primal, metric_dual = take(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        pobj = cx + c0
        dobj = y_bound + slack_bound + c0
        fp_sq = metric_primal * dx_sq + metric_dual * dy_sq + 2.0 * dy_adx
        columns = [np.sqrt(primal_sq) / (1 + rhs_norm), np.sqrt(dual_sq) / (1 + c_norm),
                   np.abs(pobj - dobj) / (1 + np.abs(pobj) + np.abs(dobj)), pobj, dobj,
                   np.sqrt(np.maximum(fp_sq, 0.0)), np.sqrt(ex_sq), np.sqrt(ey_sq)]
        for k in range(len(RAY_CANDIDATES)):
            scale = np.maximum(primal_ray_norm[k], tiny)
            columns += [primal_ray_cx[k] / scale, primal_ray_violation[k] / scale]
        for k in range(len(RAY_CANDIDATES)):
            scale = np.maximum(dual_ray_norm[k], tiny)
            columns += [(dual_ray_row_bound[k] + dual_ray_col_bound[k]) / scale,
                        dual_ray_residual[k] / scale]
    return np.stack(columns, axis=1)


def make_fused_check(p: Any, t: Any, s: Any) -> FusedCheck | None:
    """The fused check of this solve, or None where it does not run (no Triton, not CUDA, or
    the iteration runs the torch ops): the torch check serves then."""
    if triton is None or s.fused_plan is None or s.x.device.type != "cuda":
        return None
    return FusedCheck.build(p, t, s)


if triton is not None:

    @triton.jit
    def _clamp(v, lo, hi):
        return tl.minimum(tl.maximum(v, lo), hi)

    # lengths and strides are not specialized on: one compilation per dtype serves every LP
    @triton.jit(do_not_specialize=["k"])
    def _ray_prologue(hat_ptr, bar_ptr, anchor_ptr, lo_ptr, hi_ptr, out_ptr, k,
                      BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < k
        hat = tl.load(hat_ptr + offs, mask=mask, other=0.0)
        bar = tl.load(bar_ptr + offs, mask=mask, other=0.0)
        anchor = tl.load(anchor_ptr + offs, mask=mask, other=0.0)
        lo = tl.load(lo_ptr + offs, mask=mask, other=0.0)
        hi = tl.load(hi_ptr + offs, mask=mask, other=0.0)
        tl.store(out_ptr + offs, hat, mask=mask)
        tl.store(out_ptr + k + offs, _clamp(bar - hat, lo, hi), mask=mask)
        tl.store(out_ptr + 2 * k + offs, _clamp(hat - anchor, lo, hi), mask=mask)
        tl.store(out_ptr + 3 * k + offs, _clamp(hat, lo, hi), mask=mask)

    @triton.jit
    def _bound_products(v, lo, hi):
        """l v^+ - u v^- of finite parts l, u (l2o.lp.kkt.bound_products)."""
        return lo * tl.maximum(v, 0.0) + hi * tl.minimum(v, 0.0)

    @triton.jit
    def _column_terms(offs, mask, tau, theta_b, theta_c, x_hat_ptr, x_pre_ptr, x_bar_ptr,
                      x0_ptr, aty_ptr, aty_s0, aty_s1, xr_ptr, c_ptr, d2_ptr, rc_lo_ptr,
                      rc_hi_ptr, lc_ptr, uc_ptr, x_out_ptr, r_out_ptr, out, n):
        """The column pass of the entries ``offs`` (module docstring): stores x and the reduced
        costs there, and at ``out`` their 11 sums and 6 maxima.  tau, theta_b, theta_c: scalars
        for one LP, per-entry blocks for a stack of LPs (l2o.pdhg.batch_check)."""
        x_hat = tl.load(x_hat_ptr + offs, mask=mask, other=0.0)
        x_pre = tl.load(x_pre_ptr + offs, mask=mask, other=0.0)
        x_bar = tl.load(x_bar_ptr + offs, mask=mask, other=0.0)
        x0 = tl.load(x0_ptr + offs, mask=mask, other=0.0)
        d2 = tl.load(d2_ptr + offs, mask=mask, other=1.0)
        c = tl.load(c_ptr + offs, mask=mask, other=0.0)
        rc_lo = tl.load(rc_lo_ptr + offs, mask=mask, other=0.0)
        rc_hi = tl.load(rc_hi_ptr + offs, mask=mask, other=0.0)
        lc = tl.load(lc_ptr + offs, mask=mask, other=0.0)
        uc = tl.load(uc_ptr + offs, mask=mask, other=0.0)
        aty_row = aty_ptr + offs * aty_s0
        aty = tl.load(aty_row, mask=mask, other=0.0) / (d2 * theta_c)
        x = x_hat * d2 / theta_b
        slack = (x_hat - x_pre) / tau / (d2 * theta_c)
        tl.store(x_out_ptr + offs, x, mask=mask)
        tl.store(r_out_ptr + offs, slack, mask=mask)   # the reduced costs: the slack checked
        dual = c - aty - slack
        tl.store(out + 0, tl.sum(tl.where(mask, dual * dual, 0.0), axis=0))
        tl.store(out + 1, tl.sum(tl.where(mask, c * x, 0.0), axis=0))
        tl.store(out + 2, tl.sum(tl.where(mask, _bound_products(slack, lc, uc), 0.0), axis=0))
        dx = x_bar - x_hat
        tl.store(out + 3, tl.sum(tl.where(mask, dx * dx, 0.0), axis=0))
        ex = x_hat - x0
        tl.store(out + 4, tl.sum(tl.where(mask, ex * ex, 0.0), axis=0))
        for k in tl.static_range(3):
            # the primal rays (XR rows 1-3) and the dual rays (A~^T YR: columns 1, 2, then 0)
            xr = tl.load(xr_ptr + (k + 1) * n + offs, mask=mask, other=0.0) * d2
            tl.store(out + 5 + k, tl.sum(tl.where(mask, c * xr, 0.0), axis=0))
            tl.store(out + 11 + k, tl.max(tl.where(mask, tl.abs(xr), 0.0), axis=0))
            column = (k + 1) % 3
            g = -tl.load(aty_row + column * aty_s1, mask=mask, other=0.0) / d2
            r = _clamp(g, rc_lo, rc_hi)
            tl.store(out + 8 + k, tl.sum(tl.where(mask, _bound_products(r, lc, uc), 0.0),
                                         axis=0))
            tl.store(out + 14 + k, tl.max(tl.where(mask, tl.abs(g - r), 0.0), axis=0))

    @triton.jit(do_not_specialize=["aty_s0", "aty_s1", "n"])
    def _column_pass(x_hat_ptr, x_pre_ptr, x_bar_ptr, x0_ptr, tau_ptr, aty_ptr, aty_s0, aty_s1,
                     xr_ptr, c_ptr, d2_ptr, rc_lo_ptr, rc_hi_ptr, lc_ptr, uc_ptr,
                     x_out_ptr, r_out_ptr, partial_ptr, n, theta_ptr,
                     BLOCK: tl.constexpr, WIDTH: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        _column_terms(offs, offs < n, tl.load(tau_ptr), tl.load(theta_ptr),
                      tl.load(theta_ptr + 1), x_hat_ptr, x_pre_ptr, x_bar_ptr, x0_ptr, aty_ptr,
                      aty_s0, aty_s1, xr_ptr, c_ptr, d2_ptr, rc_lo_ptr, rc_hi_ptr, lc_ptr, uc_ptr,
                      x_out_ptr, r_out_ptr, partial_ptr + pid * WIDTH, n)

    @triton.jit
    def _row_terms(offs, mask, theta_b, theta_c, y_hat_ptr, y_bar_ptr, y0_ptr, ax_bar_ptr,
                   ax_ptr, ax_s0, ax_s1, yr_ptr, d1_ptr, row_lo_ptr, row_hi_ptr, lr_ptr, ur_ptr,
                   rec_lo_ptr, rec_hi_ptr, y_out_ptr, out, m):
        """The row pass of the entries ``offs``: stores y there, and at ``out`` its 8 sums and
        6 maxima (theta_b, theta_c as in :func:`_column_terms`)."""
        y_hat = tl.load(y_hat_ptr + offs, mask=mask, other=0.0)
        y_bar = tl.load(y_bar_ptr + offs, mask=mask, other=0.0)
        y0 = tl.load(y0_ptr + offs, mask=mask, other=0.0)
        ax_bar = tl.load(ax_bar_ptr + offs, mask=mask, other=0.0)
        d1 = tl.load(d1_ptr + offs, mask=mask, other=1.0)
        row_lo = tl.load(row_lo_ptr + offs, mask=mask, other=0.0)
        row_hi = tl.load(row_hi_ptr + offs, mask=mask, other=0.0)
        lr = tl.load(lr_ptr + offs, mask=mask, other=0.0)
        ur = tl.load(ur_ptr + offs, mask=mask, other=0.0)
        rec_lo = tl.load(rec_lo_ptr + offs, mask=mask, other=0.0)
        rec_hi = tl.load(rec_hi_ptr + offs, mask=mask, other=0.0)
        ax_row = ax_ptr + offs * ax_s0
        ax_hat = tl.load(ax_row, mask=mask, other=0.0)
        y = y_hat * d1 / theta_c
        ax = ax_hat / (d1 * theta_b)
        tl.store(y_out_ptr + offs, y, mask=mask)
        primal = ax - _clamp(ax, row_lo, row_hi)
        tl.store(out + 0, tl.sum(tl.where(mask, primal * primal, 0.0), axis=0))
        tl.store(out + 1, tl.sum(tl.where(mask, _bound_products(y, lr, ur), 0.0), axis=0))
        dy = y_bar - y_hat
        tl.store(out + 2, tl.sum(tl.where(mask, dy * dy, 0.0), axis=0))
        tl.store(out + 3, tl.sum(tl.where(mask, dy * (ax_bar - ax_hat), 0.0), axis=0))
        ey = y_hat - y0
        tl.store(out + 4, tl.sum(tl.where(mask, ey * ey, 0.0), axis=0))
        for k in tl.static_range(3):
            yr = tl.load(yr_ptr + (k + 1) * m + offs, mask=mask, other=0.0) * d1
            tl.store(out + 5 + k, tl.sum(tl.where(mask, _bound_products(yr, lr, ur), 0.0),
                                         axis=0))
            tl.store(out + 8 + k, tl.max(tl.where(mask, tl.abs(yr), 0.0), axis=0))
            axr = tl.load(ax_row + (k + 1) * ax_s1, mask=mask, other=0.0) / d1
            violation = axr - _clamp(axr, rec_lo, rec_hi)
            tl.store(out + 11 + k, tl.max(tl.where(mask, tl.abs(violation), 0.0), axis=0))

    @triton.jit(do_not_specialize=["ax_s0", "ax_s1", "m"])
    def _row_pass(y_hat_ptr, y_bar_ptr, y0_ptr, ax_bar_ptr, ax_ptr, ax_s0, ax_s1, yr_ptr,
                  d1_ptr, row_lo_ptr, row_hi_ptr, lr_ptr, ur_ptr, rec_lo_ptr, rec_hi_ptr,
                  y_out_ptr, partial_ptr, m, theta_ptr,
                  BLOCK: tl.constexpr, WIDTH: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        _row_terms(offs, offs < m, tl.load(theta_ptr), tl.load(theta_ptr + 1), y_hat_ptr,
                   y_bar_ptr, y0_ptr, ax_bar_ptr, ax_ptr, ax_s0, ax_s1, yr_ptr, d1_ptr,
                   row_lo_ptr, row_hi_ptr, lr_ptr, ur_ptr, rec_lo_ptr, rec_hi_ptr, y_out_ptr,
                   partial_ptr + pid * WIDTH, m)
