"""The Triton iteration (l2o.pdhg.fused) against the torch iteration; CUDA + Triton only, except
the option checks, which run everywhere, and the kernels' math under TRITON_INTERPRET=1."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from l2o import LinearProgram, LPStatus, solve_lp
from l2o.pdhg import fused
from l2o.pdhg import iteration as S
from l2o.pdhg.scaling import scale_lp

needs_triton = pytest.mark.skipif(not fused.available("cuda") or not torch.cuda.is_available(),
                                  reason="needs CUDA and Triton")


def random_lp(m: int, n: int, seed: int, bounds: str) -> LinearProgram:
    """A feasible random LP with <= and = rows; columns all free ("free"), all in [-1, 2]
    ("box": then bounded too) or a mix of x >= 0, boxes and free columns ("mixed")."""
    rng = np.random.default_rng(seed)
    A = sp.random(m, n, density=min(1.0, 6.0 / n), random_state=seed, format="csr")
    A = (A + sp.csr_matrix((rng.standard_normal(n), (rng.integers(0, m, n), np.arange(n))),
                           shape=(m, n))).tocsr()
    x_feas = rng.random(n)
    k = m // 2
    bounds = {"free": [(None, None)] * n, "box": [(-1, 2)] * n,
              "mixed": [(0, None)] * (n // 2) + [(-1, 2)] * (n // 4)
              + [(None, None)] * (n - n // 2 - n // 4)}[bounds]
    return LinearProgram.from_linprog(c=rng.standard_normal(n), A_ub=A[:k],
                                      b_ub=A[:k] @ x_feas + rng.random(k), A_eq=A[k:],
                                      b_eq=A[k:] @ x_feas, bounds=bounds)


BUFFERS = ("x", "y", "x0", "y0", "x_hat", "y_hat", "x_bar", "y_bar", "ax_bar", "x_pre", "weight")


def test_fused_option_is_checked():
    lp = random_lp(6, 9, 0, "box")
    with pytest.raises(ValueError, match="fused"):
        solve_lp(lp, device="cpu", fused="sometimes")
    with pytest.raises(ValueError, match="needs CUDA and Triton"):
        solve_lp(lp, device="cpu", fused=True)
    with pytest.raises(ValueError, match="sparse_products"):
        solve_lp(lp, device="cpu", sparse_products="cublas")
    assert solve_lp(lp, device="cpu", fused="auto").status == LPStatus.OPTIMAL


@needs_triton
@pytest.mark.parametrize("mode", ["elementwise", "spmv", "mixed", "elementwise-cusparse",
                                  "elementwise-cusparse-alg2", "mixed-cusparse"])
@pytest.mark.parametrize("bounds", ["free", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_iteration_matches_torch(mode, bounds, dtype):
    mode, _, products = mode.partition("-")
    lp = random_lp(300, 500, 1, bounds)
    p = scale_lp(lp, device="cuda", dtype=dtype)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(lp.num_cols, generator=gen, dtype=torch.float64).to("cuda", dtype)
    y = torch.randn(lp.num_rows, generator=gen, dtype=torch.float64).to("cuda", dtype)
    states = []
    for plan_mode in (False, mode):
        s = S.IterationState.init(p, torch.clamp(x, p.col_lower, p.col_upper), y)
        s.set_steps(p, 0.9, 1.7)
        s.fused_plan = fused.make_plan(p, s, plan_mode, products or "torch")
        states.append(s)
    assert states[0].fused_plan is None and states[1].fused_plan.spmv == (mode == "spmv")
    check_only = ("x_pre", "x_hat", "y_hat", "y_bar")
    for i in range(50):
        if i == 1:   # the iterations before the last must not write what only the check reads
            for name in check_only:
                getattr(states[1], name).fill_(float("nan"))
        if i == 49:
            assert all(bool(torch.isnan(getattr(states[1], n)).all()) for n in check_only)
        for s in states:
            S.halpern_iteration(p, s, last=i == 49)
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    for name in BUFFERS:
        a, b = getattr(states[0], name), getattr(states[1], name)
        scale = max(1.0, float(a.abs().max()))
        assert float((a - b).abs().max()) <= tol * scale, name
    assert float(states[1].weight) == pytest.approx(51 / 52, rel=1e-6)


@pytest.mark.parametrize("stats_a, stats_at, nnz, plans, expected", [
    ((6.4, 96), (2.2, 3), 337_144, fused.PLANS, "spmv"),            # pds-30: every row short
    ((610.3, 7805), (6.7, 12), 314_896, fused.PLANS, "mixed"),      # rail516: long rows
    ((128.5, 17612), (6.0, 6), 143_694, fused.PLANS, "mixed"),      # osa-07
    ((610.3, 7805), (6.7, 12), 314_896, ("spmv", "elementwise"), "elementwise"),  # the batch
    ((60.3, 4949), (41.7, 233), 1_139_637, fused.PLANS, "elementwise"),  # dbir2: wide columns
    ((8.0, 1_000_000), (9.0, 30), 7_999_982, fused.PLANS, "elementwise"),  # PageRank 1e6: large
    ((101.4, 103), (3.1, 769), 233_921, fused.PLANS, "elementwise"),  # bpmpd: long columns
])
def test_auto_plan_follows_the_row_lengths(stats_a, stats_at, nnz, plans, expected):
    """The plan "auto" picks, on the row statistics of LPs of the large set (A~, A~^T)."""
    assert fused.auto_plan(stats_a, stats_at, nnz, plans) == expected


@needs_triton
def test_fused_iteration_propagates_nan():
    lp = random_lp(20, 30, 3, "mixed")
    p = scale_lp(lp, device="cuda", dtype=torch.float64)
    for mode in ("elementwise", "spmv", "mixed"):
        x = torch.zeros(lp.num_cols, dtype=torch.float64, device="cuda")
        s = S.IterationState.init(p, x, torch.zeros(lp.num_rows, dtype=torch.float64,
                                                    device="cuda"))
        s.set_steps(p, 0.9, 1.0)
        s.fused_plan = fused.make_plan(p, s, mode)
        s.x[0] = float("nan")
        S.halpern_iteration(p, s)
        assert torch.isnan(s.x_hat[0]) and torch.isnan(s.x[0]), mode


@needs_triton
@pytest.mark.parametrize("mode", ["elementwise", "spmv", "mixed"])
@pytest.mark.parametrize("size", [(30, 40), (400, 700)])
def test_solve_lp_fused_matches_torch(size, mode):
    lp = random_lp(*size, seed=4, bounds="box")
    ref = solve_lp(lp, tol=1e-8, device="cuda", fused=False)
    res = solve_lp(lp, tol=1e-8, device="cuda", fused=mode)
    assert ref.status == res.status == LPStatus.OPTIMAL
    assert abs(res.iterations - ref.iterations) <= 64          # one check interval
    assert abs(res.objective - ref.objective) <= 1e-6 * max(1.0, abs(ref.objective))


@needs_triton
@pytest.mark.parametrize("bounds", ["free", "box", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_check_matches_torch_check(bounds, dtype):
    """l2o.pdhg.fused_check: the same record and vectors as device_statistics."""
    from l2o.pdhg.fused_check import make_fused_check
    from l2o.pdhg.statistics import CheckStatistics, device_statistics
    from l2o.pdhg.termination import TerminationData

    lp = random_lp(300, 500, 5, bounds)
    p = scale_lp(lp, device="cuda", dtype=dtype)
    s = S.IterationState.init(p, torch.zeros(lp.num_cols, dtype=dtype, device="cuda"),
                              torch.zeros(lp.num_rows, dtype=dtype, device="cuda"))
    s.set_steps(p, 0.9, 1.7)
    s.fused_plan = fused.make_plan(p, s, "elementwise")
    for _ in range(40):
        S.halpern_iteration(p, s)
    t = TerminationData.build(p)
    stacked, ref_vectors = device_statistics(p, t, s)
    ref = CheckStatistics.from_values(stacked.tolist())
    check = make_fused_check(p, t, s)
    values, vectors = check.statistics(p, t, s)
    got = check.record(values.tolist(), *s.metrics)
    tol = 1e-10 if dtype == torch.float64 else 1e-3
    for a, b in zip(ref.values(), got.values()):
        assert abs(a - b) <= tol * max(1.0, abs(a)), (ref, got)
    for name in ("x", "y", "reduced_costs", "aty_hat"):
        a, b = getattr(ref_vectors, name), getattr(vectors, name)
        assert torch.allclose(a, b, rtol=tol, atol=tol), name
    for name in ref_vectors.primal_rays:
        assert torch.equal(ref_vectors.primal_rays[name], vectors.primal_rays[name])
        assert torch.equal(ref_vectors.dual_rays[name], vectors.dual_rays[name])


@needs_triton
def test_solve_lp_fused_statuses():
    infeasible = LinearProgram.from_linprog(c=[1.0, 1.0], A_ub=[[1.0, 1.0]], b_ub=[-1.0],
                                            bounds=[(0, None), (0, None)])
    unbounded = LinearProgram.from_linprog(c=[-1.0, 0.0], A_ub=[[0.0, 1.0]], b_ub=[1.0],
                                           bounds=[(0, None), (0, None)])
    for mode in ("elementwise", "spmv"):
        assert solve_lp(infeasible, device="cuda", fused=mode).status == \
            LPStatus.PRIMAL_INFEASIBLE
        assert solve_lp(unbounded, device="cuda", fused=mode).status == LPStatus.DUAL_INFEASIBLE


def test_check_every_default_follows_the_lp_size():
    from l2o.pdhg.options import CHECK_EVERY, CHECK_EVERY_LARGE, LARGE_LP_NNZ, default_check_every

    assert default_check_every(LARGE_LP_NNZ - 1) == CHECK_EVERY == 64
    assert default_check_every(LARGE_LP_NNZ) == CHECK_EVERY_LARGE == 192
    lp = random_lp(6, 9, 0, "box")
    # a small LP is checked every 64 iterations: the iteration count is a multiple of 64 plus 1
    res = solve_lp(lp, tol=1e-10, device="cpu")
    assert (res.iterations - 1) % 64 == 0 or res.iterations == 1
    explicit = solve_lp(lp, tol=1e-10, device="cpu", check_every=64)
    assert explicit.iterations == res.iterations


@pytest.mark.skipif(__import__("os").environ.get("TRITON_INTERPRET") != "1"
                    or fused.triton is None,
                    reason="the Triton kernels on the CPU need Triton's interpreter "
                           "(TRITON_INTERPRET=1)")
@pytest.mark.parametrize("mode", ["elementwise", "spmv", "mixed"])
def test_fused_kernels_match_torch_in_the_interpreter(mode):
    """The single-LP kernels (each plan, both STORE variants) against halpern_iteration on
    CPU tensors through Triton's interpreter, float64: a check of the kernels' math that runs
    without a GPU (the plan is built by hand: make_plan asks for CUDA)."""
    lp = random_lp(60, 90, 4, "mixed")
    p = scale_lp(lp, device="cpu", dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.clamp(torch.randn(lp.num_cols, generator=gen, dtype=torch.float64),
                    p.col_lower, p.col_upper)
    y = torch.randn(lp.num_rows, generator=gen, dtype=torch.float64)
    states = []
    for _ in range(2):
        s = S.IterationState.init(p, x, y)
        s.set_steps(p, 0.9, 1.7)
        states.append(s)
    plain, kernels = states
    if mode == "spmv":
        tile = fused.SPMV_TILES[1]
        plan = fused.FusedPlan(True, torch.empty_like(kernels.weight), tile, tile)
    elif mode == "mixed":      # A~^T y in the primal kernel, A~ x_bar as a product
        tile = fused.SPMV_TILES[0]
        plan = fused.FusedPlan(
            False, torch.empty_like(kernels.weight), tile_at=tile, mixed=True,
            product_a=lambda: torch.mv(p.op.csr, kernels.x_bar, out=kernels.ax_bar))
    else:
        aty = torch.empty_like(kernels.x)
        plan = fused.FusedPlan(
            False, torch.empty_like(kernels.weight), aty=aty,
            product_a=lambda: torch.mv(p.op.csr, kernels.x_bar, out=kernels.ax_bar),
            product_at=lambda: torch.mv(p.op.csr_t, kernels.y, out=aty))
    for last in (False, True, False, True):
        S.halpern_iteration(p, plain, last)
        fused.halpern_iteration_fused(p, kernels, plan, last)
        names = ("x", "y", "x_bar", "weight") + (
            ("x_pre", "x_hat", "y_hat", "y_bar", "ax_bar") if last else ())
        for name in names:
            torch.testing.assert_close(getattr(kernels, name), getattr(plain, name),
                                       rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.skipif(__import__("os").environ.get("TRITON_INTERPRET") != "1"
                    or fused.triton is None,
                    reason="the Triton kernels on the CPU need Triton's interpreter "
                           "(TRITON_INTERPRET=1)")
@pytest.mark.parametrize("bounds", ["free", "mixed"])
def test_fused_check_matches_torch_check_in_the_interpreter(bounds):
    """l2o.pdhg.fused_check (its kernels and the host formulas, check_rows) against
    device_statistics on CPU tensors through Triton's interpreter, float64 (make_fused_check
    asks for CUDA, so the check is built by hand)."""
    from l2o.pdhg.fused_check import FusedCheck
    from l2o.pdhg.statistics import CheckStatistics, device_statistics
    from l2o.pdhg.termination import TerminationData

    lp = random_lp(300, 500, 5, bounds)
    p = scale_lp(lp, device="cpu", dtype=torch.float64)
    s = S.IterationState.init(p, torch.zeros(lp.num_cols, dtype=torch.float64),
                              torch.zeros(lp.num_rows, dtype=torch.float64))
    s.set_steps(p, 0.9, 1.7)
    for _ in range(40):
        S.halpern_iteration(p, s)
    t = TerminationData.build(p)
    stacked, ref_vectors = device_statistics(p, t, s)
    ref = CheckStatistics.from_values(stacked.tolist())
    check = FusedCheck.build(p, t, s)
    values, vectors = check.statistics(p, t, s)
    got = check.record(values.tolist(), *s.metrics)
    for a, b in zip(ref.values(), got.values()):
        assert abs(a - b) <= 1e-10 * max(1.0, abs(a)), (ref, got)
    for name in ("x", "y", "reduced_costs", "aty_hat"):
        torch.testing.assert_close(getattr(vectors, name), getattr(ref_vectors, name),
                                   rtol=1e-10, atol=1e-10, msg=name)
