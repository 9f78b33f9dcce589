"""The iteration: its device buffers, one reflected-Halpern PDHG step, and chunks of them.

On the scaled LP (:mod:`l2o.pdhg.scaling`), with step sizes tau = eta / omega, sigma = eta omega
(eta = step_safety / ||A~||_2, omega the primal weight), one iteration from z = (x, y) with the
epoch's anchor z0 = (x0, y0) and the epoch's iteration index k:

    x^ = proj_[l_c, u_c](x - tau (c - A^T y))                  (PDHG step, as step.py)
    y^ = w - clamp(w, -sigma u_r, -sigma l_r),  w = y - sigma A (2 x^ - x)
    z+ = (k+1)/(k+2) (2 z^ - z) + 1/(k+2) z0                   (reflected Halpern)

:class:`ChunkRunner` runs a chunk of iterations followed by the check's device computations
(:func:`l2o.pdhg.statistics.device_statistics`, or its Triton form :mod:`l2o.pdhg.fused_check`
with the fused iteration), on CUDA as CUDA graph replays: no host sync until the check's one
copy of its scalars.

References: Lu & Yang, "Restarted Halpern PDHG for linear programming", 2024; Lu, Peng & Yang,
"cuPDLPx", 2025.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .fused import halpern_iteration_fused
from .fused_check import make_fused_check
from .profile import PhaseTimer
from .scaling import ScaledLP
from .statistics import CheckStatistics, CheckVectors, device_statistics
from .termination import TerminationData

__all__ = ["GRAPH_ITERATIONS", "SINGLE_PROCESS", "ChunkRunner", "IterationState",
           "SingleProcess", "halpern_iteration", "sparse_addmv_works"]


class SingleProcess:
    """Where the iteration's products and the check's reductions run: on this process, with the
    LP's own CSR matrices (the default).  An LP sharded over a process group has
    :class:`l2o.pdhg.distributed.Sharded` instead: the same methods around collectives.
    """

    # the fused iteration's exchange of x_bar and y between processes (l2o.pdhg.fused): none
    exchange = None

    def attach(self, s: IterationState) -> None:
        """Make ``s`` run its products and reductions here."""
        s.parallel = self

    def ax_bar(self, p: ScaledLP, s: IterationState) -> None:
        """s.ax_bar = A~ s.x_bar."""
        torch.mv(p.op.csr, s.x_bar, out=s.ax_bar)

    def grad(self, p: ScaledLP, s: IterationState) -> None:
        """s.grad = A~^T s.y - c~ (one addmv with beta = -1 where the torch build has it)."""
        if s.fused_grad:
            torch.addmv(p.c, p.op.csr_t, s.y, beta=-1.0, out=s.grad)
        else:
            torch.mv(p.op.csr_t, s.y, out=s.grad).sub_(p.c)

    def check(self, scalars: Callable[[], tuple[list[torch.Tensor], Any]]
              ) -> tuple[torch.Tensor, Any]:
        """(the check's 0-d scalars of ``scalars()`` stacked as float64 (..., K), its other
        output): ``scalars`` reduces with the termination data's ``rows`` / ``cols``."""
        values, other = scalars()
        return torch.stack([v.to(torch.float64) for v in values], dim=-1), other

    def a_mm(self, p: ScaledLP, xr: torch.Tensor) -> torch.Tensor:
        """A~ xr^T (m, k) of k column vectors xr (k, n) (the fused check's products)."""
        return torch.mm(p.op.csr, xr.t())

    def at_mm(self, p: ScaledLP, yr: torch.Tensor) -> torch.Tensor:
        """A~^T yr^T (n, k) of k row vectors yr (k, m)."""
        return torch.mm(p.op.csr_t, yr.t())

    def combine(self, values: torch.Tensor, maxima: torch.Tensor) -> torch.Tensor:
        """The fused check's reduced numbers (K,) float64, sums or maxima where ``maxima``
        (bool (K,)): here they are already the LP's."""
        return values

    def received(self, values: list[float]) -> list[float]:
        """The check's numbers as the host received them, as the record reads them."""
        return values

    def elapsed(self, start: float) -> float:
        """Seconds since ``start`` (``time.perf_counter``): the time limit's clock."""
        return time.perf_counter() - start

    def whole_checked(self, checked: Any) -> Any:
        """The last check's point as the result reports it (here: as it is)."""
        return checked

    def whole_ray(self, scaled: ScaledLP, ray: torch.Tensor,
                  primal: bool) -> tuple[ScaledLP, torch.Tensor]:
        """(the scaled LP, a scaled ray of it) as the certificate's re-check reads them."""
        return scaled, ray


