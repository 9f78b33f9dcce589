"""Whole-call CUDA graphs of AID hypergradients: automatic, or ``cuda_graph=True``.

A hypergradient of a small or medium problem is bound by kernel launches, not by
arithmetic: one CG iteration is the Hessian product plus 14 small kernels, and the fixed
part (grad f, the linearization of grad_y g, the final residual, the mixed product) some
60 more, each paying the host's launch cost.  Here the first call for a given (problem,
shapes, dtypes, device, method, options) records the whole computation into three CUDA
graphs, and every later call copies (x, y, v0) into the graphs' input buffers and
replays them:

    prologue   grad_x f, grad_y f and f at (x, y); grad_y g at (x, y) linearized once
               (its saved forward pass serves every product H_yy u, a backward pass);
               b = grad_y f and the solver's initial state
    step       one iteration of the solver, on the state's buffers (with
               ``cuda_graph=True`` the Hessian product is staged, see
               :mod:`bilevel.linalg.staged`: its part that does not depend on the vector,
               e.g. a softmax, is computed once in the prologue, and its per-vector part
               is compiled by ``torch.compile`` where Triton runs; the first call pays the
               compilation, 3-6 s for MNIST cleaning on the H200)
    epilogue   v = the solver's solution, its true residual ||b - H_yy v|| / ||b||
               (one more product), grad_x f - (d^2 g / dx dy)^T v, and the scalars the
               info needs, packed in one tensor

A host cannot branch inside a graph, so iterations run masked: one after convergence or
a breakdown changes nothing (the solvers' own ``torch.where`` freezing, see
:class:`bilevel.linalg.solvers.Iteration`), and the answer equals the eager,
early-stopping one.  A call replays the prologue, the step as many times as the previous
call needed (the eager first call's count, for the first replay; never more than
``maxiter``), and the epilogue, then reads the packed scalars: one host synchronization.
Only a solve that needs more iterations than predicted looks again: ``check_every``
(default 8) more steps per look, then the epilogue again.

With ``cuda_graph="auto"`` (the default of :func:`bilevel.hypergrad` and of
:func:`bilevel.solve`'s AID methods) the first call for a key runs eagerly and the
second captures: a problem whose hypergradient is asked for repeatedly (an outer loop,
a benchmark) gets the graphs without asking, a one-off call pays no capture.
``cuda_graph=True`` captures on the first call.

The call runs eagerly instead (the engine of :mod:`bilevel.hypergrad.aid`, with its
usual per-chunk graphs), and ``info.cuda_graph`` says why, when: x is not on a CUDA
device; the objectives take minibatches; the linear solver has no recordable
:class:`~bilevel.linalg.solvers.Iteration` form, or needs an option computed on the host
(Neumann without a fixed ``alpha``; see :meth:`bilevel.linalg.LinearSolver.capture_issue`);
f or g synchronizes with the host or cannot be captured (e.g. calls ``.item()``; with
``cuda_graph=True`` a ``RuntimeWarning`` is issued once per capture); or a replay meets
something the eager engine handles on the host: non-positive curvature (the eager call
then damps or falls back to MINRES), b = grad_y f = 0, or a nan/inf (the eager call
raises its usual error).  A wrong answer is never returned from a graph.

The graphs read the tensors that f and g hold at capture time.  They are kept per
problem (a weak reference: they go when the problem goes; at most ``MAX_ENTRIES``
option/shape combinations, the least recently used dropped) and rebuilt when
``problem.outer`` / ``problem.inner`` / the data attributes are replaced; if f or g read
data through some other reference you rebind (not modify in place), call
:func:`clear_cuda_graphs`.
"""

from __future__ import annotations

import time
import warnings
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
from torch.func import grad_and_value
from torch.utils._pytree import tree_flatten

from ..linalg import LinearOperator, LinearSolver, as_solver, fused, mixed_vjp
from ..linalg import tree as T
from ..linalg._loop import cuda_graphs_off
from ..linalg.solvers import curvature_breakdown, explain_divergence, report
from ..linalg.staged import stage_product
from ..linalg.tree import Tree
from ..problem import BilevelProblem
from .aid import aid_hypergrad, check_fallback
from .info import HypergradInfo
from .system import inner_check, inner_operator

__all__ = ["captured_hypergrad", "clear_cuda_graphs"]

