"""LP relaxation of random capacitated facility location (Cornuejols, Sridharan & Thizy, 1991).

Customers i with demand d_i, facilities j with capacity s_j and fixed cost f_j, points in the
unit square; serving all of customer i from j costs t_ij = 10 d_i ||p_i - q_j||. With x_ij the
fraction of i's demand served by j and y_j the opening of j:

    minimize   sum_ij t_ij x_ij + sum_j f_j y_j
    subject to sum_j x_ij = 1                      for every customer i    (rows demand_i)
               sum_i d_i x_ij - s_j y_j <= 0       for every facility j    (rows capacity_j)
               sum_j s_j y_j >= sum_i d_i                                  (row total_capacity)
               x_ij - y_j <= 0                     for every pair          (rows open_i_j)
               0 <= x, y <= 1.

Data as in Cornuejols et al. (and Gasse et al., NeurIPS 2019): d_i uniform in {5..35},
s_j uniform in {10..160} then rescaled so that sum s = ratio * sum d, f_j = floor(U{100..110}
sqrt(s_j) + U{0..90}). With ratio >= 1 the LP is feasible (y = 1, x_ij = s_j / sum s) and it is
bounded (box bounds).

References:
    G. Cornuejols, R. Sridharan and J.-M. Thizy, "A comparison of heuristics and relaxations for
    the capacitated plant location problem", EJOR 50, 1991.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from l2o.lp.model import LinearProgram

__all__ = ["facility_location"]


def facility_location(customers: int = 100, facilities: int = 50, ratio: float = 5.0,
                      seed: int = 0) -> LinearProgram:
    """LP relaxation of random capacitated facility location (Cornuejols et al.).

    Args:
        customers: number of customers I.
        facilities: number of candidate facilities J.
        ratio: total capacity / total demand, >= 1 (Cornuejols et al. use 3 to 10).
        seed: random seed.

    Returns:
        LinearProgram ``facility_c{customers}_f{facilities}_r{ratio}_s{seed}`` with I J + J
        columns (``x_i_j`` then ``y_j``) and I + J + 1 + I J rows.
    """
    nc, nf, seed = int(customers), int(facilities), int(seed)    # I and J of the docstring
    if nc < 1 or nf < 1:
        raise ValueError(f"facility_location: customers and facilities must be >= 1, got "
                         f"customers={nc}, facilities={nf}")
    if not ratio >= 1.0:
        raise ValueError(f"facility_location: ratio (total capacity / demand) must be >= 1, "
                         f"got {ratio}")
    rng = np.random.default_rng(seed)
    customer_xy = rng.random((nc, 2))
    facility_xy = rng.random((nf, 2))
    demand = rng.integers(5, 36, nc).astype(np.float64)
    capacity = rng.integers(10, 161, nf).astype(np.float64)
    fixed_cost = np.floor(rng.integers(100, 111, nf) * np.sqrt(capacity)
                          + rng.integers(0, 91, nf))
    capacity = capacity * ratio * demand.sum() / capacity.sum()
    distance = np.linalg.norm(customer_xy[:, None, :] - facility_xy[None, :, :], axis=2)
    transport = 10.0 * demand[:, None] * distance                           # (I, J)

    pairs = nc * nf
    x = np.arange(pairs)                          # column of x_ij is i J + j
    y = pairs + np.arange(nf)                     # column of y_j
    r_cap, r_total, r_open = nc, nc + nf, nc + nf + 1   # first row of each block
    ii, jj = np.divmod(x, nf)
    rows = np.concatenate([ii, r_cap + jj, r_cap + np.arange(nf), np.full(nf, r_total),
                           r_open + x, r_open + x])
    cols = np.concatenate([x, x, y, y, x, y[jj]])
    vals = np.concatenate([np.ones(pairs), demand[ii], -capacity, capacity,
                           np.ones(pairs), -np.ones(pairs)])
    m, n = nc + nf + 1 + pairs, pairs + nf
    A = sp.csr_matrix((vals, (rows, cols)), shape=(m, n))
    row_lower = np.concatenate([np.ones(nc), np.full(nf, -np.inf), [demand.sum()],
                                np.full(pairs, -np.inf)])
    row_upper = np.concatenate([np.ones(nc), np.zeros(nf), [np.inf], np.zeros(pairs)])

    lp = LinearProgram.create(
        np.concatenate([transport.ravel(), fixed_cost]), A, row_lower, row_upper,
        np.zeros(n), np.ones(n),
        row_names=([f"demand_{i}" for i in range(nc)] + [f"capacity_{j}" for j in range(nf)]
                   + ["total_capacity"] + [f"open_{i}_{j}" for i, j in zip(ii, jj)]),
        col_names=[f"x_{i}_{j}" for i, j in zip(ii, jj)] + [f"y_{j}" for j in range(nf)],
        name=f"facility_c{nc}_f{nf}_r{ratio:g}_s{seed}")
    lp.metadata.update(family="facility",
                       options=dict(customers=nc, facilities=nf, ratio=ratio, seed=seed))
    return lp
