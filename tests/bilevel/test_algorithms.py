"""White-box checks of the outer loops at a frozen x (outer step 0): each one's
hypergradient estimate must converge to the exact ridge hypergradient, at the rate its
theory says; plus the outer optimizer and the replayable batch stream."""

from __future__ import annotations

import torch
from _bilevel_refs import DT, Ridge, rel

from bilevel.algorithms import (
    AIDAlgorithm,
    BatchStream,
    BOREPAlgorithm,
    ITDAlgorithm,
    OuterOptimizer,
    PenaltyAlgorithm,
)


def _frozen(cls, problem, inner_steps=5, inner_lr=None, **options):
    """The algorithm with a zero outer step, so x stays at x0 while the rest converges."""
    streams = (BatchStream(problem.outer_data, 0, 0, "outer_data"),
               BatchStream(problem.inner_data, 0, 1, "inner_data"))
    common = {"inner_steps": inner_steps, "inner_lr": inner_lr,
              "outer_optimizer": OuterOptimizer("sgd", 0.0), "lr_every": 10}
    if cls is AIDAlgorithm:
        return cls(problem, streams, solver=options.pop("solver"), options=options, **common)
    return cls(problem, streams, options=options, **common)


def _run(algorithm, steps):
    state = algorithm.init_state()
    for k in range(steps):
        state, stats = algorithm.step(state, k)
    return state, stats


def test_aid_estimate_and_warm_started_v():
    r = Ridge()
    for solver in ("cg", "minres", "neumann"):
        state, stats = _run(_frozen(AIDAlgorithm, r.problem(), inner_steps=40, solver=solver,
                                    tol=1e-12, maxiter=200), 5)
        assert torch.equal(state["x"], r.x0)
        assert rel(stats["hypergrad"], r.hypergrad(r.x0)) <= 1e-8, solver
        v_star = torch.linalg.solve(r.hessian(r.x0), r.grad_f_y(r.y_star(r.x0)))
        assert rel(state["v"], v_star) <= 1e-8


def test_aid_newton_inner_steps():
    """inner_method="newton": on the quadratic (ridge) inner problem one Newton step from
    y0 = 0 lands on y*(x) (to the CG tolerance), and inner_tol stops the next steps."""
    r = Ridge()
    algorithm = _frozen(AIDAlgorithm, r.problem(), inner_steps=5, solver="cg", tol=1e-12,
                        maxiter=50, inner_method="newton", inner_tol=1e-10)
    state, stats = algorithm.step(algorithm.init_state(), 0)
    assert stats["inner_steps"] <= 2  # one step, plus at most one clean-up of round-off
    assert rel(state["y"], r.y_star(r.x0)) <= 1e-6
    assert rel(stats["hypergrad"], r.hypergrad(r.x0)) <= 1e-5


def test_newton_steps_on_ill_conditioned_logistic_regression():
    """Damped Newton reaches ||grad|| <= 1e-10 on a logistic regression with weights
    e^x as small as 1e-6 (condition number ~1e5), where 20 gradient steps of size
    1/lambda_max barely move; it agrees with the reference Newton solve."""
    from bilevel.algorithms.common import gradient_steps, newton_steps
    from bilevel.hypergrad.stepsize import inner_lambda_max
    from bilevel.tasks.reference import inner_solution

    gen = torch.Generator().manual_seed(3)
    X = torch.randn(200, 6, generator=gen, dtype=DT) * torch.tensor([1, 1, 1, 1, 0.05, 0.02],
                                                                    dtype=DT)
    t = torch.sign(X @ torch.ones(6, dtype=DT) + 0.5 * torch.randn(200, generator=gen,
                                                                  dtype=DT))
    x = torch.tensor([0.0, -2, -4, -6, -12, -14], dtype=DT)

    def g(x, y, batch=None):
        return torch.nn.functional.softplus(-t * (X @ y)).mean() + 0.5 * (x.exp() * y * y).sum()

    y0 = torch.zeros(6, dtype=DT)
    y_star = inner_solution(g, x, y0, tol=1e-12)
    y, norm, taken, products = newton_steps([lambda a, b: g(a, b)] * 20, x, y0, tol=1e-10)
    assert float(norm) <= 1e-10 and taken < 20 and products > 0
    assert rel(y, y_star) <= 1e-6
    lr = 1.0 / inner_lambda_max(lambda a, b: g(a, b), x, y0)[0]
    y_gd, _ = gradient_steps([lambda a, b: g(a, b)] * 20, x, y0, lr)
    assert rel(y_gd, y_star) > 0.1


