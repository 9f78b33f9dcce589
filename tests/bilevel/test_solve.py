"""bilevel.solve: every method lowers the outer objective on small synthetic versions of
the two tasks; checkpoints resume bit-for-bit; stopping rules and error paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _bilevel_refs import DT, Ridge

import bilevel
from bilevel import Status

METHODS = ["aid-cg", "aid-minres", "aid-neumann", "itd", "borep", "penalty"]


def _hyperparameter_problem(stochastic: bool = False):
    """Per-feature L2-regularized logistic regression (exp-parametrized weights), with the
    exact h(x) from a Newton inner solve for evaluation."""
    gen = torch.Generator().manual_seed(0)
    n, m, mv = 8, 120, 80
    w = torch.randn(n, generator=gen, dtype=DT) * (torch.arange(n) < 4)  # 4 useless features
    X = torch.randn(m, n, generator=gen, dtype=DT)
    t = torch.sign(X @ w + 0.8 * torch.randn(m, generator=gen, dtype=DT))
    Xv = torch.randn(mv, n, generator=gen, dtype=DT)
    tv = torch.sign(Xv @ w + 0.8 * torch.randn(mv, generator=gen, dtype=DT))

    def inner(x, y, batch):
        A, b = (X, t) if batch is None else batch
        return F.softplus(-b * (A @ y)).mean() + 0.5 * (x.exp() * y * y).sum()

    def outer(x, y, batch):
        return F.softplus(-tv * (Xv @ y)).mean()

    data = [(X[i:i + 40], t[i:i + 40]) for i in range(0, m, 40)] if stochastic else None
    prob = bilevel.BilevelProblem(outer=outer, inner=inner, x0=torch.full((n,), 0.0, dtype=DT),
                                  y0=torch.zeros(n, dtype=DT), inner_data=data)

    def h(x):
        y = torch.zeros(n, dtype=DT)
        def full(yy):
            return inner(x, yy, None)

        for _ in range(30):
            y = y - torch.linalg.solve(torch.func.hessian(full)(y), torch.func.grad(full)(y))
        return float(outer(x, y, None))

    return prob, h


def _cleaning_problem():
    """Data hyper-cleaning: per-example weights sigmoid(x_i) on a 3-class softmax
    regression, 40% of training labels corrupted; outer = clean validation loss."""
    gen = torch.Generator().manual_seed(1)
    d, c, m, mv = 5, 3, 90, 60
    W = torch.randn(d, c, generator=gen, dtype=DT) * 2
    X = torch.randn(m, d, generator=gen, dtype=DT)
    labels = (X @ W).argmax(1)
    bad = torch.randperm(m, generator=gen)[: int(0.4 * m)]
    noisy = labels.clone()
    noisy[bad] = (noisy[bad] + torch.randint(1, c, (bad.numel(),), generator=gen)) % c
    Xv = torch.randn(mv, d, generator=gen, dtype=DT)
    yv = (Xv @ W).argmax(1)

    def inner(x, y, batch):
        losses = F.cross_entropy(X @ y["W"] + y["b"], noisy, reduction="none")
        reg = (y["W"] ** 2).sum() + (y["b"] ** 2).sum()
        return (torch.sigmoid(x) * losses).mean() + 1e-2 * reg

    def outer(x, y, batch):
        return F.cross_entropy(Xv @ y["W"] + y["b"], yv)

    y0 = {"W": torch.zeros(d, c, dtype=DT), "b": torch.zeros(c, dtype=DT)}
    prob = bilevel.BilevelProblem(outer=outer, inner=inner, x0=torch.zeros(m, dtype=DT), y0=y0)

    def h(x):
        y = {k: v.clone().requires_grad_(True) for k, v in y0.items()}
        opt = torch.optim.LBFGS(list(y.values()), max_iter=500, tolerance_grad=1e-12,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = inner(x, y, None)
            loss.backward()
            return loss
        opt.step(closure)
        return float(outer(x, {k: v.detach() for k, v in y.items()}, None))

    return prob, h


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_hyperparameter_objective(method):
    prob, h = _hyperparameter_problem()
    res = bilevel.solve(prob, method=method, outer_steps=25, inner_steps=10, outer_lr=0.1,
                        progress=False, seed=0)
    assert res.status is Status.MAX_STEPS and res.n_steps == 25 and len(res.history) == 25
    assert h(res.x) < h(prob.x0) - 0.01, (h(prob.x0), h(res.x))
    rec = res.history[-1]
    for key in ("step", "outer_loss", "hypergrad_norm", "inner_grad_norm", "solve_residual",
                "wall_time", "hvp_count", "grad_count"):
        assert key in rec
    assert rec["grad_count"] > 0 and rec["wall_time"] > 0


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_cleaning_objective(method):
    prob, h = _cleaning_problem()
    res = bilevel.solve(prob, method=method, outer_steps=15, inner_steps=10, outer_lr=0.3,
                        progress=False, seed=0)
    assert res.status is Status.MAX_STEPS
    assert set(res.y) == {"W", "b"}
    assert h(res.x) < h(prob.x0) - 0.01, (h(prob.x0), h(res.x))


@pytest.mark.parametrize("task", ["hyperparameter", "cleaning"])
def test_aid_with_newton_inner_steps_lowers_objective(task):
    """inner_method="newton" on both synthetic tasks (a tensor y and a dict y): the inner
    problem is solved to inner_tol within the allowed steps and h goes down."""
    prob, h = _hyperparameter_problem() if task == "hyperparameter" else _cleaning_problem()
    res = bilevel.solve(prob, method="aid-cg", outer_steps=10, inner_steps=5, outer_lr=0.3,
                        progress=False, seed=0, inner_method="newton", inner_tol=1e-9)
    assert res.status is Status.MAX_STEPS, res.message
    assert h(res.x) < h(prob.x0) - 0.01, (h(prob.x0), h(res.x))
    assert all(rec["inner_steps"] <= 5 for rec in res.history)
    assert res.history[-1]["inner_grad_norm"] <= 1e-9


def test_inner_method_is_validated():
    prob, _ = _hyperparameter_problem()
    with pytest.raises(ValueError, match="inner_method"):
        bilevel.solve(prob, method="aid-cg", outer_steps=1, progress=False, inner_method="lbfgs")


@pytest.mark.parametrize("method", ["aid-cg", "borep"])
def test_stochastic_minibatches(method):
    prob, h = _hyperparameter_problem(stochastic=True)
    res = bilevel.solve(prob, method=method, outer_steps=20, inner_steps=6, outer_lr=0.1,
                        progress=False, seed=0)
    assert res.status is Status.MAX_STEPS
    assert h(res.x) < h(prob.x0) - 0.01


@pytest.mark.parametrize("method", ["aid-cg", "itd", "borep", "penalty"])
def test_checkpoint_resume_is_bit_for_bit(tmp_path, method):
    """Interrupt a stochastic (shuffled DataLoader) run by a callback at step 7 with
    checkpoints every 3 steps; resuming from the file (saved at stop) must reproduce the
    uninterrupted run exactly."""
    prob, _ = _hyperparameter_problem(stochastic=True)
    X = torch.cat([b[0] for b in prob.inner_data])
    t = torch.cat([b[1] for b in prob.inner_data])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, t), batch_size=40,
                                         shuffle=True)
    prob = bilevel.BilevelProblem(outer=prob.outer, inner=prob.inner, x0=prob.x0, y0=prob.y0,
                                  inner_data=loader)
    kw = dict(method=method, outer_steps=12, inner_steps=3, outer_lr=0.1, progress=False,
              seed=5)
    full = bilevel.solve(prob, **kw)
    path = tmp_path / "run.pt"
    first = bilevel.solve(prob, checkpoint=path, checkpoint_every=3,
                          callback=lambda r: r["step"] == 6, **kw)
    assert first.status is Status.STOPPED and first.n_steps == 7
    torch.manual_seed(12345)  # the resumed run must not depend on the global RNG
    second = bilevel.solve(prob, checkpoint=path, checkpoint_every=3, **kw)
    assert second.n_steps == 12 and second.status is Status.MAX_STEPS
    assert torch.equal(second.x, full.x) and torch.equal(second.y, full.y)
    for a, b in zip(second.history, full.history):
        assert a["outer_loss"] == b["outer_loss"] and a["hypergrad_norm"] == b["hypergrad_norm"]
    assert not (tmp_path / "run.pt.tmp").exists()


def test_checkpoint_from_other_run_is_refused(tmp_path):
    r = Ridge()
    path = tmp_path / "c.pt"
    bilevel.solve(r.problem(), method="aid-cg", outer_steps=2, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="method 'aid-cg', not 'itd'"):
        bilevel.solve(r.problem(), method="itd", outer_steps=2, checkpoint=path, progress=False)
    # another shape: named, not torch's size-mismatch message
    other = Ridge(n=6)
    with pytest.raises(ValueError, match=r"y0: shape \(5,\) torch.float64 there, shape \(6,\)"):
        bilevel.solve(other.problem(), method="aid-cg", outer_steps=4, checkpoint=path,
                      progress=False)
    # the same shapes, other data (the README case: an edited problem)
    edited = Ridge(seed=1)
    with pytest.raises(ValueError, match=r"g\(x0, y0\) = .* there, .* here \(other data"):
        bilevel.solve(edited.problem(), method="aid-cg", outer_steps=4, checkpoint=path,
                      progress=False)
    with pytest.raises(ValueError, match="option inner_steps = 10 there, 3 here"):
        bilevel.solve(r.problem(), method="aid-cg", outer_steps=4, inner_steps=3,
                      checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="option solve_tol|option tol"):
        bilevel.solve(r.problem(), method="aid-cg", outer_steps=4, solve_tol=1e-8,
                      checkpoint=path, progress=False)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable bilevel.solve checkpoint"):
        bilevel.solve(r.problem(), method="aid-cg", outer_steps=2, checkpoint=path,
                      progress=False)


def test_tol_converges_on_quadratic():
    """g = ||y - A x - b||^2 / 2 + ||y||^2 / 2 (y* = (A x + b) / 2), f = ||y - c||^2 / 2 +
    ||x||^2 / 2: h is a strongly convex quadratic, so outer SGD reaches tol."""
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(6, 4, generator=gen, dtype=DT)
    b, c = torch.randn(6, generator=gen, dtype=DT), torch.randn(6, generator=gen, dtype=DT)
    prob = bilevel.BilevelProblem(
        outer=lambda x, y, _: 0.5 * ((y - c) ** 2).sum() + 0.5 * (x ** 2).sum(),
        inner=lambda x, y, _: 0.5 * ((y - A @ x - b) ** 2).sum() + 0.5 * (y ** 2).sum(),
        x0=torch.zeros(4, dtype=DT), y0=torch.zeros(6, dtype=DT))
    res = bilevel.solve(prob, method="aid-cg", outer_steps=500, inner_steps=5, outer_lr=0.2,
                        outer_optimizer="sgd", tol=1e-8, solve_tol=1e-10, progress=False)
    assert res.status is Status.CONVERGED, res.message
    # exact minimizer: grad h = A^T (A x + b - 2c) / 4 + x = 0
    x_star = torch.linalg.solve(A.T @ A / 4 + torch.eye(4, dtype=DT), -A.T @ (b - 2 * c) / 4)
    assert float(torch.linalg.norm(res.x - x_star)) <= 1e-5  # y lags y*(x) by a few GD steps


def test_callback_stops_and_sees_x_and_y():
    r = Ridge()
    seen = []

    def callback(record):
        seen.append((record["step"], record["x"].clone(), record["y"].clone()))
        return record["step"] == 3

    res = bilevel.solve(r.problem(), outer_steps=50, callback=callback, progress=False)
    assert res.status is Status.STOPPED and res.n_steps == 4 and len(seen) == 4
    assert torch.equal(seen[-1][1], res.x)


def test_nan_during_run_is_numerical_error():
    """Data with a NaN in the second batch (the first is validated clean) stops the run
    with NUMERICAL_ERROR naming the step, and returns the last finite iterate."""
    r = Ridge()
    X2 = r.X[20:].clone()
    X2[0, 0] = float("nan")
    prob = r.problem(inner_data=[(r.X[:20], r.t[:20]), (X2, r.t[20:])])
    res = bilevel.solve(prob, method="aid-cg", outer_steps=10, inner_steps=1, inner_lr=0.1,
                        progress=False, seed=0)
    assert res.status is Status.NUMERICAL_ERROR
    assert "outer step 0" in res.message
    assert bool(torch.isfinite(res.x).all()) and bool(torch.isfinite(res.y).all())


def test_diverging_step_is_numerical_error():
    r = Ridge()
    res = bilevel.solve(r.problem(), method="aid-cg", outer_steps=50, inner_lr=10.0,
                        progress=False)
    assert res.status is Status.NUMERICAL_ERROR
    assert "outer step" in res.message


def test_nonconvex_inner_under_aid_cg_records_fallback():
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=DT))
    A = Q @ torch.diag(torch.tensor([2.0, 1.0, -0.5, 1.5], dtype=DT)) @ Q.T

    prob = bilevel.BilevelProblem(outer=lambda x, y, b: 0.5 * (y ** 2).sum(),
                                  inner=lambda x, y, b: 0.5 * y @ (A @ y) - x @ y,
                                  x0=torch.ones(4, dtype=DT), y0=torch.zeros(4, dtype=DT))
    res = bilevel.solve(prob, method="aid-cg", outer_steps=2, inner_steps=1, inner_lr=0.01,
                        progress=False, fallback="minres")
    assert any(rec["fallback"] and "minres" in rec["fallback"] for rec in res.history)
    # the default, damping, cannot repair an eigenvalue of -0.5 with lambda_max = 2 (at
    # most 1e-4 * 2 * 2^9 ~ 0.1 is added): said so, not hidden
    res = bilevel.solve(prob, method="aid-cg", outer_steps=2, inner_steps=1, inner_lr=0.01,
                        progress=False)
    assert res.status is Status.NUMERICAL_ERROR
    assert "still not positive definite" in res.message and "fallback='minres'" in res.message


def test_bad_arguments():
    r = Ridge()
    with pytest.raises(ValueError, match="method must be one of"):
        bilevel.solve(r.problem(), method="sgd")
    with pytest.raises(TypeError, match="unknown option"):
        bilevel.solve(r.problem(), method="borep", maxiter=3, progress=False)
    with pytest.raises(ValueError, match="outer_optimizer"):
        bilevel.solve(r.problem(), outer_optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="inner_steps"):
        bilevel.solve(r.problem(), inner_steps=0, progress=False)


def test_progress_line_runs():
    r = Ridge()
    res = bilevel.solve(r.problem(), outer_steps=3, progress=True)
    assert res.n_steps == 3


def test_wall_time_excludes_callback_time():
    import time

    r = Ridge()
    res = bilevel.solve(r.problem(), outer_steps=4, inner_steps=1, progress=False,
                        callback=lambda record: time.sleep(0.3))
    times = [rec["wall_time"] for rec in res.history]
    assert times == sorted(times)
    assert times[-1] - times[0] < 0.6  # three 0.3 s callbacks happened in between


def test_itd_options_through_solve():
    prob, h = _hyperparameter_problem()
    for opts in ({"truncate": 3}, {"inner_optimizer": "momentum"}):
        res = bilevel.solve(prob, method="itd", outer_steps=10, inner_steps=8, outer_lr=0.1,
                            progress=False, **opts)
        assert res.status is Status.MAX_STEPS
        assert h(res.x) < h(prob.x0)
        if "truncate" in opts:
            assert res.history[0]["hvp_count"] >= 3


def test_float32_problem_runs_and_checkpoints(tmp_path):
    r = Ridge()
    X, t, Xv, tv = r.X.float(), r.t.float(), r.Xv.float(), r.tv.float()
    prob = bilevel.BilevelProblem(
        outer=lambda x, y, b: ((Xv @ y - tv) ** 2).mean() / 2,
        inner=lambda x, y, b: ((X @ y - t) ** 2).mean() / 2 + (x.exp() * y * y).sum() / 2,
        x0=r.x0.float(), y0=torch.zeros(r.n))
    for method in METHODS:
        res = bilevel.solve(prob, method=method, outer_steps=6, progress=False,
                            checkpoint=tmp_path / f"{method}.pt", checkpoint_every=2)
        assert res.status is Status.MAX_STEPS, (method, res.message)
        assert res.x.dtype == torch.float32 and res.y.dtype == torch.float32
        assert r.h(res.x.double()) < r.h(r.x0)


def test_aid_inner_tol_takes_more_inner_steps_until_met():
    r = Ridge(n=30, m=20, scale=3.0)  # more features than examples: kappa in the hundreds
    prob = r.problem()
    kw = {"outer_steps": 2, "inner_steps": 10, "outer_lr": 0.01, "progress": False}
    plain = bilevel.solve(prob, **kw)
    assert plain.history[-1]["inner_grad_norm"] > 1e-6
    res = bilevel.solve(prob, inner_tol=1e-6, max_inner_steps=5_000, **kw)
    assert all(rec["inner_grad_norm"] <= 1e-6 for rec in res.history)
    assert res.history[0]["inner_steps"] > 10 and res.history[0]["inner_steps"] % 10 == 0
    capped = bilevel.solve(prob, inner_tol=1e-12, max_inner_steps=30, **{**kw, "outer_steps": 1})
    assert capped.history[0]["inner_steps"] == 30


@pytest.mark.parametrize("method", ["aid-cg", "borep", "penalty", "itd"])
def test_stale_inner_step_is_re_estimated(method):
    """The outer loss pushes the exp-parametrized weights up (it wants y small), so
    lambda_max(H_yy) = O(e^x) grows ~12x within 5 outer steps of Adam at 0.5: the default
    inner step 1/lambda_max estimated at step 0 (re-estimated only every lr_every = 10
    steps) then exceeds 2/lambda_max.  Without the stale-step guard the inner gradient
    descent diverged (||grad_y g|| of 1e29 for aid-cg and penalty, 3e7 for borep, 31 for
    itd within 20 steps); with it, the step is re-estimated when ||grad_y g|| grows."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(50, 6, generator=gen, dtype=DT) * 0.3
    t = X @ torch.randn(6, generator=gen, dtype=DT) + 1.0
    prob = bilevel.BilevelProblem(
        outer=lambda x, y, b: (y * y).sum() / 2,
        inner=lambda x, y, b: ((X @ y - t) ** 2).mean() / 2 + (x.exp() * y * y).sum() / 2,
        x0=torch.zeros(6, dtype=DT), y0=torch.zeros(6, dtype=DT))
    res = bilevel.solve(prob, method=method, outer_steps=20, inner_steps=5, outer_lr=0.5,
                        lr_every=10, progress=False, seed=0)
    assert res.status is Status.MAX_STEPS, res.message
    assert max(r["inner_grad_norm"] for r in res.history) < 1.0
    if method != "borep":  # x really moved up by ~4 (e^4 ~ 55 x the start's weights)
        assert float(res.x.min()) > 3.0


