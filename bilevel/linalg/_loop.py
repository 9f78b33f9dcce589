"""The iteration driver shared by the solvers: chunks of k steps, one check per chunk.

A solver is written as ``body(op, state) -> state``, one iteration on a dict of
tensors with no host synchronization.  ``iterate`` runs chunks of ``check_every``
iterations and looks at the state (a host sync) only between chunks.

On CUDA the chunk can be captured once as a CUDA graph and replayed: a solve of
a small or medium problem is otherwise dominated by kernel launch overhead
(tens of small kernels per iteration), which a replay removes.  Autograd-based
operators (``LinearOperator.from_hvp``) must record their forward pass on the
capturing stream, so an operator that has a ``rebuild`` factory is rebuilt
inside the capture: every replay then redoes one forward pass and ``k`` products.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from .operators import LinearOperator

__all__ = ["iterate"]

State = dict
Body = Callable[[LinearOperator, State], State]


def iterate(name: str, body: Body, op: LinearOperator, state: State, *, maxiter: int,
            check_every: int, cuda_graph: bool | str = "auto",
            monitor: str) -> State:
    """Run ``body`` until ``state["active"]`` is False or ``maxiter`` iterations.

    Args:
        name: solver name, for error messages.
        body: one iteration.
        op: the operator handed to ``body``.
        state: dict of tensors (or trees); must hold a 0-dim bool "active".
        maxiter: iteration cap.
        check_every: iterations per chunk (between host-side checks).
        cuda_graph: True, False or "auto" (use one on CUDA when the solve is long
            enough to repay the capture).
        monitor: key of a 0-dim tensor that turns non-finite when the iteration breaks.

    Raises:
        FloatingPointError: ``state[monitor]`` became nan/inf; names the iterations.
    """
    device = state["active"].device
    use_graph = _want_graph(cuda_graph, device, maxiter, check_every)
    chunk: _GraphChunk | None = None
    it = 0
    while it < maxiter and bool(state["active"]):
        steps = min(check_every, maxiter - it)
        if use_graph and steps == check_every:
            if chunk is None:
                try:
                    chunk = _GraphChunk(body, op, state, steps)
                except Exception as err:  # capture unsupported by this operator: run eagerly
                    warnings.warn(f"{name}: CUDA graph capture failed ({err}); running eagerly",
                                  RuntimeWarning, stacklevel=3)
                    use_graph = False
            if chunk is not None:
                state = chunk(state)
        if not use_graph or steps != check_every:
            for _ in range(steps):
                state = body(op, state)
        if not bool(torch.isfinite(state[monitor])):
            raise FloatingPointError(
                f"{name}: non-finite value (nan/inf) appeared between iterations {it} and "
                f"{it + steps}; check the operator and right-hand side for nan/inf or overflow")
        it += steps
    return state


def _want_graph(cuda_graph: bool | str, device: torch.device, maxiter: int,
                check_every: int) -> bool:
    if device.type != "cuda" or cuda_graph is False:
        return False
    if torch.cuda.is_current_stream_capturing():
        return False  # already inside someone's graph: just record
    if cuda_graph == "auto":
        return maxiter >= 2 * check_every
    return bool(cuda_graph)


class _GraphChunk:
    """``steps`` iterations of ``body`` captured as one CUDA graph over static buffers."""

    def __init__(self, body: Body, op: LinearOperator, state: State, steps: int) -> None:
        leaves, self.spec = tree_flatten(state)
        self.static = [t.clone() for t in leaves]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up (cuBLAS/cuSPARSE handles, autograd) off-graph
            scratch = tree_unflatten([t.clone() for t in self.static], self.spec)
            body(_fresh(op), scratch)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            local_op = _fresh(op)
            current = tree_unflatten(self.static, self.spec)
            for _ in range(steps):
                current = body(local_op, current)
            for dst, src in zip(self.static, tree_flatten(current)[0]):
                dst.copy_(src)

    def __call__(self, state: State) -> State:
        for dst, src in zip(self.static, tree_flatten(state)[0]):
            if dst is not src:
                dst.copy_(src)
        self.graph.replay()
        return tree_unflatten(self.static, self.spec)


def _fresh(op: LinearOperator) -> LinearOperator:
    rebuild = getattr(op, "rebuild", None)
    return rebuild() if rebuild is not None else op
