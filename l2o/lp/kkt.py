"""The one home of l2o's KKT math: sign bounds of multipliers, the dual objective and the
relative KKT errors (the solver's stopping criteria).

LP in minimization form (a maximization is negated first, ``LinearProgram.minimize_c``):

    min c^T x + c0   s.t.   l_r <= A x <= u_r,   l_c <= x <= u_c,

with Lagrangian c^T x - y^T A x - r^T x + (bound terms), y the row duals and r the reduced
costs (column duals).  A multiplier of bounds l <= . <= u pairs its positive part with a finite
l and its negative part with a finite u (:func:`sign_bounds`), and the dual objective is

    d(y, r) = c0 + sum_i (l_r,i y_i^+ - u_r,i y_i^-) + sum_j (l_c,j r_j^+ - u_c,j r_j^-)

(:func:`bound_term`; infinite bounds contribute 0, their part of the multiplier being 0).  The
relative KKT errors (cuPDLPx's, l2 norms) of a point (x, y) with reduced costs r are

    rel primal residual   ||A x - proj_[l_r, u_r](A x)||_2 / (1 + ||b||_2)
    rel dual residual     ||c - A^T y - r||_2 / (1 + ||c||_2)
    rel gap               |pobj - dobj| / (1 + |pobj| + |dobj|),   pobj = c^T x + c0, dobj = d(y, r)

with b the finite row bounds, an equality row counted once (:func:`finite_bound_norm`).
Inside the PDHG solver r is the dual slack recovered from the primal step, which the solver
returns as ``LPResult.reduced_costs``: :func:`point_kkt` / :func:`kkt_error` of (x, y, r) on
the LP give the numbers the solver stopped on, and the presolve path judges a postsolved point
(with its postsolved r) by exactly that. For a point without r (a warm start) it is
r = proj_K(c - A^T y) onto the signs K the column bounds allow, stricter in the gap: every
finite bound a column's cost pushes against counts in d(y, r), at x or not (ken-11's 1e-4
point: gap 3.4e-3 so, 1e-4 with the slack).

Users: the solver's termination checks (:mod:`l2o.pdhg.termination`, on the device, any
dtype), the warm start's :func:`l2o.net.kkt_error`, the training loss
(:func:`l2o.training.loss.kkt_losses`, batched and differentiable) and the HiGHS reference
(:func:`l2o.lp.reference.solve_highs`).

Infeasibility certificates of the LP as given (float64, unscaled, no projection):
:func:`verify_dual_ray` (a Farkas ray y proves primal infeasibility) and
:func:`verify_primal_ray` (a ray x proves dual infeasibility); the PDHG solver re-checks every
certificate it reports with them, and so does the HiGHS path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from bilevel.linalg.operators import csr_row_indices

from .segments import WHOLE, Reducer

if TYPE_CHECKING:
    from .model import LinearProgram

__all__ = ["PointKKT", "bound_products", "bound_term", "dual_objective",
           "dual_ray_reduced_costs", "finite_bound_norm", "finite_or_zero", "inf_norm",
           "kkt_error", "kkt_residuals", "point_kkt", "sign_bounds", "transpose_product",
           "verify_dual_ray", "verify_primal_ray"]


def finite_or_zero(v: torch.Tensor) -> torch.Tensor:
    """v where it is finite, 0 where it is +-inf (an infinite bound contributes nothing)."""
    return torch.where(torch.isfinite(v), v, torch.zeros_like(v))


def finite_bound_norm(lower: torch.Tensor, upper: torch.Tensor,
                      total: Callable[[torch.Tensor], torch.Tensor] = torch.sum) -> torch.Tensor:
    """||b||_2 with b the finite row bounds, an equality row (l = u) counted once (0-d; one per
    LP of a stack with a :class:`~l2o.lp.segments.Segments`' ``sum`` as ``total``)."""
    lo = finite_or_zero(lower)
    hi = torch.where(torch.isfinite(upper) & (upper != lower), upper, torch.zeros_like(upper))
    return torch.sqrt(total(lo * lo) + total(hi * hi))


def sign_bounds(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The interval [lo, hi] a multiplier of the bounds l <= . <= u may take: its positive part
    pairs with a finite l, its negative part with a finite u, so

        lo = -inf where u is finite, else 0;    hi = +inf where l is finite, else 0.

    For row duals y (bounds of A x) and reduced costs r (column bounds) alike; same shape and
    dtype as ``lower``.  ``torch.clamp(v, *sign_bounds(l, u))`` projects v onto those signs.
    """
    inf = torch.full_like(lower, float("inf"))
    zero = torch.zeros_like(lower)
    return (torch.where(torch.isfinite(upper), -inf, zero),
            torch.where(torch.isfinite(lower), inf, zero))


def bound_term(v: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
               total: Callable[[torch.Tensor], torch.Tensor] = torch.sum) -> torch.Tensor:
    """sum_i (l_i v_i^+ - u_i v_i^-) (0-d), infinite bounds contributing 0; ``total`` sums
    (a :class:`~l2o.lp.segments.Segments`' ``sum`` gives one value per LP of a stack)."""
    lo, hi = finite_or_zero(lower), finite_or_zero(upper)
    return total(lo * torch.clamp(v, min=0)) - total(hi * torch.clamp(v, max=0).neg())


def bound_products(v: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """The terms l_i v_i^+ - u_i v_i^- of :func:`bound_term`, elementwise (for sums per
    instance of a batch), infinite bounds contributing 0."""
    return finite_or_zero(lower) * v.clamp(min=0) + finite_or_zero(upper) * v.clamp(max=0)


def kkt_residuals(c: torch.Tensor, c0: float | torch.Tensor, row_lower: torch.Tensor,
                  row_upper: torch.Tensor, col_lower: torch.Tensor, col_upper: torch.Tensor,
                  x: torch.Tensor, y: torch.Tensor, ax: torch.Tensor, aty: torch.Tensor,
                  r: torch.Tensor, rhs_norm: torch.Tensor, c_norm: torch.Tensor, *,
                  rows: Reducer = WHOLE, cols: Reducer = WHOLE) -> dict[str, torch.Tensor]:
    """The relative KKT errors and both objectives of (x, y, r) (module docstring), as 0-d
    tensors on the inputs' device: no host sync (the solver stacks them into its check).

    For B LPs stacked into one (:func:`l2o.solve_lp_batch`), ``rows`` and ``cols`` are
    :class:`~l2o.lp.segments.Segments` of the row and column vectors, c0, rhs_norm and c_norm
    are (B,), and every value returned is (B,).

    Args:
        c, col_lower, col_upper, x, r: (n,) minimization-form cost, column bounds, the point
            and its reduced costs.  c0: the objective constant.
        row_lower, row_upper, y, ax: (m,) row bounds, duals and A x.  aty: (n,) A^T y.
        rhs_norm, c_norm: ||b||_2 (:func:`finite_bound_norm`) and ||c||_2 (0-d).
        rows, cols: the reductions of row and column vectors (default: whole vectors).

    Returns:
        {"rel_primal_residual", "rel_dual_residual", "rel_gap", "primal_objective",
        "dual_objective"} (minimization form, with c0).
    """
    primal_residual = ax - torch.clamp(ax, row_lower, row_upper)
    pobj = cols.dot(c, x) + c0
    dobj = (bound_term(y, row_lower, row_upper, rows.sum)
            + bound_term(r, col_lower, col_upper, cols.sum) + c0)
    return {
        "rel_primal_residual": rows.norm(primal_residual) / (1 + rhs_norm),
        "rel_dual_residual": cols.norm(c - aty - r) / (1 + c_norm),
        "rel_gap": (pobj - dobj).abs() / (1 + pobj.abs() + dobj.abs()),
        "primal_objective": pobj,
        "dual_objective": dobj,
    }


def _host(t) -> torch.Tensor:
    return torch.as_tensor(t).detach().to("cpu", torch.float64)


def transpose_product(A: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A^T y (n,) of a CSR matrix A (m, n), one pass over its entries (no transpose built:
    torch's ``A.t() @ y`` on the CPU builds one, ~1 s for dbir2's 1.1M nonzeros)."""
    values = A.values()
    rows = csr_row_indices(A.crow_indices(), values.numel())
    out = torch.zeros(A.shape[1], dtype=torch.result_type(values, y), device=values.device)
    return out.index_add_(0, A.col_indices(), values * y[rows])


@dataclass(frozen=True)
class PointKKT:
    """The KKT check of one point (x, y, r) of an LP (:func:`point_kkt`).

    Attributes:
        errors: {"rel_primal_residual", "rel_dual_residual", "rel_gap"} as floats.
        objective, dual_objective: c^T x + c0 and d(y, r), in the LP's own sense.
        reduced_costs: r (n,), float64 CPU, in K (the signs the column bounds allow).
    """

    errors: dict[str, float]
    objective: float
    dual_objective: float
    reduced_costs: torch.Tensor


def point_kkt(lp: LinearProgram, x: torch.Tensor, y: torch.Tensor,
              reduced_costs: torch.Tensor | None = None, device=None) -> PointKKT:
    """The relative KKT errors and both objectives of (x, y, r) on ``lp``, in float64: the
    solver's criteria (:func:`kkt_residuals`), computed once (two products with A).

    r are the reduced costs that go with the point. The solver's are the dual slack of its
    last primal step (:mod:`l2o.pdhg.termination`), which it returns as
    ``LPResult.reduced_costs``: with them this check gives the numbers the solver stopped
    on. A given r is projected onto K first (a multiplier of the wrong sign is none: that part
    moves into the dual residual), so any r gives an honest measure. Without r (a warm start,
    a postsolved point without one) r = proj_K(c - A^T y): the dual residual is then only the
    sign violation, and every bound a column could push against enters the dual objective,
    whether x is at it or not (stricter in the gap than the solver's r).

    Args:
        lp: the LP; x: (n,) in its column bounds; y: (m,) with the signs its rows allow
            (minimization-form convention); reduced_costs: (n,) or None.
        device: where the products run (None: the CPU); the data are copied there once.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    f64 = lambda v: torch.as_tensor(v).detach().to(device, torch.float64)
    x, y = f64(x).reshape(-1), f64(y).reshape(-1)
    A = lp.A.detach().to(device, torch.float64)
    c, c0 = lp.minimize_c
    c = f64(c)
    row_lower, row_upper = f64(lp.row_lower), f64(lp.row_upper)
    col_lower, col_upper = f64(lp.col_lower), f64(lp.col_upper)
    ax = A @ x if x.numel() else torch.zeros_like(row_lower)
    aty = transpose_product(A, y)
    r = c - aty if reduced_costs is None else f64(reduced_costs).reshape(-1)
    r = torch.clamp(r, *sign_bounds(col_lower, col_upper))
    terms = kkt_residuals(c, float(c0), row_lower, row_upper, col_lower, col_upper, x, y, ax, aty,
                          r, finite_bound_norm(row_lower, row_upper), torch.linalg.vector_norm(c))
    keys = ("rel_primal_residual", "rel_dual_residual", "rel_gap", "primal_objective",
            "dual_objective")
    values = torch.stack([terms[k] for k in keys]).tolist()   # one copy to the host
    sign = -1.0 if lp.sense == "maximize" else 1.0
    return PointKKT(errors=dict(zip(keys[:3], values[:3])), objective=sign * values[3],
                    dual_objective=sign * values[4], reduced_costs=r.cpu())


def kkt_error(lp: LinearProgram, x: torch.Tensor, y: torch.Tensor,
              reduced_costs: torch.Tensor | None = None, device=None) -> dict[str, float]:
    """Relative KKT errors of a point (x, y) of ``lp`` (the solver's criteria; float64):
    :func:`point_kkt`'s ``errors``. With a solve's ``reduced_costs`` they are the numbers the
    solver checked; without, r = proj_K(c - A^T y) (stricter in the gap).

    Returns:
        {"rel_primal_residual", "rel_dual_residual", "rel_gap"} as floats.
    """
    return point_kkt(lp, x, y, reduced_costs, device).errors


def dual_objective(lp: LinearProgram, y: torch.Tensor, reduced_costs: torch.Tensor) -> float:
    """d(y, r) of the module docstring in the LP's own sense (negated for a maximization), with
    c0; y and r in the minimization-form convention.  Terms paired with an infinite bound are
    left out: for an exact dual solution their part is zero, and for a floating-point one (e.g.
    HiGHS's 1e-17 of the wrong sign) they would turn the value into -inf."""
    c0 = lp.minimize_c[1]
    value = float(bound_term(_host(y), _host(lp.row_lower), _host(lp.row_upper))
                  + bound_term(_host(reduced_costs), _host(lp.col_lower), _host(lp.col_upper)))
    value += c0
    return -value if lp.sense == "maximize" else value


def inf_norm(v: torch.Tensor) -> torch.Tensor:
    """||v||_inf, 0 for an empty vector (an LP with no rows or no columns)."""
    return WHOLE.max_abs(v)


def _lp_data(lp, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(A, minimization c, l_r, u_r, l_c, u_c) of an LinearProgram, float64 on ``device``."""
    f64 = lambda v: torch.as_tensor(v).to(device, torch.float64)
    c, _ = lp.minimize_c
    return (lp.A.to(device, torch.float64), f64(c), f64(lp.row_lower), f64(lp.row_upper),
            f64(lp.col_lower), f64(lp.col_upper))


def _sign_violation(v: torch.Tensor, pos_ok: torch.Tensor, neg_ok: torch.Tensor) -> torch.Tensor:
    """max_i of v_i^+ where v_i > 0 is not allowed (not pos_ok) and v_i^- where not neg_ok."""
    pos = torch.where(pos_ok, torch.zeros_like(v), torch.clamp(v, min=0))
    neg = torch.where(neg_ok, torch.zeros_like(v), torch.clamp(v, max=0).neg())
    return torch.maximum(inf_norm(pos), inf_norm(neg))


def verify_dual_ray(lp, y: torch.Tensor) -> tuple[float, float]:
    """(objective, residual) of y as a Farkas certificate of the UNSCALED LP, in float64.

    With r = proj_K(-A^T y) (the signs of :func:`sign_bounds`: r_j > 0 only if l_c,j is finite,
    < 0 only if u_c,j is finite), both normalized by ||y||_inf:
        objective = sum_i (l_r,i y_i^+ - u_r,i y_i^-) + sum_j (l_c,j r_j^+ - u_c,j r_j^-)
        residual  = max(||-A^T y - r||_inf, sign violation of y)
    (y_i > 0 needs a finite l_r,i, y_i < 0 a finite u_r,i).  y proves primal infeasibility when
    objective > 0 and residual <= eps * objective: any x in the column bounds with A x in the
    row bounds would give objective <= y^T A x + r^T x = (A^T y + r)^T x <= residual ||x||_1,
    so no feasible x has ||x||_1 < objective / residual.

    Args:
        lp: the LinearProgram (any device); y: (m,) in the minimization-form sign convention.

    Returns:
        Python floats (objective, residual); (0, 0) for y = 0.
    """
    A, _, lr, ur, lc, uc = _lp_data(lp, y.device)
    y = _unit_ray(y)
    if y is None:
        return 0.0, 0.0
    g = -transpose_product(A, y)
    r = torch.clamp(g, *sign_bounds(lc.to(g), uc.to(g)))
    objective = bound_term(y, lr, ur) + bound_term(r, lc, uc)
    residual = torch.maximum(inf_norm(g - r),
                             _sign_violation(y, torch.isfinite(lr), torch.isfinite(ur)))
    return float(objective), float(residual)


def _unit_ray(v: torch.Tensor) -> torch.Tensor | None:
    """v / ||v||_inf in float64 (a ray is a direction: certificates are scale-free), or None
    for v = 0 (one host sync, as a certificate check is a host decision)."""
    v = v.to(torch.float64)
    scale = float(inf_norm(v))
    return v / scale if scale > 0 else None


def verify_primal_ray(lp, x: torch.Tensor) -> tuple[float, float]:
    """(c^T x, violation) of x as an unboundedness ray of the UNSCALED LP, in float64.

    Normalized by ||x||_inf: violation = max(how far A x is from the recession cone of the row
    bounds, how far x is from that of the column bounds), in the inf-norm.  x proves dual
    infeasibility (if the LP is feasible, unboundedness) when c^T x < 0 and
    violation <= eps * |c^T x| (c of the minimization form).

    Returns:
        Python floats (c^T x, violation); (0, 0) for x = 0.
    """
    A, c, lr, ur, lc, uc = _lp_data(lp, x.device)
    x = _unit_ray(x)
    if x is None:
        return 0.0, 0.0
    ax = (A @ x.unsqueeze(1)).squeeze(1)
    # A x may grow (> 0) only along rows without an upper bound, shrink only without a lower one
    row_violation = _sign_violation(ax, torch.isinf(ur), torch.isinf(lr))
    col_violation = _sign_violation(x, torch.isinf(uc), torch.isinf(lc))
    return float(torch.dot(c, x)), float(torch.maximum(row_violation, col_violation))


def dual_ray_reduced_costs(lp: LinearProgram, y: torch.Tensor) -> torch.Tensor:
    """r = proj_K(-A^T y) (n,) float64 CPU: the reduced costs that go with a dual ray y (as
    :func:`verify_dual_ray` pairs them), with the signs the column bounds allow."""
    y = _host(y).reshape(-1)
    g = -transpose_product(lp.A.detach().to("cpu", torch.float64), y)
    return torch.clamp(g, *sign_bounds(_host(lp.col_lower), _host(lp.col_upper)))
