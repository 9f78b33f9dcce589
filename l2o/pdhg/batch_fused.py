"""Triton kernels for the iteration of a stack of LPs (``solve_lp_batch(..., fused=True)``).

The iteration of :func:`l2o.pdhg.iteration.halpern_iteration` on a
:class:`~l2o.pdhg.batch_state.BatchState` launches ~15 kernels: a stack of B LPs has its step
sizes and Halpern weight per LP, spread over the LP's entries (``tau`` (n,), ``neg_sigma`` (m,),
``weight`` (n + m,)).  Here the elementwise updates are fused as :mod:`l2o.pdhg.fused` fuses
them for one LP, with the same math and buffers, the scalars read per entry:

    aty = A~^T y                           (the fused plan's cuSPARSE product)
    primal kernel, per column j:
        x_pre = x + tau_j (aty - c)        x^ = clamp(x_pre, l_c, u_c)
        x_bar = 2 x^ - x                   x  <- x_bar - (1 - w_j) (x_bar - x0)
        w_j <- 1 / (2 - w_j)
    ax_bar = A~ x_bar                      (cuSPARSE)
    dual kernel, per row i:
        v = y + (-sigma_i) ax_bar          y^ = v - clamp(v, -sigma_i u_r, -sigma_i l_r)
        y_bar = 2 y^ - y                   y  <- y_bar - (1 - w_i) (y_bar - y0)
        w_i <- 1 / (2 - w_i)

Every entry has its own weight (the columns' are read by the primal kernel only, the rows' by
the dual kernel only), so each program advances the weights of its own entries, with no
scratch copy.  x_pre, x^, y^ and y_bar are stored only in the iteration before a check
(``last``), as in the single-LP kernels.  ``s.grad`` is not used (A~^T y is computed at the
start of each iteration).  The Halpern update is written as torch.lerp evaluates it for
w >= 1/2, so both paths round alike up to the products' order of summation.

The plans are the single LP's (:func:`l2o.pdhg.fused.make_plan`, "auto", without "mixed"): "elementwise" (the
two kernels above and cuSPARSE's products, 4 launches) or, when every row of A~ and of A~^T is
short, "spmv" (the products computed inside the two kernels, CSR tiles of rows, as the single
LP's "spmv" kernels: 2 launches).  A stack's rows are its LPs' rows, so a stack of LPs whose
rows are short is as short-rowed as one of them, and an iteration of a small stack (the few
LPs left at the end of a batch) launches as many kernels as solve_lp's iteration of one.
"""

from __future__ import annotations

from typing import Any

import torch

from .fused import BLOCK, SPMV_TILES, FusedPlan, available, make_plan

try:  # Triton ships with CUDA builds of torch; CPU-only installs and CI have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

__all__ = ["FUSED_MODES", "batch_iteration_fused", "batch_restart_fused", "make_batch_plan"]

# solve_lp_batch's values of ``fused``
FUSED_MODES = (True, False, "auto", "elementwise", "spmv")


def make_batch_plan(p: Any, s: Any, mode: Any, sparse_products: str) -> FusedPlan | None:
    """The plan of the fused batch iteration (the single-LP plan "auto" of
    :func:`l2o.pdhg.fused.make_plan` on the stack's buffers: "spmv" when every row is short,
    else "elementwise"), or None for the torch ops.

    Args:
        p, s: the :class:`~l2o.pdhg.stack.StackedLP` and its BatchState.
        mode: False (the torch ops), True (the Triton kernels, plan as "auto"; ValueError
            where they cannot run), "auto" (where they can), or "elementwise" / "spmv" (that
            plan; ValueError where it cannot run).
        sparse_products: ``SolverOptions.sparse_products``.
    """
    if mode is False:
        return None
    if mode not in FUSED_MODES:
        raise ValueError(f"solve_lp_batch: fused must be one of {FUSED_MODES}, got {mode!r}")
    if not available(s.x.device):
        if mode == "auto":
            return None
        raise ValueError(f"solve_lp_batch: fused={mode!r} needs CUDA and Triton")
    plan = make_plan(p, s, "auto" if mode is True else mode, sparse_products,
                     plans=("spmv", "elementwise"))
    _compile_once(s.x.dtype, s.x.device)
    return plan


