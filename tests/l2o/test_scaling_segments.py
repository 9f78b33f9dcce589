"""Ruiz / geometric-mean scaling by segment reductions equals the scatter (COO atomics) path.

``scale_lp`` takes the row and column max/min of |a_ij| with ``torch.segment_reduce`` over the
CSR order and a column-sorted order.  Max and min do not depend on the order of their terms,
so the factors D1, D2 and hence the whole scaled LP must be bitwise those of the earlier code,
which reduced over COO indices with ``scatter_reduce_(..., "amax"/"amin")``.  That code is kept
here as the reference (``_reference_factors``), itself anchored to scipy's per-row and
per-column max.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import l2o
from l2o import LinearProgram
from l2o.pdhg.scaling import lp_arrays, scale_lp

NETLIB = Path(__file__).resolve().parents[1] / "data" / "lp" / "netlib"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inv_sqrt(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v > 0, torch.rsqrt(torch.where(v > 0, v, torch.ones_like(v))),
                       torch.ones_like(v))


def _finite_or_zero(v: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(v), v, torch.zeros_like(v))


def _reference_factors(lp: LinearProgram, device: str, ruiz: int, gm: int,
                       pock_chambolle: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """D1 (m,), D2 (n,) as the scatter path computed them (the code before the segments)."""
    a = lp_arrays(lp, torch.device(device))
    (m, n), f64 = a.shape, torch.float64
    row = torch.repeat_interleave(torch.arange(m, device=device), (a.crow[1:] - a.crow[:-1]).long())
    col = a.col.long()
    vals = a.values.abs()

    def reduce(index, size, v, how):
        start = float("inf") if how == "amin" else 0.0
        out = torch.full((size,), start, dtype=f64, device=device)
        return out.scatter_reduce_(0, index, v, how, include_self=True)

    d1 = torch.ones(m, dtype=f64, device=device)
    d2 = torch.ones(n, dtype=f64, device=device)
    for _ in range(gm):
        big = torch.where(vals > 0, vals, torch.full_like(vals, float("inf")))
        r = _inv_sqrt(reduce(row, m, vals, "amax") * _finite_or_zero(reduce(row, m, big, "amin")))
        vals = vals * r[row]
        big = torch.where(vals > 0, vals, torch.full_like(vals, float("inf")))
        s = _inv_sqrt(reduce(col, n, vals, "amax") * _finite_or_zero(reduce(col, n, big, "amin")))
        vals = vals * s[col]
        d1, d2 = d1 * r, d2 * s
    for _ in range(ruiz):
        r = _inv_sqrt(reduce(row, m, vals, "amax"))
        s = _inv_sqrt(reduce(col, n, vals, "amax"))
        vals = vals * r[row] * s[col]
        d1, d2 = d1 * r, d2 * s
    if pock_chambolle:
        r = _inv_sqrt(reduce(row, m, vals, "sum"))
        s = _inv_sqrt(reduce(col, n, vals, "sum"))
        d1, d2 = d1 * r, d2 * s
    return d1, d2


def _with_empty_lines() -> LinearProgram:
    """A random 40 x 30 LP whose rows 0, 7, 39 and columns 0, 12, 29 are empty, with a dense
    row and a dense column (the shapes of PageRank's `sum x = 1` row and of a hub)."""
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


def _lps() -> list[tuple[str, LinearProgram]]:
    return [("afiro", l2o.read_lp(NETLIB / "afiro.mps.gz")),
            ("scagr7", l2o.read_lp(NETLIB / "scagr7.mps.gz")),
            ("empty_lines", _with_empty_lines())]


def test_reference_first_pass_is_scipys_row_and_column_max():
    """The reference's first Ruiz pass: 1/sqrt of scipy's max |a_ij| per row / column."""
    lp = _with_empty_lines()
    A = abs(sp.csr_matrix(lp.A.to_dense().numpy()))
    row_max = A.max(axis=1).toarray().ravel()
    col_max = A.max(axis=0).toarray().ravel()
    d1, d2 = _reference_factors(lp, "cpu", ruiz=1, gm=0, pock_chambolle=False)
    torch.testing.assert_close(d1, _inv_sqrt(torch.from_numpy(row_max)), rtol=0, atol=0)
    torch.testing.assert_close(d2, _inv_sqrt(torch.from_numpy(col_max)), rtol=0, atol=0)
    assert (d1[[0, 7, 39]] == 1).all() and (d2[[0, 12, 29]] == 1).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ruiz,gm", [(10, 0), (3, 2)])
def test_scaled_lp_is_bitwise_the_scatter_paths(device, ruiz, gm):
    for name, lp in _lps():
        p = scale_lp(lp, device=torch.device(device), dtype=torch.float64, ruiz_iterations=ruiz,
                     geometric_mean_passes=gm)
        d1, d2 = _reference_factors(lp, device, ruiz, gm)
        assert torch.equal(p.row_scale, d1), name
        assert torch.equal(p.col_scale, d2), name
        # the matrix and its transpose are D1 A D2 entry for entry, in CSR / CSR^T order
        dense = lp.A.to_dense().to(device) * d1[:, None] * d2[None, :]
        ref, ref_t = dense.to_sparse_csr(), dense.t().to_sparse_csr()
        assert torch.equal(p.op.csr.values(), ref.values()), name
        assert torch.equal(p.op.csr_t.col_indices().long(), ref_t.col_indices()), name
        assert torch.equal(p.op.csr_t.values(), ref_t.values()), name
        # and so are the scaled objective and theta_c
        c_s = d2 * lp.minimize_c[0].to(device=device, dtype=torch.float64)
        assert p.objective_scale == 1.0 / (1.0 + float(torch.linalg.vector_norm(c_s))), name
        assert torch.equal(p.c, p.objective_scale * c_s), name


def test_empty_lines_keep_factor_one():
    lp = _with_empty_lines()
    p = scale_lp(lp, device=torch.device("cpu"), dtype=torch.float64)
    assert (p.row_scale[[0, 7, 39]] == 1).all()
    assert (p.col_scale[[0, 12, 29]] == 1).all()
    assert torch.isfinite(p.row_scale).all() and torch.isfinite(p.col_scale).all()


def test_lp_without_entries():
    """No rows at all, and rows but no nonzeros: factors 1, nothing to reduce."""
    for A in (sp.csr_matrix((0, 3)), sp.csr_matrix((2, 3))):
        lp = LinearProgram.create([1.0, -1.0, 2.0], A, row_upper=np.ones(A.shape[0]),
                                  col_lower=np.zeros(3), col_upper=np.ones(3))
        p = scale_lp(lp, device=torch.device("cpu"), dtype=torch.float64)
        assert torch.equal(p.row_scale, torch.ones(A.shape[0], dtype=torch.float64))
        assert torch.equal(p.col_scale, torch.ones(3, dtype=torch.float64))
