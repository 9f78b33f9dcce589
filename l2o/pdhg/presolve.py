"""``solve_lp(..., presolve=)``: presolve before PDHG, postsolve after, and "auto".

    original LP --presolve--> reduced LP --PDHG--> (x~, y~) --postsolve--> (x, y)

Two presolvers, a :class:`PresolveBy` value: HiGHS's (``"highs"``, :mod:`l2o.lp.presolve`, on
the CPU: every reduction HiGHS knows, 1-28 us per nonzero) and the cheap reductions in torch on
the solve's device (``"gpu"``, :mod:`l2o.lp.gpu_presolve`: fixed columns, free / empty /
singleton rows, empty columns; milliseconds). ``presolve=True`` means HiGHS; ``"auto"`` decides
from measured costs and says why (:func:`decide_presolve`: nothing for small LPs, nothing on a
GPU unless many rows are singleton rows, else the GPU reductions, their reduced LP solved only if
they removed enough rows).

The solve of the reduced LP is any ``solve(lp, warm_start, time_limit) -> LPResult`` (the PDHG
loop without presolve); this module decides whether to presolve, maps a warm start of the
original LP into the reduced one, maps the answer back and checks it on the original LP.

One criterion. The check is the solver's own: the relative KKT errors of
:func:`l2o.lp.kkt.point_kkt` (float64, once, on the solve's device) of the postsolved
(x, y, r), where r is the solver's reduced costs (the dual slack of its last primal step, which
it checked and returns) carried through postsolve with x and y. The GPU reductions keep every
absolute residual of the reduced LP (a kept column's multiplier of a bound a singleton row set
goes to that row), so the errors differ from the reduced LP's only by the norms they are
relative to; ``LPResult.kkt`` is that check, so the tolerance holds on the LP the user gave.
(proj_K(c - A^T y) as r, as before, counts every finite bound a column's cost pushes against in
the dual objective, whether x is at it or not: ken-11's postsolved 1e-4 point had a gap of 1.6e-3
by it, its point without presolve 3.4e-3, which the solver accepts.) Only if the check fails
is the reduced LP solved again, from where it stopped, on its prepared setup, to a tolerance
tightened by the excess seen (HiGHS's postsolve can amplify residuals: kb2's primal residual
grows 50x); if that is not enough, or the point is far off, PDHG on the original LP finishes
from the postsolved point (its ``kkt`` then is the solver's).

Statuses. Presolve may decide the LP by itself: "infeasible" -> PRIMAL_INFEASIBLE, "unbounded"
-> DUAL_INFEASIBLE (with the certificate the presolver found, if it verifies on the original
LP; HiGHS gives none: x, y nan, the message says who decided), "unbounded or infeasible" -> the
original LP is solved without presolve, which tells which. An infeasibility certificate of the
reduced LP is carried to the original LP by the presolver (``carry_dual_ray`` /
``carry_primal_ray``) and reported only if it verifies there (float64); else x, y are nan and
the message says so.

``LPResult.presolve`` (JSON key "presolve") = {applied, by ("highs", "gpu" or None), reason,
rows_removed, cols_removed, nnz_removed, time_s}; ``solve_time`` counts presolve and postsolve.
"""

from __future__ import annotations

import enum
import importlib.util
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..lp.kkt import dual_ray_reduced_costs, point_kkt, verify_dual_ray, verify_primal_ray
from ..lp.model import LinearProgram
from ..lp.result import LPResult, LPStatus
from ..lp.validate import check_structure, validate_lp
from .profile import PhaseTimer

if TYPE_CHECKING:   # the presolvers are imported when a presolve runs
    from ..lp.gpu_presolve import GpuPresolved
    from ..lp.presolve import Presolved

    Presolver = Presolved | GpuPresolved   # the same interface: outcome, reduced, postsolve...

__all__ = ["AUTO_MIN_NNZ_REMOVED", "AUTO_MIN_ROWS_REMOVED", "AUTO_MIN_SINGLETON_ROWS_GPU",
           "MAX_AMPLIFICATION", "MAX_TIGHTENINGS", "MIN_REDUCED_TOL", "PRESOLVE_MIN_NNZ",
           "PresolveBy", "PresolveDecision", "decide_presolve", "evaluate_point",
           "no_presolve_report", "singleton_row_share", "solve_with_presolve"]

