"""LP instance generators: registry, determinism, PageRank exactness, feasibility with HiGHS."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from l2o.datasets import (
    FAMILIES,
    barabasi_albert_edges,
    family_option_help,
    family_options,
    generate,
    pagerank,
)
from l2o.lp.model import MAXIMIZE

SMALL = {
    "pagerank": dict(nodes=200),
    "setcover": dict(rows=60, cols=120, density=0.08),
    "auction": dict(items=30, bids=80),
    "facility": dict(customers=12, facilities=6),
}


def scipy_csr(lp) -> sp.csr_matrix:
    A = lp.A
    return sp.csr_matrix((A.values().numpy(), A.col_indices().numpy(), A.crow_indices().numpy()),
                         shape=tuple(A.shape))


def highs(lp):
    """Solve with scipy's HiGHS: row bounds split into A_ub / A_eq."""
    A = scipy_csr(lp)
    lo, up = lp.row_lower.numpy(), lp.row_upper.numpy()
    eq = lo == up
    has_lo, has_up = np.isfinite(lo) & ~eq, np.isfinite(up) & ~eq
    A_ub = sp.vstack([-A[has_lo], A[has_up]])
    b_ub = np.concatenate([-lo[has_lo], up[has_up]])
    c = lp.c.numpy() * (-1.0 if lp.sense == MAXIMIZE else 1.0)
    bounds = np.column_stack([lp.col_lower.numpy(), lp.col_upper.numpy()])
    bounds = [(None if not np.isfinite(a) else a, None if not np.isfinite(b) else b)
              for a, b in bounds]
    return linprog(c, A_ub=A_ub if A_ub.shape[0] else None, b_ub=b_ub if b_ub.size else None,
                   A_eq=A[eq] if eq.any() else None, b_eq=lo[eq] if eq.any() else None,
                   bounds=bounds, method="highs")


def power_iteration_pagerank(lp, damping: float, tol: float = 1e-14) -> np.ndarray:
    """x = d P x + (1 - d)/n from the LP's own rows: (I - d P) = A[:n], so d P = I - A[:n]."""
    n = lp.num_cols
    dP = sp.identity(n, format="csr") - scipy_csr(lp)[:n]
    x = np.full(n, 1.0 / n)
    for _ in range(2000):
        x_new = dP @ x + (1.0 - damping) / n
        if np.abs(x_new - x).sum() < tol:
            break
        x = x_new
    return x_new / x_new.sum()


def test_every_option_has_help_and_every_family_a_summary():
    for family, generator in FAMILIES.items():
        assert generator.__doc__.strip().splitlines()[0].endswith(".")
        helps = family_option_help(family)
        assert list(helps) == list(family_options(family))
        assert all(len(text) > 5 for text in helps.values()), (family, helps)
    assert family_option_help("pagerank")["damping"] == "damping factor d in (0, 1)."
    assert "min_value <= max_value" in family_option_help("auction")["max_value"]


def test_registry_and_errors():
    assert set(FAMILIES) == {"pagerank", "setcover", "auction", "facility"}
    assert family_options("pagerank") == dict(nodes=1000, seed=0, degree=3, damping=0.85,
                                              method="auto")
    with pytest.raises(ValueError, match="valid families: auction, facility, pagerank, setcover"):
        generate("knapsack")
    with pytest.raises(ValueError, match="unknown option.*size.*valid options: nodes, seed"):
        generate("pagerank", size=10)
    with pytest.raises(ValueError, match="damping"):
        generate("pagerank", nodes=10, damping=1.5)
    with pytest.raises(ValueError, match="degree"):
        generate("pagerank", nodes=3, degree=3)
    with pytest.raises(ValueError, match="density"):
        generate("setcover", rows=10, cols=100, density=0.01)
    with pytest.raises(ValueError, match="ratio"):
        generate("facility", ratio=0.5)
    with pytest.raises(ValueError, match="method"):
        barabasi_albert_edges(10, 2, 0, method="magic")


@pytest.mark.parametrize("family", sorted(SMALL))
def test_deterministic_named_and_seeded(family):
    a = generate(family, seed=3, **SMALL[family])
    b = generate(family, seed=3, **SMALL[family])
    c = generate(family, seed=4, **SMALL[family])
    assert a.name and a.name == b.name and a.name != c.name
    assert a.metadata["family"] == family and a.metadata["options"]["seed"] == 3
    assert len(a.row_names) == a.num_rows and len(a.col_names) == a.num_cols
    assert len(set(a.row_names)) == a.num_rows and len(set(a.col_names)) == a.num_cols
    for field in ("c", "row_lower", "row_upper", "col_lower", "col_upper"):
        assert np.array_equal(getattr(a, field).numpy(), getattr(b, field).numpy())
    assert (scipy_csr(a) != scipy_csr(b)).nnz == 0
    differs = (a.A.shape != c.A.shape or (scipy_csr(a) != scipy_csr(c)).nnz > 0
               or not np.array_equal(a.c.numpy(), c.c.numpy()))
    assert differs


