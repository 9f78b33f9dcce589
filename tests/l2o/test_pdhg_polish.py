"""solve_lp(..., polish=True): feasibility polishing of a 1e-4 point to 1e-8 relative primal and
dual residuals on the original LP, the gap kept within tol; honest reports when it falls short."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import l2o
from l2o import LPStatus, solve_lp
from l2o.lp import solve_highs
from l2o.lp.kkt import kkt_error
from l2o.lp.solution import solution_dict
from l2o.pdhg import prepare
from l2o.pdhg.polish import dual_feasibility_problem, primal_feasibility_problem
from l2o.pdhg.statistics import CheckStatistics, RayStatistics
from l2o.pdhg.termination import RAY_CANDIDATES, TerminationCriteria, check_termination

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"
REPORT_KEYS = {"applied", "reached", "reason", "tol", "time_s", "primal_residual",
               "dual_residual", "gap", "iterations", "primal_iterations", "dual_iterations",
               "rounds"}


def _read(folder: str, name: str):
    return l2o.read_lp(DATA / folder / f"{name}.mps.gz")


def _check_polished(lp, res, tol: float = 1e-4, polish_tol: float = 1e-8) -> None:
    """OPTIMAL, the report's claims true: residuals <= polish_tol and gap <= tol, recomputed
    here on the original LP in float64."""
    assert res.status == LPStatus.OPTIMAL, res.message
    report = res.polish
    assert set(report) == REPORT_KEYS
    assert report["applied"] and report["reached"], report["reason"]
    recomputed = kkt_error(lp, res.x, res.y)
    assert recomputed["rel_primal_residual"] <= polish_tol
    assert recomputed["rel_dual_residual"] <= polish_tol
    assert recomputed["rel_gap"] <= tol
    assert recomputed == pytest.approx(res.kkt)
    assert (report["primal_residual"], report["dual_residual"], report["gap"]) == pytest.approx(
        (recomputed["rel_primal_residual"], recomputed["rel_dual_residual"],
         recomputed["rel_gap"]))
    assert report["iterations"] == report["primal_iterations"] + report["dual_iterations"] > 0
    assert 0 < report["time_s"] <= res.solve_time
    assert "polished" in res.message
    assert res.objective == pytest.approx(lp.objective(res.x))


@pytest.mark.parametrize("name", ["afiro", "sc50a", "adlittle", "israel"])
def test_netlib_polish_reaches_tolerance(name):
    """From a 1e-4 point whose residuals are above 1e-8, polishing reaches 1e-8 on both and
    keeps the gap <= 1e-4; the objective stays near the optimum."""
    lp = _read("netlib", name)
    loose = solve_lp(lp, tol=1e-4, device="cpu", presolve=False)
    before = kkt_error(lp, loose.x, loose.y)
    assert max(before["rel_primal_residual"], before["rel_dual_residual"]) > 1e-8
    res = solve_lp(lp, tol=1e-4, device="cpu", presolve=False, polish=True)
    _check_polished(lp, res)
    assert res.iterations >= loose.iterations      # the solve's own, tightened ones included
    assert res.polish["rounds"] >= 1
    exact = solve_highs(lp).objective
    assert abs(res.objective - exact) <= 1e-3 * (1 + abs(exact))


@pytest.mark.parametrize("name", ["ken-11", "osa-07"])
def test_large_polish_with_presolve(name):
    """ken-11 and osa-07 (presolved by HiGHS: "auto"'s GPU reductions find nothing to remove
    in osa-07): the postsolved point polished on the original LP to 1e-8 (a few seconds each
    on the CPU)."""
    lp = _read("large", name)
    res = solve_lp(lp, tol=1e-4, device="cpu", presolve=True, polish=True)
    assert res.presolve["applied"]
    _check_polished(lp, res)


def test_polish_with_presolve_on_netlib():
    lp = _read("netlib", "sc50a")
    res = solve_lp(lp, tol=1e-4, device="cpu", presolve=True, polish=True, polish_tol=1e-9)
    assert res.presolve["applied"]
    _check_polished(lp, res, polish_tol=1e-9)
    assert res.polish["tol"] == 1e-9


def test_polish_after_warm_start_and_prepared():
    """A warm-started solve and a solve of a PreparedLP polish alike."""
    lp = _read("netlib", "sc50a")
    base = solve_lp(lp, tol=1e-4, device="cpu", presolve=False)
    perturbed = replace(lp, c=lp.c * 1.01)
    warm = solve_lp(perturbed, tol=1e-4, device="cpu", presolve=False, warm_start=base,
                    polish=True)
    _check_polished(perturbed, warm)
    prepared = prepare(lp, "cpu")
    res = solve_lp(prepared, tol=1e-4, polish=True)
    _check_polished(lp, res)
    assert res.solve_time >= prepared.setup_time


def test_polish_falls_short_honestly():
    """No iterations left for the phases: the solve's point and OPTIMAL stay, and the report and
    the message say polishing fell short."""
    lp = _read("netlib", "adlittle")
    loose = solve_lp(lp, tol=1e-4, device="cpu", presolve=False)
    res = solve_lp(lp, tol=1e-4, device="cpu", presolve=False, polish=True,
                   iteration_limit=loose.iterations + 3)
    assert res.status == LPStatus.OPTIMAL
    assert not res.polish["applied"] and not res.polish["reached"]
    assert "iteration_limit" in res.polish["reason"]
    assert "fell short" in res.message
    assert torch.equal(res.x, loose.x) and torch.equal(res.y, loose.y)
    assert res.iterations == loose.iterations
    assert res.kkt == loose.kkt                  # the solver's own errors, as OPTIMAL means them
    assert res.polish["primal_residual"] == pytest.approx(
        kkt_error(lp, loose.x, loose.y)["rel_primal_residual"])


def test_polish_needs_an_optimal_point():
    lp = _read("netlib", "adlittle")
    res = solve_lp(lp, tol=1e-4, device="cpu", presolve=False, polish=True, iteration_limit=10)
    assert res.status == LPStatus.ITERATION_LIMIT
    assert not res.polish["applied"] and "optimal point" in res.polish["reason"]
    assert res.polish["iterations"] == 0


@pytest.mark.parametrize("bad", [0.0, -1e-8, math.nan, "1e-8"])
def test_bad_polish_tol(bad):
    with pytest.raises(ValueError, match="polish_tol"):
        solve_lp(_read("netlib", "afiro"), device="cpu", polish=True, polish_tol=bad)


def test_no_polish_report_by_default():
    lp = _read("netlib", "afiro")
    res = solve_lp(lp, device="cpu")
    assert res.polish == {} and solution_dict(lp, res)["polish"] is None


def test_feasibility_problems():
    """The primal problem zeroes c (and c0); the dual problem zeroes every finite bound and
    keeps the infinite ones, the scaling and the device the same."""
    lp = _read("netlib", "israel")
    prepared = prepare(lp, "cpu")
    primal = primal_feasibility_problem(prepared)
    assert not primal.scaled.c.any() and not primal.scaled.orig_c.any()
    assert primal.scaled.c0 == 0.0 and not primal.lp.c.any()
    assert torch.equal(primal.scaled.row_lower, prepared.scaled.row_lower)
    dual = dual_feasibility_problem(prepared)
    assert torch.equal(dual.scaled.c, prepared.scaled.c)
    for name in ("col_lower", "col_upper", "row_lower", "row_upper"):
        for before, after in ((getattr(prepared.scaled, name), getattr(dual.scaled, name)),
                              (getattr(lp, name), getattr(dual.lp, name))):
            finite = torch.isfinite(before)
            assert not after[finite].any()
            assert torch.equal(after[~finite], before[~finite])
    assert dual.termination.rhs_norm == 0
    assert dual.scaled.row_scale is prepared.scaled.row_scale


def _record(primal: float, dual: float, gap: float) -> CheckStatistics:
    rays = {name: RayStatistics(0.0, 0.0) for name in RAY_CANDIDATES}
    return CheckStatistics(rel_primal_residual=primal, rel_dual_residual=dual, rel_gap=gap,
                           primal_objective=0.0, dual_objective=0.0, fixed_point_error=1.0,
                           primal_move=1.0, dual_move=1.0, primal_rays=rays, dual_rays=rays)


def test_termination_with_one_error_checked():
    """PDLP's detailed criteria: an infinite tolerance leaves that error out."""
    primal_only = TerminationCriteria(tol=1e-8, dual_tol=math.inf, gap_tol=math.inf)
    assert primal_only.tolerances() == (1e-8, math.inf, math.inf)
    (reason,) = check_termination(_record(1e-9, 1.0, 1.0), primal_only, 64, 0.0)
    assert reason.status == LPStatus.OPTIMAL
    assert reason.message == "relative primal residual <= 1e-08 after 64 iterations"
    assert check_termination(_record(2e-8, 0.0, 0.0), primal_only, 64, 0.0) == []
    dual_only = TerminationCriteria(tol=1e-8, primal_tol=math.inf, gap_tol=math.inf)
    assert check_termination(_record(1.0, 1e-9, 1.0), dual_only, 64, 0.0)[0].status \
        == LPStatus.OPTIMAL
    assert TerminationCriteria(tol=1e-4).tolerances() == (1e-4, 1e-4, 1e-4)


def test_cli_polish(capsys):
    """``l2o solve --polish [--polish-tol T]`` reaches solve_lp; --json reports "polish"."""
    from l2o.cli import main

    path = str(DATA / "netlib" / "afiro.mps.gz")
    code = main(["solve", path, "--polish", "--polish-tol", "1e-9", "--json", "--device", "cpu"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["status"] == "optimal"
    assert set(data["polish"]) == REPORT_KEYS
    assert data["polish"]["applied"] and data["polish"]["tol"] == 1e-9
    assert data["kkt"]["rel_primal_residual"] <= 1e-9
    code = main(["solve", path, "--json", "--device", "cpu"])
    assert code == 0 and json.loads(capsys.readouterr().out)["polish"] is None
    code = main(["solve", path, "--polish-tol", "1e-9", "--device", "cpu"])
    assert code == 2 and "--polish-tol needs --polish" in capsys.readouterr().err