_COMPILED: set[tuple[torch.dtype, torch.device]] = set()


def _compile_once(dtype: torch.dtype, device: torch.device) -> None:
    """Compile every variant of the kernels for this dtype once per process, on scratch
    buffers, so that none is compiled inside a CUDA graph capture: both plans (the "spmv" one
    with each CSR tile), STORE on and off, and the weights at an address aligned to 16 bytes
    or not (Triton specializes pointers on it; the rows' weights are a view at offset n of
    ``s.weight``)."""
    key = (dtype, torch.device(device))
    if key in _COMPILED:
        return
    from types import SimpleNamespace

    from bilevel.linalg.operators import csr_tensor

    f = lambda: torch.zeros(4, dtype=dtype, device=device)
    eye = csr_tensor(torch.arange(5, dtype=torch.int32, device=device),
                     torch.arange(4, dtype=torch.int32, device=device),
                     torch.ones(4, dtype=dtype, device=device), (4, 4))
    p = SimpleNamespace(c=f(), col_lower=f(), col_upper=f(),
                        op=SimpleNamespace(csr=eye, csr_t=eye))
    weight = torch.full((6,), 0.5, dtype=dtype, device=device)
    plans = [FusedPlan(False, f(), aty=f(), product_a=lambda: None, product_at=lambda: None)]
    plans += [FusedPlan(True, f(), tile, tile) for tile in SPMV_TILES]
    for start in (0, 1):
        w = weight[start:start + 4]
        s = SimpleNamespace(x=f(), y=f(), x0=f(), y0=f(), x_pre=f(), x_hat=f(), y_hat=f(),
                            x_bar=f(), y_bar=f(), ax_bar=f(), tau=f(), neg_sigma=f(),
                            dual_lower=f(), dual_upper=f(), weight_x=w, weight_y=w)
        for plan in plans:
            for last in (True, False):
                batch_iteration_fused(p, s, plan, last)
    torch.cuda.synchronize(device)
    _COMPILED.add(key)


def batch_iteration_fused(p: Any, s: Any, plan: FusedPlan, last: bool = True) -> None:
    """One reflected-Halpern iteration of every LP of the stack, in place (module docstring):
    the two kernels of ``plan`` (and its two products in the "elementwise" plan); no host
    sync."""
    n, m = s.x.numel(), s.y.numel()
    if plan.spmv:
        at, (rows, k) = p.op.csr_t, plan.tile_at
        _batch_primal_spmv_kernel[(max(1, triton.cdiv(n, rows)),)](
            at.crow_indices(), at.col_indices(), at.values(), s.y, p.c, s.x, p.col_lower,
            p.col_upper, s.x0, s.x_pre, s.x_hat, s.x_bar, s.tau, s.weight_x, n,
            ROWS=rows, K=k, STORE=last, num_warps=4)
        a, (rows, k) = p.op.csr, plan.tile_a
        _batch_dual_spmv_kernel[(max(1, triton.cdiv(m, rows)),)](
            a.crow_indices(), a.col_indices(), a.values(), s.x_bar, s.ax_bar, s.y,
            s.dual_lower, s.dual_upper, s.y0, s.y_hat, s.y_bar, s.neg_sigma, s.weight_y, m,
            ROWS=rows, K=k, STORE=last, num_warps=4)
        return
    plan.product_at()
    _batch_primal_kernel[(max(1, triton.cdiv(n, BLOCK)),)](
        plan.aty, p.c, s.x, p.col_lower, p.col_upper, s.x0, s.x_pre, s.x_hat, s.x_bar,
        s.tau, s.weight_x, n, BLOCK=BLOCK, STORE=last, num_warps=4)
    plan.product_a()
    _batch_dual_kernel[(max(1, triton.cdiv(m, BLOCK)),)](
        s.ax_bar, s.y, s.dual_lower, s.dual_upper, s.y0, s.y_hat, s.y_bar, s.neg_sigma,
        s.weight_y, m, BLOCK=BLOCK, STORE=last, num_warps=4)


