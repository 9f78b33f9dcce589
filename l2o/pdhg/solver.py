"""``solve_lp``: restarted reflected-Halpern PDHG (the PDLP / cuPDLPx family) on CPU or CUDA.

On the scaled LP (:mod:`l2o.pdhg.scaling`), with eta = 0.998 / ||A~||_2 (||A~||_2 <= 1 after the
Pock-Chambolle pass, see :func:`_operator_norm`) and the primal weight omega, tau = eta / omega,
sigma = eta omega.  One iteration from z = (x, y) with the epoch's anchor z0 = (x0, y0) and the
epoch's iteration index k:

    x^ = proj_[l_c, u_c](x - tau (c - A^T y))                  (PDHG step, as step.py)
    y^ = w - clamp(w, -sigma u_r, -sigma l_r),  w = y - sigma A (2 x^ - x)
    z+ = (k+1)/(k+2) (2 z^ - z) + 1/(k+2) z0                   (reflected Halpern)

Every ``check_every`` iterations (no host sync in between; on CUDA the iterations and the check
are one CUDA graph replay) one check computes, from T(z) = z^ of the last iteration:
  * the relative residuals and gap of the unscaled LP at z^ (termination.py; cuPDLPx's
    formulas, with the dual slack recovered from the primal step) -> OPTIMAL when all three
    are <= tol;
  * the fixed-point error r(z) = ||z^ - z||_P -> restart (restart.py): the anchor and the
    iterate become z^, k = 0, and the PID controller updates omega;
  * infeasibility certificates from z^ - z, z^ - z0 and z^ -> PRIMAL/DUAL_INFEASIBLE;
  * the iteration and time limits, and nan/inf -> NUMERICAL_ERROR.
The first check comes after the first iteration, so a warm start at an optimum stops there.

References: Applegate et al., "Practical large-scale linear programming using primal-dual hybrid
gradient", NeurIPS 2021 (PDLP); Lu & Yang, "Restarted Halpern PDHG for linear programming", 2024;
Lu, Peng & Yang, "cuPDLPx", 2025.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from bilevel.linalg import power_iteration
from l2o.lp.result import LPResult, LPStatus
from l2o.lp.validate import InvalidLPError, check_structure, validate_lp

from .fused import halpern_iteration_fused, make_plan
from .profile import PhaseTimer
from .restart import PrimalWeightPID, RestartParams, restart_reason
from .scaling import ScaledLP, lp_arrays, same_device, scale_lp
from .termination import (
    TerminationData,
    dual_ray_terms,
    kkt_terms,
    primal_ray_terms,
    project_dual_ray,
    project_primal_ray,
    verify_dual_ray,
    verify_primal_ray,
)

__all__ = ["PreparedLP", "SolverOptions", "prepare", "solve_lp"]

# Infeasibility certificates are looked for in T(z) - z, T(z) - z_anchor and T(z) itself.
RAY_CANDIDATES = ("step", "epoch", "iterate")


@dataclass(frozen=True)
class SolverOptions:
    """Advanced settings of :func:`solve_lp` (pass them as keyword arguments).

    Attributes:
        check_every: iterations between termination checks (one CUDA graph replay).
        ruiz_iterations, geometric_mean_passes, pock_chambolle, bound_objective_rescaling:
            preconditioning (see l2o.pdhg.scaling).
        step_safety: eta = step_safety / ||A~||_2.
        norm_estimate: "auto" (the bound ||A~||_2 <= 1 after Pock-Chambolle scaling, else the power
            iteration) or "power" (always the power iteration).
        power_iterations, power_tolerance: cap and relative tolerance of the power iteration
            for ||A~||_2.
        restart: the restart criteria.
        infeasibility_tolerance: eps of the infeasibility certificates.
        cuda_graph: capture the iterations between checks, and the check, in one CUDA graph.
        cpu_setup_nnz: LPs with fewer nonzeros are scaled and their ||A~||_2 estimated on the
            CPU (cheaper than hundreds of tiny kernel launches and syncs), then moved.
        fused: the iteration's Triton kernels (l2o.pdhg.fused): "auto" (on CUDA when Triton
            imports, else the torch ops), True / False (force on / off), or "elementwise" /
            "spmv" (that plan of the kernels).
        profile: fill ``LPResult.timings`` with seconds per setup and solve phase
            (l2o.pdhg.profile; synchronizes the device at each phase boundary).
    """

    check_every: int = 64
    ruiz_iterations: int = 10
    geometric_mean_passes: int = 0
    pock_chambolle: bool = True
    bound_objective_rescaling: bool = True
    step_safety: float = 0.998
    power_iterations: int = 1000
    power_tolerance: float = 1e-7
    norm_estimate: str = "auto"
    restart: RestartParams = field(default_factory=RestartParams)
    infeasibility_tolerance: float = 1e-8
    cuda_graph: bool = True
    cpu_setup_nnz: int = 100_000
    fused: Any = "auto"
    profile: bool = False


@dataclass
class IterationState:
    """Device buffers of the iteration (fixed addresses: a CUDA graph reads and writes them).

    Attributes:
        x, y: current iterate z (n,), (m,).  x0, y0: the epoch's Halpern anchor.
        grad: A~^T y - c~ for the current y (minus the gradient of L in x).
        x_pre: x - tau (c - A^T y) of the last iteration, before the projection (the dual slack
            (x^ - x_pre) / tau is recovered from it at checks).
        x_hat, y_hat: T(z) of the last iteration.  x_bar, y_bar: 2 z^ - z of that iteration
            (so z^ - z = z_bar - z^).  ax_bar: A~ x_bar.
        weight: (k+1)/(k+2) with k the epoch's iteration index (0-d).
        tau, neg_sigma: 0-d step tensors; dual_lower = -sigma u_r,
            dual_upper = -sigma l_r (m,).
        metric_primal, metric_dual: omega / eta and 1 / (eta omega), the diagonal of the PDHG
            metric P (0-d).
        fused_grad: whether sparse addmv (A^T y - c in one product) works on this device.
        fused_plan: the Triton kernels' plan (l2o.pdhg.fused), or None for the torch ops.
    """

    x: torch.Tensor
    y: torch.Tensor
    x0: torch.Tensor
    y0: torch.Tensor
    grad: torch.Tensor
    x_pre: torch.Tensor
    x_hat: torch.Tensor
    y_hat: torch.Tensor
    x_bar: torch.Tensor
    y_bar: torch.Tensor
    ax_bar: torch.Tensor
    weight: torch.Tensor
    tau: torch.Tensor
    neg_sigma: torch.Tensor
    dual_lower: torch.Tensor
    dual_upper: torch.Tensor
    metric_primal: torch.Tensor
    metric_dual: torch.Tensor
    fused_grad: bool = True
    fused_plan: Any = None

    @classmethod
    def init(cls, p: ScaledLP, x: torch.Tensor, y: torch.Tensor) -> IterationState:
        e = torch.empty_like
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        s = cls(x=x.clone(), y=y.clone(), x0=x.clone(), y0=y.clone(), grad=e(x), x_pre=e(x),
                x_hat=e(x), y_hat=e(y), x_bar=e(x), y_bar=e(y), ax_bar=e(y), weight=zero.clone(),
                tau=zero.clone(), neg_sigma=zero.clone(), dual_lower=e(y), dual_upper=e(y),
                metric_primal=zero.clone(), metric_dual=zero.clone())
        s.restart_epoch(p, x, y, p.op.rmatvec(y))
        try:  # probe: sparse addmv with beta is not available in every torch build
            torch.addmv(p.c, p.op.csr_t, s.y, beta=-1.0, out=s.x_pre)
        except (RuntimeError, NotImplementedError):
            s.fused_grad = False
        return s

    def set_steps(self, p: ScaledLP, eta: float, omega: float) -> None:
        """tau = eta / omega, sigma = eta omega, and what depends on them."""
        tau, sigma = eta / omega, eta * omega
        self.metric_primal.fill_(omega / eta)
        self.metric_dual.fill_(1.0 / (eta * omega))
        self.tau.fill_(tau)
        self.neg_sigma.fill_(-sigma)
        torch.mul(p.row_upper, -sigma, out=self.dual_lower)
        torch.mul(p.row_lower, -sigma, out=self.dual_upper)

    def restart_epoch(self, p: ScaledLP, x: torch.Tensor, y: torch.Tensor,
                      aty: torch.Tensor) -> None:
        """Anchor and iterate become (x, y) (copied: x, y may be x_hat, y_hat); k = 0."""
        self.x0.copy_(x), self.y0.copy_(y), self.x.copy_(x), self.y.copy_(y)
        torch.sub(aty, p.c, out=self.grad)
        self.weight.fill_(0.5)


def halpern_iteration(p: ScaledLP, s: IterationState) -> None:
    """One reflected-Halpern PDHG iteration in place (module docstring); 2 SpMVs, no host sync.

    Written for few kernels: c is folded into the A^T y product (addmv with beta = -1), and the
    Halpern weight w_k = (k+1)/(k+2) is advanced as w_{k+1} = 1 / (2 - w_k).  With a Triton
    plan (``SolverOptions.fused``) the same iteration runs as 2 fused kernels + 0 or 2 SpMVs.
    """
    if s.fused_plan is not None:
        halpern_iteration_fused(p, s, s.fused_plan)
        return
    A, At = p.op.csr, p.op.csr_t
    torch.addcmul(s.x, s.tau, s.grad, out=s.x_pre)           # v = x - tau (c - A^T y)
    torch.clamp(s.x_pre, p.col_lower, p.col_upper, out=s.x_hat)
    torch.lerp(s.x, s.x_hat, 2.0, out=s.x_bar)                # 2 x^ - x
    torch.mv(A, s.x_bar, out=s.ax_bar)
    w = torch.addcmul(s.y, s.neg_sigma, s.ax_bar)             # y - sigma A x_bar
    torch.sub(w, torch.clamp(w, s.dual_lower, s.dual_upper), out=s.y_hat)
    torch.lerp(s.y, s.y_hat, 2.0, out=s.y_bar)                # 2 y^ - y
    torch.lerp(s.x0, s.x_bar, s.weight, out=s.x)              # Halpern: w z_bar + (1-w) z0
    torch.lerp(s.y0, s.y_bar, s.weight, out=s.y)
    if s.fused_grad:
        torch.addmv(p.c, At, s.y, beta=-1.0, out=s.grad)      # A^T y - c
    else:
        torch.mv(At, s.y, out=s.grad).sub_(p.c)
    torch.reciprocal(2.0 - s.weight, out=s.weight)


# Iterations per CUDA graph: a chunk of 64 iterations replays a 16-iteration graph 4 times, then
# the check's graph.  Recording and instantiating a graph costs time per node, paid by every
# solve (the graph holds this solve's buffers): on an H100 a 64-iteration graph took 17-23 ms to
# capture (afiro and PageRank 1e6 alike; 7-8 ms now), more than afiro's whole iteration time.  A replay costs
# a few microseconds, so 4 more per check are noise next to 64 iterations.
GRAPH_ITERATIONS = 16


class _Runner:
    """Runs chunks of iterations, each followed by the check's device computations.

    On CUDA, ``GRAPH_ITERATIONS`` iterations (or the whole chunk, when it is not a multiple) and
    the check are captured once as two CUDA graphs and replayed: a few launches and one
    device-to-host copy per check, so small LPs are not bound by kernel-launch latency.  The
    kernels and their order are those of the eager run.  Other chunk lengths (the first
    iteration, the rest before an iteration limit) and the CPU run eagerly.
    """

    def __init__(self, p: ScaledLP, t: TerminationData, s: IterationState, chunk: int,
                 use_graph: bool, timer: PhaseTimer | None = None):
        self.p, self.t, self.s, self.chunk = p, t, s, chunk
        self.timer = timer if timer is not None else PhaseTimer(False)
        self.use_graph = use_graph
        self.graph: torch.cuda.CUDAGraph | None = None        # the iterations
        self.check_graph: torch.cuda.CUDAGraph | None = None
        self.piece = (GRAPH_ITERATIONS if chunk % GRAPH_ITERATIONS == 0 else chunk)
        self.graph_out: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
        self.graph_error: str | None = None

    def _eager(self, iterations: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        for _ in range(iterations):
            halpern_iteration(self.p, self.s)
        return _check_device(self.p, self.t, self.s)

    def run(self, iterations: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Run ``iterations`` iterations and the check; (host scalars, device tensors)."""
        if iterations == self.chunk and self.use_graph and self.graph is None:
            self._capture()
            self.timer.mark("graph_capture")
        if iterations == self.chunk and self.graph is not None:
            for _ in range(self.chunk // self.piece):
                self.graph.replay()
            self.check_graph.replay()
            stacked, dev = self.graph_out
        else:
            stacked, dev = self._eager(iterations)
        return dict(zip(CHECK_KEYS, stacked.tolist())), dev

    def _capture(self) -> None:
        try:
            torch.cuda.synchronize()
            graph, check = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(self.piece):
                    halpern_iteration(self.p, self.s)
            with torch.cuda.graph(check):     # own pool: its outputs outlive the replays
                out = _check_device(self.p, self.t, self.s)
            self.graph, self.check_graph, self.graph_out = graph, check, out
        except Exception as exc:  # noqa: BLE001 - any capture failure: fall back to eager
            self.use_graph, self.graph_error = False, f"{type(exc).__name__}: {exc}"
            warnings.warn(f"solve_lp: CUDA graph capture failed ({self.graph_error}); "
                          f"running the iterations eagerly", RuntimeWarning, stacklevel=3)
            torch.cuda.synchronize()


def _operator_norm(p: ScaledLP, opts: SolverOptions) -> float:
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


def _resolve_device(device: Any) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# The SolverOptions that shape the preparation (scaling and ||A~||_2); a PreparedLP fixes them.
PREPARE_OPTIONS = ("ruiz_iterations", "geometric_mean_passes", "pock_chambolle",
                   "bound_objective_rescaling", "norm_estimate", "power_iterations",
                   "power_tolerance", "cpu_setup_nnz")


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


def _options(where: str, check_every: int, advanced: dict[str, Any]) -> SolverOptions:
    unknown = set(advanced) - set(SolverOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {sorted(unknown)}; "
                        f"see l2o.pdhg.SolverOptions")
    opts = SolverOptions(check_every=check_every, **advanced)
    if opts.norm_estimate not in ("auto", "power"):
        raise ValueError(f"{where}: norm_estimate must be 'auto' or 'power', "
                         f"got {opts.norm_estimate!r}")
    if opts.check_every < 1:
        raise ValueError(f"{where}: check_every must be >= 1")
    return opts


def _check_dtype(where: str, dtype: Any) -> None:
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"{where}: dtype must be torch.float64 or torch.float32, got {dtype}")


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
    opts = _options("prepare", 64, advanced)
    _check_dtype("prepare", dtype)
    check_structure(lp)
    dev = _resolve_device(device)
    timer = PhaseTimer(opts.profile, None, start)
    return _prepare(lp, dev, dtype, opts, timer, start)


