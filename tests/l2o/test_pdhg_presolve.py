"""solve_lp(..., presolve=): HiGHS presolve, PDHG on the reduced LP, postsolve, checked on the
original LP; statuses decided by presolve; warm starts mapped into the reduced LP; "auto"."""

from __future__ import annotations

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
from l2o.lp.kkt import kkt_error
from l2o.lp.solution import solution_dict
from l2o.pdhg.presolve import (
    AUTO_MIN_SINGLETON_ROWS_GPU,
    PRESOLVE_MIN_NNZ,
    PresolveBy,
    decide_presolve,
    singleton_row_share,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"
REPORT_KEYS = {"applied", "by", "reason", "rows_removed", "cols_removed", "nnz_removed", "time_s"}


def _read(folder: str, name: str):
    suffix = ".mps.gz" if folder in ("netlib", "large") else ".mps"
    return l2o.read_lp(DATA / folder / f"{name}{suffix}")


def _perturbed(lp, seed: int = 0):
    """c with every entry scaled by a factor uniform in [0.99, 1.01]."""
    g = torch.Generator().manual_seed(seed)
    factor = 1 + 0.01 * (2 * torch.rand(lp.num_cols, generator=g, dtype=torch.float64) - 1)
    return replace(lp, c=lp.c * factor)


@pytest.mark.parametrize("name", ["afiro", "sc50a", "sc105", "sc205"])
def test_netlib_objective_with_presolve(name):
    """PDHG on the presolved LP to 1e-8, postsolved: HiGHS's optimum of the original LP to 1e-6
    relative, and the KKT errors reported are those of the original LP (recomputed here)."""
    lp = _read("netlib", name)
    res = solve_lp(lp, tol=1e-8, device="cpu", presolve=True, iteration_limit=100_000)
    assert res.status == LPStatus.OPTIMAL, res.message
    assert res.presolve["applied"] and res.presolve["by"] == "highs"
    expected = solve_highs(lp).objective
    assert abs(res.objective - expected) <= 1e-6 * max(1.0, abs(expected))
    assert res.x.shape == (lp.num_cols,) and res.y.shape == (lp.num_rows,)
    recomputed = kkt_error(lp, res.x, res.y, res.reduced_costs)
    assert recomputed == pytest.approx(res.kkt)
    assert max(recomputed.values()) <= 1e-8


def test_ken11_auto_presolve():
    """ken-11 (49058 nonzeros) is presolved under "auto"; the postsolved point meets the
    tolerance on the original LP (test_lp_presolve checks the postsolve of HiGHS's optimum of
    the reduced LP against HiGHS's objective to 1e-6; here PDHG's, to 1e-4)."""
    lp = _read("large", "ken-11")
    assert lp.nnz >= PRESOLVE_MIN_NNZ
    res = solve_lp(lp, tol=1e-4, device="cpu")
    assert res.status == LPStatus.OPTIMAL, res.message
    report = res.presolve
    assert set(report) == REPORT_KEYS
    assert report["applied"] and report["rows_removed"] > 0 and report["cols_removed"] > 0
    assert report["reason"].startswith("auto")
    assert 0 < report["time_s"] < res.solve_time
    assert max(res.kkt.values()) <= 1e-4
    assert abs(res.objective - -6972382262.519971) <= 1e-4 * 6.97e9


def test_report_without_presolve():
    lp = _read("netlib", "afiro")
    res = solve_lp(lp, device="cpu", presolve=False)
    assert res.presolve == {"applied": False, "by": None, "reason": "presolve=False",
                            "rows_removed": 0, "cols_removed": 0, "nnz_removed": 0, "time_s": 0.0}
    auto = solve_lp(lp, device="cpu")   # the default: "auto", afiro is far below the size
    assert not auto.presolve["applied"] and "nonzeros <" in auto.presolve["reason"]
    assert auto.iterations == res.iterations
    data = solution_dict(lp, auto)
    assert data["presolve"] == auto.presolve


def test_bad_presolve_value():
    lp = _read("netlib", "afiro")
    with pytest.raises(ValueError, match="presolve must be"):
        solve_lp(lp, device="cpu", presolve="yes")
    prepared = l2o.pdhg.prepare(lp, device="cpu")
    with pytest.raises(ValueError, match="PreparedLP"):
        solve_lp(prepared, presolve=True)
    res = solve_lp(prepared)   # "auto" solves it as prepared
    assert not res.presolve["applied"] and "PreparedLP" in res.presolve["reason"]


def test_auto_takes_the_gpu_reductions():
    """"auto" on ken-11 (above the size): the GPU reductions, kept only if they remove enough
    rows (not HiGHS: benchmarks/RESULTS.md, "The presolve path, phase by phase")."""
    lp = _read("large", "ken-11")
    auto = decide_presolve(lp, "auto")
    assert auto.by is PresolveBy.GPU and auto.min_rows_removed > 0
    assert decide_presolve(lp, "gpu").min_rows_removed == 0


def _rows_with_singletons(m: int, singletons: int, n: int = 4000):
    """An LP of ``m`` rows, the first ``singletons`` of them with one nonzero, the others with
    ``PRESOLVE_MIN_NNZ`` // (m - singletons) + 1 (above "auto"'s size floor)."""
    per_row = PRESOLVE_MIN_NNZ // (m - singletons) + 1
    rows, cols = [], []
    for i in range(m):
        for k in range(1 if i < singletons else per_row):
            rows.append(i)
            cols.append((i * 7 + k * 13) % n)
    A = torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.ones(len(rows),
                                dtype=torch.float64), (m, n)).coalesce()
    return l2o.LinearProgram.create(torch.ones(n, dtype=torch.float64), A,
                                    row_lower=torch.ones(m, dtype=torch.float64),
                                    col_lower=torch.zeros(n, dtype=torch.float64))


