"""HiGHS as the CPU reference solver for tests and benchmarks.

:func:`solve_highs` solves a :class:`LinearProgram` with HiGHS (dual simplex by default, or
``method="ipm"``/``"pdlp"``) and reports the answer in l2o's conventions (those of
:class:`l2o.LPResult`): ``objective`` in the LP's own sense including c0, ``y`` the
row duals of the *minimization* form (y_i >= 0 on an active lower row bound, <= 0 on an
active upper one) and ``reduced_costs = c_min - A^T y`` with ``c_min`` the minimization cost.
HiGHS reports duals in the LP's own sense; for a maximization they are negated here.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ._highs import highspy, lp_to_highs, quiet_highs
from .kkt import dual_objective
from .model import MAXIMIZE, LinearProgram
from .result import LPStatus
from .validate import validate_lp

__all__ = ["solve_highs", "dual_objective"]

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
                tol: float | None = None) -> dict[str, Any]:
    """Solve ``lp`` with HiGHS on the CPU.

    Args:
        lp: the LP (any device; copied to the host).
        method: HiGHS ``solver`` option: "simplex", "ipm" or "pdlp" ("choose" lets HiGHS pick).
        time_limit: seconds, or None.
        tol: primal/dual feasibility tolerance (HiGHS default 1e-7 when None).

    Returns:
        dict with ``status`` (:class:`l2o.LPStatus`; anything HiGHS cannot classify, e.g.
        "unbounded or infeasible" after a second attempt without presolve, is reported as
        NUMERICAL_ERROR with HiGHS's words in ``message``), ``objective`` (own sense, with c0;
        nan unless OPTIMAL), ``dual_objective``, ``x`` (n,), ``y`` (m,) and ``reduced_costs`` (n,)
        (float64 CPU tensors; zeros when HiGHS has no solution), ``message``, ``iterations``
        (simplex or IPM iterations), ``solve_time`` (seconds, HiGHS run only).
    """
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
        start = time.perf_counter()
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
        solve_time = time.perf_counter() - start
        info = highs.getInfo()
        solution = highs.getSolution()
        message = highs.modelStatusToString(model_status)
    if run_status == highspy.HighsStatus.kError:  # never report a run that did not happen
        message = "HiGHS run failed: " + ("; ".join(log.matching("ERROR")) or message)

    status = LPStatus[_status_name(model_status) or "NUMERICAL_ERROR"]
    n, m = lp.num_cols, lp.num_rows
    sign = -1.0 if lp.sense == MAXIMIZE else 1.0  # own-sense duals -> minimization form
    if solution.value_valid:
        x = torch.tensor(np.asarray(solution.col_value, dtype=np.float64).reshape(n))
    else:
        x = torch.zeros(n, dtype=torch.float64)
    if solution.dual_valid:
        y = sign * torch.tensor(np.asarray(solution.row_dual, dtype=np.float64).reshape(m))
        reduced = sign * torch.tensor(np.asarray(solution.col_dual, dtype=np.float64).reshape(n))
    else:
        y = torch.zeros(m, dtype=torch.float64)
        reduced = torch.zeros(n, dtype=torch.float64)
    optimal = status == LPStatus.OPTIMAL
    return {
        "status": status,
        "objective": float(info.objective_function_value) if optimal else float("nan"),
        "dual_objective": dual_objective(lp, y, reduced) if optimal else float("nan"),
        "x": x,
        "y": y,
        "reduced_costs": reduced,
        "message": f"HiGHS: {message}",
        "iterations": int(max(info.simplex_iteration_count, info.ipm_iteration_count,
                              getattr(info, "pdlp_iteration_count", 0))),
        "solve_time": solve_time,
    }
