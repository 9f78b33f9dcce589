"""HiGHS on the CPU: the reference solver of tests and benchmarks, and ``solve_lp(method="highs")``.

:func:`solve_highs` solves a :class:`LinearProgram` with HiGHS (dual simplex by default, or
``method="ipm"``/``"pdlp"``) and reports the answer in l2o's conventions (those of
:class:`l2o.LPResult`): ``objective`` in the LP's own sense including c0, ``y`` the
row duals of the *minimization* form (y_i >= 0 on an active lower row bound, <= 0 on an
active upper one) and ``reduced_costs = c_min - A^T y`` with ``c_min`` the minimization cost.
HiGHS reports duals in the LP's own sense; for a maximization they are negated here.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ._highs import highspy, lp_to_highs, quiet_highs
from .kkt import (
    dual_objective,
    dual_ray_reduced_costs,
    kkt_error,
    verify_dual_ray,
    verify_primal_ray,
)
from .model import MAXIMIZE, LinearProgram
from .result import NO_OBJECTIVE, LPResult, LPStatus
from .validate import validate_lp

__all__ = ["RAY_TOLERANCE", "solve_highs"]

_STATUS_NAMES = {  # HiGHS model status (attribute of highspy.HighsModelStatus) -> LPStatus name
    "kOptimal": "OPTIMAL",
    "kInfeasible": "PRIMAL_INFEASIBLE",
    "kUnbounded": "DUAL_INFEASIBLE",
    "kIterationLimit": "ITERATION_LIMIT",
    "kTimeLimit": "TIME_LIMIT",
}


def _status_name(model_status) -> str | None:
    for attr, name in _STATUS_NAMES.items():
        if model_status == getattr(highspy.HighsModelStatus, attr):
            return name
    return None


def solve_highs(lp: LinearProgram, *, method: str = "simplex", time_limit: float | None = None,
                tol: float | None = None, iteration_limit: int | None = None) -> LPResult:
    """Solve ``lp`` with HiGHS on the CPU; the answer is an :class:`l2o.LPResult` like
    :func:`l2o.solve_lp`'s (``solve_lp(lp, method="highs")`` calls this).

    Args:
        lp: the LP (any device; copied to the host).
        method: HiGHS ``solver`` option: "simplex", "ipm" or "pdlp" ("choose" lets HiGHS pick).
        time_limit: seconds, or None.
        tol: primal/dual feasibility tolerance (HiGHS default 1e-7 when None).
        iteration_limit: simplex and interior-point iteration limit, or None.

    Returns:
        An LPResult: ``status`` (anything HiGHS cannot classify, e.g. "unbounded or infeasible"
        after a second attempt without presolve, is NUMERICAL_ERROR with HiGHS's words in
        ``message``); x, y, reduced_costs (float64 CPU; nan where HiGHS has no such vector;
        for PRIMAL_INFEASIBLE y is HiGHS's dual ray and for DUAL_INFEASIBLE x its primal ray,
        scaled to ||.||_inf = 1, if it passes the float64 certificate check of
        :mod:`l2o.lp.kkt`, else nan); ``objective`` (own sense, with c0) and
        ``dual_objective`` (nan for infeasible and unbounded LPs); ``kkt`` (the relative KKT
        errors of (x, y), :func:`l2o.lp.kkt.kkt_error`); ``iterations`` (simplex or IPM);
        ``solve_time`` (seconds of the whole call).
    """
    start = time.perf_counter()
    validate_lp(lp)
    with quiet_highs() as (highs, log):
        # quiet_highs keeps entries down to SMALL_MATRIX_VALUE, and the solve must run with
        # the same option: HiGHS >= 1.16 refuses to run (kError, "model_.assess returns status
        # Warning") on a matrix holding entries below its small_matrix_value (gas11's 9.999e-10).
        highs.passModel(lp_to_highs(lp))
        highs.setOptionValue("solver", method)
        if time_limit is not None:
            highs.setOptionValue("time_limit", float(time_limit))
        if tol is not None:
            highs.setOptionValue("primal_feasibility_tolerance", float(tol))
            highs.setOptionValue("dual_feasibility_tolerance", float(tol))
        if iteration_limit is not None:
            highs.setOptionValue("simplex_iteration_limit", int(iteration_limit))
            highs.setOptionValue("ipm_iteration_limit", int(iteration_limit))
        run_status = highs.run()
        model_status = highs.getModelStatus()
        if model_status == highspy.HighsModelStatus.kUnboundedOrInfeasible:
            # presolve could not tell which; the solver without presolve can
            highs.setOptionValue("presolve", "off")
            highs.clearSolver()
            run_status = highs.run()
            model_status = highs.getModelStatus()
        if model_status == highspy.HighsModelStatus.kUnknown and method == "simplex":
            # HiGHS 1.16's simplex ends "Unknown" on klein1 (infeasible, badly scaled); its
            # interior-point solver classifies it
            highs.setOptionValue("solver", "ipm")
            highs.clearSolver()
            run_status = highs.run()
            model_status = highs.getModelStatus()
        info = highs.getInfo()
        solution = highs.getSolution()
        message = highs.modelStatusToString(model_status)
        status = LPStatus[_status_name(model_status) or "NUMERICAL_ERROR"]
        dual_ray = highs.getDualRay() if status == LPStatus.PRIMAL_INFEASIBLE else None
        primal_ray = highs.getPrimalRay() if status == LPStatus.DUAL_INFEASIBLE else None
    if run_status == highspy.HighsStatus.kError:  # never report a run that did not happen
        message = "HiGHS run failed: " + ("; ".join(log.matching("ERROR")) or message)
        status = LPStatus.NUMERICAL_ERROR

    n, m = lp.num_cols, lp.num_rows
    sign = -1.0 if lp.sense == MAXIMIZE else 1.0  # own-sense duals -> minimization form
    nan = float("nan")
    x = _vector(solution.col_value, n) if solution.value_valid else _nan(n)
    y = sign * _vector(solution.row_dual, m) if solution.dual_valid else _nan(m)
    reduced = sign * _vector(solution.col_dual, n) if solution.dual_valid else _nan(n)
    if dual_ray is not None:
        y = _certified(dual_ray, m, _certifies_infeasibility(lp))
        reduced = dual_ray_reduced_costs(lp, y) if bool(torch.isfinite(y).all()) else _nan(n)
    if primal_ray is not None:
        x = _certified(primal_ray, n, _certifies_unboundedness(lp))
    has_objective = status not in NO_OBJECTIVE
    if solution.value_valid and solution.dual_valid and has_objective:
        kkt = kkt_error(lp, x, y)
    else:
        kkt = dict.fromkeys(("rel_primal_residual", "rel_dual_residual", "rel_gap"), nan)
    return LPResult(
        x=x, y=y, reduced_costs=reduced,
        objective=(float(info.objective_function_value)
                   if solution.value_valid and has_objective else nan),
        dual_objective=(dual_objective(lp, y, reduced)
                        if solution.dual_valid and has_objective else nan),
        status=status, message=f"HiGHS: {message}",
        iterations=int(max(info.simplex_iteration_count, info.ipm_iteration_count,
                           getattr(info, "pdlp_iteration_count", 0))),
        solve_time=time.perf_counter() - start, kkt=kkt, method="highs")


# eps of the certificate checks of HiGHS's rays (the PDHG solver's default)
RAY_TOLERANCE = 1e-8


def _vector(values, size: int) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float64).reshape(size))


def _nan(size: int) -> torch.Tensor:
    return torch.full((size,), float("nan"), dtype=torch.float64)


def _certifies_infeasibility(lp: LinearProgram):
    def check(y: torch.Tensor) -> bool:
        objective, residual = verify_dual_ray(lp, y)
        return objective > 0 and residual <= RAY_TOLERANCE * objective
    return check


def _certifies_unboundedness(lp: LinearProgram):
    def check(x: torch.Tensor) -> bool:
        cx, violation = verify_primal_ray(lp, x)
        return cx < 0 and violation <= RAY_TOLERANCE * -cx
    return check


def _certified(ray: tuple, size: int, certifies) -> torch.Tensor:
    """HiGHS's ray (from getDualRay / getPrimalRay: status, has_ray, values), or its negation
    (HiGHS's sign convention is not the minimization form's in every case), scaled to
    ||.||_inf = 1, if it passes ``certifies``; else nan."""
    _, has_ray, values = ray
    if has_ray:
        v = _vector(values, size)
        scale = float(v.abs().max()) if v.numel() else 0.0
        if scale > 0 and math.isfinite(scale):
            for candidate in (v / scale, -v / scale):
                if certifies(candidate):
                    return candidate
    return _nan(size)
