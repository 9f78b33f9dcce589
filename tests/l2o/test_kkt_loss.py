"""The KKT term of the training loss (l2o.training.loss.kkt_losses) against l2o.net.kkt_error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from l2o import read_lp
from l2o.datasets import generate
from l2o.lp.model import LinearProgram
from l2o.lp.reference import solve_highs
from l2o.net import (
    CON,
    VAR,
    graph_operator,
    kkt_error,
    lp_to_graph,
    project_dual_signs,
    unscale_solution,
)
from l2o.training.loss import instance_losses, kkt_losses

AFIRO = Path(__file__).resolve().parents[1] / "data" / "lp" / "netlib" / "afiro.mps.gz"


def lps() -> list[LinearProgram]:
    """Row types =, >=, <=, ranged; boxed, one-sided and free columns; a maximization."""
    return [read_lp(AFIRO), generate("setcover", rows=12, cols=20, density=0.2, seed=1),
            generate("facility", customers=4, facilities=3, seed=2),
            generate("auction", items=6, bids=15, seed=3)]


def expected_k(lp, x, y) -> float:
    """r_p^2 + r_d^2 + gap^2 of the start the solver would get (x clamped, y sign-projected)."""
    x = torch.clamp(x, lp.col_lower, lp.col_upper)
    e = kkt_error(lp, x, project_dual_signs(lp, y))
    return e["rel_primal_residual"] ** 2 + e["rel_dual_residual"] ** 2 + e["rel_gap"] ** 2


@pytest.mark.parametrize("scaling", [False, True])
def test_kkt_losses_equal_kkt_error_per_instance_of_a_batch(scaling):
    """K_b is the solver's criteria on the original LP, for scaled graphs too (their residuals
    and objectives mapped back with the graph's factors)."""
    gen = torch.Generator().manual_seed(0)
    # K leaves the objective constant out (kkt_error adds it to both objectives): none here
    assert all(lp.minimize_c[1] == 0 for lp in lps())
    graphs = [lp_to_graph(lp, scaling=scaling) for lp in lps()]
    batch = Batch.from_data_list(graphs)
    x = torch.randn(batch[VAR].num_nodes, generator=gen, dtype=torch.float64)
    y = torch.randn(batch[CON].num_nodes, generator=gen, dtype=torch.float64)
    got = kkt_losses(x, y, batch)
    assert got.shape == (len(graphs),)
    expected, n0, m0 = [], 0, 0
    for lp, g in zip(lps(), graphs):
        n, m = g[VAR].num_nodes, g[CON].num_nodes
        # the solver's criteria on the ORIGINAL LP at the unscaled point (x = s_var x~, ...)
        x_lp, y_lp = unscale_solution(g, x[n0:n0 + n], y[m0:m0 + m])
        expected.append(expected_k(lp, x_lp, y_lp))
        n0, m0 = n0 + n, m0 + m
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-10,
                               atol=1e-14)
    assert bool((got > 1e-6).all())          # random points are far from optimal


def test_kkt_losses_vanish_at_an_optimal_pair_and_have_gradients():
    lp = read_lp(AFIRO)
    ref = solve_highs(lp)
    g = lp_to_graph(lp)
    k = kkt_losses(ref.x, ref.y, g)
    assert float(k) < 1e-16
    # gradients exist and are finite at a feasible x too (the squared norm, not its sqrt)
    x = ref.x.clone().requires_grad_()
    y = (ref.y + 0.1).requires_grad_()
    kkt_losses(x, y, g).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert float(y.grad.abs().sum()) > 0


def test_kkt_weight_adds_the_term_to_the_instance_loss():
    graphs = [lp_to_graph(lp, x_star=solve_highs(lp).x, y_star=solve_highs(lp).y)
              for lp in lps()[:2]]
    batch = Batch.from_data_list(graphs)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch[VAR].num_nodes, generator=gen, dtype=torch.float64)
    y = torch.randn(batch[CON].num_nodes, generator=gen, dtype=torch.float64)
    plain, primal, dual, zero = instance_losses(x, y, batch)
    assert torch.equal(zero, torch.zeros(2, dtype=torch.float64))
    total, primal2, dual2, kkt = instance_losses(x, y, batch, kkt_weight=0.5)
    torch.testing.assert_close(kkt, kkt_losses(x, y, batch))
    torch.testing.assert_close(total, plain + 0.5 * kkt)
    assert torch.equal(primal, primal2) and torch.equal(dual, dual2)


def test_scaled_criteria_differ_from_the_original_ones():
    """Why the map back matters: on a preconditioned graph the same point has other residuals
    in the scaled LP's own terms (so the test above could fail if the map were skipped)."""
    lp = lps()[0]
    g = lp_to_graph(lp, scaling=True)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(g[VAR].num_nodes, generator=gen, dtype=torch.float64)
    y = torch.randn(g[CON].num_nodes, generator=gen, dtype=torch.float64)
    A, _ = graph_operator(g, torch.float64)
    scaled_lp = LinearProgram.create(g[VAR].c, A, g[CON].lower, g[CON].upper, g[VAR].lower,
                                     g[VAR].upper)
    k = float(kkt_losses(x, y, g))
    assert abs(expected_k(scaled_lp, x, y) - k) > 1e-3 * k
    assert float(g.objective_unscale) > 1.0     # 1 / (theta_b theta_c)
    assert float(lp_to_graph(lp).objective_unscale) == 1.0
