"""The iteration driver shared by the solvers: chunks of k steps, one check per chunk.

A solver is written as ``body(op, state) -> state``, one iteration on a dict of
tensors with no host synchronization.  ``iterate`` advances ``check_every``
iterations at a time and looks at the state (a host sync) only between chunks.

On CUDA a short run of ``GRAPH_STEPS`` iterations is captured once as a CUDA graph
and replayed: small and medium solves are otherwise dominated by kernel launch
overhead (tens of small kernels per iteration).  Capturing costs about as much host
time as running the captured iterations eagerly, so the graph is kept short and
replayed several times between checks; with ``cuda_graph="auto"`` the driver times
one eager chunk against one replayed chunk and keeps the faster.  The first chunk
runs eagerly on the caller's stream, so a solve that ends there (a warm start, a
few iterations) costs nothing extra.  The rest runs on one side stream: an
autograd-based operator (``LinearOperator.from_hvp``) is re-linearized there once
(via its ``rebuild`` factory), because autograd runs backward kernels on the
stream of their forward pass, and that must be the capturing stream.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator

import torch
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from .operators import LinearOperator

__all__ = ["cuda_graphs_off", "iterate", "no_cuda_graphs"]

State = dict
Body = Callable[[LinearOperator, State], State]
GRAPH_STEPS = 4
# why CUDA graphs are off in this context (None: allowed); see no_cuda_graphs
_GRAPHS_OFF: contextvars.ContextVar[str | None] = contextvars.ContextVar("graphs_off",
                                                                        default=None)


@contextlib.contextmanager
def no_cuda_graphs(reason: str) -> Iterator[None]:
    """Inside, no solver or hypergradient captures a CUDA graph (``cuda_graph`` options are
    overridden): for operators whose products must run eagerly, e.g. the all-reduces of a
    data-parallel solve (:mod:`bilevel.distributed`), which a graph would replay, skip or
    re-run differently on each process."""
    token = _GRAPHS_OFF.set(reason)
    try:
        yield
    finally:
        _GRAPHS_OFF.reset(token)


def cuda_graphs_off() -> str | None:
    """Why CUDA graphs are off here (inside :func:`no_cuda_graphs`), or None."""
    return _GRAPHS_OFF.get()


def iterate(name: str, body: Body, op: LinearOperator, state: State, *, maxiter: int,
            check_every: int, cuda_graph: bool | str = "auto", monitor: str) -> State:
    """Run ``body`` until ``state["active"]`` is False or ``maxiter`` iterations.

    Args:
        name: solver name, for error messages.
        body: one iteration.
        op: the operator handed to ``body``.
        state: dict of tensors (or trees); must hold a 0-dim bool "active".
        maxiter: iteration cap.
        check_every: iterations between host-side checks.
        cuda_graph: True, False or "auto" (on CUDA, when the solve is long enough to
            repay the capture).
        monitor: key of a 0-dim tensor that turns non-finite when the iteration breaks.

    Raises:
        FloatingPointError: ``state[monitor]`` became nan/inf; names the iterations.
    """
    def eager(s: State, steps: int) -> State:
        for _ in range(steps):
            s = body(op, s)
        return s

    if not _want_graph(cuda_graph, state["active"].device, maxiter, check_every):
        return _drive(name, eager, state, maxiter, check_every, monitor)[0]

    check_every = -(-check_every // GRAPH_STEPS) * GRAPH_STEPS  # whole replays per chunk
    # The first chunk runs eagerly on the caller's stream, timed for the "auto" choice: a
    # short solve (warm-started, or well conditioned: a few iterations) ends here and
    # never pays for a side stream, a re-linearization of the operator there, or copies.
    first = min(check_every, maxiter)
    if not bool(state["active"]):
        return state
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    state = eager(state, first)
    end.record()
    active, done = _look(name, state, monitor, 0, first), first
    if not active or done >= maxiter:
        return state
    caller = torch.cuda.current_stream()
    stream = torch.cuda.Stream()
    stream.wait_stream(caller)
    with torch.cuda.stream(stream):
        runner = _GraphRunner(name, body, _fresh(op), force=cuda_graph is True)
        runner.timings["eager"] = (start, end, done)
        runner.mode = "probe-graph"
        state = _drive(name, runner.advance, state, maxiter - done, check_every, monitor,
                       offset=done, active=True)[0]
    caller.wait_stream(stream)
    # Hand the results back as tensors of the caller's stream (the graph's buffers
    # belong to the side stream and to the graph's memory pool).
    return tree_map(lambda t: t.clone(), state)


def _drive(name: str, advance: Callable[[State, int], State], state: State, maxiter: int,
           check_every: int, monitor: str, offset: int = 0,
           active: bool | None = None) -> tuple[State, int, bool]:
    """Advance in chunks while active: (state, iterations advanced, still active).
    ``active``: the caller's last look, if it just made one (saves a sync)."""
    it = 0
    active = bool(state["active"]) if active is None else active
    while it < maxiter and active:
        steps = min(check_every, maxiter - it)
        state = advance(state, steps)
        active = _look(name, state, monitor, offset + it, steps)
        it += steps
    return state, it, active


