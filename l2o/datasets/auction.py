"""LP relaxation of random combinatorial auctions (simplified Leyton-Brown "arbitrary" bids).

A winner determination problem: bidders offer prices p_b for bundles S_b of items; each item is
sold at most once:

    maximize  p^T x   subject to   sum_{b : i in S_b} x_b <= 1  for every item i,   0 <= x <= 1.

x = 0 is feasible and 0 <= p^T x <= sum p, so the LP is feasible and bounded.

Bids follow the spirit of Leyton-Brown et al.'s "arbitrary" distribution, simplified:
  * item i has a common value v_i uniform in [min_value, max_value];
  * items have random symmetric pairwise compatibilities w_ij uniform in [0, 1];
  * a bundle starts from a uniformly random item and keeps adding, with probability
    ``add_item_prob`` each time, one more item drawn with probability proportional to its total
    compatibility with the items already in the bundle (the bundle stays "coherent");
  * its price is sum_{i in S} v_i (1 + value_deviation * u_i), u_i uniform in [-1, 1] (a private
    valuation), times |S|^additivity (complementarity: bundles are worth more than their parts).
Left out of the original: bidder-level XOR bids with dummy items, budget/resale constraints and
the removal of dominated bids. Items that no bid contains get no row.

References:
    K. Leyton-Brown, M. Pearson and Y. Shoham, "Towards a universal test suite for
    combinatorial auction algorithms", ACM EC 2000.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from l2o.lp.model import MAXIMIZE, LinearProgram

__all__ = ["combinatorial_auction"]


def combinatorial_auction(items: int = 100, bids: int = 500, seed: int = 0,
                          add_item_prob: float = 0.65, min_value: float = 1.0,
                          max_value: float = 100.0, value_deviation: float = 0.5,
                          additivity: float = 0.2) -> LinearProgram:
    """LP relaxation of a random combinatorial auction (simplified Leyton-Brown bids).

    Args:
        items: number of items (at most this many LP rows).
        bids: number of bids (LP columns).
        seed: random seed.
        add_item_prob: probability of adding another item to a bundle, in [0, 1).
        min_value, max_value: range of the items' common values, 0 < min_value <= max_value.
        value_deviation: relative spread of private values, in [0, 1).
        additivity: price exponent on the bundle size (0 additive, > 0 complementary).

    Returns:
        LinearProgram (maximize) ``auction_i{items}_b{bids}_s{seed}`` with rows ``item_i``
        (sold at most once) and columns ``bid_b`` in [0, 1].
    """
    items, bids, seed = int(items), int(bids), int(seed)
    if items < 1 or bids < 1:
        raise ValueError(f"combinatorial_auction: items and bids must be >= 1, got items={items}, "
                         f"bids={bids}")
    if not 0.0 <= add_item_prob < 1.0:
        raise ValueError(f"combinatorial_auction: add_item_prob must lie in [0, 1), got "
                         f"{add_item_prob}")
    if not 0.0 < min_value <= max_value:
        raise ValueError(f"combinatorial_auction: need 0 < min_value <= max_value, got "
                         f"{min_value}, {max_value}")
    if not 0.0 <= value_deviation < 1.0:
        raise ValueError(f"combinatorial_auction: value_deviation must lie in [0, 1), got "
                         f"{value_deviation}")
    rng = np.random.default_rng(seed)
    value = rng.uniform(min_value, max_value, items)
    compat = rng.random((items, items))
    compat = np.triu(compat, 1)
    compat = compat + compat.T

    bundle_rows: list[np.ndarray] = []
    price = np.empty(bids)
    for b in range(bids):
        bundle = [int(rng.integers(items))]
        weight = compat[bundle[0]].copy()          # total compatibility with the bundle
        weight[bundle[0]] = 0.0
        while len(bundle) < items and rng.random() < add_item_prob:
            total = weight.sum()
            if total <= 0.0:                        # every item left has zero affinity
                break
            item = int(rng.choice(items, p=weight / total))
            bundle.append(item)
            weight += compat[item]
            weight[bundle] = 0.0
        S = np.asarray(bundle)
        private = 1.0 + value_deviation * rng.uniform(-1.0, 1.0, S.size)
        price[b] = (value[S] * private).sum() * S.size ** additivity
        bundle_rows.append(S)

    sizes = np.fromiter((S.size for S in bundle_rows), dtype=np.int64, count=bids)
    item_of = np.concatenate(bundle_rows)
    bid_of = np.repeat(np.arange(bids), sizes)
    used = np.unique(item_of)                       # items in at least one bundle get a row
    row_of = np.searchsorted(used, item_of)
    A = sp.csr_matrix((np.ones(item_of.size), (row_of, bid_of)), shape=(used.size, bids))

    lp = LinearProgram.create(
        price, A, np.full(used.size, -np.inf), np.ones(used.size), np.zeros(bids), np.ones(bids),
        sense=MAXIMIZE, row_names=[f"item_{i}" for i in used],
        col_names=[f"bid_{b}" for b in range(bids)], name=f"auction_i{items}_b{bids}_s{seed}")
    lp.metadata.update(family="auction", options=dict(
        items=items, bids=bids, seed=seed, add_item_prob=add_item_prob, min_value=min_value,
        max_value=max_value, value_deviation=value_deviation, additivity=additivity))
    return lp
