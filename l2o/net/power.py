"""PageRank's power iteration unrolled with learned step sizes: a learned PageRank warm start.

The PageRank LP (:func:`l2o.datasets.pagerank`) has n columns and n + 1 rows: the rank rows
(I - d P) x >= (1 - d)/n, whose row j pairs with column j through the diagonal entry 1, and
the equality row sum x = 1.  Its only feasible point, hence its optimum, is the PageRank vector,
the fixed point of the power iteration x <- d P x + (1 - d)/n, i.e. in the LP's own rows

    x <- x + D^{-1} (l - A x)_rank,          D = diag(A_jj) (= I on the unscaled LP),

a Jacobi iteration on the rank rows.  ``PowerIterationNet`` unrolls K such steps from the
uniform vector x = 1/n with one learned step size alpha_k per step:

    x_{k+1} = x_k + alpha_k D^{-1} (l - A x_k)_rank,       k = 0, ..., K - 1,

so its error is p(D^{-1} A_rank) e_0 with the polynomial p(t) = prod_k (1 - alpha_k t): with all
alpha_k = 1 it is K power iterations (error factor d P per step), and the learned steps choose
the polynomial that damps the spectrum these graphs actually have (a learned Chebyshev
semi-iteration).  The steps start as the Chebyshev ones for the eigenvalues of D^{-1} A_rank
= I - d P lying in [1 - spread, 1 + spread] (their roots, 1 / alpha_k, spread over the
interval), which also makes them distinct: equal steps get equal gradients and stay equal.

The iteration is invariant under the solver's diagonal preconditioning (row factors cancel in
D^{-1} (l - A x), column factors and the bound rescaling scale x like the preconditioned
variables), so the model runs on the preconditioned graph (``lp_to_graph(scaling=True)``, the
prepared LP's A~ on the solver's device, nothing copied) with the same iterates as on the LP.

The dual prediction is y = 0: the PageRank LP has a zero objective, so y = 0 is an optimal dual
(zero dual residual and gap at any x).  The forward pass has the interface of
:class:`l2o.net.PDHGNet` (graph in, (x, y) out), so :func:`l2o.training.train`,
:func:`l2o.net.predict_warm_start`, :func:`l2o.net.solve_with_model`, :func:`l2o.net.save_model`
and :func:`l2o.net.load_model` take it as they take a PDHGNet.

Cost: K sparse products with A (one per step), against 2 per PDHG iteration; the prediction time
of a warm start includes them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch_geometric.data import HeteroData

from bilevel.linalg.operators import csr_row_indices

from .graph import CON, VAR, graph_operator

__all__ = ["NotAPageRankLPError", "PowerIterationNet", "chebyshev_steps"]


class NotAPageRankLPError(ValueError):
    """``PowerIterationNet`` got the graph of an LP that is not shaped like a PageRank LP."""


def chebyshev_steps(steps: int, spread: float) -> torch.Tensor:
    """The K Chebyshev step sizes alpha_k = 1 / t_k for a spectrum in [1 - spread, 1 + spread]:
    t_k = 1 + spread cos((2k + 1) pi / (2K)) the roots of the degree-K Chebyshev polynomial
    mapped onto the interval, so that prod_k (1 - alpha_k t) is the smallest polynomial there.

    Returned largest step first, then alternating ends (the order does not change the
    polynomial; alternating keeps the intermediate iterates' growth small). Shape (K,), float64.
    """
    if steps < 1 or not 0.0 < spread < 1.0:
        raise ValueError(f"chebyshev_steps: need steps >= 1 and 0 < spread < 1, got steps="
                         f"{steps}, spread={spread}")
    roots = sorted(1.0 + spread * math.cos((2 * k + 1) * math.pi / (2 * steps))
                   for k in range(steps))
    order = [roots[i // 2] if i % 2 == 0 else roots[-1 - i // 2] for i in range(steps)]
    return torch.tensor([1.0 / t for t in order], dtype=torch.float64)


class PowerIterationNet(nn.Module):
    """K power-iteration (Jacobi) steps on PageRank's rank rows with learned step sizes.

    Args:
        steps: K, the number of unrolled steps (sparse products with A).
        spread: the Chebyshev initialization's half-width of the spectrum of I - d P
            (module docstring): 0.6 is about the contraction the power iteration shows on the
            Barabasi-Albert graphs of :func:`l2o.datasets.pagerank` (its residual falls ~10x
            in 5 steps).
        scaling: whether the graphs are preconditioned (``lp_to_graph(scaling=True)``, the
            default: on a prepared LP the graph is the solver's operator, no copy) or not; the
            iterates are the same either way.

    Shapes:
        forward(graph) -> (x (N,), y (M,)) for a graph or PyG batch of PageRank LP graphs with
        N variable and M = N + B constraint nodes (B graphs); y = 0.
    """

    # forward never reads the graph's a_norm: its builders skip the power iteration for ||A||
    needs_operator_norm = False

    def __init__(self, steps: int = 12, spread: float = 0.6, scaling: bool = True) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"steps": int(steps), "spread": float(spread),
                                       "scaling": bool(scaling)}
        self.scaling = bool(scaling)
        self.step_sizes = nn.Parameter(chebyshev_steps(int(steps), float(spread)))

    def forward(self, graph: HeteroData) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of every variable and constraint node (see the class docstring).

        Raises:
            NotAPageRankLPError (a ValueError): a graph that is not a PageRank LP's (n + 1 rows
                for n columns, rank rows with a positive diagonal entry and a finite lower
                bound); ValueError: a graph of the other scaling kind.
        """
        scaled = getattr(graph, "scaled", None)
        if scaled is not None and bool((scaled != self.scaling).any()):
            raise ValueError(f"PowerIterationNet: the model works on "
                             f"{'scaled' if self.scaling else 'unscaled'} graphs, got one built "
                             f"with scaling={not self.scaling}")
        dtype = self.step_sizes.dtype
        var, con = graph[VAR], graph[CON]
        rank_row, columns_per_graph = _rank_rows(graph)
        A, _ = graph_operator(graph, dtype)
        diagonal = _paired_diagonal(A, rank_row)
        lower = con.lower.to(dtype)[rank_row]
        if not (bool((diagonal > 0).all()) and bool(torch.isfinite(lower).all())):
            raise NotAPageRankLPError("PowerIterationNet: not a PageRank LP graph: every column "
                                      "j needs rank row j with A_jj > 0 and a finite lower "
                                      "bound")
        # x = 1/n in the LP's variables, x~ = x / scale in the graph's
        x = 1.0 / (columns_per_graph.to(dtype) * var.scale.to(dtype))
        for alpha in self.step_sizes:
            x = x + alpha * (lower - (A @ x)[rank_row]) / diagonal
        return x, x.new_zeros(con.num_nodes)


def _rank_rows(graph: HeteroData) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank row of every column (N,), its graph's column count (N,)): in graph b, column j
    (local) pairs with row j (local); every graph has one row more than columns."""
    var, con = graph[VAR], graph[CON]
    N, M = var.num_nodes, con.num_nodes
    device = var.lower.device
    var_ptr = getattr(var, "ptr", None)
    if var_ptr is None:                      # one graph
        var_ptr = torch.tensor([0, N], device=device)
        con_ptr = torch.tensor([0, M], device=device)
    else:
        con_ptr = con.ptr
    columns, rows = var_ptr.diff(), con_ptr.diff()
    if not bool((rows == columns + 1).all()):
        raise NotAPageRankLPError("PowerIterationNet: not a PageRank LP graph: every graph needs "
                                  "one row more than columns (n rank rows and sum x = 1)")
    graph_of = torch.repeat_interleave(torch.arange(columns.numel(), device=device), columns)
    local = torch.arange(N, device=device) - var_ptr[graph_of]
    return local + con_ptr[graph_of], columns[graph_of]


def _paired_diagonal(A: torch.Tensor, rank_row: torch.Tensor) -> torch.Tensor:
    """A[rank_row[j], j] for every column j (0 where the entry is missing), A sparse CSR."""
    values = A.values()
    rows = csr_row_indices(A.crow_indices(), values.numel())
    cols = A.col_indices().long()
    on_diagonal = rows == rank_row[cols]
    return values.new_zeros(A.shape[1]).index_add_(0, cols[on_diagonal], values[on_diagonal])
