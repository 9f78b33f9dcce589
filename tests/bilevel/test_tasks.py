"""bilevel.tasks: bundled data loaders, task objectives, float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bilevel.tasks import (data_cleaning, flag_scores, hyperparameter_tuning, load_ijcnn1,
                           load_mnist, read_svmlight)
from bilevel.tasks import reference as R
from bilevel.tasks.data_cleaning import DataCleaningTask
from bilevel.tasks.hyperparameter_tuning import LogisticRegressionTask

# -- loaders ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ijcnn1():
    return load_ijcnn1()


def test_ijcnn1_split_shapes_and_labels(ijcnn1):
    s = ijcnn1
    assert s.X_train.shape == (35_000, 22) and s.y_train.shape == (35_000,)
    assert s.X_val.shape == (14_990, 22) and s.y_val.shape == (14_990,)
    assert s.X_test.shape == (91_701, 22) and s.y_test.shape == (91_701,)
    for y in (s.y_train, s.y_val, s.y_test):
        assert set(torch.unique(y).tolist()) == {-1.0, 1.0}
    tr, va = s.info["train_index"], s.info["val_index"]
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(49_990))
    expected = torch.randperm(49_990, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tr, expected[:35_000])
    # LIBSVM ijcnn1: 4,853 of the 49,990 .trn rows are positive
    assert int((s.y_train > 0).sum() + (s.y_val > 0).sum()) == 4853


def test_mnist_split_is_the_anchor_split():
    s = load_mnist()
    assert s.X_train.shape == (5000, 784) and s.X_val.shape == (2000, 784)
    assert s.X_test.shape == (3000, 784) and s.y_test.dtype == torch.int64
    assert 0.0 <= float(s.X_train.min()) and float(s.X_train.max()) <= 1.0
    corrupted, clean = s.info["corrupted"], s.info["y_train_clean"]
    assert int(corrupted.sum()) == 2500
    assert torch.equal(s.y_train != clean, corrupted)  # every replaced label changed class
    # the anchor script's generator calls, replayed
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(10000, generator=g)
    bad = torch.randperm(5000, generator=g)[:2500]
    shift = torch.randint(1, 10, (2500,), generator=g)
    assert torch.equal(s.info["bad_index"], bad)
    assert torch.equal(s.y_train[bad], (clean[bad] + shift) % 10)
    full = load_mnist(n_train=9000, n_val=500, corruption=0.0)
    assert torch.equal(full.X_train[:5000], s.X_train)  # same permutation prefix
    assert torch.equal(full.X_train[:10], s.X_train[:10]) and perm.shape == (10000,)


def test_read_svmlight_values_and_errors(tmp_path):
    good = tmp_path / "a.svm"
    good.write_text("+1 1:0.5 3:-2\n-1 2:1e-3  # comment\n\n0 \n")
    X, y = read_svmlight(good)
    np.testing.assert_array_equal(y, [1, -1, 0])
    np.testing.assert_array_equal(X, [[0.5, 0, -2], [0, 1e-3, 0], [0, 0, 0]])
    assert read_svmlight(good, n_features=5)[0].shape == (3, 5)
    with pytest.raises(ValueError, match="exceeds n_features"):
        read_svmlight(good, n_features=2)
    bad = tmp_path / "b.svm"
    bad.write_text("1 1:0.5\n1 2:x\n")
    with pytest.raises(ValueError, match=r"b.svm:2: malformed"):
        read_svmlight(bad)
    zero = tmp_path / "c.svm"
    zero.write_text("1 0:1\n")
    with pytest.raises(ValueError, match="index < 1"):
        read_svmlight(zero)
    nan = tmp_path / "d.svm"
    nan.write_text("1 1:nan\n")
    with pytest.raises(ValueError, match="non-finite"):
        read_svmlight(nan)


# -- task objectives ---------------------------------------------------------------------


def _binary_data(n=40, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = (X[:, 0] + 0.8 * torch.randn(n, generator=g, dtype=torch.float64) > 0).double()
    return X, labels


def test_hyperparameter_tuning_objectives_match_formula():
    X, y01 = _binary_data()
    Xv, yv01 = _binary_data(seed=1)
    problem, task = hyperparameter_tuning(X, y01, Xv, 2 * yv01 - 1, return_task=True)
    assert problem.x0.shape == (3,) and problem.y0.shape == (4,)
    g = torch.Generator().manual_seed(2)
    x, theta = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(
        4, generator=g, dtype=torch.float64)
    w, b = theta[:3].numpy(), float(theta[3])
    t = 2 * y01.numpy() - 1
    direct_g = np.mean(np.log1p(np.exp(-t * (X.numpy() @ w + b)))) \
        + 0.5 * np.sum(np.exp(x.numpy()) * w ** 2)
    tv = 2 * yv01.numpy() - 1
    direct_f = np.mean(np.log1p(np.exp(-tv * (Xv.numpy() @ w + b))))
    assert math.isclose(float(problem.inner(x, theta, None)), direct_g, rel_tol=1e-12)
    assert math.isclose(float(problem.outer(x, theta, None)), direct_f, rel_tol=1e-12)
    # a minibatch of row indices gives the same formula on those rows
    idx = torch.tensor([3, 7, 11])
    direct_b = np.mean(np.log1p(np.exp(-t[[3, 7, 11]] * (X.numpy()[[3, 7, 11]] @ w + b)))) \
        + 0.5 * np.sum(np.exp(x.numpy()) * w ** 2)
    assert math.isclose(float(task.inner(x, theta, idx)), direct_b, rel_tol=1e-12)
    assert float(task.accuracy(theta, Xv, yv01)) == pytest.approx(
        np.mean(((Xv.numpy() @ w + b) > 0) == (tv > 0)))


def test_hyperparameter_tuning_second_derivatives_match_the_softplus_formula():
    """The objectives are written for short Hessian products ([X, 1] theta, the binary
    cross-entropy of the logits, the penalty as a dot product with [exp(x), 0]); their
    derivatives are those of softplus(-t (X w + b)).mean() + 1/2 (exp(x) w w).sum()."""
    import torch.nn.functional as F

    from bilevel.hypergrad.system import inner_operator

    X, y01 = _binary_data()
    problem = hyperparameter_tuning(X, y01, X, y01)
    t = 2 * y01 - 1
    g = torch.Generator().manual_seed(5)
    x, theta, v = (torch.randn(k, generator=g, dtype=torch.float64) for k in (3, 4, 4))

    def formula(x, theta):
        w = theta[:-1]
        return F.softplus(-t * (X @ w + theta[-1])).mean() + 0.5 * (torch.exp(x) * w * w).sum()

    op = inner_operator(problem.inner_at(None), x, theta)
    grad_y = torch.func.grad(formula, 1)
    assert torch.allclose(op.gradient(), grad_y(x, theta), rtol=1e-12)
    assert torch.allclose(op(v), torch.func.jvp(lambda th: grad_y(x, th), (theta,), (v,))[1],
                          rtol=1e-12, atol=1e-15)
    _, pullback = torch.func.vjp(lambda xx: grad_y(xx, theta), x)
    assert torch.allclose(op.hessian_products.extras["mixed"](v), pullback(v)[0], rtol=1e-12,
                          atol=1e-15)


def test_hyperparameter_tuning_bad_input():
    X, y = _binary_data()
    with pytest.raises(ValueError, match="binary labels"):
        LogisticRegressionTask(X, y + 2, X, y)
    with pytest.raises(ValueError, match="rows"):
        LogisticRegressionTask(X, y[:-1], X, y)
    with pytest.raises(ValueError, match="features"):
        LogisticRegressionTask(X, y, X[:, :2], y)
    Xn = X.clone()
    Xn[3, 1] = float("nan")
    with pytest.raises(ValueError, match="X_val: contains NaN"):
        LogisticRegressionTask(X, y, Xn, y)
    with pytest.raises(ValueError, match="single class"):
        LogisticRegressionTask(X, torch.ones(40), X, y)


def _multiclass_data(n=30, p=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    labels = torch.randint(0, k, (n,), generator=g)
    return X, labels


def test_data_cleaning_objectives_match_formula():
    X, c = _multiclass_data()
    Xv, cv = _multiclass_data(n=12, seed=1)
    problem, task = data_cleaning(X, c, Xv, cv, n_classes=3, return_task=True)
    assert problem.x0.shape == (30,) and problem.y0.shape == (5, 3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, generator=g, dtype=torch.float64)
    W = torch.randn(5, 3, generator=g, dtype=torch.float64)

    def ce(Xs, cs):
        s = Xs.numpy() @ W[:-1].numpy() + W[-1].numpy()
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(cs)), cs.numpy()]

    sig = 1 / (1 + np.exp(-x.numpy()))
    direct_g = np.mean(sig * ce(X, c)) + 1e-3 * np.sum(W.numpy() ** 2)
    assert math.isclose(float(problem.inner(x, W, None)), direct_g, rel_tol=1e-12)
    assert math.isclose(float(problem.outer(x, W, None)), np.mean(ce(Xv, cv)), rel_tol=1e-12)
    idx = torch.tensor([0, 5, 9])
    direct_b = np.mean(sig[[0, 5, 9]] * ce(X, c)[[0, 5, 9]]) + 1e-3 * np.sum(W.numpy() ** 2)
    assert math.isclose(float(task.inner(x, W, idx)), direct_b, rel_tol=1e-12)


def test_data_cleaning_second_derivatives_match_the_cross_entropy_formula():
    """The objectives are written for short Hessian products ([X, 1] W, logsumexp minus the
    picked score, the penalty as mse_loss); their first and second derivatives are those
    of the plain formula F.cross_entropy(X W[:-1] + W[-1]) + reg (W * W).sum()."""
    import torch.nn.functional as F

    from bilevel.hypergrad.system import inner_operator

    X, c = _multiclass_data()
    problem = data_cleaning(X, c, X[:12], c[:12], n_classes=3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(30, generator=g, dtype=torch.float64)
    W = torch.randn(5, 3, generator=g, dtype=torch.float64)
    V = torch.randn(5, 3, generator=g, dtype=torch.float64)

    def formula(x, W):
        losses = F.cross_entropy(X @ W[:-1] + W[-1], c, reduction="none")
        return (torch.sigmoid(x) * losses).mean() + 1e-3 * (W * W).sum()

    op = inner_operator(problem.inner_at(None), x, W)
    assert torch.allclose(op.gradient(), torch.func.grad(formula, 1)(x, W), rtol=1e-12)
    assert torch.allclose(op(V), torch.func.jvp(lambda w: torch.func.grad(formula, 1)(x, w),
                                                (W,), (V,))[1], rtol=1e-12, atol=1e-15)
    mixed = op.hessian_products.extras["mixed"](V)
    _, pullback = torch.func.vjp(lambda xx: torch.func.grad(formula, 1)(xx, W), x)
    assert torch.allclose(mixed, pullback(V)[0], rtol=1e-12, atol=1e-15)


def test_data_cleaning_bad_input():
    X, c = _multiclass_data()
    with pytest.raises(ValueError, match=">= n_classes"):
        DataCleaningTask(X, c, X, c, n_classes=2)
    with pytest.raises(ValueError, match="negative class"):
        DataCleaningTask(X, c - 1, X, c)
    with pytest.raises(ValueError, match="features"):
        DataCleaningTask(X, c, X[:, :3], c)
    with pytest.raises(ValueError, match="integers"):
        DataCleaningTask(X, c + 0.5, X, c)


def test_flag_scores():
    x = torch.tensor([-3.0, -1.0, 2.0, 0.5, -0.2, 4.0])
    truth = torch.tensor([True, True, True, False, False, False])
    s = flag_scores(x, truth)  # flagged: 0, 1, 4 -> tp 2, precision 2/3, recall 2/3
    assert s["flagged"] == 3
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)


# -- references ----------------------------------------------------------------------------


def _hypergrad_fd(problem, x, eps=1e-5):
    """Central differences of h(x) = f(x, y*(x)) with tight inner solves."""
    out = torch.zeros_like(x)
    y = problem.y0
    for j in range(x.numel()):
        e = torch.zeros_like(x)
        e.view(-1)[j] = eps
        hp = problem.outer(x + e, R.inner_solution(problem, x + e, y, tol=1e-13), None)
        hm = problem.outer(x - e, R.inner_solution(problem, x - e, y, tol=1e-13), None)
        out.view(-1)[j] = (hp - hm) / (2 * eps)
    return out


def test_exact_hypergradient_matches_finite_differences_logistic():
    X, y = _binary_data()
    Xv, yv = _binary_data(seed=1)
    problem = hyperparameter_tuning(X, y, Xv, yv, log_reg0=-1.0)
    x = torch.tensor([-1.0, 0.5, -2.0], dtype=torch.float64)
    exact = R.exact_hypergradient(problem, x, tol=1e-13)
    assert exact.inner_grad_norm < 1e-12 and exact.hessian_min_eig > 0
    fd = _hypergrad_fd(problem, x)
    torch.testing.assert_close(exact.grad, fd, rtol=1e-6, atol=1e-9)


def test_exact_hypergradient_matches_finite_differences_cleaning():
    X, c = _multiclass_data(n=15, p=3)
    Xv, cv = _multiclass_data(n=10, p=3, seed=1)
    problem = data_cleaning(X, c, Xv, cv, n_classes=3, reg=1e-2)
    x = torch.linspace(-1, 1, 15, dtype=torch.float64)
    exact = R.exact_hypergradient(problem, x, tol=1e-13)
    fd = _hypergrad_fd(problem, x)
    torch.testing.assert_close(exact.grad, fd, rtol=1e-6, atol=1e-9)
    # the Newton and L-BFGS inner solvers agree on y*
    y_lbfgs = R.inner_solution(problem, x, problem.y0, method="lbfgs", tol=1e-11)
    torch.testing.assert_close(y_lbfgs, exact.y, rtol=0, atol=1e-7)


def test_inner_solution_reports_non_convergence():
    X, y = _binary_data()
    problem = hyperparameter_tuning(X, y, X, y)
    with pytest.raises(RuntimeError, match="grad_y g"):
        R.inner_solution(problem, problem.x0, problem.y0, method="newton", max_iter=1)


def test_scalar_grid_search_and_oracle():
    X, y = _binary_data(n=60)
    Xv, yv = _binary_data(n=30, seed=1)
    _, task = hyperparameter_tuning(X, y, Xv, yv, return_task=True)
    res = R.scalar_grid_search(task, [-6.0, -2.0, 2.0])
    assert res["best_val_loss"] == min(res["val_loss"])
    x = torch.full((3,), res["best_log_reg"], dtype=torch.float64)
    assert float(task.outer(x, res["best_theta"], None)) == pytest.approx(res["best_val_loss"])

    Xc, c = _multiclass_data(n=40)
    _, ctask = data_cleaning(Xc, c, Xc, c, n_classes=3, return_task=True)
    corrupted = torch.arange(40) % 4 == 0
    W = R.oracle_cleaning(ctask, corrupted, normalization="all", tol=1e-10)
    # "all" is the inner objective with hard 0/1 weights: x = +-40 reproduces its optimum
    x_hard = torch.where(corrupted, -40.0, 40.0).double()
    grad_y = torch.func.grad(lambda w: ctask.inner(x_hard, w, None))(W)
    assert float(grad_y.norm()) < 1e-8


def test_mlp_cleaning_task_dict_parameters_split_and_hypergradient():
    """data_cleaning(hidden=...): a 2-layer tanh MLP with dict parameters; g equals its
    split loss(output); at an inner optimum the CG hypergradient agrees with central
    differences of h (bilevel.check_hypergrad)."""
    import bilevel
    from bilevel.tasks import MLPCleaningTask, data_cleaning

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(24, 3, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (24,), generator=gen)
    Xv = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    labels_v = torch.randint(0, 3, (12,), generator=gen)
    problem, task = data_cleaning(X, labels, Xv, labels_v, n_classes=3, hidden=4, reg=1e-2,
                                  dtype=torch.float64, return_task=True)
    assert isinstance(task, MLPCleaningTask)
    assert {k: tuple(v.shape) for k, v in problem.y0.items()} == \
        {"W1": (3, 4), "b1": (4,), "W2": (4, 3), "b2": (3,)}
    x = 0.5 * torch.randn(24, generator=gen, dtype=torch.float64)
    z, loss = problem.inner_split_at(None)
    assert float(loss(x, z(x, problem.y0))) == pytest.approx(
        float(problem.inner(x, problem.y0, None)), rel=1e-14)
    check = bilevel.check_hypergrad(problem, x, directions=2)
    assert check.ok, str(check)
    # the same initialization for the same seed, another for another
    again = data_cleaning(X, labels, Xv, labels_v, n_classes=3, hidden=4, dtype=torch.float64)
    other = data_cleaning(X, labels, Xv, labels_v, n_classes=3, hidden=4, dtype=torch.float64,
                          init_seed=1)
    assert torch.equal(again.y0["W1"], problem.y0["W1"])
    assert not torch.equal(other.y0["W1"], problem.y0["W1"])