# steps replayed between host looks when a solve needs more than the predicted count
DEFAULT_LOOK = 8
# Graphs kept per problem, the least recently used dropped first: options that change
# every call (a Neumann alpha re-estimated each outer step, say) must not pile them up.
MAX_ENTRIES = 4
# problem -> {key: CapturedAID}, in recency order; weak keys: the graphs go with the problem
_ENTRIES: weakref.WeakKeyDictionary[BilevelProblem, dict] = weakref.WeakKeyDictionary()


def clear_cuda_graphs(problem: BilevelProblem) -> None:
    """Drop the captured hypergradient graphs of ``problem`` (the next
    ``cuda_graph=True`` call captures again)."""
    _ENTRIES.pop(problem, None)


def captured_hypergrad(problem: BilevelProblem, f: Callable, g: Callable, x: Tree, y: Tree, *,
                       full_batch: bool, cuda_graph: bool | str = True,
                       solve: str | Callable | LinearSolver = "cg", tol: float = 1e-6,
                       maxiter: int | None = None, v0: Tree | None = None,
                       check_every: int | None = None, ridge: float = 0.0,
                       fallback: str | None = "ridge", hessian: str = "exact",
                       split: tuple[Callable, Callable] | None = None,
                       warn_inner: bool = True) -> tuple[Tree, HypergradInfo]:
    """The AID hypergradient of :func:`~bilevel.hypergrad.aid.aid_hypergrad` (same
    arguments and result), by replaying a captured CUDA graph where possible.

    ``f``, ``g``: the problem's objectives with the batch bound (``split`` likewise);
    ``full_batch``: whether that batch is None for both (only then is the call captured).
    ``cuda_graph``: True (capture on the first call), "auto" (on the second call for the
    same key; a CPU call is simply eager) or False (eager).
    ``info.cuda_graph`` says what happened ("captured ...", "replayed ...", "eager: ...").
    """
    solver = as_solver(solve)
    options = dict(solve=solver, tol=tol, maxiter=maxiter, check_every=check_every,
                   ridge=float(ridge), fallback=check_fallback(fallback), hessian=hessian,
                   split=split, warn_inner=warn_inner)
    if cuda_graph is False:
        return aid_hypergrad(f, g, x, y, v0=v0, cuda_graph=False, **options)
    if cuda_graph not in (True, "auto"):
        raise ValueError(f"cuda_graph must be True, False or 'auto', got {cuda_graph!r}")
    automatic = cuda_graph == "auto"
    why = _unsupported(x, solver, full_batch)
    if why is not None:
        if automatic and not _can_capture_on(T.like_info(x)[1]):
            return aid_hypergrad(f, g, x, y, v0=v0, **options)  # a CPU: nothing to consider
        return _eager(f, g, x, y, v0, options, f"eager: {why}")
    entries = _ENTRIES.setdefault(problem, {})
    source = _source(problem)
    for key in [k for k, e in entries.items() if e.source != source]:
        del entries[key]  # f, g or the data were replaced: those graphs are stale
    key = (_options_key(options), _signature(x), _signature(y), _signature(v0))
    entry = entries.pop(key, None)
    if entry is None and automatic:
        entry = _FirstCall(source)  # capture when the same call comes again
    elif entry is None or isinstance(entry, _FirstCall) or (
            not automatic and not entry.stage and entry.failure is None):
        # (the last case: graphs an "auto" call captured without the staged product, which
        # cuda_graph=True asks for: captured again, staged; a staged entry serves "auto")
        predicted = (entry.iterations if isinstance(entry, _FirstCall)
                     else None if entry is None else entry.predicted)
        entry = CapturedAID(f, g, x, y, v0, source=source, quiet=automatic,
                            stage=not automatic, predicted=predicted, **options)
    entries[key] = entry  # (re)inserted last: the dict's order is the recency order
    while len(entries) > MAX_ENTRIES:
        del entries[next(iter(entries))]
    if isinstance(entry, _FirstCall):
        grad_x, info = _eager(f, g, x, y, v0, options,
                              "eager: first call (captured if the same call comes again)")
        if info.fallback is None:  # the replays' first guess of the iterations needed
            entry.iterations = info.iterations
        return grad_x, info
    if entry.failure is not None:
        return _eager(f, g, x, y, v0, options,
                      f"eager: the CUDA graph capture failed ({entry.failure})")
    return entry(x, y, v0)


