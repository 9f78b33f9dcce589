"""Hypergradient engines against closed forms, dense solves and finite differences."""

from __future__ import annotations

import pytest
import torch
from _bilevel_refs import DT, Ridge, rel
from torch.func import grad, hessian, jacrev

import bilevel
from bilevel.hypergrad import HypergradInfo


@pytest.mark.parametrize("method", ["cg", "minres"])
def test_ridge_krylov_matches_closed_form(method):
    r = Ridge()
    x = r.x0
    g_x, info = bilevel.hypergrad(r.problem(), x, r.y_star(x), method=method, tol=1e-12)
    assert isinstance(info, HypergradInfo)
    assert info.converged and info.fallback is None and info.residual <= 1e-12
    assert info.method == method and info.v is not None and info.solve is not None
    assert rel(g_x, r.hypergrad(x)) <= 1e-8
    # v is the solution of H v = grad_y f
    v_exact = torch.linalg.solve(r.hessian(x), r.grad_f_y(r.y_star(x)))
    assert rel(info.v, v_exact) <= 1e-8
    assert info.hvp_count == info.iterations + 2  # + final residual + mixed product


def test_cg_warm_start_needs_fewer_iterations():
    r = Ridge(n=30, m=60, scale=3.0)
    x, y = r.x0, r.y_star(r.x0)
    _, cold = bilevel.hypergrad(r.problem(), x, y, tol=1e-10)
    x2 = x + 1e-3
    g2, warm = bilevel.hypergrad(r.problem(), x2, r.y_star(x2), tol=1e-10, v0=cold.v)
    _, cold2 = bilevel.hypergrad(r.problem(), x2, r.y_star(x2), tol=1e-10)
    assert warm.iterations < cold2.iterations
    assert rel(g2, r.hypergrad(x2)) <= 1e-8


def test_ridge_neumann_within_truncation_bound():
    """x_K = alpha sum_{k<=K} (I - alpha H)^k b has error H^{-1} (I - alpha H)^{K+1} b, so
    ||hypergrad error|| <= ||diag(e^x y*)||_2 rho^{K+1} ||v*||, rho = max_i |1 - alpha l_i|."""
    r = Ridge()
    x, y = r.x0, r.y_star(r.x0)
    exact = r.hypergrad(x)
    v_star = torch.linalg.solve(r.hessian(x), r.grad_f_y(y))
    eig = torch.linalg.eigvalsh(r.hessian(x))
    for K in (5, 20, 60):
        g_x, info = bilevel.hypergrad(r.problem(), x, y, method="neumann", maxiter=K, tol=0.0)
        alpha = info.step_size
        assert 0 < alpha < 2 / float(eig.max())  # power iteration gave a safe step
        rho = float((1 - alpha * eig).abs().max())
        bound = float((x.exp() * y).abs().max()) * rho ** (K + 1) * float(v_star.norm())
        err = float(torch.linalg.norm(g_x - exact))
        assert err <= bound * (1 + 1e-9) + 1e-14
        assert info.iterations == K
    assert err <= 1e-6 * float(exact.norm())  # K = 60 is accurate on this conditioning


def test_ridge_itd_approaches_exact_as_unroll_grows():
    r = Ridge()
    x = r.x0
    exact = r.hypergrad(x)
    errors = []
    for K in (2, 5, 10, 40):
        g_x, info = bilevel.hypergrad(r.problem(), x, torch.zeros(r.n, dtype=DT), method="itd",
                                      unroll=K)
        assert info.v is None and info.iterations == K
        errors.append(rel(g_x, exact))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 1e-2 and errors[-1] <= 1e-8, errors


def test_itd_truncated_close_to_full_from_converged_start():
    r = Ridge()
    x = r.x0
    y = r.y_star(x)  # at the fixed point the truncated bias is (I - lr H)^T-small
    full, _ = bilevel.hypergrad(r.problem(), x, y, method="itd", unroll=200, inner_lr=0.2)
    trunc, info = bilevel.hypergrad(r.problem(), x, y, method="itd", unroll=200, truncate=150,
                                    inner_lr=0.2)
    assert info.hvp_count == 150
    assert rel(trunc, r.hypergrad(x)) <= 1e-6
    assert rel(full, r.hypergrad(x)) <= 1e-6
    short, _ = bilevel.hypergrad(r.problem(), x, y, method="itd", unroll=200, truncate=2,
                                 inner_lr=0.2)
    assert rel(short, r.hypergrad(x)) > 1e-3  # truncation bias is real


@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_itd_optimizers_torchopt_and_builtin_agree(opt):
    pytest.importorskip("torchopt")
    r = Ridge()
    kw = dict(method="itd", unroll=30, inner_optimizer=opt, inner_lr=0.05)
    a, _ = bilevel.hypergrad(r.problem(), r.x0, torch.zeros(r.n, dtype=DT), use_torchopt=True,
                             **kw)
    b, _ = bilevel.hypergrad(r.problem(), r.x0, torch.zeros(r.n, dtype=DT), use_torchopt=False,
                             **kw)
    # TorchOpt computes Adam's bias correction 1 - beta^count as a float32 scalar
    # (pow(float, int64 tensor)); the built-in one in float64: they agree to float32 rounding.
    assert rel(b, a) <= (1e-12 if opt == "momentum" else 1e-4)


