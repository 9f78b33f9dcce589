"""Multi-block bilevel: MultiBlockProblem (the stacked problem), method="mbbo" (BSVRB v1 and
v2) against a closed-form multi-block ridge problem and against aid-cg on the stacked
problem; sampling, resume and input errors."""

from __future__ import annotations

import pytest
import torch

import bilevel
from bilevel.checkpoint import load_checkpoint
from bilevel.multiblock import BlockSampler

DT = torch.float64


class MultiBlockRidge:
    """m ridge regressions sharing per-feature weights e^x (float64, closed forms):

        g_i(x, y) = ||X_i y - t_i||^2 / (2n) + sum_j e^{x_j} y_j^2 / 2
        f_i(x, y) = ||V_i y - s_i||^2 / (2n') + mu ||x||^2 / 2
        (mu > 0 keeps the optimum finite: without it some e^{x_j} run to 0 or infinity)
        H_i = X_i^T X_i / n + diag(e^x),  y_i*(x) = H_i^{-1} X_i^T t_i / n
        grad F(x) = mu x + 1/m sum_i -diag(e^x y_i*) H_i^{-1} grad_y f_i(y_i*)
    """

    mu = 0.05

    def __init__(self, m: int = 5, p: int = 3, n: int = 12, nv: int = 10, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        draw = lambda *shape: torch.randn(*shape, generator=gen, dtype=DT)
        w = draw(m, p)
        self.X, self.V = draw(m, n, p), draw(m, nv, p)
        self.t = torch.einsum("mnp,mp->mn", self.X, w) + 0.5 * draw(m, n)
        self.s = torch.einsum("mnp,mp->mn", self.V, w) + 0.5 * draw(m, nv)
        self.m, self.p = m, p
        self.x0 = 0.3 * draw(p)

    @staticmethod
    def inner(x, y, batch):
        X, t = batch["X"], batch["t"]
        return ((X @ y - t) ** 2).sum() / (2 * X.shape[0]) + (x.exp() * y * y).sum() / 2

    def outer(self, x, y, batch):
        X, t = batch["X"], batch["t"]
        return ((X @ y - t) ** 2).sum() / (2 * X.shape[0]) + self.mu * (x * x).sum() / 2

    def problem(self, y0=None) -> bilevel.MultiBlockProblem:
        y0 = torch.zeros(self.m, self.p, dtype=DT) if y0 is None else y0
        return bilevel.MultiBlockProblem(
            self.outer, self.inner, self.x0, y0,
            {"inner": {"X": self.X, "t": self.t}, "outer": {"X": self.V, "t": self.s}})

    def hessians(self, x):
        return self.X.transpose(1, 2) @ self.X / self.X.shape[1] + torch.diag(x.exp())

    def y_star(self, x):
        rhs = self.X.transpose(1, 2) @ self.t[..., None] / self.X.shape[1]
        return torch.linalg.solve(self.hessians(x), rhs)[..., 0]

    def F(self, x):
        residual = torch.einsum("mnp,mp->mn", self.V, self.y_star(x)) - self.s
        return (residual ** 2).sum(1).mean() / (2 * self.V.shape[1]) + self.mu * (x * x).sum() / 2

    def grad_F(self, x):
        y = self.y_star(x)
        residual = torch.einsum("mnp,mp->mn", self.V, y) - self.s
        f_y = torch.einsum("mnp,mn->mp", self.V, residual) / self.V.shape[1]
        v = torch.linalg.solve(self.hessians(x), f_y[..., None])[..., 0]
        return self.mu * x + (-(x.exp() * y) * v).mean(0)


def solve(problem, **kw):
    return bilevel.solve(problem, method="mbbo", progress=False, seed=0, **kw)


def test_stacked_problem_hypergradient_is_the_closed_form():
    r = MultiBlockRidge()
    x = r.x0
    xx = x.clone().requires_grad_()
    torch.testing.assert_close(torch.autograd.grad(r.F(xx), xx)[0], r.grad_F(x))  # the reference
    problem = r.problem()
    torch.testing.assert_close(problem.outer(x, r.y_star(x)), r.F(x))
    g, _ = bilevel.hypergrad(problem, x, r.y_star(x), method="cg", tol=1e-12)
    torch.testing.assert_close(g, r.grad_F(x), rtol=1e-9, atol=1e-12)


def test_hessian_variant_first_estimate_is_exact_at_the_inner_solution():
    """All blocks, full batches, y0 = y*(x0): the tracked H_i start exact, so the first
    hypergradient estimate (z = G(0)) is grad F(x0) up to round-off."""
    r = MultiBlockRidge()
    seen = []
    solve(r.problem(y0=r.y_star(r.x0)), variant="hessian", outer_steps=1, inner_lr=0.1,
          callback=lambda rec: seen.append(rec["hypergrad"]))
    torch.testing.assert_close(seen[0], r.grad_F(r.x0), rtol=1e-10, atol=1e-13)


def test_hvp_variant_tracks_the_hypergradient_at_a_fixed_x():
    """outer_lr = 0: x stays at x0, each v_i converges to H_i^{-1} grad_y f_i by the tracked
    gradient steps, and the estimate z to grad F(x0)."""
    r = MultiBlockRidge()
    seen = []
    solve(r.problem(y0=r.y_star(r.x0)), variant="hvp", outer_steps=150, outer_lr=0.0,
          outer_optimizer="sgd", callback=lambda rec: seen.append(rec["hypergrad"]))
    exact = r.grad_F(r.x0)
    assert (seen[0] - exact).norm() > 0.5 * exact.norm()  # v = 0 at the start
    torch.testing.assert_close(seen[-1], exact, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def stacked_optimum():
    """x* of the ridge problem by aid-cg on the stacked (block-diagonal) problem."""
    r = MultiBlockRidge()
    ref = bilevel.solve(r.problem(), method="aid-cg", progress=False, seed=0, inner_steps=20,
                        solve_tol=1e-10, outer_steps=40, outer_optimizer="sgd", outer_lr=8.0,
                        lr_every=1000)
    assert r.grad_F(ref.x).norm() < 1e-9  # aid-cg reached the closed-form optimum
    return ref.x


@pytest.mark.parametrize("variant", ["hessian", "hvp"])
def test_all_blocks_full_batch_reaches_the_stacked_aid_cg_optimum(variant, stacked_optimum):
    r = MultiBlockRidge()
    res = solve(r.problem(), variant=variant, outer_steps=110, outer_optimizer="sgd",
                outer_lr=4.0)
    assert r.grad_F(res.x).norm() < 1e-5
    torch.testing.assert_close(res.x, stacked_optimum, rtol=0, atol=1e-4)
    torch.testing.assert_close(res.y, r.y_star(res.x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("variant", ["hessian", "hvp"])
def test_sampled_blocks_and_rows_approach_the_optimum(variant, stacked_optimum):
    r = MultiBlockRidge()
    res = solve(r.problem(), variant=variant, blocks_per_step=2, samples_per_block=6,
                outer_steps=60)
    gap0 = float(r.F(r.x0) - r.F(stacked_optimum))
    assert float(r.F(res.x) - r.F(stacked_optimum)) < 0.1 * gap0


@pytest.mark.parametrize("variant", ["hessian", "hvp"])
def test_default_per_block_steps_are_stable_where_one_over_lambda_max_is_not(variant):
    """gamma = 1, alpha = 0.9, x fixed: the y recursion with the MSVR correction contracts
    for tau lambda <= 1/(1 + gamma) (the default per block) and diverges at tau lambda = 1."""
    r = MultiBlockRidge()
    lam_max = float(torch.linalg.eigvalsh(r.hessians(r.x0))[:, -1].max())
    kw = {"variant": variant, "outer_steps": 80, "outer_lr": 0.0, "outer_optimizer": "sgd"}
    default = solve(r.problem(), **kw)
    start = default.history[0]["inner_grad_norm"]
    assert default.history[-1]["inner_grad_norm"] < 1e-3 * start
    too_long = solve(r.problem(), inner_lr=1.0 / lam_max, **kw)
    assert too_long.history[-1]["inner_grad_norm"] > 10 * start


def test_preconditioned_inner_steps_do_not_lag_on_ill_conditioned_blocks(stacked_optimum):
    """x fixed, one feature scaled 30x (condition numbers ~1e3): the gradient step on y_i
    (tau lambda_max = 1/2) barely moves along the small eigenvalues, the step with the
    tracked Hessian's inverse (precondition=True) converges; all blocks, full batches, it
    also reaches the stacked optimum."""
    r = MultiBlockRidge()
    r.X[..., 0] *= 30.0
    kw = {"variant": "hessian", "outer_steps": 40, "outer_lr": 0.0, "outer_optimizer": "sgd"}
    gradient, newton = (solve(r.problem(), precondition=flag, **kw) for flag in (False, True))
    start = newton.history[0]["inner_grad_norm"]
    assert newton.history[-1]["inner_grad_norm"] < 1e-5 * start    # about 0.7 per step
    assert gradient.history[-1]["inner_grad_norm"] > 0.05 * start  # stalls near 0.08
    r = MultiBlockRidge()
    res = solve(r.problem(), variant="hessian", precondition=True, outer_steps=110,
                outer_optimizer="sgd", outer_lr=4.0)
    torch.testing.assert_close(res.x, stacked_optimum, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="precondition=True needs variant='hessian'"):
        solve(r.problem(), precondition=True)


def test_sampler_is_a_pure_function_of_seed_and_step():
    sampler = BlockSampler(10, 7, 5, blocks_per_step=3, samples_per_block=4, seed=1)
    blocks, rows_in, rows_out = sampler.draw(4)
    again = BlockSampler(10, 7, 5, 3, 4, seed=1).draw(4)
    for a, b in zip((blocks, rows_in, rows_out), again):
        assert torch.equal(a, b)
    assert rows_in.shape == (3, 4) and rows_out.shape == (3, 4)
    assert all(len(set(row.tolist())) == 4 for row in rows_in)  # without replacement
    assert int(rows_in.max()) < 7 and int(rows_out.max()) < 5
    # an epoch of 10 // 3 = 3 steps visits 9 distinct blocks
    epoch = torch.cat([sampler.draw(k)[0] for k in range(3)])
    assert len(set(epoch.tolist())) == 9


class Killed(Exception):
    pass


@pytest.mark.parametrize("variant", ["hessian", "hvp"])
def test_resume_from_checkpoint_gives_identical_iterates(tmp_path, variant):
    """A run killed mid-way (here: by its callback, after the checkpoint of step 4) and
    resumed from the file reproduces the uninterrupted run bit for bit."""
    r = MultiBlockRidge()
    kw = {"variant": variant, "blocks_per_step": 2, "samples_per_block": 5}
    straight = solve(r.problem(), outer_steps=8, **kw)
    path = tmp_path / "run.pt"

    def kill(record: dict) -> None:
        if record["step"] == 4:
            raise Killed

    with pytest.raises(Killed):
        solve(r.problem(), outer_steps=8, checkpoint=path, checkpoint_every=2, callback=kill,
              **kw)
    assert load_checkpoint(path)["step"] == 4  # the resumed run starts there
    resumed = solve(r.problem(), outer_steps=8, checkpoint=path, **kw)
    assert torch.equal(resumed.x, straight.x) and torch.equal(resumed.y, straight.y)
    assert [h["outer_loss"] for h in resumed.history] == \
        [h["outer_loss"] for h in straight.history]


def test_bad_inputs_are_named():
    r = MultiBlockRidge()
    data = {"inner": {"X": r.X, "t": r.t}, "outer": {"X": r.V, "t": r.s}}
    with pytest.raises(ValueError, match="leading dimension must be the number of blocks m = 5"):
        bilevel.MultiBlockProblem(r.outer, r.inner, r.x0, torch.zeros(4, r.p, dtype=DT), data)
    with pytest.raises(ValueError, match="disagree on"):
        bad = {"inner": {"X": r.X, "t": r.t[:, :-1]}, "outer": data["outer"]}
        bilevel.MultiBlockProblem(r.outer, r.inner, r.x0, torch.zeros(5, r.p, dtype=DT), bad)
    with pytest.raises(ValueError, match="block_data.inner has 5 blocks but block_data.outer"):
        bad = {"inner": data["inner"], "outer": {"X": r.V[:4], "t": r.s[:4]}}
        bilevel.MultiBlockProblem(r.outer, r.inner, r.x0, torch.zeros(5, r.p, dtype=DT), bad)
    with pytest.raises(ValueError, match="exactly the keys 'inner' and 'outer'"):
        bilevel.MultiBlockProblem(r.outer, r.inner, r.x0, torch.zeros(5, r.p, dtype=DT),
                                  {"train": data["inner"]})
    problem = r.problem()
    with pytest.raises(ValueError, match=r"blocks_per_step must be an integer in \[1, m = 5\]"):
        solve(problem, blocks_per_step=6)
    with pytest.raises(ValueError, match=r"samples_per_block .* \[1, 10\]"):
        solve(problem, samples_per_block=11)
    with pytest.raises(ValueError, match="variant must be one of"):
        solve(problem, variant="newton")
    with pytest.raises(TypeError, match="needs a bilevel.MultiBlockProblem"):
        bilevel.solve(bilevel.BilevelProblem(r.outer, r.inner, r.x0, torch.zeros(r.p, dtype=DT),
                                             outer_data=[{"X": r.V[0], "t": r.s[0]}],
                                             inner_data=[{"X": r.X[0], "t": r.t[0]}]),
                      method="mbbo", progress=False)


def test_multiblock_tuning_shards_rows_into_blocks():
    from bilevel.tasks import multiblock_tuning

    gen = torch.Generator().manual_seed(0)
    X, Xv = torch.randn(170, 4, generator=gen), torch.randn(90, 4, generator=gen)
    w = torch.randn(4, generator=gen)
    labels = lambda A: (A @ w + 0.5 * torch.randn(A.shape[0], generator=gen) > 0).long()
    y, yv = labels(X), labels(Xv)
    problem = multiblock_tuning(X, y, Xv, yv, n_blocks=8, dtype=DT)
    assert problem.n_blocks == 8 and problem.block_data.n_inner == 21  # 170 // 8, 2 left out
    assert problem.block_data.n_outer == 11
    assert problem.y0.shape == (8, 5) and problem.x0.shape == (4,)
    torch.testing.assert_close(problem.block_data.inner["X"][1, 0], X[21].to(DT))
    torch.testing.assert_close(problem.block_data.outer["t"][0], 2.0 * yv[:11].to(DT) - 1)
    res = bilevel.solve(problem, method="mbbo", blocks_per_step=4, samples_per_block=10,
                        outer_steps=15, progress=False, seed=0)
    assert res.history[-1]["outer_loss"] < res.history[0]["outer_loss"]
    with pytest.raises(ValueError, match="fewer than n_blocks=200"):
        multiblock_tuning(X, y, Xv, yv, n_blocks=200)