@pytest.mark.parametrize("family", sorted(SMALL))
def test_feasible_and_bounded_with_highs(family):
    lp = generate(family, seed=1, **SMALL[family])
    res = highs(lp)
    assert res.status == 0, res.message
    x = res.x
    Ax = scipy_csr(lp) @ x
    assert np.all(Ax >= lp.row_lower.numpy() - 1e-7) and np.all(Ax <= lp.row_upper.numpy() + 1e-7)
    assert np.all(x >= lp.col_lower.numpy() - 1e-9) and np.all(x <= lp.col_upper.numpy() + 1e-9)


@pytest.mark.parametrize("method", ["networkx", "vectorized"])
def test_pagerank_lp_feasible_set_is_the_pagerank_vector(method):
    d = 0.85
    lp = pagerank(nodes=300, seed=7, degree=3, damping=d, method=method)
    n = lp.num_cols
    assert lp.num_rows == n + 1 and lp.row_names[-1] == "normalize"
    assert float(lp.c.abs().sum()) == 0.0
    A = scipy_csr(lp)
    # P is column-stochastic: the columns of I - A[:n] (= d P) sum to d.
    np.testing.assert_allclose(np.asarray((sp.identity(n) - A[:n]).sum(axis=0)).ravel(),
                               d, rtol=1e-12)
    x_pr = power_iteration_pagerank(lp, d)
    Ax = A @ x_pr
    assert np.all(Ax >= lp.row_lower.numpy() - 1e-12)    # all rank_i rows hold (tightly)
    np.testing.assert_allclose(Ax[:n], (1 - d) / n, atol=1e-12)
    assert abs(Ax[n] - 1.0) < 1e-12 and np.all(x_pr >= 0)
    res = highs(lp)
    assert res.status == 0, res.message
    np.testing.assert_allclose(res.x, x_pr, atol=1e-9)


def test_pagerank_matches_networkx_pagerank():
    """The networkx path builds exactly networkx's BA graph, so nx.pagerank is the LP solution."""
    lp = pagerank(nodes=500, seed=11, degree=2, damping=0.85, method="networkx")
    graph = nx.barabasi_albert_graph(500, 2, seed=11)
    ref = nx.pagerank(graph, alpha=0.85, tol=1e-14, max_iter=1000)
    ref = np.array([ref[i] for i in range(500)])
    np.testing.assert_allclose(power_iteration_pagerank(lp, 0.85), ref, atol=1e-10)


@pytest.mark.parametrize("degree", [1, 3, 5])
def test_vectorized_barabasi_albert_is_a_simple_ba_graph(degree):
    n = 3000
    u, v = barabasi_albert_edges(n, degree, seed=5, method="vectorized")
    assert u.size == degree * (n - degree)
    assert np.all(u > v) and v.min() >= 0 and u.max() == n - 1
    assert len(set(zip(u.tolist(), v.tolist()))) == u.size          # no multi-edges
    # Star on nodes 0..degree, then every later node attaches to `degree` earlier nodes.
    assert np.array_equal(np.bincount(u, minlength=n)[degree + 1:], np.full(n - degree - 1, degree))
    deg = np.bincount(np.concatenate([u, v]), minlength=n)
    assert deg[degree + 1:].min() >= degree


def test_vectorized_degree_law_matches_networkx():
    """Same preferential-attachment law: share of minimum-degree nodes (BA theory 2/(m+2) = 0.4
    for m = 3) and hub sizes agree with networkx's sequential generator."""
    stats = {}
    for method in ("networkx", "vectorized"):
        share, hubs = [], []
        for seed in range(4):
            u, v = barabasi_albert_edges(8000, 3, seed, method)
            deg = np.bincount(np.concatenate([u, v]))
            share.append(np.mean(deg == 3))
            hubs.append(deg[:10].mean())
        stats[method] = np.mean(share), np.mean(hubs)
    assert abs(stats["networkx"][0] - stats["vectorized"][0]) < 0.015
    assert abs(stats["vectorized"][0] - 0.4) < 0.02
    assert 0.7 < stats["vectorized"][1] / stats["networkx"][1] < 1.3


def test_setcover_structure():
    lp = generate("setcover", rows=80, cols=200, density=0.05, seed=2)
    A = scipy_csr(lp)
    assert set(np.unique(A.data)) == {1.0}
    assert A.getnnz(axis=1).min() >= 1 and A.getnnz(axis=0).min() >= 2
    assert A.nnz == int(80 * 200 * 0.05)
    c = lp.c.numpy()
    assert c.min() >= 1 and c.max() <= 100 and np.all(c == np.round(c))


def test_facility_ratio_makes_all_open_feasible():
    lp = generate("facility", customers=7, facilities=4, ratio=1.0, seed=0)
    n_cust, n_fac = 7, 4
    s = -scipy_csr(lp)[n_cust:n_cust + n_fac, n_cust * n_fac:].diagonal()      # capacities
    x = np.concatenate([np.tile(s / s.sum(), n_cust), np.ones(n_fac)])  # x_ij = s_j / sum s, y = 1
    Ax = scipy_csr(lp) @ x
    assert np.all(Ax >= lp.row_lower.numpy() - 1e-9) and np.all(Ax <= lp.row_upper.numpy() + 1e-9)


def test_auction_is_maximization_with_positive_prices():
    lp = generate("auction", items=20, bids=50, seed=0)
    assert lp.sense == MAXIMIZE and lp.c.min() > 0
    assert np.all(lp.row_upper.numpy() == 1.0) and np.all(np.isinf(lp.row_lower.numpy()))
