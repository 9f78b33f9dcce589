"""``scale_lp``'s diagonal factors against an independent scipy implementation of the same passes.

The reference below reduces |a_ij| per row over a CSR copy of A and per column over a CSC copy
(``np.maximum.reduceat`` and friends), not over COO indices as ``scale_lp`` does, so any
reimplementation of the reductions (segments, a kernel of its own) is checked against it:
D1, D2 and the scaled matrix D1 A D2 must match to 1e-13 relative (the max/min are exact; only
the Pock-Chambolle sums may be added in another order), and
empty rows and columns must keep the factor 1 exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import l2o
from l2o import LinearProgram
from l2o.pdhg.scaling import scale_lp

NETLIB = Path(__file__).resolve().parents[1] / "data" / "lp" / "netlib"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inv_sqrt(v: np.ndarray) -> np.ndarray:
    out = np.ones_like(v)
    out[v > 0] = 1.0 / np.sqrt(v[v > 0])
    return out


def _per_line(M: sp.csr_matrix | sp.csc_matrix, ufunc: np.ufunc, empty: float) -> np.ndarray:
    """ufunc-reduction of the stored entries of each row (CSR) or column (CSC); ``empty`` for
    a line without entries."""
    ptr, out = M.indptr, np.full(len(M.indptr) - 1, empty)
    full = np.diff(ptr) > 0
    if M.nnz:
        out[full] = ufunc.reduceat(M.data, ptr[:-1][full])
    return out


def _reference(A: sp.csr_matrix, ruiz: int, gm: int) -> tuple[np.ndarray, np.ndarray]:
    """D1 (m,), D2 (n,): ``gm`` geometric-mean passes (rows, then columns of the row-scaled
    matrix: 1/sqrt(max |a| min |a|)), ``ruiz`` Ruiz passes (1/sqrt(max |a|), rows and columns
    from the same matrix), one Pock-Chambolle pass (1/sqrt(sum |a|)); empty lines keep 1."""
    B = abs(sp.csr_matrix(A, dtype=np.float64))
    B.eliminate_zeros()
    m, n = B.shape
    d1, d2 = np.ones(m), np.ones(n)

    def rescale(r: np.ndarray, s: np.ndarray) -> None:
        nonlocal B, d1, d2
        B = sp.diags(r) @ B @ sp.diags(s)
        d1, d2 = d1 * r, d2 * s

    def lines(f, ufunc, empty):
        return f(B.tocsr(), ufunc, empty), f(B.tocsc(), ufunc, empty)

    for _ in range(gm):
        r = _inv_sqrt(_per_line(B.tocsr(), np.maximum, 0.0) * _per_line(B.tocsr(), np.minimum, 0.0))
        rescale(r, np.ones(n))
        s = _inv_sqrt(_per_line(B.tocsc(), np.maximum, 0.0) * _per_line(B.tocsc(), np.minimum, 0.0))
        rescale(np.ones(m), s)
    for _ in range(ruiz):
        r, s = lines(_per_line, np.maximum, 0.0)
        rescale(_inv_sqrt(r), _inv_sqrt(s))
    r, s = lines(_per_line, np.add, 0.0)
    rescale(_inv_sqrt(r), _inv_sqrt(s))
    return d1, d2


def _with_empty_lines() -> LinearProgram:
    """A random 40 x 30 LP with entries over 7 decades, empty rows 0, 7, 39 and columns 0, 12,
    29, one dense row and one dense column (PageRank's `sum x = 1` row and a hub)."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 30)) * 10.0 ** rng.integers(-3, 4, size=(40, 30))
    A[rng.random((40, 30)) < 0.8] = 0.0
    A[5, :] = rng.uniform(0.5, 2.0, 30)
    A[:, 3] = rng.uniform(0.5, 2.0, 40)
    A[[0, 7, 39], :] = 0.0
    A[:, [0, 12, 29]] = 0.0
    return LinearProgram.create(rng.standard_normal(30), sp.csr_matrix(A),
                                row_lower=-np.ones(40), row_upper=np.ones(40),
                                col_lower=np.zeros(30), col_upper=np.full(30, 5.0),
                                name="empty_lines")


def _scipy(lp: LinearProgram) -> sp.csr_matrix:
    A = lp.A.to_sparse_csr()
    return sp.csr_matrix((A.values().numpy(), A.col_indices().numpy(), A.crow_indices().numpy()),
                         shape=tuple(A.shape))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ruiz,gm", [(10, 0), (3, 2)])
@pytest.mark.parametrize("name", ["afiro", "scagr7", "empty_lines"])
def test_factors_match_scipy_reference(name, ruiz, gm, device):
    lp = _with_empty_lines() if name == "empty_lines" else l2o.read_lp(NETLIB / f"{name}.mps.gz")
    p = scale_lp(lp, device=torch.device(device), dtype=torch.float64, ruiz_iterations=ruiz,
                 geometric_mean_passes=gm)
    A = _scipy(lp)
    d1, d2 = _reference(A, ruiz, gm)
    np.testing.assert_allclose(p.row_scale.cpu().numpy(), d1, rtol=1e-13, atol=0)
    np.testing.assert_allclose(p.col_scale.cpu().numpy(), d2, rtol=1e-13, atol=0)
    # the operator holds D1 A D2 (CSR) and its transpose
    scaled = (sp.diags(d1) @ A @ sp.diags(d2)).toarray()
    got = p.op.csr.to_dense().cpu().numpy()
    np.testing.assert_allclose(got, scaled, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(p.op.csr_t.to_dense().cpu().numpy(), got.T)


def test_empty_lines_keep_factor_one():
    p = scale_lp(_with_empty_lines(), device=torch.device("cpu"), dtype=torch.float64,
                 geometric_mean_passes=1)
    assert (p.row_scale[[0, 7, 39]] == 1).all() and (p.col_scale[[0, 12, 29]] == 1).all()
    assert torch.isfinite(p.row_scale).all() and torch.isfinite(p.col_scale).all()


@pytest.mark.parametrize("shape", [(0, 3), (2, 3)])
def test_lp_without_entries(shape):
    """No rows at all, or rows without nonzeros: every factor is 1, theta from the data."""
    lp = LinearProgram.create([1.0, -1.0, 2.0], sp.csr_matrix(shape),
                              row_upper=np.ones(shape[0]), col_lower=np.zeros(3),
                              col_upper=np.ones(3))
    p = scale_lp(lp, device=torch.device("cpu"), dtype=torch.float64)
    assert torch.equal(p.row_scale, torch.ones(shape[0], dtype=torch.float64))
    assert torch.equal(p.col_scale, torch.ones(3, dtype=torch.float64))
    assert p.objective_scale == pytest.approx(1.0 / (1.0 + np.sqrt(6.0)), rel=1e-15)
