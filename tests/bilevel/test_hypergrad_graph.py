"""``hypergrad(..., cuda_graph=True)``: the whole call captured once and replayed.

Every test runs in two modes: "cuda" (the real CUDA graphs; skipped without a GPU) and
"emulated" (on the CPU, the three CUDA-specific hooks of :mod:`bilevel.hypergrad.graph`
replaced: a "graph" re-runs its recorded Python piece on replay, and host syncs are
caught by a dispatch mode).  The emulation checks everything but the recording itself:
masking, chunking and the learned chunk count, the info, the eager fallbacks, the cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import types
import warnings

import pytest
import torch
from _bilevel_refs import DT, Ridge, count_kernels, rel
from torch.utils._python_dispatch import TorchDispatchMode

import bilevel
from bilevel.hypergrad import clear_cuda_graphs
from bilevel.hypergrad import graph as G
from bilevel.tasks import hyperparameter_tuning
from bilevel.tasks import reference as R

MODES = ["emulated", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))]


class _FakeGraph:
    def __init__(self, piece):
        self.piece = piece

    def replay(self):
        self.piece()


class _NoSync(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # (lift_fresh: a tensor from host data, a host-to-device copy on a GPU, which
        # synchronizes: the captured call then ran eagerly, every time)
        if func.overloadpacket.__name__ in ("_local_scalar_dense", "nonzero", "is_nonzero",
                                            "lift_fresh"):
            raise RuntimeError(f"called a synchronizing operation ({func})")
        return func(*args, **(kwargs or {}))


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    if request.param == "emulated":
        @contextlib.contextmanager
        def no_sync():
            with _NoSync():
                yield
        monkeypatch.setattr(G, "_can_capture_on", lambda device: True)
        monkeypatch.setattr(G, "_side_stream", lambda device: contextlib.nullcontext(None))
        monkeypatch.setattr(G, "_record", lambda piece, stream: (piece(), _FakeGraph(piece))[1])
        monkeypatch.setattr(G, "_forbid_host_sync", no_sync)
    return request.param


def _device(mode):
    return torch.device("cuda" if mode == "cuda" else "cpu")


def ridge_problem(r: Ridge, device, **kw):
    X, t, Xv, tv = (a.to(device) for a in (r.X, r.t, r.Xv, r.tv))

    def inner(x, y, batch=None):
        return ((X @ y - t) ** 2).sum() / (2 * X.shape[0]) + (x.exp() * y * y).sum() / 2

    def outer(x, y, batch=None):
        return ((Xv @ y - tv) ** 2).sum() / (2 * Xv.shape[0])
    return bilevel.BilevelProblem(outer=outer, inner=inner, x0=r.x0.to(device),
                                  y0=torch.zeros(r.n, dtype=DT, device=device), **kw)


def logistic(device, n=300, d=12, seed=0, log_reg=-2.0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(2 * n, d, generator=gen, dtype=DT)
    w = torch.randn(d, generator=gen, dtype=DT)
    labels = torch.where(X @ w + 0.5 * torch.randn(2 * n, generator=gen, dtype=DT) > 0, 1.0, -1.0)
    return hyperparameter_tuning(X[:n], labels[:n], X[n:], labels[n:], log_reg0=log_reg,
                                 device=device, dtype=DT)


def inner_opt(problem, x):
    return R.inner_solution(problem, x, problem.y0, method="newton", tol=1e-13)


def _same(captured, eager, tol=1e-10):
    (g_c, i_c), (g_e, i_e) = captured, eager
    assert rel(g_c, g_e) <= tol
    assert rel(i_c.v, i_e.v) <= tol
    assert i_c.iterations == i_e.iterations
    assert i_c.converged == i_e.converged and i_c.fallback == i_e.fallback
    assert i_c.hvp_count == i_e.hvp_count and i_c.grad_count == i_e.grad_count
    # (the captured call's product is staged: equal to rounding, so a residual at round-off
    # level, ~1e-16, may differ in its leading digit)
    assert abs(i_c.residual - i_e.residual) <= 1e-6 * max(i_e.residual, 1e-8)
    assert float(i_c.outer_loss) == pytest.approx(float(i_e.outer_loss), rel=1e-12)


@pytest.mark.parametrize("method,extra", [("cg", {}), ("minres", {}),
                                          ("neumann", {"alpha": 0.5, "maxiter": 400})])
def test_ridge_captured_equals_eager_and_closed_form(mode, method, extra):
    r = Ridge()
    problem = ridge_problem(r, _device(mode))
    x = r.x0.to(_device(mode))
    y = r.y_star(r.x0).to(_device(mode))
    tol = 1e-9 if method == "neumann" else 1e-12
    eager = bilevel.hypergrad(problem, x, y, method=method, tol=tol, **extra)
    first = bilevel.hypergrad(problem, x, y, method=method, tol=tol, cuda_graph=True, **extra)
    again = bilevel.hypergrad(problem, x, y, method=method, tol=tol, cuda_graph=True, **extra)
    assert first[1].cuda_graph.startswith("captured") and again[1].cuda_graph.startswith("replayed")
    # one iteration per chunk: a chunk's output state passes some input buffers through
    one = bilevel.hypergrad(problem, x, y, method=method, tol=tol, cuda_graph=True,
                            check_every=1, **extra)
    for out in (first, again, one):
        _same(out, eager)
        assert out[1].converged
        assert rel(out[0].cpu(), r.hypergrad(r.x0)) <= (1e-6 if method == "neumann" else 1e-8)
    if method == "neumann":
        assert again[1].step_size == 0.5
    # outputs are the caller's, not the graph's buffers
    kept = again[0].clone()
    bilevel.hypergrad(problem, x + 0.1, y, method=method, tol=tol, cuda_graph=True, **extra)
    assert torch.equal(again[0], kept)


@pytest.mark.parametrize("check_every", [2, 8])
def test_logistic_replays_follow_new_points_and_warm_starts(mode, check_every):
    """Step replays (the learned number of them is used, and a harder point needs more:
    looks every ``check_every`` steps); each replay at a new (x, y) equals the
    eager answer there and the exact dense one; warm starts too."""
    device = _device(mode)
    problem = logistic(device)
    points = []
    for shift in (0.0, 1.0, -1.5, 2.5):  # different conditioning: iteration counts vary
        x = problem.x0 + shift + 0.3 * torch.linspace(-1, 1, problem.x0.numel(), dtype=DT,
                                                      device=device)
        points.append((x, inner_opt(problem, x)))
    iterations, v_prev = [], None
    for x, y in points:
        opts = dict(method="cg", tol=1e-12, check_every=check_every)
        eager = bilevel.hypergrad(problem, x, y, **opts)
        captured = bilevel.hypergrad(problem, x, y, cuda_graph=True, **opts)
        _same(captured, eager)
        exact = R.exact_hypergradient(problem, x, y, solve_inner=False)
        assert rel(captured[0], exact.grad) <= 1e-8
        iterations.append(captured[1].iterations)
        # the same point again: exactly the learned number of steps, no masked ones
        _, info = bilevel.hypergrad(problem, x, y, cuda_graph=True, **opts)
        assert f"({info.iterations} iterations run, {info.iterations} did work;" \
            in info.cuda_graph, info.cuda_graph
        if v_prev is not None:
            warm_e = bilevel.hypergrad(problem, x, y, v0=v_prev, **opts)
            warm_c = bilevel.hypergrad(problem, x, y, v0=v_prev, cuda_graph=True, **opts)
            _same(warm_c, warm_e)
        v_prev = eager[1].v
    assert len(set(iterations)) > 1, iterations  # the points really differ


def test_maxiter_respected_exactly(mode):
    device = _device(mode)
    problem = logistic(device, log_reg=-6.0)
    x = problem.x0
    y = inner_opt(problem, x)
    for maxiter in (3, 5):  # not multiples of the chunk
        eager = bilevel.hypergrad(problem, x, y, tol=1e-14, maxiter=maxiter, check_every=4)
        captured = bilevel.hypergrad(problem, x, y, tol=1e-14, maxiter=maxiter, check_every=4,
                                     cuda_graph=True)
        _same(captured, eager)
        assert captured[1].iterations == maxiter and not captured[1].converged
        assert "maxiter" in captured[1].solve.reason


def _indefinite(device):
    """g(x, y) = y^T S y / 2 - x^T y with S symmetric indefinite; f = ||y||^2 / 2."""
    gen = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=DT))
    S = (Q @ torch.diag(torch.tensor([-2.0, 1, 2, 3, 4, 5], dtype=DT)) @ Q.T).to(device)
    problem = bilevel.BilevelProblem(outer=lambda x, y, b: 0.5 * (y * y).sum(),
                                     inner=lambda x, y, b: 0.5 * y @ (S @ y) - x @ y,
                                     x0=torch.ones(6, dtype=DT, device=device),
                                     y0=torch.zeros(6, dtype=DT, device=device))
    x = torch.linspace(-1, 2, 6, dtype=DT, device=device)
    return problem, x, torch.linalg.solve(S, x), S


def test_nonpositive_curvature_still_falls_back_to_minres(mode):
    problem, x, y, S = _indefinite(_device(mode))
    eager = bilevel.hypergrad(problem, x, y, tol=1e-12, fallback="minres")
    assert eager[1].fallback is not None  # the case really meets the curvature
    captured = bilevel.hypergrad(problem, x, y, tol=1e-12, cuda_graph=True, fallback="minres")
    _same(captured, eager)
    assert "non-positive curvature" in captured[1].cuda_graph
    # exact: h(x) = ||S^{-1} x||^2 / 2, grad = S^{-2} x
    assert rel(captured[0], torch.linalg.solve(S, y)) <= 1e-8
    # without the fallback the breakdown is reported, as eagerly
    eager = bilevel.hypergrad(problem, x, y, tol=1e-12, fallback=False)
    captured = bilevel.hypergrad(problem, x, y, tol=1e-12, fallback=False, cuda_graph=True)
    _same(captured, eager)
    assert not captured[1].converged
    assert captured[1].solve.reason == eager[1].solve.reason
    assert captured[1].solve.reason.startswith("non-positive curvature")


def test_capture_failure_runs_eagerly_with_reason(mode):
    r = Ridge()
    device = _device(mode)
    base = ridge_problem(r, device)

    def syncing_inner(x, y, batch=None):
        scale = float((y * y).sum().detach()) * 0 + 1.0  # a host sync (.item())
        return scale * base.inner(x, y, batch)
    problem = bilevel.BilevelProblem(outer=base.outer, inner=syncing_inner, x0=base.x0,
                                     y0=base.y0)
    x, y = base.x0, r.y_star(r.x0).to(device)
    eager = bilevel.hypergrad(problem, x, y, tol=1e-12)
    with pytest.warns(RuntimeWarning, match="capture failed"):
        captured = bilevel.hypergrad(problem, x, y, tol=1e-12, cuda_graph=True)
    _same(captured, eager)
    assert captured[1].cuda_graph.startswith("eager: the CUDA graph capture failed")
    assert "synchroniz" in captured[1].cuda_graph
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per capture, not per call
        again = bilevel.hypergrad(problem, x, y, tol=1e-12, cuda_graph=True)
    _same(again, eager)


def test_cache_follows_replaced_functions_and_options(mode):
    device = _device(mode)
    r1, r2 = Ridge(seed=0), Ridge(seed=5)
    problem = ridge_problem(r1, device)
    x, y = r1.x0.to(device), r1.y_star(r1.x0).to(device)
    g1, _ = bilevel.hypergrad(problem, x, y, tol=1e-12, cuda_graph=True)
    assert rel(g1.cpu(), r1.hypergrad(r1.x0)) <= 1e-8
    other = ridge_problem(r2, device)
    problem.inner, problem.outer = other.inner, other.outer  # new data: stale graphs go
    y2 = r2.y_star(r1.x0).to(device)
    g2, info = bilevel.hypergrad(problem, x, y2, tol=1e-12, cuda_graph=True)
    assert info.cuda_graph.startswith("captured")
    eager = bilevel.hypergrad(problem, x, y2, tol=1e-12)
    _same((g2, info), eager)
    # other options are another graph; clear_cuda_graphs forgets them all
    _, info = bilevel.hypergrad(problem, x, y2, tol=1e-6, cuda_graph=True)
    assert info.cuda_graph.startswith("captured")
    _, info = bilevel.hypergrad(problem, x, y2, tol=1e-6, cuda_graph=True)
    assert info.cuda_graph.startswith("replayed")
    clear_cuda_graphs(problem)
    _, info = bilevel.hypergrad(problem, x, y2, tol=1e-6, cuda_graph=True)
    assert info.cuda_graph.startswith("captured")


def test_cases_that_run_eagerly_say_why(mode):
    r = Ridge()
    device = _device(mode)
    problem = ridge_problem(r, device)
    x, y = r.x0.to(device), r.y_star(r.x0).to(device)
    eager = bilevel.hypergrad(problem, x, y, method="neumann", tol=1e-9)
    out = bilevel.hypergrad(problem, x, y, method="neumann", tol=1e-9, cuda_graph=True)
    assert out[1].cuda_graph.startswith("eager: neumann needs alpha fixed")
    assert rel(out[0], eager[0]) <= 1e-6  # (power iteration starts differ)
    batch = (r.X.to(device), r.t.to(device))
    eager = bilevel.hypergrad(problem, x, y, tol=1e-12, inner_batch=batch)
    out = bilevel.hypergrad(problem, x, y, tol=1e-12, inner_batch=batch, cuda_graph=True)
    assert out[1].cuda_graph.startswith("eager: minibatch")
    _same(out, eager)


def test_cpu_accepts_cuda_graph_and_runs_eagerly():
    """No emulation: on a CPU tensor the option is accepted, the call is the eager one,
    and the info says so."""
    r = Ridge()
    problem = r.problem()
    y = r.y_star(r.x0)
    for method, extra in (("cg", {}), ("minres", {}), ("neumann", {"alpha": 0.5})):
        eager = bilevel.hypergrad(problem, r.x0, y, method=method, tol=1e-10, **extra)
        out = bilevel.hypergrad(problem, r.x0, y, method=method, tol=1e-10, cuda_graph=True,
                                **extra)
        assert out[1].cuda_graph == "eager: x is on cpu; CUDA graphs need a CUDA device"
        assert eager[1].cuda_graph is None
        assert torch.equal(out[0], eager[0])


def test_solve_aid_with_cuda_graph_equals_eager(mode):
    """``bilevel.solve(..., cuda_graph=True)``: each outer step's hypergradient is a replay
    (v warm-started between steps: two graphs, cold and warm), and the run equals the
    eager one."""
    device = _device(mode)
    runs = {}
    for cuda_graph in (False, True):
        problem = logistic(device)
        res = bilevel.solve(problem, method="aid-cg", outer_steps=6, inner_steps=20,
                            outer_lr=0.05, progress=False, seed=0, cuda_graph=cuda_graph)
        runs[cuda_graph] = res
        if cuda_graph:
            entries = list(G._ENTRIES[problem].values())
            assert len(entries) == 2 and all(e.failure is None for e in entries)
            assert sum(e.calls for e in entries) == 6
    eager, captured = runs[False], runs[True]
    assert rel(captured.x, eager.x) <= 1e-9 and rel(captured.y, eager.y) <= 1e-9
    assert [h["solve_iterations"] for h in captured.history] == \
        [h["solve_iterations"] for h in eager.history]


def test_cache_keeps_a_bounded_number_of_graphs(mode):
    r = Ridge()
    device = _device(mode)
    problem = ridge_problem(r, device)
    x, y = r.x0.to(device), r.y_star(r.x0).to(device)
    for i in range(G.MAX_ENTRIES + 3):
        bilevel.hypergrad(problem, x, y, method="neumann", alpha=0.1 + 0.01 * i, tol=1e-8,
                          maxiter=300, cuda_graph=True)
    assert len(G._ENTRIES[problem]) == G.MAX_ENTRIES
    # the most recent are kept
    _, info = bilevel.hypergrad(problem, x, y, method="neumann",
                                alpha=0.1 + 0.01 * (G.MAX_ENTRIES + 2), tol=1e-8, maxiter=300,
                                cuda_graph=True)
    assert info.cuda_graph.startswith("replayed")


def test_auto_captures_on_the_second_call(mode):
    """The default cuda_graph="auto": eager first, captured on the second call for the same
    problem and options, replayed after; every answer equals the eager one."""
    device = _device(mode)
    problem = logistic(device)
    x = problem.x0
    y = inner_opt(problem, x)
    eager = bilevel.hypergrad(problem, x, y, tol=1e-12, cuda_graph=False)
    assert eager[1].cuda_graph is None
    notes = []
    for _ in range(3):
        out = bilevel.hypergrad(problem, x, y, tol=1e-12)
        _same(out, eager)
        notes.append(out[1].cuda_graph)
    assert notes[0].startswith("eager: first call")
    assert notes[1].startswith("captured") and notes[2].startswith("replayed")


def test_solver_without_iteration_form_runs_eagerly_never_as_another(mode):
    """A user's linear solver has no Iteration form: recorded calls run it eagerly and say
    why (the captured engine must not substitute a solver of its own)."""
    from bilevel.linalg import SolveInfo

    calls = []

    def exact_solve(A, b, *, x0=None, tol=1e-6, maxiter=None):
        calls.append(1)
        M = torch.stack([A(e) for e in torch.eye(b.numel(), dtype=b.dtype,
                                                  device=b.device)], dim=1)
        return torch.linalg.solve(M, b), SolveInfo(1, 0.0, True, "dense")

    r = Ridge()
    device = _device(mode)
    problem = ridge_problem(r, device)
    x, y = r.x0.to(device), r.y_star(r.x0).to(device)
    for cuda_graph in (True, "auto", "auto"):
        g_x, info = bilevel.hypergrad(problem, x, y, solve=exact_solve, cuda_graph=cuda_graph)
        assert "no Iteration form" in info.cuda_graph and info.method == "exact_solve"
        assert rel(g_x.cpu(), r.hypergrad(r.x0)) <= 1e-10
    assert len(calls) == 3


def test_gauss_newton_ridge_and_dict_parameters_captured_equal_eager(mode):
    """A 2-layer MLP (dict parameters) with hessian="gauss-newton" and a ridge: the
    recorded call solves the same system as the eager one."""
    from bilevel.tasks import data_cleaning

    device = _device(mode)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(30, 4, generator=gen, dtype=DT)
    labels = torch.randint(0, 3, (30,), generator=gen)
    problem = data_cleaning(X, labels, X[:10], labels[:10], n_classes=3, hidden=5, reg=1e-2,
                            dtype=DT, device=device)
    x = 0.3 * torch.randn(30, generator=gen, dtype=DT).to(device)
    y = problem.y0
    opts = dict(tol=1e-11, hessian="gauss-newton", ridge=1e-3, maxiter=400)
    eager = bilevel.hypergrad(problem, x, y, cuda_graph=False, **opts)
    for note in ("captured", "replayed"):
        captured = bilevel.hypergrad(problem, x, y, cuda_graph=True, **opts)
        assert captured[1].cuda_graph.startswith(note)
        assert captured[1].hessian == "gauss-newton" and captured[1].ridge == 1e-3
        assert rel(captured[0], eager[0]) <= 1e-9
        assert captured[1].iterations == eager[1].iterations and captured[1].converged
        assert captured[1].inner_grad_norm == pytest.approx(eager[1].inner_grad_norm, rel=1e-9)


def test_problem_with_a_split_is_captured_once(mode):
    """A problem given as inner_loss(inner_output) (every data_cleaning problem): each call
    builds new closures of the split, which must not make each call a new cache key (it
    did: cuda_graph=True captured on every call, "auto" never replayed)."""
    from bilevel.tasks import data_cleaning

    device = _device(mode)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(40, 5, generator=gen, dtype=DT)
    labels = torch.randint(0, 3, (40,), generator=gen)
    problem = data_cleaning(X, labels, X[:10], labels[:10], n_classes=3, reg=1e-2, dtype=DT,
                            device=device)
    assert problem.inner_output is not None
    x = 0.3 * torch.randn(40, generator=gen, dtype=DT).to(device)
    y = inner_opt(problem, x)
    eager = bilevel.hypergrad(problem, x, y, tol=1e-12, cuda_graph=False)
    outputs = [bilevel.hypergrad(problem, x, y, tol=1e-12) for _ in range(4)]
    notes = [info.cuda_graph for _, info in outputs]
    assert notes[0].startswith("eager: first call") and notes[1].startswith("captured")
    assert all(note.startswith("replayed") for note in notes[2:])
    # cuda_graph=True captures once more (staged), and then replays that capture
    asked = [bilevel.hypergrad(problem, x, y, tol=1e-12, cuda_graph=True) for _ in range(2)]
    assert asked[0][1].cuda_graph.startswith("captured"), asked[0][1].cuda_graph
    assert asked[1][1].cuda_graph.startswith("replayed"), asked[1][1].cuda_graph
    outputs += asked
    for out in outputs:
        _same(out, eager)


def test_kernel_budget_of_a_replayed_call(monkeypatch):
    """A replay is pure GPU time, about one small kernel launch per op: a CG step is the
    Hessian product plus at most 14 ops (fused updates, in place: nothing copied back),
    a call replays exactly the iterations that did work (none masked), and the final
    residual shares its backward pass with the mixed product (no second forward)."""
    from bilevel.hypergrad.system import inner_operator

    replays = []

    class CountingGraph(_FakeGraph):
        def replay(self):
            replays.append((self.piece.__name__, count_kernels(self.piece)))

    monkeypatch.setattr(G, "_can_capture_on", lambda device: True)
    monkeypatch.setattr(G, "_side_stream", lambda device: contextlib.nullcontext(None))
    monkeypatch.setattr(G, "_record", lambda piece, stream: (piece(), CountingGraph(piece))[1])
    monkeypatch.setattr(G, "_forbid_host_sync", contextlib.nullcontext)
    problem = logistic(torch.device("cpu"), log_reg=-4.0)
    x = problem.x0
    y = inner_opt(problem, x)
    g = problem.inner_at(None)
    op = inner_operator(g, x, y)
    v = torch.randn(y.shape, dtype=DT, generator=torch.Generator().manual_seed(0))
    op(v)  # linearized
    product = count_kernels(lambda: op(v))
    assert product <= 9, product  # 24 with softplus(-t (X w + b)) and (exp(x) w w).sum()
    eager = bilevel.hypergrad(problem, x, y, tol=1e-6, cuda_graph=False)
    for _ in range(3):  # capture, then replays with the learned count
        replays.clear()
        captured = bilevel.hypergrad(problem, x, y, tol=1e-6, cuda_graph=True)
    _same(captured, eager)
    steps = [n for name, n in replays if name == "_run_step"]
    assert len(steps) == captured[1].iterations == eager[1].iterations > 2
    assert max(steps) <= product + 14, (steps, product)
    epilogue = dict(replays)["_run_epilogue"]
    assert epilogue <= product + 25, (epilogue, product)


def test_kernel_budget_of_the_cleaning_problem(monkeypatch):
    """The MNIST cleaning problem of the hypergradient benchmark (softmax regression with
    per-example weights, here on random data): a Hessian product is at most 13 kernels
    (23 with F.cross_entropy of X W[:-1] + W[-1] and (W * W).sum()), 7 staged, and a
    replayed CG step at most the staged product + 14 (the torch CG of the CPU; on CUDA
    the fused CG is 1 kernel: tests/bilevel/test_linalg_fused.py)."""
    from bilevel.hypergrad.system import inner_operator
    from bilevel.tasks import data_cleaning

    replays = []

    class CountingGraph(_FakeGraph):
        def replay(self):
            replays.append((self.piece.__name__, count_kernels(self.piece)))

    monkeypatch.setattr(G, "_can_capture_on", lambda device: True)
    monkeypatch.setattr(G, "_side_stream", lambda device: contextlib.nullcontext(None))
    monkeypatch.setattr(G, "_record", lambda piece, stream: (piece(), CountingGraph(piece))[1])
    monkeypatch.setattr(G, "_forbid_host_sync", contextlib.nullcontext)
    gen = torch.Generator().manual_seed(0)
    X, Xv = torch.rand(200, 30, generator=gen), torch.rand(50, 30, generator=gen)
    labels, labels_v = (torch.randint(0, 10, (n,), generator=gen) for n in (200, 50))
    problem = data_cleaning(X, labels, Xv, labels_v, n_classes=10)  # float32, as benchmarked
    x = torch.randn(200, generator=gen)
    y = R.inner_solution(problem, x, problem.y0, method="lbfgs", tol=1e-6)
    op = inner_operator(problem.inner_at(None), x, y)
    v = torch.randn(y.shape, generator=gen)
    op(v)  # linearized
    product = count_kernels(lambda: op(v))
    assert product <= 13, product
    notes = []
    for _ in range(3):  # capture, then replays
        replays.clear()
        _, info = bilevel.hypergrad(problem, x, y, tol=1e-4, cuda_graph=True)
        notes.append(info.cuda_graph)
    steps = [n for name, n in replays if name == "_run_step"]
    assert info.converged and len(steps) == info.iterations > 2
    # the captured product is staged (bilevel.linalg.staged): the softmax and the chains
    # of constant factors are computed once per call, in the prologue
    # (and, with Triton, compiled by torch.compile)
    assert "staged Hessian product (7 kernels" in notes[0], notes[0]
    assert max(steps) <= 7 + 14, (steps, product)


def test_staged_product_only_when_asked_and_only_when_it_agrees(mode, monkeypatch):
    """cuda_graph=True stages the Hessian product (bilevel.linalg.staged), "auto" does not
    (a trace costs ~0.2 s at capture); a staged product that disagrees with autograd's at
    the capture point, or one that cannot be traced, leaves autograd's product, and the
    answer is the eager one in every case."""
    from bilevel.linalg.staged import StagedProduct, StagingError

    device = _device(mode)
    problem = logistic(device, log_reg=-3.0)
    x = problem.x0
    y = inner_opt(problem, x)
    eager = bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=False)
    first = bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=True)
    assert "staged Hessian product" in first[1].cuda_graph, first[1].cuda_graph
    _same(first, eager)
    clear_cuda_graphs(problem)
    notes = [bilevel.hypergrad(problem, x, y, tol=1e-10)[1].cuda_graph for _ in range(2)]
    assert notes[1].startswith("captured") and "autograd Hessian product" in notes[1], notes
    # cuda_graph=True after "auto" captured the same call: captured again, staged, and the
    # staged graphs then serve "auto" too
    upgraded = bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=True)
    assert upgraded[1].cuda_graph.startswith("captured"), upgraded[1].cuda_graph
    assert "staged Hessian product" in upgraded[1].cuda_graph, upgraded[1].cuda_graph
    _same(upgraded, eager)
    after = bilevel.hypergrad(problem, x, y, tol=1e-10)[1].cuda_graph
    assert after.startswith("replayed") and "staged Hessian product" in after, after
    real = G.stage_product

    def wrong(g, xx, yy):  # twice the product
        staged = real(g, xx, yy)
        return StagedProduct(staged.setup, lambda c, u: 2 * staged.apply(c, u), staged.kernels)

    def untraceable(g, xx, yy):
        raise StagingError("no trace")

    for fake, note in ((wrong, "disagreed"), (untraceable, "not staged: StagingError")):
        clear_cuda_graphs(problem)
        monkeypatch.setattr(G, "stage_product", fake)
        captured = bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=True)
        assert note in captured[1].cuda_graph, captured[1].cuda_graph
        _same(captured, eager)


@pytest.mark.skipif(__import__("os").environ.get("TRITON_INTERPRET") != "1"
                    or __import__("importlib").util.find_spec("triton") is None,
                    reason="needs Triton's interpreter (TRITON_INTERPRET=1)")
def test_captured_call_with_the_fused_cg_replays(monkeypatch):
    """The captured path with CUDA's CG form (the Triton kernels, interpreted): captured and
    replayed (not the eager fallback of a failed capture), equal to the torch form."""
    from bilevel.linalg import fused as F

    monkeypatch.setattr(G, "_can_capture_on", lambda device: True)
    monkeypatch.setattr(G, "_side_stream", lambda device: contextlib.nullcontext(None))
    monkeypatch.setattr(G, "_record", lambda piece, stream: (piece(), _FakeGraph(piece))[1])

    @contextlib.contextmanager
    def no_sync():
        with _NoSync():
            yield
    monkeypatch.setattr(G, "_forbid_host_sync", no_sync)
    problem = logistic(torch.device("cpu"), log_reg=-3.0)
    x = problem.x0
    y = inner_opt(problem, x)
    eager = bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=False)
    monkeypatch.setattr(F, "supports", lambda b: True)
    calls = [bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=True) for _ in range(2)]
    assert calls[0][1].cuda_graph.startswith("captured"), calls[0][1].cuda_graph
    assert calls[1][1].cuda_graph.startswith("replayed"), calls[1][1].cuda_graph
    for call in calls:
        _same(call, eager, tol=1e-9)


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_captured_product_compiled_where_triton_runs(monkeypatch):
    """cuda_graph=True compiles the staged product (StagedProduct.compile) where Triton runs
    (here: claimed, capture emulated on the CPU, inductor's CPU backend), at capture, outside
    the host-sync check; the captured and replayed answers are the eager one. A compilation
    that fails keeps the uncompiled staged product and the note says why."""
    from bilevel.linalg.staged import StagedProduct

    monkeypatch.setattr(G, "_can_capture_on", lambda device: True)
    monkeypatch.setattr(G, "_side_stream", lambda device: contextlib.nullcontext(None))
    monkeypatch.setattr(G, "_record", lambda piece, stream: (piece(), _FakeGraph(piece))[1])
    # (no emulated sync check: _NoSync is a dispatch mode, under which torch.compile does not
    # compile; CUDA's check is the sync-debug mode, which it does not see)
    monkeypatch.setattr(G, "_forbid_host_sync", contextlib.nullcontext)
    monkeypatch.setattr(G, "fused", types.SimpleNamespace(available=lambda device: True))
    problem = logistic(torch.device("cpu"), log_reg=-3.0)
    x = problem.x0
    y = inner_opt(problem, x)
    eager = bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=False)
    calls = [bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=True) for _ in range(2)]
    assert calls[0][1].cuda_graph.startswith("captured"), calls[0][1].cuda_graph
    assert calls[1][1].cuda_graph.startswith("replayed"), calls[1][1].cuda_graph
    assert "compiled by torch.compile" in calls[0][1].cuda_graph, calls[0][1].cuda_graph
    for call in calls:
        _same(call, eager)

    def broken(self):
        raise RuntimeError("no compiler today")
    monkeypatch.setattr(StagedProduct, "compile", broken)
    clear_cuda_graphs(problem)
    captured = bilevel.hypergrad(problem, x, y, tol=1e-10, cuda_graph=True)
    note = captured[1].cuda_graph
    assert "staged Hessian product" in note and "not compiled: RuntimeError" in note, note
    _same(captured, eager)
