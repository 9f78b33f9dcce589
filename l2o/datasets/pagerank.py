"""PageRank as a linear program (Nesterov's formulation) on a Barabasi-Albert graph.

For a graph with column-stochastic transition matrix P (P_ij = 1/deg(j) for each edge j -> i of
the undirected graph) and damping d, the PageRank vector is the x with

    d (P x)_i + (1 - d)/n <= x_i   for all i,      sum_i x_i = 1,      x >= 0,

with a zero objective (a feasibility LP). Summing the n inequalities gives (1 - d) sum x >=
(1 - d), which holds with equality because sum x = 1, so every inequality is tight at any feasible
point: the feasible set is exactly {PageRank vector}. As rows of ``row_lower <= A x``:

    (I - d P) x >= (1 - d)/n     (rows ``rank_i``, one per node)
    1^T x = 1                    (row ``normalize``)

References:
    Y. Nesterov, "Subgradient methods for huge-scale optimization problems", Math. Prog. 2014.
    D. Applegate et al., "Practical large-scale linear programming using primal-dual hybrid
    gradient" (PDLP), NeurIPS 2021 (the PageRank instances).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

from l2o.lp.model import LinearProgram

__all__ = ["pagerank", "barabasi_albert_edges", "NETWORKX_MAX_NODES"]

# Up to this many nodes the graph comes from networkx (exactly its generator); above it from the
# vectorized preferential attachment below (networkx's pure-Python loop takes minutes at 1e6).
NETWORKX_MAX_NODES = 50_000
_MAX_RESAMPLE_ROUNDS = 200


def barabasi_albert_edges(nodes: int, degree: int, seed: int,
                          method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges (u, v) of a Barabasi-Albert preferential-attachment graph.

    Both methods start from the star graph on ``degree + 1`` nodes (centre 0) and attach every
    later node t to ``degree`` distinct existing nodes, each drawn with probability proportional
    to its current degree (networkx's model).

    ``method="networkx"`` calls ``networkx.barabasi_albert_graph`` (sequential, exact).
    ``method="vectorized"`` samples the same model in numpy (Batagelj & Brandes, "Efficient
    generation of large random networks", Phys. Rev. E 2005): the graph is the list of edge
    endpoints, so "a node with probability proportional to its degree" is "the node at a uniform
    random position of the endpoint list written so far". Each target of node t is a position
    drawn uniformly among the endpoints that exist before t; a position holding a target is
    resolved by following its own earlier draw (pointer chasing, O(log n) vectorized rounds).
    Nodes whose ``degree`` targets are not distinct redraw the repeated ones, and the whole list is
    resolved again, until every node has distinct targets (networkx's rejection of repeats). The
    result has the same degree-proportional attachment law and the same edge count; it is not
    the same graph as networkx's for the same seed, and because a redraw can change targets that
    later draws copied, its law may differ from the exact sequential process in rare corner cases.
    ``method="auto"`` uses networkx up to ``NETWORKX_MAX_NODES`` nodes.

    Returns:
        (u, v): int64 arrays of length ``degree * (nodes - degree)``, u > v (u the newer node).
    """
    if method == "auto":
        method = "networkx" if nodes <= NETWORKX_MAX_NODES else "vectorized"
    if method == "networkx":
        graph = nx.barabasi_albert_graph(nodes, degree, seed=seed)
        edges = np.asarray(graph.edges(), dtype=np.int64).reshape(-1, 2)
        u, v = edges.max(axis=1), edges.min(axis=1)
        return u, v
    if method != "vectorized":
        raise ValueError(f"unknown method {method!r}; valid: 'auto', 'networkx', 'vectorized'")
    return _vectorized_ba(nodes, degree, np.random.default_rng(seed))


