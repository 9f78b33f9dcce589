"""The implicit linear system: ridge and automatic damping against dense solves,
Gauss-Newton against an explicit J^T H J, the linear solver as a value (every engine
through ``solve=``), and the reports of a y far from y*(x)."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from _bilevel_refs import DT, Ridge, rel
from torch.func import grad, hessian, jacrev

import bilevel
from bilevel.hypergrad import InnerNotConvergedWarning
from bilevel.hypergrad.system import inner_operator
from bilevel.linalg import SolveInfo, as_solver, cg, gmres, minres, neumann

# -- ridge ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["cg", "minres", "neumann"])
def test_ridge_solves_the_damped_system(method):
    """ridge=lam: v = (H + lam I)^{-1} grad_y f exactly, and the hypergradient is the
    damped formula -diag(e^x y*) v."""
    r = Ridge()
    x, y = r.x0, r.y_star(r.x0)
    lam = 0.3
    tol, extra = (1e-12, {}) if method != "neumann" else (1e-12, {"maxiter": 2000})
    g_x, info = bilevel.hypergrad(r.problem(), x, y, method=method, tol=tol, ridge=lam,
                                  **extra)
    damped = r.hessian(x) + lam * torch.eye(r.n, dtype=DT)
    v = torch.linalg.solve(damped, r.grad_f_y(y))
    assert rel(info.v, v) <= 1e-9
    assert rel(g_x, -(x.exp() * y) * v) <= 1e-9
    assert info.ridge == lam and info.damping_steps == 0 and info.hessian == "exact"
    assert rel(g_x, r.hypergrad(x)) > 1e-3  # the ridge really changed the answer


def _indefinite(eigenvalues, seed=0):
    """g(x, y) = y^T S y / 2 - x^T y (S symmetric, given spectrum), f = ||y - c||^2 / 2."""
    gen = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DT))
    S = Q @ torch.diag(torch.tensor(eigenvalues, dtype=DT)) @ Q.T
    c = torch.randn(n, generator=gen, dtype=DT)
    problem = bilevel.BilevelProblem(outer=lambda x, y, b: 0.5 * ((y - c) ** 2).sum(),
                                     inner=lambda x, y, b: 0.5 * y @ (S @ y) - x @ y,
                                     x0=torch.ones(n, dtype=DT), y0=torch.zeros(n, dtype=DT))
    x = torch.linspace(-1, 2, n, dtype=DT)
    return problem, x, torch.linalg.solve(S, x), S, c


def test_negative_curvature_is_damped_automatically():
    """lambda_max = 4 and one eigenvalue -0.01: CG breaks down, the default fallback damps
    with lam = 4e-4 2^k until H + lam I is positive definite (lam > 0.01: k = 5, six
    solves); the answer is the dense damped solve at the reported lam."""
    problem, x, y, S, c = _indefinite([4.0, 2.0, 1.0, 3.0, 0.5, -0.01])
    with warnings.catch_warnings():
        warnings.simplefilter("error", InnerNotConvergedWarning)  # y = y* exactly
        g_x, info = bilevel.hypergrad(problem, x, y, tol=1e-12)
    raw = bilevel.hypergrad(problem, x, y, tol=1e-12, fallback=None)[1]
    assert raw.solve.negative_curvature and not raw.converged  # the case really breaks CG
    assert info.converged and "damped" in info.fallback
    assert info.damping_steps == 6
    assert info.ridge == pytest.approx(4e-4 * 2 ** 5, rel=1e-2)  # lambda_max estimated
    v = torch.linalg.solve(S + info.ridge * torch.eye(6, dtype=DT), y - c)
    assert rel(info.v, v) <= 1e-9 and rel(g_x, v) <= 1e-9  # mixed product: -(-I) v


def test_damping_that_cannot_help_says_so():
    problem, x, y, _, _ = _indefinite([4.0, 2.0, 1.0, -1.0])
    _, info = bilevel.hypergrad(problem, x, y, tol=1e-12)
    assert not info.converged and info.damping_steps == 10
    assert "still not positive definite" in info.solve.reason


def test_bad_ridge_and_fallback_are_errors():
    r = Ridge()
    with pytest.raises(ValueError, match="ridge"):
        bilevel.hypergrad(r.problem(), r.x0, r.y_star(r.x0), ridge=-1.0)
    with pytest.raises(ValueError, match="fallback"):
        bilevel.hypergrad(r.problem(), r.x0, r.y_star(r.x0), fallback="newton")
    with pytest.raises(ValueError, match="hessian"):
        bilevel.hypergrad(r.problem(), r.x0, r.y_star(r.x0), hessian="diagonal")


# -- Gauss-Newton -----------------------------------------------------------------------

def _mlp_problem(seed=0, n=12, d=3, hidden=4, classes=3):
    """A tanh MLP with dict parameters, g split as cross-entropy(logits) + penalty."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=DT)
    labels = torch.randint(0, classes, (n,), generator=gen)
    Xv = torch.randn(n, d, generator=gen, dtype=DT)
    labels_v = torch.randint(0, classes, (n,), generator=gen)
    y0 = {"W1": 0.5 * torch.randn(d, hidden, generator=gen, dtype=DT),
          "W2": 0.5 * torch.randn(hidden, classes, generator=gen, dtype=DT)}

    def logits(A, y):
        return torch.tanh(A @ y["W1"]) @ y["W2"]

    def output(x, y, batch):
        return {"logits": logits(X, y), "y": y}

    def loss(x, z, batch):
        weights = torch.sigmoid(x)
        ce = torch.nn.functional.cross_entropy(z["logits"], labels, reduction="none")
        penalty = sum((t * t).sum() for t in z["y"].values())
        return (weights * ce).mean() + 1e-2 * penalty

    def outer(x, y, batch):
        return torch.nn.functional.cross_entropy(logits(Xv, y), labels_v)

    problem = bilevel.BilevelProblem(outer=outer, inner=None, x0=torch.zeros(n, dtype=DT),
                                     y0=y0, inner_output=output, inner_loss=loss)
    return problem, X, labels


