"""The reduced-LP start (l2o.net.reduce): kept columns, fixed columns, pricing, fallback."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import l2o
from l2o.datasets import generate
from l2o.lp.model import LinearProgram
from l2o.lp.reference import solve_highs
from l2o.net import PDHGNet, kkt_error, reduce
from l2o.net.reduce import (
    ranked_columns,
    reduced_start,
    reduced_warm_start,
    solve_with_reduced_start,
)

inf = float("inf")
SOLVE = {"method": "pdhg", "presolve": False}


def _max_kkt(lp, start) -> float:
    return max(kkt_error(lp, start.x, start.y).values())


def test_ranked_columns_keep_the_top_fraction_and_a_column_for_each_row_to_meet():
    """Rows 0 and 1 need a column (l > 0, u < 0), row 2 does not (0 is inside its bounds);
    column 4 has no finite lower bound and always stays."""
    A = sp.csr_matrix(np.array([[1.0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [1, 0, 0, 0, 1]]))
    rank = torch.tensor([0.9, 0.1, 0.2, 0.3, 0.0], dtype=torch.float64)
    lower = torch.tensor([0.0, 0, 0, 0, -inf], dtype=torch.float64)
    mask = ranked_columns(rank, lower, 0.2, A, np.array([1.0, -inf, -1]),
                          np.array([inf, -1, 1]))
    # top 1 of 5: column 0 (meets row 0); row 1 gets its best-ranked column 3; column 4 stays
    assert mask.tolist() == [True, False, False, True, True]


def test_reduced_start_with_the_optimal_support_is_an_optimal_pair():
    """Ranked by HiGHS's x*, the kept columns hold the support, every dropped column prices
    out, and the start meets 1e-8 at the whole solve's first check."""
    lp = generate("setcover", rows=40, cols=80, density=0.2, seed=1)
    ref = solve_highs(lp)
    start = reduced_start(lp, ref.x, keep=0.4, tol=1e-8, **SOLVE)
    assert start.status == "OPTIMAL"
    assert start.columns < lp.num_cols and start.reduced_iterations > 0
    assert _max_kkt(lp, start) < 1e-7
    res = l2o.solve_lp(lp, tol=1e-8, warm_start=start, **SOLVE)
    assert res.status == l2o.LPStatus.OPTIMAL and res.iterations == 1
    assert res.objective == pytest.approx(ref.objective, rel=1e-7)


def test_pricing_adds_the_columns_a_bad_ranking_dropped(monkeypatch):
    """Ranked against x* (the support last), the first reduced LP misses columns with negative
    reduced costs; pricing adds them until none is left, so the start is still optimal."""
    lp = generate("setcover", rows=40, cols=80, density=0.2, seed=2)
    ref = solve_highs(lp)
    start = reduced_start(lp, -ref.x, keep=0.3, tol=1e-8, rounds=10, **SOLVE)
    screens = [h for h in start.history if h["tol"] > 1e-8]
    assert len(screens) >= 2 and screens[-1]["columns"] > screens[0]["columns"]
    assert start.status == "OPTIMAL"
    assert _max_kkt(lp, start) < 1e-7
    # a round that adds few columns (here: any, SETTLED = 1) ends the screening: its columns
    # join the solve to tol without another screening solve
    monkeypatch.setattr(reduce, "SETTLED", 1.0)
    settled = reduced_start(lp, -ref.x, keep=0.3, tol=1e-8, rounds=10, **SOLVE)
    assert [h["tol"] for h in settled.history][:2] == [1e-4, 0.5e-8]
    assert settled.history[1]["columns"] > settled.history[0]["columns"]
    monkeypatch.undo()
    # without re-solves the screening's columns join the one solve to tol (2 solves)
    once = reduced_start(lp, -ref.x, keep=0.3, tol=1e-8, rounds=0, **SOLVE)
    assert len(once.history) == 2 and once.history[1]["columns"] > once.history[0]["columns"]
    # without screening and re-solves the columns that price in stay out: not returned, the
    # fallback
    no_pricing = reduced_start(lp, -ref.x, keep=0.3, tol=1e-8, rounds=0, screen_tol=1e-8,
                               **SOLVE)
    assert no_pricing.status == "FALLBACK" and len(no_pricing.history) == 1
    assert torch.count_nonzero(no_pricing.y) == 0


