"""The fused CG iteration (bilevel.linalg.fused) against the torch one, its reference.

The CG semantics (breakdown, exact convergence, nan, frozen once inactive) are checked on
the torch form everywhere, and on the Triton form where it runs: on CUDA, and on the CPU
under Triton's interpreter (``TRITON_INTERPRET=1``; CI has no Triton, so those skip there).
The interpreted runs shrink the size thresholds, so that small vectors take both paths
(one program, many programs)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from _bilevel_refs import VIEWS as SHARED_VIEWS

from bilevel.linalg import as_operator, cg
from bilevel.linalg import fused as F
from bilevel.linalg import tree as T
from bilevel.linalg._loop import iterate
from bilevel.linalg.solvers import cg_iteration

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1" and F.triton is not None
CUDA = torch.cuda.is_available() and F.available("cuda")
DEVICES = (["cpu"] if INTERPRETED else []) + (["cuda"] if CUDA else [])
needs_triton = pytest.mark.skipif(not DEVICES, reason="needs CUDA and Triton, or Triton's "
                                  "interpreter (TRITON_INTERPRET=1)")
# the interpreted runs' thresholds (fast runs that still take both paths); sizes per path
SMALL = {"ONE_PROGRAM_MAX": 64, "MIN_TILE": 16, "PROGRAM_TILE": 16, "MAX_PROGRAMS": 4}
SIZES = {"cpu": (37, 300), "cuda": (37, 5000, 70000)}

def _forms() -> list:
    """(device, fused) pairs: the torch form everywhere, the fused one on CUDA and, on the
    CPU, under Triton's interpreter only."""
    forms = []
    for device in ["cpu", *(["cuda"] if CUDA else [])]:
        for fused in (False, True):
            needs_interpreter = fused and device == "cpu" and not INTERPRETED
            marks = [pytest.mark.skip(reason="needs Triton's interpreter (TRITON_INTERPRET=1)")
                     ] if needs_interpreter else []
            forms.append(pytest.param(device, fused, marks=marks,
                                      id=f"{device}-{'fused' if fused else 'torch'}"))
    return forms


FORMS = _forms()

# aten ops that launch no kernel (as in test_hypergrad_graph's counts; split: the leaves' views)
VIEWS = SHARED_VIEWS | {"split", "split_with_sizes"}


@pytest.fixture
def small_paths(monkeypatch, request):
    """On the interpreter, small thresholds (fast runs that still take every path)."""
    if request.node.callspec.params.get("device") == "cpu":
        for name, value in SMALL.items():
            monkeypatch.setattr(F, name, value)


def spd(n: int, dtype: torch.dtype, device: str, seed: int = 0):
    """A random SPD operator diag(d) + U U^T (d in [1, 50], U of rank 2), as a callable:
    cheap at any n (a dense matrix of CUDA's sizes would not be)."""
    gen = torch.Generator().manual_seed(seed)
    d = (1.0 + 49.0 * torch.rand(n, generator=gen, dtype=torch.float64)).to(dtype).to(device)
    U = (torch.randn(n, 2, generator=gen, dtype=torch.float64) / n ** 0.5).to(dtype).to(device)
    return lambda v: d * v + U @ (U.T @ v)


def _iteration(A, b, fused, tol=1e-8):
    op = as_operator(A)
    return op, cg_iteration(op, b, None, tol, T.norm(b), fused=fused)


def _steps(A, b, fused, steps, tol=1e-8):
    op, it = _iteration(A, b, fused, tol)
    s = it.state
    history = []
    for _ in range(steps):
        s = it.body(op, s)
        history.append((T.flatten(it.solution(s))[0].clone(), s["rs"].clone(),
                        bool(s["active"]), int(s["done"])))
    return history, it, s