def test_auto_on_a_gpu_presolves_only_many_singleton_rows():
    """On a GPU (decided without one: only the device's type counts) "auto" runs the GPU
    reductions only where AUTO_MIN_SINGLETON_ROWS_GPU of the rows are singleton rows, and says
    so; on the CPU the share does not matter."""
    few = _rows_with_singletons(1000, 300)
    many = _rows_with_singletons(1000, 700)
    assert singleton_row_share(few) == pytest.approx(0.3)
    assert singleton_row_share(many) == pytest.approx(0.7)
    assert 0.3 < AUTO_MIN_SINGLETON_ROWS_GPU < 0.7
    skipped = decide_presolve(few, "auto", device="cuda")
    assert not skipped.run and "30.0% of the rows are singleton rows" in skipped.reason
    taken = decide_presolve(many, "auto", device="cuda")
    assert taken.by is PresolveBy.GPU and "70.0% of the rows" in taken.reason
    assert taken.min_rows_removed > 0
    for lp in (few, many):
        assert decide_presolve(lp, "auto", device="cpu").by is PresolveBy.GPU
        assert decide_presolve(lp, "auto").by is PresolveBy.GPU
        assert decide_presolve(lp, "gpu", device="cuda").by is PresolveBy.GPU


def test_presolve_path_checks_the_structure_before_deciding():
    """"auto" reads A's CSR row pointers to decide: an A in another layout is the solver's
    InvalidLPError, not a torch error from the decision (whatever the device)."""
    from l2o.lp.validate import InvalidLPError
    from l2o.pdhg.presolve import solve_with_presolve

    lp = _rows_with_singletons(100, 70)
    dense = replace(lp, A=lp.A.to_dense())
    for device in ("cpu", "cuda"):
        with pytest.raises(InvalidLPError, match="sparse_csr"):
            solve_with_presolve(dense, "auto", lambda *a: pytest.fail("solved"), tol=1e-4,
                                device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_cuda_solves_ken11_without_presolve():
    """On a GPU ken-11 (21% singleton rows) is solved as given, and the report says why."""
    res = solve_lp(_read("large", "ken-11"), tol=1e-4, device="cuda", presolve="auto")
    assert res.status == LPStatus.OPTIMAL
    assert not res.presolve["applied"], res.presolve
    assert "21.4% of the rows are singleton rows" in res.presolve["reason"]


def test_auto_keeps_gpu_reductions_only_if_they_remove_enough(monkeypatch):
    """Under "auto" the GPU reductions' LP is solved only if they removed enough rows (ken-11:
    31%); else the original LP is, and the report says why."""
    import l2o.pdhg.presolve as path

    lp = _read("large", "ken-11")
    res = solve_lp(lp, tol=1e-2, device="cpu")
    assert res.presolve["applied"] and res.presolve["by"] == "gpu", res.presolve
    monkeypatch.setattr(path, "AUTO_MIN_ROWS_REMOVED", 0.5)
    monkeypatch.setattr(path, "AUTO_MIN_NNZ_REMOVED", 0.5)   # ken-11: 22% of the nonzeros
    res = solve_lp(lp, tol=1e-2, device="cpu")
    assert not res.presolve["applied"] and "not worth it" in res.presolve["reason"]
    assert res.status == LPStatus.OPTIMAL


def test_highs_time_limit():
    lp = _read("large", "ken-11")
    assert decide_presolve(lp, True, time_limit=0.4).time_limit == 0.4
    assert not decide_presolve(lp, False).run


def test_without_highspy(monkeypatch):
    """A machine without highspy: "auto" (the GPU reductions) and "gpu" need none; True and
    "highs" are an ImportError naming the package."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "highspy" else real(name, *a))
    lp = _read("large", "ken-11")
    assert decide_presolve(lp, "auto").by is PresolveBy.GPU
    assert decide_presolve(lp, "gpu").by is PresolveBy.GPU
    for value in (True, "highs"):
        with pytest.raises(ImportError, match="highspy"):
            decide_presolve(lp, value)


def test_maximization_with_presolve():
    """sc50a maximized (c negated, c0 = 3): objective 64.575... + 3, duals as the minimization's
    (minimization-form convention), checked on the original LP."""
    lp = _read("netlib", "sc50a")
    flipped = replace(lp, c=-lp.c, sense="maximize", c0=3.0)
    res = solve_lp(flipped, tol=1e-8, device="cpu", presolve=True)
    assert res.status == LPStatus.OPTIMAL, res.message
    assert res.objective == pytest.approx(64.5750770585645 + 3.0, rel=1e-7)
    assert res.dual_objective == pytest.approx(res.objective, rel=1e-7)
    assert max(kkt_error(flipped, res.x, res.y, res.reduced_costs).values()) <= 1e-8


def test_presolve_solves_it():
    """min x1 + 2 x2 + 1.5 s.t. x1 + x2 = 1, 0 <= x <= 10: presolve removes everything;
    x* = (1, 0), y* = 1, objective 2.5, no PDHG iteration."""
    lp = l2o.LinearProgram.create([1.0, 2.0], np.array([[1.0, 1.0]]), [1.0], [1.0], [0, 0],
                                  [10, 10], c0=1.5)
    res = solve_lp(lp, device="cpu", presolve=True)
    assert res.status == LPStatus.OPTIMAL and res.iterations == 0
    torch.testing.assert_close(res.x, torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(res.y, torch.tensor([1.0], dtype=torch.float64))
    assert res.objective == pytest.approx(2.5) and res.dual_objective == pytest.approx(2.5)
    assert (res.presolve["rows_removed"], res.presolve["cols_removed"]) == (1, 2)


@pytest.mark.parametrize("name", ["galenet", "woodinfe"])
def test_infeasible_proved_by_presolve(name):
    lp = _read("infeasible", name)
    res = solve_lp(lp, device="cpu", presolve=True)
    assert res.status == LPStatus.PRIMAL_INFEASIBLE
    assert "presolve proved" in res.message and res.presolve["applied"]
    assert math.isnan(res.objective) and bool(torch.isnan(res.y).all())


def test_infeasible_found_on_reduced_lp():
    """box1: presolve reduces it, PDHG proves the reduced LP infeasible; the original is then
    infeasible too. The reduced LP's ray is reported only if it verifies on the original LP."""
    lp = _read("infeasible", "box1")
    res = solve_lp(lp, device="cpu", presolve=True, iteration_limit=50_000)
    assert res.status == LPStatus.PRIMAL_INFEASIBLE, res.message
    assert res.presolve["applied"] and res.iterations > 0
    if not bool(torch.isnan(res.y).any()):
        objective, residual = l2o.lp.kkt.verify_dual_ray(lp, res.y)
        assert objective > 0 and residual <= 1e-8 * objective
    else:
        assert "does not carry over" in res.message


def test_unbounded_or_infeasible_solved_without_presolve():
    """gas11: presolve says "unbounded or infeasible"; the solve without presolve tells which
    (dual infeasible, a verified primal ray)."""
    lp = _read("unbounded", "gas11")
    res = solve_lp(lp, device="cpu", presolve=True, iteration_limit=50_000)
    assert res.status == LPStatus.DUAL_INFEASIBLE, res.message
    assert not res.presolve["applied"]
    assert "unbounded or infeasible; solved without presolve" in res.presolve["reason"]


@pytest.mark.parametrize("folder, name", [("netlib", "sc205"), ("large", "ken-11")])
def test_warm_start_under_presolve(folder, name):
    """c perturbed by 1%: a warm start from the original LP's solution, mapped into the reduced
    LP, takes at most 0.7x the iterations of a cold start, both with presolve on."""
    lp = _read(folder, name)
    base = solve_lp(lp, device="cpu", presolve=True)
    perturbed = _perturbed(lp)
    cold = solve_lp(perturbed, device="cpu", presolve=True)
    warm = solve_lp(perturbed, device="cpu", presolve=True, warm_start=base)
    for res in (base, cold, warm):
        assert res.status == LPStatus.OPTIMAL and res.presolve["applied"], res.message
    assert warm.iterations <= 0.7 * cold.iterations, (warm.iterations, cold.iterations)
    # a start of the wrong size is an error naming it, before anything runs
    with pytest.raises(ValueError, match="shape"):
        solve_lp(perturbed, device="cpu", presolve=True, warm_start=(base.x[:-1], None))


@pytest.mark.parametrize("flag, applied", [("on", True), ("off", False), ("auto", False)])
def test_cli_presolve_flag(capsys, flag, applied):
    """``l2o solve --presolve`` reaches solve_lp; --json reports it under "presolve"."""
    from l2o.cli import main

    code = main(["solve", str(DATA / "netlib" / "afiro.mps.gz"), "--presolve", flag, "--json",
                 "--device", "cpu"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["status"] == "optimal"
    assert data["presolve"]["applied"] is applied
    assert set(data["presolve"]) == REPORT_KEYS


def test_cli_presolve_with_model_is_a_usage_error(capsys):
    from l2o.cli import main

    code = main(["solve", str(DATA / "netlib" / "afiro.mps.gz"), "--presolve", "on",
                 "--model", "anything"])
    assert code == 2 and "--presolve on" in capsys.readouterr().err
