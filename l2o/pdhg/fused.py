"""Triton kernels for one reflected-Halpern PDHG iteration on CUDA (the ``fused`` option).

The torch iteration (:func:`l2o.pdhg.iteration.halpern_iteration`) launches ~17 kernels; on a small
LP each costs ~1.7 us of launch latency even inside a CUDA graph, so the latency, not the
arithmetic, sets the time of an iteration.  Here the elementwise updates are fused, with the same
math and the same buffers (the termination check reads them):

    g = A~^T y - c~                        (cuSPARSE CSR_ALG2 into ``aty``, or in the kernel)
    primal kernel, per column j:
        x_pre = x + tau g                  x^ = clamp(x_pre, l_c, u_c)
        x_bar = 2 x^ - x                   x  <- x_bar - (1 - w) (x_bar - x0)      (Halpern)
    ax_bar = A~ x_bar                      (cuSPARSE CSR_ALG2, or computed in the dual kernel)
    dual kernel, per row i:
        v = y - sigma ax_bar               y^ = v - clamp(v, -sigma u_r, -sigma l_r)
        y_bar = 2 y^ - y                   y  <- y_bar - (1 - w) (y_bar - y0)
        w <- 1 / (2 - w)                   (one program, after every program has read w)

Only the iteration before a check stores x_pre, x^, y^ and y_bar (``last=True``): the others
skip those 4 vector writes (2 of length n, 2 of length m), as cuPDLPx's plain iterations do
between its "major" ones.

The Halpern update z <- w z_bar + (1 - w) z0 is written as torch.lerp evaluates it for
w >= 1/2, so both paths round alike.  The weight w is read by every program of both kernels, so
it cannot be overwritten in place while they run: the primal kernel's first program copies it to
a scratch scalar ``weight_old`` (which the primal kernel never reads), and the dual kernel reads
``weight_old`` and writes ``w`` (which the dual kernel never reads).  Scalars (tau, -sigma, w) are
0-d device tensors loaded in the kernels: no host sync, and the kernels can be captured in the
solver's CUDA graph.

Three plans:
  * "elementwise": 2 Triton kernels + the two cuSPARSE products;
  * "spmv": the products are computed in the kernels themselves (CSR rows, a tile of
    ``rows x nnz`` per program, looping over the longest row of the tile), 2 kernels in all.
    One long row makes its tile loop long, so this plan is picked only when every row of A~ and
    of A~^T is short (:data:`SPMV_MAX_ROW_TRIPS`): small and medium LPs, where launch latency
    dominates.  Long rows (PageRank's sum x = 1 row) keep cuSPARSE's balanced products.
  * "mixed": A~^T y in the primal kernel (short columns), A~ x_bar by cuSPARSE (long rows, as
    rail516's 516 rows of ~610 nonzeros), then the elementwise dual kernel: 2 kernels + 1
    product, and no A~^T y vector written and read back.  Picked when the columns are short
    and the LP is of medium size (:func:`auto_plan`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bilevel.linalg.cusparse import csr_spmv

from .options import SPARSE_PRODUCTS, SPARSE_PRODUCTS_DEFAULT

try:  # Triton ships with CUDA builds of torch; CPU-only installs and CI have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

__all__ = ["FusedPlan", "auto_plan", "available", "halpern_iteration_fused", "make_plan"]

# Elements per program of the elementwise kernels.
BLOCK = 1024
# The "spmv" plan is used ("auto") when the longest row of A~ and of A~^T needs at most this
# many trips of the tile loop.  Measured on an H100 (benchmarks/lp_fused_micro.py, float64): a
# trip costs ~0.5 us, the "elementwise" plan ~19-26 us per iteration on LPs up to ~15k rows, the
# "spmv" plan 4.5-14 us with up to 15 trips; osa-07 (a row of 17,612 nonzeros) 404 us instead of
# 25, PageRank (the sum x = 1 row) 100 ms instead of 0.23 ms.
SPMV_MAX_ROW_TRIPS = 16
# (rows per program, nonzeros per row per trip) of the CSR tiles; one is chosen per matrix.
SPMV_TILES = ((128, 8), (32, 32))
# The "mixed" plan is used ("auto") when some row of A~ is long but every column fits the narrow
# tile, on LPs of at most this many nonzeros.  Measured on the H200 (benchmarks/lp_periter.py,
# RESULTS.md, 2026-12-04 00:00 UTC), us per iteration elementwise -> mixed: osa-07 19.7 -> 13.6,
# cre-d 22.5 -> 15.3, cre-b 21.5 -> 16.1, t0331-4l 18.1 -> 16.1, rail516 15.7 -> 14.6, nemswrld
# 19.8 -> 18.2, nemsemm2 17.0 -> 17.0 (0.14-0.43M nonzeros); dbir2 (1.1M, wide column tile)
# 27.9 -> 28.8; PageRank 1e6 (8M) 121 -> 176: on large LPs cuSPARSE's balanced A~^T y wins.
MIXED_MAX_NNZ = 1 << 21
# The plans in the order "auto" considers them.
PLANS = ("spmv", "mixed", "elementwise")


def available(device: torch.device | str) -> bool:
    """True when the fused kernels can run on ``device`` (CUDA and an importable Triton)."""
    return triton is not None and torch.device(device).type == "cuda"


@dataclass
class FusedPlan:
    """How :func:`halpern_iteration_fused` runs the iteration of one solve.

    Attributes:
        spmv: the products A~ x_bar and A~^T y are computed in the Triton kernels.
        mixed: (with ``spmv`` False) A~^T y is computed in the primal kernel and A~ x_bar by
            ``product_a`` (the "mixed" plan).
        weight_old: 0-d scratch holding the Halpern weight the current iteration reads.
        tile_a, tile_at: (rows per program, nonzeros per trip) of A~ and A~^T (where the
            kernels compute that product).
        aty: (n,) A~^T y of the iteration's y ("elementwise" only).
        product_a, product_at: ax_bar <- A~ x_bar and aty <- A~^T y on the state's buffers
            (where the kernels do not compute that product): cuSPARSE
            (:mod:`bilevel.linalg.cusparse`) where it can be called, else ``torch.mv``.
        exchange: None, or a sharded solve's all-gathers of x_bar and y
            (:class:`l2o.pdhg.distributed.IterationExchange`): the products read its whole
            ``x_bar`` and ``y`` (this process's slices live in them), which its
            ``gather_x_bar()`` and ``gather_y()`` fill before each product.
    """

    spmv: bool
    weight_old: torch.Tensor
    tile_a: tuple[int, int] = SPMV_TILES[0]
    tile_at: tuple[int, int] = SPMV_TILES[0]
    aty: torch.Tensor | None = None
    product_a: Callable[[], None] | None = None
    product_at: Callable[[], None] | None = None
    exchange: Any = None
    mixed: bool = False


def _row_stats(csr: torch.Tensor) -> tuple[float, int]:
    """(mean, max) number of nonzeros per row of a CSR tensor (one host sync, at setup)."""
    crow = csr.crow_indices()
    if crow.numel() <= 1:
        return 0.0, 0
    lengths = crow[1:] - crow[:-1]
    return float(lengths.double().mean()), int(lengths.max())


def _tile_for(mean_len: float, max_len: int) -> tuple[int, int]:
    """The narrow CSR tile for short rows, the wide one (fewer trips) when some row is long."""
    return SPMV_TILES[0] if mean_len <= 12 and max_len <= 64 else SPMV_TILES[1]


def auto_plan(stats_a: tuple[float, int], stats_at: tuple[float, int], nnz: int,
              plans: tuple[str, ...] = PLANS) -> str:
    """The plan "auto" picks from the row lengths of A~ and A~^T.

    "spmv" when every row of both needs at most :data:`SPMV_MAX_ROW_TRIPS` trips of its tile
    (launch latency dominates); else "mixed" when only A~'s rows are long, every row of A~^T
    (column of A~) fits the narrow tile, and nnz <= :data:`MIXED_MAX_NNZ`; else "elementwise"
    (cuSPARSE's balanced products).  A plan not in ``plans`` is skipped.

    Args:
        stats_a, stats_at: (mean, max) nonzeros per row of A~ and of A~^T.
        nnz: nonzeros of A~.
        plans: the plans the caller's kernels implement.
    """
    tile_a, tile_at = _tile_for(*stats_a), _tile_for(*stats_at)
    short_a = stats_a[1] <= SPMV_MAX_ROW_TRIPS * tile_a[1]
    short_at = stats_at[1] <= SPMV_MAX_ROW_TRIPS * tile_at[1]
    if "spmv" in plans and short_a and short_at:
        return "spmv"
    if "mixed" in plans and tile_at == SPMV_TILES[0] and nnz <= MIXED_MAX_NNZ:
        return "mixed"
    return "elementwise"


def make_plan(p: Any, s: Any, mode: Any = "auto",
              sparse_products: str = SPARSE_PRODUCTS_DEFAULT,
              exchange: Any = None, plans: tuple[str, ...] = PLANS) -> FusedPlan | None:
    """The plan for ``SolverOptions.fused = mode`` on this LP and state, or None (torch path).

    Args:
        p: the ScaledLP (its ``op.csr`` / ``op.csr_t`` on the solve's device).
        s: the IterationState.
        mode: "auto" (Triton when available, the plan of :func:`auto_plan`), True (Triton,
            plan as "auto"; error when unavailable), False (torch), "elementwise", "spmv" or
            "mixed" (that plan; error when unavailable).
        sparse_products: ``SolverOptions.sparse_products``.
        exchange: :attr:`FusedPlan.exchange` (None: one process).
        plans: the plans "auto" may pick (the batch's kernels have no "mixed").

    Raises:
        ValueError: an unknown mode, or Triton forced where it cannot run.
    """
    if mode is False or mode == "off":
        return None
    if mode not in ("auto", True, "elementwise", "spmv", "mixed"):
        raise ValueError(f"solve_lp: fused must be 'auto', True, False, 'elementwise', 'spmv' "
                         f"or 'mixed', got {mode!r}")
    if not available(s.x.device):
        if mode == "auto":
            return None
        why = "Triton is not installed" if triton is None else "the solve is not on CUDA"
        raise ValueError(f"solve_lp: fused={mode!r} needs CUDA and Triton ({why})")
    stats_a, stats_at = _row_stats(p.op.csr), _row_stats(p.op.csr_t)
    tile_a, tile_at = _tile_for(*stats_a), _tile_for(*stats_at)
    if mode in ("auto", True):
        mode = auto_plan(stats_a, stats_at, p.op.csr.values().numel(), plans)
    spmv = mode == "spmv"
    _compile_once(s.x.dtype, s.x.device)
    plan = FusedPlan(spmv=spmv, weight_old=torch.empty_like(s.weight), tile_a=tile_a,
                     tile_at=tile_at, exchange=exchange, mixed=mode == "mixed")
    algorithm = SPARSE_PRODUCTS[sparse_products]
    x_bar, y = _product_inputs(s, plan)
    if not spmv:
        plan.product_a = _product(p.op.csr, x_bar, s.ax_bar, algorithm)
    if not (spmv or plan.mixed):
        plan.aty = torch.empty_like(s.x)
        plan.product_at = _product(p.op.csr_t, y, plan.aty, algorithm)
    return plan


def _product(A: torch.Tensor, x: torch.Tensor, out: torch.Tensor,
             algorithm: str | None) -> Callable[[], None]:
    """out <- A x on fixed buffers: cuSPARSE's ``algorithm`` (analysed once) if one is asked
    and possible, else torch.mv."""
    spmv = csr_spmv(A, x, out, algorithm=algorithm) if algorithm else None
    return spmv if spmv is not None else (lambda: torch.mv(A, x, out=out))


def _product_inputs(s: Any, plan: FusedPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """The vectors A~ x_bar and A~^T y read: x_bar and y, or a sharded solve's whole ones."""
    if plan.exchange is None:
        return s.x_bar, s.y
    return plan.exchange.x_bar, plan.exchange.y


def halpern_iteration_fused(p: Any, s: Any, plan: FusedPlan, last: bool = True) -> None:
    """One reflected-Halpern PDHG iteration in place with the Triton kernels (module docstring).

    Same math and buffers as :func:`l2o.pdhg.iteration.halpern_iteration`; no host sync.  A~^T y
    is computed at the start of the iteration (into ``plan.aty``, or inside the primal kernel
    in the "spmv" and "mixed" plans), so ``s.grad`` is not used.  ``last=False`` skips the stores that only
    the check reads (x_pre, x^, y^, y_bar; ax_bar in the "spmv" plan): 4 of the ~17 vector
    passes of an iteration.  The check must follow an iteration run with ``last=True``.
    """
    n, m = s.x.numel(), s.y.numel()
    x_bar, y = _product_inputs(s, plan)
    exchange = plan.exchange        # a sharded solve: an all-gather before each product
    if exchange is not None:
        exchange.gather_y()
    if plan.spmv or plan.mixed:
        at = p.op.csr_t
        rows, k = plan.tile_at
        _primal_spmv_kernel[(max(1, triton.cdiv(n, rows)),)](
            at.crow_indices(), at.col_indices(), at.values(), y, p.c,
            s.x, p.col_lower, p.col_upper, s.x0, s.x_pre, s.x_hat, s.x_bar,
            s.tau, s.weight, plan.weight_old, n, ROWS=rows, K=k, STORE=last, num_warps=4)
    else:
        plan.product_at()
        _primal_kernel[(max(1, triton.cdiv(n, BLOCK)),)](
            plan.aty, p.c, s.x, p.col_lower, p.col_upper, s.x0, s.x_pre, s.x_hat, s.x_bar,
            s.tau, s.weight, plan.weight_old, n, BLOCK=BLOCK, STORE=last, num_warps=4)
    if exchange is not None:
        exchange.gather_x_bar()
    if plan.spmv:
        a = p.op.csr
        rows, k = plan.tile_a
        _dual_spmv_kernel[(max(1, triton.cdiv(m, rows)),)](
            a.crow_indices(), a.col_indices(), a.values(), x_bar, s.ax_bar,
            s.y, s.dual_lower, s.dual_upper, s.y0, s.y_hat, s.y_bar,
            s.neg_sigma, plan.weight_old, s.weight, m, ROWS=rows, K=k, STORE=last, num_warps=4)
        return
    plan.product_a()
    _dual_kernel[(max(1, triton.cdiv(m, BLOCK)),)](
        s.ax_bar, s.y, s.dual_lower, s.dual_upper, s.y0, s.y_hat, s.y_bar,
        s.neg_sigma, plan.weight_old, s.weight, m, BLOCK=BLOCK, STORE=last, num_warps=4)


_COMPILED: set[tuple[torch.dtype, torch.device]] = set()


def _compile_once(dtype: torch.dtype, device: torch.device) -> None:
    """Compile (or load from Triton's disk cache) every kernel variant for this dtype, once per
    process, on a tiny LP: the first solve pays for it, and no kernel is ever compiled inside a
    CUDA graph capture or in the middle of a later timed solve."""
    key = (dtype, torch.device(device))
    if key in _COMPILED:
        return
    from types import SimpleNamespace

    from bilevel.linalg.operators import csr_tensor

    f = lambda *shape: torch.zeros(shape, dtype=dtype, device=device)
    crow = torch.tensor([0, 1, 2], dtype=torch.int32, device=device)
    col = torch.tensor([0, 1], dtype=torch.int32, device=device)
    eye = csr_tensor(crow, col, torch.ones(2, dtype=dtype, device=device), (2, 2))
    op = SimpleNamespace(csr=eye, csr_t=eye)
    p = SimpleNamespace(op=op, c=f(2), col_lower=f(2), col_upper=f(2))
    s = SimpleNamespace(x=f(2), y=f(2), x0=f(2), y0=f(2), grad=f(2), x_pre=f(2), x_hat=f(2),
                        y_hat=f(2), x_bar=f(2), y_bar=f(2), ax_bar=f(2), weight=f() + 0.5,
                        tau=f(), neg_sigma=f(), dual_lower=f(2), dual_upper=f(2),
                        fused_grad=False)
    elementwise = FusedPlan(False, f(), aty=f(2), product_a=lambda: None,
                            product_at=lambda: None)
    for last in (True, False):
        for tile in SPMV_TILES:
            halpern_iteration_fused(p, s, FusedPlan(True, f(), tile, tile), last)
        halpern_iteration_fused(p, s, elementwise, last)
    torch.cuda.synchronize(device)
    _COMPILED.add(key)


if triton is not None:
    # propagate_nan=ALL below: clamp(nan) = nan, as torch.clamp, so nan reaches the check
    @triton.jit
    def _primal_update(g, tau, w, offs, mask, x_ptr, lo_ptr, hi_ptr, x0_ptr, x_pre_ptr,
                       x_hat_ptr, x_bar_ptr, STORE: tl.constexpr):
        """Projected primal step and Halpern update of the entries ``offs`` (g = A^T y - c;
        tau and the Halpern weight w are scalars for one LP, per-entry blocks for a batch);
        x_pre and x^ are stored only when ``STORE`` (the iteration before a check)."""
        x = tl.load(x_ptr + offs, mask=mask, other=0.0)
        lo = tl.load(lo_ptr + offs, mask=mask, other=0.0)
        hi = tl.load(hi_ptr + offs, mask=mask, other=0.0)
        x0 = tl.load(x0_ptr + offs, mask=mask, other=0.0)
        v = x + tau * g
        x_hat = tl.minimum(tl.maximum(v, lo, propagate_nan=tl.PropagateNan.ALL), hi, propagate_nan=tl.PropagateNan.ALL)
        x_bar = x_hat + (x_hat - x)
        if STORE:
            tl.store(x_pre_ptr + offs, v, mask=mask)
            tl.store(x_hat_ptr + offs, x_hat, mask=mask)
        tl.store(x_bar_ptr + offs, x_bar, mask=mask)
        tl.store(x_ptr + offs, x_bar - (x_bar - x0) * (1.0 - w), mask=mask)

    @triton.jit
    def _dual_update(ax, neg_sigma, w, offs, mask, y_ptr, lo_ptr, hi_ptr, y0_ptr, y_hat_ptr,
                     y_bar_ptr, STORE: tl.constexpr):
        """Dual step and Halpern update of the entries ``offs`` (ax = A x_bar; neg_sigma and the
        Halpern weight w scalars or per-entry blocks, as in :func:`_primal_update`).  y^ and
        y_bar are stored only when ``STORE``."""
        y = tl.load(y_ptr + offs, mask=mask, other=0.0)
        lo = tl.load(lo_ptr + offs, mask=mask, other=0.0)
        hi = tl.load(hi_ptr + offs, mask=mask, other=0.0)
        y0 = tl.load(y0_ptr + offs, mask=mask, other=0.0)
        v = y + neg_sigma * ax
        y_hat = v - tl.minimum(tl.maximum(v, lo, propagate_nan=tl.PropagateNan.ALL), hi, propagate_nan=tl.PropagateNan.ALL)
        y_bar = y_hat + (y_hat - y)
        if STORE:
            tl.store(y_hat_ptr + offs, y_hat, mask=mask)
            tl.store(y_bar_ptr + offs, y_bar, mask=mask)
        tl.store(y_ptr + offs, y_bar - (y_bar - y0) * (1.0 - w), mask=mask)

    @triton.jit
    def _advance_weight(w, weight_ptr):
        """Program 0 advances the one LP's Halpern weight from the copy the primal kernel made."""
        if tl.program_id(0) == 0:
            tl.store(weight_ptr, 1.0 / (2.0 - w))

    @triton.jit
    def _copy_weight(weight_ptr, weight_old_ptr):
        if tl.program_id(0) == 0:
            tl.store(weight_old_ptr, tl.load(weight_ptr))

    @triton.jit
    def _csr_rows_dot(crow_ptr, col_ptr, val_ptr, vec_ptr, rows, row_mask, ROWS: tl.constexpr,
                      K: tl.constexpr):
        """(A vec)[rows] for CSR A: a (rows x K) tile per trip, as many trips as the longest row."""
        start = tl.load(crow_ptr + rows, mask=row_mask, other=0)
        length = tl.load(crow_ptr + rows + 1, mask=row_mask, other=0) - start
        longest = tl.max(length, axis=0)
        ks = tl.arange(0, K)
        acc = tl.zeros([ROWS, K], dtype=val_ptr.dtype.element_ty)
        for k0 in range(0, longest, K):
            inside = (k0 + ks)[None, :] < length[:, None]
            idx = start[:, None] + (k0 + ks)[None, :]
            a = tl.load(val_ptr + idx, mask=inside, other=0.0)
            j = tl.load(col_ptr + idx, mask=inside, other=0)
            acc += a * tl.load(vec_ptr + j, mask=inside, other=0.0)
        return tl.sum(acc, axis=1)

    @triton.jit(do_not_specialize=["n"])
    def _primal_kernel(aty_ptr, c_ptr, x_ptr, lo_ptr, hi_ptr, x0_ptr, x_pre_ptr, x_hat_ptr,
                       x_bar_ptr, tau_ptr, weight_ptr, weight_old_ptr, n, BLOCK: tl.constexpr,
                       STORE: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(aty_ptr + offs, mask=mask, other=0.0) - tl.load(c_ptr + offs, mask=mask,
                                                                     other=0.0)
        _primal_update(g, tl.load(tau_ptr), tl.load(weight_ptr), offs, mask, x_ptr, lo_ptr,
                       hi_ptr, x0_ptr, x_pre_ptr, x_hat_ptr, x_bar_ptr, STORE)
        _copy_weight(weight_ptr, weight_old_ptr)

    @triton.jit(do_not_specialize=["m"])
    def _dual_kernel(ax_ptr, y_ptr, lo_ptr, hi_ptr, y0_ptr, y_hat_ptr, y_bar_ptr,
                     neg_sigma_ptr, weight_old_ptr, weight_ptr, m, BLOCK: tl.constexpr,
                     STORE: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < m
        ax = tl.load(ax_ptr + offs, mask=mask, other=0.0)
        w = tl.load(weight_old_ptr)
        _dual_update(ax, tl.load(neg_sigma_ptr), w, offs, mask, y_ptr, lo_ptr, hi_ptr, y0_ptr,
                     y_hat_ptr, y_bar_ptr, STORE)
        _advance_weight(w, weight_ptr)

    @triton.jit(do_not_specialize=["n"])
    def _primal_spmv_kernel(crow_ptr, col_ptr, val_ptr, y_ptr, c_ptr,
                            x_ptr, lo_ptr, hi_ptr, x0_ptr, x_pre_ptr, x_hat_ptr, x_bar_ptr,
                            tau_ptr, weight_ptr, weight_old_ptr, n,
                            ROWS: tl.constexpr, K: tl.constexpr, STORE: tl.constexpr):
        offs = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        mask = offs < n
        g = _csr_rows_dot(crow_ptr, col_ptr, val_ptr, y_ptr, offs, mask, ROWS, K)
        g = g - tl.load(c_ptr + offs, mask=mask, other=0.0)
        _primal_update(g, tl.load(tau_ptr), tl.load(weight_ptr), offs, mask, x_ptr, lo_ptr,
                       hi_ptr, x0_ptr, x_pre_ptr, x_hat_ptr, x_bar_ptr, STORE)
        _copy_weight(weight_ptr, weight_old_ptr)

    @triton.jit(do_not_specialize=["m"])
    def _dual_spmv_kernel(crow_ptr, col_ptr, val_ptr, x_bar_ptr, ax_ptr,
                          y_ptr, lo_ptr, hi_ptr, y0_ptr, y_hat_ptr, y_bar_ptr,
                          neg_sigma_ptr, weight_old_ptr, weight_ptr, m,
                          ROWS: tl.constexpr, K: tl.constexpr, STORE: tl.constexpr):
        offs = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        mask = offs < m
        ax = _csr_rows_dot(crow_ptr, col_ptr, val_ptr, x_bar_ptr, offs, mask, ROWS, K)
        if STORE:
            tl.store(ax_ptr + offs, ax, mask=mask)
        w = tl.load(weight_old_ptr)
        _dual_update(ax, tl.load(neg_sigma_ptr), w, offs, mask, y_ptr, lo_ptr, hi_ptr, y0_ptr,
                     y_hat_ptr, y_bar_ptr, STORE)
        _advance_weight(w, weight_ptr)