def test_itd_momentum_converges_to_exact():
    r = Ridge()
    g_x, _ = bilevel.hypergrad(r.problem(), r.x0, torch.zeros(r.n, dtype=DT), method="itd",
                               unroll=400, inner_optimizer="momentum")
    assert rel(g_x, r.hypergrad(r.x0)) <= 1e-6


def test_dict_valued_x_and_y_match_tensor_version():
    r = Ridge()

    def split_x(x):
        return torch.cat([x["a"], x["b"]])

    def split_y(y):
        return torch.cat([y["w"], y["bias"]])

    def inner(x, y, batch):
        return r.inner(split_x(x), split_y(y))

    def outer(x, y, batch):
        return r.outer(split_x(x), split_y(y))

    x = {"a": r.x0[:2], "b": r.x0[2:]}
    y_star = r.y_star(r.x0)
    y = {"w": y_star[:3], "bias": y_star[3:]}
    prob = bilevel.BilevelProblem(outer=outer, inner=inner, x0=x,
                                  y0={"w": torch.zeros(3, dtype=DT),
                                      "bias": torch.zeros(2, dtype=DT)})
    exact = r.hypergrad(r.x0)
    for method in ("cg", "minres"):
        g_x, info = bilevel.hypergrad(prob, x, y, method=method, tol=1e-12)
        assert set(g_x) == {"a", "b"} and set(info.v) == {"w", "bias"}
        assert rel(split_x(g_x), exact) <= 1e-8
    g_x, _ = bilevel.hypergrad(prob, x, {k: torch.zeros_like(v) for k, v in y.items()},
                               method="itd", unroll=400)
    assert rel(split_x(g_x), exact) <= 1e-7


def _logistic():
    gen = torch.Generator().manual_seed(1)
    n, m, mv = 6, 80, 50
    X = torch.randn(m, n, generator=gen, dtype=DT)
    w = torch.randn(n, generator=gen, dtype=DT)
    t = torch.sign(X @ w + 0.5 * torch.randn(m, generator=gen, dtype=DT))
    Xv = torch.randn(mv, n, generator=gen, dtype=DT)
    tv = torch.sign(Xv @ w + 0.5 * torch.randn(mv, generator=gen, dtype=DT))

    def inner(x, y, batch=None):
        return torch.nn.functional.softplus(-t * (X @ y)).mean() + (x.exp() * y * y).sum() / 2

    def outer(x, y, batch=None):
        return torch.nn.functional.softplus(-tv * (Xv @ y)).mean()

    x0 = torch.full((n,), -2.0, dtype=DT) + 0.1 * torch.randn(n, generator=gen, dtype=DT)
    return inner, outer, x0


def _newton(inner, x, n):
    y = torch.zeros(n, dtype=DT)
    for _ in range(50):
        gy = grad(inner, argnums=1)(x, y)
        y = y - torch.linalg.solve(hessian(inner, argnums=1)(x, y), gy)
    assert float(grad(inner, argnums=1)(x, y).norm()) < 1e-13
    return y


def test_logistic_matches_newton_and_dense_solve():
    inner, outer, x0 = _logistic()
    y = _newton(inner, x0, x0.numel())
    H = hessian(inner, argnums=1)(x0, y)
    v = torch.linalg.solve(H, grad(outer, argnums=1)(x0, y))
    mixed = jacrev(grad(inner, argnums=1), argnums=0)(x0, y)  # d(grad_y g)/dx, shape (ny, nx)
    exact = grad(outer, argnums=0)(x0, y) - mixed.T @ v
    prob = bilevel.BilevelProblem(outer=outer, inner=inner, x0=x0, y0=torch.zeros_like(x0))
    for method in ("cg", "minres"):
        g_x, info = bilevel.hypergrad(prob, x0, y, method=method, tol=1e-12)
        assert info.converged
        assert rel(g_x, exact) <= 1e-8
    g_x, info = bilevel.hypergrad(prob, x0, y, method="neumann", maxiter=3000, tol=1e-12)
    assert rel(g_x, exact) <= 1e-8, info
    g_x, _ = bilevel.hypergrad(prob, x0, y, method="itd", unroll=3000)
    assert rel(g_x, exact) <= 1e-7