def _agree(fused, reference, rtol):
    for (x, rs, active, done), (x_ref, rs_ref, active_ref, done_ref) in zip(fused, reference):
        assert (active, done) == (active_ref, done_ref)
        scale = x_ref.abs().max()
        assert (x - x_ref).abs().max() <= rtol * scale, ((x - x_ref).abs().max(), scale)
        assert abs(float(rs) - float(rs_ref)) <= rtol * 10 * float(rs_ref) + 1e-30


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("which", [0, 1, 2])  # one program, many programs (2: 100 programs)
@pytest.mark.parametrize("device", DEVICES)
def test_fused_iterations_equal_torch(device, which, dtype, small_paths):
    if which >= len(SIZES[device]):
        pytest.skip("a CUDA size")
    n = SIZES[device][which]
    A = spd(n, dtype, device)
    b = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(
        dtype=dtype, device=device)
    steps = 12
    fused, _, s = _steps(A, b, True, steps)
    reference = _steps(A, b, False, steps)[0]
    assert "limits" in s and s["x"].shape == (n,)  # the fused state: flat buffers
    assert ("pap_parts" in s) == (which > 0)
    _agree(fused, reference, 1e-4 if dtype == torch.float32 else 1e-10)


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
def test_fused_solve_of_a_dict_reaches_tolerance(device, small_paths):
    """Several leaves (gathered A p), through the public solver's loop."""
    n = 90
    A = spd(n, torch.float64, device)
    flat = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
                       ).to(device)
    b = {"w": flat[:60].view(6, 10), "b": flat[60:]}

    def matvec(v):
        out = A(torch.cat([v["w"].reshape(-1), v["b"]]))
        return {"w": out[:60].view(6, 10), "b": out[60:]}

    op = as_operator(matvec)
    it = cg_iteration(op, b, None, 1e-10, T.norm(b), fused=True)
    state = iterate("cg", it.body, op, it.state, maxiter=500, check_every=5, cuda_graph=False,
                    monitor=it.monitor)
    x = it.solution(state)
    assert set(x) == {"w", "b"} and x["w"].shape == (6, 10)
    exact = torch.linalg.solve(A(torch.eye(n, dtype=torch.float64, device=device)), flat)
    assert torch.allclose(torch.cat([x["w"].reshape(-1), x["b"]]), exact, rtol=1e-8, atol=1e-10)
    assert not bool(it.breakdown(state))


@pytest.mark.parametrize(("device", "fused"), FORMS)
def test_breakdown_on_non_positive_curvature(device, fused, small_paths):
    A = torch.diag(torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64, device=device))
    b = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64, device=device)
    history, it, s = _steps(A, b, fused, 5)
    # p0 = b: p^T A p = 0 -> stops at once, x stays 0, frozen afterwards
    assert [h[2] for h in history] == [False] * 5 and [h[3] for h in history] == [0] * 5
    assert bool(it.breakdown(s)) and float(history[-1][0].abs().max()) == 0.0


@pytest.mark.parametrize(("device", "fused"), FORMS)
def test_exact_convergence_is_no_breakdown_and_freezes(device, fused, small_paths):
    """b an eigenvector: one step gives r = 0 exactly (rs stored as tiny, beta = 0), tol = 0
    is then met (rs <= threshold = tiny), no breakdown, and later steps change nothing."""
    A = torch.diag(torch.tensor([2.0, 4.0, 8.0], dtype=torch.float64, device=device))
    b = torch.tensor([0.0, 4.0, 0.0], dtype=torch.float64, device=device)
    history, it, s = _steps(A, b, fused, 4, tol=0.0)
    assert [(h[2], h[3]) for h in history] == [(False, 1)] * 4
    assert float(history[0][1]) == torch.finfo(torch.float64).tiny
    assert torch.equal(history[-1][0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64,
                                                    device=device))
    assert not bool(it.breakdown(s))


@pytest.mark.parametrize(("device", "fused"), FORMS)
def test_nan_reaches_rs_not_a_breakdown(device, fused, small_paths):
    b = torch.ones(5, dtype=torch.float32, device=device)
    op = as_operator(lambda v: v * float("nan"))
    it = cg_iteration(op, b, None, 1e-6, T.norm(b), fused=fused)
    s = it.body(op, it.state)
    assert torch.isnan(s["rs"]) and int(s["done"]) == 1 and not bool(s["active"])
    assert not bool(it.breakdown(s))  # nan > threshold is False: reported as the nan
    with pytest.raises(FloatingPointError, match="non-finite"):
        cg(op, b, tol=1e-6, maxiter=10)  # the public solver names it


def test_the_device_picks_the_form():
    """CPU vectors take the torch form (CI); CUDA ones with Triton the fused form."""
    b = torch.ones(4)
    assert not F.supports(b) and "limits" not in _iteration(torch.eye(4), b, None)[1].state
    assert not F.supports(torch.ones(4, dtype=torch.complex64))
    if CUDA:
        assert F.supports(b.cuda()) and "limits" in _iteration(torch.eye(4).cuda(), b.cuda(),
                                                                None)[1].state
        assert not F.supports(torch.ones(4, dtype=torch.float16, device="cuda"))
        assert not F.supports({"a": b.cuda(), "b": b.double().cuda()})


