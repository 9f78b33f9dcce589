"""``solve_lp_batch``: many LPs in one PDHG run, each with its own steps, restarts and status.

The B LPs are stacked into one block-diagonal LP and preconditioned together, each as
:func:`l2o.solve_lp` preconditions it alone (:mod:`l2o.pdhg.stack`: D1, D2 are per row and
column, theta_b, theta_c per LP), so one reflected-Halpern iteration (:mod:`l2o.pdhg.iteration`,
two SpMVs; on CUDA, CUDA-graph replays of two Triton kernels with or without cuSPARSE
products, :mod:`l2o.pdhg.batch_fused`, where Triton runs) advances every LP, and one check
(:mod:`l2o.pdhg.batch_check`: 7 launches, the single-LP check's kernels on tiles of one LP each
and an ordered per-LP reduction; else :mod:`l2o.pdhg.statistics` with segment reductions)
gives a (B, K) tensor read with one host copy.  On the host each LP then goes through the same pure functions as a single
solve: :func:`~l2o.pdhg.termination.check_termination`,
:func:`~l2o.pdhg.restart.choose_restart`, its own :class:`~l2o.pdhg.restart.PrimalWeightPID`
and :class:`~l2o.pdhg.restart.RestartMemory`; restarts and new steps go back to the device as
(B,) masks and values (:mod:`l2o.pdhg.batch_state`).

    check, stack, precondition                (stack.py: one set of kernels for all LPs)
    repeat:
        iterate a chunk, check                every LP of the stack at once
        per LP: termination, restart          on the host, from its row of the (B, K) copy
        compact                               when the finished hold enough of the work

Finished LPs are compacted out (:class:`Compaction`): once the finished LPs hold enough of the
stack's work (nonzeros + rows + columns), the stack, the iteration state and the termination
data are rebuilt on the device with the others only (index selection,
:meth:`~l2o.pdhg.stack.StackedLP.select`), and the CUDA graphs are captured again.  Until then
a finished LP keeps iterating in its own block, which no other LP reads (A~ is block-diagonal,
every reduction is per LP): nan or a diverging iterate in one LP spoils no other.

Each LP's result is what ``solve_lp(lp, method="pdhg", presolve=False)`` would give, up to
rounding (the per-LP sums of a stack add in another order than a single LP's): the same
iteration, restart rule and checks every ``check_every`` iterations.  The differences: all LPs
share the check schedule, so an LP's checks also fall where another LP's iteration limit ends a
chunk early; the step size always takes the Pock-Chambolle bound ||A~||_2 <= 1 (solve_lp's
default); and ``solve_time`` is the time from the call to the check at which that LP finished
(setup included).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from l2o.device import fixed_order_algorithms, resolve_device
from l2o.lp.model import LinearProgram
from l2o.lp.result import LPResult, LPStatus
from l2o.lp.validate import InvalidLPError, check_structure, validate_lp

from .batch_check import make_batch_check
from .batch_fused import FUSED_MODES, make_batch_plan
from .batch_state import BatchState
from .finish import Checked, make_result, ray_result
from .iteration import ChunkRunner
from .options import (
    SolverOptions,
    check_dtype,
    default_check_every,
    parse_options,
    reproducible_options,
)
from .presolve import no_presolve_report
from .profile import PhaseTimer
from .restart import PrimalWeightPID, RestartMemory, choose_restart
from .scaling import LPArrays
from .stack import StackedLP, scale_stack, select_termination, stack_arrays
from .start import is_warm, keeps_warm_start, warm_start_vectors
from .statistics import RAY_CANDIDATES, CheckStatistics, CheckVectors
from .termination import Termination, TerminationCriteria, TerminationData, check_termination

__all__ = ["BATCH_OPTIONS", "EAGER_COMPACTION", "GRAPH_COMPACTION", "PROFILE_PHASES",
           "Compaction", "solve_lp_batch"]

# The phases of solve_lp_batch(profile=True), summed over the run, in each LP's ``timings``.
PROFILE_PHASES = {
    "validate": "input checks and warm starts on the host",
    "to_device": "the LPs' arrays stacked and copied to the device",
    "check_values": "nan/inf and bound checks of the stacked data (one sync)",
    "scaling": "equilibration, theta_b, theta_c, A~^T, the termination vectors",
    "state": "iteration buffers, steps, the fused plan",
    "first_check": "the first iteration and its check",
    "graph_capture": "recording the CUDA graphs (once per stack)",
    "iterations": "every later chunk and its check, up to the check's host copy",
    "host": "per-LP termination and restart rules, results of the finished",
    "restart": "restarts and new steps sent to the device",
    "compaction": "rebuilding the stack without its finished LPs",
}

# The SolverOptions solve_lp_batch takes as keyword arguments (the others are solve_lp's own).
BATCH_OPTIONS = ("cuda_graph", "fused", "sparse_products", "profile")


@dataclass(frozen=True)
class Compaction:
    """When the stack is rebuilt without its finished LPs: once they hold at least ``fraction``
    of its work (nonzeros + rows + columns, what an iteration reads) and the stack holds at
    least ``min_work``.

    A rebuild pays by the iterations it makes cheaper.  Eagerly (the CPU) an iteration's time
    is proportional to the work, and a rebuild is a few index selections.  With CUDA graphs a
    rebuild also records and instantiates the two graphs again: with the fused iteration and
    check (:mod:`l2o.pdhg.batch_fused`, :mod:`l2o.pdhg.batch_check`) 2-4 kernels per
    iteration and 7 for the check, a few milliseconds in all (an estimate).  An iteration of a
    small stack costs its kernels' launch latency whatever its size: on the H200 solve_lp's
    iteration took 10.7-22.2 us from 0.11M to 0.68M nonzeros, 27.5 us at 1.1M and 118 us at
    8M (benchmarks/RESULTS.md, per-iteration protocol).  So with graphs the stack is rebuilt
    at half its work (a quarter rebuilds 2.4 times as often, which a short run such as 64
    PageRank LPs' ~20 checks would not repay), down to 2^17 entries, where an iteration is
    launch-bound: the few LPs left at the end of a batch then iterate about as fast as one LP
    alone.  (Until 2026-12-03 the rule stopped at 2^21 entries, for the torch check's ~375
    operations to record: the last LPs of 256 set-cover LPs at 1e-8 iterated at ~84 us in a
    stack of ~40-80 LPs.)
    """

    fraction: float
    min_work: int

    def due(self, finished_work: int, stack_work: int) -> bool:
        return (0 < finished_work and stack_work >= self.min_work
                and finished_work >= self.fraction * stack_work)


EAGER_COMPACTION = Compaction(fraction=0.25, min_work=0)
GRAPH_COMPACTION = Compaction(fraction=0.5, min_work=2**17)


def solve_lp_batch(lps: Sequence, tol: float = 1e-4, device: Any = "auto",
                   dtype: torch.dtype | None = None, warm_start: Sequence | None = None,
                   time_limit: float | None = None,
                   iteration_limit: int | Sequence[int | None] | None = None,
                   check_every: int | None = None,
                   progress: Callable[[dict], None] | None = None,
                   reproducible: bool = False, **advanced: Any) -> list[LPResult]:
    """Solve several LPs at once with restarted reflected-Halpern PDHG (module docstring).

    Each LP is solved as ``solve_lp(lp, tol, device, dtype, method="pdhg", presolve=False)``
    would solve it (same optimality criteria, statuses and result fields; see
    :func:`l2o.solve_lp`), with its own step sizes, primal weight, restarts, termination,
    iteration count and warm start; the LPs may differ in size and sparsity.  Finished LPs are
    compacted out of the stack (module docstring).

    Args:
        lps: the :class:`l2o.LinearProgram` s.
        tol: relative tolerance of the three optimality criteria, for every LP.
        device: "auto" (CUDA when available), "cpu", "cuda", or a torch.device.
        dtype: torch.float64 (default, None) or torch.float32.
        warm_start: None, or one entry per LP: what ``solve_lp(warm_start=...)`` accepts
            ((x, y), an LPResult) or None (cold start).
        time_limit: seconds for the whole batch (setup included): the LPs not finished when it
            passes (checked at every check) end TIME_LIMIT.
        iteration_limit: None, an int for every LP, or one int (or None) per LP.
        check_every: iterations between checks (None: 64, or 192 when every LP has >= 1e5
            nonzeros: the smallest of the LPs' :func:`~l2o.pdhg.options.default_check_every`).
        progress: called at every check with {"iteration" (of the stack's most advanced LP),
            "active" (LPs still iterating), "finished", "elapsed"}.
        reproducible: the same bits in every run on a GPU too, as ``solve_lp``'s: cuSPARSE's
            fixed-order products and, for the call, torch's deterministic algorithms (the
            per-LP sums of the setup and of the torch check are ``index_add_``).
        **advanced: the fields of :class:`~l2o.pdhg.options.SolverOptions` the batch honours,
            :data:`BATCH_OPTIONS`: ``cuda_graph`` (on CUDA, run each chunk of iterations and
            its check as CUDA graph replays; default True, False: eagerly); ``fused`` (the
            Triton kernels of the iteration, :mod:`l2o.pdhg.batch_fused`, and of the check,
            :mod:`l2o.pdhg.batch_check`: "auto", the default, where they run (H200, the
            iteration alone: 256 set-cover LPs 0.71 vs 0.82 s at 1e-4, 10.7 vs 14.3 s at
            1e-8; PageRank equal; benchmarks/RESULTS.md), True (CUDA and Triton needed),
            "elementwise" or "spmv" (that plan of :mod:`l2o.pdhg.batch_fused`; "auto" and True
            take "spmv" when every row is short) or False (the torch ops));
            ``sparse_products`` (the fused iteration's cuSPARSE products, as solve_lp's);
            ``profile`` (fill every result's ``timings`` with the batch's seconds per phase,
            :data:`PROFILE_PHASES`, synchronizing the device at each phase boundary).

    Returns:
        One :class:`LPResult` per LP, in the order of ``lps`` (CPU float64 vectors).  An LP's
        ``solve_time`` runs from this call to the check at which it finished.

    Raises:
        ValueError: invalid data in an LP (nan/inf, lower > upper bound, wrong shapes), a bad
            warm start or limit, named by its index ("lps[3]: ..."), before any iteration;
            bad tol, dtype, device or options.
        TypeError: an entry of ``lps`` that is not a LinearProgram, or an option the batch
            does not take.
    """
    if reproducible is not False:
        advanced = reproducible_options("solve_lp_batch", reproducible, False, advanced)
        with fixed_order_algorithms():
            return solve_lp_batch(lps, tol, device, dtype, warm_start, time_limit,
                                  iteration_limit, check_every, progress, **advanced)
    start = time.perf_counter()
    unknown = sorted(set(advanced) - set(BATCH_OPTIONS))
    if unknown:
        raise TypeError(f"solve_lp_batch: unknown option(s) {unknown}; it takes "
                        f"{', '.join(BATCH_OPTIONS)}")
    lps = list(lps)
    count = len(lps)
    dtype = torch.float64 if dtype is None else dtype
    check_dtype("solve_lp_batch", dtype)
    dev = resolve_device(device)
    starts = _per_lp("warm_start", warm_start, count)
    limits = _per_lp("iteration_limit", iteration_limit, count)
    vectors = []
    for i, lp in enumerate(lps):
        with _naming(i):
            if not isinstance(lp, LinearProgram):
                raise TypeError(f"expected a LinearProgram, got {type(lp).__name__}")
            check_structure(lp)
            vectors.append(warm_start_vectors(lp, starts[i]))
            _check_limit(limits[i])
    limits = [None if limit is None else int(limit) for limit in limits]
    if not tol > 0:
        raise ValueError(f"solve_lp_batch: tol must be positive, got {tol}")
    if count == 0:
        return []
    if check_every is None:
        check_every = min(default_check_every(lp.nnz) for lp in lps)
    opts = parse_options("solve_lp_batch", check_every, {"fused": "auto", **advanced})
    if opts.fused not in FUSED_MODES:
        raise ValueError(f"solve_lp_batch: fused must be one of {FUSED_MODES}, "
                         f"got {opts.fused!r}")
    timer = PhaseTimer(opts.profile, dev, start)
    timer.mark("validate")
    arrays, c0 = stack_arrays(lps, dev)
    timer.mark("to_device")
    _validate_values(lps, arrays)
    timer.mark("check_values")
    stack, term = scale_stack(arrays, c0, [lp.num_rows for lp in lps],
                              [lp.num_cols for lp in lps], dtype, opts)
    timer.mark("scaling")
    members = [_Member(index=i, lp=lp, eta=_step_size(lp, opts), warm=is_warm(starts[i]),
                       work=lp.nnz + lp.num_rows + lp.num_cols,
                       criteria=TerminationCriteria(
                           tol=tol, infeasibility_tolerance=opts.infeasibility_tolerance,
                           iteration_limit=limits[i], time_limit=time_limit))
               for i, lp in enumerate(lps)]
    x0, y0 = (_concatenated([v[k] for v in vectors], dev) for k in (0, 1))
    results = _Batch(members, stack, term, x0, y0, opts, start, progress, timer).run()
    for result in results:
        result.presolve = no_presolve_report("solve_lp_batch solves the LPs as given")
        if opts.profile:
            result.timings = {**timer.timings, "total": timer.last - start}
    return results


class _naming:
    """Prefix "lps[i]: " to a ValueError or TypeError raised in its block (same type)."""

    def __init__(self, i: int):
        self.i = i

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, trace) -> bool:
        if error is not None and isinstance(error, (ValueError, TypeError)):
            message = str(error).removeprefix("solve_lp: ")
            raise type(error)(f"lps[{self.i}]: {message}") from None
        return False


def _per_lp(name: str, value: Any, count: int) -> list[Any]:
    """``value`` as one entry per LP: None and (for iteration_limit) an int stand for all."""
    if value is None or (name == "iteration_limit" and isinstance(value, numbers.Integral)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ValueError(f"solve_lp_batch: {name} has {len(values)} entries for {count} LPs")
    return values


def _concatenated(parts: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The parts joined on ``device``: concatenated on the host and copied once when all are
    there (cold starts: B zero vectors), else each moved first (warm starts on the device)."""
    if all(part.device.type == "cpu" for part in parts):
        return torch.cat(parts).to(device)
    return torch.cat([part.to(device) for part in parts])


def _check_limit(limit: Any) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral)
                              or limit < 1):
        raise ValueError(f"iteration_limit must be an int >= 1 (or None), got {limit!r}")


