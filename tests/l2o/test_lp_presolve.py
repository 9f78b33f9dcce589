"""l2o.lp.presolve: HiGHS presolve, then postsolve, checked on the original LP (float64).

The reduced LP is solved by HiGHS here, so these tests isolate presolve and postsolve (and our
sign conventions around them); the solver with ``presolve=`` is tested in test_pdhg_presolve.py.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import l2o
from l2o.lp import solve_highs
from l2o.lp.kkt import kkt_error
from l2o.lp.presolve import PresolveOutcome, presolve_lp

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"


def _names(folder: str) -> list[str]:
    with open(DATA / folder / "optimal_values.csv", newline="") as handle:
        return [row["name"] for row in csv.DictReader(handle)]


def _presolve_solve_postsolve(lp):
    pre = presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.REDUCED, pre.message
    ref = solve_highs(pre.reduced)
    assert ref.status == l2o.LPStatus.OPTIMAL
    x, y, _, _ = pre.postsolve(ref.x, ref.y)
    return pre, x, y


def _assert_optimal_on_original(lp, x, y, kkt_tol=1e-6):
    expected = solve_highs(lp).objective
    assert abs(lp.objective(x) - expected) <= 1e-6 * max(1.0, abs(expected))
    errors = kkt_error(lp, x, y)
    assert max(errors.values()) <= kkt_tol, errors


@pytest.mark.parametrize("name", _names("netlib"))
def test_netlib_postsolved_optimum(name):
    """HiGHS presolve reduces every NETLIB LP here; the postsolved point of the reduced LP's
    optimum is optimal for the original LP: HiGHS's objective, KKT errors <= 1e-6."""
    lp = l2o.read_lp(DATA / "netlib" / f"{name}.mps.gz")
    pre, x, y = _presolve_solve_postsolve(lp)
    assert pre.rows_removed > 0 or pre.cols_removed > 0
    assert pre.reduced.num_rows == lp.num_rows - pre.rows_removed
    assert pre.reduced.nnz == lp.nnz - pre.nnz_removed
    _assert_optimal_on_original(lp, x, y)


@pytest.mark.parametrize("name", _names("large"))
def test_large_postsolved_optimum(name):
    """ken-11, osa-07, pds-10 (a few seconds each, mostly HiGHS's solves)."""
    lp = l2o.read_lp(DATA / "large" / f"{name}.mps.gz")
    pre, x, y = _presolve_solve_postsolve(lp)
    _assert_optimal_on_original(lp, x, y)
    assert pre.report()["time_s"] > 0


def test_maximization_with_offset():
    """A maximization with c0: HiGHS's presolved LP is a minimization of the negated objective
    (c0 negated too), and its duals are in its own sense; our conventions hold on both ends."""
    lp = l2o.read_lp(DATA / "netlib" / "sc50a.mps.gz")
    flipped = replace(lp, c=-lp.c, sense=l2o.lp.model.MAXIMIZE, c0=3.0)
    _, x, y = _presolve_solve_postsolve(flipped)
    assert abs(flipped.objective(x) - (64.5750770585645 + 3.0)) <= 1e-9 * 67.6
    # y in the minimization-form convention: the same duals as the minimization's
    *_, y_min = _presolve_solve_postsolve(lp)
    torch.testing.assert_close(y, y_min)
    _assert_optimal_on_original(flipped, x, y)


def test_names_carried_and_index_maps():
    """The reduced LP keeps the original names; col_index/row_index point at them."""
    lp = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    pre = presolve_lp(lp)
    assert pre.reduced.col_names == [lp.col_names[j] for j in pre.col_index]
    assert pre.reduced.row_names == [lp.row_names[i] for i in pre.row_index]
    assert len(pre.col_index) == pre.reduced.num_cols
    # the surviving columns are original variables: the original optimum restricted to them
    # is the reduced LP's optimum (afiro's optimum is unique)
    ref = solve_highs(lp)
    x_red, y_red = pre.reduce_warm_start(ref.x, ref.y)
    reduced_ref = solve_highs(pre.reduced)
    torch.testing.assert_close(x_red, reduced_ref.x, atol=1e-9, rtol=1e-9)
    assert y_red.shape == (pre.reduced.num_rows,)
    with pytest.raises(ValueError, match="shape"):
        pre.reduce_warm_start(ref.x[:-1], None)


def test_no_names():
    """An LP built without names: the maps still come from HiGHS, the reduced LP has none."""
    lp = l2o.read_lp(DATA / "netlib" / "sc105.mps.gz")
    bare = replace(lp, row_names=None, col_names=None)
    pre, x, y = _presolve_solve_postsolve(bare)
    assert pre.reduced.col_names is None and pre.reduced.row_names is None
    _assert_optimal_on_original(bare, x, y)


def test_reduced_to_empty():
    """min x1 + 2 x2 + 1.5 s.t. x1 + x2 = 1, 0 <= x <= 10: presolve solves it; postsolve of
    the empty point gives x* = (1, 0), y* = 1 (reduced costs (0, 1)), objective 2.5."""
    lp = l2o.LinearProgram.create([1.0, 2.0], np.array([[1.0, 1.0]]), [1.0], [1.0], [0, 0],
                                  [10, 10], c0=1.5)
    pre = presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.EMPTY and pre.reduced is None
    assert (pre.rows_removed, pre.cols_removed, pre.nnz_removed) == (1, 2, 2)
    x, y, _, _ = pre.postsolve()
    torch.testing.assert_close(x, torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([1.0], dtype=torch.float64))
    assert lp.objective(x) == pytest.approx(2.5)


@pytest.mark.parametrize("folder, name, outcome", [
    ("infeasible", "galenet", PresolveOutcome.INFEASIBLE),
    ("infeasible", "woodinfe", PresolveOutcome.INFEASIBLE),
    ("unbounded", "gas11", PresolveOutcome.UNBOUNDED_OR_INFEASIBLE),
    ("infeasible", "klein1", PresolveOutcome.NOT_REDUCED),
])
def test_statuses(folder, name, outcome):
    lp = l2o.read_lp(DATA / folder / f"{name}.mps")
    pre = presolve_lp(lp)
    assert pre.outcome == outcome, pre.message
    assert pre.reduced is None and not pre.reduced_or_empty
    assert pre.report()["rows_removed"] == 0
    with pytest.raises(ValueError, match="nothing to postsolve"):
        pre.postsolve()


def test_postsolve_shape_errors():
    lp = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    pre = presolve_lp(lp)
    with pytest.raises(ValueError, match="entries"):
        pre.postsolve(torch.zeros(pre.reduced.num_cols + 1), torch.zeros(pre.reduced.num_rows))
    with pytest.raises(ValueError, match="required"):
        pre.postsolve(None, torch.zeros(pre.reduced.num_rows))


def test_time_limit_keeps_a_valid_reduction():
    """A presolve stopped by its time limit still gives a reduced LP that postsolves right."""
    lp = l2o.read_lp(DATA / "large" / "ken-11.mps.gz")
    full = presolve_lp(lp)
    pre = presolve_lp(lp, time_limit=0.3 * full.timings["presolve"])
    assert pre.outcome == PresolveOutcome.REDUCED, pre.message
    assert pre.reduced.num_rows >= full.reduced.num_rows
    ref = solve_highs(pre.reduced)
    x, y, _, _ = pre.postsolve(ref.x, ref.y)
    _assert_optimal_on_original(lp, x, y)
    assert presolve_lp(lp, time_limit=1e-9).outcome == PresolveOutcome.TIMEOUT