def _flat(tree):
    return torch.cat([tree["W1"].reshape(-1), tree["W2"].reshape(-1)])


def _unflat(v, like):
    n1 = like["W1"].numel()
    return {"W1": v[:n1].reshape(like["W1"].shape), "W2": v[n1:].reshape(like["W2"].shape)}


def test_gauss_newton_products_equal_explicit_jt_h_j():
    problem, _, _ = _mlp_problem()
    x, y = problem.x0 + 0.1, problem.y0
    z, loss = problem.inner_split_at(None)
    op = inner_operator(problem.inner_at(None), x, y, hessian="gauss-newton",
                        split=(z, loss))
    flat_y = _flat(y)

    def z_flat(v):  # the output as one vector (logits and the passed-through y)
        out = z(x, _unflat(v, y))
        return torch.cat([out["logits"].reshape(-1), _flat(out["y"])])

    J = jacrev(z_flat)(flat_y)
    n_logits = 12 * 3

    def loss_flat(u):
        return loss(x, {"logits": u[:n_logits].reshape(12, 3), "y": _unflat(u[n_logits:], y)})

    H_l = hessian(loss_flat)(z_flat(flat_y))
    G = J.T @ H_l @ J
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(flat_y.numel(), generator=gen, dtype=DT)
        assert rel(_flat(op(_unflat(v, y))), G @ v) <= 1e-12
    # the gradient recorded with the linearization is grad_y g
    g_y = grad(lambda v: problem.inner(x, _unflat(v, y), None))(flat_y)
    assert rel(_flat(op.gradient()), g_y) <= 1e-12
    assert torch.linalg.eigvalsh(G).min() >= -1e-12  # PSD by construction


def test_gauss_newton_hypergradient_equals_dense_formula():
    """hessian="gauss-newton": grad_x f - (d^2 g/dx dy)^T (G + lam I)^{-1} grad_y f, with
    the exact mixed product, against dense matrices."""
    problem, _, _ = _mlp_problem()
    x, y = problem.x0 + 0.1, problem.y0
    lam = 1e-3
    g_x, info = bilevel.hypergrad(problem, x, y, hessian="gauss-newton", ridge=lam, tol=1e-12,
                                  maxiter=500)
    assert info.converged and info.hessian == "gauss-newton"
    flat_y = _flat(y)
    g = lambda xx, v: problem.inner(xx, _unflat(v, y), None)
    out = problem.inner_output
    J = jacrev(lambda v: out(x, _unflat(v, y), None)["logits"].reshape(-1))(flat_y)
    n_logits = J.shape[0]
    H_ce = hessian(lambda u: problem.inner_loss(
        x, {"logits": u.reshape(12, 3), "y": y}, None))(out(x, y, None)["logits"].reshape(-1))
    G = J.T @ H_ce @ J + 2e-2 * torch.eye(flat_y.numel(), dtype=DT)  # penalty: exact
    assert n_logits == 36
    f_y = grad(lambda v: problem.outer(x, _unflat(v, y), None))(flat_y)
    v = torch.linalg.solve(G + lam * torch.eye(flat_y.numel(), dtype=DT), f_y)
    mixed = jacrev(lambda xx: grad(lambda w: g(xx, w))(flat_y))(x)  # (n_y, n_x)
    expected = -(mixed.T @ v)  # f does not depend on x
    assert rel(_flat(info.v), v) <= 1e-9
    assert rel(g_x, expected) <= 1e-9


