"""l2o.lp.gpu_presolve: the torch reductions on hand-made LPs with known answers, their postsolve
against HiGHS's optimum (NETLIB, the large LPs) in float64, the statuses they prove, and
``solve_lp(presolve="gpu")`` with warm starts mapped through them."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import l2o
from l2o import LPStatus, solve_lp
from l2o.lp import solve_highs
from l2o.lp.gpu_presolve import DEFAULT_RULES, RULES, gpu_presolve_lp
from l2o.lp.kkt import finite_bound_norm, kkt_error, verify_dual_ray, verify_primal_ray
from l2o.lp.presolve import PresolveOutcome

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"
INF = math.inf


def _names(folder: str) -> list[str]:
    with open(DATA / folder / "optimal_values.csv", newline="") as handle:
        return [row["name"] for row in csv.DictReader(handle)]


def _lp(c, A, row_lower, row_upper, col_lower, col_upper, **kw):
    return l2o.LinearProgram.create(c, np.array(A, dtype=float), row_lower, row_upper, col_lower,
                                    col_upper, **kw)


def _without(*rules):
    return tuple(rule for rule in RULES if rule not in rules)


def _absolute_errors(lp, x, y):
    """kkt_error's residuals without their normalization (1 + ||b||, 1 + ||c||): postsolve
    keeps these, while the norms of the reduced LP's b and c differ from the original's."""
    errors = kkt_error(lp, x, y)
    c = lp.minimize_c[0]
    return {"rel_primal_residual": errors["rel_primal_residual"]
            * (1 + float(finite_bound_norm(lp.row_lower, lp.row_upper))),
            "rel_dual_residual": errors["rel_dual_residual"] * (1 + float(c.norm())),
            "rel_gap": errors["rel_gap"]}


def _postsolved_optimum(lp, pre, with_errors=False):
    """HiGHS's optimum of the reduced LP (or nothing, if presolve emptied it), postsolved; with
    ``with_errors`` also its absolute errors on the reduced LP (None for EMPTY)."""
    if pre.reduced is None:
        x, y, _, _ = pre.postsolve()
        return (x, y, None) if with_errors else (x, y)
    ref = solve_highs(pre.reduced)
    assert ref.status == LPStatus.OPTIMAL, ref.message
    x, y, _, _ = pre.postsolve(ref.x, ref.y)
    if not with_errors:
        return x, y
    return x, y, _absolute_errors(pre.reduced, ref.x, ref.y)


def _assert_optimal(lp, x, y, kkt_tol=1e-9, reduced_errors=None):
    """HiGHS's objective to 1e-9 relative, and each KKT error <= kkt_tol, or (given the
    reduced point's absolute errors) no more than the reduced point had: postsolve is exact,
    HiGHS's optimum of the reduced LP is not (its feasibility tolerance is 1e-7), and the
    original LP's norms may be smaller (grow7: ||b|| = 0 against 3e6 after substitutions)."""
    expected = solve_highs(lp).objective
    assert abs(lp.objective(x) - expected) <= 1e-9 * max(1.0, abs(expected))
    errors = kkt_error(lp, x, y)
    if reduced_errors is None:
        assert max(errors.values()) <= kkt_tol, errors
        return
    absolute = _absolute_errors(lp, x, y)
    for key, value in errors.items():
        assert value <= kkt_tol or absolute[key] <= 1.001 * reduced_errors[key] + 1e-12, (
            key, errors, absolute, reduced_errors)


def test_fixed_column_moves_into_row_bounds():
    """min x0 + 2 x1 + 3 x2 s.t. 3 <= x0 + x1 + x2 <= 5, 1 <= x1 - x2, x1 fixed at 2, x >= 0:
    x1 leaves, the rows become 1 <= x0 + x2 <= 3 and -1 <= -x2, c0 += 4."""
    lp = _lp([1, 2, 3], [[1, 1, 1], [0, 1, -1]], [3, 1], [5, INF], [0, 2, 0], [INF, 2, INF])
    # (implied bounds would box x0 by the row: x0 <= 3)
    pre = gpu_presolve_lp(lp, max_rounds=1, rules=_without("implied_bounds"))
    red = pre.reduced
    assert pre.outcome == PresolveOutcome.REDUCED and pre.col_index.tolist() == [0, 2]
    # round 1 goes on after the fixed column: row 1 is then the singleton -x2 >= -1 (x2 <= 1)
    assert pre.row_index.tolist() == [0]
    torch.testing.assert_close(red.row_lower, torch.tensor([1.0], dtype=torch.float64))
    torch.testing.assert_close(red.row_upper, torch.tensor([3.0], dtype=torch.float64))
    torch.testing.assert_close(red.col_upper, torch.tensor([INF, 1.0], dtype=torch.float64))
    assert red.c0 == 4.0
    x, y = _postsolved_optimum(lp, pre)
    torch.testing.assert_close(x, torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64))
    _assert_optimal(lp, x, y)


