"""LinearProgram.from_linprog / to_scipy against scipy.optimize.linprog (HiGHS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

import l2o
from l2o.lp import solve_highs

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"


def _random_problem(seed: int):
    """A bounded feasible linprog problem: x0 is feasible, the box keeps it bounded."""
    rng = np.random.default_rng(seed)
    n, m_ub, m_eq = 8, 5, 3
    x0 = rng.uniform(0.1, 1.0, n)
    A_ub, A_eq = rng.normal(size=(m_ub, n)), rng.normal(size=(m_eq, n))
    return dict(c=rng.normal(size=n), A_ub=A_ub, b_ub=A_ub @ x0 + rng.uniform(0, 1, m_ub),
                A_eq=A_eq, b_eq=A_eq @ x0, bounds=[(0, 2)] * 4 + [(None, 3)] * 2 + [(-1, None)]
                + [(0.1, 0.1)])


@pytest.mark.parametrize("seed", range(3))
def test_from_linprog_matches_linprog(seed):
    problem = _random_problem(seed)
    expected = linprog(**problem, method="highs")
    assert expected.status == 0
    lp = l2o.LinearProgram.from_linprog(**problem)
    assert (lp.num_rows, lp.num_cols) == (8, 8)
    assert lp.row_names[:2] == ["ub0", "ub1"] and lp.row_names[-1] == "eq2"
    ref = solve_highs(lp)
    assert ref.objective == pytest.approx(expected.fun, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(ref.x.numpy(), expected.x, atol=1e-7)
    # and back: linprog on to_scipy() gives the same optimum
    again = linprog(**lp.to_scipy(), method="highs")
    assert again.fun == pytest.approx(expected.fun, rel=1e-9, abs=1e-9)


def test_default_bounds_are_nonnegative_and_scalar_pair_applies_to_all():
    lp = l2o.LinearProgram.from_linprog([1.0, 1.0], A_ub=[[-1.0, -1.0]], b_ub=[-1.0])
    assert lp.col_lower.tolist() == [0.0, 0.0] and lp.col_upper.tolist() == [np.inf, np.inf]
    lp = l2o.LinearProgram.from_linprog([1.0, 1.0, 1.0], bounds=(None, 5))
    assert lp.col_lower.tolist() == [-np.inf] * 3 and lp.col_upper.tolist() == [5.0] * 3
    assert lp.num_rows == 0
    lp = l2o.LinearProgram.from_linprog([1.0, 1.0], A_eq=sp.csr_matrix([[1.0, 2.0]]), b_eq=3.0,
                                        bounds=[(0, 1), (None, None)])
    assert lp.row_lower.tolist() == lp.row_upper.tolist() == [3.0]
    assert lp.col_lower.tolist() == [0.0, -np.inf] and lp.col_upper.tolist() == [1.0, np.inf]


def test_from_linprog_errors():
    with pytest.raises(ValueError, match=r"A_ub has shape \(1, 3\), expected \(rows, 2\)"):
        l2o.LinearProgram.from_linprog([1.0, 1.0], A_ub=[[1.0, 1.0, 1.0]], b_ub=[1.0])
    with pytest.raises(ValueError, match="b_eq has 2 entries, expected 1"):
        l2o.LinearProgram.from_linprog([1.0, 1.0], A_eq=[[1.0, 1.0]], b_eq=[1.0, 2.0])
    with pytest.raises(ValueError, match="bounds must be one"):
        l2o.LinearProgram.from_linprog([1.0, 1.0], bounds=[(0, 1)] * 3)
    with pytest.raises(ValueError, match="column with lower bound > upper bound: column 'x0'"):
        l2o.LinearProgram.from_linprog([1.0, 1.0], bounds=[(2, 1), (0, 1)])


@pytest.mark.parametrize("name", ["afiro", "blend", "sc50a"])
def test_to_scipy_solves_netlib(name):
    lp = l2o.read_lp(DATA / "netlib" / f"{name}.mps.gz")
    res = linprog(**lp.to_scipy(), method="highs")
    assert res.status == 0
    assert lp.objective_from_scipy(res.fun) == pytest.approx(solve_highs(lp).objective,
                                                             rel=1e-9)


def test_to_scipy_maximize_ranged_rows_and_constant():
    """max 3x + 2y - z + 7 with a ranged row, an equality, a free row and a free column."""
    lp = l2o.LinearProgram.create(
        [3.0, 2.0, -1.0], [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, -1.0], [1.0, 1.0, 1.0]],
        row_lower=[-np.inf, 1.0, -1.0, -np.inf], row_upper=[4.0, 1.0, 5.0, np.inf],
        col_lower=[0.0, -2.0, -np.inf], col_upper=[3.0, 6.0, np.inf], c0=7.0,
        sense=l2o.MAXIMIZE)
    kwargs = lp.to_scipy()
    assert kwargs["A_ub"].shape == (3, 3)  # row 0 (<=), row 2 twice (ranged); row 3 free
    assert kwargs["A_eq"].shape == (1, 3)
    np.testing.assert_array_equal(kwargs["c"], [-3.0, -2.0, 1.0])
    res = linprog(**kwargs, method="highs")
    ref = solve_highs(lp)
    assert ref.status == l2o.LPStatus.OPTIMAL
    assert lp.objective_from_scipy(res.fun) == pytest.approx(ref.objective, abs=1e-9)
    # by hand: z = 1 - x, y <= 4 - x, y - z <= 5: x = 3, y = 1, z = -2: 9 + 2 + 2 + 7 = 20
    assert ref.objective == pytest.approx(20.0, abs=1e-9)
    back = l2o.LinearProgram.from_linprog(**kwargs)
    assert solve_highs(back).objective == pytest.approx(res.fun, abs=1e-9)