class _FirstCall:
    """A key seen once (``cuda_graph="auto"``): the next call captures; ``iterations``:
    what this eager call's solve took (None after a fallback)."""

    def __init__(self, source: tuple) -> None:
        self.source = source
        self.iterations: int | None = None


def _options_key(options: dict) -> tuple:
    """What, besides the problem's identity (:func:`_source`) and the shapes, a recorded
    call depends on.  The split (z, l) enters only as present or not: its closures are
    made anew by every call (``problem.inner_split_at``), so their identity would make
    every call a new key, capturing every time; what they compute is fixed by
    ``problem.inner_output`` / ``inner_loss`` (in the source) and the batch, which is None
    for every recorded call."""
    solver = options["solve"]
    rest = tuple((k, v if k != "split" else v is not None) for k, v in
                 sorted(options.items()) if k != "solve")
    return (solver.name, solver.function, repr(sorted(solver.options.items()))) + rest


def _unsupported(x: Tree, solver: LinearSolver, full_batch: bool) -> str | None:
    device = T.like_info(x)[1]
    if not _can_capture_on(device):
        return f"x is on {device}; CUDA graphs need a CUDA device"
    if not full_batch:
        return "minibatch objectives (a batch that is not None) are not captured"
    off = cuda_graphs_off()
    if off is not None:
        return off
    issue = solver.capture_issue()
    if issue is not None:
        return issue
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return "already inside a CUDA graph capture"
    return None


def _source(problem: BilevelProblem) -> tuple:
    """What the graphs' validity depends on, by identity."""
    return (problem.outer, problem.inner, problem.inner_output, problem.inner_loss,
            id(problem.outer_data), id(problem.inner_data))


def _signature(tree: Tree | None) -> Any:
    if tree is None:
        return None
    if isinstance(tree, torch.Tensor):  # every call looks this up: no tree walk for a tensor
        return tuple(tree.shape), tree.dtype, tree.device
    leaves, spec = tree_flatten(tree)
    return str(spec), tuple((tuple(t.shape), t.dtype, t.device) for t in leaves)


def _eager(f: Callable, g: Callable, x: Tree, y: Tree, v0: Tree | None, options: dict,
           note: str) -> tuple[Tree, HypergradInfo]:
    grad_x, info = aid_hypergrad(f, g, x, y, v0=v0, cuda_graph="auto", **options)
    info.cuda_graph = note
    return grad_x, info


def _detached_clone(tree: Tree | None) -> Tree | None:
    return None if tree is None else T.tree_map(lambda t: t.detach().clone(), tree)