def _validate_values(lps: list, arrays: LPArrays) -> None:
    """The value checks of every LP (nan/inf, bounds) on the stacked arrays with one sync; on a
    failure the host check of each LP in turn names the first culprit."""
    if bool(arrays.invalid()):
        for i, lp in enumerate(lps):
            with _naming(i):
                validate_lp(lp)
        raise InvalidLPError("solve_lp_batch: the LPs contain nan/inf or invalid bounds")


def _step_size(lp, opts: SolverOptions) -> float:
    """eta = step_safety / ||A~||_2 with the Pock-Chambolle bound ||A~||_2 <= 1 (see
    :func:`~l2o.pdhg.prepare.operator_norm`; the batch always takes the bound), 1 for an LP
    with an empty A."""
    return opts.step_safety if lp.num_rows and lp.nnz else 1.0


@dataclass(frozen=True)
class _Layout:
    """Where the check's scalars lie in a row of its (B, K) values: the flat layout of
    :meth:`CheckStatistics.from_values`, read off the record of the indices themselves."""

    fixed_point_error: int
    optimality: list[int]          # rel primal residual, rel dual residual, rel gap
    pid_inputs: list[int]          # PrimalWeightPID.update's arguments, in its order
    primal_ray_objective: list[int]
    primal_ray_residual: list[int]
    dual_ray_objective: list[int]
    dual_ray_residual: list[int]

    @classmethod
    def of_check(cls) -> _Layout:
        at = CheckStatistics.from_values(range(CheckStatistics.size()))   # field = its index
        index = lambda *values: [int(v) for v in values]
        primal = [at.primal_rays[name] for name in RAY_CANDIDATES]
        dual = [at.dual_rays[name] for name in RAY_CANDIDATES]
        return cls(fixed_point_error=int(at.fixed_point_error),
                   optimality=index(at.rel_primal_residual, at.rel_dual_residual, at.rel_gap),
                   pid_inputs=index(at.primal_move, at.dual_move, at.rel_primal_residual,
                                    at.rel_dual_residual),
                   primal_ray_objective=index(*(r.objective for r in primal)),
                   primal_ray_residual=index(*(r.residual for r in primal)),
                   dual_ray_objective=index(*(r.objective for r in dual)),
                   dual_ray_residual=index(*(r.residual for r in dual)))