def test_singleton_row_dual_is_the_reduced_cost():
    """min -x0 + x1 s.t. -6 <= -2 x0 <= 2 (a singleton row: 0 <= x0 <= 3 with x0 >= 0),
    x0 + x1 >= 1, x >= 0. x* = (3, 0); the singleton row's bound is active and takes x0's
    reduced cost: y0 = c0 / a = -1 / -2 = 0.5 (> 0: its lower bound -6 is active), y1 = 0."""
    lp = _lp([-1, 1], [[-2, 0], [1, 1]], [-6, 1], [2, INF], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp)
    x, y = _postsolved_optimum(lp, pre)
    torch.testing.assert_close(x, torch.tensor([3.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([0.5, 0.0], dtype=torch.float64))
    _assert_optimal(lp, x, y)
    assert pre.rows_removed >= 1


def test_inactive_singleton_row_keeps_dual_zero():
    """The same LP maximized over x0 bounded by its own column bound 1 < 3: the singleton row's
    bound is not active, its dual 0, the column's own bound takes the reduced cost."""
    lp = _lp([-1, 1], [[-2, 0], [1, 1]], [-6, 1], [2, INF], [0, 0], [1, INF])
    pre = gpu_presolve_lp(lp)
    x, y = _postsolved_optimum(lp, pre)
    assert float(y[0]) == 0.0 and float(x[0]) == 1.0
    _assert_optimal(lp, x, y)


def test_empty_columns_take_the_bound_their_cost_prefers():
    """Columns in no row: c > 0 -> lower bound, c < 0 -> upper, c = 0 -> the point of the
    interval nearest 0; the one row (x3 >= 1) is a singleton. Everything goes: EMPTY."""
    lp = _lp([2, -1, 0, 1], [[0, 0, 0, 1]], [1], [INF], [-1, -5, 2, 0], [4, 3, 7, 10], c0=0.5)
    pre = gpu_presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.EMPTY and pre.reduced is None
    x, y, _, _ = pre.postsolve()
    torch.testing.assert_close(x, torch.tensor([-1.0, 3.0, 2.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([1.0], dtype=torch.float64))
    assert (pre.rows_removed, pre.cols_removed, pre.nnz_removed) == (1, 4, 1)
    _assert_optimal(lp, x, y)


def test_free_row_removed():
    """A row without bounds constrains nothing: removed, dual 0."""
    lp = _lp([1, 1], [[1, 1], [1, -1]], [-INF, 1], [INF, INF], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp, max_rounds=1)
    assert 0 not in pre.row_index.tolist()
    x, y = _postsolved_optimum(lp, pre)
    assert float(y[0]) == 0.0
    _assert_optimal(lp, x, y)


def test_empty_row_outside_its_bounds_is_infeasible():
    """x0 fixed at 1 and 2 <= x0 <= 3 as a row: the row is empty after the fixed column moves,
    0 is not in [1, 2]: infeasible, with the Farkas ray e_0 (it verifies)."""
    lp = _lp([1, 1], [[1, 0], [1, 1]], [2, 0], [3, INF], [1, 0], [1, INF])
    pre = gpu_presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.INFEASIBLE and "row 0" in pre.message
    objective, residual = verify_dual_ray(lp, pre.ray)
    assert objective > 0 and residual <= 1e-12


def test_crossed_singleton_bounds_are_infeasible():
    """x0 >= 2 and x0 <= 1 as two singleton rows: infeasible, with the Farkas ray (1, -1, 0)
    (objective 2 - 1 = 1)."""
    lp = _lp([1, 1], [[1, 0], [1, 0], [1, 1]], [2, -INF, 0], [INF, 1, INF], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.INFEASIBLE and "cross" in pre.message
    torch.testing.assert_close(pre.ray, torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))
    assert verify_dual_ray(lp, pre.ray) == (1.0, 0.0)


def test_unbounded_empty_column_gives_a_ray():
    """min x0 - x1 with x1 >= 0 in no row: dual infeasible along e_1 (the ray verifies)."""
    lp = _lp([1, -1], [[1, 0]], [1], [2], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.UNBOUNDED
    cx, violation = verify_primal_ray(lp, pre.ray)
    assert cx < 0 and violation == 0


def _only(rule):
    """The base rules plus ``rule`` (to see one rule at work)."""
    base = ("fixed_columns", "empty_and_free_rows", "singleton_rows", "empty_columns")
    return tuple(r for r in RULES if r in base or r == rule)


def test_rules_by_name():
    """Every rule runs by default; a wrong name is an error naming the rules."""
    assert DEFAULT_RULES == RULES and "dual_fix" in RULES
    lp = _lp([1, 2, 0], [[1, 1, 1], [1, -1, 0]], [4, -2], [4, INF], [0, 0, 0], [INF, INF, 1])
    assert gpu_presolve_lp(lp, rules=_only("activity_rows")).outcome == (
        PresolveOutcome.NOT_REDUCED)
    with pytest.raises(ValueError, match="parallel_rows"):
        gpu_presolve_lp(lp, rules=("parallel_row",))


def test_dual_fix_fixes_unlocked_columns():
    """min x0 + 2 x1 - x3 s.t. x0 + x1 + x2 <= 4, x0 - x2 + x3 >= -1, x0, x1 >= 0, x2 free,
    x3 in [0, 2]. Lowering x1 (cost 2) only loosens the `<=` row: x1 = 0; raising x3 (cost -1)
    only loosens the `>=` row: x3 = 2. x2 (cost 0, free) has no down-lock either, but its
    bound that way is -inf: it stays; x0 is locked both ways. Postsolve leaves the reduced
    costs on the fixed columns' bounds, with the right signs: r1 = 2 - y0 >= 0, r3 = -1 - y1
    <= 0."""
    lp = _lp([1, 2, 0, -1], [[1, 1, 1, 0], [1, 0, -1, 1]], [-INF, -1], [4, INF],
             [0, 0, -INF, 0], [INF, INF, INF, 2])
    pre = gpu_presolve_lp(lp, rules=_only("dual_fix"), max_rounds=1)
    assert pre.col_index.tolist() == [0, 2] and pre.rules["dual_fix"]["cols"] == 2
    assert pre.reduced.c0 == -2.0 and float(pre.reduced.row_lower[1]) == -3.0
    x, y, errors = _postsolved_optimum(lp, pre, with_errors=True)
    assert float(x[1]) == 0.0 and float(x[3]) == 2.0
    _, _, r, _ = pre.postsolve(solve_highs(pre.reduced).x, solve_highs(pre.reduced).y)
    assert float(r[1]) >= 2.0 and float(r[3]) <= -1.0
    _assert_optimal(lp, x, y, reduced_errors=errors)


def test_dual_fix_leaves_locked_columns():
    """Must not fire: in 1 <= x0 + x1 <= 3 and 1 <= x1 - x2 <= 3 every column is locked both
    ways (ranged rows), whatever its cost."""
    lp = _lp([1, -1, 0], [[1, 1, 0], [0, 1, -1]], [1, 1], [3, 3], [0, 0, 0], [5, 5, 5])
    pre = gpu_presolve_lp(lp, rules=_only("dual_fix"))
    assert pre.outcome == PresolveOutcome.NOT_REDUCED


def test_dual_fix_leaves_columns_with_an_infinite_preferred_bound():
    """Must not fire: min x0 s.t. x0 + x1 <= 3, x0 free, x1 >= 0: nothing keeps x0 from
    falling, but its lower bound is -inf (the LP is unbounded: PDHG says so)."""
    lp = _lp([1, 0], [[1, 1], [1, -1]], [-INF, -INF], [3, 5], [-INF, 0], [INF, INF])
    pre = gpu_presolve_lp(lp, rules=_only("dual_fix"))
    assert pre.rules["dual_fix"]["cols"] == 0


def test_slack_substitution_then_dual_fix():
    """nsct2's pattern: x0 + x1 + s = 4 with a zero-cost slack s >= 0 becomes x0 + x1 <= 4;
    then x1 (cost 0, x1 >= 0), in that `<=` row and in x1 + x2 <= 3 only, is fixed at 0 by
    dual fixing, and so is x2 (cost 1, nothing keeps it from 0). min -x0 + x2 with
    x0 - x2 >= -1 (x0, x2 >= 0): x0 = 4."""
    lp = _lp([-1, 0, 1, 0], [[1, 1, 0, 1], [0, 1, 1, 0], [1, 0, -1, 0]], [4, -INF, -1],
             [4, 3, INF], [0, 0, 0, 0], [INF, INF, INF, INF])
    rules = _only("singleton_columns") + ("dual_fix",)
    pre = gpu_presolve_lp(lp, rules=tuple(r for r in RULES if r in rules))
    assert pre.rules["singleton_columns"]["cols"] == 1 and pre.rules["dual_fix"]["cols"] == 2
    x, y, errors = _postsolved_optimum(lp, pre, with_errors=True)
    _assert_optimal(lp, x, y, reduced_errors=errors)
    assert float(x[1]) == 0.0 and float(x[3]) == 0.0


def test_forcing_row_fixes_its_columns():
    """min -x0 - x1 + x2 s.t. x0 + x1 - x2 <= 0 and x0 + 2 x1 + x2 >= -5, x0, x1 in [0, 3],
    x2 in [-2, 0]. Row 0 is forcing: its least activity, 0 + 0 - 0, is its upper bound, so
    x = 0 and the row goes (row 1, then empty, too); its dual gives every reduced cost the
    right sign: y0 = min(0, -1 / 1, -1 / 1, 1 / -1) = -1."""
    lp = _lp([-1, -1, 1], [[1, 1, -1], [1, 2, 1]], [-INF, -5], [0, INF], [0, 0, -2], [3, 3, 0])
    pre = gpu_presolve_lp(lp, rules=_only("activity_rows"))
    assert pre.outcome == PresolveOutcome.EMPTY and pre.rules["activity_rows"]["cols"] == 3
    x, y = _postsolved_optimum(lp, pre)
    torch.testing.assert_close(x, torch.zeros(3, dtype=torch.float64))
    assert float(y[0]) == -1.0 and float(y[1]) == 0.0
    _assert_optimal(lp, x, y)


def test_redundant_row_and_side_dropped():
    """x0 + x1 <= 10 with x in [0, 2]^2 can never bind: removed. 1 <= x0 - x1 <= 5: its upper
    side can never bind (x0 - x1 <= 2), dropped; the lower side stays. Not forcing: nothing
    fixed."""
    lp = _lp([1, 1], [[1, 1], [1, -1]], [-INF, 1], [10, 5], [0, 0], [2, 2])
    pre = gpu_presolve_lp(lp, rules=_only("activity_rows"), max_rounds=1)
    assert pre.row_index.tolist() == [1] and pre.col_index.tolist() == [0, 1]
    assert pre.rules["activity_rows"]["sides"] == 1
    assert float(pre.reduced.row_lower[0]) == 1.0 and math.isinf(pre.reduced.row_upper[0])
    x, y = _postsolved_optimum(lp, pre)
    _assert_optimal(lp, x, y)


def test_activity_rule_leaves_binding_rows():
    """Must not fire: 1 <= x0 + x1 <= 3 and 1 <= x1 + x2 <= 3 over x in [0, 2]^3 (activities
    in [0, 4]) can bind on both sides."""
    lp = _lp([1, -1, 0], [[1, 1, 0], [0, 1, 1]], [1, 1], [3, 3], [0, 0, 0], [2, 2, 2])
    pre = gpu_presolve_lp(lp, rules=_only("activity_rows"))
    assert pre.outcome == PresolveOutcome.NOT_REDUCED


def test_activity_proves_infeasibility():
    """x0 + x1 >= 5 with x in [0, 2]^2: at most 4. Farkas ray e_0 (objective 5 - 4 = 1)."""
    lp = _lp([1, 1], [[1, 1], [1, -1]], [5, -1], [INF, 1], [0, 0], [2, 2])
    pre = gpu_presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.INFEASIBLE and "activity" in pre.message
    objective, residual = verify_dual_ray(lp, pre.ray)
    assert objective == pytest.approx(1.0) and residual == 0.0


def test_singleton_column_substituted():
    """min x0 + 2 x1 s.t. x0 + x1 + s = 4 (s in [0, 1], cost 0, only in this row), x0 - x1
    >= -2, x >= 0: s = 4 - x0 - x1 leaves and the row becomes 3 <= x0 + x1 <= 4 (costs and
    c0 unchanged); postsolve gives s back from the row."""
    lp = _lp([1, 2, 0], [[1, 1, 1], [1, -1, 0]], [4, -2], [4, INF], [0, 0, 0], [INF, INF, 1])
    pre = gpu_presolve_lp(lp, rules=_only("singleton_columns"), max_rounds=1)
    red = pre.reduced
    assert pre.col_index.tolist() == [0, 1] and pre.row_index.tolist() == [0, 1]
    torch.testing.assert_close(red.c, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert red.c0 == 0.0
    assert (float(red.row_lower[0]), float(red.row_upper[0])) == (3.0, 4.0)
    x, y, errors = _postsolved_optimum(lp, pre, with_errors=True)
    _assert_optimal(lp, x, y, reduced_errors=errors)
    assert float(x[2]) == 4.0 - float(x[0]) - float(x[1])


def test_free_singleton_column_takes_its_row():
    """min x0 + 2 x1 + 3 f s.t. x0 + x1 + f = 4 (f free, only in this row), x0 - x1 >= -2,
    0 <= x <= 5: f = 4 - x0 - x1 leaves, its cost moves onto the row, c - 3 (1, 1) = (-2, -1),
    c0 = 12, and the row, free now, goes; its dual is c_f / 1 = 3."""
    lp = _lp([1, 2, 3], [[1, 1, 1], [1, -1, 0]], [4, -2], [4, INF], [0, 0, -INF], [5, 5, INF])
    pre = gpu_presolve_lp(lp, rules=_only("singleton_columns"))
    red = pre.reduced
    assert pre.col_index.tolist() == [0, 1] and pre.row_index.tolist() == [1]
    torch.testing.assert_close(red.c, torch.tensor([-2.0, -1.0], dtype=torch.float64))
    assert red.c0 == 12.0
    x, y, errors = _postsolved_optimum(lp, pre, with_errors=True)
    _assert_optimal(lp, x, y, reduced_errors=errors)
    assert float(y[0]) == 3.0 and float(x[2]) == -6.0


def test_singleton_column_left_in_inequality_rows():
    """Must not fire: s in x0 + x1 + s <= 4 is a singleton column of an inequality row, and
    t (cost 1, bounded) one whose cost would move onto its row."""
    lp = _lp([1, 2, 0, 1], [[1, 1, 1, 0], [1, -1, 0, 1]], [-INF, -2], [4, -2], [0, 0, 0, 0],
             [INF, INF, 1, 3])
    pre = gpu_presolve_lp(lp, rules=_only("singleton_columns"))
    assert pre.outcome == PresolveOutcome.NOT_REDUCED


def test_parallel_rows_merged():
    """x0 + 2 x1 >= 2, -2 x0 - 4 x1 >= -10 (x0 + 2 x1 <= 5) and 3 x0 + 6 x1 <= 12 (<= 4) are
    one row 2 <= x0 + 2 x1 <= 4. Maximizing x0 + x1 (with -1 <= x0 - x1 <= 1) pushes against
    the upper bound, which came from the third row: its dual takes the merged row's, y2 = y / 3
    < 0, and the others keep 0."""
    lp = _lp([-1, -1], [[1, 2], [-2, -4], [3, 6], [1, -1]], [2, -10, -INF, -1],
             [INF, INF, 12, 1], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp, rules=_only("parallel_rows"), max_rounds=1)
    assert pre.row_index.tolist() == [0, 3]
    assert (float(pre.reduced.row_lower[0]), float(pre.reduced.row_upper[0])) == (2.0, 4.0)
    x, y = _postsolved_optimum(lp, pre)
    _assert_optimal(lp, x, y)
    assert float(y[0]) == 0.0 and float(y[1]) == 0.0 and float(y[2]) < 0


def test_parallel_rows_not_merged():
    """Must not fire: x0 + 2 x1 and x0 + 2.000001 x1 are not parallel; nor x0 + 2 x1 and
    x0 + 2 x2 (other columns)."""
    lp = _lp([1, 1, 1], [[1, 2, 0], [1, 2.000001, 0], [1, 0, 2]], [1, 1, 1], [4, 4, 4],
             [0, 0, 0], [3, 3, 3])
    pre = gpu_presolve_lp(lp, rules=_only("parallel_rows"))
    assert pre.outcome == PresolveOutcome.NOT_REDUCED


def test_parallel_rows_cross_infeasible():
    """x0 + x1 >= 3 and 2 x0 + 2 x1 <= 4: infeasible, the Farkas ray (1, -1/2) verifies."""
    lp = _lp([1, 1], [[1, 1], [2, 2], [1, -1]], [3, -INF, -5], [INF, 4, 5], [-INF, -INF],
             [INF, INF])
    pre = gpu_presolve_lp(lp, rules=_only("parallel_rows"))
    assert pre.outcome == PresolveOutcome.INFEASIBLE
    objective, residual = verify_dual_ray(lp, pre.ray)
    assert objective > 0 and residual == 0.0


def test_parallel_columns_merged():
    """x1 = 2 x0 and x3 = -x0 in every row, with costs in the same ratios (c = 1, 2, ., -1):
    one column z = x0 + 2 x1 - x3 of cost 1, bounds [0 + 0 - 3, 4 + 2 * 5 - 0] = [-3, 14];
    x2 (cost 1, not 2 x0's) stays. min x0 + 2 x1 + x2 - x3 s.t. x0 + 2 x1 + x2 - x3 >= 5,
    2 x0 + 4 x1 - x2 - 2 x3 >= 4 (x0 in [0, 4], x1 in [0, 5], x2 >= 0, x3 in [0, 3]): HiGHS's
    optimum of the reduced LP, split back, is optimal on the original LP with every x within
    its bounds."""
    lp = _lp([1, 2, 1, -1], [[1, 2, 1, -1], [2, 4, -1, -2]], [5, 4], [INF, INF],
             [0, 0, 0, 0], [4, 5, INF, 3])
    pre = gpu_presolve_lp(lp, rules=_only("parallel_columns"), max_rounds=1)
    assert pre.col_index.tolist() == [0, 2] and pre.rules["parallel_columns"]["cols"] == 2
    torch.testing.assert_close(pre.reduced.col_lower, torch.tensor([-3.0, 0.0],
                                                                   dtype=torch.float64))
    torch.testing.assert_close(pre.reduced.col_upper, torch.tensor([14.0, INF],
                                                                   dtype=torch.float64))
    x, y = _postsolved_optimum(lp, pre)
    assert bool(((x >= lp.col_lower) & (x <= lp.col_upper)).all())
    _assert_optimal(lp, x, y)
    # every value of z within its bounds splits into bounded members with the same sum
    for z in (-3.0, -1.0, 0.0, 5.5, 14.0):
        x, _, _, _ = pre.postsolve(torch.tensor([z, 1.0], dtype=torch.float64),
                                   torch.zeros(2, dtype=torch.float64))
        assert bool(((x >= lp.col_lower) & (x <= lp.col_upper)).all()), (z, x)
        assert float(x[0] + 2 * x[1] - x[3]) == pytest.approx(z, abs=1e-12)
    # a warm start maps x onto z
    x_red, _ = pre.reduce_warm_start(torch.tensor([1.0, 2.0, 3.0, 1.0], dtype=torch.float64),
                                     None)
    assert x_red.tolist() == [4.0, 3.0]


def test_parallel_columns_not_merged():
    """Must not fire: proportional columns with costs out of proportion (1 and 3 for a ratio of
    2), or columns with other rows."""
    lp = _lp([1, 3, 1], [[1, 2, 1], [2, 4, 0]], [1, 1], [INF, INF], [0, 0, 0], [4, 4, 4])
    assert gpu_presolve_lp(lp, rules=_only("parallel_columns")).outcome == (
        PresolveOutcome.NOT_REDUCED)


def test_implied_bounds_box_columns():
    """min -x0 - x1 + x2 s.t. x0 + 2 x1 - x2 <= 4, x1 - x2 >= -1, x >= 0, x2 <= 3: row 0 bounds
    x0 <= 4 + 3 and x1 <= (4 + 3) / 2 (x2 at its upper bound gives the least activity); row 1,
    -x2 >= -1 - x1 with x1 <= 3.5 after that, is of no use to x2 (bounded). Each implied bound
    is loosened by IMPLIED_MARGIN; nothing is removed, the LP keeps its optimum."""
    from l2o.lp.gpu_rules import IMPLIED_MARGIN

    lp = _lp([-1, -1, 1], [[1, 2, -1], [0, 1, -1]], [-INF, -1], [4, INF], [0, 0, 0],
             [INF, INF, 3])
    pre = gpu_presolve_lp(lp, rules=_only("implied_bounds"))
    assert pre.outcome == PresolveOutcome.REDUCED and pre.rules["implied_bounds"]["sides"] == 2
    assert (pre.rows_removed, pre.cols_removed) == (0, 0)
    expected = torch.tensor([7.0, 3.5, 3.0], dtype=torch.float64)
    expected[:2] += IMPLIED_MARGIN * (1 + expected[:2])
    torch.testing.assert_close(pre.reduced.col_upper, expected, rtol=0, atol=1e-15)
    x, y = _postsolved_optimum(lp, pre)
    _assert_optimal(lp, x, y)


def test_implied_bounds_leave_unbounded_columns():
    """Must not fire: in x0 - x1 <= 4 (x free otherwise) no column has a finite activity
    bound from the others; nor where the bound would exceed IMPLIED_MAX."""
    from l2o.lp.gpu_rules import IMPLIED_MARGIN

    lp = _lp([1, 1], [[1, -1]], [-INF], [4], [-INF, -INF], [INF, INF])
    assert gpu_presolve_lp(lp, rules=_only("implied_bounds")).outcome == (
        PresolveOutcome.NOT_REDUCED)
    lp = _lp([-1, -1], [[1e-8, 1], [1, -1]], [-INF, -INF], [1, 5], [0, 0], [INF, 1])
    pre = gpu_presolve_lp(lp, rules=_only("implied_bounds"))   # x0 <= 1e8 and x0 <= 5 + 1
    assert float(pre.reduced.col_upper[0]) == 6.0 + IMPLIED_MARGIN * 7.0
    lp = _lp([-1, -1], [[1e-8, 1]], [-INF], [1], [0, 0], [INF, 1])
    assert gpu_presolve_lp(lp, rules=_only("implied_bounds")).outcome == (
        PresolveOutcome.NOT_REDUCED)   # x0 <= 1e8 only: too large


def test_implied_bound_multiplier_handed_to_its_row():
    """min -x0 s.t. x0 + x1 <= 4, x1 - x0 >= -6, x >= 0: row 0 implies x0 <= 4 and x1 <= 4
    (loosened). A point of the reduced LP that puts x0's multiplier on its implied bound
    (x0 = 4, y = 0, r0 = -1, as an inexact one may) maps back to the original LP's optimum:
    the row takes it, y0 = r0 / a00 = -1, and r1 = 0 - a01 y0 = 1 (x1 at its lower bound 0).
    Postsolve moves nothing but the multiplier."""
    lp = _lp([-1, 0], [[1, 1], [-1, 1]], [-INF, -6], [4, INF], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp, rules=_only("implied_bounds"))
    assert pre.rules["implied_bounds"]["sides"] == 2
    x_red = torch.tensor([4.0, 0.0], dtype=torch.float64)
    x, y, r, _ = pre.postsolve(x_red, torch.zeros(2, dtype=torch.float64),
                               torch.tensor([-1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([-1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(r, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert max(kkt_error(lp, x, y).values()) <= 1e-15
    assert lp.objective(x) == -4.0


def test_warm_start_maps_duals_through_the_rules():
    """The original LP's optimal duals, mapped into the reduced LP (shifts off, merged rows
    joined), are the reduced LP's optimal duals: postsolve of the mapped point gives them back
    (and the reduced LP's KKT holds there)."""
    lp = _lp([-1, -1], [[1, 2], [-2, -4], [3, 6], [1, -1]], [2, -10, -INF, -1],
             [INF, INF, 12, 1], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp)
    ref = solve_highs(lp)
    x_red, y_red = pre.reduce_warm_start(ref.x, ref.y)
    errors = kkt_error(pre.reduced, x_red, y_red)
    assert max(errors.values()) <= 1e-12, errors
    lp = _lp([1, 2, 3], [[1, 1, 1], [1, -1, 0]], [4, -2], [4, INF], [0, 0, -INF], [5, 5, INF])
    # without dual fixing, which would fix x0 at 5 (cost -2 after the substitution, no up-lock)
    pre = gpu_presolve_lp(lp, rules=tuple(rule for rule in RULES if rule != "dual_fix"))
    assert pre.outcome == PresolveOutcome.REDUCED
    ref = solve_highs(lp)
    x_red, y_red = pre.reduce_warm_start(ref.x, ref.y)
    assert max(kkt_error(pre.reduced, x_red, y_red).values()) <= 1e-12


def test_reduced_lp_not_built_below_min_rows_removed():
    """One row of three goes (a singleton row): with min_rows_removed 0.5 the outcome is
    NOT_REDUCED and says why (the counts are still there), with 0.3 the reduced LP is built;
    with min_nnz_removed, removing that share of the nonzeros is enough."""
    lp = _lp([1, 1], [[1, 1], [1, -1], [1, 0]], [1, 0, 0], [INF, INF, 4], [0, 0], [INF, INF])
    low = gpu_presolve_lp(lp, min_rows_removed=0.5)
    assert low.outcome == PresolveOutcome.NOT_REDUCED and low.reduced is None
    assert "33.3% of the rows < 50%: not worth it" in low.message
    assert low.rules["singleton_rows"]["rows"] == 1 and low.report()["rows_removed"] == 0
    kept = gpu_presolve_lp(lp, min_rows_removed=0.3)
    assert kept.outcome == PresolveOutcome.REDUCED and kept.rows_removed == 1
    # or by the nonzeros: the singleton row holds 1 of the 5
    low = gpu_presolve_lp(lp, min_rows_removed=0.5, min_nnz_removed=0.3)
    assert low.outcome == PresolveOutcome.NOT_REDUCED
    assert "33.3% of the rows < 50% and 20.0% of the nonzeros < 30%: not worth it" in low.message
    assert gpu_presolve_lp(lp, min_rows_removed=0.5, min_nnz_removed=0.2).outcome == (
        PresolveOutcome.REDUCED)
    x, y = _postsolved_optimum(lp, kept)
    _assert_optimal(lp, x, y)


@pytest.mark.parametrize("field, value, words", [
    ("c", [1.0, math.nan], "objective coefficient c is not finite"),
    ("col_lower", [0.0, 5.0], "lower bound > upper bound"),
])
def test_invalid_values_named_as_without_presolve(field, value, words):
    """The GPU reductions check the values on their device copy (no host pass first); the
    error names the culprit as validate_lp does, the same with presolve off, "gpu" and "auto"."""
    from l2o.lp.validate import InvalidLPError

    good = _lp([1, 1], [[1, 1], [1, -1]], [1, 0], [INF, INF], [0, 0], [INF, 4])
    bad = replace(good, **{field: torch.tensor(value, dtype=torch.float64)})
    for presolve in (False, "gpu", "auto"):
        with pytest.raises(InvalidLPError, match=words):
            solve_lp(bad, tol=1e-4, device="cpu", presolve=presolve)
    with pytest.raises(InvalidLPError, match=words):
        gpu_presolve_lp(bad)


def test_nothing_to_remove():
    lp = _lp([1, 1], [[1, 1], [1, -1]], [1, 0], [INF, INF], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.NOT_REDUCED and pre.report()["rows_removed"] == 0


def test_rule_counts_add_up_and_costly_rules_wait(monkeypatch):
    """ken-11's chain of singleton rows and fixed columns runs in cheap rounds; the costly rules
    run only after a round of cheap ones changed nothing, and the last round (nothing changed)
    runs every rule but the search rules that found nothing before (each is called again only
    while it finds something). The per-rule counts, read from the record at the end, add up to
    what the reduced LP lacks."""
    from l2o.lp import gpu_presolve
    from l2o.lp.gpu_rules import Reductions

    lp = l2o.read_lp(DATA / "large" / "ken-11.mps.gz")
    calls = []
    for name in RULES:
        rule = getattr(Reductions, name)

        def logged(self, rule=rule, name=name):
            done = rule(self)
            calls.append((name, done))
            return done

        monkeypatch.setattr(Reductions, name, logged)
    pre = gpu_presolve_lp(lp)
    cheap = set(gpu_presolve.CHEAP_RULES)
    # the final rules run after the rounds, and only there
    final = [i for i, (name, _) in enumerate(calls) if name in gpu_presolve.FINAL_RULES]
    assert final and final == list(range(len(calls) - len(final), len(calls)))
    calls = calls[:final[0]]
    # a round: the cheap rules, then the costly ones if the cheap ones changed nothing
    rounds = []
    for name, done in calls:
        if name == gpu_presolve.CHEAP_RULES[0]:
            rounds.append([])
        rounds[-1].append((name, done))
    assert len(rounds) == pre.rounds > 2
    ran_costly = 0
    for calls_of_round in rounds:
        costly = [done for name, done in calls_of_round if name not in cheap]
        if costly:
            ran_costly += 1
            assert sum(done for name, done in calls_of_round if name in cheap) == 0
    assert 1 < ran_costly < pre.rounds
    assert sum(done for _, done in rounds[-1]) == 0
    last = {name for name, _ in rounds[-1]}
    assert last == set(RULES) - set(gpu_presolve.FINAL_RULES) - set(gpu_presolve.SEARCH_RULES)
    for rule in gpu_presolve.SEARCH_RULES:   # called until a call finds nothing, then never
        found = [done for name, done in calls if name == rule]
        assert found[-1] == 0 and all(found[:-1])
    totals = {key: sum(r[key] for r in pre.rules.values()) for key in ("rows", "cols", "nnz")}
    assert totals == {"rows": pre.rows_removed, "cols": pre.cols_removed,
                      "nnz": lp.nnz - pre.reduced.nnz}
    assert pre.rules["singleton_rows"]["rows"] > 0 and pre.rules["fixed_columns"]["cols"] > 0


@pytest.mark.parametrize("name", _names("netlib"))
def test_netlib_postsolve_matches_highs(name):
    """Every shared NETLIB LP, every rule (column singletons too): HiGHS's optimum of the
    GPU-reduced LP, postsolved, is optimal on the original LP (HiGHS's objective to 1e-9, KKT
    errors <= 1e-9 in float64 or no larger than the reduced point's, unnormalized)."""
    lp = l2o.read_lp(DATA / "netlib" / f"{name}.mps.gz")
    pre = gpu_presolve_lp(lp, rules=RULES)
    if pre.outcome == PresolveOutcome.NOT_REDUCED:
        pytest.skip(f"{name}: nothing for the cheap reductions")
    x, y, reduced_errors = _postsolved_optimum(lp, pre, with_errors=True)
    _assert_optimal(lp, x, y, reduced_errors=reduced_errors)


@pytest.mark.parametrize("name", ["ken-11", "pds-10"])
def test_large_postsolve_matches_highs(name):
    lp = l2o.read_lp(DATA / "large" / f"{name}.mps.gz")
    pre = gpu_presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.REDUCED and pre.rows_removed > 0
    assert pre.reduced.nnz == lp.nnz - pre.nnz_removed
    x, y = _postsolved_optimum(lp, pre)
    _assert_optimal(lp, x, y, kkt_tol=1e-7)


def test_maximization_postsolve():
    """sc50a maximized with c0 = 3: the reduced LP keeps the sense; duals in minimization form."""
    lp = l2o.read_lp(DATA / "netlib" / "sc50a.mps.gz")
    flipped = replace(lp, c=-lp.c, sense="maximize", c0=3.0)
    pre = gpu_presolve_lp(flipped)
    assert pre.reduced.sense == "maximize"
    x, y = _postsolved_optimum(flipped, pre)
    _assert_optimal(flipped, x, y)


@pytest.mark.parametrize("name", ["sc205", "scagr7", "recipe"])
def test_solve_lp_gpu_presolve(name):
    """PDHG on the GPU-reduced LP to 1e-8: HiGHS's objective to 1e-6 relative, the KKT errors
    those of the original LP (recipe: 17 column singletons substituted, 1 column dual-fixed)."""
    lp = l2o.read_lp(DATA / "netlib" / f"{name}.mps.gz")
    res = solve_lp(lp, tol=1e-8, device="cpu", presolve="gpu", iteration_limit=100_000)
    assert res.status == LPStatus.OPTIMAL, res.message
    assert res.presolve["applied"] and res.presolve["by"] == "gpu"
    assert res.presolve["rows_removed"] > 0
    expected = solve_highs(lp).objective
    assert abs(res.objective - expected) <= 1e-6 * max(1.0, abs(expected))
    assert kkt_error(lp, res.x, res.y, res.reduced_costs) == pytest.approx(res.kkt)
    assert max(res.kkt.values()) <= 1e-8


@pytest.mark.parametrize("folder, name, status, words", [
    ("infeasible", "woodinfe", LPStatus.PRIMAL_INFEASIBLE, "the certificate verifies"),
    ("unbounded", "gas11", LPStatus.DUAL_INFEASIBLE, "the certificate verifies"),
    ("infeasible", "galenet", LPStatus.PRIMAL_INFEASIBLE, "the certificate verifies"),
])
def test_statuses_with_gpu_presolve(folder, name, status, words):
    """woodinfe: crossed bounds found by the reductions (their ray verifies); gas11: an empty
    column with an unbounded cost (its ray verifies); galenet: a row whose activity cannot
    reach its bound (its ray verifies)."""
    lp = l2o.read_lp(DATA / folder / f"{name}.mps")
    res = solve_lp(lp, device="cpu", presolve="gpu", iteration_limit=50_000)
    assert res.status == status and words in res.message, res.message
    assert res.presolve["by"] == "gpu" and math.isnan(res.objective)
    if status == LPStatus.DUAL_INFEASIBLE:
        cx, violation = verify_primal_ray(lp, res.x)
        assert cx < 0 and violation <= 1e-8 * -cx
    elif not bool(torch.isnan(res.y).any()):
        objective, residual = verify_dual_ray(lp, res.y)
        assert objective > 0 and residual <= 1e-8 * objective


def test_reduced_lp_ray_carries_over():
    """galenet without the activity rule: reduced by the others, PDHG proves the reduced LP
    infeasible and its Farkas ray, postsolved with c = 0, verifies on the original LP."""
    lp = l2o.read_lp(DATA / "infeasible" / "galenet.mps")
    rules = tuple(rule for rule in RULES if rule != "activity_rows")
    pre = gpu_presolve_lp(lp, rules=rules)
    assert pre.outcome == PresolveOutcome.REDUCED
    res = solve_lp(pre.reduced, device="cpu", presolve=False, iteration_limit=50_000)
    assert res.status == LPStatus.PRIMAL_INFEASIBLE, res.message
    objective, residual = verify_dual_ray(lp, pre.carry_dual_ray(res.y))
    assert objective > 0 and residual <= 1e-8 * objective


def test_warm_start_through_gpu_presolve():
    """sc205 with c perturbed by 1%: the original LP's solution, mapped into the reduced LP,
    starts it at most 0.7x the iterations of a cold start, both with presolve="gpu"."""
    lp = l2o.read_lp(DATA / "netlib" / "sc205.mps.gz")
    base = solve_lp(lp, device="cpu", presolve="gpu")
    g = torch.Generator().manual_seed(0)
    factor = 1 + 0.01 * (2 * torch.rand(lp.num_cols, generator=g, dtype=torch.float64) - 1)
    perturbed = replace(lp, c=lp.c * factor)
    cold = solve_lp(perturbed, device="cpu", presolve="gpu")
    warm = solve_lp(perturbed, device="cpu", presolve="gpu", warm_start=base)
    for res in (base, cold, warm):
        assert res.status == LPStatus.OPTIMAL and res.presolve["by"] == "gpu", res.message
    assert warm.iterations <= 0.7 * cold.iterations, (warm.iterations, cold.iterations)
    pre = gpu_presolve_lp(perturbed)
    x_red, y_red = pre.reduce_warm_start(base.x, base.y)
    torch.testing.assert_close(x_red, base.x[pre.col_index])
    torch.testing.assert_close(y_red, base.y[pre.row_index])
    with pytest.raises(ValueError, match="shape"):
        pre.reduce_warm_start(base.x[:-1], None)


def test_presolve_values():
    from l2o.pdhg.presolve import PresolveBy, decide_presolve

    lp = l2o.read_lp(DATA / "large" / "ken-11.mps.gz")
    assert decide_presolve(lp, "gpu").by is PresolveBy.GPU
    assert decide_presolve(lp, "highs").by is PresolveBy.HIGHS
    assert decide_presolve(lp, True).by is PresolveBy.HIGHS
    with pytest.raises(ValueError, match="'gpu'"):
        decide_presolve(lp, "GPU")


def test_cli_presolve_gpu(capsys):
    from l2o.cli import main

    code = main(["solve", str(DATA / "netlib" / "sc205.mps.gz"), "--presolve", "gpu", "--json",
                 "--device", "cpu"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["status"] == "optimal"
    assert data["presolve"]["by"] == "gpu" and data["presolve"]["rows_removed"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["ken-11", "pds-10"])
def test_cuda_reductions_match_cpu(name):
    """Every rule on the GPU removes what it removes on the CPU, and both records postsolve
    HiGHS's optimum of the reduced LP to an optimum of the original."""
    lp = l2o.read_lp(DATA / "large" / f"{name}.mps.gz")
    cpu = gpu_presolve_lp(lp, rules=RULES)
    cuda = gpu_presolve_lp(lp, device="cuda", rules=RULES)
    assert cuda.report()["rows_removed"] == cpu.report()["rows_removed"]
    assert torch.equal(cuda.col_index, cpu.col_index)
    assert torch.equal(cuda.row_index, cpu.row_index)
    ref = solve_highs(cpu.reduced)
    for pre in (cpu, cuda):
        x, y, _, _ = pre.postsolve(ref.x, ref.y)
        _assert_optimal(lp, x, y, kkt_tol=1e-7)


def test_auto_gives_up_a_reduction_far_below_its_threshold():
    """scrs8's reductions creep (4.1% of the rows after 3 rounds, 12.4% after 32): with the
    "auto" thresholds the presolve stops after GIVE_UP_ROUND rounds and says so; without a
    threshold it runs to its fixed point."""
    from l2o.lp import gpu_presolve

    lp = l2o.read_lp(DATA / "netlib" / "scrs8.mps.gz")
    auto = gpu_presolve_lp(lp, min_rows_removed=0.2, min_nnz_removed=0.2)
    assert auto.outcome == PresolveOutcome.NOT_REDUCED
    assert auto.rounds == gpu_presolve.GIVE_UP_ROUND and "given up after 3 rounds" in auto.message
    full = gpu_presolve_lp(lp)
    assert full.outcome == PresolveOutcome.REDUCED and full.rounds > 10
    assert full.rows_removed / lp.num_rows < 0.2     # it would not have been kept either
    # a reduction past the threshold is kept as before (ken-11: 21% of the rows in round 1)
    ken = gpu_presolve_lp(l2o.read_lp(DATA / "large" / "ken-11.mps.gz"), min_rows_removed=0.2,
                          min_nnz_removed=0.2)
    assert ken.outcome == PresolveOutcome.REDUCED and ken.rounds > gpu_presolve.GIVE_UP_ROUND
