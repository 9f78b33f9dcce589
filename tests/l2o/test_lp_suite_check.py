"""benchmarks/lp_suite.py's check of a solver's point on the original LP (cuPDLPx's solution
files), and the ratio summary that counts a failed check as not solved."""

from __future__ import annotations

from pathlib import Path

import pytest
from _benchmarks import ROOT, load_benchmark  # tests/l2o/_benchmarks.py

import l2o

bench = load_benchmark("lp_suite")


@pytest.fixture(scope="module")
def afiro():
    lp = l2o.read_lp(ROOT / "l2o" / "data" / "afiro.mps.gz")
    return lp, l2o.solve_lp(lp, tol=1e-8, presolve=False, method="pdhg")


def _write(path: Path, values) -> Path:
    path.write_text("\n".join(f"{v:.10g}" for v in values) + "\n")   # as cuPDLPx's CLI writes
    return path


def test_solution_files_of_an_optimum_pass(afiro, tmp_path):
    lp, res = afiro
    check = bench.solution_file_check(lp, 1e-8)
    out = check(_write(tmp_path / "x.txt", res.x.tolist()), _write(tmp_path / "y.txt",
                                                                     res.y.tolist()))
    assert out["checked"] == "ok"
    assert out["checked_rel_primal_residual"] <= 1e-7
    assert out["checked_rel_dual_residual"] <= 1e-7


def test_a_wrong_dual_fails_and_missing_or_misfit_files_say_so(afiro, tmp_path):
    lp, res = afiro
    y = res.y.clone()
    y[0] += 1.0
    out = bench.original_lp_check(lp, 1e-4, res.x, y)
    assert out["checked"] == "failed"
    assert out["checked_rel_dual_residual"] > bench.CHECK_MARGIN * 1e-4
    check = bench.solution_file_check(lp, 1e-4)
    x_file = _write(tmp_path / "x.txt", res.x.tolist())
    assert check(x_file, tmp_path / "none.txt")["checked"].startswith("not checked")
    short = _write(tmp_path / "y.txt", res.y.tolist()[:-1])
    assert check(x_file, short)["checked"].startswith("not checked")
    (tmp_path / "bad.txt").write_text("1.0\nnot-a-number\n")
    assert "unreadable" in check(x_file, tmp_path / "bad.txt")["checked"]


def test_a_residual_the_files_rounding_explains_is_not_judged(afiro):
    lp, res = afiro
    rounded = lambda v: [float(f"{a:.3g}") for a in v.tolist()]
    x, y = rounded(res.x), rounded(res.y)
    assert bench.original_lp_check(lp, 1e-8, x, y)["checked"] == "failed"
    out = bench.original_lp_check(lp, 1e-8, x, y, digits=3)
    assert out["checked"].startswith("not judged")
    assert max(out["checked_rel_primal_residual"], out["checked_rel_dual_residual"]) > 1e-7
    wrong = res.y.clone()
    wrong[0] += 1.0
    assert bench.original_lp_check(lp, 1e-8, res.x, wrong, digits=10)["checked"] == "failed"


def test_a_failed_check_counts_as_the_time_limit_only_in_the_checked_summary():
    rows = [{"name": "a", "tol": 1e-4, "solver": "ours", "status": "OPTIMAL", "time_s": 2.0,
             "checked": "ok"},
            {"name": "a", "tol": 1e-4, "solver": "peer", "status": "OPTIMAL", "time_s": 1.0,
             "checked": "failed"},
            {"name": "b", "tol": 1e-4, "solver": "ours", "status": "OPTIMAL", "time_s": 1.0,
             "checked": "ok"},
            {"name": "b", "tol": 1e-4, "solver": "peer", "status": "OPTIMAL", "time_s": 1.0,
             "checked": "ok"}]
    plain = bench.ratio_summary(rows, "ours", "peer", 1e-4, 16.0)
    assert plain["geomean_ratio"] == pytest.approx(2.0 ** 0.5)
    checked = bench.ratio_summary(rows, "ours", "peer", 1e-4, 16.0, checked=True)
    assert checked["geomean_ratio"] == pytest.approx((2.0 / 16.0) ** 0.5)
    assert checked["failed_check"] == ["a (peer)"]
    assert checked["both_solve"] == 1