class CapturedAID:
    """The three graphs of one (problem, shapes, options), their buffers, and the
    replay logic (module docstring).  ``failure`` is None or why capturing failed;
    ``predicted``: the steps the next call replays before its first look; ``stage``:
    replace autograd's Hessian product by its staged form (:mod:`bilevel.linalg.staged`:
    fewer kernels per step, for a trace of the product at capture: ~0.2 s, and ~2 s for
    the first trace of a process), as ``cuda_graph=True`` asks; "auto" keeps the capture
    cheap, since its first replays are counted in the call time."""

    def __init__(self, f: Callable, g: Callable, x: Tree, y: Tree, v0: Tree | None, *,
                 source: tuple, quiet: bool, solve: LinearSolver, tol: float,
                 maxiter: int | None, check_every: int | None, ridge: float,
                 fallback: str | None, hessian: str, split: tuple | None,
                 warn_inner: bool, predicted: int | None = None, stage: bool = False) -> None:
        self.f, self.g, self.source = f, g, source
        self.options = dict(solve=solve, tol=tol, maxiter=maxiter, check_every=check_every,
                            ridge=ridge, fallback=fallback, hessian=hessian, split=split,
                            warn_inner=warn_inner)
        self.solver, self.tol, self.fallback = solve, tol, fallback
        self.ridge, self.hessian, self.split, self.warn_inner = ridge, hessian, split, warn_inner
        maxiter = solve.options.get("maxiter", maxiter)  # fixed on the solver: it wins
        if maxiter is None:
            maxiter = solve.default_maxiter(T.numel(y))
        self.maxiter = maxiter
        self.look_every = max(1, check_every or DEFAULT_LOOK)
        self.predicted = min(maxiter, self.look_every if predicted is None else predicted)
        self.calls = 0
        self.inputs = {"x": _detached_clone(x), "y": _detached_clone(y),
                       "v0": _detached_clone(v0)}
        self.failure: str | None = None
        self.stage = stage
        start = time.perf_counter()
        try:
            self._capture()
        except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
            self.failure = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
            if not quiet:
                warnings.warn(f"hypergrad(cuda_graph=True): capture failed ({self.failure}); "
                              "running eagerly", RuntimeWarning, stacklevel=4)
        self.capture_s = time.perf_counter() - start

    # -- the recorded pieces -------------------------------------------------------------
    def _stage(self) -> None:
        """The Hessian product staged (:mod:`bilevel.linalg.staged`): its part that does
        not depend on the vector runs once per call in the prologue, not at every step.
        Traced with host synchronization an error (a trace that branches on data serves
        only the point it was traced at); any failure keeps autograd's product."""
        self.staged, self.product_note = None, "autograd Hessian product"
        if not self.stage or self.hessian != "exact":
            return
        try:
            with _forbid_host_sync():
                self.staged = stage_product(self.g, self.inputs["x"], self.inputs["y"])
        except Exception as err:  # noqa: BLE001 - any failure means: autograd's product
            self.product_note = (f"autograd Hessian product (not staged: {type(err).__name__}: "
                                 f"{str(err).strip().splitlines()[0][:120]})")
            return
        self.product_note = f"staged Hessian product ({self.staged.kernels} kernels)"
        self._compile_staged()

    def _compile_staged(self) -> None:
        """The staged product's per-vector part through ``torch.compile``
        (:meth:`~bilevel.linalg.staged.StagedProduct.compile`: its elementwise ops fused; a
        captured MNIST-cleaning CG step 54 -> 43 us on the H200, benchmarks/RESULTS.md),
        compiled here by one call with and one without autograd, outside the host-sync check
        (compiling reads the device). Where Triton does not run, or on any failure, the
        staged product stays as it is and the note says why."""
        x, y = self.inputs["x"], self.inputs["y"]
        if not fused.available(T.like_info(y)[1]):
            return
        try:
            compiled = self.staged.compile()
            constants = compiled.setup(x, y)
            with warnings.catch_warnings():   # inductor's hint to use TF32: not for this math
                warnings.filterwarnings("ignore", message=".*TensorFloat32.*")
                for grad in (True, False):
                    with torch.set_grad_enabled(grad):
                        compiled.apply(constants, T.zeros_like(y))
        except Exception as err:  # noqa: BLE001 - any failure means: not compiled
            self.product_note += (f" (not compiled: {type(err).__name__}: "
                                  f"{str(err).strip().splitlines()[0][:120]})")
            return
        self.staged = compiled
        self.product_note = (f"staged Hessian product ({self.staged.kernels} kernels, "
                             f"compiled by torch.compile)")

    def _staged_agrees(self) -> bool:
        """The staged product equals autograd's at this call's point, along a random
        vector, to rounding (one host synchronization, at capture)."""
        base, op = self.pro["base"], self.pro["staged_op"]
        y = self.inputs["y"]
        u = T.randn_like(y, generator=torch.Generator().manual_seed(0))
        exact = base(u)
        error = float(T.norm(T.axpy(-1.0, op(u), exact)) / T.norm(exact).clamp_min(1e-300))
        return error <= 1e3 * torch.finfo(T.like_info(y)[0]).eps

    def _prologue(self) -> dict:
        x, y, v0 = self.inputs["x"], self.inputs["y"], self.inputs["v0"]
        (f_x, b), loss = grad_and_value(self.f, argnums=(0, 1))(x, y)
        base = inner_operator(self.g, x, y, hessian=self.hessian, split=self.split)
        base.hessian_products.linearize()  # grad_y g, and the epilogue's joint product
        staged_op = None
        if self.staged is not None:
            constants, apply = self.staged.setup(x, y), self.staged.apply
            staged_op = LinearOperator(lambda u: apply(constants, u),
                                       lambda u: apply(constants, u), base.shape, like=y)
        op = (staged_op if staged_op is not None else base).shifted(self.ridge)
        bnorm = T.norm(b)
        it = self.solver.record(op, b, v0, self.tol, bnorm)
        # The step graph overwrites the state's buffers, so each must be its own tensor,
        # used nowhere else (MINRES starts with r1 = r2 = b and several entries = 0).
        seen = {id(t) for t in tree_flatten([b, x, y, v0])[0]}

        def own(t: torch.Tensor) -> torch.Tensor:
            if id(t) in seen:
                t = t.clone()
            seen.add(id(t))
            return t
        state = {k: T.tree_map(own, leaf) for k, leaf in it.state.items()}
        return {"f_x": f_x, "b": b, "bnorm": bnorm, "loss": loss, "base": base, "op": op,
                "staged_op": staged_op, "iteration": it, "state": state,
                "inner_norm": T.norm(base.gradient())}

    def _step(self, state: dict) -> dict:
        """One iteration of the solver on ``state`` (frozen once inactive)."""
        return self.pro["iteration"].body(self.pro["op"], state)

    def _epilogue(self, pro: dict, state: dict) -> dict:
        it, op, b, bnorm = pro["iteration"], pro["op"], pro["b"], pro["bnorm"]
        x, y = self.inputs["x"], self.inputs["y"]
        v = it.solution(state)
        joint = pro["base"].hessian_products.extras.get("joint")
        if joint is not None:  # H v and the mixed product in one backward pass
            hv, mixed = joint(v)
            av = T.axpy(self.ridge, v, hv) if self.ridge else hv
        else:
            av, mixed = op(v), mixed_vjp(self.g, x, y, v)
        residual = T.norm(T.axpy(-1.0, av, b)) / bnorm
        grad_x = T.axpy(-1.0, mixed, pro["f_x"])
        failed = (it.breakdown(state) if it.breakdown is not None
                  else torch.zeros_like(state["active"]))
        # one tensor (torch.stack promotes bool / int64 / float), one read by the host;
        # m * 0 == 0 exactly when m is finite (two kernels; isfinite is four)
        flags = torch.stack([state["active"], state["done"], failed, residual,
                             state[it.monitor] * 0 == 0, bnorm > 0, pro["inner_norm"], bnorm])
        return {"grad_x": grad_x, "v": v, "flags": flags}

    def _capture(self) -> None:
        with _side_stream(T.like_info(self.inputs["x"])[1]) as stream:
            # Warm-up: the same pieces once, eagerly (cuBLAS handles, autograd's device
            # thread, lazy initialization), with host synchronization made an error so
            # that f or g calling .item() & co. is named here rather than inside a capture.
            self._stage()
            with _forbid_host_sync():
                self.pro = self._prologue()
                self._epilogue(self.pro, self._step(self.pro["state"]))
            if self.staged is not None and not self._staged_agrees():
                self.staged = None
                self.product_note = ("autograd Hessian product (the staged one disagreed "
                                     "with it)")
                with _forbid_host_sync():
                    self.pro = self._prologue()
                    self._epilogue(self.pro, self._step(self.pro["state"]))
            del self.pro
            self.graphs = [_record(piece, stream)
                           for piece in (self._run_prologue, self._run_step, self._run_epilogue)]

    def _run_prologue(self) -> None:
        self.pro = self._prologue()

    def _run_step(self) -> None:
        _copy_into(self.pro["state"], self._step(self.pro["state"]))

    def _run_epilogue(self) -> None:
        self.out = self._epilogue(self.pro, self.pro["state"])

    # -- a call ------------------------------------------------------------------------
    def __call__(self, x: Tree, y: Tree, v0: Tree | None) -> tuple[Tree, HypergradInfo]:
        for name, value in (("x", x), ("y", y), ("v0", v0)):
            if value is not None:
                for dst, src in zip(T.leaves(self.inputs[name]), T.leaves(value)):
                    dst.copy_(src.detach())
        prologue, step, epilogue = self.graphs
        prologue.replay()
        run = self.predicted
        for _ in range(run):
            step.replay()
        epilogue.replay()
        # the caller's copies, queued before the host waits (the graphs' buffers are
        # overwritten by the next call); cheap to throw away in the rare case below
        grad_x, v = _detached_clone(self.out["grad_x"]), _detached_clone(self.out["v"])
        loss = self.pro["loss"].detach().clone()
        active, done, failed, residual, finite, b_nonzero, inner, rhs = \
            self.out["flags"].tolist()
        if active and run < self.maxiter:  # the prediction fell short: look every few steps
            state = self.pro["state"]
            while active and run < self.maxiter and finite:
                more = min(self.look_every, self.maxiter - run)
                for _ in range(more):
                    step.replay()
                run += more
                active, finite = torch.stack([state["active"],
                                              torch.isfinite(state[self.pro["iteration"]
                                                                   .monitor])]).tolist()
            epilogue.replay()
            grad_x, v = _detached_clone(self.out["grad_x"]), _detached_clone(self.out["v"])
            active, done, failed, residual, finite, b_nonzero, inner, rhs = \
                self.out["flags"].tolist()
        done = int(done)
        self.predicted = min(done, self.maxiter)
        self.calls += 1
        how = (f"captured in {self.capture_s:.3f} s, replayed" if self.calls == 1
               else "replayed")
        how += f" ({run} iterations run, {done} did work; {self.product_note})"
        if not finite or not b_nonzero:
            # nan/inf, or b = 0: the eager engine has the exact behaviour (its error, or
            # v = 0 without a solve); rare, so simply run it
            what = "a non-finite value" if not finite else "b = grad_y f = 0"
            return _eager(self.f, self.g, x, y, v0, self.options,
                          f"eager: {how}, met {what}; re-ran eagerly")
        if failed and self.fallback is not None:
            return _eager(self.f, self.g, x, y, v0, self.options,
                          f"eager: {how}, met non-positive curvature; re-ran eagerly for "
                          f"the {self.fallback} fallback")
        breakdown = curvature_breakdown(done) if failed else None
        solve = report(self.solver.name, residual, self.tol, done, breakdown, self.maxiter,
                       negative_curvature=bool(failed))
        alpha = self.solver.options.get("alpha")
        if alpha is not None:  # a series with a step: say so when it diverged
            solve = explain_divergence(solve, float(alpha))
        warm = 1 if v0 is not None else 0
        info = HypergradInfo(method=self.solver.name, v=v, solve=solve,
                             residual=solve.residual, iterations=done,
                             # as the eager engine counts: iterations, the initial residual
                             # of a warm start, the final residual, the mixed product
                             hvp_count=done + warm + 2, grad_count=1, fallback=None,
                             converged=solve.converged, outer_loss=loss,
                             step_size=alpha, cuda_graph=how, hessian=self.hessian,
                             ridge=self.ridge, inner_grad_norm=inner,
                             inner_converged=inner_check(
                                 inner, rhs, self.tol, T.like_info(y)[0],
                                 warn=self.warn_inner))
        return grad_x, info


