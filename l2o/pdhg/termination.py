"""Termination quantities of the UNSCALED LP and infeasibility certificates (device side).

The KKT formulas themselves live in :mod:`l2o.lp.kkt` (shared with the warm start, the training
loss and the HiGHS reference); here they are evaluated on the solver's scaled iterates.
Everything here is a pure function of device tensors returning 0-d device tensors, so a check
costs one host transfer at the end.  With x, y the unscaled primal/dual point, A x and A^T y
recovered from the scaled products (A x = (A~ x~) / (D1 theta_b), A^T y = (A~^T y~) / (D2 theta_c)),
and, as in cuPDLPx (l2 norms):

    reduced costs  r = the dual slack recovered from the primal step (Moreau identity, as in
                   cuPDLPx): with x^ = proj_[l_c, u_c](v), v = x - tau (c - A^T y) the step that
                   produced x^, r = (x^ - v) / tau lies in the normal cone of the bounds at x^
                   (r_j > 0 only where x^_j = l_c,j, < 0 only where x^_j = u_c,j)
    rel primal residual  ||A x - proj_[l_r, u_r](A x)||_2 / (1 + ||b||_2)
    rel dual residual    ||c - A^T y - r||_2 / (1 + ||c||_2)
    rel gap              |pobj - dobj| / (1 + |pobj| + |dobj|)
    pobj = c^T x + c0,   dobj = c0 + sum_i (l_r,i y_i^+ - u_r,i y_i^-) + sum_j (l_c,j r_j^+ - u_c,j r_j^-)

where b holds the finite row bounds (an equality row counted once).  x is kept inside its
bounds by the primal projection, and y has the right signs by the dual projection.  The
reduced costs *returned* to the user are that slack r (in K_j = [0 or -inf, 0 or +inf], the
signs the bounds allow, by construction), so :func:`l2o.lp.kkt.point_kkt` of the returned
(x, y, r) reproduces the check (one criterion, one owner).

Infeasibility (PDLP, Applegate et al. 2021 Sec. 3.4; certificates of the unscaled LP):
  * a dual ray y_r (projected on the recession cone of the dual: y_r,i > 0 only if l_r,i is
    finite, < 0 only if u_r,i is finite) with r_r = proj_K(-A^T y_r) proves PRIMAL
    infeasibility when its objective sum_i (l_r,i y_r,i^+ - u_r,i y_r,i^-) +
    sum_j (l_c,j r_r,j^+ - u_c,j r_r,j^-) is > 0 and ||-A^T y_r - r_r||_inf <= eps * objective;
  * a primal ray x_r (projected on the recession cone of the column bounds) proves DUAL
    infeasibility when c^T x_r < 0 and the violation of A x_r in the recession cone of the row
    bounds, in the inf-norm, is <= eps * |c^T x_r|.
Both tests are invariant to the length of the ray.  The candidates are the iterate
differences T(z) - z and T(z) - z_anchor (PDLP's iterate difference) and T(z) itself (on an
infeasible LP the iterates diverge along the infimal displacement vector, z_k ~ k v, so the
direction of z_k converges to v like 1/k).  On klein1 (NETLIB infeasible set) the iterate is
the one that certifies, after ~2.2e5 iterations (see tests/l2o/test_pdhg.py).

The device-side tests above run in the solver's dtype (possibly float32) on the scaled data; a
candidate that passes them is reported only after :func:`l2o.lp.kkt.verify_dual_ray` /
:func:`~l2o.lp.kkt.verify_primal_ray` re-check it in float64 on the unscaled LP itself, with no projection
(a sign violation counts as a residual), so a reported certificate is one of the LP as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from l2o.lp.kkt import bound_term, finite_bound_norm, kkt_residuals, sign_bounds
from l2o.lp.result import LPStatus
from l2o.lp.segments import WHOLE, Reducer

from .scaling import ScaledLP

if TYPE_CHECKING:
    from .statistics import CheckStatistics

__all__ = ["RAY_CANDIDATES", "Termination", "TerminationCriteria", "TerminationData",
           "check_termination", "dual_ray_terms", "kkt_terms", "primal_ray_terms"]

# Infeasibility certificates are looked for in T(z) - z, T(z) - z_anchor and T(z) itself
# (the check statistics hold one primal and one dual ray test of each, in this order).
RAY_CANDIDATES = ("step", "epoch", "iterate")


@dataclass(frozen=True)
class TerminationCriteria:
    """When a solve stops (OR-Tools PDLP's ``TerminationCriteria``).

    Attributes:
        tol: the relative KKT tolerance (all three errors <= tol: OPTIMAL).
        infeasibility_tolerance: eps of the certificate tests (module docstring).
        iteration_limit, time_limit: None for no limit (seconds for the time).
        primal_tol, dual_tol, gap_tol: one error's own tolerance instead of ``tol`` (PDLP's
            detailed optimality criteria); ``math.inf`` leaves that error out (feasibility
            polishing, :mod:`l2o.pdhg.polish`, asks only for the primal or the dual residual).
    """

    tol: float
    infeasibility_tolerance: float = 1e-8
    iteration_limit: int | None = None
    time_limit: float | None = None
    primal_tol: float | None = None
    dual_tol: float | None = None
    gap_tol: float | None = None

    def tolerances(self) -> tuple[float, float, float]:
        """The (primal residual, dual residual, gap) tolerances, ``tol`` where none is set."""
        return tuple(self.tol if t is None else t
                     for t in (self.primal_tol, self.dual_tol, self.gap_tol))

    def optimal_message(self, iterations: int) -> str:
        """``LPResult.message`` of OPTIMAL: the errors checked and their tolerances."""
        tolerances = self.tolerances()
        if all(t == self.tol for t in tolerances):
            return f"relative residuals and gap <= {self.tol:g} after {iterations} iterations"
        names = ("primal residual", "dual residual", "gap")
        met = ", ".join(f"{name} <= {t:g}" for name, t in zip(names, tolerances)
                        if t != float("inf"))
        return f"relative {met} after {iterations} iterations"


@dataclass(frozen=True)
class Termination:
    """A reason to stop.

    Attributes:
        status: the LPStatus it would give.
        message: the account for ``LPResult.message`` (a ray's is written once it is verified).
        ray: for PRIMAL_INFEASIBLE / DUAL_INFEASIBLE, the candidate (of RAY_CANDIDATES) whose
            ray passed the device test; the solver reports it only after the float64 re-check
            on the unscaled LP (:func:`l2o.lp.kkt.verify_dual_ray` / ``verify_primal_ray``).
    """

    status: LPStatus
    message: str = ""
    ray: str | None = None


def check_termination(stats: CheckStatistics, criteria: TerminationCriteria, iterations: int,
                      elapsed: float) -> list[Termination]:
    """Every reason to stop at this check, in priority order (empty: keep iterating).

    A pure function of the check's statistics (OR-Tools ``CheckIterateTerminationCriteria``):

    1. nan/inf in any statistic: NUMERICAL_ERROR (alone);
    2. all three relative KKT errors <= their tolerances (``criteria.tolerances()``): OPTIMAL;
    3. per candidate of :data:`RAY_CANDIDATES`: a dual ray with objective > 0 and residual
       <= eps objective (PRIMAL_INFEASIBLE), then a primal ray with c^T x_r < 0 and violation
       <= eps |c^T x_r| (DUAL_INFEASIBLE); these still need the float64 re-check (the solver
       moves on to the next entry when it fails);
    4. the iteration limit, then the time limit.

    Args:
        stats: the :class:`~l2o.pdhg.statistics.CheckStatistics` of this check.
        criteria: tolerances and limits.
        iterations: total iterations so far; elapsed: seconds so far.
    """
    if not stats.is_finite():
        return [Termination(LPStatus.NUMERICAL_ERROR,
                            f"nan/inf in the iterates at iteration {iterations}")]
    found = []
    eps = criteria.infeasibility_tolerance
    primal_tol, dual_tol, gap_tol = criteria.tolerances()
    if (stats.rel_primal_residual <= primal_tol and stats.rel_dual_residual <= dual_tol
            and stats.rel_gap <= gap_tol):
        found.append(Termination(LPStatus.OPTIMAL, criteria.optimal_message(iterations)))
    for name in RAY_CANDIDATES:
        dual, primal = stats.dual_rays[name], stats.primal_rays[name]
        if dual.objective > 0 and dual.residual <= eps * dual.objective:
            found.append(Termination(LPStatus.PRIMAL_INFEASIBLE, ray=name))
        if primal.objective < 0 and primal.residual <= eps * -primal.objective:
            found.append(Termination(LPStatus.DUAL_INFEASIBLE, ray=name))
    limit = criteria.iteration_limit
    if limit is not None and iterations >= limit:
        found.append(Termination(LPStatus.ITERATION_LIMIT, f"iteration limit {limit} reached"))
    if criteria.time_limit is not None and elapsed >= criteria.time_limit:
        found.append(Termination(LPStatus.TIME_LIMIT, f"time limit {criteria.time_limit:g} s "
                                                      f"reached after {iterations} iterations"))
    return found


def _inf_or_zero(finite: torch.Tensor, sign: float, like: torch.Tensor) -> torch.Tensor:
    return torch.where(finite, torch.zeros_like(like), torch.full_like(like, sign * float("inf")))


@dataclass
class TerminationData:
    """Constant vectors and norms used at every check (built once per solve).

    Attributes:
        rc_lower, rc_upper: the box K of the reduced costs (n,).
        rec_col_lower, rec_col_upper: recession cone of the column bounds (n,).
        rec_row_lower, rec_row_upper: recession cone of the row bounds (m,), for A x_r.
        dual_rec_lower, dual_rec_upper: recession cone of the duals (m,).
        rhs_norm, c_norm: ||b||_2, ||c||_2 of the unscaled LP (0-d).
        rows, cols: how row and column vectors reduce to one value per LP (the whole vector;
            per LP of a stack in :func:`l2o.solve_lp_batch`, where the norms are (B,)).
    """

    rc_lower: torch.Tensor
    rc_upper: torch.Tensor
    rec_col_lower: torch.Tensor
    rec_col_upper: torch.Tensor
    rec_row_lower: torch.Tensor
    rec_row_upper: torch.Tensor
    dual_rec_lower: torch.Tensor
    dual_rec_upper: torch.Tensor
    rhs_norm: torch.Tensor
    c_norm: torch.Tensor
    rows: Reducer = WHOLE
    cols: Reducer = WHOLE

    @classmethod
    def build(cls, p: ScaledLP, rows: Reducer = WHOLE, cols: Reducer = WHOLE) -> TerminationData:
        """The data of ``p``'s checks; ``rows``, ``cols``: per-LP reductions of a stack."""
        lc_fin, uc_fin = torch.isfinite(p.orig_col_lower), torch.isfinite(p.orig_col_upper)
        lr_fin, ur_fin = torch.isfinite(p.orig_row_lower), torch.isfinite(p.orig_row_upper)
        c, lr = p.orig_c, p.orig_row_lower
        rc_lower, rc_upper = sign_bounds(p.orig_col_lower, p.orig_col_upper)
        dual_lower, dual_upper = sign_bounds(p.orig_row_lower, p.orig_row_upper)
        return cls(
            rc_lower=rc_lower, rc_upper=rc_upper,
            rec_col_lower=_inf_or_zero(lc_fin, -1.0, c),
            rec_col_upper=_inf_or_zero(uc_fin, 1.0, c),
            rec_row_lower=_inf_or_zero(lr_fin, -1.0, lr),
            rec_row_upper=_inf_or_zero(ur_fin, 1.0, lr),
            dual_rec_lower=dual_lower, dual_rec_upper=dual_upper,
            rhs_norm=finite_bound_norm(p.orig_row_lower, p.orig_row_upper, rows.sum),
            c_norm=cols.norm(c), rows=rows, cols=cols,
        )


def kkt_terms(p: ScaledLP, t: TerminationData, x_s: torch.Tensor, y_s: torch.Tensor,
              ax_s: torch.Tensor, aty_s: torch.Tensor,
              slack_s: torch.Tensor) -> dict[str, torch.Tensor]:
    """Relative residuals, gap and objectives of the unscaled point of (x~, y~).

    Args:
        x_s, y_s: scaled primal (n,) and dual (m,) point; ax_s = A~ x~, aty_s = A~^T y~.
        slack_s: the recovered scaled dual slack (x^ - v) / tau (n,); the unscaled one is
            slack_s / (theta_c D2), like c - A^T y.

    Returns:
        dict of 0-d tensors: rel_primal_residual, rel_dual_residual, rel_gap, primal_objective,
        dual_objective (minimization form, with c0), and "x", "y", "reduced_costs" (unscaled;
        the reduced costs are the dual slack the residual and gap use).
    """
    x, y = p.unscale_primal(x_s), p.unscale_dual(y_s)
    ax, aty = p.unscale_row_product(ax_s), p.unscale_col_product(aty_s)
    slack = p.unscale_col_product(slack_s)
    terms = kkt_residuals(p.orig_c, p.c0, p.orig_row_lower, p.orig_row_upper, p.orig_col_lower,
                          p.orig_col_upper, x, y, ax, aty, slack, t.rhs_norm, t.c_norm,
                          rows=t.rows, cols=t.cols)
    # the reduced costs reported are the slack checked here (l2o.lp.kkt.point_kkt of the
    # returned x, y, r then gives these numbers); it is in K by construction
    return {**terms, "x": x, "y": y, "reduced_costs": slack}


def project_primal_ray(t: TerminationData, dx_s: torch.Tensor) -> torch.Tensor:
    """The scaled primal direction projected on the recession cone of the column bounds."""
    return torch.clamp(dx_s, t.rec_col_lower, t.rec_col_upper)


def project_dual_ray(t: TerminationData, dy_s: torch.Tensor) -> torch.Tensor:
    """The scaled dual direction projected on the recession cone of the dual."""
    return torch.clamp(dy_s, t.dual_rec_lower, t.dual_rec_upper)


def primal_ray_terms(p: ScaledLP, t: TerminationData, xr_s: torch.Tensor,
                     axr_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c^T x_r, ||violation of A x_r||_inf) for x_r = D2 x~_r normalized to ||x_r||_inf = 1.

    xr_s must already be projected (:func:`project_primal_ray`); axr_s = A~ xr_s, so that
    A x_r = D1^{-1} axr_s.
    """
    xr = xr_s * p.col_scale
    axr = axr_s / p.row_scale
    # the smallest normal number of the dtype (1e-300 is 0 in float32: 0 / 0 = nan)
    scale = torch.clamp(t.cols.max_abs(xr), min=torch.finfo(xr.dtype).tiny)
    violation = axr - torch.clamp(axr, t.rec_row_lower, t.rec_row_upper)
    return (t.cols.dot(p.orig_c, xr) / scale,
            t.rows.max_abs(violation) / scale)


def dual_ray_terms(p: ScaledLP, t: TerminationData, yr_s: torch.Tensor,
                   atyr_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ray objective, ||dual residual||_inf) for y_r = D1 y~_r normalized to ||y_r||_inf = 1.

    yr_s must already be projected (:func:`project_dual_ray`); atyr_s = A~^T yr_s, so that
    A^T y_r = D2^{-1} atyr_s.
    """
    yr = yr_s * p.row_scale
    g = -atyr_s / p.col_scale
    r = torch.clamp(g, t.rc_lower, t.rc_upper)
    # the smallest normal number of the dtype (1e-300 is 0 in float32: 0 / 0 = nan)
    scale = torch.clamp(t.rows.max_abs(yr), min=torch.finfo(yr.dtype).tiny)
    objective = (bound_term(yr, p.orig_row_lower, p.orig_row_upper, t.rows.sum)
                 + bound_term(r, p.orig_col_lower, p.orig_col_upper, t.cols.sum))
    return objective / scale, t.cols.max_abs(g - r) / scale
