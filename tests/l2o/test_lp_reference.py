"""solve_highs: statuses and the dual sign convention of l2o (minimization form)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import l2o
from l2o.lp import solve_highs


@pytest.mark.parametrize("sense", [l2o.MINIMIZE, l2o.MAXIMIZE])
def test_dual_signs_on_tiny_lps(sense):
    """min x1 + 2 x2 s.t. x1 + x2 >= 1 (lower bound active: y = 1 >= 0), x2 - x1 <= 0.5,
    x >= 0: x* = (1, 0), y* = (1, 0), r* = c - A^T y = (0, 1), objective 1 + c0.
    As a maximization of the negated costs the minimization-form duals are the same."""
    sign = 1.0 if sense == l2o.MINIMIZE else -1.0
    lp = l2o.LinearProgram.create(sign * np.array([1.0, 2.0]), [[1.0, 1.0], [-1.0, 1.0]],
                                  [1.0, -np.inf], [np.inf, 0.5], c0=sign * 3.0, sense=sense)
    ref = solve_highs(lp)
    assert ref.status == l2o.LPStatus.OPTIMAL
    assert ref.objective == pytest.approx(sign * 4.0)
    assert ref.dual_objective == pytest.approx(sign * 4.0)
    assert ref.x.tolist() == pytest.approx([1.0, 0.0])
    assert ref.y.tolist() == pytest.approx([1.0, 0.0])
    assert ref.reduced_costs.tolist() == pytest.approx([0.0, 1.0])


def test_upper_row_bound_gives_nonpositive_dual():
    """min -x s.t. x <= 2 (a row), x >= 0: y = -1 <= 0 on the active upper bound."""
    lp = l2o.LinearProgram.create([-1.0], [[1.0]], [-np.inf], [2.0])
    ref = solve_highs(lp)
    assert ref.objective == pytest.approx(-2.0)
    assert ref.y.tolist() == pytest.approx([-1.0])


@pytest.mark.parametrize("method", ["simplex", "ipm"])
def test_methods_agree(method):
    lp = l2o.load_example("afiro")
    ref = solve_highs(lp, method=method)
    assert ref.status == l2o.LPStatus.OPTIMAL
    assert ref.objective == pytest.approx(-464.75314286, rel=1e-8)
    cmin, _ = lp.minimize_c
    residual = cmin - torch.sparse.mm(lp.A.t(), ref.y[:, None]).squeeze(1) - ref.reduced_costs
    assert residual.abs().max() <= 1e-9


def test_infeasible_and_unbounded_have_nan_objective():
    infeasible = l2o.LinearProgram.create([1.0], [[1.0], [1.0]], [2.0, -np.inf], [np.inf, 1.0])
    ref = solve_highs(infeasible)
    assert ref.status == l2o.LPStatus.PRIMAL_INFEASIBLE and np.isnan(ref.objective)
    unbounded = l2o.LinearProgram.create([-1.0], [[1.0]], [0.0], [np.inf])
    assert solve_highs(unbounded).status == l2o.LPStatus.DUAL_INFEASIBLE
