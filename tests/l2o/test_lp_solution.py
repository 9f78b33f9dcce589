"""JSON solution files: write by name, read back as a warm start, strict name matching."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import l2o
from l2o.lp import SolutionFileError, read_warm_start, write_solution


def _result(x, y, objective=1.5):
    return l2o.LPResult(x=torch.tensor(x, dtype=torch.float64),
                        y=torch.tensor(y, dtype=torch.float64), reduced_costs=torch.zeros(len(x)),
                        objective=objective, dual_objective=math.nan,
                        status=l2o.LPStatus.ITERATION_LIMIT, message="limit", iterations=7,
                        solve_time=0.25, kkt={"rel_primal_residual": 0.1,
                                              "rel_dual_residual": math.inf, "rel_gap": 0.3})


def test_round_trip_by_name(tmp_path):
    lp = l2o.LinearProgram.create([1.0, 2.0, 3.0], np.eye(2, 3), [0.0, 0.0], [1.0, 1.0],
                                  row_names=["r a", "r b"], col_names=["z", "y", "x"])
    path = tmp_path / "sol.json"
    write_solution(lp, _result([0.5, -1.0, 2.0], [3.0, 4.0]), path)
    data = json.loads(path.read_text())
    assert data["x"] == {"z": 0.5, "y": -1.0, "x": 2.0} and data["y"] == {"r a": 3.0, "r b": 4.0}
    assert data["status"] == "iteration_limit" and data["iterations"] == 7
    assert data["dual_objective"] is None and data["kkt"]["rel_dual_residual"] is None  # no NaN
    # another LP with the same names in another order: values follow the names
    other = l2o.LinearProgram.create([1.0, 2.0, 3.0], np.eye(2, 3), [0.0, 0.0], [1.0, 1.0],
                                     row_names=["r b", "r a"], col_names=["x", "y", "z"])
    x, y = read_warm_start(other, path)
    assert x.tolist() == [2.0, -1.0, 0.5] and y.tolist() == [4.0, 3.0]


def test_unnamed_lp_uses_generated_names(tmp_path):
    lp = l2o.LinearProgram.create([1.0, 1.0], [[1.0, 1.0]], [1.0], [np.inf])
    path = tmp_path / "sol.json"
    write_solution(lp, _result([0.25, 0.75], [1.0]), path)
    assert set(json.loads(path.read_text())["x"]) == {"x0", "x1"}
    x, y = read_warm_start(lp, path)
    assert x.tolist() == [0.25, 0.75] and y.tolist() == [1.0]


def test_partial_and_bad_files(tmp_path):
    lp = l2o.LinearProgram.create([1.0, 1.0], [[1.0, 1.0]], [1.0], [np.inf])
    path = tmp_path / "sol.json"
    path.write_text(json.dumps({"x": {"x0": 1, "x1": 0}}))
    x, y = read_warm_start(lp, path)
    assert x.tolist() == [1.0, 0.0] and y is None
    for content, pattern in [
            ("[1, 2]", "expected a JSON object"),
            ("{}", "neither 'x' nor 'y'"),
            (json.dumps({"y": [1.0]}), "'y' must be an object"),
            (json.dumps({"y": {"r0": None}}), r"y\['r0'\] = None is not a finite number"),
            (json.dumps({"x": {"x0": 1, "x1": 0, "x2": 5}}), r"1 unknown \('x2'\)"),
            (json.dumps({"x": {"x0": True, "x1": 0}}), "is not a finite number")]:
        path.write_text(content)
        with pytest.raises(SolutionFileError, match=pattern):
            read_warm_start(lp, path)
