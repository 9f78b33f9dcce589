"""The staged Hessian product (bilevel.linalg.staged) against autograd's, and its kernels."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from _bilevel_refs import count_kernels

from bilevel.hypergrad.system import inner_operator
from bilevel.linalg import tree as T
from bilevel.linalg.staged import StagingError, stage_product
from bilevel.tasks import data_cleaning, hyperparameter_tuning

DT = torch.float64
def cleaning(hidden=None):
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(60, 7, generator=gen, dtype=DT)
    labels = torch.randint(0, 4, (60,), generator=gen)
    problem = data_cleaning(X, labels, X[:20], labels[:20], n_classes=4, dtype=DT, hidden=hidden)
    return problem, torch.randn(60, generator=gen, dtype=DT)


def ijcnn1_like():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(80, 6, generator=gen, dtype=DT)
    t = torch.sign(torch.randn(80, generator=gen, dtype=DT))
    problem = hyperparameter_tuning(X, t, X[:30], t[:30], dtype=DT)
    return problem, problem.x0 + 0.1 * torch.randn(problem.x0.shape, generator=gen, dtype=DT)


def moved(tree, gen, scale):
    return T.tree_map(lambda t: t + scale * torch.randn(t.shape, generator=gen, dtype=t.dtype),
                      tree)


@pytest.mark.parametrize("case", ["cleaning", "mlp", "ijcnn1"])
def test_staged_product_equals_autograd_at_other_points(case):
    """Traced at one point, the staged product is H_yy u at any other point (x, y, u)."""
    problem, x = {"cleaning": cleaning, "mlp": lambda: cleaning(hidden=5),
                  "ijcnn1": ijcnn1_like}[case]()
    g = problem.inner_at(None)
    y = problem.y0
    staged = stage_product(g, x, y)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        x2, y2 = moved(x, gen, 0.5), moved(y, gen, 0.3)
        u = moved(T.zeros_like(y), gen, 1.0)
        exact = inner_operator(g, x2, y2)(u)
        got = staged.apply(staged.setup(x2, y2), u)
        assert float(T.norm(T.axpy(-1.0, got, exact)) / T.norm(exact)) <= 1e-13


@pytest.mark.parametrize(("hidden", "autograd", "staged_kernels"), [(None, 13, 7), (5, 41, 26)])
def test_the_cleaning_product_runs_fewer_kernels(hidden, autograd, staged_kernels):
    """The softmax (recomputed by logsumexp's backward at every autograd product) and two
    chains of constant factors move to the setup, a negation onto a constant, the last
    addition into the second matrix product (addmm): 13 -> 7 kernels per product of the
    linear model; the MLP (tanh, a dict of 4 leaves) 41 -> 26."""
    problem, x = cleaning(hidden)
    g, y = problem.inner_at(None), problem.y0
    u = T.tree_map(torch.randn_like, y)
    op = inner_operator(g, x, y)
    op(u)  # linearized
    staged = stage_product(g, x, y)
    constants = staged.setup(x, y)
    assert count_kernels(lambda: op(u)) == autograd
    assert count_kernels(lambda: staged.apply(constants, u)) == staged.kernels == staged_kernels


def test_a_product_that_reads_the_host_is_refused():
    """A trace that read a value on the host may hold a branch on data: refused."""
    X = torch.randn(20, 3, dtype=DT)

    def g(x, y):
        z = X @ y
        if float(z.detach().abs().max()) > 1.0:  # a data-dependent branch
            z = z / 2
        return (torch.exp(x) * y * y).sum() + (z * z).sum()

    with pytest.raises(StagingError, match="reads a value on the host"):
        stage_product(g, torch.zeros(3, dtype=DT), torch.ones(3, dtype=DT))


def test_constant_blocks_and_dict_variables():
    """A leaf g is linear in (a zero block of H) gives a fresh zero, not a shared constant."""
    A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=DT)

    def g(x, y):
        return 0.5 * y["a"] @ (A @ y["a"]) * torch.exp(x).sum() + (x * y["b"]).sum()

    x = torch.zeros(2, dtype=DT)
    y = {"a": torch.ones(2, dtype=DT), "b": torch.ones(2, dtype=DT)}
    staged = stage_product(g, x, y)
    constants = staged.setup(x + 1.0, y)
    u = {"a": torch.tensor([1.0, -1.0], dtype=DT), "b": torch.ones(2, dtype=DT)}
    first, second = staged.apply(constants, u), staged.apply(constants, u)
    scale = float(torch.exp(x + 1.0).sum())
    assert torch.allclose(first["a"], scale * (A @ u["a"]))
    assert torch.equal(first["b"], torch.zeros(2, dtype=DT))
    assert first["b"].data_ptr() != second["b"].data_ptr()


def test_the_logistic_product_runs_fewer_kernels():
    """ijcnn1-style logistic regression: sigmoid_backward with a constant sigmoid becomes a
    product by s (1 - s) (computed once), merged with the 1 / n factor, and the last
    addition joins the matrix-vector product (addmv), the two equal halves of the
    penalty's second derivative merge: 9 -> 4 kernels per product."""
    problem, x = ijcnn1_like()
    g, y = problem.inner_at(None), problem.y0
    u = torch.randn(y.shape, dtype=DT)
    op = inner_operator(g, x, y)
    op(u)  # linearized
    staged = stage_product(g, x, y)
    constants = staged.setup(x, y)
    assert count_kernels(lambda: op(u)) == 9
    assert count_kernels(lambda: staged.apply(constants, u)) == staged.kernels == 4


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_the_compiled_product_equals_the_staged_one():
    """StagedProduct.compile: the per-vector ops through torch.compile give the same product
    (float64, to rounding), at another point than the trace's; the original stays as it was."""
    problem, x = cleaning()
    g, y = problem.inner_at(None), problem.y0
    staged = stage_product(g, x, y)
    compiled = staged.compile()
    assert compiled.compiled and not staged.compiled and compiled.kernels == staged.kernels
    gen = torch.Generator().manual_seed(5)
    x2, y2 = moved(x, gen, 0.5), moved(y, gen, 0.3)
    u = moved(T.zeros_like(y), gen, 1.0)
    constants = staged.setup(x2, y2)
    want = staged.apply(constants, u)
    got = compiled.apply(constants, u)
    assert float(T.norm(T.axpy(-1.0, got, want)) / T.norm(want)) <= 1e-12