SINGLE_PROCESS = SingleProcess()


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
            metric P (0-d); ``metrics``: the same two numbers on the host.
        fused_grad: whether sparse addmv (A^T y - c in one product) works on this device.
        fused_plan: the Triton kernels' plan (l2o.pdhg.fused), or None for the torch ops.
        parallel: where the torch iteration's products and the check's reductions run
            (:data:`SINGLE_PROCESS`, or a sharded LP's :class:`l2o.pdhg.distributed.Sharded`).
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
    metrics: tuple[float, float] = (0.0, 0.0)
    parallel: Any = SINGLE_PROCESS

    @classmethod
    def init(cls, p: ScaledLP, x: torch.Tensor, y: torch.Tensor) -> IterationState:
        e = torch.empty_like
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        s = cls(x=x.clone(), y=y.clone(), x0=x.clone(), y0=y.clone(), grad=e(x), x_pre=e(x),
                x_hat=e(x), y_hat=e(y), x_bar=e(x), y_bar=e(y), ax_bar=e(y), weight=zero.clone(),
                tau=zero.clone(), neg_sigma=zero.clone(), dual_lower=e(y), dual_upper=e(y),
                metric_primal=zero.clone(), metric_dual=zero.clone())
        s.restart_epoch(p, x, y, p.op.rmatvec(y))
        s.fused_grad = sparse_addmv_works(p, s)
        return s

    # the Halpern weight as the x and the y update read it: one LP has one (a stack of LPs has
    # one per LP, spread over its entries: l2o.pdhg.batch_state.BatchState)
    @property
    def weight_x(self) -> torch.Tensor:
        return self.weight

    @property
    def weight_y(self) -> torch.Tensor:
        return self.weight

    def set_steps(self, p: ScaledLP, eta: float, omega: float) -> None:
        """tau = eta / omega, sigma = eta omega, and what depends on them."""
        tau, sigma = eta / omega, eta * omega
        self.metrics = (omega / eta, 1.0 / (eta * omega))
        self.metric_primal.fill_(self.metrics[0])
        self.metric_dual.fill_(self.metrics[1])
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

    def iterate(self, p: ScaledLP, last: bool = True) -> None:
        """One iteration in place: :func:`halpern_iteration` (a stack of LPs has its own
        kernels: l2o.pdhg.batch_state)."""
        halpern_iteration(p, self, last)

    def save_iterate(self) -> tuple[torch.Tensor, ...]:
        """Copies of what the next iteration reads besides the steps: x, y, x0, y0, grad, weight."""
        return tuple(t.clone() for t in self._iterate())

    def load_iterate(self, saved: tuple[torch.Tensor, ...]) -> None:
        """Back to the iterate of :meth:`save_iterate` (in place: a CUDA graph reads these)."""
        for buffer, value in zip(self._iterate(), saved):
            buffer.copy_(value)

    def _iterate(self) -> tuple[torch.Tensor, ...]:
        return self.x, self.y, self.x0, self.y0, self.grad, self.weight


def sparse_addmv_works(p: ScaledLP, s: IterationState) -> bool:
    """Whether sparse addmv with beta (A^T y - c in one product) runs here: not every torch
    build has it.  Writes s.x_pre (a scratch buffer before the first iteration)."""
    try:
        torch.addmv(p.c, p.op.csr_t, s.y, beta=-1.0, out=s.x_pre)
    except (RuntimeError, NotImplementedError):
        return False
    return True


def halpern_iteration(p: ScaledLP, s: IterationState, last: bool = True) -> None:
    """One reflected-Halpern PDHG iteration in place (module docstring); 2 SpMVs, no host sync.

    Written for few kernels: c is folded into the A^T y product (addmv with beta = -1), and the
    Halpern weight w_k = (k+1)/(k+2) is advanced as w_{k+1} = 1 / (2 - w_k).  With a Triton
    plan (``SolverOptions.fused``) the same iteration runs as 2 fused kernels + 0 or 2 SpMVs,
    and skips the stores only a check reads unless ``last`` (the iteration before a check).
    """
    if s.fused_plan is not None:
        halpern_iteration_fused(p, s, s.fused_plan, last)
        return
    torch.addcmul(s.x, s.tau, s.grad, out=s.x_pre)           # v = x - tau (c - A^T y)
    torch.clamp(s.x_pre, p.col_lower, p.col_upper, out=s.x_hat)
    torch.lerp(s.x, s.x_hat, 2.0, out=s.x_bar)                # 2 x^ - x
    s.parallel.ax_bar(p, s)                                   # A x_bar
    w = torch.addcmul(s.y, s.neg_sigma, s.ax_bar)             # y - sigma A x_bar
    torch.sub(w, torch.clamp(w, s.dual_lower, s.dual_upper), out=s.y_hat)
    torch.lerp(s.y, s.y_hat, 2.0, out=s.y_bar)                # 2 y^ - y
    torch.lerp(s.x0, s.x_bar, s.weight_x, out=s.x)            # Halpern: w z_bar + (1-w) z0
    torch.lerp(s.y0, s.y_bar, s.weight_y, out=s.y)
    s.parallel.grad(p, s)                                     # A^T y - c
    torch.reciprocal(2.0 - s.weight, out=s.weight)


# Iterations per CUDA graph: a chunk of 64 iterations replays a 16-iteration graph 4 times, then
# the check's graph.  Recording and instantiating a graph costs time per node, paid by every
# solve (the graph holds this solve's buffers): on an H100 a 64-iteration graph took 17-23 ms to
# capture (afiro and PageRank 1e6 alike; 7-8 ms now), more than afiro's whole iteration time.  A replay costs
# a few microseconds, so 4 more per check are noise next to 64 iterations.
GRAPH_ITERATIONS = 16


class ChunkRunner:
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
        self.graph_out: tuple[torch.Tensor, CheckVectors] | None = None
        self.graph_error: str | None = None
        self.fused_check = make_fused_check(p, t, s)

    def _eager(self, iterations: int) -> tuple[torch.Tensor, CheckVectors]:
        for i in range(iterations):
            self.s.iterate(self.p, last=i == iterations - 1)
        return self._statistics()

    def _statistics(self) -> tuple[torch.Tensor, CheckVectors]:
        """The check's device work: the fused kernels with the fused iteration, else torch."""
        if self.fused_check is not None:
            return self.fused_check.statistics(self.p, self.t, self.s)
        return device_statistics(self.p, self.t, self.s)

    def _record(self, values: list[float]) -> CheckStatistics:
        if self.fused_check is not None:
            return self.fused_check.record(values, *self.s.metrics)
        return CheckStatistics.from_values(values)

    def run(self, iterations: int) -> tuple[CheckStatistics, CheckVectors]:
        """Iterate a chunk of ``iterations`` and compute the check statistics: (the record,
        read with the check's one host sync; the device vectors)."""
        stacked, dev = self.run_device(iterations)
        return self._record(self.s.parallel.received(stacked.tolist())), dev

    def run_device(self, iterations: int) -> tuple[torch.Tensor, CheckVectors]:
        """:meth:`run` without the host copy: (the stacked scalars on the device, the vectors)."""
        if iterations == self.chunk and self.use_graph and self.graph is None:
            self._capture()
            self.timer.mark("graph_capture")
        if iterations == self.chunk and self.graph is not None:
            for _ in range(self.chunk // self.piece):
                self.graph.replay()
            self.check_graph.replay()
            return self.graph_out
        return self._eager(iterations)

    def _capture(self) -> None:
        try:
            torch.cuda.synchronize()
            graph, check = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for i in range(self.piece):
                    self.s.iterate(self.p, last=i == self.piece - 1)
            with torch.cuda.graph(check):     # own pool: its outputs outlive the replays
                out = self._statistics()
            self.graph, self.check_graph, self.graph_out = graph, check, out
        except Exception as exc:  # noqa: BLE001 - any capture failure: fall back to eager
            self.use_graph, self.graph_error = False, f"{type(exc).__name__}: {exc}"
            warnings.warn(f"solve_lp: CUDA graph capture failed ({self.graph_error}); "
                          f"running the iterations eagerly", RuntimeWarning, stacklevel=3)
            torch.cuda.synchronize()
