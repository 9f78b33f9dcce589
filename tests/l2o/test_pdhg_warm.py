"""Warm starts the solver never wastes (issue 13, item 1): a warm-started solve needs at most one
check interval (64 iterations) more than the cold one.

The starts are z* + d with |d| = r |z*| in a random direction, r in {1e-6, 1e-4, 1e-2, 1e-1}
(benchmarks/warmstart_grid.py runs the whole grid: 12 NETLIB LPs and PageRank 1e4, seeds 0-2);
here the small NETLIB LPs with all radii and seeds, PageRank 1e4 with seed 0, and the bundled
PDHG-Net model's start on a PageRank LP never seen in training, and relaxation family models'
starts that are not a sufficient improvement on the cold start, after one iteration or after the
trial of both (the solve drops them: l2o.pdhg.start).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import pytest
import torch

import l2o
from l2o.datasets import generate
from l2o.net import load_model, solve_with_model
from l2o.pdhg import SolverOptions
from l2o.pdhg.restart import PrimalWeightPID, RestartParams
from l2o.pdhg.start import keeps_warm_start

NETLIB = Path(__file__).resolve().parents[1] / "data" / "lp" / "netlib"
FAMILY_MODELS = Path(__file__).resolve().parents[2] / "benchmarks" / "models"
RADII = (1e-6, 1e-4, 1e-2, 1e-1)
ALLOWANCE = 64          # one check interval
TRIAL = SolverOptions().warm_start_trial


@cache
def load(name: str):
    """A NETLIB LP by name, or "pagerank": PageRank with 1e4 nodes."""
    if name == "pagerank":
        return generate("pagerank", nodes=10_000, seed=0)
    return l2o.read_lp(NETLIB / f"{name}.mps.gz")


@cache
def optimum(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    ref = l2o.solve_lp(load(name), tol=1e-10, device="cpu")
    assert ref.status == l2o.LPStatus.OPTIMAL
    return ref.x, ref.y


@cache
def cold_iterations(name: str, tol: float) -> int:
    return l2o.solve_lp(load(name), tol=tol, device="cpu").iterations


def perturbed(name: str, radius: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z* + d, |d| = radius |z*|, d in a random direction of (x, y) (unprojected)."""
    x, y = optimum(name)
    g = torch.randn(x.numel() + y.numel(), generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    d = radius * float(torch.linalg.vector_norm(torch.cat([x, y]))) / float(g.norm()) * g
    return x + d[:x.numel()], y + d[x.numel():]


@pytest.mark.parametrize("tol", [1e-4, 1e-8])
@pytest.mark.parametrize("name", ["afiro", "sc50a", "sc50b"])
def test_perturbed_optimum_costs_at_most_one_check_more_than_cold(name, tol):
    cold = cold_iterations(name, tol)
    for radius in RADII:
        for seed in range(3):
            warm = l2o.solve_lp(load(name), tol=tol, device="cpu",
                                warm_start=perturbed(name, radius, seed))
            assert warm.status == l2o.LPStatus.OPTIMAL
            assert warm.iterations <= cold + ALLOWANCE, (radius, seed, warm.iterations, cold)


@pytest.mark.parametrize("tol", [1e-4, 1e-8])
def test_perturbed_pagerank_costs_at_most_one_check_more_than_cold(tol):
    cold = cold_iterations("pagerank", tol)
    for radius in RADII:
        warm = l2o.solve_lp(load("pagerank"), tol=tol, device="cpu",
                            warm_start=perturbed("pagerank", radius, 0))
        assert warm.status == l2o.LPStatus.OPTIMAL
        assert warm.iterations <= cold + ALLOWANCE, (radius, warm.iterations, cold)


def test_near_optimal_start_needs_fewer_iterations_than_cold():
    # the comparison with the cold start keeps a good start: it pays
    warm = l2o.solve_lp(load("sc50a"), tol=1e-8, device="cpu",
                        warm_start=perturbed("sc50a", 1e-6, 0))
    assert warm.iterations < cold_iterations("sc50a", 1e-8) / 2


def test_start_farther_from_a_fixed_point_is_the_cold_solve_one_iteration_later():
    # z* + d with |d| = 0.1 |z*| has a larger fixed-point error than the cold start on afiro:
    # the solve drops it and goes on exactly as the cold solve (same point), one iteration later
    lp = load("afiro")
    cold = l2o.solve_lp(lp, tol=1e-8, device="cpu")
    warm = l2o.solve_lp(lp, tol=1e-8, device="cpu", warm_start=perturbed("afiro", 1e-1, 0))
    assert warm.iterations == cold.iterations + 1
    assert torch.equal(warm.x, cold.x) and torch.equal(warm.y, cold.y)


def test_warm_start_at_the_cold_start_is_the_cold_solve():
    lp = load("sc50b")
    cold = l2o.solve_lp(lp, tol=1e-6, device="cpu")
    zeros = (torch.zeros(lp.num_cols, dtype=torch.float64),
             torch.zeros(lp.num_rows, dtype=torch.float64))
    warm = l2o.solve_lp(lp, tol=1e-6, device="cpu", warm_start=zeros)
    assert warm.iterations == cold.iterations + 1 and torch.equal(warm.x, cold.x)
    # (None, None) is no start at all: the cold solve itself
    none = l2o.solve_lp(lp, tol=1e-6, device="cpu", warm_start=(None, None))
    assert none.iterations == cold.iterations and torch.equal(none.x, cold.x)


def test_model_start_on_unseen_pagerank_needs_fewer_iterations_than_cold():
    # seed 9,200,000: never used in training (training seeds < 5,000,000)
    lp = generate("pagerank", nodes=10_000, seed=9_200_000)
    cold = l2o.solve_lp(lp, tol=1e-8, device="cpu")
    warm, _ = solve_with_model(load_model("pagerank"), lp, tol=1e-8, device="cpu")
    assert warm.status == l2o.LPStatus.OPTIMAL
    assert warm.iterations < cold.iterations


def test_warm_start_is_kept_only_when_a_sufficient_improvement_on_the_cold_start():
    beta = RestartParams().sufficient
    assert keeps_warm_start(0.2, 1.0, beta) and keeps_warm_start(0.0, 1.0, beta)
    assert not keeps_warm_start(0.21, 1.0, beta) and not keeps_warm_start(0.9, 1.0, beta)
    # a nan on either side keeps the start (its solve stops on it as before)
    assert keeps_warm_start(math.nan, 1.0, beta) and keeps_warm_start(1.0, math.nan, beta)


@pytest.mark.skipif(not (FAMILY_MODELS / "auction.pt").is_file(), reason="no family model")
def test_family_model_start_short_of_a_sufficient_improvement_is_the_cold_solve():
    # the auction model's start at 4x its training size (fresh seed 9,320,002) had r(z_w) = 0.55
    # r(z_c): better than cold, yet to 1e-8 it needed 54,082 iterations against 26,561 when kept;
    # the solve drops it and is the cold solve, one iteration later (or, since the model reads
    # normalized graphs and passes the first test, 1 + warm_start_trial iterations later)
    lp = generate("auction", seed=9_320_002, items=400, bids=2000)
    pdhg = {"method": "pdhg", "presolve": False}
    cold = l2o.solve_lp(lp, tol=1e-4, device="cpu", **pdhg)
    warm, start = solve_with_model(load_model(FAMILY_MODELS / "auction.pt"), lp, tol=1e-4,
                                   device="cpu", **pdhg)
    assert not torch.equal(start.x, cold.x)
    trial = l2o.pdhg.SolverOptions().warm_start_trial
    assert warm.iterations in (cold.iterations + 1, cold.iterations + 1 + trial)
    assert torch.equal(warm.x, cold.x) and torch.equal(warm.y, cold.y)


def test_warm_start_controller_moves_half_way_to_the_measured_ratio():
    # PDLP's smoothing, theta = 1/2: log omega+ = (log omega + log(|dy| / |dx|)) / 2
    pid = PrimalWeightPID.after_warm_start()
    omega = pid.update(primal_move=1.0, dual_move=16.0, rel_primal=1e-3, rel_dual=1e-3)
    assert omega == pytest.approx(4.0)
    omega = pid.update(primal_move=1.0, dual_move=1.0, rel_primal=1e-3, rel_dual=1e-3)
    assert math.log(omega) == pytest.approx(math.log(4.0) / 2)


@pytest.mark.skipif(not (FAMILY_MODELS / "setcover.pt").is_file(), reason="no family model")
def test_family_model_start_that_falls_behind_in_the_trial_is_the_cold_solve():
    # the set cover model's start (training size, fresh seed 9,320,000) has r = 0.08 of the cold
    # start's after one iteration, 0.25 after 17: kept on the first test alone it needed 3010
    # iterations to 1e-4 against cold 2369; the trial drops it: the cold solve, 1 + 16 later
    lp = generate("setcover", seed=9_320_000)
    pdhg = {"method": "pdhg", "presolve": False}
    model = load_model(FAMILY_MODELS / "setcover.pt")
    cold = l2o.solve_lp(lp, tol=1e-4, device="cpu", **pdhg)
    warm, _ = solve_with_model(model, lp, tol=1e-4, device="cpu", **pdhg)
    assert warm.iterations == cold.iterations + 1 + TRIAL
    assert torch.equal(warm.x, cold.x) and torch.equal(warm.y, cold.y)
    first_test_only, _ = solve_with_model(model, lp, tol=1e-4, device="cpu",
                                          warm_start_trial=0, **pdhg)
    assert first_test_only.iterations > cold.iterations + ALLOWANCE


def test_start_kept_after_the_trial_goes_on_as_its_plain_solve():
    # the trial's checks are not the restart rule's: a kept start's solve is the plain solve
    # from it (the first test alone), plus the cold start's 16 trial iterations
    start = perturbed("sc50a", 1e-6, 0)
    plain = l2o.solve_lp(load("sc50a"), tol=1e-8, device="cpu", warm_start=start,
                         warm_start_trial=0)
    trial = l2o.solve_lp(load("sc50a"), tol=1e-8, device="cpu", warm_start=start)
    assert trial.iterations == plain.iterations + TRIAL
    assert torch.equal(trial.x, plain.x) and torch.equal(trial.y, plain.y)


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_warm_start_trial_must_be_a_nonnegative_integer(bad):
    with pytest.raises(ValueError, match="warm_start_trial"):
        l2o.solve_lp(load("afiro"), device="cpu", warm_start_trial=bad)
