"""LP relaxation of random set cover instances (Balas & Ho, 1980).

    minimize  c^T x   subject to   A x >= 1,   0 <= x <= 1,

with A a random 0/1 matrix (rows = elements, columns = sets) of the given density and integer
costs c_j uniform in {1, ..., max_cost}. As in Balas & Ho (and the generator of Gasse et al.,
NeurIPS 2019) every column covers at least two rows and every row is covered by at least one
column, so the LP is feasible (x = 1) and bounded (c > 0, x >= 0).

References:
    E. Balas and A. Ho, "Set covering algorithms using cutting planes, heuristics, and
    subgradient optimization: a computational study", Math. Prog. Study 12, 1980.
    M. Gasse et al., "Exact combinatorial optimization with graph convolutional neural
    networks", NeurIPS 2019.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from l2o.lp.model import LinearProgram

__all__ = ["set_cover"]


def set_cover(rows: int = 500, cols: int = 1000, density: float = 0.05, max_cost: int = 100,
              seed: int = 0) -> LinearProgram:
    """LP relaxation of random set cover (Balas & Ho): min c^T x, A x >= 1, 0 <= x <= 1.

    Args:
        rows: number of elements to cover (LP rows).
        cols: number of candidate sets (LP columns).
        density: fraction of nonzeros in A; needs rows * cols * density >= max(rows, 2 cols).
        max_cost: set costs are uniform integers in [1, max_cost].
        seed: random seed.

    Returns:
        LinearProgram ``setcover_r{rows}_c{cols}_d{density}_s{seed}`` with rows ``cover_i``
        (A x >= 1) and columns ``set_j`` in [0, 1].
    """
    rows, cols, max_cost, seed = int(rows), int(cols), int(max_cost), int(seed)
    if rows < 1 or cols < 1 or max_cost < 1:
        raise ValueError(f"set_cover: rows, cols and max_cost must be >= 1, got rows={rows}, "
                         f"cols={cols}, max_cost={max_cost}")
    if not 0.0 < density <= 1.0:
        raise ValueError(f"set_cover: density must lie in (0, 1], got {density}")
    nnz = int(rows * cols * density)
    if nnz < rows or nnz < 2 * cols or rows < 2:
        raise ValueError(f"set_cover: rows * cols * density = {nnz} nonzeros cannot give every "
                         f"row one set and every set two rows (need >= {max(rows, 2 * cols)} "
                         f"and rows >= 2); raise density or rows")
    rng = np.random.default_rng(seed)

    # Column of each nonzero: two per column guaranteed, the rest uniform.
    col_of = np.concatenate([np.repeat(np.arange(cols), 2), rng.integers(0, cols, nnz - 2 * cols)])
    col_of.sort()
    per_col = np.bincount(col_of, minlength=cols)
    if per_col.max() > rows:
        raise ValueError(f"set_cover: density {density} too high for {rows} rows")
    # Row of each nonzero, column by column: the first `rows` nonzeros (in column order) take a
    # permutation of all rows, so every row is covered; each column then fills up with distinct
    # rows it does not yet have.
    row_of = np.empty(nnz, dtype=np.int64)
    row_of[:rows] = rng.permutation(rows)
    stops = np.cumsum(per_col)
    for j in np.flatnonzero(stops > rows):          # columns not filled by the permutation alone
        start, stop = stops[j] - per_col[j], stops[j]
        if start < rows:                             # the one column straddling position `rows`
            free = np.setdiff1d(np.arange(rows), row_of[start:rows], assume_unique=True)
            row_of[rows:stop] = rng.choice(free, size=stop - rows, replace=False)
        else:
            row_of[start:stop] = rng.choice(rows, size=stop - start, replace=False)
    A = sp.csr_matrix((np.ones(nnz), (row_of, col_of)), shape=(rows, cols))
    cost = rng.integers(1, max_cost + 1, cols).astype(np.float64)

    lp = LinearProgram.create(
        cost, A, np.ones(rows), np.full(rows, np.inf), np.zeros(cols), np.ones(cols),
        row_names=[f"cover_{i}" for i in range(rows)], col_names=[f"set_{j}" for j in range(cols)],
        name=f"setcover_r{rows}_c{cols}_d{density:g}_s{seed}")
    lp.metadata.update(family="setcover", options=dict(rows=rows, cols=cols, density=density,
                                                       max_cost=max_cost, seed=seed))
    return lp
