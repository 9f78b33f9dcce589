"""PowerIterationNet (l2o.net.power): the unrolled power iteration with learned steps against
the plain power iteration, the Chebyshev initialization against its closed form, batches,
checkpoints and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch

import l2o
from l2o.datasets import pagerank
from l2o.net import (
    PowerIterationNet,
    kkt_error,
    load_model,
    lp_to_graph,
    predict_warm_start,
    save_model,
    unscale_solution,
)
from l2o.net.power import chebyshev_steps


def power_iterate(lp, steps) -> torch.Tensor:
    """x <- x + alpha (l - A x) on the rank rows from x = 1/n (the reference, float64)."""
    n = lp.num_cols
    x = torch.full((n,), 1.0 / n, dtype=torch.float64)
    lower = lp.row_lower[:n].double()
    for alpha in steps:
        x = x + alpha * (lower - (lp.A @ x)[:n])
    return x


def model_with_steps(steps, scaling: bool) -> PowerIterationNet:
    model = PowerIterationNet(steps=len(steps), scaling=scaling).double()
    with torch.no_grad():
        model.step_sizes.copy_(torch.tensor(steps, dtype=torch.float64))
    return model


@pytest.mark.parametrize("scaling", [False, True])
def test_the_iterates_are_the_power_iteration_on_the_lp_and_its_preconditioned_graph(scaling):
    # unit steps: K power iterations; other steps: the same Jacobi steps; the preconditioning
    # cancels (row factors in D^-1 (l - A x), column factors in x~ = x / scale)
    lps = [pagerank(300, seed=1), pagerank(450, seed=2, damping=0.7)]
    for steps in ([1.0] * 7, [0.7, 2.1, 1.3]):
        model = model_with_steps(steps, scaling)
        graphs = [lp_to_graph(lp, scaling=scaling, reverse=False) for lp in lps]
        for lp, graph in zip(lps, graphs):
            x, y = unscale_solution(graph, *model(graph))
            torch.testing.assert_close(x, power_iterate(lp, steps), rtol=1e-12, atol=0)
            assert y.shape == (lp.num_rows,) and torch.count_nonzero(y) == 0
        # a PyG batch (rows and columns shifted separately) gives each graph's own iterates
        batch = Batch.from_data_list(graphs)
        together = unscale_solution(batch, *model(batch))[0]
        alone = torch.cat([unscale_solution(g, *model(g))[0] for g in graphs])
        torch.testing.assert_close(together, alone, rtol=1e-13, atol=0)


@pytest.mark.parametrize("steps, spread", [(1, 0.5), (6, 0.6), (12, 0.6), (9, 0.85)])
def test_chebyshev_steps_give_the_minimax_polynomial(steps, spread):
    # prod_k (1 - alpha_k t) on [1 - s, 1 + s] is T_K((1 - t) / s) / T_K(1 / s): its largest
    # magnitude there is 1 / T_K(1 / s) = 1 / cosh(K arccosh(1 / s))
    alphas = chebyshev_steps(steps, spread)
    t = torch.linspace(1 - spread, 1 + spread, 2001, dtype=torch.float64)
    p = torch.prod(1 - alphas.unsqueeze(1) * t, dim=0)
    bound = 1.0 / math.cosh(steps * math.acosh(1.0 / spread))
    assert p.abs().max().item() == pytest.approx(bound, rel=1e-6)
    assert sorted(alphas.tolist()) == pytest.approx(sorted(set(alphas.tolist())))  # distinct
    with pytest.raises(ValueError, match="0 < spread < 1"):
        chebyshev_steps(4, 1.0)


def test_chebyshev_steps_beat_the_same_number_of_power_iterations():
    lp = pagerank(2000, seed=3)
    zeros = torch.zeros(lp.num_rows, dtype=torch.float64)
    power = kkt_error(lp, power_iterate(lp, [1.0] * 12), zeros)["rel_primal_residual"]
    model = PowerIterationNet(steps=12).double()
    ws = predict_warm_start(model, lp, "cpu")
    chebyshev = kkt_error(lp, ws.x, ws.y)["rel_primal_residual"]
    assert chebyshev < 0.1 * power


def test_checkpoint_round_trip_and_bad_graphs(tmp_path):
    model = model_with_steps([0.8, 1.9, 0.6], scaling=True)
    save_model(model, tmp_path / "p.pt", config={"note": "test"})
    loaded = load_model(tmp_path / "p.pt")
    assert isinstance(loaded, PowerIterationNet) and loaded.config == model.config
    assert torch.equal(loaded.step_sizes, model.step_sizes)
    lp = pagerank(200, seed=4)
    assert torch.equal(predict_warm_start(loaded, lp).x, predict_warm_start(model, lp).x)
    with pytest.raises(ValueError, match="not a PageRank LP graph"):
        model(lp_to_graph(l2o.load_example("afiro"), scaling=True))
    with pytest.raises(ValueError, match="works on scaled graphs"):
        model(lp_to_graph(lp, scaling=False))


def test_cli_refuses_the_pagerank_model_on_another_lp():
    # exit code 3 (an input the model cannot use) with the reason, not an internal error
    import os
    import subprocess
    import sys
    from pathlib import Path

    afiro = Path(l2o.__file__).resolve().parent / "data" / "afiro.mps.gz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "l2o", "solve", str(afiro), "--model", "pagerank",
                           "--device", "cpu"], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 3, done.stderr
    assert "the model does not fit this LP" in done.stderr
    assert "not a PageRank LP graph" in done.stderr