def batch_restart_fused(p: Any, s: Any, per_lp: torch.Tensor, x: torch.Tensor,
                        y: torch.Tensor, aty: torch.Tensor) -> None:
    """:meth:`~l2o.pdhg.batch_state.BatchState.restart_lps` and ``set_steps`` in two kernels
    (one per index), in place: ``per_lp`` (B, 3) holds per LP (1 if it restarts else 0,
    tau_b, -sigma_b) in the state's dtype.  Entry j of LP b gets tau_j = tau_b (a column) or
    -sigma_b and the dual bounds -sigma_b u_r, -sigma_b l_r (a row); where b restarts, the
    anchor and iterate become x (y), A~^T y - c is aty - c and the Halpern weight 1/2.  The
    same arithmetic as the torch ops, so the state is the same to the bit.  ``aty`` may be
    strided (a column of the fused check's products)."""
    n, m = s.x.numel(), s.y.numel()
    _batch_restart_columns[(max(1, triton.cdiv(n, BLOCK)),)](
        p.col_lp, per_lp, x, aty, aty.stride(0), p.c, s.x0, s.x, s.grad, s.tau, s.weight_x, n,
        BLOCK=BLOCK, num_warps=4)
    _batch_restart_rows[(max(1, triton.cdiv(m, BLOCK)),)](
        p.row_lp, per_lp, y, p.row_lower, p.row_upper, s.y0, s.y, s.neg_sigma, s.dual_lower,
        s.dual_upper, s.weight_y, m, BLOCK=BLOCK, num_warps=4)


