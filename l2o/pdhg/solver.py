"""``solve_lp``: restarted reflected-Halpern PDHG (the PDLP / cuPDLPx family) on CPU or CUDA.

One loop of named steps, as cuPDLPx's ``optimize``:

    prepare                      validate, scale, ||A~||_2, to the device    (prepare.py)
    start                        the warm start, scaled and projected        (start.py)
    repeat:
        iterate a chunk          check_every reflected-Halpern iterations    (iteration.py)
        check statistics         KKT errors, r(z), ray tests of T(z)        (statistics.py)
        check termination        a pure function of the statistics record    (termination.py)
        restart or not           a pure function of the record and memory    (restart.py)
    result                       the LPResult of the last check or a ray     (finish.py)

The chunk and its check run on the device with no host sync in between; on CUDA they are CUDA
graph replays, and the check's scalars come to the host in one copy.  The first check comes
after the first iteration, so a warm start at an optimum stops there.  At a restart the anchor
and the iterate become the check's point z^ = T(z), the epoch's index k restarts at 0 and the
PID controller updates the primal weight omega (tau = eta / omega, sigma = eta omega).  A warm
start is weighed against the cold start after one iteration and, if it passes, after a short
trial of both, and kept only when its fixed-point error passes the restart rule's
sufficient-decrease test against the cold start's both times (start.py);
a warm start kept updates omega with PDLP's smoothing (``PrimalWeightPID.after_warm_start``).

References: Applegate et al., "Practical large-scale linear programming using primal-dual hybrid
gradient", NeurIPS 2021 (PDLP); Lu & Yang, "Restarted Halpern PDHG for linear programming", 2024;
Lu, Peng & Yang, "cuPDLPx", 2025; OR-Tools ``ortools/pdlp`` (termination and restart as pure
functions of a statistics record).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from l2o.device import fixed_order_algorithms, resolve_device
from l2o.lp.result import LPResult, LPStatus
from l2o.lp.validate import check_structure

from .finish import Checked, make_result, ray_result
from .fused import make_plan
from .iteration import SINGLE_PROCESS, ChunkRunner, IterationState
from .method import Method, choose_method
from .options import (
    POLISH_TOL,
    PREPARE_OPTIONS,
    SolverOptions,
    check_dtype,
    check_polish_tol,
    default_check_every,
    parse_options,
    reproducible_options,
)
from .polish import polish_solution
from .prepare import PreparedLP, check_prepared, prepare, prepare_lp
from .presolve import no_presolve_report, solve_with_presolve
from .profile import PhaseTimer
from .restart import PrimalWeightPID, RestartMemory, choose_restart
from .start import cold_start, is_warm, scaled_start, warm_start_vectors, weigh_warm_start
from .statistics import CheckStatistics, CheckVectors
from .termination import Termination, TerminationCriteria, check_termination

__all__ = ["PreparedLP", "SolverOptions", "prepare", "solve_lp"]


def solve_lp(lp, tol: float = 1e-4, device: Any = "auto", dtype: torch.dtype | None = None,
             warm_start: Any = None, time_limit: float | None = None,
             iteration_limit: int | None = None,
             progress: Callable[[dict], None] | None = None, check_every: int | None = None,
             method: str = "pdhg", presolve: Any = "auto", polish: bool = False,
             polish_tol: float = POLISH_TOL, distributed: bool = False,
             reproducible: bool = False, **advanced: Any) -> LPResult:
    """Solve an LP with restarted reflected-Halpern PDHG (see the module docstring), or HiGHS.

    Optimality (cuPDLPx's relative criteria, l2 norms, on the UNSCALED LP at the returned point;
    :mod:`l2o.lp.kkt`):
        ||A x - proj_[l_r, u_r](A x)||_2 / (1 + ||b||_2)                 <= tol
        ||c - A^T y - r||_2 / (1 + ||c||_2)                              <= tol
        |pobj - dobj| / (1 + |pobj| + |dobj|)                            <= tol
    with b the finite row bounds (equality rows once), r the dual slack recovered from the last
    primal step (r = (x - v) / tau with x = proj(v), v = x_prev - tau (c - A^T y_prev): the Moreau
    identity, as cuPDLPx; r lies in the normal cone of the column bounds at x),
    pobj = c^T x + c0 and dobj = c0 + sum(l_r y^+ - u_r y^-) + sum(l_c r^+ - u_c r^-)
    (minimization form).  ``LPResult.reduced_costs`` are that r, so
    ``l2o.lp.kkt.kkt_error(lp, x, y, reduced_costs)`` gives back ``LPResult.kkt``.

    Args:
        lp: an :class:`l2o.LinearProgram`, or a :class:`PreparedLP` (:func:`prepare`): its setup
            (checks, preconditioning, copy to the device) is reused, and ``device``, ``dtype``
            and the preparation options come from it (asking for others raises ValueError).
        tol: relative tolerance of the three criteria.
        device: "auto" (CUDA when available), "cpu", "cuda", or a torch.device.
        dtype: torch.float64 (default; None means it, or the PreparedLP's) or torch.float32
            (faster; tolerances below ~1e-6 are then out of reach).
        warm_start: (x, y) (either may be None) or an LPResult: the initial iterate and Halpern
            anchor (unscaled; y in the minimization-form sign convention of LPResult).  Tensors
            may already lie on the solve's device (no host round trip then).
        time_limit: seconds (checked at every termination check).
        iteration_limit: maximum number of PDHG iterations.
        progress: called with {"iteration", "rel_primal_residual", "rel_dual_residual",
            "rel_gap", "elapsed"} at every check.
        check_every: iterations between checks (None: 64, or 192 for LPs with >= 1e5
            nonzeros, where a check costs several iterations' time: see
            :func:`l2o.pdhg.options.default_check_every`).
        method: "pdhg" (this solver, the default), "highs" (HiGHS's dual simplex on the CPU,
            :func:`l2o.lp.solve_highs`: its own tolerances, 1e-7 absolute feasibility;
            ``time_limit`` and ``iteration_limit`` apply, the PDHG settings do not) or "auto"
            (HiGHS below :data:`l2o.pdhg.method.AUTO_HIGHS_MAX_NNZ` nonzeros without a warm
            start, else PDHG).  Both return the same LPResult fields.
        presolve: "auto" (default), True / "highs" (HiGHS's presolve), "gpu" (the cheap
            reductions in torch on ``device``, :mod:`l2o.lp.gpu_presolve`) or False: reduce the
            LP before PDHG and map x, y back (:mod:`l2o.pdhg.presolve`; "auto" skips small LPs
            and picks the presolver). ``LPResult.presolve`` says what was done and why; a
            PreparedLP is solved as prepared, without presolve; method "highs" presolves by
            itself.
        polish: after an OPTIMAL solve, drive the relative primal and dual residuals to
            ``polish_tol`` on the original LP by PDHG on its primal and dual feasibility
            problems (:mod:`l2o.pdhg.polish`, as PDLP and cuPDLPx); the polished point is
            returned only if it gets there with the gap still <= ``tol``, else the solve's
            point and status stay and ``LPResult.polish`` says why.
        polish_tol: the relative feasibility polishing reaches (default 1e-8; below ~1e-6 it
            needs float64: in float32 the phases stop at their iteration cap and say so).
        distributed: solve one LP sharded over the processes of the torch.distributed group
            this script initialized (``torchrun``; NCCL with a GPU per process, or gloo on
            CPUs): every process passes the same LP and gets the same result, rank 0 alone
            calls ``progress`` (:mod:`l2o.pdhg.distributed`; no presolve, polish, PreparedLP or
            HiGHS there).
        reproducible: the same bits in every run on a GPU too (a CPU solve repeats anyway):
            cuSPARSE's fixed-order products (``sparse_products="cusparse-alg2"``, another value
            raises; up to 1.5x slower per iteration on LPs with long rows) and, for the call,
            torch's deterministic algorithms (``torch.use_deterministic_algorithms(True,
            warn_only=True)``, the previous setting restored after): the GPU presolve's and
            postsolve's sums then add in a fixed order (1.2-1.7x its time).  Not with
            ``distributed``.
        **advanced: fields of :class:`SolverOptions`.

    Returns:
        An :class:`LPResult` (CPU float64 vectors; see its docstring for x, y per status).
        Its ``solve_time`` always includes the setup: for a PreparedLP, this call's seconds
        plus ``PreparedLP.setup_time`` (the time limit counts it too).

    Raises:
        ValueError: nan/inf data, lower > upper bounds, bad warm start or options.
    """
    if reproducible is not False:
        advanced = reproducible_options("solve_lp", reproducible, distributed, advanced)
        with fixed_order_algorithms():
            return solve_lp(lp, tol, device, dtype, warm_start, time_limit, iteration_limit,
                            progress, check_every, method, presolve, polish, polish_tol,
                            **advanced)
    start = time.perf_counter()
    opts = parse_options("solve_lp", check_every, advanced)
    criteria = _criteria(tol, iteration_limit, time_limit, opts)
    if not isinstance(distributed, bool):
        raise TypeError(f"solve_lp: distributed must be True or False, got {distributed!r}")
    if distributed:     # here: torch.distributed's modules only when used
        from .distributed import solve_sharded

        return solve_sharded(lp, tol=tol, device=device, dtype=dtype, warm_start=warm_start,
                             progress=progress, method=method, presolve=presolve, polish=polish,
                             opts=opts, criteria=criteria, start=start, optimize=_optimize)
    if polish:      # solve, then polish the solve's point (l2o.pdhg.polish)
        check_polish_tol("solve_lp", polish_tol)

        def solve(tolerance: float, start_point: Any, limit: float | None,
                  iterations: int | None) -> LPResult:
            return solve_lp(lp, tolerance, device, dtype, start_point, limit, iterations,
                            progress, check_every, method, presolve, **advanced)

        return _polish(lp, solve, polish_tol, tol, warm_start, device, dtype, opts, time_limit,
                       iteration_limit)
    given = lp if isinstance(lp, PreparedLP) else None
    if choose_method(method, given.lp if given else lp, warm_start) is Method.HIGHS:
        from l2o.lp.reference import solve_highs  # here: HiGHS (and scipy) only when used

        result = solve_highs(given.lp if given else lp, time_limit=time_limit,
                             iteration_limit=iteration_limit)
        result.solve_time = time.perf_counter() - start
        result.presolve = no_presolve_report("method 'highs': HiGHS presolves by itself")
        return result
    if given is None and presolve is not False:
        return _solve_presolved(lp, presolve, tol, device, dtype, warm_start, time_limit,
                                iteration_limit, progress, check_every, opts, advanced)
    if given is not None and presolve not in (False, "auto"):
        raise ValueError("solve_lp: a PreparedLP is solved as prepared; presolve needs the "
                         "LinearProgram (solve_lp(lp, presolve=True))")
    if given is not None:
        check_prepared(given, device, dtype, advanced)
        lp, dev, dtype = given.lp, given.device, given.dtype
        opts = replace(opts, **{k: getattr(given.options, k) for k in PREPARE_OPTIONS})
    else:
        dtype = torch.float64 if dtype is None else dtype
        check_dtype("solve_lp", dtype)
        check_structure(lp)
        dev = resolve_device(device)
    if opts.check_every is None:
        opts = replace(opts, check_every=default_check_every(lp.nnz))
    x_start, y_start = warm_start_vectors(lp, warm_start)
    timer = PhaseTimer(opts.profile, dev, start)
    if given is None:
        prepared = prepare_lp(lp, dev, dtype, opts, timer, start)
    else:
        # the solve's clock starts setup_time earlier: solve_time (and the time limit) count the
        # shared setup as if this call had done it; its phases are reported as they were
        prepared, start = given, start - given.setup_time
        timer.timings.update(given.timings)
    result = _optimize(prepared, x_start, y_start, is_warm(warm_start), opts, criteria,
                       start, progress, timer)
    result.presolve = no_presolve_report("a PreparedLP is solved as prepared"
                                         if presolve == "auto" else "presolve=False")
    if opts.profile:
        timer.mark("result")
        result.timings = {**timer.timings, "total": timer.last - start}   # = sum of phases
    return result


def _solve_presolved(lp, presolve: Any, tol: float, device: Any, dtype: Any, warm_start: Any,
                     time_limit: float | None, iteration_limit: int | None,
                     progress: Callable[[dict], None] | None, check_every: int | None,
                     opts: SolverOptions, advanced: dict[str, Any]) -> LPResult:
    """solve_lp with ``presolve`` (not False): the loop runs on the reduced LP, prepared once
    (a re-solve to a tighter tolerance starts iterating at once)."""
    dev = resolve_device(device)
    dtype = torch.float64 if dtype is None else dtype
    preparation = {key: advanced[key] for key in (*PREPARE_OPTIONS, "profile") if key in advanced}
    solve_options = {key: value for key, value in advanced.items() if key not in PREPARE_OPTIONS}
    prepared: dict[int, tuple[Any, PreparedLP]] = {}   # id -> (the LP, kept alive; its setup)

    def solve(problem, start, limit: float | None, iterations: int | None,
              tolerance: float) -> LPResult:
        if id(problem) not in prepared:
            prepared[id(problem)] = (problem, prepare(problem, dev, dtype, **preparation))
        return solve_lp(prepared[id(problem)][1], tolerance, dev, dtype, start, limit,
                        iterations, progress, check_every, presolve=False, **solve_options)

    return solve_with_presolve(lp, presolve, solve, tol=tol, warm_start=warm_start,
                               time_limit=time_limit, iteration_limit=iteration_limit,
                               infeasibility_tolerance=opts.infeasibility_tolerance,
                               device=dev, profile=opts.profile)


def _polish(lp, solve: Callable[..., LPResult], polish_tol: float, tol: float, warm_start: Any,
            device: Any, dtype: Any, opts: SolverOptions, time_limit: float | None,
            iteration_limit: int | None) -> LPResult:
    """solve_lp with ``polish=True``: ``solve``'s point polished on the original LP."""
    given = lp if isinstance(lp, PreparedLP) else None
    original = given.lp if given is not None else lp
    if opts.check_every is None:
        opts = replace(opts, check_every=default_check_every(original.nnz))

    def prepare_original() -> PreparedLP:
        if given is not None:
            return given
        return prepare(original, device, torch.float64 if dtype is None else dtype,
                       **{key: getattr(opts, key) for key in PREPARE_OPTIONS})

    return polish_solution(original, solve, polish_tol, tol=tol, warm_start=warm_start,
                           prepare_original=prepare_original, optimize=_optimize, opts=opts,
                           time_limit=time_limit, iteration_limit=iteration_limit)