@pytest.mark.skipif(not CUDA, reason="needs CUDA and Triton")
@pytest.mark.parametrize("n", [37, 70000])
def test_cuda_fused_iterations_replay_in_a_graph(n):
    """Recorded into a CUDA graph, the fused iteration replays to the eager answer."""
    op = as_operator(spd(n, torch.float32, "cuda"))
    b = torch.randn(n, device="cuda")
    eager = cg_iteration(op, b, None, 1e-7, T.norm(b))
    s = eager.state
    for _ in range(6):
        s = eager.body(op, s)
    captured = cg_iteration(op, b, None, 1e-7, T.norm(b))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        captured.body(op, {k: v.clone() for k, v in captured.state.items()})  # warm-up
        with torch.cuda.graph(graph, stream=stream):
            captured.body(op, captured.state)
    torch.cuda.current_stream().wait_stream(stream)
    for _ in range(6):
        graph.replay()
    torch.cuda.synchronize()
    assert int(captured.state["done"]) == int(s["done"]) == 6
    assert torch.allclose(captured.state["x"], s["x"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_cg_returns_the_leaves_shapes_and_copies_nothing_from_the_host(device, small_paths,
                                                                      monkeypatch):
    """Through the public cg with the fused form: a single 2-D leaf comes back 2-D (it came
    back flattened), and the setup makes no tensor from host data (a host-to-device copy
    synchronizes: an error inside a hypergradient's capture, which then ran eagerly)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class HostData(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in ("lift_fresh", "lift_fresh_copy",
                                                "_local_scalar_dense"):
                raise AssertionError(f"{func}: a tensor from host data")
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(F, "supports", lambda b: True)
    M = spd(70, torch.float64, device)
    b = torch.randn(7, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
                    ).to(device)
    op = as_operator(lambda v: M(v.reshape(-1)).view(7, 10))
    with HostData():
        it = cg_iteration(op, b, None, 1e-10, T.norm(b))
        it.body(op, it.state)
    assert "limits" in it.state
    x, info = cg(op, b, tol=1e-10, maxiter=200)
    assert x.shape == (7, 10) and info.converged
    exact = torch.linalg.solve(M(torch.eye(70, dtype=torch.float64, device=device)),
                               b.reshape(-1))
    assert torch.allclose(x.reshape(-1), exact, rtol=1e-8, atol=1e-10)


@pytest.mark.skipif(not INTERPRETED, reason="needs Triton's interpreter (TRITON_INTERPRET=1)")
def test_a_fused_step_is_the_product_and_one_kernel(monkeypatch):
    """Kernels of one CG step on the MNIST cleaning problem of the hypergradient benchmark
    (softmax regression; random data): the torch form is the product + 14, the fused one
    the product + 1 Triton launch (the interpreter's own copies not counted)."""
    from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

    from bilevel.hypergrad.system import inner_operator
    from bilevel.tasks import data_cleaning
    from bilevel.tasks import reference as R

    class Count(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ not in VIEWS:
                Count.count += 1
            return func(*args, **(kwargs or {}))

    class Launch:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                Count.count += 1
                with _disable_current_modes():
                    return self.kernel[grid](*args, **kwargs)
            return launch

    for name in ("_cg_one_program", "_cg_curvature", "_cg_step", "_cg_direction"):
        monkeypatch.setattr(F, name, Launch(getattr(F, name)))
    gen = torch.Generator().manual_seed(0)
    X, Xv = torch.rand(200, 30, generator=gen), torch.rand(50, 30, generator=gen)
    labels, labels_v = (torch.randint(0, 10, (n,), generator=gen) for n in (200, 50))
    problem = data_cleaning(X, labels, Xv, labels_v, n_classes=10)
    x = torch.randn(200, generator=gen)
    y = R.inner_solution(problem, x, problem.y0, method="lbfgs", tol=1e-6)
    op = inner_operator(problem.inner_at(None), x, y)
    b = torch.randn(y.shape, generator=gen)

    def kernels(fn):
        Count.count = 0
        with Count():
            fn()
        return Count.count

    op(b)  # linearized
    product = kernels(lambda: op(b))
    steps = {}
    for fused in (False, True):
        it = cg_iteration(op, b, None, 1e-8, T.norm(b), fused=fused)
        state = it.body(op, it.state)
        steps[fused] = kernels(lambda: it.body(op, state))  # noqa: B023
    assert product <= 13 and steps == {False: product + 14, True: product + 1}, (product, steps)


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
def test_kernels_that_do_not_compile_leave_cg_in_torch(device, monkeypatch):
    def broken(state, ap):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(F, "update_one", broken)
    monkeypatch.setattr(F, "_COMPILED", {})
    monkeypatch.setattr(F, "available", lambda device: True)
    b = torch.ones(10, device=device)
    with pytest.warns(RuntimeWarning, match="did not compile.*torch form"):
        assert not F.supports(b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not F.supports(b)  # remembered: warned once
    x, info = cg(torch.eye(10, device=device) * 2, b, tol=1e-8)
    assert info.converged and torch.allclose(x, b / 2)