# -- CUDA specifics, kept apart (the CPU tests replace them with emulations) --------------

def _can_capture_on(device: torch.device) -> bool:
    return device.type == "cuda"


@contextmanager
def _side_stream(device: torch.device):
    """Capture needs a stream other than the default one (on the tensors' device);
    autograd then runs each backward pass on its forward's stream, which is this one for
    everything recorded here."""
    with torch.cuda.device(device):
        caller = torch.cuda.current_stream()
        stream = torch.cuda.Stream()
        stream.wait_stream(caller)
        with torch.cuda.stream(stream):
            yield stream
        caller.wait_stream(stream)


@contextmanager
def _forbid_host_sync():
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    except RuntimeError as err:
        if "synchroniz" in str(err):
            raise RuntimeError("f or g synchronizes with the host (e.g. .item(), "
                               f"bool(tensor), nonzero): {err}") from None
        raise
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _record(piece: Callable[[], None], stream: torch.cuda.Stream) -> torch.cuda.CUDAGraph:
    """``piece()`` recorded as a CUDA graph (its tensors become the graph's buffers)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        piece()
    return graph


def _copy_into(static: dict, new: dict) -> None:
    """Write the state ``new`` into the buffers of ``static`` (same structure).  A leaf
    updated in place (the same tensor: CG's whole state) needs no copy; a new leaf that
    is *another* of the static buffers (state passed through, e.g. MINRES's r1 <- r2) is
    cloned first, so no copy reads a buffer already overwritten."""
    dst_leaves, src_leaves = tree_flatten(static)[0], tree_flatten(new)[0]
    ids = {id(t) for t in dst_leaves}
    for dst, src in zip(dst_leaves, [s.clone() if id(s) in ids and s is not d else s
                                     for s, d in zip(src_leaves, dst_leaves)]):
        if dst is not src:
            dst.copy_(src)