_AT = _Layout.of_check()


def _may_stop(rows: np.ndarray, finite: np.ndarray, criteria: TerminationCriteria,
              totals: np.ndarray, limits: np.ndarray, elapsed: float) -> np.ndarray:
    """(P,) bool: whether :func:`check_termination` gives row p (of ``rows`` (P, K)) any
    reason to stop, its conditions evaluated for all rows at once with the same float64
    comparisons: nan/inf (``finite`` (P,) False), the three optimality errors within their
    tolerances, a ray passing its test, the iteration limit (``totals`` >= ``limits``, inf for
    none; (P,)) or the time limit reached.  ``criteria``: the tolerances and time limit."""
    eps = criteria.infeasibility_tolerance
    optimal = (rows[:, _AT.optimality] <= np.array(criteria.tolerances())).all(axis=1)
    dual, dual_residual = rows[:, _AT.dual_ray_objective], rows[:, _AT.dual_ray_residual]
    primal, primal_residual = rows[:, _AT.primal_ray_objective], rows[:, _AT.primal_ray_residual]
    ray = (((dual > 0) & (dual_residual <= eps * dual)).any(axis=1)
           | ((primal < 0) & (primal_residual <= eps * -primal)).any(axis=1))
    timed_out = criteria.time_limit is not None and elapsed >= criteria.time_limit
    return ~finite | optimal | ray | (totals >= limits) | timed_out