def test_gradcheck_against_finite_differences_of_h():
    """Wrap h(x) = f(x, y*(x)) in an autograd Function whose backward is the CG
    hypergradient; gradcheck compares it with finite differences of the forward."""
    r = Ridge(n=3, m=12, mv=10, seed=3)
    prob = r.problem()

    class H(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return r.h(x)

        @staticmethod
        def backward(ctx, out_grad):
            (x,) = ctx.saved_tensors
            g_x, info = bilevel.hypergrad(prob, x, r.y_star(x), method="cg", tol=1e-13)
            assert info.converged
            return out_grad * g_x

    x = r.x0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(H.apply, (x,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_nonconvex_inner_cg_falls_back_to_minres_on_request():
    """g = y^T A y / 2 - x^T y with A symmetric indefinite: a saddle, not a minimum.
    CG meets non-positive curvature; the fallback MINRES solves A v = grad_y f exactly."""
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=DT))
    A = Q @ torch.diag(torch.tensor([3.0, 2.0, 1.0, -0.5, -1.0, 0.7], dtype=DT)) @ Q.T
    c = torch.randn(6, generator=gen, dtype=DT)

    def inner(x, y, batch):
        return 0.5 * y @ (A @ y) - x @ y

    def outer(x, y, batch):
        return 0.5 * ((y - c) ** 2).sum()

    x0 = torch.randn(6, generator=gen, dtype=DT)
    prob = bilevel.BilevelProblem(outer=outer, inner=inner, x0=x0, y0=torch.zeros(6, dtype=DT))
    y = torch.linalg.solve(A, x0)  # stationary point
    g_x, info = bilevel.hypergrad(prob, x0, y, method="cg", tol=1e-12, fallback="minres")
    assert info.fallback is not None and "non-positive curvature" in info.fallback
    assert "minres" in info.fallback and info.converged
    # y*(x) = A^{-1} x  =>  grad h = A^{-1} (y - c)
    assert rel(g_x, torch.linalg.solve(A, y - c)) <= 1e-8
    _, raw = bilevel.hypergrad(prob, x0, y, method="cg", tol=1e-12, fallback=False)
    assert not raw.converged and raw.solve.reason.startswith("non-positive curvature")


def test_non_converged_solve_is_reported():
    r = Ridge(n=30, m=60, scale=3.0)
    _, info = bilevel.hypergrad(r.problem(), r.x0, r.y_star(r.x0), method="cg", maxiter=2,
                                tol=1e-12)
    assert not info.converged and info.residual > 1e-12
    assert "maxiter" in info.solve.reason


def test_bad_options_and_methods_raise():
    r = Ridge()
    with pytest.raises(ValueError, match="method"):
        bilevel.hypergrad(r.problem(), r.x0, r.x0, method="lu")
    with pytest.raises(TypeError, match="unknown option"):
        bilevel.hypergrad(r.problem(), r.x0, r.x0, method="cg", unroll=3)
    with pytest.raises(ValueError, match="truncate"):
        bilevel.hypergrad(r.problem(), r.x0, r.x0, method="itd", unroll=3, truncate=5)


def test_minibatch_selection():
    r = Ridge()
    batches = [(r.X[:20], r.t[:20]), (r.X[20:], r.t[20:])]
    prob = bilevel.BilevelProblem(outer=r.outer, inner=r.inner, x0=r.x0,
                                  y0=torch.zeros(r.n, dtype=DT), inner_data=batches)
    sub = Ridge()
    sub.X, sub.t = r.X[20:], r.t[20:]
    g_x, _ = bilevel.hypergrad(prob, r.x0, sub.y_star(r.x0), inner_batch=batches[1], tol=1e-12)
    assert rel(g_x, sub.hypergrad(r.x0)) <= 1e-8


def test_engines_on_device(device):
    """Every engine on every available device (CUDA runs only where present) matches the
    float64 closed form; on CUDA the solvers replay CUDA graphs."""
    r = Ridge()
    to = {"device": device}
    train, val = (r.X.to(**to), r.t.to(**to)), (r.Xv.to(**to), r.tv.to(**to))
    prob = bilevel.BilevelProblem(outer=lambda x, y, b: r.outer(x, y, val),
                                  inner=lambda x, y, b: r.inner(x, y, train),
                                  x0=r.x0.to(**to), y0=torch.zeros(r.n, dtype=DT, device=device))
    exact = r.hypergrad(r.x0)
    y = r.y_star(r.x0).to(**to)
    for method, opts in (("cg", {"tol": 1e-12}), ("minres", {"tol": 1e-12}),
                         ("neumann", {"tol": 1e-12, "maxiter": 400}), ("itd", {"unroll": 400})):
        g_x, _ = bilevel.hypergrad(prob, prob.x0, y, method=method, **opts)
        assert g_x.device.type == torch.device(device).type
        assert rel(g_x.cpu(), exact) <= 1e-7, method


def test_point_must_match_the_problem():
    r = Ridge()
    with pytest.raises(ValueError, match=r"y has a tensor of shape \(4,\)"):
        bilevel.hypergrad(r.problem(), r.x0, torch.zeros(4, dtype=DT))
    with pytest.raises(ValueError, match="structure"):
        bilevel.hypergrad(r.problem(), {"a": r.x0}, torch.zeros(r.n, dtype=DT))