def test_dropped_columns_are_fixed_at_their_lower_bounds():
    """min x0 + x1 + 5 x2 s.t. x0 + x1 + x2 >= 3, x0, x1 in [0, 1], x2 in [1, 4]: optimum
    x = (1, 1, 1), objective 7. Column 2 ranked last and dropped sits at its lower bound 1,
    its row activity and cost counted: the start is that optimum."""
    lp = LinearProgram.create([1.0, 1.0, 5.0], sp.csr_matrix(np.ones((1, 3))), [3.0], [inf],
                              [0.0, 0.0, 1.0], [1.0, 1.0, 4.0])
    start = reduced_start(lp, torch.tensor([1.0, 1.0, 1.0]), keep=0.6, tol=1e-8, **SOLVE)
    assert start.columns == 2 and start.status == "OPTIMAL"
    torch.testing.assert_close(start.x, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    assert lp.objective(start.x) == pytest.approx(7.0, abs=1e-5)


def test_rows_the_kept_columns_do_not_need_are_dropped():
    """min -x0 + x1 + 0.5 y, x0, x1, y in [0, 1], rows: x0 - y <= 0, x1 - y <= 0,
    x0 + x1 <= 1.5, x1 >= -1, x0 <= 0.5; optimum x0 = y = 0.5, x1 = 0, objective -0.25.
    With x1 dropped, row 1 becomes -y <= 0 and row 2 x0 <= 1.5 (both implied by the column
    bounds), row 3 has no kept nonzero and holds 0: the reduced LP keeps rows 0 and 4 (x0 <= 0.5
    is tighter than x0's bound), and the dropped rows get the optimal dual 0."""
    A = sp.csr_matrix(np.array([[1.0, 0, -1], [0, 1, -1], [1, 1, 0], [0, 1, 0], [1, 0, 0]]))
    lp = LinearProgram.create([-1.0, 1.0, 0.5], A, [-inf, -inf, -inf, -1, -inf],
                              [0.0, 0, 1.5, inf, 0.5], [0.0] * 3, [1.0] * 3)
    start = reduced_start(lp, torch.tensor([1.0, 0.0, 1.0]), keep=0.6, tol=1e-8, **SOLVE)
    assert start.status == "OPTIMAL" and start.columns == 2
    assert [h["rows"] for h in start.history] == [2, 2]
    assert lp.objective(start.x) == pytest.approx(-0.25, abs=1e-6)
    assert torch.count_nonzero(start.y[1:4]) == 0
    assert _max_kkt(lp, start) < 1e-7


def test_an_infeasible_reduced_lp_falls_back_and_bad_arguments_are_refused():
    """x0 + x1 + x2 = 2 with x <= 1: one kept column cannot meet it (the repair adds none, the
    kept one covers the row), so the reduced LP is infeasible and the fallback is returned."""
    lp = LinearProgram.create([1.0, 1.0, 1.0], sp.csr_matrix(np.ones((1, 3))), [2.0], [2.0],
                              [0.0] * 3, [1.0] * 3)
    fallback = (torch.full((3,), 0.5, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    start = reduced_start(lp, torch.tensor([1.0, 0.0, 0.0]), keep=0.3, fallback=fallback,
                          **SOLVE)
    assert start.status == "FALLBACK" and start.history[0]["status"] != "OPTIMAL"
    assert torch.equal(start.x, fallback[0])
    with pytest.raises(ValueError, match="keep must be in"):
        reduced_start(lp, torch.zeros(3), keep=0.0)
    with pytest.raises(ValueError, match="rounds must be"):
        reduced_start(lp, torch.zeros(3), rounds=-1)
    with pytest.raises(ValueError, match="must hold 3 finite values"):
        reduced_start(lp, torch.zeros(2))


def test_reduced_warm_start_ranks_by_the_model_and_times_everything():
    lp = generate("setcover", rows=40, cols=80, density=0.2, seed=3)
    model = PDHGNet.from_pdhg(20, 0.5, 0.5)
    start = reduced_warm_start(model, lp, keep=0.5, tol=1e-6, **SOLVE)
    assert start.status == "OPTIMAL"
    assert start.prediction_time >= start.graph_time + start.inference_time > 0
    x, y = start
    res = l2o.solve_lp(lp, tol=1e-6, warm_start=(x, y), **SOLVE)
    assert res.status == l2o.LPStatus.OPTIMAL
    assert res.objective == pytest.approx(solve_highs(lp).objective, rel=1e-5)


def test_solve_with_reduced_start_shares_the_whole_lps_setup():
    """The two-stage call: the same start as reduced_warm_start, and the whole solve from it on
    the prepared LP is the plain warm-started solve (same iterations, same point)."""
    lp = generate("setcover", rows=40, cols=80, density=0.2, seed=3)
    model = PDHGNet.from_pdhg(20, 0.5, 0.5)
    res, start = solve_with_reduced_start(model, lp, tol=1e-6, keep=0.5, **SOLVE)
    alone = reduced_warm_start(model, lp, keep=0.5, tol=1e-6, **SOLVE)
    assert start.status == alone.status == "OPTIMAL"
    assert [h["iterations"] for h in start.history] == [h["iterations"] for h in alone.history]
    assert start.prediction_time >= start.graph_time + start.inference_time > 0
    plain = l2o.solve_lp(lp, tol=1e-6, warm_start=start, **SOLVE)
    assert res.status == l2o.LPStatus.OPTIMAL and res.iterations == plain.iterations
    torch.testing.assert_close(res.x, plain.x)
    assert res.objective == pytest.approx(solve_highs(lp).objective, rel=1e-5)
    with pytest.raises(TypeError, match="gives the warm start"):
        solve_with_reduced_start(model, lp, warm_start=(None, None), **SOLVE)
