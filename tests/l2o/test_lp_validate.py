"""validate_lp: bad LP data gives an InvalidLPError naming the row/column."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import l2o
from l2o.lp import InvalidLPError, LPFormatError, validate_lp


def _lp(**changes):
    """2 rows x 3 columns, named."""
    data = dict(c=[1.0, 2.0, 3.0], A=[[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]],
                row_lower=[0.0, -np.inf], row_upper=[4.0, 5.0],
                col_lower=[0.0, 0.0, -1.0], col_upper=[1.0, np.inf, 1.0])
    data.update(changes)
    return l2o.LinearProgram.create(data.pop("c"), data.pop("A"), **data,
                                    row_names=["cap", "demand"], col_names=["x", "y", "z"])


def test_valid_lp_passes():
    validate_lp(_lp())
    assert issubclass(LPFormatError, InvalidLPError) and issubclass(InvalidLPError, ValueError)


@pytest.mark.parametrize("changes, pattern", [
    (dict(c=[1.0, math.nan, 3.0]), (r"objective coefficient c is not finite \(nan\) for column "
                                    r"'y' \(index 1\)")),
    (dict(c=[1.0, 2.0, math.inf]), r"not finite \(inf\) for column 'z' \(index 2\)"),
    (dict(A=[[1.0, 0.0, 2.0], [0.0, 1.0, math.nan]]),
     r"non-finite entries at row 'demand' \(index 1\), column 'z' \(index 2\): nan"),
    (dict(A=[[-math.inf, 0.0, 2.0], [0.0, 1.0, 1.0]]), r"row 'cap' \(index 0\), column 'x'"),
    (dict(row_lower=[5.0, -np.inf]),
     r"1 row with lower bound > upper bound: row 'cap' \(index 0\); the first has "
     r"\[lower, upper\] = \[5.0, 4.0\]"),
    (dict(col_lower=[0.0, 0.0, 2.0]), r"column with lower bound > upper bound: column 'z'"),
    (dict(col_upper=[math.nan, 1.0, 1.0]), r"column with upper bound is NaN: column 'x'"),
    (dict(row_lower=[math.nan, math.nan]), (r"2 rows with lower bound is NaN: row 'cap' "
                                            r"\(index 0\), row 'demand' \(index 1\)")),
    (dict(row_lower=[math.inf, 0.0]), r"row with lower bound is \+inf: row 'cap'"),
    (dict(col_upper=[1.0, -math.inf, 1.0]), r"column with upper bound is -inf: column 'y'"),
])
def test_bad_data_names_row_or_column(changes, pattern):
    with pytest.raises(InvalidLPError, match=pattern):
        _lp(**changes)


def test_unnamed_lp_uses_generated_names():
    with pytest.raises(InvalidLPError, match=r"column 'x1' \(index 1\)"):
        l2o.LinearProgram.create([1.0, math.nan], [[1.0, 1.0]])


def test_many_offenders_are_counted():
    n = 10
    with pytest.raises(InvalidLPError, match=r"10 columns with lower bound > upper bound: "
                                             r".*index 2\) and 7 more"):
        l2o.LinearProgram.create(np.ones(n), np.ones((1, n)), col_lower=np.ones(n),
                                 col_upper=np.zeros(n))


def test_shape_and_other_errors():
    with pytest.raises(ValueError, match="c has 2 entries, expected 3"):
        l2o.LinearProgram.create([1.0, 2.0], np.ones((2, 3)))
    lp = _lp()
    lp.row_upper = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(InvalidLPError, match=r"row_upper has shape \(3,\), expected \(2,\)"):
        validate_lp(lp)
    lp = _lp()
    lp.col_names = ["x"]
    with pytest.raises(InvalidLPError, match="col_names has 1 names for 3 columns"):
        validate_lp(lp)
    lp = _lp()
    lp.sense = "max"
    with pytest.raises(InvalidLPError, match="sense must be"):
        validate_lp(lp)
    lp = _lp()
    lp.c0 = math.nan
    with pytest.raises(InvalidLPError, match="objective constant"):
        validate_lp(lp)
    lp = _lp()
    lp.A = lp.A.to_dense()
    with pytest.raises(InvalidLPError, match="sparse_csr"):
        validate_lp(lp)


def test_write_lp_validates(tmp_path):
    lp = _lp()
    lp.col_lower = torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64)
    lp.col_upper = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    with pytest.raises(InvalidLPError, match="column 'y'"):
        l2o.write_lp(lp, tmp_path / "bad.mps")
    assert not (tmp_path / "bad.mps").exists()


def test_solution_file_needs_unique_names():
    from l2o.lp.solution import solution_dict

    lp = l2o.LinearProgram.create([1.0, 1.0], [[1.0, 1.0]], [1.0], [np.inf], col_names=["a", "a"])
    result = l2o.LPResult(x=torch.zeros(2), y=torch.zeros(1), reduced_costs=torch.zeros(2),
                          objective=0.0, dual_objective=0.0, status=l2o.LPStatus.OPTIMAL,
                          message="", iterations=0, solve_time=0.0)
    with pytest.raises(InvalidLPError, match=r"column names are not unique \('a' repeats\)"):
        solution_dict(lp, result)