def test_gauss_newton_needs_the_split():
    r = Ridge()
    with pytest.raises(ValueError, match="inner_output"):
        bilevel.hypergrad(r.problem(), r.x0, r.y_star(r.x0), hessian="gauss-newton")
    with pytest.raises(TypeError, match="together"):
        bilevel.BilevelProblem(outer=r.outer, inner=None, x0=r.x0, y0=r.x0,
                               inner_output=lambda x, y, b: y)


# -- the linear solver as a value --------------------------------------------------------

def _dense_solve(A, b, *, x0=None, tol=1e-6, maxiter=None, check_every=None,
                 cuda_graph="auto"):
    """A user's own solver: the dense solve of the operator's matrix (columns by products)."""
    n = b.numel()
    M = torch.stack([A(e) for e in torch.eye(n, dtype=b.dtype)], dim=1)
    x = torch.linalg.solve(M, b)
    residual = float(torch.linalg.norm(b - M @ x) / torch.linalg.norm(b))
    return x, SolveInfo(1, residual, residual <= tol, "dense solve")


ENGINES = {
    "cg": cg, "minres": minres, "gmres": gmres, "name": "minres",
    "partial-neumann": functools.partial(neumann, alpha=0.5, maxiter=3000),
    "configured-cg": as_solver("cg", maxiter=200),
    "user": _dense_solve,
}


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_through_solve(name):
    r = Ridge()
    x, y = r.x0, r.y_star(r.x0)
    g_x, info = bilevel.hypergrad(r.problem(), x, y, solve=ENGINES[name], tol=1e-11)
    assert info.converged, info.solve.reason
    assert rel(g_x, r.hypergrad(x)) <= 1e-8
    expected = {"name": "minres", "partial-neumann": "neumann", "configured-cg": "cg",
                "user": "_dense_solve"}.get(name, name)
    assert info.method == expected
    # and through bilevel.solve("aid", solve=...)
    res = bilevel.solve(r.problem(), method="aid", solve=ENGINES[name], outer_steps=2,
                        inner_steps=5, progress=False, seed=0, solve_tol=1e-8)
    assert res.n_steps == 2 and all(h["solve_converged"] for h in res.history)


def test_solver_values_are_checked():
    r = Ridge()
    x, y = r.x0, r.y_star(r.x0)
    with pytest.raises(ValueError, match="unknown linear solver 'bicgstab'"):
        bilevel.hypergrad(r.problem(), x, y, solve="bicgstab")
    with pytest.raises(TypeError, match="both name"):
        bilevel.hypergrad(r.problem(), x, y, method="cg", solve=minres)
    with pytest.raises(TypeError, match="keyword"):
        as_solver(functools.partial(cg, lambda v: v))
    with pytest.raises(TypeError, match="names the linear solver"):
        bilevel.solve(r.problem(), method="aid-cg", solve=minres, progress=False)
    # a configured value's options win over the engine's
    _, info = bilevel.hypergrad(r.problem(), x, y, solve=as_solver("cg", maxiter=1),
                                tol=1e-12)
    assert info.iterations == 1 and not info.converged


# -- y far from y*(x) -------------------------------------------------------------------

def test_far_from_inner_solution_is_reported():
    r = Ridge()
    x = r.x0
    y = torch.zeros(r.n, dtype=DT)  # far from y*(x)
    with pytest.warns(InnerNotConvergedWarning, match="not near the inner solution"):
        _, info = bilevel.hypergrad(r.problem(), x, y, tol=1e-8)
    expected = torch.linalg.norm(grad(lambda v: r.inner(x, v))(y))
    assert info.inner_grad_norm == pytest.approx(float(expected), rel=1e-12)
    assert not info.inner_converged and info.converged  # the solve itself went fine
    with warnings.catch_warnings():
        warnings.simplefilter("error", InnerNotConvergedWarning)
        _, info = bilevel.hypergrad(r.problem(), x, r.y_star(x), tol=1e-8)
    assert info.inner_converged and info.inner_grad_norm < 1e-12


def test_itd_adam_near_inner_solution_is_reported():
    """Adam's steps have length ~lr whatever the gradient: started at y*, they move away,
    and the unrolled hypergradient is meaningless; said so.  SGD from y* is not flagged."""
    r = Ridge()
    x, y = r.x0, r.y_star(r.x0)
    with pytest.warns(InnerNotConvergedWarning, match="adam"):
        _, info = bilevel.hypergrad(r.problem(), x, y, method="itd", unroll=20,
                                    inner_optimizer="adam")
    assert not info.inner_converged and info.inner_grad_norm > 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", InnerNotConvergedWarning)
        g_x, info = bilevel.hypergrad(r.problem(), x, y, method="itd", unroll=200)
    assert info.inner_converged and rel(g_x, r.hypergrad(x)) <= 1e-3
