"""The preparation of a solve: everything :func:`l2o.solve_lp` does before its first iteration.

    prepare = validate -> scale -> norm estimate -> move -> termination data

(Presolve happens before this, in :mod:`l2o.pdhg.presolve`: the solver prepares the reduced LP
and the answer is postsolved there, so a :class:`PreparedLP` is always of the LP it solves.)

* validate: the LP's structure on the host (:func:`l2o.lp.validate.check_structure`), its values
  on the setup device with one sync (``LPArrays.invalid``); a failure re-runs
  :func:`l2o.lp.validate_lp` on the host to name the culprit;
* scale: diagonal preconditioning (:mod:`l2o.pdhg.scaling`);
* norm estimate: ||A~||_2 for the step size (:func:`operator_norm`);
* move: small LPs (under ``cpu_setup_nnz`` nonzeros) are set up on the CPU, then moved to the
  solve's device;
* termination data: the constant vectors of the checks (:class:`TerminationData`).

A :class:`PreparedLP` keeps the outcome, so PDHG-Net's warm start and several solves share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bilevel.linalg import power_iteration
from l2o.device import resolve_device
from l2o.lp.validate import InvalidLPError, check_structure, validate_lp

from .options import PREPARE_OPTIONS, SolverOptions, check_dtype, parse_options
from .profile import PhaseTimer
from .scaling import LPArrays, ScaledLP, lp_arrays, same_device, scale_lp
from .termination import TerminationData

__all__ = ["PreparedLP", "check_prepared", "operator_norm", "prepare", "prepare_lp",
           "validate_values"]


@dataclass(frozen=True)
class PreparedLP:
    """An LP set up for :func:`solve_lp` once: checked, preconditioned and on the device.

    What a solve does before its first iteration, kept so that it is done once for several
    uses: :func:`l2o.net.predict_warm_start` builds PDHG-Net's graph from ``scaled`` (the
    solver's own preconditioned LP, already on the device), then ``solve_lp(prepared, ...)``
    starts iterating without repeating the copy and the scaling.  Read-only: solves do not
    modify it, so one PreparedLP serves any number of solves (same results as fresh ones).

    Attributes:
        lp: the :class:`l2o.LinearProgram` it was made from.
        device, dtype: where and in which precision it lives (the solve's).
        scaled: the :class:`~l2o.pdhg.scaling.ScaledLP` (A~ = D1 A D2, ..., on ``device``).
        termination: the constant vectors of the termination checks.
        operator_norm: the solver's ||A~||_2 for eta = step_safety / ||A~||_2 (1.0, the
            Pock-Chambolle bound, with ``norm_estimate="auto"``; 0 for an empty A).
        options: the :class:`SolverOptions` it was prepared with (``PREPARE_OPTIONS`` matter).
        setup_time: seconds the preparation took (counted in ``LPResult.solve_time`` of every
            solve that uses it, so solve_time means the same with and without preparing first).
        timings: seconds per setup phase when prepared with ``profile=True`` (else empty).
    """

    lp: Any
    device: torch.device
    dtype: torch.dtype
    scaled: ScaledLP
    termination: TerminationData
    operator_norm: float
    options: SolverOptions
    setup_time: float
    timings: dict[str, float] = field(default_factory=dict)


def prepare(lp, device: Any = "auto", dtype: torch.dtype = torch.float64,
            **advanced: Any) -> PreparedLP:
    """Check, precondition and move ``lp`` as :func:`solve_lp` does before iterating.

    ``solve_lp(prepare(lp, device, dtype, **opts), ...)`` gives the same result as
    ``solve_lp(lp, device=device, dtype=dtype, **opts, ...)``; the preparation can be shared
    with :func:`l2o.net.predict_warm_start` and reused by several solves (:class:`PreparedLP`).

    Args:
        lp: an :class:`l2o.LinearProgram`.
        device: "auto" (CUDA when available), "cpu", "cuda", or a torch.device.
        dtype: torch.float64 or torch.float32 (as in :func:`solve_lp`).
        **advanced: the :class:`SolverOptions` of the preparation (``PREPARE_OPTIONS``) and
            ``profile`` (fill ``PreparedLP.timings``).

    Raises:
        ValueError: nan/inf data or invalid bounds (naming the first culprit), bad options.
        TypeError: an option that is not a preparation option.
    """
    start = time.perf_counter()
    allowed = {*PREPARE_OPTIONS, "profile"}
    other = set(advanced) - allowed
    if other & set(SolverOptions.__dataclass_fields__):
        raise TypeError(f"prepare: {sorted(other)} are options of the solve, not of the "
                        f"preparation: pass them to solve_lp")
    opts = parse_options("prepare", None, advanced)
    check_dtype("prepare", dtype)
    check_structure(lp)
    dev = resolve_device(device)
    timer = PhaseTimer(opts.profile, None, start)
    return prepare_lp(lp, dev, dtype, opts, timer, start)


def prepare_lp(lp, dev: torch.device, dtype: torch.dtype, opts: SolverOptions, timer: PhaseTimer,
               start: float) -> PreparedLP:
    """The preparation's steps (module docstring) on a structurally checked ``lp``; ``timer``
    is charged the phases to_device, validate, scaling, operator, norm, move, termination."""
    # small LPs are set up on the CPU: cheaper than a hundred small kernel launches and a sync
    setup = torch.device("cpu") if lp.nnz < opts.cpu_setup_nnz else dev
    timer.set_device(setup)
    arrays = lp_arrays(lp, setup)
    timer.mark("to_device")
    validate_values(lp, arrays)
    timer.mark("validate")
    p = scale_lp(lp, device=setup, dtype=dtype, ruiz_iterations=opts.ruiz_iterations,
                 geometric_mean_passes=opts.geometric_mean_passes,
                 pock_chambolle=opts.pock_chambolle,
                 bound_objective_rescaling=opts.bound_objective_rescaling, timer=timer,
                 arrays=arrays)
    norm_a = operator_norm(p, opts)
    timer.mark("norm")
    timer.set_device(dev)
    p = p.to(dev)
    timer.mark("move")
    term = TerminationData.build(p)
    timer.mark("termination")
    end = timer.last if timer.enabled else time.perf_counter()   # profiled: phases sum to it
    return PreparedLP(lp=lp, device=p.op.csr.device, dtype=dtype, scaled=p, termination=term,
                      operator_norm=norm_a, options=opts, setup_time=end - start,
                      timings=dict(timer.timings))


def validate_values(lp, arrays: LPArrays) -> None:
    """The value checks of :func:`l2o.lp.validate_lp` where the data now are, with one sync;
    on a failure the host check names the culprit (InvalidLPError, a ValueError)."""
    if bool(arrays.invalid()):
        validate_lp(lp)
        raise InvalidLPError("solve_lp: the LP contains nan/inf or invalid bounds")


def check_prepared(prepared: PreparedLP, device: Any, dtype: Any,
                   advanced: dict[str, Any]) -> None:
    """A solve of a PreparedLP runs where and how it was prepared: say so if asked otherwise."""
    if device not in (None, "auto") and not same_device(prepared.device, device):
        raise ValueError(f"solve_lp: the PreparedLP lives on {prepared.device}, not on {device}")
    if dtype is not None and dtype != prepared.dtype:
        raise ValueError(f"solve_lp: the PreparedLP is {prepared.dtype}, not {dtype}")
    for key in PREPARE_OPTIONS:
        if key in advanced and advanced[key] != getattr(prepared.options, key):
            raise ValueError(f"solve_lp: {key}={advanced[key]!r} differs from the PreparedLP's "
                             f"{getattr(prepared.options, key)!r} (prepare again with it)")


def operator_norm(p: ScaledLP, opts: SolverOptions) -> float:
    """||A~||_2, or an upper bound of it, for eta = step_safety / ||A~||_2.

    After the Pock-Chambolle pass with alpha = 1, ||A~||_2 <= 1 for any matrix (Chambolle & Pock,
    ICCV 2011, Lemma 2: ||Sigma^1/2 K T^1/2|| <= 1 with Sigma, T the inverse row and column l1
    norms), so ``norm_estimate="auto"`` takes that bound: a safe step with no power iteration,
    which costs more than many small solves.  The power iteration's estimate converges from below;
    on the NETLIB/Kennington LPs it lies within 0.6% of the bound.
    """
    if p.op.shape[0] == 0 or p.op.csr.values().numel() == 0:
        return 0.0
    if opts.norm_estimate == "auto" and opts.pock_chambolle:
        return 1.0
    return power_iteration(p.op, mode="svd", iters=opts.power_iterations,
                           tol=opts.power_tolerance)
