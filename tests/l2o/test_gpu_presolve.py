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
from l2o.lp.gpu_presolve import gpu_presolve_lp
from l2o.lp.kkt import kkt_error, verify_dual_ray, verify_primal_ray
from l2o.lp.presolve import PresolveOutcome

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"
INF = math.inf


def _names(folder: str) -> list[str]:
    with open(DATA / folder / "optimal_values.csv", newline="") as handle:
        return [row["name"] for row in csv.DictReader(handle)]


def _lp(c, A, row_lower, row_upper, col_lower, col_upper, **kw):
    return l2o.LinearProgram.create(c, np.array(A, dtype=float), row_lower, row_upper, col_lower,
                                    col_upper, **kw)


def _postsolved_optimum(lp, pre):
    """HiGHS's optimum of the reduced LP (or nothing, if presolve emptied it), postsolved."""
    if pre.reduced is None:
        return pre.postsolve()[:2]
    ref = solve_highs(pre.reduced)
    assert ref.status == LPStatus.OPTIMAL, ref.message
    return pre.postsolve(ref.x, ref.y)[:2]


def _assert_optimal(lp, x, y, kkt_tol=1e-9):
    expected = solve_highs(lp).objective
    assert abs(lp.objective(x) - expected) <= 1e-9 * max(1.0, abs(expected))
    errors = kkt_error(lp, x, y)
    assert max(errors.values()) <= kkt_tol, errors


def test_fixed_column_moves_into_row_bounds():
    """min x0 + 2 x1 + 3 x2 s.t. 3 <= x0 + x1 + x2 <= 5, 1 <= x1 - x2, x1 fixed at 2, x >= 0:
    x1 leaves, the rows become 1 <= x0 + x2 <= 3 and -1 <= -x2, c0 += 4."""
    lp = _lp([1, 2, 3], [[1, 1, 1], [0, 1, -1]], [3, 1], [5, INF], [0, 2, 0], [INF, 2, INF])
    pre = gpu_presolve_lp(lp, max_rounds=1)
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


def test_nothing_to_remove():
    lp = _lp([1, 1], [[1, 1], [1, -1]], [1, 0], [INF, INF], [0, 0], [INF, INF])
    pre = gpu_presolve_lp(lp)
    assert pre.outcome == PresolveOutcome.NOT_REDUCED and pre.report()["rows_removed"] == 0


@pytest.mark.parametrize("name", _names("netlib"))
def test_netlib_postsolve_matches_highs(name):
    """Every shared NETLIB LP: HiGHS's optimum of the GPU-reduced LP, postsolved, is optimal on
    the original LP (HiGHS's objective to 1e-9, KKT errors <= 1e-9 in float64)."""
    lp = l2o.read_lp(DATA / "netlib" / f"{name}.mps.gz")
    pre = gpu_presolve_lp(lp)
    if pre.outcome == PresolveOutcome.NOT_REDUCED:
        pytest.skip(f"{name}: nothing for the cheap reductions")
    x, y = _postsolved_optimum(lp, pre)
    _assert_optimal(lp, x, y)


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


@pytest.mark.parametrize("name", ["sc205", "scagr7"])
def test_solve_lp_gpu_presolve(name):
    """PDHG on the GPU-reduced LP to 1e-8: HiGHS's objective to 1e-6 relative, the KKT errors
    those of the original LP."""
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
    ("infeasible", "galenet", LPStatus.PRIMAL_INFEASIBLE, "the ray carries over"),
])
def test_statuses_with_gpu_presolve(folder, name, status, words):
    """woodinfe: crossed bounds found by the reductions (their ray verifies); gas11: an empty
    column with an unbounded cost (its ray verifies); galenet: reduced, PDHG proves the reduced
    LP infeasible and the ray, postsolved with c = 0, verifies on the original LP."""
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
def test_cuda_reductions_match_cpu():
    lp = l2o.read_lp(DATA / "large" / "ken-11.mps.gz")
    cpu, cuda = gpu_presolve_lp(lp), gpu_presolve_lp(lp, device="cuda")
    assert cuda.report()["rows_removed"] == cpu.report()["rows_removed"]
    assert torch.equal(cuda.col_index, cpu.col_index)
    ref = solve_highs(cpu.reduced)
    for pre in (cpu, cuda):
        x, y, _, _ = pre.postsolve(ref.x, ref.y)
        _assert_optimal(lp, x, y, kkt_tol=1e-7)