# "auto" leaves LPs with fewer nonzeros to PDHG alone. Measured (benchmarks/RESULTS.md, "HiGHS
# presolve on the CPU"): on small NETLIB LPs the presolve round trip costs 3-60 ms on the CPU,
# as much as a whole GPU solve (30-100 ms), and does not reliably save iterations (to 1e-4:
# bandm 6657 -> 1473, but adlittle 1089 -> 3585 and agg 17409 -> 28033).
PRESOLVE_MIN_NNZ = 10_000
# "auto" runs the GPU reductions (milliseconds on a GPU) and solves their reduced LP only if
# they removed at least this share of the rows: singleton rows turned into column bounds are
# what made dbir2 and nsct2 solvable (61% and 65% of their rows; 13x faster on an H200) and
# ken-11 (31%) faster (3073 -> 2305 iterations to 1e-4), while a few percent made PDHG slower
# (pds-10: 3.5% of the rows, 2881 -> 4609 iterations). HiGHS's presolve is not taken by "auto":
# measured with the postsolved point checked on the original LP (benchmarks/RESULTS.md, "The
# presolve path, phase by phase"), HiGHS's postsolve of PDHG's approximate duals misses the
# tolerance there (ken-11: dual residual 0.057, gap 0.33), so the path solves again, and the
# whole costs as much as no presolve or more on the CPU (fit2p 30 s vs 20 s) and 1-20x more than
# the GPU solve on an H200 (0.1-2.7 s of HiGHS alone).
AUTO_MIN_ROWS_REMOVED = 0.2
# ... or at least this share of the nonzeros: t0331-4l's parallel columns (no row removed, 25%
# of the nonzeros: 6,913 -> 5,377 iterations to 1e-4 on the CPU) and osa-07's redundant rows
# (3.3% of the rows, 39% of the nonzeros: 2,497 -> 1,281 with its columns boxed): on the shared
# large set these two are the LPs this keeps and the rows' share did not.
AUTO_MIN_NNZ_REMOVED = 0.2
# On a GPU "auto" runs the reductions only where at least this share of the rows are singleton
# rows (one nonzero: a column bound written as a row). There an iteration costs microseconds and
# the reductions' round trip is launch-bound: measured on an H200 (benchmarks/RESULTS.md, "What
# "auto" presolves on a GPU"), presolve, postsolve and the check on the original LP cost 30-70 ms
# against 10-40 ms of iterations saved to 1e-4 on ken-11, osa-07, cre-b, cre-d and t0331-4l,
# and nemsemm2's reduced LP took 12,161 iterations against 4,801; on the shared large set it paid
# only on nsct2 and dbir2 (0.2 s against 10-14 s: PDHG crawls on their singleton rows), the two
# LPs with 65% and 61% of their rows singletons; the next most is ken-11's 21%. On the CPU an
# iteration costs milliseconds and the reductions pay wherever they remove enough (as above).
AUTO_MIN_SINGLETON_ROWS_GPU = 0.4

# When the postsolved point misses the tolerance on the original LP, the reduced LP is solved
# further, to a tolerance smaller by the amplification seen, at most this many times, down to
# MIN_REDUCED_TOL; after that PDHG on the original LP finishes from the postsolved point.
MAX_TIGHTENINGS = 3
MIN_REDUCED_TOL = 1e-13
# A postsolved point this many times off the tolerance goes straight to the original LP (a
# postsolve that loses the dual: solving the reduced LP further would not help).
MAX_AMPLIFICATION = 100.0

SolveFn = Callable[[LinearProgram, Any, "float | None", "int | None", float], LPResult]


class PresolveBy(enum.Enum):
    """Who presolves: HiGHS on the CPU, or the torch reductions on the solve's device."""

    HIGHS = "highs"
    GPU = "gpu"