def _look(name: str, state: State, monitor: str, it: int, steps: int) -> bool:
    """The host check after a chunk (one sync): still active?  Raises on nan/inf."""
    active, finite = torch.stack([state["active"], torch.isfinite(state[monitor])]).tolist()
    if not finite:
        raise FloatingPointError(
            f"{name}: non-finite value (nan/inf) appeared between iterations {it} and "
            f"{it + steps}; check the operator and right-hand side for nan/inf or overflow")
    return active


def _want_graph(cuda_graph: bool | str, device: torch.device, maxiter: int,
                check_every: int) -> bool:
    if device.type != "cuda" or cuda_graph is False or cuda_graphs_off() is not None:
        return False
    if torch.cuda.is_current_stream_capturing():
        return False  # already inside someone's graph: just record
    if cuda_graph == "auto":
        return maxiter >= 2 * check_every
    return bool(cuda_graph)


class _GraphRunner:
    """Advance the state eagerly for one timed chunk, then by replays of a captured graph.

    The first chunk runs eagerly (it warms up cuBLAS/cuSPARSE and autograd, and counts
    as progress) between two CUDA events (``iterate`` runs it on the caller's stream and
    hands its events over, mode "probe-graph").  The second chunk captures GRAPH_STEPS
    iterations once and replays them, also between events.  At the third chunk (the
    host checks in between have synchronized, so the events are complete) "auto"
    keeps whichever ran faster per iteration: replays win big on launch-bound loops
    and can lose a little on bandwidth-bound ones (cuBLAS picks other kernels under
    capture).  ``force`` keeps the graph.
    """

    def __init__(self, name: str, body: Body, op: LinearOperator, force: bool) -> None:
        self.name, self.body, self.op, self.force = name, body, op, force
        self.mode = "probe-eager"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.timings: dict[str, tuple[torch.cuda.Event, torch.cuda.Event, int]] = {}

    def advance(self, state: State, steps: int) -> State:
        if self.mode == "probe-eager":
            self.mode = "probe-graph"
            return self._timed("eager", state, steps, self._eager)
        if self.mode == "probe-graph":
            self._capture(state)
            if self.graph is None:
                return self._eager(state, steps)
            self.mode = "decide"
            return self._timed("graph", state, steps, self._replays)
        if self.mode == "decide":
            self.mode = "graph" if self.force or self._ms_per_iter("graph") < \
                self._ms_per_iter("eager") else "eager"
        return self._replays(state, steps) if self.mode == "graph" else self._eager(state, steps)

    def _eager(self, state: State, steps: int) -> State:
        for _ in range(steps):
            state = self.body(self.op, state)
        return state

    def _replays(self, state: State, steps: int) -> State:
        while steps >= GRAPH_STEPS:
            state = self._replay(state)
            steps -= GRAPH_STEPS
        return self._eager(state, steps)

    def _timed(self, key: str, state: State, steps: int,
               run: Callable[[State, int], State]) -> State:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        state = run(state, steps)
        end.record()
        self.timings[key] = (start, end, steps)
        return state

    def _ms_per_iter(self, key: str) -> float:
        start, end, steps = self.timings[key]
        return start.elapsed_time(end) / max(steps, 1)

    def _capture(self, state: State) -> None:
        leaves, self.spec = tree_flatten(state)
        self.static = [t.clone() for t in leaves]
        graph = torch.cuda.CUDAGraph()
        # capture_begin/end on our side stream directly: the torch.cuda.graph context
        # manager would also synchronize and empty the allocator cache on entry.
        try:
            graph.capture_begin()
            try:
                current = tree_unflatten(self.static, self.spec)
                for _ in range(GRAPH_STEPS):
                    current = self.body(self.op, current)
                for dst, src in zip(self.static, tree_flatten(current)[0]):
                    dst.copy_(src)
            finally:
                graph.capture_end()
        except Exception as err:  # an operator that cannot be captured: stay eager
            warnings.warn(f"{self.name}: CUDA graph capture failed ({err}); running eagerly",
                          RuntimeWarning, stacklevel=4)
            self.mode = "eager"
            return
        self.graph = graph

    def _replay(self, state: State) -> State:
        for dst, src in zip(self.static, tree_flatten(state)[0]):
            if dst is not src:
                dst.copy_(src)
        self.graph.replay()
        return tree_unflatten(self.static, self.spec)


def _fresh(op: LinearOperator) -> LinearOperator:
    """The operator to use on the current (side) stream: a Hessian operator already
    linearized on another stream is re-linearized here (autograd would otherwise run
    its backward kernels on that other stream, outside the capture)."""
    products = getattr(op, "hessian_products", None)
    if products is not None and products.recorded_elsewhere():
        op = op.rebuild()
        products = op.hessian_products
    if products is not None:
        products.linearize()  # here, not inside the graph capture that follows
    return op
