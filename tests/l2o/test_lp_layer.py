"""LPLayer and the Fenchel-Young loss (l2o.diff): value gradients against a hand-solved LP, HiGHS's
duals and central finite differences of the optimal value; the perturbed optimizer's forward and
Jacobian against the closed form of a two-way choice and against finite differences of the
smoothed solution with common random numbers; the Fenchel-Young gradient against its closed
form; bad inputs.  CPU, float64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import l2o
from bilevel.linalg.operators import csr_tensor
from l2o.diff import LPLayer, LPNotOptimalError, fenchel_young_loss
from l2o.lp import InvalidLPError, LinearProgram, solve_highs

NETLIB = Path(__file__).resolve().parents[1] / "data" / "lp" / "netlib"   # bundled
inf = float("inf")
TOL = 1e-8


def small_max_lp() -> LinearProgram:
    """max 3 x1 + 2 x2  s.t.  x1 + x2 <= 4,  x1 + 3 x2 <= 9,  0 <= x1 <= 3,  x2 >= 0.

    x* = (3, 1), V = 11; row 1 and x1's upper bound active, row 2 slack.  Own-sense duals: 2 on
    row 1, 1 on x1 <= 3; minimization form (min -3 x1 - 2 x2): y = (-2, 0), r = (-1, 0).
    """
    return LinearProgram.create([3.0, 2.0], [[1.0, 1.0], [1.0, 3.0]], [-inf, -inf], [4.0, 9.0],
                                [0.0, 0.0], [3.0, inf], sense="maximize", name="small_max")


def afiro_generic() -> LinearProgram:
    """NETLIB afiro with its costs and finite bounds moved by a seeded noise of relative size
    1e-3 (lower bounds down, upper bounds up, equality rows as one): the original has ties in
    both its primal and dual optima (kinks of the optimal value), the moved one a unique, strictly
    complementary optimum where the value is differentiable."""
    lp = l2o.read_lp(NETLIB / "afiro.mps.gz")
    gen = torch.Generator().manual_seed(3)

    def noise(v):
        shift = 1e-3 * (1 + v.abs()) * torch.rand(v.shape, generator=gen, dtype=v.dtype)
        return torch.where(torch.isfinite(v), shift, torch.zeros_like(v))

    lp.c = lp.c + noise(lp.c)
    equal = lp.row_lower == lp.row_upper
    row_lower = lp.row_lower - noise(lp.row_lower)
    lp.row_upper = torch.where(equal, row_lower, lp.row_upper + noise(lp.row_upper))
    lp.row_lower = row_lower
    lp.col_lower = lp.col_lower - noise(lp.col_lower)
    lp.col_upper = lp.col_upper + noise(lp.col_upper)
    return lp


def with_inputs(lp: LinearProgram, inputs) -> LinearProgram:
    """``lp`` with (c, A_values, row_lower, row_upper, col_lower, col_upper) replaced."""
    c, values, rl, ru, cl, cu = (t.detach() for t in inputs)
    A = csr_tensor(lp.A.crow_indices(), lp.A.col_indices(), values, tuple(lp.A.shape))
    return LinearProgram(c=c, A=A, row_lower=rl, row_upper=ru, col_lower=cl, col_upper=cu,
                         sense=lp.sense)


def value_and_gradients(layer: LPLayer, inputs):
    leaves = [t.clone().requires_grad_() for t in inputs]
    x, value = layer(*leaves)
    value.sum().backward()
    return x, value.detach(), [t.grad for t in leaves]


def highs_value(lp: LinearProgram, inputs) -> float:
    result = solve_highs(with_inputs(lp, inputs))
    assert result.status == l2o.LPStatus.OPTIMAL
    return result.objective


def central_differences(lp: LinearProgram, inputs, which: int, direction, h: float) -> float:
    """(V(data + h d) - V(data - h d)) / 2h for input ``which`` moved along ``direction``."""
    values = []
    for step in (h, -h):
        moved = list(inputs)
        moved[which] = inputs[which] + step * direction
        values.append(highs_value(lp, moved))
    return (values[0] - values[1]) / (2 * h)


def random_direction(like: torch.Tensor, seed: int, fixed=None) -> torch.Tensor:
    """A random direction that leaves infinite entries (infinite bounds) and the ``fixed`` ones
    alone."""
    d = torch.randn(like.shape, generator=torch.Generator().manual_seed(seed), dtype=like.dtype)
    keep = torch.isfinite(like) if fixed is None else torch.isfinite(like) & ~fixed
    return torch.where(keep, d, torch.zeros_like(d))


# -- mode="value" ------------------------------------------------------------------------------

def test_value_gradients_of_the_hand_solved_lp():
    lp = small_max_lp()
    layer = LPLayer.from_lp(lp, device="cpu")
    x, value, (g_c, g_A, g_rl, g_ru, g_cl, g_cu) = value_and_gradients(layer,
                                                                        LPLayer.lp_inputs(lp))
    assert torch.allclose(x, torch.tensor([3.0, 1.0], dtype=torch.float64), atol=1e-6)
    assert float(value) == pytest.approx(11.0, abs=1e-6)
    expected = {  # the own-sense sensitivities of the docstring's maximization
        "c": (g_c, [3.0, 1.0]), "row_lower": (g_rl, [0.0, 0.0]), "row_upper": (g_ru, [2.0, 0.0]),
        "col_lower": (g_cl, [0.0, 0.0]), "col_upper": (g_cu, [1.0, 0.0]),
        # A's entries (0,0), (0,1), (1,0), (1,1): +y x^T with the minimization-form y = (-2, 0)
        "A_values": (g_A, [-6.0, -2.0, 0.0, 0.0])}
    for name, (got, want) in expected.items():
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-6), name


@pytest.mark.parametrize("make_lp", [small_max_lp, afiro_generic], ids=["small_max", "afiro"])
def test_value_gradients_match_central_differences(make_lp):
    lp = make_lp()
    inputs = LPLayer.lp_inputs(lp)
    _, value, grads = value_and_gradients(LPLayer.from_lp(lp, device="cpu", tol=TOL), inputs)
    assert float(value) == pytest.approx(highs_value(lp, inputs), rel=1e-7)
    # an equality row's bounds move together (one alone would cross the other)
    equality_rows = inputs[2] == inputs[3]
    fixed = (None, None, equality_rows, equality_rows, None, None)
    for which, name in enumerate(("c", "A_values", "row_lower", "row_upper", "col_lower",
                                  "col_upper")):
        direction = random_direction(inputs[which], seed=which, fixed=fixed[which])
        if not bool(direction.any()):
            continue  # every bound of this kind is infinite
        h = 1e-7 * (1 + float(inputs[which].nan_to_num(posinf=0, neginf=0).abs().max()))
        fd = central_differences(lp, inputs, which, direction, h)
        analytic = float(grads[which] @ direction)
        assert analytic == pytest.approx(fd, rel=1e-4, abs=1e-5 * (1 + abs(fd))), name
    if bool(equality_rows.any()):
        d = random_direction(inputs[2], seed=9) * equality_rows
        h = 1e-7 * (1 + float(inputs[2][equality_rows].abs().max()))
        values = []
        for step in (h, -h):
            moved = list(inputs)
            moved[2], moved[3] = inputs[2] + step * d, inputs[3] + step * d
            values.append(highs_value(lp, moved))
        fd = (values[0] - values[1]) / (2 * h)
        assert float((grads[2] + grads[3]) @ d) == pytest.approx(fd, rel=1e-4)


def test_value_gradients_are_highs_duals():
    lp = afiro_generic()
    ref = solve_highs(lp)
    _, _, (g_c, g_A, g_rl, g_ru, g_cl, g_cu) = value_and_gradients(
        LPLayer.from_lp(lp, device="cpu"), LPLayer.lp_inputs(lp))
    y, r = ref.y, ref.reduced_costs           # minimization form (lp minimizes)
    finite = lambda v: torch.isfinite(v).double()
    scale = 1 + float(y.abs().max())
    assert torch.allclose(g_c, ref.x, atol=1e-5 * (1 + float(ref.x.abs().max())))
    assert torch.allclose(g_rl, y.clamp(min=0) * finite(lp.row_lower), atol=1e-6 * scale)
    assert torch.allclose(g_ru, y.clamp(max=0) * finite(lp.row_upper), atol=1e-6 * scale)
    assert torch.allclose(g_cl, r.clamp(min=0) * finite(lp.col_lower), atol=1e-6 * scale)
    assert torch.allclose(g_cu, r.clamp(max=0) * finite(lp.col_upper), atol=1e-6 * scale)
    dense = -torch.outer(y, ref.x)
    rows = torch.repeat_interleave(torch.arange(lp.num_rows), lp.A.crow_indices().diff())
    assert torch.allclose(g_A, dense[rows, lp.A.col_indices()],
                          atol=1e-5 * scale * (1 + float(ref.x.abs().max())))


def test_a_batch_with_shared_inputs_sums_their_gradients():
    lp = small_max_lp()
    c, values, rl, ru, cl, cu = LPLayer.lp_inputs(lp)
    costs = torch.stack([c, c * 2, torch.tensor([1.0, 4.0], dtype=torch.float64)])
    layer = LPLayer.from_lp(lp, device="cpu")
    costs.requires_grad_()
    shared = ru.clone().requires_grad_()
    x, value = layer(costs, values, rl, shared, cl, cu)
    assert x.shape == (3, 2) and value.shape == (3,)
    value.sum().backward()
    for b in range(3):
        single_x, single_value, grads = value_and_gradients(
            layer, (costs[b].detach(), values, rl, ru, cl, cu))
        assert single_x.shape == (2,) and single_value.shape == ()
        assert torch.allclose(x[b], single_x, atol=1e-6)
        assert torch.allclose(costs.grad[b], grads[0], atol=1e-6)
        if b == 0:
            total = grads[3]
        else:
            total = total + grads[3]
    assert torch.allclose(shared.grad, total, atol=1e-6)


# -- mode="perturbed" --------------------------------------------------------------------------

def two_way_choice(sense: str = "maximize") -> LinearProgram:
    """Choose one of two items: x1 + x2 = 1, x >= 0.  For a maximization,
    x_eps(c)_1 = P(c1 + eps Z1 > c2 + eps Z2) = Phi((c1 - c2) / (eps sqrt 2))."""
    return LinearProgram.create([0.3, 0.0], [[1.0, 1.0]], [1.0], [1.0], sense=sense)


def test_perturbed_mean_and_jacobian_match_the_closed_form():
    lp, eps, samples = two_way_choice(), 1.0, 2000
    layer = LPLayer.from_lp(lp, device="cpu", mode="perturbed", eps=eps, samples=samples,
                            seed=0, tol=1e-6)
    c, *data = LPLayer.lp_inputs(lp)
    c = c.clone().requires_grad_()
    x, _ = layer(c, *data)
    normal = torch.distributions.Normal(0.0, 1.0)
    t = torch.tensor((0.3 - 0.0) / (eps * 2 ** 0.5), dtype=torch.float64)
    p = float(normal.cdf(t))
    dp = float(normal.log_prob(t).exp()) / (eps * 2 ** 0.5)   # dp/dc1 = -dp/dc2
    assert float(x[0].detach()) == pytest.approx(p, abs=4 * (p * (1 - p) / samples) ** 0.5)
    x[0].backward()                                            # row 1 of J: (dp, -dp)
    stderr = 0.5 / (eps * samples ** 0.5)                      # |x - x_bar| <= 1, E|Z|^2 = 1
    assert float(c.grad[0]) == pytest.approx(dp, abs=4 * stderr)
    assert float(c.grad[1]) == pytest.approx(-dp, abs=4 * stderr)


def test_perturbed_jacobian_is_the_derivative_of_the_smoothed_solution_with_common_numbers():
    """With the samples' solutions x_s = x*(c + eps Z_s) fixed (common random numbers), the
    self-normalized likelihood-ratio estimate x_hat(c') = sum_s w_s(c') x_s / sum_s w_s(c'),
    w_s(c') = phi((c + eps Z_s - c') / eps) / phi(Z_s) (phi the N(0, I) density), is the smoothed solution at c' from the
    same solves; x_hat(c) = x_bar, and its derivative at c is (S - 1) / S times the layer's J
    (l2o.diff.perturbed)."""
    lp = afiro_generic()
    eps, samples = 5.0, 6
    layer = LPLayer.from_lp(lp, device="cpu", mode="perturbed", eps=eps, samples=samples, seed=1)
    c, *data = LPLayer.lp_inputs(lp)
    noise = layer.noise(1)[0]                                  # (S, n): the forward's Z
    solutions, _ = LPLayer.from_lp(lp, device="cpu")(c + eps * noise, *data)   # x_s (S, n)
    assert len({tuple(x.round(decimals=4).tolist()) for x in solutions}) > 1  # J is not 0

    def smoothed(c_prime):
        # log phi((u_s - c') / eps) - log phi(Z_s), u_s = c + eps Z_s
        log_w = (((eps * noise) ** 2).sum(-1) - ((c + eps * noise - c_prime) ** 2).sum(-1)
                 ) / (2 * eps ** 2)
        w = torch.softmax(log_w, 0)
        return (w[:, None] * solutions).sum(0)

    leaf = c.clone().requires_grad_()
    x_bar, _ = layer(leaf, *data)
    assert torch.allclose(x_bar, solutions.mean(0), atol=1e-6)
    assert torch.allclose(x_bar, smoothed(c), atol=1e-6)
    g = torch.randn(lp.num_cols, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    v = torch.randn(lp.num_cols, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    (x_bar @ g).backward()                                     # leaf.grad = J^T g
    h = 1e-4
    fd = float((smoothed(c + h * v) - smoothed(c - h * v)) @ g) / (2 * h)
    assert float(leaf.grad @ v) * (samples - 1) / samples == pytest.approx(fd, rel=1e-6)


def test_perturbed_value_gradient_is_the_smoothed_solution():
    lp = small_max_lp()
    layer = LPLayer.from_lp(lp, device="cpu", mode="perturbed", eps=0.5, samples=8, seed=2)
    c, *data = LPLayer.lp_inputs(lp)
    c = torch.stack([c, c + 1]).requires_grad_()
    x, value = layer(c, *data)
    value.sum().backward()
    assert torch.allclose(c.grad, x.detach())


def test_seeded_perturbations_are_common_random_numbers():
    lp = small_max_lp()
    c, *data = LPLayer.lp_inputs(lp)
    seeded = LPLayer.from_lp(lp, device="cpu", mode="perturbed", eps=2.0, samples=4, seed=7)
    assert torch.equal(seeded.noise(3), seeded.noise(3))
    assert torch.equal(seeded(c, *data)[0], seeded(c, *data)[0])
    fresh = LPLayer.from_lp(lp, device="cpu", mode="perturbed", eps=2.0, samples=4)
    assert not torch.equal(fresh.noise(3), fresh.noise(3))


def test_perturbed_mode_refuses_gradients_it_does_not_give():
    lp = small_max_lp()
    c, values, *bounds = LPLayer.lp_inputs(lp)
    layer = LPLayer.from_lp(lp, device="cpu", mode="perturbed", samples=2)
    with pytest.raises(ValueError, match="A_values requires grad"):
        layer(c, values.clone().requires_grad_(), *bounds)


# -- the Fenchel-Young loss --------------------------------------------------------------------

@pytest.mark.parametrize("sense", ["minimize", "maximize"])
def test_fenchel_young_gradient_is_its_closed_form(sense):
    lp = small_max_lp()
    lp.sense = sense
    lp.col_upper = torch.tensor([3.0, 3.0], dtype=torch.float64)  # bounded for both senses
    layer = LPLayer.from_lp(lp, device="cpu", mode="perturbed", eps=1.0, samples=8, seed=4)
    _, *data = LPLayer.lp_inputs(lp)
    c_hat = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [2.0, -3.0]], dtype=torch.float64)
    x_true = torch.tensor([[3.0, 1.0], [0.0, 3.0], [1.5, 0.5]], dtype=torch.float64)
    leaf = c_hat.clone().requires_grad_()
    losses = fenchel_young_loss(leaf, x_true, layer, *data, reduction="none")
    losses.sum().backward()
    x_eps, _ = layer(c_hat, *data)                             # the same Z (seeded)
    expected = x_true - x_eps if sense == "minimize" else x_eps - x_true
    assert torch.allclose(leaf.grad, expected, atol=1e-6)
    mean = fenchel_young_loss(c_hat, x_true, layer, *data)
    assert float(mean) == pytest.approx(float(losses.mean()), rel=1e-9)
    # at the target the loss is lowest: x_true optimal for c_hat loses less than a wrong one
    optimal = LPLayer.from_lp(lp, device="cpu")(c_hat, *data)[0]
    wrong = optimal.roll(1, 0)
    assert bool((fenchel_young_loss(c_hat, optimal, layer, *data, reduction="none")
                 < fenchel_young_loss(c_hat, wrong, layer, *data, reduction="none")).all())


def test_fenchel_young_loss_needs_a_perturbed_layer():
    lp = small_max_lp()
    c, *data = LPLayer.lp_inputs(lp)
    with pytest.raises(ValueError, match="mode='perturbed'"):
        fenchel_young_loss(c, c, LPLayer.from_lp(lp, device="cpu"), *data)
    layer = LPLayer.from_lp(lp, device="cpu", mode="perturbed", samples=2)
    with pytest.raises(ValueError, match="x_true has shape"):
        fenchel_young_loss(c, c[:1], layer, *data)


# -- bad inputs --------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    lp = small_max_lp()
    layer = LPLayer.from_lp(lp, device="cpu")
    c, values, rl, ru, cl, cu = LPLayer.lp_inputs(lp)
    batch = torch.stack([c, c])
    nan_c = batch.clone()
    nan_c[1, 0] = float("nan")
    with pytest.raises(InvalidLPError, match=r"c\[1, 0\] is nan"):
        layer(nan_c, values, rl, ru, cl, cu)
    with pytest.raises(InvalidLPError, match=r"A_values\[0, 2\] is inf"):
        layer(c, torch.tensor([1.0, 1.0, inf, 3.0], dtype=torch.float64), rl, ru, cl, cu)
    crossed = torch.stack([cl, torch.tensor([5.0, 0.0], dtype=torch.float64)])
    with pytest.raises(InvalidLPError, match=r"col bound \[1, 0\] has lower bound > upper"):
        layer(batch, values, rl, ru, crossed, cu)
    with pytest.raises(InvalidLPError, match=r"row_upper has shape \(3,\)"):
        layer(c, values, rl, torch.zeros(3, dtype=torch.float64), cl, cu)
    with pytest.raises(InvalidLPError, match="disagree on the batch size"):
        layer(batch, torch.stack([values] * 3), rl, ru, cl, cu)
    with pytest.raises(InvalidLPError, match="floating-point"):
        layer(torch.tensor([3, 2]), values, rl, ru, cl, cu)


def test_bad_patterns_and_options_raise():
    crow, col = torch.tensor([0, 2, 4]), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="crow must have"):
        LPLayer(crow[:2], col, (2, 2))
    with pytest.raises(ValueError, match="col has indices outside"):
        LPLayer(crow, torch.tensor([0, 1, 0, 2]), (2, 2))
    with pytest.raises(ValueError, match="repeats an entry"):
        LPLayer(crow, torch.tensor([0, 0, 0, 1]), (2, 2))
    with pytest.raises(ValueError, match="mode must be"):
        LPLayer(crow, col, (2, 2), mode="implicit")
    with pytest.raises(ValueError, match="eps must be"):
        LPLayer(crow, col, (2, 2), mode="perturbed", eps=0.0)
    with pytest.raises(ValueError, match="samples must be"):
        LPLayer(crow, col, (2, 2), mode="perturbed", samples=0)


def test_a_non_optimal_lp_of_the_batch_is_named():
    lp = small_max_lp()
    layer = LPLayer.from_lp(lp, device="cpu")
    c, values, rl, ru, cl, cu = LPLayer.lp_inputs(lp)
    # instance 1: x1 + x2 <= -1 with x >= 0 is infeasible
    upper = torch.stack([ru, torch.tensor([-1.0, 9.0], dtype=torch.float64)])
    with pytest.raises(LPNotOptimalError, match="LP 1 of the batch ended primal_infeasible") as e:
        layer(c, values, rl, upper, cl, cu)
    assert e.value.index == 1 and e.value.result.status == l2o.LPStatus.PRIMAL_INFEASIBLE


def test_the_layer_is_exported_lazily_from_l2o():
    assert l2o.LPLayer is LPLayer and l2o.fenchel_young_loss is fenchel_young_loss
    assert "LPLayer" in l2o.__all__ and "fenchel_young_loss" in l2o.__all__