def _criteria(tol: float, iteration_limit: int | None, time_limit: float | None,
              opts: SolverOptions) -> TerminationCriteria:
    if not tol > 0:
        raise ValueError(f"solve_lp: tol must be positive, got {tol}")
    if iteration_limit is not None and iteration_limit < 1:
        raise ValueError(f"solve_lp: iteration_limit must be >= 1, got {iteration_limit}")
    return TerminationCriteria(tol=tol, infeasibility_tolerance=opts.infeasibility_tolerance,
                               iteration_limit=iteration_limit, time_limit=time_limit)


def _optimize(prepared: PreparedLP, x_start: torch.Tensor, y_start: torch.Tensor, warm: bool,
              opts: SolverOptions, criteria: TerminationCriteria, start: float,
              progress: Callable[[dict], None] | None, timer: PhaseTimer,
              parallel: Any = SINGLE_PROCESS) -> LPResult:
    """The loop of the module docstring, from the prepared LP and the (unscaled) start.

    ``parallel``: where the products and reductions run (:class:`SingleProcess`, or for an LP
    sharded over a process group, with ``prepared`` and the start this process's shard,
    :class:`l2o.pdhg.distributed.Sharded`: it also agrees on the clock and gathers the result).
    """
    p, t = prepared.scaled, prepared.termination
    eta = opts.step_safety / prepared.operator_norm if prepared.operator_norm > 0 else 1.0
    state = IterationState.init(p, *scaled_start(prepared, x_start, y_start))
    parallel.attach(state)
    cold = cold_start(prepared) if warm else None      # to weigh the warm start against
    timer.mark("state")
    state.fused_plan = make_plan(p, state, opts.fused, opts.sparse_products, parallel.exchange)
    timer.mark("fused_plan")
    pid = (PrimalWeightPID.after_warm_start(opts.primal_weight) if warm
           else PrimalWeightPID.start(opts.primal_weight))
    state.set_steps(p, eta, pid.weight)
    runner = ChunkRunner(p, t, state, opts.check_every,
                         opts.cuda_graph and prepared.device.type == "cuda", timer)
    memory = RestartMemory()
    checked: Checked | None = None          # the last check with finite statistics
    total = 0
    # the iterations of the start not taken (start.weigh_warm_start) belong to neither run: the
    # restart rule counts without them, so the solve goes on exactly as the plain solve from the
    # start taken
    outside = 0
    # checks the weighing ran, the start taken's, not yet read: (stats, vectors, restart reads)
    pending: list[tuple[CheckStatistics, CheckVectors, bool]] = []
    ahead = 0       # iterations the start taken ran past its last check the restart rule read
    while True:
        # iterate a chunk and compute the check statistics (one host sync)
        if pending:
            stats, vectors, restart_reads = pending.pop(0)
        else:
            # one iteration before a check that measures r of the anchor (the first one, and
            # each epoch's with AnchorError.NEW_ANCHOR), else a chunk
            chunk = 1 if memory.measures_anchor else opts.check_every - ahead
            if criteria.iteration_limit is not None:
                chunk = min(chunk, criteria.iteration_limit - total)
            stats, vectors = runner.run(chunk)
            timer.mark("first_check" if total == 0 else "iterations")
            total, ahead, restart_reads = total + chunk, 0, True
        elapsed = parallel.elapsed(start)
        if progress is not None:
            progress(stats.progress(total, elapsed))
        if stats.is_finite():
            # copies: on CUDA the check's outputs live in the graph's buffers, which the next
            # replay overwrites (and a NUMERICAL_ERROR result returns the last finite point)
            checked = Checked(stats, vectors.point())

        # check termination
        for reason in check_termination(stats, criteria, total, elapsed):
            result = _finish(prepared, reason, checked, vectors, total, start, criteria,
                             parallel)
            if result is not None:
                return result
        if not restart_reads:
            continue

        # restart or not
        restart, memory = choose_restart(opts.restart, memory, stats.fixed_point_error,
                                         total - outside)
        if cold is not None:            # the warm start's first check: weigh it against cold
            choice = weigh_warm_start(state, runner, cold, stats.fixed_point_error,
                                      opts.restart.sufficient,
                                      _trial(opts, criteria.iteration_limit, total))
            timer.mark("cold_probe")
            cold, pending, ahead = None, choice.checks, choice.ahead
            total, outside = total + choice.iterations, choice.outside
            if not choice.warm:         # the cold solve from here on, its controller too
                memory, pid = RestartMemory(), PrimalWeightPID.start(opts.primal_weight)
            continue
        if restart is not None:
            state.restart_epoch(p, state.x_hat, state.y_hat, vectors.aty_hat)
            omega = pid.update(stats.primal_move, stats.dual_move, stats.rel_primal_residual,
                               stats.rel_dual_residual)
            state.set_steps(p, eta, omega)


def _trial(opts: SolverOptions, iteration_limit: int | None, total: int) -> int:
    """The iterations of the warm start's trial (``SolverOptions.warm_start_trial``): less than
    a check interval (the plain solve's second check stays where it is), and none when the
    trial would not fit in the iteration limit."""
    trial = min(opts.warm_start_trial, opts.check_every - 1)
    fits = iteration_limit is None or total + 1 + 2 * trial <= iteration_limit
    return trial if fits else 0


def _finish(prepared: PreparedLP, reason: Termination, checked: Checked | None,
            vectors: CheckVectors, total: int, start: float,
            criteria: TerminationCriteria, parallel: Any) -> LPResult | None:
    """The result of ``reason``, or None when its ray fails the float64 re-check."""
    checked = parallel.whole_checked(checked)
    if reason.ray is None:
        return make_result(prepared.lp, reason.status, checked, total, start, reason.message)
    primal = reason.status == LPStatus.DUAL_INFEASIBLE
    rays = vectors.primal_rays if primal else vectors.dual_rays
    scaled, ray = parallel.whole_ray(prepared.scaled, rays[reason.ray], primal)
    return ray_result(prepared.lp, reason.status, checked, ray, scaled, total, start,
                      criteria.infeasibility_tolerance)