@dataclass(frozen=True)
class PresolveDecision:
    """Who presolves (None: nobody), with what HiGHS time limit, and why (the report's
    ``reason``); ``min_rows_removed``: the share of rows the GPU reductions must remove for
    their reduced LP to be solved ("auto"; 0: any reduction is kept), ``min_nnz_removed`` or
    of the nonzeros (None: the rows alone decide)."""

    by: PresolveBy | None
    time_limit: float | None
    reason: str
    min_rows_removed: float = 0.0
    min_nnz_removed: float | None = None

    @property
    def run(self) -> bool:
        return self.by is not None


def _highspy_installed() -> bool:
    """Whether highspy can be imported (a stand-in module without a spec, as the benchmarks put
    in sys.modules on a machine without it, counts as not installed)."""
    try:
        return importlib.util.find_spec("highspy") is not None
    except ValueError:   # in sys.modules with __spec__ None
        return False


# presolve= value -> who presolves, for the values that name one
_NAMED = {True: PresolveBy.HIGHS, "highs": PresolveBy.HIGHS, "gpu": PresolveBy.GPU}


def decide_presolve(lp: LinearProgram, presolve: Any, time_limit: float | None = None,
                    device: Any = None) -> PresolveDecision:
    """The decision for ``solve_lp(lp, presolve=...)``.

    Args:
        presolve: False (never), True or "highs" (HiGHS; it may use all of ``time_limit``),
            "gpu" (the torch reductions) or "auto": nothing below :data:`PRESOLVE_MIN_NNZ`
            nonzeros; on a GPU nothing unless :data:`AUTO_MIN_SINGLETON_ROWS_GPU` of the rows
            are singleton rows; else the GPU reductions, their reduced LP solved only if they
            removed :data:`AUTO_MIN_ROWS_REMOVED` of the rows or :data:`AUTO_MIN_NNZ_REMOVED` of
            the nonzeros (why not HiGHS: :data:`AUTO_MIN_ROWS_REMOVED`'s note).
        device: where the solve runs (None: the CPU); "auto" weighs the reductions' fixed cost
            against iterations that cost microseconds on a GPU, milliseconds on a CPU.

    Raises:
        ValueError: any other value.
        ImportError: HiGHS asked for without highspy.
    """
    if presolve is False:
        return PresolveDecision(None, None, "presolve=False")
    if isinstance(presolve, (bool, str)) and presolve in _NAMED:
        by = _NAMED[presolve]
        if by is PresolveBy.HIGHS and not _highspy_installed():
            raise ImportError(f"solve_lp: presolve={presolve!r} needs highspy (HiGHS presolve): "
                              f"pip install highspy, or use presolve='gpu' / 'auto' / False")
        return PresolveDecision(by, time_limit, f"presolve={presolve!r}")
    if presolve != "auto":
        raise ValueError(f"solve_lp: presolve must be 'auto', True, False, 'highs' or 'gpu', "
                         f"got {presolve!r}")
    if lp.nnz < PRESOLVE_MIN_NNZ:
        return PresolveDecision(None, None, f"auto: {lp.nnz} nonzeros < {PRESOLVE_MIN_NNZ}, "
                                            f"PDHG alone is faster than the presolve round trip")
    kept = (f"the GPU reductions, kept if they remove >= {AUTO_MIN_ROWS_REMOVED:.0%} of the "
            f"rows or {AUTO_MIN_NNZ_REMOVED:.0%} of the nonzeros")
    if device is not None and torch.device(device).type != "cpu":
        share = singleton_row_share(lp)
        if share < AUTO_MIN_SINGLETON_ROWS_GPU:
            return PresolveDecision(None, None, (
                f"auto: {share:.1%} of the rows are singleton rows (< "
                f"{AUTO_MIN_SINGLETON_ROWS_GPU:.0%}): on a GPU PDHG alone is faster than the "
                f"presolve round trip"))
        kept = f"{share:.1%} of the rows are singleton rows: {kept}"
    return PresolveDecision(PresolveBy.GPU, None, f"auto: {kept}", AUTO_MIN_ROWS_REMOVED,
                            AUTO_MIN_NNZ_REMOVED)


