"""Feasibility polishing (PDLP, cuPDLPx): the relative primal and dual residuals of a loosely
optimal point driven to ``polish_tol`` on the ORIGINAL LP, its gap kept within the solve's ``tol``.

A point (x, y) meeting ``tol`` (say 1e-4) is polished by PDHG on two feasibility problems of the
same A (with the solve's own preconditioning, :class:`~l2o.pdhg.prepare.PreparedLP`):

    primal   min 0          s.t.  l_r <= A x <= u_r,  l_c <= x <= u_c          from (x, 0)
    dual     min c^T x      s.t.  the same, every finite bound set to 0         from (0, y)

The primal problem has the LP's constraints, so its relative primal residual
||A x - proj(A x)|| / (1 + ||b||) is the LP's; with no objective, PDHG started at x stops at a
feasible point near x.  The dual problem has the LP's c, A and the same finite bounds, hence the
same signs allowed for y and the reduced costs r, so its relative dual residual
||c - A^T y - r|| / (1 + ||c||) is the LP's; its dual objective is 0 for every y, so PDHG started
at y stops at a dual-feasible point near y.  Each phase checks only its own residual
(:class:`~l2o.pdhg.termination.TerminationCriteria` with the other tolerances infinite, as
PDLP's ``TryPrimalPolishing`` / ``TryDualPolishing``); a phase whose residual already meets
``polish_tol`` is skipped.  The candidate is (x of the primal phase, y of the dual phase).

The gap.  Moving to feasibility moves the objectives: the candidate's relative gap is often
far above the solve's (from 1e-4 points: adlittle 8e-5 -> 4e-3, osa-07 3e-6 -> 2e-3, scrs8
9e-5 -> 0.13; and ken-11's y, with the reduced costs proj_K(c - A^T y) that make it dual
feasible, has a gap of 3e-3 where the solver's recovered slack gave 3e-5: benchmarks/RESULTS.md,
"Feasibility polishing").  So, as PDLP (which polishes only
when the main iterate meets the gap, and otherwise keeps iterating and polishes again later), a
candidate whose gap exceeds ``tol`` is not returned: the solve continues from its point to a
tolerance smaller by the factor the gap grew (``tol * tol / (2 gap)`` relative to the last one,
warm-started) and polishes again, at most :data:`MAX_POLISH_ROUNDS` times.

The guarantee is measured where it is claimed: the candidate's relative KKT errors are computed
on the original LP in float64 (:func:`l2o.lp.kkt.kkt_error`, reduced costs proj_K(c - A^T y)),
and it is returned only if both residuals are <= ``polish_tol`` and the gap is <= ``tol`` (so
OPTIMAL stays true); its ``kkt`` are then those errors.  Otherwise the solve's OPTIMAL point,
status and ``kkt`` (the solver's, with its recovered dual slack) stay, and ``LPResult.polish``
(errors of that point by :func:`~l2o.lp.kkt.kkt_error`) and the message say how far polishing
got.

With presolve the point polished is the postsolved one, on the original LP: postsolve can
amplify the reduced LP's residuals (kb2: 50x) and leaves the duals of removed rows only roughly
right (ken-11: a gap of 0.33 however far the reduced LP is solved), so a reduced LP polished to
1e-8 would promise nothing about the original LP; the feasibility problems of the original LP,
started from the postsolved point, measure exactly the residuals the user gets.  The tightened
solves of later rounds run with presolve as asked.

``LPResult.polish`` (JSON key "polish") = {applied (the polished point is returned), reached
(the returned point's residuals are <= polish_tol), reason, tol, time_s (everything after the
first solve: phases, tightened solves, checks), primal_residual, dual_residual, gap (relative,
of the returned point on the original LP by :func:`~l2o.lp.kkt.kkt_error`; the solver's own
for a solve that did not end OPTIMAL), iterations (of the feasibility phases),
primal_iterations, dual_iterations, rounds}; ``solve_time`` counts the polishing, and
``iterations`` the solve's own iterations, tightened solves included.

References: OR-Tools PDLP ``ortools/pdlp/primal_dual_hybrid_gradient.cc``
(``TryFeasibilityPolishing``); Lu, Peng & Yang, cuPDLPx ``src/feasibility_polish.cu``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from l2o.lp.kkt import kkt_error
from l2o.lp.model import LinearProgram
from l2o.lp.result import LPResult, LPStatus

from .prepare import PreparedLP
from .presolve import evaluate_point
from .profile import PhaseTimer
from .scaling import ScaledLP
from .termination import TerminationCriteria, TerminationData

__all__ = ["MAX_POLISH_ROUNDS", "POLISH_MIN_PHASE_ITERATIONS", "PolishPhase", "dual_feasibility_problem", "polish_solution",
           "primal_feasibility_problem"]

# Polishing attempts: the first from the solve's point, then from tightened solves.  From 1e-4
# points on the 20 NETLIB LPs of tests/data, ken-11 and osa-07: 1 round on 6, 2 on 14, 3 on
# sc50b, 4 on capri (benchmarks/RESULTS.md, "Feasibility polishing").
MAX_POLISH_ROUNDS = 4

# Each feasibility phase stops after this many iterations, or as many as the solve took if that
# is more (a phase that needs more costs more than solving again does).  From 1e-4 points the
# phases of all rounds together took 257-11143 iterations on the 20 NETLIB LPs of tests/data,
# ken-11 and osa-07 (benchmarks/RESULTS.md, "Feasibility polishing").
POLISH_MIN_PHASE_ITERATIONS = 2000

# solve(tol, warm_start, time_limit, iteration_limit) -> LPResult: the solve without polishing.
SolveFn = Callable[[float, Any, "float | None", "int | None"], LPResult]
# optimize(prepared, x_start, y_start, warm, opts, criteria, start, progress, timer) -> LPResult:
# the solver's loop (l2o.pdhg.solver._optimize), passed in (the solver imports this module).
OptimizeFn = Callable[..., LPResult]


@dataclass(frozen=True)
class PolishPhase:
    """What one feasibility phase did.

    Attributes:
        status: the phase's own LPStatus (None: it did not run, its residual already met the
            tolerance or no iterations or time were left).
        iterations: its PDHG iterations.
        vector: its point (x of the primal phase, y of the dual one, CPU float64), or None when
            it did not reach its tolerance.
    """

    status: LPStatus | None = None
    iterations: int = 0
    vector: torch.Tensor | None = None


def _zero_finite(v: torch.Tensor) -> torch.Tensor:
    """0 where v is finite, v (+-inf) elsewhere."""
    return torch.where(torch.isfinite(v), torch.zeros_like(v), v)


def primal_feasibility_problem(prepared: PreparedLP) -> PreparedLP:
    """``prepared`` with a zero objective (same scaling, same device): min 0 s.t. its bounds."""
    p = prepared.scaled
    scaled = replace(p, c=torch.zeros_like(p.c), orig_c=torch.zeros_like(p.orig_c), c0=0.0)
    lp = replace(prepared.lp, c=torch.zeros_like(prepared.lp.c), c0=0.0)
    return _with(prepared, lp, scaled)


_BOUNDS = ("col_lower", "col_upper", "row_lower", "row_upper")


def dual_feasibility_problem(prepared: PreparedLP) -> PreparedLP:
    """``prepared`` with every finite row and column bound set to 0 (same c, A, scaling)."""
    p = prepared.scaled
    scaled = replace(p, **{name: _zero_finite(getattr(p, name))
                           for name in (*_BOUNDS, *(f"orig_{b}" for b in _BOUNDS))})
    lp = replace(prepared.lp, **{name: _zero_finite(getattr(prepared.lp, name))
                                 for name in _BOUNDS})
    return _with(prepared, lp, scaled)


def _with(prepared: PreparedLP, lp: LinearProgram, scaled: ScaledLP) -> PreparedLP:
    return replace(prepared, lp=lp, scaled=scaled, termination=TerminationData.build(scaled))


@dataclass
class _Budget:
    """The solve's limits and what has been spent of them (the clock includes a PreparedLP's
    setup, as ``solve_time`` does)."""

    time_limit: float | None
    iteration_limit: int | None
    start: float
    iterations: int = 0         # all PDHG iterations so far: the solves' and the phases'
    solve_iterations: int = 0   # the solves' alone

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def time_left(self) -> float | None:
        return None if self.time_limit is None else self.time_limit - self.elapsed()

    def iterations_left(self) -> int | None:
        return None if self.iteration_limit is None else self.iteration_limit - self.iterations

    def exhausted(self) -> bool:
        time_left, iterations_left = self.time_left(), self.iterations_left()
        return ((time_left is not None and time_left <= 0)
                or (iterations_left is not None and iterations_left < 1))


def polish_solution(lp: LinearProgram, solve: SolveFn, polish_tol: float, *, tol: float,
                    warm_start: Any, prepare_original: Callable[[], PreparedLP],
                    optimize: OptimizeFn, opts: Any, time_limit: float | None = None,
                    iteration_limit: int | None = None) -> LPResult:
    """``solve`` to ``tol``, then its point polished (module docstring).

    Args:
        lp: the original :class:`l2o.LinearProgram` (the KKT errors are checked on it).
        solve: the solve without polishing (:data:`SolveFn`; any method).
        polish_tol: the relative primal and dual residual to reach.
        tol: the solve's tolerance; the polished point's gap stays within it.
        warm_start: the first solve's warm start.
        prepare_original: the :class:`PreparedLP` of ``lp`` (called once, if a phase runs).
        optimize: the solver's loop (:data:`OptimizeFn`).
        opts: the solve's :class:`~l2o.pdhg.options.SolverOptions` (check_every resolved).
        time_limit, iteration_limit: for everything (solves, phases).

    Returns:
        The LPResult with ``polish`` filled in.
    """
    wall = time.perf_counter()
    result = solve(tol, warm_start, time_limit, iteration_limit)
    # a PreparedLP's setup counts in solve_time: the budget's clock starts that much earlier
    budget = _Budget(time_limit, iteration_limit,
                     wall - max(result.solve_time - (time.perf_counter() - wall), 0.0),
                     result.iterations, result.iterations)
    polish_start = budget.elapsed()
    best = result               # the last OPTIMAL point of a solve
    primal, dual = PolishPhase(), PolishPhase()
    phases: list[PolishPhase] = []
    prepared: PreparedLP | None = None
    solve_tol = tol
    rounds = 0

    def done(out: LPResult, applied: bool, reached: bool, reason: str,
             kkt: dict[str, float] | None = None) -> LPResult:
        """``out`` with its polish report; ``kkt``: the returned point's errors on the original
        LP (kkt_error; default ``out.kkt``)."""
        out.iterations = budget.solve_iterations
        out.solve_time = budget.elapsed()
        kkt = out.kkt if kkt is None else kkt
        out.polish = {
            "applied": applied, "reached": reached, "reason": reason, "tol": polish_tol,
            "time_s": out.solve_time - polish_start,
            "primal_residual": kkt.get("rel_primal_residual", math.nan),
            "dual_residual": kkt.get("rel_dual_residual", math.nan),
            "gap": kkt.get("rel_gap", math.nan),
            "iterations": sum(p.iterations for p in phases),
            "primal_iterations": sum(p.iterations for p in phases[0::2]),
            "dual_iterations": sum(p.iterations for p in phases[1::2]), "rounds": rounds}
        return out

    if result.status != LPStatus.OPTIMAL:
        return done(result, False, False, f"the solve ended {result.status.value}: polishing "
                                          f"starts only from an optimal point")
    while True:
        rounds += 1
        before = kkt_error(lp, result.x, result.y)
        if max(before["rel_primal_residual"], before["rel_dual_residual"]) <= polish_tol \
                and before["rel_gap"] <= tol:
            return done(result, False, True, f"the solve's point already has relative "
                                             f"residuals <= {polish_tol:g} on the original LP",
                        before)
        if prepared is None:
            prepared = prepare_original()
        primal = _phase(before["rel_primal_residual"] > polish_tol, "primal", prepared, result,
                        polish_tol, optimize, opts, budget)
        dual = _phase(before["rel_dual_residual"] > polish_tol, "dual", prepared, result,
                      polish_tol, optimize, opts, budget)
        phases += [primal, dual]
        x = primal.vector if primal.vector is not None else result.x
        y = dual.vector if dual.vector is not None else result.y
        candidate = evaluate_point(lp, x, y, LPStatus.OPTIMAL, result.message)
        after = candidate.kkt
        reached = max(after["rel_primal_residual"], after["rel_dual_residual"]) <= polish_tol
        summary = (f"relative primal residual {after['rel_primal_residual']:.2g}, dual "
                   f"residual {after['rel_dual_residual']:.2g}, gap {after['rel_gap']:.2g} on "
                   f"the original LP after {sum(p.iterations for p in phases)} polishing "
                   f"iterations in {rounds} round(s)")
        if reached and after["rel_gap"] <= tol:
            candidate.message = f"{result.message}; polished: {summary}"
            for key in ("timings", "method", "presolve"):
                setattr(candidate, key, getattr(result, key))
            return done(candidate, True, True, f"polished to {polish_tol:g}: {summary}")
        if not reached or rounds >= MAX_POLISH_ROUNDS or budget.exhausted():
            break
        # the gap grew by after["rel_gap"] / solve_tol: ask the solve for that much less
        solve_tol = max(solve_tol * 0.5 * tol / after["rel_gap"], polish_tol)
        result = solve(solve_tol, result, budget.time_left(), budget.iterations_left())
        budget.iterations += result.iterations
        budget.solve_iterations += result.iterations
        if result.status != LPStatus.OPTIMAL:
            break
        best = result
    why = _shortfall(primal, dual, after, tol, reached, result, rounds)
    best.message = (f"{best.message}; feasibility polishing to {polish_tol:g} fell short "
                    f"({why}): the point of the solve to {tol:g} is returned")
    # best.kkt stays the solve's own (its OPTIMAL is about those: the recovered dual slack); the
    # report gives the same point's errors with the reduced costs proj_K(c - A^T y)
    return done(best, False, False, f"not polished: {why}; last attempt: {summary}",
                kkt_error(lp, best.x, best.y))


def _phase(needed: bool, which: str, prepared: PreparedLP, result: LPResult, polish_tol: float,
           optimize: OptimizeFn, opts: Any, budget: _Budget) -> PolishPhase:
    """The primal or the dual feasibility phase from ``result``'s point, within ``budget``."""
    if not needed or budget.exhausted():
        return PolishPhase()
    dev = prepared.device
    n, m = prepared.lp.num_cols, prepared.lp.num_rows
    if which == "primal":
        problem = primal_feasibility_problem(prepared)
        x0, y0 = result.x.to(dev, torch.float64), torch.zeros(m, dtype=torch.float64, device=dev)
    else:
        problem = dual_feasibility_problem(prepared)
        x0, y0 = torch.zeros(n, dtype=torch.float64, device=dev), result.y.to(dev, torch.float64)
    inf = math.inf
    limit = max(POLISH_MIN_PHASE_ITERATIONS, budget.solve_iterations)
    left = budget.iterations_left()
    criteria = TerminationCriteria(
        tol=polish_tol, infeasibility_tolerance=opts.infeasibility_tolerance,
        iteration_limit=limit if left is None else min(limit, left),
        time_limit=budget.time_limit,
        primal_tol=inf if which == "dual" else None, dual_tol=inf if which == "primal" else None,
        gap_tol=inf)
    out = optimize(problem, x0, y0, False, opts, criteria, budget.start, None, PhaseTimer(False))
    budget.iterations += out.iterations
    if out.status != LPStatus.OPTIMAL:
        return PolishPhase(out.status, out.iterations)
    return PolishPhase(out.status, out.iterations, out.x if which == "primal" else out.y)


def _shortfall(primal: PolishPhase, dual: PolishPhase, after: dict[str, float], tol: float,
               reached: bool, result: LPResult, rounds: int) -> str:
    """Why no polished point is returned, in words."""
    if result.status != LPStatus.OPTIMAL:
        return f"the tightened solve of round {rounds + 1} ended {result.status.value}"
    if reached:
        return (f"the polished point's gap {after['rel_gap']:.2g} exceeds the tolerance {tol:g} "
                f"after {rounds} round(s)")
    ended = [f"the {name} phase ended {phase.status.value}" for name, phase in
             (("primal", primal), ("dual", dual))
             if phase.status not in (None, LPStatus.OPTIMAL)]
    return ", ".join(ended) or "no iterations or time were left for the phases"