def _limit_or_inf(criteria: TerminationCriteria) -> float:
    return math.inf if criteria.iteration_limit is None else float(criteria.iteration_limit)


class _BatchRunner(ChunkRunner):
    """The :class:`~l2o.pdhg.iteration.ChunkRunner` of a stack: its check is the fused one of
    :mod:`l2o.pdhg.batch_check` where the fused iteration runs (else the torch check, as the
    runner's own; its single-LP fused check never runs on a stack), and :meth:`read` gives
    the (B, K) statistics of either."""

    def __init__(self, p: StackedLP, t: TerminationData, s: BatchState, chunk: int,
                 use_graph: bool, timer: PhaseTimer):
        super().__init__(p, t, s, chunk, use_graph, timer)
        self.fused_check = make_batch_check(p, t, s)

    def read(self, stacked: torch.Tensor) -> np.ndarray:
        """(B, K) float64 on the host: the check's one device-to-host copy."""
        values = stacked.cpu().numpy()
        return values if self.fused_check is None else self.fused_check.rows(values)


@dataclass
class _Member:
    """One LP of the batch and its host-side solver state (as solve_lp's loop keeps it)."""

    index: int                                   # position in the input list
    lp: LinearProgram
    eta: float                                   # tau = eta / omega, sigma = eta omega
    criteria: TerminationCriteria
    warm: bool
    work: int = 0                                # nnz + rows + columns (Compaction)
    pid: PrimalWeightPID = field(default_factory=PrimalWeightPID)
    memory: RestartMemory = field(default_factory=RestartMemory)
    total: int = 0                               # iterations, the probe's included
    outside: int = 0                             # the start not taken (see solver.py)
    checked: np.ndarray | None = None            # the last finite check's row (K,)
    done: bool = False

    def __post_init__(self) -> None:
        if self.warm:
            self.pid = PrimalWeightPID.after_warm_start()