def singleton_row_share(lp: LinearProgram) -> float:
    """The share of ``lp``'s rows with exactly one stored nonzero (from the CSR row pointers of
    ``lp.A``, on the host: no kernel; ``lp`` structurally checked,
    :func:`l2o.lp.validate.check_structure`)."""
    if lp.num_rows == 0:
        return 0.0
    return float((lp.A.crow_indices().diff() == 1).sum()) / lp.num_rows


def _presolve(lp: LinearProgram, decision: PresolveDecision, device: Any) -> Presolver:
    """Run the presolver the decision names (imported here: HiGHS's needs highspy, scipy)."""
    if decision.by is PresolveBy.HIGHS:
        from ..lp.presolve import presolve_lp

        return presolve_lp(lp, time_limit=decision.time_limit)
    from ..lp.gpu_presolve import gpu_presolve_lp

    return gpu_presolve_lp(lp, device=device, min_rows_removed=decision.min_rows_removed,
                           min_nnz_removed=decision.min_nnz_removed)


def _report(applied: bool, reason: str, pre: Presolver | None = None) -> dict[str, Any]:
    counts = pre.report() if pre is not None and applied else {
        "rows_removed": 0, "cols_removed": 0, "nnz_removed": 0,
        "time_s": pre.time_s if pre is not None else 0.0}
    return {"applied": applied, "by": pre.by if applied else None, "reason": reason, **counts}


def no_presolve_report(reason: str = "presolve=False") -> dict[str, Any]:
    """``LPResult.presolve`` of a solve without presolve."""
    return _report(False, reason)


def _warm_vectors(warm_start: Any) -> tuple[Any, Any]:
    if warm_start is None:
        return None, None
    if isinstance(warm_start, LPResult):
        return warm_start.x, warm_start.y
    x, y = warm_start
    return x, y


def _nan(size: int) -> torch.Tensor:
    return torch.full((size,), math.nan, dtype=torch.float64)


def _decided(lp: LinearProgram, status: LPStatus, message: str) -> LPResult:
    """A status presolve proved by itself: no point, no certificate."""
    return LPResult(x=_nan(lp.num_cols), y=_nan(lp.num_rows), reduced_costs=_nan(lp.num_cols),
                    objective=math.nan, dual_objective=math.nan, status=status, message=message,
                    iterations=0, solve_time=0.0,
                    kkt={k: math.nan for k in ("rel_primal_residual", "rel_dual_residual",
                                               "rel_gap")})


def evaluate_point(lp: LinearProgram, x: torch.Tensor, y: torch.Tensor, status: LPStatus,
                   message: str, reduced_costs: torch.Tensor | None = None,
                   device: Any = None) -> LPResult:
    """An LPResult of ``lp`` at the point (x, y, r) (the postsolved or the polished one): its
    objectives and KKT errors by the solver's criteria (:func:`l2o.lp.kkt.point_kkt`, float64,
    once, on ``device``; r projected on the signs the bounds allow, proj_K(c - A^T y) when
    None)."""
    check = point_kkt(lp, x, y, reduced_costs, device)
    return LPResult(x=x, y=y, reduced_costs=check.reduced_costs, objective=check.objective,
                    dual_objective=check.dual_objective, status=status, message=message,
                    iterations=0, solve_time=0.0, kkt=check.errors)


def _with_ray(lp: LinearProgram, status: LPStatus, ray: torch.Tensor | None, message: str,
              eps: float) -> tuple[LPResult, bool]:
    """The result of an infeasibility status with ``ray`` (y for PRIMAL_INFEASIBLE, x for
    DUAL_INFEASIBLE, of ``lp``) as its certificate if it verifies on ``lp`` in float64, else
    x, y nan; and whether it did."""
    out = _decided(lp, status, message)
    if ray is None:
        return out, False
    if status == LPStatus.PRIMAL_INFEASIBLE:
        objective, residual = verify_dual_ray(lp, ray)
        verified = objective > 0 and residual <= eps * objective
        if verified:
            out.y, out.reduced_costs = ray, dual_ray_reduced_costs(lp, ray)
    else:
        cx, violation = verify_primal_ray(lp, ray)
        verified = cx < 0 and violation <= eps * -cx
        if verified:
            out.x = ray
    return out, verified