if triton is not None:
    # the single-LP kernels' update math, with per-entry steps and Halpern weights
    from .fused import _csr_rows_dot, _dual_update, _primal_update

    @triton.jit(do_not_specialize=["n"])
    def _batch_primal_kernel(aty_ptr, c_ptr, x_ptr, lo_ptr, hi_ptr, x0_ptr, x_pre_ptr,
                             x_hat_ptr, x_bar_ptr, tau_ptr, weight_ptr, n,
                             BLOCK: tl.constexpr, STORE: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(aty_ptr + offs, mask=mask, other=0.0) - tl.load(c_ptr + offs, mask=mask,
                                                                     other=0.0)
        tau = tl.load(tau_ptr + offs, mask=mask, other=0.0)
        w = tl.load(weight_ptr + offs, mask=mask, other=0.5)
        _primal_update(g, tau, w, offs, mask, x_ptr, lo_ptr, hi_ptr, x0_ptr, x_pre_ptr,
                       x_hat_ptr, x_bar_ptr, STORE)
        tl.store(weight_ptr + offs, 1.0 / (2.0 - w), mask=mask)

    @triton.jit(do_not_specialize=["m"])
    def _batch_dual_kernel(ax_ptr, y_ptr, lo_ptr, hi_ptr, y0_ptr, y_hat_ptr, y_bar_ptr,
                           neg_sigma_ptr, weight_ptr, m,
                           BLOCK: tl.constexpr, STORE: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < m
        ax = tl.load(ax_ptr + offs, mask=mask, other=0.0)
        neg_sigma = tl.load(neg_sigma_ptr + offs, mask=mask, other=0.0)
        w = tl.load(weight_ptr + offs, mask=mask, other=0.5)
        _dual_update(ax, neg_sigma, w, offs, mask, y_ptr, lo_ptr, hi_ptr, y0_ptr, y_hat_ptr,
                     y_bar_ptr, STORE)
        tl.store(weight_ptr + offs, 1.0 / (2.0 - w), mask=mask)

    @triton.jit(do_not_specialize=["n"])
    def _batch_primal_spmv_kernel(crow_ptr, col_ptr, val_ptr, y_ptr, c_ptr, x_ptr, lo_ptr,
                                  hi_ptr, x0_ptr, x_pre_ptr, x_hat_ptr, x_bar_ptr, tau_ptr,
                                  weight_ptr, n, ROWS: tl.constexpr, K: tl.constexpr,
                                  STORE: tl.constexpr):
        offs = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        mask = offs < n
        g = _csr_rows_dot(crow_ptr, col_ptr, val_ptr, y_ptr, offs, mask, ROWS, K)
        g = g - tl.load(c_ptr + offs, mask=mask, other=0.0)
        tau = tl.load(tau_ptr + offs, mask=mask, other=0.0)
        w = tl.load(weight_ptr + offs, mask=mask, other=0.5)
        _primal_update(g, tau, w, offs, mask, x_ptr, lo_ptr, hi_ptr, x0_ptr, x_pre_ptr,
                       x_hat_ptr, x_bar_ptr, STORE)
        tl.store(weight_ptr + offs, 1.0 / (2.0 - w), mask=mask)

    @triton.jit(do_not_specialize=["m"])
    def _batch_dual_spmv_kernel(crow_ptr, col_ptr, val_ptr, x_bar_ptr, ax_ptr, y_ptr, lo_ptr,
                                hi_ptr, y0_ptr, y_hat_ptr, y_bar_ptr, neg_sigma_ptr,
                                weight_ptr, m, ROWS: tl.constexpr, K: tl.constexpr,
                                STORE: tl.constexpr):
        offs = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        mask = offs < m
        ax = _csr_rows_dot(crow_ptr, col_ptr, val_ptr, x_bar_ptr, offs, mask, ROWS, K)
        if STORE:       # A~ x_bar: the check reads it (as the single LP's "spmv" kernel)
            tl.store(ax_ptr + offs, ax, mask=mask)
        neg_sigma = tl.load(neg_sigma_ptr + offs, mask=mask, other=0.0)
        w = tl.load(weight_ptr + offs, mask=mask, other=0.5)
        _dual_update(ax, neg_sigma, w, offs, mask, y_ptr, lo_ptr, hi_ptr, y0_ptr, y_hat_ptr,
                     y_bar_ptr, STORE)
        tl.store(weight_ptr + offs, 1.0 / (2.0 - w), mask=mask)

    @triton.jit(do_not_specialize=["aty_stride", "n"])
    def _batch_restart_columns(lp_ptr, per_lp_ptr, x_ptr, aty_ptr, aty_stride, c_ptr, x0_ptr,
                               xs_ptr, grad_ptr, tau_ptr, weight_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        lp = tl.load(lp_ptr + offs, mask=mask, other=0)
        tl.store(tau_ptr + offs, tl.load(per_lp_ptr + 3 * lp + 1, mask=mask), mask=mask)
        restart = mask & (tl.load(per_lp_ptr + 3 * lp, mask=mask, other=0.0) != 0.0)
        x = tl.load(x_ptr + offs, mask=restart)
        tl.store(x0_ptr + offs, x, mask=restart)
        tl.store(xs_ptr + offs, x, mask=restart)
        aty = tl.load(aty_ptr + offs * aty_stride, mask=restart)
        tl.store(grad_ptr + offs, aty - tl.load(c_ptr + offs, mask=restart), mask=restart)
        tl.store(weight_ptr + offs, tl.full([BLOCK], 0.5, weight_ptr.dtype.element_ty),
                 mask=restart)

    @triton.jit(do_not_specialize=["m"])
    def _batch_restart_rows(lp_ptr, per_lp_ptr, y_ptr, lower_ptr, upper_ptr, y0_ptr, ys_ptr,
                            neg_sigma_ptr, dual_lower_ptr, dual_upper_ptr, weight_ptr, m,
                            BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < m
        lp = tl.load(lp_ptr + offs, mask=mask, other=0)
        neg_sigma = tl.load(per_lp_ptr + 3 * lp + 2, mask=mask)
        tl.store(neg_sigma_ptr + offs, neg_sigma, mask=mask)
        tl.store(dual_lower_ptr + offs, tl.load(upper_ptr + offs, mask=mask) * neg_sigma,
                 mask=mask)
        tl.store(dual_upper_ptr + offs, tl.load(lower_ptr + offs, mask=mask) * neg_sigma,
                 mask=mask)
        restart = mask & (tl.load(per_lp_ptr + 3 * lp, mask=mask, other=0.0) != 0.0)
        y = tl.load(y_ptr + offs, mask=restart)
        tl.store(y0_ptr + offs, y, mask=restart)
        tl.store(ys_ptr + offs, y, mask=restart)
        tl.store(weight_ptr + offs, tl.full([BLOCK], 0.5, weight_ptr.dtype.element_ty),
                 mask=restart)