def _prepare(lp, dev: torch.device, dtype: torch.dtype, opts: SolverOptions, timer: PhaseTimer,
             start: float) -> PreparedLP:
    """The setup phases of a solve (to_device ... termination); ``timer`` is charged them."""
    setup = torch.device("cpu") if lp.nnz < opts.cpu_setup_nnz else dev
    timer.set_device(setup)
    arrays = lp_arrays(lp, setup)
    timer.mark("to_device")
    # the value checks run where the data now are (one sync); the host re-check names the culprit
    if bool(arrays.invalid()):
        validate_lp(lp)             # names the culprit
        raise InvalidLPError("solve_lp: the LP contains nan/inf or invalid bounds")
    timer.mark("validate")
    p = scale_lp(lp, device=setup, dtype=dtype, ruiz_iterations=opts.ruiz_iterations,
                 geometric_mean_passes=opts.geometric_mean_passes,
                 pock_chambolle=opts.pock_chambolle,
                 bound_objective_rescaling=opts.bound_objective_rescaling, timer=timer,
                 arrays=arrays)
    norm_a = _operator_norm(p, opts)
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


def _check_prepared(prepared: PreparedLP, device: Any, dtype: Any,
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


def _warm_start_vectors(lp, warm_start, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    if warm_start is None:
        return torch.zeros(n, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)
    if isinstance(warm_start, LPResult):
        x, y = warm_start.x, warm_start.y
    else:
        x, y = warm_start
    # float64 where they are: a start already on the solve's device needs no host round trip
    x = torch.zeros(n, dtype=torch.float64) if x is None else torch.as_tensor(x).double()
    y = torch.zeros(m, dtype=torch.float64) if y is None else torch.as_tensor(y).double()
    if x.shape != (n,) or y.shape != (m,):
        raise ValueError(f"solve_lp: warm start needs x of shape ({n},) and y of shape ({m},), "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        raise ValueError("solve_lp: warm start contains nan/inf")
    return x, y


def solve_lp(lp, tol: float = 1e-4, device: Any = "auto", dtype: torch.dtype | None = None,
             warm_start: Any = None, time_limit: float | None = None,
             iteration_limit: int | None = None,
             progress: Callable[[dict], None] | None = None, check_every: int = 64,
             **advanced: Any) -> LPResult:
    """Solve an LP with restarted reflected-Halpern PDHG (see the module docstring).

    Optimality (cuPDLPx's relative criteria, l2 norms, on the UNSCALED LP at the returned point):
        ||A x - proj_[l_r, u_r](A x)||_2 / (1 + ||b||_2)                 <= tol
        ||c - A^T y - r||_2 / (1 + ||c||_2)                              <= tol
        |pobj - dobj| / (1 + |pobj| + |dobj|)                            <= tol
    with b the finite row bounds (equality rows once), r the dual slack recovered from the last
    primal step (r = (x - v) / tau with x = proj(v), v = x_prev - tau (c - A^T y_prev): the Moreau
    identity, as cuPDLPx; r lies in the normal cone of the column bounds at x),
    pobj = c^T x + c0 and dobj = c0 + sum(l_r y^+ - u_r y^-) + sum(l_c r^+ - u_c r^-)
    (minimization form; see :mod:`l2o.pdhg.termination`).  ``LPResult.reduced_costs`` are
    proj(c - A^T y) onto the signs the column bounds allow.

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
        check_every: iterations between checks.
        **advanced: fields of :class:`SolverOptions`.

    Returns:
        An :class:`LPResult` (CPU float64 vectors; see its docstring for x, y per status).
        Its ``solve_time`` always includes the setup: for a PreparedLP, this call's seconds
        plus ``PreparedLP.setup_time`` (the time limit counts it too).

    Raises:
        ValueError: nan/inf data, lower > upper bounds, bad warm start or options.
    """
    start = time.perf_counter()
    opts = _options("solve_lp", check_every, advanced)
    if not tol > 0:
        raise ValueError(f"solve_lp: tol must be positive, got {tol}")
    if iteration_limit is not None and iteration_limit < 1:
        raise ValueError(f"solve_lp: iteration_limit must be >= 1, got {iteration_limit}")
    prepared = lp if isinstance(lp, PreparedLP) else None
    if prepared is not None:
        _check_prepared(prepared, device, dtype, advanced)
        lp, dev, dtype = prepared.lp, prepared.device, prepared.dtype
        opts = replace(opts, **{k: getattr(prepared.options, k) for k in PREPARE_OPTIONS})
    else:
        dtype = torch.float64 if dtype is None else dtype
        _check_dtype("solve_lp", dtype)
        check_structure(lp)
        dev = _resolve_device(device)
    n, m = lp.num_cols, lp.num_rows
    x_init, y_init = _warm_start_vectors(lp, warm_start, n, m)
    timer = PhaseTimer(opts.profile, dev, start)
    if prepared is None:
        prepared = _prepare(lp, dev, dtype, opts, timer, start)
    else:
        # the solve's clock starts setup_time earlier: solve_time (and the time limit) count the
        # shared setup as if this call had done it; its phases are reported as they were
        start -= prepared.setup_time
        timer.timings.update(prepared.timings)
    p, term, norm_a = prepared.scaled, prepared.termination, prepared.operator_norm
    eta = opts.step_safety / norm_a if norm_a > 0 else 1.0
    x0 = torch.clamp(p.scale_primal(x_init.to(dev, dtype)), p.col_lower, p.col_upper)
    # a dual warm start with the wrong signs for its row bounds is projected like x
    y0 = torch.clamp(p.scale_dual(y_init.to(dev, dtype)), term.dual_rec_lower,
                     term.dual_rec_upper)
    state = IterationState.init(p, x0, y0)
    timer.mark("state")
    state.fused_plan = make_plan(p, state, opts.fused)
    timer.mark("fused_plan")
    pid = PrimalWeightPID()
    state.set_steps(p, eta, pid.weight)
    runner = _Runner(p, term, state, opts.check_every, opts.cuda_graph and dev.type == "cuda",
                     timer)
    result = _run(lp, p, term, state, runner, pid, eta, opts, tol, start, time_limit,
                  iteration_limit, progress, timer)
    if opts.profile:
        timer.mark("result")
        result.timings = {**timer.timings, "total": timer.last - start}   # = sum of phases
    return result


CHECK_KEYS = (
    "rel_primal_residual", "rel_dual_residual", "rel_gap", "primal_objective", "dual_objective",
    "fixed_point_error", "primal_move", "dual_move",
    *(f"primal_ray_{q}_{c}" for c in RAY_CANDIDATES for q in ("obj", "viol")),
    *(f"dual_ray_{q}_{c}" for c in RAY_CANDIDATES for q in ("obj", "res")),
)


def _check_device(p: ScaledLP, t: TerminationData,
                  s: IterationState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Everything one check needs, on the device: (stacked scalars in CHECK_KEYS order, vectors).

    The point checked is z^ = T(z) of the last iteration; z^ - z = z_bar - z^, and
    A~ (z^ - z)_x = A~ x_bar - A~ x^, so the fixed-point error
    r(z)^2 = omega/eta ||dx||^2 + 1/(eta omega) ||dy||^2 + 2 dy^T A~ dx needs no extra product.
    """
    op = p.op
    ax_hat, aty_hat = op.matvec(s.x_hat), op.rmatvec(s.y_hat)
    kkt = kkt_terms(p, t, s.x_hat, s.y_hat, ax_hat, aty_hat, (s.x_hat - s.x_pre) / s.tau)
    dx, dy = s.x_bar - s.x_hat, s.y_bar - s.y_hat          # T(z) - z of the last iteration
    a_dx = s.ax_bar - ax_hat
    fp_sq = (s.metric_primal * torch.dot(dx, dx) + s.metric_dual * torch.dot(dy, dy)
             + 2.0 * torch.dot(dy, a_dx))
    ex, ey = s.x_hat - s.x0, s.y_hat - s.y0                # the epoch's displacement
    scalars = {
        "rel_primal_residual": kkt["rel_primal_residual"],
        "rel_dual_residual": kkt["rel_dual_residual"],
        "rel_gap": kkt["rel_gap"],
        "primal_objective": kkt["primal_objective"],
        "dual_objective": kkt["dual_objective"],
        "fixed_point_error": torch.sqrt(torch.clamp(fp_sq, min=0)),
        "primal_move": torch.linalg.vector_norm(ex),
        "dual_move": torch.linalg.vector_norm(ey),
    }
    rays = {}
    for name, d in (("step", dx), ("epoch", ex), ("iterate", s.x_hat)):
        xr = project_primal_ray(t, d)
        cx, viol = primal_ray_terms(p, t, xr, op.matvec(xr))
        scalars[f"primal_ray_obj_{name}"], scalars[f"primal_ray_viol_{name}"] = cx, viol
        rays[f"x_{name}"] = xr
    # y^ already has the signs of the dual's recession cone, so A~^T y^ serves as it is
    for name, d in (("step", dy), ("epoch", ey), ("iterate", s.y_hat)):
        yr = project_dual_ray(t, d)
        obj, res = dual_ray_terms(p, t, yr, aty_hat if name == "iterate" else op.rmatvec(yr))
        scalars[f"dual_ray_obj_{name}"], scalars[f"dual_ray_res_{name}"] = obj, res
        rays[f"y_{name}"] = yr
    stacked = torch.stack([scalars[k].to(torch.float64) for k in CHECK_KEYS])
    return stacked, {**kkt, **rays, "aty_hat": aty_hat}


def _run(lp, p: ScaledLP, t: TerminationData, s: IterationState, runner: _Runner,
         pid: PrimalWeightPID, eta: float, opts: SolverOptions, tol: float, start: float,
         time_limit: float | None, iteration_limit: int | None,
         progress: Callable[[dict], None] | None, timer: PhaseTimer) -> LPResult:
    """The outer loop: chunks of iterations, then one check (restart / terminate)."""
    total = 0
    anchor_error = previous_error = math.inf
    epoch_start = 0
    last_good: tuple[dict[str, float], dict[str, torch.Tensor]] | None = None
    eps_inf = opts.infeasibility_tolerance
    while True:
        chunk = 1 if total == 0 else opts.check_every
        if iteration_limit is not None:
            chunk = min(chunk, iteration_limit - total)
        host, dev = runner.run(chunk)
        timer.mark("first_check" if total == 0 else "iterations")
        total += chunk
        elapsed = time.perf_counter() - start
        if progress is not None:
            progress({"iteration": total, "rel_primal_residual": host["rel_primal_residual"],
                      "rel_dual_residual": host["rel_dual_residual"], "rel_gap": host["rel_gap"],
                      "elapsed": elapsed})
        if not all(math.isfinite(v) for v in host.values()):
            return _result(lp, LPStatus.NUMERICAL_ERROR, last_good, total, start,
                           f"nan/inf in the iterates at iteration {total}")
        # copies: on CUDA the check's outputs live in the graph's buffers, which the next replay
        # overwrites (and a NUMERICAL_ERROR result must return the last finite point)
        last_good = (host, {k: dev[k].clone() for k in ("x", "y", "reduced_costs")})
        if (host["rel_primal_residual"] <= tol and host["rel_dual_residual"] <= tol
                and host["rel_gap"] <= tol):
            return _result(lp, LPStatus.OPTIMAL, last_good, total, start,
                           f"relative residuals and gap <= {tol:g} after {total} iterations")
        # a candidate passing the device test is reported only if the float64 re-check on the
        # unscaled LP confirms it (_ray_result returns None otherwise: keep iterating)
        for name in RAY_CANDIDATES:
            obj, res = host[f"dual_ray_obj_{name}"], host[f"dual_ray_res_{name}"]
            if obj > 0 and res <= eps_inf * obj:
                found = _ray_result(lp, LPStatus.PRIMAL_INFEASIBLE, last_good,
                                    dev[f"y_{name}"], p, total, start, eps_inf)
                if found is not None:
                    return found
            cx, viol = host[f"primal_ray_obj_{name}"], host[f"primal_ray_viol_{name}"]
            if cx < 0 and viol <= eps_inf * -cx:
                found = _ray_result(lp, LPStatus.DUAL_INFEASIBLE, last_good, dev[f"x_{name}"],
                                    p, total, start, eps_inf)
                if found is not None:
                    return found
        if iteration_limit is not None and total >= iteration_limit:
            return _result(lp, LPStatus.ITERATION_LIMIT, last_good, total, start,
                           f"iteration limit {iteration_limit} reached")
        if time_limit is not None and elapsed >= time_limit:
            return _result(lp, LPStatus.TIME_LIMIT, last_good, total, start,
                           f"time limit {time_limit:g} s reached after {total} iterations")

        error = host["fixed_point_error"]
        if total == 1:
            anchor_error = previous_error = error       # r(z0) exactly: the check saw T(z0)
            continue
        reason = restart_reason(opts.restart, error, anchor_error, previous_error,
                                total - epoch_start, total)
        previous_error = error
        if reason is not None:
            s.restart_epoch(p, s.x_hat, s.y_hat, dev["aty_hat"])
            omega = pid.update(host["primal_move"], host["dual_move"],
                               host["rel_primal_residual"], host["rel_dual_residual"])
            s.set_steps(p, eta, omega)
            # r of the new anchor z^ is at most r(z) (T is nonexpansive in the P metric)
            anchor_error = previous_error = error
            epoch_start = total


def _result(lp, status: LPStatus, checked, total: int, start: float, message: str) -> LPResult:
    host, dev = checked if checked is not None else ({}, {})
    sign = -1.0 if lp.sense == "maximize" else 1.0
    n, m = lp.num_cols, lp.num_rows
    cpu = lambda key, size: (dev[key].detach().to("cpu", torch.float64)
                             if key in dev else torch.full((size,), float("nan"),
                                                           dtype=torch.float64))
    kkt = {k: host.get(k, float("nan"))
           for k in ("rel_primal_residual", "rel_dual_residual", "rel_gap")}
    return LPResult(x=cpu("x", n), y=cpu("y", m), reduced_costs=cpu("reduced_costs", n),
                    objective=sign * host.get("primal_objective", float("nan")),
                    dual_objective=sign * host.get("dual_objective", float("nan")),
                    status=status, message=message, iterations=total,
                    solve_time=time.perf_counter() - start, kkt=kkt)


def _ray_result(lp, status: LPStatus, checked, ray_s: torch.Tensor, p: ScaledLP, total: int,
                start: float, eps: float) -> LPResult | None:
    """The certificate as a result, or None if its float64 re-check on the unscaled LP fails.

    x (DUAL_INFEASIBLE) or y and its reduced costs (PRIMAL_INFEASIBLE) become the ray, scaled to
    ||.||_inf = 1.  The device test ran in the solver's dtype on the scaled data; this one
    (termination.verify_dual_ray / verify_primal_ray) runs on ``lp`` itself, unprojected.
    """
    if status == LPStatus.DUAL_INFEASIBLE:
        xr = (ray_s * p.col_scale).to("cpu", torch.float64)
        xr = xr / xr.abs().max()
        cx, violation = verify_primal_ray(lp, xr.to(lp.A.device))
        if not (cx < 0 and violation <= eps * -cx):
            return None
        res = _result(lp, status, checked, total, start,
                      f"primal ray (c^T x = {cx:.3g} < 0, violation {violation:.3g}, "
                      f"||x||_inf = 1) proves dual infeasibility")
        res.x = xr
        return res
    yr = (ray_s * p.row_scale).to("cpu", torch.float64)
    yr = yr / yr.abs().max()
    objective, residual = verify_dual_ray(lp, yr.to(lp.A.device))
    if not (objective > 0 and residual <= eps * objective):
        return None
    res = _result(lp, status, checked, total, start,
                  f"dual ray (objective {objective:.3g} > 0, residual {residual:.3g}, "
                  f"||y||_inf = 1) proves primal infeasibility")
    g = -(lp.A.to("cpu", torch.float64).t() @ yr.unsqueeze(1)).squeeze(1)
    lo = torch.where(torch.isfinite(lp.col_upper.cpu()), -float("inf"), 0.0).double()
    hi = torch.where(torch.isfinite(lp.col_lower.cpu()), float("inf"), 0.0).double()
    res.y, res.reduced_costs = yr, torch.clamp(g, lo, hi)
    return res