class _Batch:
    """The loop of the module docstring over the stacked members."""

    def __init__(self, members: list[_Member], stack: StackedLP, term: TerminationData,
                 x: torch.Tensor, y: torch.Tensor, opts: SolverOptions, start: float,
                 progress: Callable[[dict], None] | None, timer: PhaseTimer):
        self.opts, self.start, self.progress, self.timer = opts, start, progress, timer
        self.dev = stack.c.device
        self.results: list[LPResult | None] = [None] * len(members)
        # the tolerances and time limit every member shares (only iteration limits differ)
        self.criteria = members[0].criteria
        self.members = members                   # those in the stack, in stack order
        self.stack, self.term = stack, term
        self.state = BatchState.init(stack, *self._scaled_start(x, y))
        self.state.set_steps(self.stack, [m.eta for m in members],
                             [m.pid.weight for m in members])
        self.state.batch_plan = make_batch_plan(stack, self.state, opts.fused,
                                                opts.sparse_products)
        self.graphs = opts.cuda_graph and self.dev.type == "cuda"
        self.compaction = GRAPH_COMPACTION if self.graphs else EAGER_COMPACTION
        self.runner = self._runner()
        self.point: dict[str, torch.Tensor] | None = None    # the last finite checked points
        timer.mark("state")

    def _scaled_start(self, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x~, y~) of the unscaled start (x, y), stacked: :func:`~l2o.pdhg.start.scaled_start`
        on the stack (x projected onto the column bounds, y onto the dual signs)."""
        p, t, dtype = self.stack, self.term, self.stack.c.dtype
        x0 = torch.clamp(p.scale_primal(x.to(self.dev, dtype)), p.col_lower, p.col_upper)
        y0 = torch.clamp(p.scale_dual(y.to(self.dev, dtype)), t.dual_rec_lower,
                         t.dual_rec_upper)
        return x0, y0

    def _runner(self) -> _BatchRunner:
        return _BatchRunner(self.stack, self.term, self.state, self.opts.check_every,
                            self.graphs, self.timer)

    def run(self) -> list[LPResult]:
        first = True
        while self.members:
            chunk = 1 if first else self._chunk()
            stacked, vectors = self.runner.run_device(chunk)
            values = self.runner.read(stacked)     # the check's one host copy, (B, K)
            self.timer.mark("first_check" if first else "iterations")
            for m in self.members:
                if not m.done:
                    m.total += chunk
            every = [b for b, m in enumerate(self.members) if not m.done]
            restarts = self._check(every, values, vectors)
            if first:
                self._probe_cold_starts(values)
                first = False
            self.timer.mark("host")
            self._restart(restarts, vectors)
            self.timer.mark("restart")
            if self.progress is not None:
                alive = [m for m in self.members if not m.done]
                self.progress({"iteration": max((m.total for m in alive), default=0),
                               "active": len(alive),
                               "finished": sum(r is not None for r in self.results),
                               "elapsed": time.perf_counter() - self.start})
            self._compact()
            self.timer.mark("compaction")
        self.timer.mark("host")
        return self.results

    def _chunk(self) -> int:
        """check_every, or less where an LP's iteration limit comes first."""
        left = [m.criteria.iteration_limit - m.total for m in self.members
                if not m.done and m.criteria.iteration_limit is not None]
        return min([self.opts.check_every, *left])

    def _check(self, positions: list[int], values: np.ndarray,
               vectors: CheckVectors) -> list[int]:
        """Termination and the restart rule of the members at ``positions`` (stack order),
        from their rows of the check ``values`` (B, K); returns the positions that restart.

        Only the members :func:`_may_stop` flags go through :func:`check_termination` (it
        returns no reason for the others: the flags are its conditions, evaluated for all rows
        at once with the same float64 arithmetic), so a check costs the host a few
        microseconds per LP: the restart rule's, on its row's scalars."""
        elapsed = time.perf_counter() - self.start
        rows = values[positions]
        finite = np.isfinite(rows).all(axis=1)
        finite_positions = [b for b, ok in zip(positions, finite.tolist()) if ok]
        self._keep_points(finite_positions, vectors)
        for b in finite_positions:
            self.members[b].checked = values[b]
        totals = np.array([self.members[b].total for b in positions], dtype=np.float64)
        limits = np.array([_limit_or_inf(self.members[b].criteria) for b in positions])
        flagged = _may_stop(rows, finite, self.criteria, totals, limits, elapsed)
        restarts = []
        for b, flag in zip(positions, flagged.tolist()):
            m = self.members[b]
            if flag:
                stats = CheckStatistics.from_values(values[b])
                for reason in check_termination(stats, m.criteria, m.total, elapsed):
                    result = self._finish(b, reason, vectors)
                    if result is not None:
                        self.results[m.index], m.done = result, True
                        break
                if m.done:
                    continue
            row = values[b]
            restart, m.memory = choose_restart(self.opts.restart, m.memory,
                                               float(row[_AT.fixed_point_error]),
                                               m.total - m.outside)
            if restart is not None:
                m.pid.update(*(float(row[c]) for c in _AT.pid_inputs))
                restarts.append(b)
        return restarts

    def _keep_points(self, positions: list[int], vectors: CheckVectors) -> None:
        """The checked points of the members at ``positions`` become their last finite ones
        (copies: on CUDA the check's vectors live in the graph's buffers)."""
        if not positions:
            return
        new = vectors.point()
        alive = [b for b, m in enumerate(self.members) if not m.done]
        if self.point is None or set(positions) >= set(alive):
            self.point = new
            return
        mask = self._mask(positions)
        cols, rows = mask[self.stack.col_lp], mask[self.stack.row_lp]
        for key, where in (("x", cols), ("y", rows), ("reduced_costs", cols)):
            self.point[key] = torch.where(where, new[key], self.point[key])

    def _mask(self, positions: list[int]) -> torch.Tensor:
        mask = torch.zeros(self.stack.count, dtype=torch.bool)
        mask[positions] = True
        return mask.to(self.dev)

    def _finish(self, b: int, reason: Termination, vectors: CheckVectors) -> LPResult | None:
        """The result of member b for ``reason`` (None when its ray fails the float64
        re-check), from its last finite point (its slices of the stack's, copied to the host
        by :func:`~l2o.pdhg.finish.make_result`)."""
        m, stack = self.members[b], self.stack
        checked = None
        if m.checked is not None and self.point is not None:
            cols, rows = stack.col_slice(b), stack.row_slice(b)
            checked = Checked(CheckStatistics.from_values(m.checked),
                              {"x": self.point["x"][cols], "y": self.point["y"][rows],
                               "reduced_costs": self.point["reduced_costs"][cols]})
        lp = m.lp
        if reason.ray is None:
            return make_result(lp, reason.status, checked, m.total, self.start, reason.message)
        if reason.status == LPStatus.PRIMAL_INFEASIBLE:
            ray = vectors.dual_rays[reason.ray][stack.row_slice(b)]
        else:
            ray = vectors.primal_rays[reason.ray][stack.col_slice(b)]
        return ray_result(lp, reason.status, checked, ray, stack.block_scales(b), m.total,
                          self.start, m.criteria.infeasibility_tolerance)

    def _probe_cold_starts(self, warm_values: np.ndarray) -> None:
        """After the first check, each warm-started LP is weighed against its cold start
        (:func:`l2o.pdhg.start.probe_cold_start`): one iteration of the whole stack from the
        cold start of the warm LPs; the others and the warm LPs that keep their start go back
        to where they were.  The LPs that take the cold start get its check as their first
        (a fresh restart memory and controller, whose weight 1 is the warm one's first too).
        A first check restarts nothing (:func:`~l2o.pdhg.restart.choose_restart`), so neither
        check here has restarts to apply."""
        warm = [b for b, m in enumerate(self.members) if m.warm and not m.done]
        if not warm:
            return
        saved = self.state.save_iterate()
        # the cold start (proj(0), 0) and its A~^T y~ = 0 (start.cold_start), for all
        x, y = self._scaled_start(torch.zeros(self.stack.shape[1], dtype=torch.float64),
                                  torch.zeros(self.stack.shape[0], dtype=torch.float64))
        self.state.restart_lps(self.stack, x, y, torch.zeros_like(x), self._mask(warm))
        stacked, vectors = self.runner.run_device(1)
        values = self.runner.read(stacked)
        error = _AT.fixed_point_error
        taken = [b for b in warm if not keeps_warm_start(
            warm_values[b, error], values[b, error], self.opts.restart.sufficient)]
        back = [b for b in range(len(self.members)) if b not in taken]
        self.state.load_iterate(saved, self._mask(back), self.stack)
        for b in warm:
            m = self.members[b]
            m.total, m.outside = m.total + 1, 1
        for b in taken:
            m = self.members[b]
            m.memory, m.pid = RestartMemory(), PrimalWeightPID()
        if taken:
            self._check(taken, values, vectors)

    def _restart(self, positions: list[int], vectors: CheckVectors) -> None:
        """Restart the members at ``positions`` at the check's point and give every member the
        steps of its controller's weight."""
        if not positions:
            return
        s, restart = self.state, [False] * len(self.members)
        for b in positions:
            restart[b] = True
        s.restart_with_steps(self.stack, restart, [m.eta for m in self.members],
                             [m.pid.weight for m in self.members], s.x_hat, s.y_hat,
                             vectors.aty_hat)

    def _compact(self) -> None:
        """Rebuild the stack without its finished members when :attr:`compaction` says so
        (all finished: the loop ends)."""
        if all(m.done for m in self.members):
            self.members = []
            return
        finished = sum(m.work for m in self.members if m.done)
        if not self.compaction.due(finished, sum(m.work for m in self.members)):
            return
        keep = [b for b, m in enumerate(self.members) if not m.done]
        index = self.stack.index(keep)
        stack = self.stack.select(index)
        self.term = select_termination(self.term, index, stack)
        self.state = self.state.select(index)
        self.state.batch_plan = make_batch_plan(stack, self.state, self.opts.fused,
                                                self.opts.sparse_products)
        if self.point is not None:
            self.point = {"x": self.point["x"][index.cols], "y": self.point["y"][index.rows],
                          "reduced_costs": self.point["reduced_costs"][index.cols]}
        self.stack = stack
        self.members = [self.members[b] for b in keep]
        self.runner = self._runner()

