"""``bilevel.solve``: run a bilevel algorithm on a :class:`~bilevel.BilevelProblem`.

    result = bilevel.solve(problem, method="aid-cg", outer_steps=200, inner_steps=10,
                           outer_lr=0.05)
    result.x, result.y, result.status, result.message, result.history

Methods: "aid-cg", "aid-minres", "aid-neumann" (implicit differentiation with warm starts;
"aid" takes the linear solver as a value, ``solve=``),
"itd" (unrolled differentiation), "borep" (BO-REP, Hao, Gong, Liu 2024), "penalty"
(first-order penalty method, Kwon et al. 2023), "mbbo" (blockwise variance-reduced methods
for a :class:`~bilevel.MultiBlockProblem`, Hu et al. 2023).  See :mod:`bilevel.algorithms`.

Termination (``result.status``):

* CONVERGED: the hypergradient norm (the method's estimate) fell to ``tol``;
* MAX_STEPS: ``outer_steps`` outer steps were taken;
* STOPPED: ``callback`` returned True;
* NUMERICAL_ERROR: a loss, gradient or linear solve became non-finite (or a solve diverged);
  x, y are the last finite iterate, and the message names the step.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree

from .algorithms import AIDAlgorithm, BOREPAlgorithm, ITDAlgorithm, MBBOAlgorithm, PenaltyAlgorithm
from .algorithms.common import Algorithm, BatchStream, OuterOptimizer
from .checkpoint import (
    check_fingerprint,
    fingerprint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .distributed import data_parallel
from .linalg._loop import no_cuda_graphs
from .linalg.tree import Tree, numel
from .problem import BilevelProblem

__all__ = ["METHODS", "BilevelResult", "Status", "solve"]

_DEFAULT_OUTER_LR = 0.05
METHODS = ("aid", "aid-cg", "aid-minres", "aid-neumann", "itd", "borep", "penalty", "mbbo")


class Status(enum.Enum):
    """How a :func:`solve` run ended."""

    CONVERGED = "converged"
    MAX_STEPS = "max_steps"
    NUMERICAL_ERROR = "numerical_error"
    STOPPED = "stopped"


@dataclass
class BilevelResult:
    """Outcome of :func:`solve`.

    Attributes:
        x, y: the final outer variable and the method's approximation of y*(x) (tensors or
            dicts, detached; for "penalty" y is its z, the minimizer of g).
        status: a :class:`Status`.
        message: a human-readable account of why it stopped.
        history: one dict per outer step: step, outer_loss, hypergrad_norm,
            inner_grad_norm, solve_residual (None without a linear solve), wall_time
            (seconds of optimization since the start, resumed runs included; time in
            callbacks and checkpoint writes is not counted), hvp_count and grad_count
            (cumulative), plus method-specific keys (solve_converged, fallback, sigma).
        n_steps: outer steps taken in total.
    """

    x: Tree
    y: Tree
    status: Status
    message: str
    history: list[dict] = field(default_factory=list)
    n_steps: int = 0

    def __repr__(self) -> str:  # the history can be long: summarize it
        last = self.history[-1] if self.history else {}
        loss = f", outer_loss={last['outer_loss']:.6g}" if last else ""
        norm = f", hypergrad_norm={last['hypergrad_norm']:.3g}" if last else ""
        return (f"BilevelResult(status={self.status.name}, n_steps={self.n_steps}{loss}{norm}, "
                f"message={self.message!r})")


def _make_algorithm(method: str, problem: BilevelProblem, streams, common: dict,
                    options: dict) -> Algorithm:
    if method.startswith("aid"):
        return AIDAlgorithm(problem, streams, solver=method[4:] or None, options=options,
                            **common)
    cls = {"itd": ITDAlgorithm, "borep": BOREPAlgorithm, "penalty": PenaltyAlgorithm,
           "mbbo": MBBOAlgorithm}[method]
    return cls(problem, streams, options=options, **common)


def solve(problem: BilevelProblem, method: str = "aid-cg", *, outer_steps: int = 100,
          inner_steps: int = 10, outer_lr: float | Callable[[int], float] | None = None,
          inner_lr: float | None = None, outer_optimizer: str = "adam",
          seed: int | None = None, checkpoint: str | os.PathLike | None = None,
          checkpoint_every: int = 10, callback: Callable[[dict], bool | None] | None = None,
          progress: bool = True, tol: float | None = None, lr_every: int = 10,
          distributed: bool | None = None, **method_options: Any) -> BilevelResult:
    """Run a bilevel algorithm.

    Args:
        problem: the :class:`BilevelProblem`.
        method: one of ``METHODS``.
        outer_steps: total outer steps (a resumed run continues up to this count).
        inner_steps: inner gradient steps per outer step (ITD: the unroll K; BO-REP: N,
            taken every ``update_interval`` steps; penalty: steps on each of y and z).
        outer_lr: outer step size, or a schedule ``k -> lr``.  Default 0.05, a step of
            about 0.05 per coordinate of x with Adam; for BO-REP, whose step x -= eta m/||m||
            has length eta, the default is eta = 0.05 sqrt(dim x), the same per-coordinate
            scale.
        inner_lr: inner gradient step; default 1 / lambda_max(H_yy) by power iteration on
            the first inner batch, re-estimated every ``lr_every`` outer steps, and at once
            when ||grad_y g|| grows over an outer step's inner steps (the symptom of a
            step estimated at an earlier x exceeding 2 / lambda_max; the steps are then
            redone with the new estimate; see ``Algorithm.with_stale_step_guard``).
        outer_optimizer: "adam" (default: insensitive to the hypergradient's scale, which
            differs by orders of magnitude between tasks) or "sgd".  Unused by BO-REP.
        seed: seeds torch's RNG and the batch order; default a seed drawn from torch's RNG.
        checkpoint: a file path; if it exists the run resumes from it, and the state is
            saved there (atomically) every ``checkpoint_every`` steps and at the end.  A
            checkpoint of another run (other variable shapes or dtypes, f(x0, y0) or
            g(x0, y0), method or options) is refused with the differences named; one of
            a finished run (outer_steps reached, converged at this ``tol``, or a numerical
            error) returns its result without running, and the message says so.
        callback: called after each outer step with the history record plus "x" and "y"
            (after the step) and "hypergrad" (the estimate the step used, at the x before
            it); returning True stops the run (Status.STOPPED).
        progress: show a live line with the step, outer loss and hypergradient norm.
        tol: stop with Status.CONVERGED once the hypergradient norm is <= tol.
        lr_every: outer steps between periodic re-estimates of the default inner step.
        distributed: data parallelism over the ``torch.distributed`` process group (see
            :mod:`bilevel.distributed`): None (default) when one is initialized with more
            than one process, True to use it whatever its size, False never.  Every
            process passes the same problem and global data and computes on its slice of
            every batch; all hold the same x and y and return the same result and history
            (wall_time: rank 0's clock).  Rank 0 reads and writes the checkpoint (the
            others wait for each write) and shows the progress; the callback runs on every
            process, and rank 0's return value decides whether to stop.
        **method_options: the method's options ("aid-*": solve_tol, maxiter, warm_start,
            alpha, check_every, cuda_graph, inner_tol, max_inner_steps, inner_method,
            ridge, fallback, hessian; "aid": also solve;
            "itd": truncate, inner_optimizer; "borep": beta, nu, update_interval, refine_epochs,
            refine_steps, z_radius; "penalty": sigma0, sigma_power, sigma_min; "mbbo": variant,
            blocks_per_step, samples_per_block, alpha, gamma, beta, v_lr, v_radius, min_eig).
            The AID linear-solve tolerance is passed as ``solve_tol`` (default 1e-4), to keep it
            apart from the stopping ``tol``.

    Returns:
        A :class:`BilevelResult`.
    """
    if method not in METHODS:
        raise ValueError(f"solve: method must be one of {METHODS}, got {method!r}")
    if not isinstance(problem, BilevelProblem):
        raise TypeError(f"solve: problem must be a BilevelProblem, got {type(problem).__name__}")
    for name, value in (("outer_steps", outer_steps), ("inner_steps", inner_steps),
                        ("checkpoint_every", checkpoint_every), ("lr_every", lr_every)):
        if not isinstance(value, int) or value < (0 if name == "outer_steps" else 1):
            raise ValueError(f"solve: {name} must be a positive integer, got {value!r}")
    if "solve_tol" in method_options and method.startswith("aid"):
        method_options["tol"] = method_options.pop("solve_tol")
    parallel = data_parallel(distributed, problem.device)
    if parallel is not None:
        problem = parallel.problem(problem)  # the global, data-parallel objectives
    main = parallel is None or parallel.is_main  # reads and writes files, shows progress
    on_main = (lambda fn: fn()) if parallel is None else parallel.on_main

    def load() -> dict | None:
        if checkpoint is None or not os.path.exists(checkpoint):
            return None
        # on the CPU (it may travel pickled to the other processes, and the RNG states
        # stay there); the algorithm's state moves to the problem's device below
        return load_checkpoint(checkpoint, map_location="cpu")

    saved = on_main(load)
    if saved is not None:
        saved["state"] = _to_device(saved["state"], problem.device)
    run_id = fingerprint(problem, method, {
        **method_options, "inner_steps": inner_steps, "inner_lr": inner_lr,
        "outer_optimizer": outer_optimizer, "outer_lr": outer_lr, "lr_every": lr_every})
    if saved is not None:
        check_fingerprint(checkpoint, saved["fingerprint"], run_id)
    if saved is None and seed is not None:
        torch.manual_seed(seed)
    base_seed = (saved["seed"] if saved is not None else seed if seed is not None else
                 on_main(lambda: int(torch.randint(0, 2**31 - 1, ()).item())))
    streams = (BatchStream(problem.outer_data, base_seed, 0, "outer_data"),
               BatchStream(problem.inner_data, base_seed, 1, "inner_data"))
    if outer_lr is None:
        outer_lr = _DEFAULT_OUTER_LR
        if method == "borep":
            outer_lr = _DEFAULT_OUTER_LR * math.sqrt(numel(problem.x0))
    optimizer = OuterOptimizer(outer_optimizer, outer_lr)
    algorithm = _make_algorithm(method, problem, streams,
                                {"inner_steps": inner_steps, "inner_lr": inner_lr,
                                 "outer_optimizer": optimizer, "lr_every": lr_every},
                                method_options)
    if saved is not None:
        done = _finished(saved, outer_steps, tol)
        if done is not None:
            status, message = done
            return BilevelResult(
                x=saved["state"]["x"], y=algorithm.inner_solution(saved["state"]),
                status=status, n_steps=saved["step"], history=saved["history"],
                message=(f"{message} (returned from the finished checkpoint "
                         f"{os.fspath(checkpoint)!r} without running; raise outer_steps to "
                         "continue, or delete it to start over)"))
        state, k, history = saved["state"], saved["step"], saved["history"]
        elapsed, counts = saved["elapsed"], saved["counts"]
        streams[0].restore(saved["streams"][0])
        streams[1].restore(saved["streams"][1])
        set_rng_state(saved["rng"])
    else:
        state, k, history, elapsed, counts = algorithm.init_state(), 0, [], 0.0, [0, 0]

    def save(ended: bool = False) -> None:
        if not main:  # rank 0 writes; the others wait below until the file is complete
            parallel.barrier()
            return
        save_checkpoint(checkpoint, {
            "method": method, "seed": base_seed, "state": state, "step": k, "history": history,
            "elapsed": elapsed + (time.perf_counter() - started - paused), "counts": counts,
            "streams": [streams[0].state(), streams[1].state()], "rng": rng_state(),
            "fingerprint": run_id,
            "status": status.value if ended else None, "message": message if ended else None})
        if parallel is not None:
            parallel.barrier()

    started = time.perf_counter()
    # wall_time counts the optimization only: time spent in callbacks (e.g. evaluating a
    # test set) and in writing checkpoints is subtracted.
    paused = 0.0
    status, message = Status.MAX_STEPS, f"reached outer_steps={outer_steps}"
    unconverged_solves = sum(1 for r in history if r.get("solve_converged") is False)
    # a data-parallel solve runs eagerly: a CUDA graph would replay, skip or re-run the
    # all-reduces differently on each process
    graphs = (contextlib.nullcontext() if parallel is None else
              no_cuda_graphs("a data-parallel solve (bilevel.distributed) runs eagerly"))
    with _Progress(progress and main, method, outer_steps, k) as bar, graphs:
        while k < outer_steps:
            try:
                new_state, stats = algorithm.step(state, k)
                wall_time = elapsed + time.perf_counter() - started - paused
                if parallel is not None:  # the same history on every process: rank 0's clock
                    wall_time = parallel.main_value(wall_time)
                record = _record(k, stats, counts, wall_time)
            except FloatingPointError as err:
                status, message = Status.NUMERICAL_ERROR, f"outer step {k}: {err}"
                break
            except Exception as err:  # say where it happened; the error itself is the user's
                if hasattr(err, "add_note"):
                    err.add_note(f"bilevel.solve: raised during outer step {k} of {method!r}")
                raise
            bad = [name for name in ("outer_loss", "hypergrad_norm", "inner_grad_norm")
                   if record[name] is not None and not math.isfinite(record[name])]
            if bad or "failure" in stats:
                reason = (f"non-finite {', '.join(bad)}" if bad else stats["failure"])
                status = Status.NUMERICAL_ERROR
                message = f"outer step {k}: {reason}; returning the iterate before this step"
                break
            state, k = new_state, k + 1
            history.append(record)
            unconverged_solves += record.get("solve_converged") is False
            bar.update(record)
            if callback is not None:
                pause_start = time.perf_counter()
                stop = callback({**record, "x": state["x"], "y": algorithm.inner_solution(state),
                                 "hypergrad": stats["hypergrad"]})
                paused += time.perf_counter() - pause_start
                if parallel is not None:  # every process stops together
                    stop = bool(parallel.main_value(bool(stop)))
                if stop:
                    status = Status.STOPPED
                    message = f"callback asked to stop after outer step {k - 1}"
                    break
            if tol is not None and record["hypergrad_norm"] <= tol:
                status = Status.CONVERGED
                message = (f"hypergradient norm {record['hypergrad_norm']:.3e} <= tol {tol:.1e} "
                           f"at outer step {k - 1}")
                break
            if checkpoint is not None and k % checkpoint_every == 0:
                pause_start = time.perf_counter()
                save()
                paused += time.perf_counter() - pause_start
    if checkpoint is not None:
        save(ended=True)
    if unconverged_solves:
        message += (f"; {unconverged_solves} of {len(history)} linear solves missed their "
                    "tolerance (see history 'solve_residual')")
    return BilevelResult(x=state["x"], y=algorithm.inner_solution(state), status=status,
                         message=message, history=history, n_steps=k)


def _to_device(tree: Any, device: torch.device) -> Any:
    """The tensors of a nested dict / list moved to ``device``."""
    return pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, tree)


def _finished(saved: dict, outer_steps: int, tol: float | None) -> tuple[Status, str] | None:
    """(status, message) of a checkpointed run that this call would not continue: it
    reached outer_steps, converged at this tol, or met a numerical error; else None."""
    status = saved.get("status")
    history = saved["history"]
    if status == Status.NUMERICAL_ERROR.value:
        return Status.NUMERICAL_ERROR, saved["message"]
    if saved["step"] >= outer_steps:
        if status == Status.CONVERGED.value:
            return Status.CONVERGED, saved["message"]
        return Status.MAX_STEPS, f"reached outer_steps={saved['step']}"
    if tol is not None and history and history[-1]["hypergrad_norm"] <= tol:
        return Status.CONVERGED, (f"hypergradient norm {history[-1]['hypergrad_norm']:.3e} <= "
                                  f"tol {tol:.1e} at outer step {saved['step'] - 1}")
    return None


def _record(k: int, stats: dict, counts: list[int], wall_time: float) -> dict:
    """One history entry; the only host synchronization of an outer step."""
    counts[0] += int(stats["hvp_count"])
    counts[1] += int(stats["grad_count"])
    values = torch.stack([stats["outer_loss"].reshape(()).to(torch.float64),
                          stats["hypergrad_norm"].reshape(()).to(torch.float64),
                          stats["inner_grad_norm"].reshape(()).to(torch.float64)]).tolist()
    record = {"step": k, "outer_loss": values[0], "hypergrad_norm": values[1],
              "inner_grad_norm": values[2], "solve_residual": stats["solve_residual"],
              "wall_time": wall_time, "hvp_count": counts[0], "grad_count": counts[1]}
    for key in ("solve_converged", "solve_iterations", "fallback", "sigma", "inner_steps"):
        if key in stats:
            record[key] = stats[key]
    return record


class _Progress:
    """A rich live line: outer step, outer loss, hypergradient norm (no-op when off)."""

    def __init__(self, enabled: bool, method: str, total: int, start: int) -> None:
        self.enabled, self.method, self.total, self.start = enabled, method, total, start
        self._progress = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            self._progress = Progress(TextColumn(f"[bold]{self.method}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[info]}"))
            self._progress.start()
            self._task = self._progress.add_task(self.method, total=self.total,
                                                 completed=self.start, info="")
        return self

    def update(self, record: dict) -> None:
        if self._progress is not None:
            info = (f"loss {record['outer_loss']:.4e}  |hypergrad| "
                    f"{record['hypergrad_norm']:.3e}")
            self._progress.update(self._task, completed=record["step"] + 1, info=info)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
