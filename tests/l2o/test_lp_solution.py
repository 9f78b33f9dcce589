"""Solution files (JSON and HiGHS .sol): written by name, read back as a warm start, strict
name matching."""

from __future__ import annotations

import json
import math
from pathlib import Path

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


# ---- HiGHS solution files (.sol) -----------------------------------------------------------------

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"


def _named_max_lp(row_names, col_names):
    """max x + 2y + 0z, x + y <= 4 (row 'cap a'), y - z >= -1 (row 'link'), 0 <= x, y, z <= 3."""
    return l2o.LinearProgram.create([1.0, 2.0, 0.0], [[1.0, 1.0, 0.0], [0.0, 1.0, -1.0]],
                                    [-np.inf, -1.0], [4.0, np.inf], [0.0] * 3, [3.0] * 3,
                                    sense=l2o.MAXIMIZE, row_names=row_names, col_names=col_names)


def test_highs_solution_round_trip_by_name(tmp_path):
    """HiGHS's own optimum written through l2o gives the file HiGHS writes after its own solve
    (duals in HiGHS's sign convention for a maximization); x and y come back by name (another
    order, blanks as '_'), y in l2o's minimization form; highspy reads the file against the LP
    written as MPS."""
    import highspy

    from l2o.lp._highs import lp_to_highs, quiet_highs

    lp = _named_max_lp(["cap a", "link"], ["x", "y", "z"])
    reference = l2o.solve_highs(lp)
    result = _result(reference.x.tolist(), reference.y.tolist())
    result.reduced_costs = reference.reduced_costs
    path = tmp_path / "max.sol"
    assert write_solution(lp, result, path)["x"] == {"x": 1.0, "y": 3.0, "z": 0.0}
    assert not (tmp_path / "max.json").exists()
    with quiet_highs() as (highs, _):
        highs.passModel(lp_to_highs(lp))
        highs.run()
        highs.writeSolution(str(tmp_path / "highs.sol"), 0)
    ours, theirs = path.read_text(), (tmp_path / "highs.sol").read_text()
    section = slice(ours.index("# Primal"), ours.index("# Basis"))
    assert ours[section] == theirs[section.start:theirs.index("# Basis")]
    assert "cap_a 1\n" in ours  # HiGHS's dual of the binding row of a maximization: +1

    other = _named_max_lp(["link", "cap a"], ["z", "x", "y"])
    x, y = read_warm_start(other, path)
    assert x.tolist() == [0.0, 1.0, 3.0]
    assert y.tolist() == [0.0, -1.0]  # minimization form: -1 on the binding upper row

    mps = tmp_path / "max.mps"
    with pytest.warns(UserWarning, match="blanks"):
        l2o.write_lp(lp, mps)
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.readModel(str(mps))
    assert highs.readSolution(str(path), 0) == highspy.HighsStatus.kOk
    assert list(highs.getSolution().col_value) == [1.0, 3.0, 0.0]


def test_highs_solution_of_unnamed_lp_and_without_duals(tmp_path):
    lp = l2o.LinearProgram.create([1.0, 1.0], [[1.0, 1.0]], [1.0], [np.inf])
    path = tmp_path / "sol.sol"
    write_solution(lp, _result([0.25, 0.75], [1.0]), path)
    assert "x0 0.25" in path.read_text() and "r0 1" in path.read_text()
    x, y = read_warm_start(lp, path)
    assert x.tolist() == [0.25, 0.75] and y.tolist() == [1.0]
    text = path.read_text()
    start = text.index("# Dual solution values")
    path.write_text(text[:start] + "# Dual solution values\nNone\n\n" +
                    text[text.index("# Basis"):])
    x, y = read_warm_start(lp, path)
    assert x.tolist() == [0.25, 0.75] and y is None


def test_warm_start_from_sol_equals_warm_start_from_json(tmp_path):
    lp = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    first = l2o.solve_lp(lp, tol=1e-4, device="cpu")
    write_solution(lp, first, tmp_path / "afiro.sol")
    write_solution(lp, first, tmp_path / "afiro.json")
    x_sol, y_sol = read_warm_start(lp, tmp_path / "afiro.sol")
    x_json, y_json = read_warm_start(lp, tmp_path / "afiro.json")
    # HiGHS writes at most 13 decimals and 15 significant digits
    torch.testing.assert_close(x_sol, x_json, rtol=1e-14, atol=1e-12)
    torch.testing.assert_close(y_sol, y_json, rtol=1e-14, atol=1e-12)
    from_sol = l2o.solve_lp(lp, tol=1e-6, device="cpu", warm_start=(x_sol, y_sol))
    from_json = l2o.solve_lp(lp, tol=1e-6, device="cpu", warm_start=(x_json, y_json))
    assert from_sol.status == from_json.status == l2o.LPStatus.OPTIMAL
    assert from_sol.iterations == from_json.iterations
    assert from_sol.objective == pytest.approx(from_json.objective, rel=1e-12)


def test_highs_solution_of_another_lp_or_bad_values(tmp_path):
    lp = l2o.LinearProgram.create([1.0, 1.0], [[1.0, 1.0]], [1.0], [np.inf],
                                  col_names=["a", "b"])
    path = tmp_path / "sol.sol"
    write_solution(lp, _result([0.25, 0.75], [1.0]), path)
    renamed = l2o.LinearProgram.create([1.0, 1.0], [[1.0, 1.0]], [1.0], [np.inf],
                                       col_names=["a", "c"])
    with pytest.raises(SolutionFileError, match=r"not a HiGHS solution file of this LP.*"
                                                r"column name \"a\" is not found|\"b\""):
        read_warm_start(renamed, path)
    bigger = l2o.LinearProgram.create([1.0] * 3, [[1.0] * 3], [1.0], [np.inf])
    with pytest.raises(SolutionFileError, match=r"1 rows, 3 columns.*2 columns, not 3"):
        read_warm_start(bigger, path)
    path.write_text('{"x": {"a": 1, "b": 0}}')  # JSON under a .sol name
    with pytest.raises(SolutionFileError, match="not a HiGHS solution file"):
        read_warm_start(lp, path)
    with pytest.raises(ValueError, match="x has 1 non-finite entries"):
        write_solution(lp, _result([math.nan, 0.75], [1.0]), path)
    clash = l2o.LinearProgram.create([1.0, 1.0], [[1.0, 1.0]], [1.0], [np.inf],
                                     col_names=["a b", "a_b"])
    with pytest.raises(l2o.InvalidLPError, match="'a_b'.*repeats"):
        write_solution(clash, _result([0.25, 0.75], [1.0]), path)
