"""The end of a solve: the :class:`l2o.LPResult` of the last checked point, or of a certificate.

Which point a result holds, by status, is documented in :mod:`l2o.lp.result`.  A ray that passed
the device test becomes a result only if its float64 re-check on the unscaled LP confirms it
(:func:`ray_result` returns None otherwise, and the solve goes on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from l2o.lp.kkt import dual_ray_reduced_costs, verify_dual_ray, verify_primal_ray
from l2o.lp.result import NO_OBJECTIVE, LPResult, LPStatus

from .scaling import ScaledLP
from .statistics import CheckStatistics

__all__ = ["Checked", "make_result", "ray_result"]


@dataclass(frozen=True)
class Checked:
    """The last check with finite statistics: its record and copies of its unscaled point
    ({"x", "y", "reduced_costs"} on the device; copies, as the check's buffers are reused)."""

    stats: CheckStatistics
    point: dict[str, torch.Tensor]


def make_result(lp, status: LPStatus, checked: Checked | None, total: int, start: float,
                message: str) -> LPResult:
    """The LPResult of the last finite check (nan vectors and numbers if there was none).

    An infeasible or unbounded LP has no objective value: ``objective`` and ``dual_objective``
    are nan for PRIMAL_INFEASIBLE and DUAL_INFEASIBLE (the last iterate's values mean nothing).
    """
    nan = float("nan")
    sign = -1.0 if lp.sense == "maximize" else 1.0

    def host(key: str, size: int) -> torch.Tensor:
        if checked is None:
            return torch.full((size,), nan, dtype=torch.float64)
        return checked.point[key].detach().to("cpu", torch.float64)

    stats = checked.stats if checked is not None else None
    has_objective = stats is not None and status not in NO_OBJECTIVE
    kkt = {k: (getattr(stats, k) if stats is not None else nan)
           for k in ("rel_primal_residual", "rel_dual_residual", "rel_gap")}
    n, m = lp.num_cols, lp.num_rows
    return LPResult(x=host("x", n), y=host("y", m), reduced_costs=host("reduced_costs", n),
                    objective=sign * stats.primal_objective if has_objective else nan,
                    dual_objective=sign * stats.dual_objective if has_objective else nan,
                    status=status, message=message, iterations=total,
                    solve_time=time.perf_counter() - start, kkt=kkt)


def ray_result(lp, status: LPStatus, checked: Checked | None, ray_s: torch.Tensor, p: ScaledLP,
               total: int, start: float, eps: float) -> LPResult | None:
    """The certificate as a result, or None if its float64 re-check on the unscaled LP fails.

    x (DUAL_INFEASIBLE) or y and its reduced costs (PRIMAL_INFEASIBLE) become the ray, scaled to
    ||.||_inf = 1.  The device test ran in the solver's dtype on the scaled data; this one
    (:func:`verify_dual_ray` / :func:`verify_primal_ray`) runs on ``lp`` itself, unprojected.
    """
    if status == LPStatus.DUAL_INFEASIBLE:
        xr = (ray_s * p.col_scale).to("cpu", torch.float64)
        xr = xr / xr.abs().max()
        cx, violation = verify_primal_ray(lp, xr.to(lp.A.device))
        if not (cx < 0 and violation <= eps * -cx):
            return None
        res = make_result(lp, status, checked, total, start,
                          f"primal ray (c^T x = {cx:.3g} < 0, violation {violation:.3g}, "
                          f"||x||_inf = 1) proves dual infeasibility")
        res.x = xr
        return res
    yr = (ray_s * p.row_scale).to("cpu", torch.float64)
    yr = yr / yr.abs().max()
    objective, residual = verify_dual_ray(lp, yr.to(lp.A.device))
    if not (objective > 0 and residual <= eps * objective):
        return None
    res = make_result(lp, status, checked, total, start,
                      f"dual ray (objective {objective:.3g} > 0, residual {residual:.3g}, "
                      f"||y||_inf = 1) proves primal infeasibility")
    res.y, res.reduced_costs = yr, dual_ray_reduced_costs(lp, yr)
    return res
