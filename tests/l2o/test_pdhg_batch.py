"""solve_lp_batch: many LPs in one stacked PDHG run, each as solve_lp would solve it alone."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import l2o
from l2o import LinearProgram, LPStatus, solve_lp, solve_lp_batch
from l2o.datasets import generate
from l2o.lp.kkt import kkt_error, verify_dual_ray, verify_primal_ray

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"
TOL = 1e-4


def _netlib(name: str) -> LinearProgram:
    return l2o.read_lp(DATA / "netlib" / f"{name}.mps.gz")


def _unbounded() -> LinearProgram:
    """min -x1 s.t. x1 - x2 <= 1, x >= 0: unbounded along x = (1, 1)."""
    return LinearProgram.create([-1, 0], np.array([[1.0, -1]]), row_upper=[1], name="unbounded")


def _mixed() -> list[LinearProgram]:
    """NETLIB LPs, generated set-cover LPs, a PageRank LP, an infeasible (galenet, NETLIB's
    infeasible set) and an unbounded one: different sizes, sparsity and statuses."""
    lps = [_netlib(name) for name in ("afiro", "sc50a", "adlittle", "blend")]
    lps += [generate("setcover", rows=50, cols=100, density=0.1, seed=s) for s in range(3)]
    lps.append(generate("pagerank", nodes=200, seed=0))
    lps.append(l2o.read_lp(DATA / "infeasible" / "galenet.mps"))
    lps.append(_unbounded())
    return lps


def _single(lp: LinearProgram, **kw) -> l2o.LPResult:
    return solve_lp(lp, tol=TOL, device="cpu", method="pdhg", presolve=False, **kw)


@pytest.fixture(scope="module")
def mixed():
    lps = _mixed()
    return lps, solve_lp_batch(lps, tol=TOL, device="cpu"), [_single(lp) for lp in lps]


def test_batch_matches_one_by_one(mixed):
    lps, batch, singles = mixed
    assert len(batch) == len(lps)
    for lp, res, ref in zip(lps, batch, singles):
        assert res.status == ref.status, (lp.name, res.message, ref.message)
        assert abs(res.iterations - ref.iterations) <= max(64, 0.1 * ref.iterations), lp.name
        assert res.x.shape == (lp.num_cols,) and res.y.shape == (lp.num_rows,)
        assert res.x.dtype == torch.float64 and res.x.device.type == "cpu"
        if ref.status != LPStatus.OPTIMAL:
            continue
        assert abs(res.objective - ref.objective) <= 10 * TOL * (1 + abs(ref.objective)), lp.name
        assert max(res.kkt.values()) <= TOL, lp.name
        # the returned point itself, rechecked on the LP as given (reduced costs from y)
        errors = kkt_error(lp, res.x, res.y)
        assert errors["rel_primal_residual"] <= TOL and errors["rel_gap"] <= 10 * TOL, lp.name


def test_infeasible_and_unbounded_members_get_their_certificates(mixed):
    lps, batch, _ = mixed
    infeasible, unbounded = batch[-2], batch[-1]
    assert infeasible.status == LPStatus.PRIMAL_INFEASIBLE, infeasible.message
    objective, residual = verify_dual_ray(lps[-2], infeasible.y)
    assert objective > 0 and residual <= 1e-8 * objective
    assert math.isnan(infeasible.objective)
    assert unbounded.status == LPStatus.DUAL_INFEASIBLE, unbounded.message
    cx, violation = verify_primal_ray(lps[-1], unbounded.x)
    assert cx < 0 and violation <= 1e-8 * -cx
    # and the others are untouched by them
    assert all(r.status == LPStatus.OPTIMAL for r in batch[:-2])


def test_batch_of_one_equals_solve_lp():
    lp = _netlib("sc50a")
    (res,) = solve_lp_batch([lp], tol=1e-8, device="cpu")
    ref = solve_lp(lp, tol=1e-8, device="cpu", presolve=False)
    assert res.status == ref.status == LPStatus.OPTIMAL
    assert res.iterations == ref.iterations
    assert res.objective == pytest.approx(ref.objective, rel=1e-10)
    torch.testing.assert_close(res.x, ref.x, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(res.y, ref.y, rtol=1e-8, atol=1e-8)


def test_per_lp_iteration_limit():
    lps = [_netlib("afiro"), _netlib("sc50a"), _netlib("adlittle")]
    res = solve_lp_batch(lps, tol=1e-8, device="cpu", iteration_limit=[50, None, 100])
    assert res[0].status == LPStatus.ITERATION_LIMIT and res[0].iterations == 50
    assert res[1].status == LPStatus.OPTIMAL
    assert res[2].status == LPStatus.ITERATION_LIMIT and res[2].iterations == 100
    # the point of an unconverged LP is its last check, with its KKT errors
    assert torch.isfinite(res[0].x).all() and res[0].kkt["rel_gap"] > 0
    same = solve_lp_batch(lps[:1], tol=1e-8, device="cpu", iteration_limit=7)
    assert same[0].iterations == 7 and same[0].status == LPStatus.ITERATION_LIMIT


def test_time_limit_ends_the_unfinished():
    lps = [_netlib("afiro"), _netlib("adlittle")]
    res = solve_lp_batch(lps, tol=1e-12, device="cpu", time_limit=0.0)
    assert [r.status for r in res] == [LPStatus.TIME_LIMIT] * 2
    assert all(r.iterations == 1 for r in res)     # stopped at the first check


def test_warm_start_at_an_optimum_stops_at_the_first_check():
    lps = [_netlib("afiro"), _netlib("sc50a")]
    cold = solve_lp_batch(lps, tol=1e-9, device="cpu")
    warm = solve_lp_batch(lps, tol=1e-6, device="cpu", warm_start=[cold[0], None])
    assert warm[0].status == LPStatus.OPTIMAL and warm[0].iterations == 1
    assert warm[1].status == LPStatus.OPTIMAL and warm[1].iterations > 1
    # a start worse than the cold one: the probe takes the cold start, as solve_lp does
    start = (cold[1].x + 10.0, -cold[1].y)
    res = solve_lp_batch(lps, tol=1e-6, device="cpu", warm_start=[None, start])
    ref = solve_lp(lps[1], tol=1e-6, device="cpu", presolve=False, warm_start=start)
    assert res[1].status == ref.status == LPStatus.OPTIMAL
    assert abs(res[1].iterations - ref.iterations) <= max(64, 0.1 * ref.iterations)


@pytest.mark.parametrize("break_it, message", [
    (lambda lp: lp.c.__setitem__(0, float("nan")), r"lps\[1\]: objective coefficient c"),
    (lambda lp: lp.col_lower.__setitem__(1, 5.0) or lp.col_upper.__setitem__(1, 1.0),
     r"lps\[1\]: .*lower bound > upper bound"),
    (lambda lp: setattr(lp, "row_lower", lp.row_lower[:-1]), r"lps\[1\]: row_lower has shape"),
])
def test_invalid_member_is_named_before_any_work(break_it, message):
    bad = _netlib("sc50a")
    break_it(bad)
    with pytest.raises(ValueError, match=message):
        solve_lp_batch([_netlib("afiro"), bad], device="cpu")


def test_bad_arguments_are_named():
    lp = _netlib("afiro")
    with pytest.raises(ValueError, match=r"lps\[0\]: warm start"):
        solve_lp_batch([lp], device="cpu", warm_start=[(torch.zeros(3), None)])
    with pytest.raises(ValueError, match="warm_start has 2 entries for 1 LPs"):
        solve_lp_batch([lp], device="cpu", warm_start=[None, None])
    with pytest.raises(ValueError, match=r"lps\[1\]: iteration_limit"):
        solve_lp_batch([lp, lp], device="cpu", iteration_limit=[5, 0])
    with pytest.raises(TypeError, match=r"lps\[0\]: expected a LinearProgram"):
        solve_lp_batch(["afiro.mps"], device="cpu")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['presolve'\]"):
        solve_lp_batch([lp], device="cpu", presolve=False)
    with pytest.raises(ValueError, match="fused must be one of"):
        solve_lp_batch([lp], device="cpu", fused="yes")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fused='spmv' needs CUDA and Triton"):
            solve_lp_batch([lp], device="cpu", fused="spmv")
    assert solve_lp_batch([], device="cpu") == []


def test_nan_in_one_lp_spoils_no_other():
    """An LP whose iterates overflow (costs near the float64 limit) ends NUMERICAL_ERROR with
    its last finite point; the LP stacked next to it is solved as alone."""
    huge = LinearProgram.create([1e308, -1e308], np.array([[1.0, 1.0]]), row_lower=[1],
                                row_upper=[1], col_lower=[-1e308, -1e308],
                                col_upper=[1e308, 1e308], name="overflow")
    ref_huge = solve_lp(huge, device="cpu", presolve=False, iteration_limit=2000)
    assert ref_huge.status == LPStatus.NUMERICAL_ERROR, ref_huge.message
    lp = _netlib("afiro")
    res = solve_lp_batch([huge, lp], device="cpu", iteration_limit=2000)
    assert res[0].status == LPStatus.NUMERICAL_ERROR, res[0].message
    assert res[1].status == LPStatus.OPTIMAL
    assert res[1].iterations == _single(lp).iterations


def test_compaction_keeps_the_others_exact(monkeypatch):
    """LPs finishing at very different times: the stack is rebuilt without the finished ones
    (twice here), and every LP still ends exactly as alone."""
    from l2o.pdhg.stack import StackedLP

    selections = []
    select = StackedLP.select
    monkeypatch.setattr(StackedLP, "select",
                        lambda self, index: selections.append(index.kept) or select(self, index))
    lps = [_netlib(name) for name in ("afiro", "afiro", "sc50a", "sc50b", "adlittle")]
    res = solve_lp_batch(lps, tol=1e-5, device="cpu")
    assert len(selections) >= 2, selections
    for lp, r in zip(lps, res):
        ref = solve_lp(lp, tol=1e-5, device="cpu", presolve=False)
        assert r.status == ref.status == LPStatus.OPTIMAL
        assert r.iterations == ref.iterations
        assert r.objective == pytest.approx(ref.objective, rel=1e-9)
        torch.testing.assert_close(r.x, ref.x, rtol=1e-9, atol=1e-9)


def test_float32_and_maximization():
    lp = LinearProgram.create([3, 2], np.array([[1.0, 1], [1, 3]]), row_upper=[4, 9],
                              col_lower=[0, 0], col_upper=[3, np.inf], c0=5.0, sense="maximize")
    res = solve_lp_batch([lp, _netlib("afiro")], tol=1e-5, device="cpu", dtype=torch.float32)
    assert [r.status for r in res] == [LPStatus.OPTIMAL] * 2
    assert res[0].objective == pytest.approx(16.0, rel=1e-4)


def test_progress_reports_every_check():
    seen = []
    solve_lp_batch([_netlib("afiro"), _netlib("sc50a")], device="cpu", progress=seen.append)
    assert seen and set(seen[0]) == {"iteration", "active", "finished", "elapsed"}
    assert seen[-1]["active"] == 0 and seen[-1]["finished"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    lps = _mixed()[:8]
    gpu = solve_lp_batch(lps, tol=TOL, device="cuda")
    for lp, r in zip(lps, gpu):
        ref = _single(lp)
        assert r.status == ref.status
        assert abs(r.objective - ref.objective) <= 10 * TOL * (1 + abs(ref.objective))


def test_may_stop_flags_exactly_what_check_termination_stops():
    """The batch's vectorized pre-check (l2o.pdhg.batch._may_stop) against check_termination,
    row by row, on random check rows around every threshold (nan, optimal errors at the
    tolerance, rays passing and failing, limits)."""
    from l2o.pdhg.batch import _may_stop
    from l2o.pdhg.statistics import CheckStatistics
    from l2o.pdhg.termination import TerminationCriteria, check_termination

    gen = np.random.default_rng(0)
    size, tol, eps = CheckStatistics.size(), 1e-4, 1e-8
    rows = gen.choice([0.0, 1e-12, 5e-5, 1e-4, 2e-4, 1.0, -1.0, -1e-12], size=(4000, size))
    rows[gen.random(rows.shape) < 0.002] = np.nan
    rows[gen.random(rows.shape) < 0.002] = np.inf
    criteria = TerminationCriteria(tol=tol, infeasibility_tolerance=eps, time_limit=None)
    totals = gen.integers(1, 200, size=len(rows)).astype(np.float64)
    limits = np.where(gen.random(len(rows)) < 0.5, np.inf, 150.0)
    finite = np.isfinite(rows).all(axis=1)
    flagged = _may_stop(rows, finite, criteria, totals, limits, elapsed=1.0)
    expected = [bool(check_termination(CheckStatistics.from_values(row), TerminationCriteria(
        tol=tol, infeasibility_tolerance=eps,
        iteration_limit=None if math.isinf(limit) else int(limit)), int(total), 1.0))
        for row, total, limit in zip(rows, totals, limits)]
    assert flagged.tolist() == expected
    assert 0 < sum(expected) < len(expected)
    timed = TerminationCriteria(tol=tol, infeasibility_tolerance=eps, time_limit=0.5)
    assert _may_stop(rows, finite, timed, totals, limits, elapsed=1.0).all()


def test_profile_splits_the_run_into_phases():
    from l2o.pdhg.batch import PROFILE_PHASES

    lps = [_netlib("afiro"), _netlib("sc50a")]
    res = solve_lp_batch(lps, tol=1e-6, device="cpu", profile=True)
    timings = res[0].timings
    assert timings == res[1].timings and set(timings) - {"total"} <= set(PROFILE_PHASES)
    assert {"validate", "scaling", "first_check", "iterations", "host"} <= set(timings)
    assert sum(v for k, v in timings.items() if k != "total") == pytest.approx(
        timings["total"], rel=1e-9)
    assert max(r.solve_time for r in res) <= timings["total"]
    assert solve_lp_batch(lps, tol=1e-6, device="cpu")[0].timings == {}


def test_compaction_rule():
    from l2o.pdhg.batch import EAGER_COMPACTION, GRAPH_COMPACTION

    assert not EAGER_COMPACTION.due(0, 100)
    assert EAGER_COMPACTION.due(25, 100) and not EAGER_COMPACTION.due(24, 100)
    big = 2**18
    assert GRAPH_COMPACTION.due(big // 2, big) and not GRAPH_COMPACTION.due(big // 2 - 1, big)
    assert not GRAPH_COMPACTION.due(900, 1000)        # a small stack: launch-bound, kept


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("tol", [1e-4, 1e-8])
def test_cuda_graphs_match_eager(tol):
    """The CUDA-graph run (default) against the eager run on the GPU, float64: statuses,
    iteration counts, and the points close.  The per-LP sums use atomic adds, whose rounding
    differs from run to run; over the ~1e4 iterations to 1e-8 that grows past 1e-10 (H200,
    2026-12-03), so the points are compared at a tolerance that still catches a wrong
    iteration: 1e-10 at tol 1e-4, 1e-6 at 1e-8."""
    lps = _mixed()
    graph = solve_lp_batch(lps, tol=tol, device="cuda")
    eager = solve_lp_batch(lps, tol=tol, device="cuda", cuda_graph=False)
    close = 1e-10 if tol >= 1e-4 else 1e-6
    for lp, g, e in zip(lps, graph, eager):
        assert g.status == e.status, lp.name
        assert g.iterations == e.iterations, lp.name
        torch.testing.assert_close(g.x, e.x, rtol=close, atol=close, equal_nan=True)
        torch.testing.assert_close(g.y, e.y, rtol=close, atol=close, equal_nan=True)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1"
                    or importlib.util.find_spec("triton") is None,
                    reason="the Triton kernels on the CPU need Triton's interpreter "
                           "(TRITON_INTERPRET=1)")
@pytest.mark.parametrize("spmv", [False, True])
def test_fused_batch_kernels_match_the_torch_iteration(spmv):
    """l2o.pdhg.batch_fused's kernels (both plans) against halpern_iteration on a stack of the
    mixed LPs, from a random point with random per-LP steps, both STORE variants, float64."""
    from l2o.pdhg.batch_fused import batch_iteration_fused
    from l2o.pdhg.batch_state import BatchState
    from l2o.pdhg.fused import SPMV_TILES, FusedPlan
    from l2o.pdhg.iteration import halpern_iteration
    from l2o.pdhg.options import SolverOptions
    from l2o.pdhg.stack import scale_stack, stack_arrays

    lps = _mixed()
    cpu = torch.device("cpu")
    arrays, c0 = stack_arrays(lps, cpu)
    stack, _ = scale_stack(arrays, c0, [lp.num_rows for lp in lps],
                           [lp.num_cols for lp in lps], torch.float64, SolverOptions())
    gen = torch.Generator().manual_seed(0)
    m, n = stack.shape
    x = torch.clamp(torch.randn(n, generator=gen, dtype=torch.float64), stack.col_lower,
                    stack.col_upper)
    y = torch.randn(m, generator=gen, dtype=torch.float64)
    eta = (0.5 + torch.rand(len(lps), generator=gen, dtype=torch.float64)).tolist()
    omega = (0.1 + 3 * torch.rand(len(lps), generator=gen, dtype=torch.float64)).tolist()
    states = []
    for _ in range(2):
        s = BatchState.init(stack, x, y)
        s.set_steps(stack, eta, omega)
        states.append(s)
    torch_state, fused_state = states
    aty = torch.empty(n, dtype=torch.float64)
    plan = FusedPlan(False, torch.empty((), dtype=torch.float64), aty=aty,
                     product_a=lambda: torch.mv(stack.op.csr, fused_state.x_bar,
                                                out=fused_state.ax_bar),
                     product_at=lambda: torch.mv(stack.op.csr_t, fused_state.y, out=aty))
    if spmv:    # the wide tile: the PageRank LP's long row takes several trips
        plan = FusedPlan(True, torch.empty((), dtype=torch.float64), SPMV_TILES[1],
                         SPMV_TILES[1])
    for last in (False, True, False, True):
        halpern_iteration(stack, torch_state, last)
        batch_iteration_fused(stack, fused_state, plan, last)
        # the "spmv" plan stores A~ x_bar only for the check (last), as the single LP's
        names = ("x", "y", "x_bar", "weight") + (("ax_bar",) if last or not spmv else ()) + (
            ("x_pre", "x_hat", "y_hat", "y_bar") if last else ())
        for name in names:
            torch.testing.assert_close(getattr(fused_state, name), getattr(torch_state, name),
                                       rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", [True, "elementwise", "spmv"])
def test_cuda_fused_batch_matches_torch_ops(mode):
    """The Triton iteration (each plan) and check against the torch ops on the GPU: same
    statuses, iterations within one check, objectives within the tolerance; graphs vs eager
    with the fused kernels: identical iteration counts."""
    lps = _mixed()
    plain = solve_lp_batch(lps, tol=TOL, device="cuda", fused=False)
    fused = solve_lp_batch(lps, tol=TOL, device="cuda", fused=mode)
    eager = solve_lp_batch(lps, tol=TOL, device="cuda", fused=mode, cuda_graph=False)
    for lp, p, f, e in zip(lps, plain, fused, eager):
        assert f.status == p.status == e.status, lp.name
        assert abs(f.iterations - p.iterations) <= 64, lp.name
        assert f.iterations == e.iterations, lp.name
        if p.status == LPStatus.OPTIMAL:
            assert abs(f.objective - p.objective) <= 10 * TOL * (1 + abs(p.objective)), lp.name
            assert max(f.kkt.values()) <= TOL, lp.name


def _stacked_state(lps, dtype, seed=0):
    """A stack of ``lps`` and a BatchState at a random point with random per-LP steps, after
    a few torch iterations (the check reads the last one's buffers)."""
    from l2o.pdhg.batch_state import BatchState
    from l2o.pdhg.iteration import halpern_iteration
    from l2o.pdhg.options import SolverOptions
    from l2o.pdhg.stack import scale_stack, stack_arrays

    arrays, c0 = stack_arrays(lps, torch.device("cpu"))
    stack, term = scale_stack(arrays, c0, [lp.num_rows for lp in lps],
                              [lp.num_cols for lp in lps], dtype, SolverOptions())
    gen = torch.Generator().manual_seed(seed)
    m, n = stack.shape
    x = torch.clamp(torch.randn(n, generator=gen, dtype=dtype), stack.col_lower, stack.col_upper)
    s = BatchState.init(stack, x, torch.randn(m, generator=gen, dtype=dtype))
    eta = (0.5 + torch.rand(len(lps), generator=gen)).tolist()
    omega = (0.1 + 3 * torch.rand(len(lps), generator=gen)).tolist()
    s.set_steps(stack, eta, omega)
    for _ in range(5):
        halpern_iteration(stack, s)
    return stack, term, s


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1"
                    or importlib.util.find_spec("triton") is None,
                    reason="the Triton kernels on the CPU need Triton's interpreter "
                           "(TRITON_INTERPRET=1)")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_batch_check_matches_the_torch_check(dtype):
    """l2o.pdhg.batch_check against device_statistics with segment reductions on a stack of
    the mixed LPs (one with no rows, one LP larger than a tile), every LP's row of the (B, K)
    statistics and the check's vectors; nan in one LP's iterate leaves the others' rows
    as they were."""
    from l2o.pdhg.batch_check import BatchCheck
    from l2o.pdhg.statistics import device_statistics

    no_rows = LinearProgram.create([1.0, -2.0], np.zeros((0, 2)), col_lower=[0, -1],
                                   col_upper=[3, 1], name="no rows")
    lps = [*_mixed(), no_rows, generate("setcover", rows=300, cols=1500, density=0.01, seed=9)]
    stack, term, s = _stacked_state(lps, dtype)
    tol = 1e-10 if dtype == torch.float64 else 2e-3
    for poison in (False, True):
        if poison:      # nan in LP 2's columns
            s.x_hat[stack.col_slice(2)] = float("nan")
        ref, ref_vectors = device_statistics(stack, term, s)
        ref = ref.numpy()
        check = BatchCheck.build(stack, term, s)
        reduced, vectors = check.statistics(stack, term, s)
        got = check.rows(reduced.numpy())
        assert got.shape == ref.shape == (len(lps), ref.shape[1])
        finite = np.isfinite(ref).all(axis=1)
        assert (np.isfinite(got).all(axis=1) == finite).all()
        assert finite.sum() == len(lps) - poison
        scale = np.maximum(1.0, np.abs(ref[finite]))
        assert (np.abs(got[finite] - ref[finite]) <= tol * scale).all(), (
            np.abs(got[finite] - ref[finite]) / scale).max()
        for name in ("x", "y", "reduced_costs", "aty_hat"):
            torch.testing.assert_close(getattr(vectors, name), getattr(ref_vectors, name),
                                       rtol=tol, atol=tol, equal_nan=True, msg=name)
        # the rays of the finite LPs (a nan entry may be projected to a bound by Triton's
        # clamp, where torch's keeps it: that LP's statistics are nan either way)
        cols = torch.tensor([finite[b] for b in stack.col_lp.tolist()])
        rows = torch.tensor([finite[b] for b in stack.row_lp.tolist()])
        for name in ref_vectors.primal_rays:
            assert torch.equal(vectors.primal_rays[name][cols],
                               ref_vectors.primal_rays[name][cols]), name
            assert torch.equal(vectors.dual_rays[name][rows], ref_vectors.dual_rays[name][rows])


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1"
                    or importlib.util.find_spec("triton") is None,
                    reason="the Triton kernels on the CPU need Triton's interpreter "
                           "(TRITON_INTERPRET=1)")
