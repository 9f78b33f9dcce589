"""cg, minres, neumann, power_iteration and sparse operators against dense references."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bilevel.linalg import LinearOperator, SolveInfo, cg, gmres, minres, neumann, power_iteration

D = torch.float64


def spectrum_matrix(eigenvalues, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=D, generator=g))
    ev = torch.as_tensor(eigenvalues, dtype=D)
    return (Q @ torch.diag(ev) @ Q.T).to(device)


def rhs(n, seed=1, device="cpu"):
    return torch.randn(n, dtype=D, generator=torch.Generator().manual_seed(seed)).to(device)


def rel_residual(A, x, b):
    return float(torch.linalg.norm(b - A @ x) / torch.linalg.norm(b))


@pytest.mark.parametrize("solver", [cg, minres])
@pytest.mark.parametrize("as_kind", ["matrix", "operator", "callable"])
def test_spd_solves_match_linalg_solve(solver, as_kind, device):
    A = spectrum_matrix(np.geomspace(1, 1e3, 60), device=device)
    b = rhs(60, device=device)
    op = {"matrix": A, "operator": LinearOperator.from_dense(A), "callable": lambda v: A @ v}[as_kind]
    x, info = solver(op, b, tol=1e-11, maxiter=500)
    assert isinstance(info, SolveInfo) and info.converged, info.reason
    assert info.residual <= 1e-10 and rel_residual(A, x, b) <= 1e-10
    ref = torch.linalg.solve(A, b)
    assert float(torch.linalg.norm(x - ref) / torch.linalg.norm(ref)) < 1e-8


def test_minres_solves_indefinite_and_cg_reports_negative_curvature(device):
    A = spectrum_matrix(np.concatenate([-np.linspace(1, 20, 25), np.linspace(0.5, 40, 35)]),
                        device=device)
    b = rhs(60, device=device)
    x, info = minres(A, b, tol=1e-11, maxiter=600)
    assert info.converged and rel_residual(A, x, b) <= 1e-10
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-9)

    x_cg, info_cg = cg(A, b, tol=1e-11, maxiter=600)
    assert not info_cg.converged
    assert info_cg.reason.startswith("non-positive curvature")
    assert torch.isfinite(x_cg).all()  # the last safe iterate, never garbage


def test_neumann_converges_on_contraction(device):
    A = spectrum_matrix(np.linspace(0.3, 1.0, 40), device=device)
    b = rhs(40, device=device)
    x, info = neumann(A, b, alpha=1.0, tol=1e-11, maxiter=500)
    assert info.converged and info.residual <= 1e-10
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-10)
    # alpha from power iteration
    x2, info2 = neumann(A * 7.0, b, tol=1e-11, maxiter=2000)
    assert info2.converged
    torch.testing.assert_close(x2, torch.linalg.solve(A * 7.0, b), rtol=1e-9, atol=1e-10)


def test_neumann_truncation_error_is_the_next_term():
    A = spectrum_matrix(np.linspace(0.2, 1.0, 30))
    b = rhs(30)
    K = 7
    x, info = neumann(A, b, alpha=1.0, maxiter=K, tol=0.0)
    assert info.iterations == K and not info.converged
    # b - A x_K = (I - A)^{K+1} b exactly
    E = torch.eye(30, dtype=D) - A
    expected = torch.linalg.matrix_power(E, K + 1) @ b
    torch.testing.assert_close(b - A @ x, expected, rtol=1e-10, atol=1e-12)


def test_neumann_reports_divergence():
    A = spectrum_matrix(np.linspace(0.5, 3.0, 20))
    x, info = neumann(A, rhs(20), alpha=1.0, maxiter=30, tol=1e-8)  # needs alpha < 2/3
    assert not info.converged and "diverging" in info.reason


def test_warm_start_reduces_iterations():
    A = spectrum_matrix(np.geomspace(1, 1e2, 50))
    b = rhs(50)
    x, info = cg(A, b, tol=1e-10)
    x_near = x + 1e-6 * rhs(50, seed=5)
    _, info_warm = cg(A, b, x0=x_near, tol=1e-10)
    assert info_warm.converged and info_warm.iterations < info.iterations


def test_maxiter_reported_honestly():
    A = spectrum_matrix(np.geomspace(1, 1e4, 80))
    x, info = cg(A, rhs(80), tol=1e-12, maxiter=5)
    assert not info.converged and info.iterations == 5 and "maxiter" in info.reason
    assert info.residual == pytest.approx(rel_residual(A, x, rhs(80)), rel=1e-10)


def test_cg_exact_convergence_then_masked_iterations():
    """A = 2 I: one CG step makes r exactly 0; the masked steps after it (check_every=8)
    stay finite and change nothing, also at tol=0, and no breakdown is reported."""
    A = 2.0 * torch.eye(5, dtype=D)
    b = rhs(5)
    for tol in (1e-8, 0.0):
        x, info = cg(A, b, tol=tol, check_every=8)
        assert torch.equal(x, b / 2), tol
        assert info.converged and info.iterations == 1 and not info.negative_curvature


def test_zero_rhs_and_nonfinite_input():
    A = spectrum_matrix(np.linspace(1, 2, 10))
    x, info = cg(A, torch.zeros(10, dtype=D))
    assert info.converged and torch.count_nonzero(x) == 0
    b = rhs(10)
    b[3] = float("nan")
    for solver in (cg, minres, neumann, gmres):
        with pytest.raises(FloatingPointError, match=solver.__name__):
            solver(A, b)


def test_solvers_accept_dicts():
    A1, A2 = spectrum_matrix(np.linspace(1, 5, 6)), spectrum_matrix(np.linspace(2, 3, 4), seed=3)
    op = lambda v: {"a": A1 @ v["a"], "b": A2 @ v["b"]}
    b = {"a": rhs(6), "b": rhs(4, seed=2)}
    for solver in (cg, minres, neumann):
        x, info = solver(op, b, tol=1e-11, maxiter=400)
        assert info.converged, (solver.__name__, info)
        torch.testing.assert_close(x["a"], torch.linalg.solve(A1, b["a"]), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(x["b"], torch.linalg.solve(A2, b["b"]), rtol=1e-9, atol=1e-10)


def test_power_iteration_eig_and_svd(device):
    A = spectrum_matrix(np.concatenate([[-9.0], np.linspace(0.1, 6.0, 49)]), device=device)
    est = power_iteration(A, iters=500, tol=1e-12)
    assert abs(est - float(torch.linalg.eigvalsh(A).abs().max())) <= 1e-6 * 9
    M = torch.randn(70, 40, dtype=D, generator=torch.Generator().manual_seed(4)).to(device)
    est = power_iteration(LinearOperator.from_dense(M), mode="svd", iters=2000, tol=1e-14)
    ref = float(torch.linalg.svdvals(M)[0])
    assert abs(est - ref) <= 1e-6 * ref
    with pytest.raises(ValueError):
        power_iteration(lambda v: v)  # no example vector: needs x0


def test_sparse_operator_products_equal_dense(device):
    A = sp.random(300, 200, density=0.03, format="csr", random_state=0, dtype=np.float64)
    dense = torch.tensor(A.toarray(), device=device)
    v = torch.randn(200, dtype=D, device=device)
    u = torch.randn(300, dtype=D, device=device)
    for source in (A, torch.tensor(A.toarray()).to_sparse_csr(), torch.tensor(A.toarray()).to_sparse()):
        op = LinearOperator.from_sparse(source, device=device)
        assert op.csr.crow_indices().dtype == torch.int32
        assert op.csr_t.layout == torch.sparse_csr
        torch.testing.assert_close(op @ v, dense @ v, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(op.rmatvec(u), dense.T @ u, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(op.T @ u, dense.T @ u, rtol=1e-12, atol=1e-12)
    sigma = power_iteration(LinearOperator.from_sparse(A, device=device), mode="svd", iters=3000,
                            tol=1e-13)
    assert abs(sigma - float(torch.linalg.svdvals(dense)[0])) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("solver", [cg, minres, neumann])
def test_no_host_sync_inside_solver_loops(solver):
    """Between convergence checks the loops must not synchronize: the eager loop runs
    one whole chunk (check_every = maxiter) with sync-debug mode set to "error" from
    the second product on; only the check after the chunk may synchronize."""
    A = spectrum_matrix(np.geomspace(1, 1e3, 200), device="cuda")
    b = rhs(200, device="cuda")
    op = LinearOperator.from_dense(A)
    calls = {"n": 0}

    def counting(v):
        calls["n"] += 1
        if calls["n"] == 2:  # the loop has started: from here on no sync is allowed
            torch.cuda.set_sync_debug_mode("error")
        return op @ v

    kwargs = dict(alpha=1e-3) if solver is neumann else {}
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):
            solver(counting, b, tol=1e-30, maxiter=50, check_every=50, cuda_graph=False, **kwargs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert calls["n"] == 50, f"{solver.__name__} synchronized after {calls['n']} products"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("solver", [cg, minres, neumann])
def test_cuda_graph_matches_eager(solver):
    g = torch.Generator().manual_seed(7)
    X = torch.randn(500, 40, dtype=D, generator=g).cuda()
    y = torch.sign(torch.randn(500, dtype=D, generator=g)).cuda()
    w = torch.randn(40, dtype=D, generator=g).cuda()

    def loss(w):
        return torch.nn.functional.softplus(-(y * (X @ w))).mean() + 0.05 * (w * w).sum()

    b = torch.randn(40, dtype=D, generator=g).cuda()
    kwargs = dict(alpha=1.0) if solver is neumann else {}
    dense = torch.func.hessian(loss)(w)
    sparse = LinearOperator.from_sparse(dense.to_sparse_csr())
    for op in (LinearOperator.from_hvp(loss, w), LinearOperator.from_dense(dense), sparse):
        x_e, info_e = solver(op, b, tol=1e-10, maxiter=200, check_every=4, cuda_graph=False,
                             **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a failed capture must fail the test
            x_g, info_g = solver(op, b, tol=1e-10, maxiter=200, check_every=4, cuda_graph=True,
                                 **kwargs)
        assert info_g.converged and info_g.iterations == info_e.iterations
        torch.testing.assert_close(x_g, x_e, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(x_g, torch.linalg.solve(dense, b), rtol=1e-8, atol=1e-10)


def test_gmres_solves_nonsymmetric_systems(device):
    g = torch.Generator().manual_seed(11)
    n = 80
    A = (torch.eye(n, dtype=D) * 4 + torch.randn(n, n, dtype=D, generator=g) / n ** 0.5).to(device)
    b = rhs(n, device=device)
    for restart in (10, 80):
        x, info = gmres(A, b, tol=1e-11, restart=restart, maxiter=2000)
        assert info.converged, info.reason
        assert rel_residual(A, x, b) <= 1e-10
        torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-10)
    # symmetric indefinite and dict-valued vectors work too
    S = spectrum_matrix(np.concatenate([-np.linspace(1, 5, 10), np.linspace(1, 9, 10)]))
    op = lambda v: {"a": S @ v["a"]}
    x, info = gmres(op, {"a": rhs(20)}, tol=1e-11)
    assert info.converged
    torch.testing.assert_close(x["a"], torch.linalg.solve(S, rhs(20)), rtol=1e-9, atol=1e-10)


def test_gmres_restart_too_small_reports_maxiter():
    A = spectrum_matrix(np.geomspace(1, 1e6, 60))
    x, info = gmres(A, rhs(60), tol=1e-12, restart=2, maxiter=20)
    assert not info.converged and "maxiter" in info.reason and info.iterations == 20