def test_itd_estimate_converges():
    r = Ridge()
    # K = 60 unrolled steps: the unrolling bias (I - lr H)^K is below 1e-8 here
    _, stats = _run(_frozen(ITDAlgorithm, r.problem(), inner_steps=60), 5)
    assert rel(stats["hypergrad"], r.hypergrad(r.x0)) <= 1e-8


def test_borep_z_solves_the_linear_system_and_estimate_converges():
    """With x frozen, y -> y*(x) through refinement and periodic updates, z follows
    gradient descent on z^T H z / 2 - z^T grad_y f, so z -> H^{-1} grad_y f and the
    estimate grad_x f - (d^2 g/dx dy)^T z -> grad h(x)."""
    r = Ridge()
    state, stats = _run(_frozen(BOREPAlgorithm, r.problem(), update_interval=3), 300)
    v_star = torch.linalg.solve(r.hessian(r.x0), r.grad_f_y(r.y_star(r.x0)))
    assert rel(state["y"], r.y_star(r.x0)) <= 1e-10
    assert rel(state["z"], v_star) <= 1e-8
    assert rel(stats["hypergrad"], r.hypergrad(r.x0)) <= 1e-8
    # the momentum average of the estimates converges to the same vector
    assert rel(state["m"], r.hypergrad(r.x0)) <= 1e-6


def test_borep_normalized_step_has_length_eta():
    r = Ridge()
    algorithm = _frozen(BOREPAlgorithm, r.problem())
    algorithm.outer_optimizer = OuterOptimizer("sgd", 0.05)
    state = algorithm.init_state()
    new_state, _ = algorithm.step(state, 0)
    assert abs(float(torch.linalg.norm(new_state["x"] - state["x"])) - 0.05) <= 1e-12


def test_penalty_gradient_error_is_order_sigma():
    """At fixed sigma the penalty gradient's limit differs from grad h by O(sigma)."""
    r = Ridge()
    exact = r.hypergrad(r.x0)
    errors = []
    for sigma in (1e-1, 1e-2, 1e-3):
        _, stats = _run(_frozen(PenaltyAlgorithm, r.problem(), inner_steps=50, sigma0=sigma,
                                sigma_power=0.0, sigma_min=0.0), 8)
        errors.append(rel(stats["hypergrad"], exact))
    assert errors[0] < 0.5
    for big, small in zip(errors, errors[1:]):
        assert small < big / 5, errors  # ~10x per decade of sigma
    assert errors[-1] <= 1e-2


def test_penalty_schedule():
    r = Ridge()
    algorithm = _frozen(PenaltyAlgorithm, r.problem(), sigma0=1.0, sigma_power=0.5,
                        sigma_min=0.2)
    assert [algorithm.sigma(k) for k in (0, 3, 100)] == [1.0, 0.5, 0.2]


def test_outer_adam_matches_torch_adam():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, generator=gen, dtype=DT)
    grads = [torch.randn(5, generator=gen, dtype=DT) for _ in range(6)]
    ours = OuterOptimizer("adam", 0.1)
    x, state = x0.clone(), ours.init(x0)
    for k, g in enumerate(grads):
        x, state = ours.step(x, g, state, k)
    p = x0.clone().requires_grad_(True)
    reference = torch.optim.Adam([p], lr=0.1)
    for g in grads:
        p.grad = g.clone()
        reference.step()
    assert torch.allclose(x, p.detach(), rtol=0, atol=1e-14)


def test_outer_lr_schedule():
    opt = OuterOptimizer("sgd", lambda k: 1.0 / (k + 1))
    x, state = opt.step(torch.zeros(2), torch.ones(2), opt.init(torch.zeros(2)), 1)
    assert torch.equal(x, torch.full((2,), -0.5))


def test_batch_stream_replays_a_shuffled_loader():
    data = torch.utils.data.DataLoader(torch.arange(10), batch_size=3, shuffle=True)
    first = BatchStream(data, 7, 1, "d")
    seen = [first.next() for _ in range(9)]  # crosses two epoch boundaries (4 batches each)
    assert first.epoch == 2 and first.position == 1
    assert sorted(torch.cat(seen[:4]).tolist()) == list(range(10))
    replay = BatchStream(data, 7, 1, "d")
    replay.restore({"epoch": 1, "position": 2})
    assert torch.equal(replay.next(), seen[6])
    other_seed = BatchStream(data, 8, 1, "d")
    assert not all(torch.equal(a, other_seed.next()) for a in seen[:4])
    assert BatchStream(None, 0, 0, "d").next() is None