@pytest.mark.parametrize("spmv", [False, True])
def test_fused_batch_solve_matches_the_torch_ops(monkeypatch, spmv):
    """The whole batch with the fused iteration (either plan) and the fused check, on CPU
    tensors through Triton's interpreter (the factories ask for CUDA, so they are replaced by
    ones that build the same plan and check on the CPU), against the torch ops: statuses,
    iteration counts, objectives; the stack is compacted (and the check rebuilt) as LPs
    finish, and the infeasible and unbounded members keep their certificates."""
    from l2o.pdhg import batch
    from l2o.pdhg.batch_check import BatchCheck
    from l2o.pdhg.fused import SPMV_TILES, FusedPlan

    def cpu_plan(p, s, mode, sparse_products):
        if mode is False:
            return None
        if spmv:
            return FusedPlan(True, torch.empty(()), SPMV_TILES[1], SPMV_TILES[1])
        aty = torch.empty_like(s.x)
        return FusedPlan(False, torch.empty(()), aty=aty,
                         product_a=lambda: torch.mv(p.op.csr, s.x_bar, out=s.ax_bar),
                         product_at=lambda: torch.mv(p.op.csr_t, s.y, out=aty))

    checks = []

    def cpu_check(p, t, s):
        checks.append(p.count)
        return None if s.batch_plan is None else BatchCheck.build(p, t, s)

    monkeypatch.setattr(batch, "make_batch_plan", cpu_plan)
    monkeypatch.setattr(batch, "make_batch_check", cpu_check)
    # afiro ends at 257 iterations, sc50a at 449: the stack is compacted in between
    lps = [_netlib("afiro"), _netlib("sc50a"), _unbounded(),
           LinearProgram.create([1.0, -2.0], np.zeros((0, 2)), col_lower=[0, -1],
                                col_upper=[3, 1], name="no rows")]
    plain = solve_lp_batch(lps, tol=TOL, device="cpu", fused=False)
    fused = solve_lp_batch(lps, tol=TOL, device="cpu")
    assert len([c for c in checks if c]) >= 2        # built again after a compaction
    for lp, p, f in zip(lps, plain, fused):
        assert f.status == p.status, (lp.name, f.message, p.message)
        assert abs(f.iterations - p.iterations) <= 64, lp.name
        if p.status == LPStatus.OPTIMAL:
            assert abs(f.objective - p.objective) <= 10 * TOL * (1 + abs(p.objective)), lp.name
            assert max(f.kkt.values()) <= TOL, lp.name
    assert fused[2].status == LPStatus.DUAL_INFEASIBLE


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1"
                    or importlib.util.find_spec("triton") is None,
                    reason="the Triton kernels on the CPU need Triton's interpreter "
                           "(TRITON_INTERPRET=1)")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_restart_equals_the_torch_restart(dtype):
    """BatchState.restart_with_steps with the Triton kernels (l2o.pdhg.batch_fused) against
    its torch ops (restart_lps, set_steps): every buffer equal to the bit, for some LPs
    restarting at the checked point (A~^T y^ a strided column, as the fused check gives it)
    and new steps for all."""
    lps = _mixed()
    states = [_stacked_state(lps, dtype, seed=3) for _ in range(2)]
    (stack, _, plain), (_, _, fused) = states
    fused.batch_plan = object()          # any plan: the state then takes the Triton path
    gen = torch.Generator().manual_seed(4)
    products = torch.randn(stack.shape[1], 3, generator=gen, dtype=dtype)
    restart = [b % 3 == 1 for b in range(len(lps))]
    eta = (0.5 + torch.rand(len(lps), generator=gen)).tolist()
    omega = (0.1 + 3 * torch.rand(len(lps), generator=gen)).tolist()
    for s in (plain, fused):
        s.restart_with_steps(stack, restart, eta, omega, s.x_hat, s.y_hat, products[:, 0])
    for name in ("x", "y", "x0", "y0", "grad", "weight", "tau", "neg_sigma", "dual_lower",
                 "dual_upper", "metric_primal", "metric_dual"):
        assert torch.equal(getattr(fused, name), getattr(plain, name)), name
