"""Same LP, same bits: two GPU solves with cuSPARSE's deterministic products agree exactly.

The preconditioning's row and column sums add each line's entries in a fixed order
(:func:`l2o.pdhg.scaling.equilibrate`; sums by float64 atomic adds changed the last bits of the
factors from run to run), and ``sparse_products="cusparse-alg2"`` multiplies by cuSPARSE's
CSR_ALG2, which adds in a fixed order too (the default CSR_ALG1 does not).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import l2o
from l2o.pdhg.options import SolverOptions

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _long_lines_lp(seed: int) -> l2o.LinearProgram:
    """A feasible, bounded 400 x 600 LP with 30% nonzeros of spread magnitudes: rows and
    columns of 120-180 entries whose sums round differently in another order (PageRank's
    equal coefficients add exactly in any order); above the CPU-setup threshold, so the
    preconditioning runs on the GPU."""
    rng = np.random.default_rng(seed)
    A = sp.random(400, 600, density=0.3, random_state=rng,
                  data_rvs=lambda k: rng.lognormal(0.0, 2.0, k) * rng.choice([-1.0, 1.0], k))
    return l2o.LinearProgram.create(rng.standard_normal(600), sp.csr_matrix(A),
                                    row_lower=-np.ones(400), row_upper=np.ones(400),
                                    col_lower=np.zeros(600), col_upper=np.ones(600))


def test_two_gpu_solves_give_the_same_bits():
    lp = _long_lines_lp(5)
    assert lp.nnz >= SolverOptions().cpu_setup_nnz
    options = {"tol": 1e-8, "device": "cuda", "method": "pdhg", "presolve": False,
               "sparse_products": "cusparse-alg2", "iteration_limit": 2000}
    first, second = l2o.solve_lp(lp, **options), l2o.solve_lp(lp, **options)
    assert first.iterations == second.iterations
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)


def test_the_scaling_gives_the_same_bits_on_the_gpu():
    from l2o.pdhg.scaling import scale_lp

    lp = _long_lines_lp(6)
    runs = [scale_lp(lp, device=torch.device("cuda"), dtype=torch.float64) for _ in range(3)]
    for other in runs[1:]:
        assert torch.equal(other.row_scale, runs[0].row_scale)
        assert torch.equal(other.col_scale, runs[0].col_scale)
        assert torch.equal(other.op.csr.values(), runs[0].op.csr.values())


def test_the_command_line_repeats_with_reproducible(tmp_path, capsys):
    import json

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