def _carry_certificate(pre: Presolver, res: LPResult, eps: float) -> LPResult:
    """The reduced LP's infeasibility certificate carried to the original LP by the presolver,
    reported only if it verifies there in float64 (else x, y nan: the status itself still holds,
    as presolve keeps feasibility and boundedness)."""
    if res.status == LPStatus.PRIMAL_INFEASIBLE:
        ray, proves = pre.carry_dual_ray(res.y), "infeasible"
    else:
        ray, proves = pre.carry_primal_ray(res.x), "dual infeasible (unbounded, if feasible)"
    out, carried = _with_ray(pre.original, res.status, ray, "", eps)
    out.iterations = res.iterations
    if carried:
        out.message = f"{res.message} (found on the presolved LP; the ray carries over)"
    else:
        out.message = (f"{res.message} on the presolved LP, so the original LP is {proves}; "
                       f"the certificate does not carry over to it (x, y nan)")
    return out


def solve_with_presolve(lp: LinearProgram, presolve: Any, solve: SolveFn, *, tol: float,
                        warm_start: Any = None, time_limit: float | None = None,
                        iteration_limit: int | None = None,
                        infeasibility_tolerance: float = 1e-8, device: Any = None,
                        profile: bool = False) -> LPResult:
    """``solve`` on the presolved LP, the answer postsolved (module docstring).

    Args:
        lp: the original LP.
        presolve: "auto", True, False, "highs" or "gpu" (:func:`decide_presolve`).
        solve: ``solve(lp, warm_start, time_limit, iteration_limit, tol) -> LPResult``, the
            solver without presolve (a second call on the same LP may reuse its setup).
        tol: the relative tolerance, met by the postsolved point on the ORIGINAL LP.
        warm_start: (x, y) or an LPResult of the ORIGINAL LP (mapped into the reduced one).
        time_limit, iteration_limit: for everything (presolve and every solve included).
        infeasibility_tolerance: eps of the certificates carried over (as the solver's).
        device: where the GPU reductions and the check on the original LP run (the solve's
            device; None: the CPU).
        profile: fill ``LPResult.timings`` with the path's phases (decide, validate,
            presolve, the reduced solve's own phases prefixed "solve." with "solve.other" the
            rest of that call, postsolve, evaluate, and "resolve." for any later solve),
            device synchronized at each mark; they sum to "total".

    Returns:
        An LPResult of the original LP with ``presolve`` filled in.
    """
    start = time.perf_counter()
    timer = PhaseTimer(profile, None if device is None else torch.device(device), start)
    check_structure(lp)   # "auto" reads A's row pointers to decide
    decision = decide_presolve(lp, presolve, time_limit, device)
    timer.mark("decide")
    iterations = 0
    solves = 0

    def run(problem: LinearProgram, start_point: Any, tolerance: float) -> LPResult:
        nonlocal iterations, solves
        left_time = None if time_limit is None else max(
            time_limit - (time.perf_counter() - start), 0.0)
        left_iterations = None if iteration_limit is None else max(
            iteration_limit - iterations, 1)
        result = solve(problem, start_point, left_time, left_iterations, tolerance)
        iterations += result.iterations
        solves += 1
        if profile and decision.run:   # the solve's phases in the path's, the clock past them
            prefix = "solve." if solves == 1 else "resolve."
            phases = {k: v for k, v in (result.timings or {}).items() if k != "total"}
            now = time.perf_counter()
            phases["other"] = (now - timer.last) - sum(phases.values())   # outside its phases
            for phase, seconds in phases.items():
                timer.timings[prefix + phase] = timer.timings.get(prefix + phase, 0.0) + seconds
            timer.last = now
        return result

    def finish(result: LPResult, report: dict[str, Any]) -> LPResult:
        result.iterations = iterations
        result.presolve = report
        if profile and decision.run:   # else the solve's own phases stay as they are
            timer.mark("finish")
            result.solve_time = timer.last - start
            result.timings = {**timer.timings, "total": result.solve_time}
        else:
            result.solve_time = time.perf_counter() - start
        return result

    if not decision.run:
        return finish(run(lp, warm_start, tol), _report(False, decision.reason))
    from ..lp.presolve import PresolveOutcome  # no highspy needed

    if decision.by is PresolveBy.HIGHS:
        # presolve must not see nan/inf or crossed bounds: the same error as without. The GPU
        # reductions check their own copy on the device (one sync; the host check took up to
        # 73 ms on the H200's host, cre-d): benchmarks/RESULTS.md, "The GPU presolve's fixed cost"
        validate_lp(lp)
    timer.mark("validate")
    pre = _presolve(lp, decision, device)
    timer.mark("presolve")
    outcome = pre.outcome
    who = "HiGHS" if pre.by == PresolveBy.HIGHS.value else "GPU"
    why = f"{decision.reason}; {pre.message}"
    if outcome in (PresolveOutcome.INFEASIBLE, PresolveOutcome.UNBOUNDED):
        status, word = ((LPStatus.PRIMAL_INFEASIBLE, "infeasible")
                        if outcome == PresolveOutcome.INFEASIBLE
                        else (LPStatus.DUAL_INFEASIBLE, "unbounded"))
        result, verified = _with_ray(lp, status, pre.ray, "", infeasibility_tolerance)
        result.message = (f"{who} presolve proved the LP {word} "
                          + ("(the certificate verifies)" if verified else "(no certificate)"))
        return finish(result, _report(True, why, pre))
    if not pre.reduced_or_empty:
        if outcome == PresolveOutcome.UNBOUNDED_OR_INFEASIBLE:
            why += "; solved without presolve to tell which"
        return finish(run(lp, warm_start, tol), _report(False, why, pre))
    report = _report(True, why, pre)
    if pre.reduced is None:    # EMPTY: presolve solved it
        x, y, r, _ = pre.postsolve()
        return finish(evaluate_point(lp, x, y, LPStatus.OPTIMAL, f"{who} presolve solved the LP",
                                     r, device), report)

    start_point = pre.reduce_warm_start(*_warm_vectors(warm_start))
    reduced_tol = tol
    for _ in range(MAX_TIGHTENINGS + 1):
        reduced = run(pre.reduced, start_point, reduced_tol)
        if reduced.status in (LPStatus.PRIMAL_INFEASIBLE, LPStatus.DUAL_INFEASIBLE):
            return finish(_carry_certificate(pre, reduced, infeasibility_tolerance), report)
        if not (bool(torch.isfinite(reduced.x).all()) and bool(torch.isfinite(reduced.y).all())):
            return finish(_decided(lp, reduced.status, reduced.message), report)
        # the solver's reduced costs (its dual slack) travel with the point: the check below
        # is then the solver's own criterion, evaluated on the original LP
        x, y, r, _ = pre.postsolve(reduced.x, reduced.y, reduced.reduced_costs)
        timer.mark("postsolve")
        result = evaluate_point(lp, x, y, reduced.status, f"{reduced.message} (presolved LP)",
                                r, device)
        timer.mark("evaluate")
        error = max(result.kkt.values())
        if reduced.status != LPStatus.OPTIMAL or error <= tol or error > MAX_AMPLIFICATION * tol:
            break
        # the original LP's norms differ from the reduced LP's (and HiGHS's postsolve may
        # amplify residuals: kb2's primal residual 50x): ask the reduced LP for that much
        # more, from where it stopped, on its prepared setup
        reduced_tol *= 0.5 * tol / error
        start_point = (reduced.x, reduced.y)
        if reduced_tol < MIN_REDUCED_TOL:
            break
    if reduced.status == LPStatus.OPTIMAL and error <= tol:
        result.message = (f"relative KKT errors <= {tol:g} on the original LP after postsolve "
                          f"({iterations} iterations on the presolved LP, tolerance "
                          f"{reduced_tol:.2g} there)")
    elif reduced.status == LPStatus.OPTIMAL:
        # presolve's amplification beat the tightening: PDHG on the original LP finishes
        done = iterations
        result = run(lp, (x, y), tol)
        result.message = (f"{result.message} on the original LP, from the postsolved point of "
                          f"{done} iterations on the presolved LP (KKT error {error:.2g} > "
                          f"{tol:g} there)")
    return finish(result, report)