def test_finished_checkpoint_returns_its_result_and_says_so(tmp_path):
    r = Ridge()
    path = tmp_path / "run.pt"
    first = bilevel.solve(r.problem(), method="aid-cg", outer_steps=3, checkpoint=path,
                          progress=False, seed=0)
    again = bilevel.solve(r.problem(), method="aid-cg", outer_steps=3, checkpoint=path,
                          progress=False, seed=0)
    assert again.status is Status.MAX_STEPS and again.n_steps == 3
    assert torch.equal(again.x, first.x) and torch.equal(again.y, first.y)
    assert "finished checkpoint" in again.message and "raise outer_steps" in again.message
    assert len(again.history) == 3
    # more steps: it continues from there
    more = bilevel.solve(r.problem(), method="aid-cg", outer_steps=5, checkpoint=path,
                         progress=False, seed=0)
    assert more.n_steps == 5 and "finished checkpoint" not in more.message
    # a converged run at the same tol is finished too
    path2 = tmp_path / "conv.pt"
    done = bilevel.solve(r.problem(), method="aid-cg", outer_steps=500, tol=1e-2,
                         checkpoint=path2, progress=False, seed=0)
    assert done.status is Status.CONVERGED
    again = bilevel.solve(r.problem(), method="aid-cg", outer_steps=500, tol=1e-2,
                          checkpoint=path2, progress=False, seed=0)
    assert again.status is Status.CONVERGED and "finished checkpoint" in again.message
    assert again.n_steps == done.n_steps
