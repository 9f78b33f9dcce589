"""hvp, hvp_closure, mixed_vjp and inner_linearization against explicit second derivatives
(float64)."""

import pytest
import torch
from torch.autograd.functional import hessian, jacobian

from bilevel.linalg import LinearOperator, hvp, hvp_closure, inner_linearization, mixed_vjp

torch.manual_seed(0)
D = torch.float64


def quartic(x, A):
    return (A @ x).pow(4).sum() / 4 + torch.sin(x).sum()


def logistic(w, X, y):
    return torch.nn.functional.softplus(-(y * (X @ w))).mean() + 0.1 * (w * w).sum()


def softmax_ce(w, X, labels):
    return torch.nn.functional.cross_entropy(X @ w.reshape(X.shape[1], -1), labels)


FUNCS = [
    (quartic, 6, (torch.randn(4, 6, dtype=D),)),
    (logistic, 5, (torch.randn(20, 5, dtype=D), torch.sign(torch.randn(20, dtype=D)))),
    (softmax_ce, 12, (torch.randn(15, 4, dtype=D), torch.randint(0, 3, (15,)))),
]


@pytest.mark.parametrize("f,n,args", FUNCS, ids=["quartic", "logistic", "softmax"])
def test_hvp_matches_hessian(f, n, args):
    x, v = torch.randn(n, dtype=D), torch.randn(n, dtype=D)
    H = hessian(lambda z: f(z, *args), x)
    expected = H @ v
    torch.testing.assert_close(hvp(f, x, v, *args), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(hvp_closure(f, x, *args)(v), expected, rtol=1e-10, atol=1e-12)
    op = LinearOperator.from_hvp(f, x, *args)
    torch.testing.assert_close(op @ v, expected, rtol=1e-10, atol=1e-12)
    assert op.shape == (n, n)


def test_hvp_on_dict_of_tensors():
    X = torch.randn(10, 3, dtype=D)
    t = torch.randn(10, 2, dtype=D)

    def f(params):
        pred = torch.tanh(X @ params["W"] + params["b"])
        return ((pred - t) ** 2).sum()

    params = {"W": torch.randn(3, 2, dtype=D), "b": torch.randn(2, dtype=D)}
    v = {"W": torch.randn(3, 2, dtype=D), "b": torch.randn(2, dtype=D)}
    flat = torch.cat([params["W"].reshape(-1), params["b"]])

    def f_flat(z):
        return f({"W": z[:6].reshape(3, 2), "b": z[6:]})

    expected = hessian(f_flat, flat) @ torch.cat([v["W"].reshape(-1), v["b"]])
    for out in (hvp(f, params, v), LinearOperator.from_hvp(f, params) @ v):
        got = torch.cat([out["W"].reshape(-1), out["b"]])
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_mixed_vjp_matches_jacobian_of_gradient():
    X = torch.randn(30, 4, dtype=D)
    y = torch.sign(torch.randn(30, dtype=D))

    def g(lam, w):  # per-feature L2 weights exp(lam)
        return torch.nn.functional.softplus(-(y * (X @ w))).mean() + 0.5 * (torch.exp(lam) * w * w).sum()

    lam, w, u = torch.randn(4, dtype=D), torch.randn(4, dtype=D), torch.randn(4, dtype=D)
    grad_y = lambda lam_: torch.autograd.grad(g(lam_, w.requires_grad_()), w, create_graph=True)[0]
    J = jacobian(grad_y, lam)  # J[i, j] = d (grad_y g)_i / d lam_j
    torch.testing.assert_close(mixed_vjp(g, lam, w.detach(), u), J.T @ u, rtol=1e-10, atol=1e-12)


def test_mixed_vjp_with_dicts_and_extra_args():
    X = torch.randn(12, 3, dtype=D)

    def g(x, y, data):
        return ((data @ y["w"]) ** 2).sum() * x["s"].exp().sum() + (x["t"] * y["w"]).sum()

    x = {"s": torch.randn(2, dtype=D), "t": torch.randn(3, dtype=D)}
    y = {"w": torch.randn(3, dtype=D)}
    u = {"w": torch.randn(3, dtype=D)}
    out = mixed_vjp(g, x, y, u, X)
    # closed form: grad_y g = 2 X^T X w * sum(exp s) + t
    XtXw = 2 * X.T @ X @ y["w"]
    torch.testing.assert_close(out["s"], (XtXw @ u["w"]) * x["s"].exp(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["t"], u["w"], rtol=1e-10, atol=1e-12)


def test_inner_linearization_products_from_one_record():
    """H_yy v, the mixed product and both at once from one record of grad_y g, with dict
    x and y (keys of v in another order), against the dense Hessian / mixed_vjp; a leaf
    g is linear in (constant gradient) gets zero products, not an error."""
    X = torch.randn(12, 3, dtype=D)

    def g(x, y):
        return ((X @ y["w"]) ** 2).sum() * x["s"].exp().sum() + (x["t"] * y["w"]).sum() \
            + (x["t"][:2] * y["c"]).sum() + torch.cos(y["w"]).sum()

    x = {"s": torch.randn(2, dtype=D), "t": torch.randn(3, dtype=D)}
    y = {"w": torch.randn(3, dtype=D), "c": torch.randn(2, dtype=D)}
    v = {"c": torch.randn(2, dtype=D), "w": torch.randn(3, dtype=D)}
    product, gradient, extras = inner_linearization(g, x, y)
    flat = lambda t: torch.cat([t["w"], t["c"]])
    H = hessian(lambda z: g(x, {"w": z[:3], "c": z[3:]}), flat(y))
    torch.testing.assert_close(flat(product(v)), H @ flat(v), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(flat(gradient), flat(torch.func.grad(g, argnums=1)(x, y)))
    expected_mixed = mixed_vjp(g, x, y, {"w": v["w"], "c": v["c"]})  # (needs y's key order)
    hv, mixed = extras["joint"](v)
    for got in (extras["mixed"](v), mixed):
        for k in x:
            torch.testing.assert_close(got[k], expected_mixed[k], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(flat(hv), H @ flat(v), rtol=1e-10, atol=1e-12)
    # g linear in y: grad_y g = x, no second-order record at all
    product, _, extras = inner_linearization(lambda a, b: (a * b).sum(), torch.ones(3, dtype=D),
                                             torch.ones(3, dtype=D))
    assert torch.equal(product(torch.ones(3, dtype=D)), torch.zeros(3, dtype=D))


def test_csr_row_indices_with_empty_rows():
    from bilevel.linalg.operators import csr_row_indices

    dense = torch.tensor([[0.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                          [4.0, 5.0, 6.0]])
    csr = dense.to_sparse_csr()
    rows = csr_row_indices(csr.crow_indices(), csr.values().numel())
    assert rows.dtype == torch.int64
    assert rows.tolist() == dense.nonzero()[:, 0].tolist() == [0, 0, 2, 4, 4, 4]