def _vectorized_ba(n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Endpoint list: edge e occupies positions 2e (its source, the newer node) and 2e + 1 (its
    # target). Edges 0..m-1 are the star (0, k + 1); edges of new node t = m+1, ..., n-1 are
    # e = m + (t - m - 1) m + k, k < m.
    new = n - m - 1                                       # number of attached nodes
    num_edges = m + new * m
    source = np.empty(num_edges, dtype=np.int64)
    source[:m] = np.arange(1, m + 1)                      # star edges written as (k+1, 0)
    source[m:] = np.repeat(np.arange(m + 1, n, dtype=np.int64), m)
    star_target = np.zeros(m, dtype=np.int64)

    # Node t may pick any endpoint that exists before it: positions [0, 2 m (t - m)).
    limit = 2 * m * np.repeat(np.arange(1, new + 1, dtype=np.int64), m)
    draw = (rng.random(new * m) * limit).astype(np.int64)  # uniform position per new edge

    for _ in range(_MAX_RESAMPLE_ROUNDS):
        target = _resolve(draw, source, star_target, m)
        repeated = _repeated_entries(target.reshape(new, m))
        if not repeated.any():
            return source, np.concatenate([star_target, target])
        redo = np.flatnonzero(repeated.reshape(-1))
        draw[redo] = (rng.random(redo.size) * limit[redo]).astype(np.int64)
    raise RuntimeError(f"vectorized Barabasi-Albert: repeated targets remain after "
                       f"{_MAX_RESAMPLE_ROUNDS} redraw rounds (nodes={n}, degree={m})")


def _repeated_entries(rows: np.ndarray) -> np.ndarray:
    """Mask of entries equal to an earlier entry of the same row (first occurrences kept)."""
    m = rows.shape[1]
    repeated = np.zeros(rows.shape, dtype=bool)
    for k in range(1, m):            # m is the attachment degree: a handful of columns
        repeated[:, k] = (rows[:, :k] == rows[:, k:k + 1]).any(axis=1)
    return repeated


def _resolve(draw: np.ndarray, source: np.ndarray, star_target: np.ndarray,
             m: int) -> np.ndarray:
    """Node at each drawn position: even positions are sources, odd ones copy an earlier draw."""
    num_star_positions = 2 * m
    pos = draw.copy()
    # A target position 2e + 1 of a non-star edge holds whatever its own draw points to; each hop
    # goes strictly backwards, and about half the positions are sources, so chains are short
    # (O(log n) rounds); only the still-unresolved positions are touched each round.
    active = np.flatnonzero((pos % 2 == 1) & (pos >= num_star_positions))
    while active.size:
        hop = draw[(pos[active] - 1) // 2 - m]
        pos[active] = hop
        active = active[(hop % 2 == 1) & (hop >= num_star_positions)]
    edge = pos // 2
    is_source = pos % 2 == 0
    node = np.where(is_source, source[edge], 0)
    star_tgt = ~is_source                                  # odd positions left are star targets
    node[star_tgt] = star_target[edge[star_tgt]]
    return node


def pagerank(nodes: int = 1000, seed: int = 0, degree: int = 3, damping: float = 0.85,
             method: str = "auto") -> LinearProgram:
    """PageRank LP of a Barabasi-Albert graph (Nesterov's formulation, zero objective).

    See the module docstring for the formulation.

    Args:
        nodes: number of graph nodes n (= LP columns; the LP has n + 1 rows).
        seed: random seed (the same seed gives the same LP).
        degree: edges attached from each new node (Barabasi-Albert m), 1 <= degree < nodes.
        damping: damping factor d in (0, 1).
        method: graph construction: "networkx" (exact, sequential), "vectorized" (numpy, for
            large graphs) or "auto" (networkx up to 50,000 nodes; see barabasi_albert_edges).

    Returns:
        LinearProgram named ``pagerank_n{nodes}_m{degree}_d{damping}_s{seed}``: zero objective,
        columns ``x_i >= 0``, rows ``rank_i`` ((I - d P) x >= (1 - d)/n) and ``normalize``
        (sum x = 1). ``metadata`` holds ``family``, ``options`` and ``num_edges``.
    """
    nodes, degree, seed = int(nodes), int(degree), int(seed)
    if not 1 <= degree < nodes:
        raise ValueError(f"pagerank: need 1 <= degree < nodes, got degree={degree}, "
                         f"nodes={nodes}")
    if not 0.0 < damping < 1.0:
        raise ValueError(f"pagerank: damping must lie in (0, 1), got {damping}")
    u, v = barabasi_albert_edges(nodes, degree, seed, method)
    n = nodes
    deg = np.bincount(np.concatenate([u, v]), minlength=n).astype(np.float64)
    # Off-diagonal entries of I - d P: row i, column j, value -d / deg(j), for j -> i and i -> j.
    rows = np.concatenate([np.arange(n), u, v, np.full(n, n)])
    cols = np.concatenate([np.arange(n), v, u, np.arange(n)])
    vals = np.concatenate([np.ones(n), -damping / deg[v], -damping / deg[u], np.ones(n)])
    A = sp.csr_matrix((vals, (rows, cols)), shape=(n + 1, n))
    row_lower = np.full(n + 1, (1.0 - damping) / n)
    row_upper = np.full(n + 1, np.inf)
    row_lower[n] = row_upper[n] = 1.0
    name = f"pagerank_n{n}_m{degree}_d{damping:g}_s{seed}"
    lp = LinearProgram.create(
        np.zeros(n), A, row_lower, row_upper, np.zeros(n), np.full(n, np.inf),
        row_names=[f"rank_{i}" for i in range(n)] + ["normalize"],
        col_names=[f"x_{i}" for i in range(n)], name=name)
    lp.metadata.update(family="pagerank", num_edges=int(u.size),
                       options=dict(nodes=n, seed=seed, degree=degree, damping=damping))
    return lp
