"""Same LP, same bits: ``solve_lp(..., reproducible=True)`` on a GPU repeats exactly.

The preconditioning's row and column sums add each line's entries in a fixed order
(:func:`l2o.pdhg.scaling.equilibrate`; sums by float64 atomic adds changed the last bits of the
factors from run to run), ``reproducible=True`` multiplies by cuSPARSE's CSR_ALG2, which adds
in a fixed order too (the default CSR_ALG1 does not), and runs the GPU presolve and postsolve
under torch's deterministic algorithms (their ``index_add_`` sums are atomics otherwise).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import l2o
from l2o.pdhg.options import SolverOptions

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _long_lines_lp(seed: int, fixed: float = 0.0) -> l2o.LinearProgram:
    """A feasible, bounded 400 x 600 LP with 30% nonzeros of spread magnitudes: rows and
    columns of 120-180 entries whose sums round differently in another order (PageRank's
    equal coefficients add exactly in any order); above the CPU-setup threshold, so the
    preconditioning runs on the GPU.  ``fixed``: the share of the columns fixed at random
    values (the presolve moves them into the row bounds, a sum over each row); the row
    bounds are centred on their activity, so x = 0 on the other columns stays feasible."""
    rng = np.random.default_rng(seed)
    A = sp.random(400, 600, density=0.3, random_state=rng,
                  data_rvs=lambda k: rng.lognormal(0.0, 2.0, k) * rng.choice([-1.0, 1.0], k))
    A = sp.csr_matrix(A)
    lower, upper = np.zeros(600), np.ones(600)
    is_fixed = rng.random(600) < fixed
    lower[is_fixed] = upper[is_fixed] = rng.uniform(0.0, 1.0, int(is_fixed.sum()))
    centre = A @ np.where(is_fixed, lower, 0.0)
    return l2o.LinearProgram.create(rng.standard_normal(600), A, row_lower=centre - 1.0,
                                    row_upper=centre + 1.0, col_lower=lower, col_upper=upper)


def _same_bits(a: l2o.LPResult, b: l2o.LPResult) -> bool:
    return a.iterations == b.iterations and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_reproducible_runs_under_deterministic_algorithms_and_restores_them():
    seen = []
    before = torch.are_deterministic_algorithms_enabled()
    result = l2o.solve_lp(l2o.load_example("afiro"), device="cpu", presolve="gpu",
                          reproducible=True,
                          progress=lambda info: seen.append(
                              torch.are_deterministic_algorithms_enabled()))
    assert result.status == l2o.LPStatus.OPTIMAL and seen and all(seen)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_reproducible_rejects_what_it_cannot_keep():
    with pytest.raises(ValueError, match="distributed"):
        l2o.solve_lp(l2o.load_example("afiro"), device="cpu", reproducible=True,
                     distributed=True)
    with pytest.raises(TypeError, match="reproducible"):
        l2o.solve_lp(l2o.load_example("afiro"), device="cpu", reproducible="yes")
    with pytest.raises(ValueError, match="cusparse-alg2"):
        l2o.solve_lp(l2o.load_example("afiro"), device="cpu", reproducible=True,
                     sparse_products="torch")
    with pytest.raises(ValueError, match="cusparse-alg2"):
        l2o.solve_lp_batch([l2o.load_example("afiro")], device="cpu", reproducible=True,
                           sparse_products="cusparse")


@needs_cuda
def test_two_gpu_solves_give_the_same_bits():
    lp = _long_lines_lp(5)
    assert lp.nnz >= SolverOptions().cpu_setup_nnz
    options = {"tol": 1e-8, "device": "cuda", "method": "pdhg", "presolve": False,
               "reproducible": True, "iteration_limit": 2000}
    assert _same_bits(l2o.solve_lp(lp, **options), l2o.solve_lp(lp, **options))


@needs_cuda
def test_two_gpu_presolved_solves_give_the_same_bits():
    lp = _long_lines_lp(8, fixed=0.4)
    options = {"tol": 1e-6, "device": "cuda", "method": "pdhg", "presolve": "gpu",
               "reproducible": True, "iteration_limit": 3000}
    first, second = l2o.solve_lp(lp, **options), l2o.solve_lp(lp, **options)
    assert first.presolve["applied"] and first.presolve["cols_removed"] >= 200
    assert _same_bits(first, second)


@needs_cuda
def test_the_scaling_gives_the_same_bits_on_the_gpu():
    from l2o.pdhg.scaling import scale_lp

    lp = _long_lines_lp(6)
    runs = [scale_lp(lp, device=torch.device("cuda"), dtype=torch.float64) for _ in range(3)]
    for other in runs[1:]:
        assert torch.equal(other.row_scale, runs[0].row_scale)
        assert torch.equal(other.col_scale, runs[0].col_scale)
        assert torch.equal(other.op.csr.values(), runs[0].op.csr.values())


@needs_cuda
def test_the_command_line_repeats_with_reproducible(tmp_path, capsys):
    from l2o.cli import main

    path = tmp_path / "long_lines.mps"
    l2o.write_lp(_long_lines_lp(7), path)
    outputs = []
    for _ in range(2):
        code = main(["solve", str(path), "--device", "cuda", "--reproducible", "--tol", "1e-8",
                     "--iter-limit", "2000", "--json"])
        assert code in (0, 6)
        result = json.loads(capsys.readouterr().out)
        outputs.append({key: result[key] for key in ("iterations", "x", "y", "objective")})
    assert outputs[0] == outputs[1]


def test_a_reproducible_batch_solves_and_restores_the_mode():
    lps = [l2o.load_example(name) for name in ("afiro", "sc50a")]
    before = torch.are_deterministic_algorithms_enabled()
    batch = l2o.solve_lp_batch(lps, tol=1e-6, device="cpu", reproducible=True)
    assert torch.are_deterministic_algorithms_enabled() == before
    assert all(r.status == l2o.LPStatus.OPTIMAL for r in batch)
    with pytest.raises(TypeError, match="reproducible"):
        l2o.solve_lp_batch(lps, device="cpu", reproducible=1)


@needs_cuda
def test_two_gpu_batches_give_the_same_bits():
    lps = [_long_lines_lp(seed) for seed in (11, 12, 13)]
    options = {"tol": 1e-8, "device": "cuda", "reproducible": True, "iteration_limit": 1500}
    first, second = l2o.solve_lp_batch(lps, **options), l2o.solve_lp_batch(lps, **options)
    assert all(_same_bits(a, b) for a, b in zip(first, second))
