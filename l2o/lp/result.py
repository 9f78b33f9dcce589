"""``LPStatus`` and ``LPResult``: what every LP solve returns.

:func:`l2o.solve_lp` returns one whichever method solved the LP (``method="pdhg"``, the GPU
PDHG solver, or ``"highs"``, HiGHS on the CPU, :func:`l2o.lp.solve_highs`): same fields, same
conventions.  ``kkt`` holds the relative KKT errors of :mod:`l2o.lp.kkt` in both cases.

Meaning of ``x`` and ``y`` by status (y are the duals of the rows, with the sign
convention of the minimization form: y_i >= 0 on an active lower row bound,
y_i <= 0 on an active upper row bound; reduced costs r with the signs the column bounds
allow, likewise in the minimization form: from PDHG the dual slack of the last primal step
(as cuPDLPx), from HiGHS c - A^T y):

* OPTIMAL: an approximately optimal primal-dual pair meeting the tolerances (``kkt``:
  :func:`l2o.lp.kkt.kkt_error` of (x, y, reduced_costs) on the LP as given, which is what
  the solver checked; after presolve, of the postsolved point on the original LP).
* PRIMAL_INFEASIBLE: y (and reduced_costs) is a dual ray certifying infeasibility,
  scaled to ||y||_inf = 1; x is the last checked primal point.
* DUAL_INFEASIBLE (unbounded primal, if feasible): x is a primal ray certifying it
  (c^T x < 0, ||x||_inf = 1); y is the last checked dual point.
* ITERATION_LIMIT, TIME_LIMIT: the last checked point (T(z) of the last iteration),
  not guaranteed to meet the tolerances; ``kkt`` says how far it is.
* NUMERICAL_ERROR: the iteration produced nan/inf; x, y are the last finite checked
  point (nan if there was none).

An infeasible or unbounded LP has no optimal value: for PRIMAL_INFEASIBLE and DUAL_INFEASIBLE
``objective`` and ``dual_objective`` are nan (:data:`NO_OBJECTIVE`; null in JSON solution files,
"n/a" in ``l2o solve``'s summary), not the last iterate's values.  From HiGHS, a ray HiGHS gives
is reported only when it passes :func:`l2o.lp.kkt.verify_dual_ray` /
:func:`~l2o.lp.kkt.verify_primal_ray`; otherwise that vector is nan.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["NO_OBJECTIVE", "LPResult", "LPStatus"]


class LPStatus(enum.Enum):
    OPTIMAL = "optimal"
    PRIMAL_INFEASIBLE = "primal_infeasible"
    DUAL_INFEASIBLE = "dual_infeasible"
    ITERATION_LIMIT = "iteration_limit"
    TIME_LIMIT = "time_limit"
    NUMERICAL_ERROR = "numerical_error"


# Statuses whose result reports no objective value (nan).
NO_OBJECTIVE = frozenset({LPStatus.PRIMAL_INFEASIBLE, LPStatus.DUAL_INFEASIBLE})


@dataclass
class LPResult:
    """Solution and diagnostics of one LP solve (see the module docstring for x, y).

    Attributes:
        x: (n,) primal values (CPU float64).
        y: (m,) row duals.
        reduced_costs: (n,) column duals r (minimization form; module docstring).
        objective: c^T x + c0 in the LP's own sense (nan if infeasible or unbounded).
        dual_objective: the dual objective in the LP's own sense (likewise).
        status: LPStatus.
        message: human-readable account.
        iterations: PDHG iterations (HiGHS: simplex or interior-point iterations).
        solve_time: seconds of the whole call (setup and scaling included), excluding file
            reading.
        kkt: {"rel_primal_residual", "rel_dual_residual", "rel_gap"} of (x, y).
        timings: seconds per phase of the solve when it ran with ``profile=True``
            (l2o.pdhg.profile), else empty.
        method: the solver that produced it: "pdhg" or "highs" (``solve_lp(method="auto")``
            picks one).
        presolve: {applied, by ("highs" or None), reason, rows_removed, cols_removed,
            nnz_removed, time_s} (l2o.pdhg.presolve); empty where no solve_lp made it.
        polish: {applied, reached, reason, tol, time_s, primal_residual, dual_residual, gap,
            iterations, primal_iterations, dual_iterations} of ``solve_lp(..., polish=True)``
            (l2o.pdhg.polish); empty without polishing.
        distributed: {processes, bytes_per_iteration (received by each process), row_bounds,
            col_bounds} of ``solve_lp(..., distributed=True)`` (l2o.pdhg.distributed); empty
            for a single-process solve.
    """

    x: torch.Tensor
    y: torch.Tensor
    reduced_costs: torch.Tensor
    objective: float
    dual_objective: float
    status: LPStatus
    message: str
    iterations: int
    solve_time: float
    kkt: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    method: str = "pdhg"
    presolve: dict[str, Any] = field(default_factory=dict)
    polish: dict[str, Any] = field(default_factory=dict)
    distributed: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.status == LPStatus.OPTIMAL
