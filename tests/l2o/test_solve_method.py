"""solve_lp(method="pdhg" | "highs" | "auto"): one LPResult from either solver; infeasible and
unbounded results carry no objective (nan, JSON null, "n/a")."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import l2o
from l2o.cli import main
from l2o.lp.kkt import kkt_error, verify_dual_ray, verify_primal_ray
from l2o.lp.result import LPResult, LPStatus
from l2o.pdhg import method as method_module

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


@pytest.mark.parametrize("name", ["afiro", "sc50a", "adlittle", "blend"])
def test_highs_and_pdhg_give_the_same_result(name):
    lp = l2o.read_lp(DATA / "netlib" / f"{name}.mps.gz")
    highs = l2o.solve_lp(lp, method="highs")
    pdhg = l2o.solve_lp(lp, method="pdhg", tol=1e-8, device="cpu")
    assert isinstance(highs, LPResult) and isinstance(pdhg, LPResult)
    assert highs.method == "highs" and pdhg.method == "pdhg"
    assert highs.status == pdhg.status == LPStatus.OPTIMAL
    assert highs.message.startswith("HiGHS: Optimal")
    for field in ("x", "reduced_costs"):
        assert getattr(highs, field).shape == getattr(pdhg, field).shape == (lp.num_cols,)
    assert highs.y.shape == pdhg.y.shape == (lp.num_rows,)
    for res in (highs, pdhg):
        assert all(v.dtype == torch.float64 and v.device.type == "cpu"
                   for v in (res.x, res.y, res.reduced_costs))
        assert set(res.kkt) == {"rel_primal_residual", "rel_dual_residual", "rel_gap"}
        assert res.iterations > 0 and res.solve_time > 0
    # the same optimum and dual optimum (the solutions themselves need not be unique)
    assert _rel(pdhg.objective, highs.objective) <= 1e-6
    assert _rel(pdhg.dual_objective, highs.dual_objective) <= 1e-6
    assert _rel(highs.objective, highs.dual_objective) <= 1e-9
    # HiGHS's kkt are the shared relative KKT errors of its vertex: tiny
    assert max(highs.kkt.values()) <= 1e-9
    assert max(pdhg.kkt.values()) <= 1e-8


def test_maximization_signs_agree():
    lp = l2o.load_example("afiro")
    mx = dataclasses.replace(lp, c=-lp.c, sense="maximize")
    highs, pdhg = l2o.solve_lp(mx, method="highs"), l2o.solve_lp(mx, tol=1e-8, device="cpu")
    assert highs.objective > 0 and _rel(pdhg.objective, highs.objective) <= 1e-6
    assert _rel(pdhg.dual_objective, highs.dual_objective) <= 1e-6
    # y in the minimization-form convention: a sign slip would show in the dual residual
    assert max(kkt_error(mx, highs.x, highs.y).values()) <= 1e-9


@pytest.mark.parametrize("method", ["highs", "pdhg"])
def test_infeasible_result_has_no_objective_and_a_checked_ray(method):
    lp = l2o.read_lp(DATA / "infeasible" / "galenet.mps")
    res = l2o.solve_lp(lp, method=method, device="cpu", iteration_limit=50_000)
    assert res.status == LPStatus.PRIMAL_INFEASIBLE
    assert math.isnan(res.objective) and math.isnan(res.dual_objective)
    objective, residual = verify_dual_ray(lp, res.y)
    assert objective > 0 and residual <= 1e-8 * objective
    assert float(res.y.abs().max()) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["highs", "pdhg"])
def test_unbounded_result_has_no_objective_and_a_checked_ray(method):
    lp = l2o.LinearProgram.create([-1, 0], np.array([[1.0, -1]]), row_upper=[1])
    res = l2o.solve_lp(lp, method=method, device="cpu", iteration_limit=10_000)
    assert res.status == LPStatus.DUAL_INFEASIBLE
    assert math.isnan(res.objective) and math.isnan(res.dual_objective)
    cx, violation = verify_primal_ray(lp, res.x)
    assert cx < 0 and violation <= 1e-8 * -cx


def test_no_objective_in_json_and_summary(capsys, tmp_path):
    from l2o.lp.solution import solution_dict

    lp = l2o.read_lp(DATA / "infeasible" / "galenet.mps")
    res = l2o.solve_lp(lp, device="cpu")
    data = solution_dict(lp, res)
    assert data["objective"] is None and data["dual_objective"] is None
    code = main(["solve", str(DATA / "infeasible" / "galenet.mps"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 4
    assert [line.split()[-1] for line in out.splitlines()
            if line.strip().startswith(("objective", "dual objective"))] == ["n/a", "n/a"]


def test_auto_picks_by_size_and_warm_start(monkeypatch):
    lp = l2o.load_example("afiro")                          # 83 nonzeros
    assert l2o.solve_lp(lp, method="auto").method == "highs"
    start = l2o.solve_lp(lp, method="highs")
    warm = l2o.solve_lp(lp, method="auto", warm_start=start, device="cpu")
    assert warm.method == "pdhg" and warm.status == LPStatus.OPTIMAL
    monkeypatch.setattr(method_module, "AUTO_HIGHS_MAX_NNZ", lp.nnz)   # "fewer than": not afiro
    assert l2o.solve_lp(lp, method="auto", device="cpu").method == "pdhg"
    monkeypatch.setattr(method_module, "AUTO_HIGHS_MAX_NNZ", lp.nnz + 1)
    assert l2o.solve_lp(lp, method="auto", device="cpu").method == "highs"


def test_bad_method_and_highs_with_warm_start():
    lp = l2o.load_example("afiro")
    with pytest.raises(ValueError, match="method must be 'pdhg', 'highs' or 'auto'"):
        l2o.solve_lp(lp, method="simplex")
    with pytest.raises(ValueError, match="method='highs' takes no warm_start"):
        l2o.solve_lp(lp, method="highs", warm_start=(None, None))


def test_highs_limits():
    lp = l2o.read_lp(DATA / "netlib" / "sc205.mps.gz")
    res = l2o.solve_lp(lp, method="highs", iteration_limit=3)
    assert res.status == LPStatus.ITERATION_LIMIT and res.iterations <= 3


def test_cli_method_flag(capsys):
    code = main(["solve", "--example", "afiro", "--method", "highs", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["status"] == "optimal" and data["message"].startswith("HiGHS")
    assert _rel(data["objective"], -464.7531428571) <= 1e-9
    code = main(["solve", "--example", "afiro", "--method", "highs", "--model", "pagerank"])
    assert code == 2 and "--method pdhg" in capsys.readouterr().err
