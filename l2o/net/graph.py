"""The bipartite variable-constraint graph of an LP, as a PyG ``HeteroData``.

An LP  min c^T x  s.t.  l_r <= A x <= u_r,  l_c <= x <= u_c  (a maximization is negated first,
as in the shared PDHG convention) becomes a graph with

* ``graph["var"]`` (one node per column j):
    ``x``      (n, 5) features  [c_j, enc(l_c,j), enc(u_c,j), [l_c,j finite], [u_c,j finite]]
    ``c``      (n,)   objective of the minimization form
    ``lower``, ``upper``  (n,) column bounds, +-inf kept (the exact projection uses them)
* ``graph["con"]`` (one node per row i):
    ``x``      (m, 7) features  [enc(l_r,i), enc(u_r,i), equality, lower only (>=), upper only
               (<=), ranged, free]  (the row type one-hot)
    ``lower``, ``upper``  (m,) row bounds, +-inf kept
* ``graph["con", "coef", "var"]``: one edge i -> j per nonzero A_ij, ``edge_attr`` (nnz, 1) = A_ij
  (the raw value: the model applies A and A^T with it exactly);
  with ``reverse=True`` also ``graph["var", "coef_t", "con"]`` (the same edges, j -> i), so
  off-the-shelf PyG heterogeneous layers can pass messages both ways.
* graph level: ``c0`` (1,) objective constant of the minimization form, ``maximize`` (1,) bool,
  ``scaled`` (1,) bool, ``a_norm`` (1,) an estimate of ||A||_2 (power iteration; 1 for an empty
  A, and 1 without the estimate, ``operator_norm=False``: what models that normalize by the
  preconditioned bound ||A~||_2 <= 1 ask for, ``PDHGNet(operator_norm="bound")``),
  ``objective_unscale`` (1,) = 1 / (theta_b theta_c) (1 without scaling), ``name``.

With ``scaling=True`` the graph holds the diagonally preconditioned LP of the PDHG solver
(:func:`l2o.pdhg.scaling.scale_lp`: Ruiz, Pock-Chambolle, bound/objective rescaling) instead of
the LP as given: A~ = D1 A D2 and the matching c~, bounds; its solutions map back by
x = s_var * x~, y = s_con * y~ with the per-node factors ``graph["var"].scale`` = D2 / theta_b and
``graph["con"].scale`` = D1 / theta_c (all ones without scaling): :func:`unscale_solution`.
The original LP's objectives are ``objective_unscale`` = 1 / (theta_b theta_c) times the scaled
ones, its row activities A x (and row bounds) are omega / s_con times A~ x~ (and the scaled
bounds), its reduced costs c - A^T y are omega / s_var times c~ - A~^T y~, with omega =
``objective_unscale``: enough to evaluate the solver's (unscaled) criteria on the graph
(:func:`l2o.training.loss.kkt_losses`).
Preconditioning gives every instance ||A~||_2 <= 1 and comparable magnitudes, so the same
learned steps fit instances of different sizes (on a PageRank LP the row sum x = 1 alone has
norm sqrt(n)).

With ``normalize=(r_c, r_b)`` (:func:`normalize_graph`) the objective and all bounds are rescaled
once more, by two scalars per instance, so that the root mean square of c over the columns is
r_c and that of the finite row bounds over the rows is r_b (``graph.normalized`` says so). Why:
the solver's bound/objective rescaling theta_b = 1 / (1 + ||b~||), theta_c = 1 / (1 + ||c~||)
shrinks like 1 / sqrt(size), so at 4x the training size every c~ and bound (and the solution)
is about half as large, and a model trained at one size, which is not homogeneous in these
inputs (biases, ReLUs, the bound indicators), predicted set cover starts 74% off in x at 4x
against 30% at the training size (its own inputs rescaled by 2: 33%). Root mean squares do not
grow with the size of instances of one family, so normalized graphs of every size look alike.

enc(v) is v where v is finite and 0 where it is infinite; the indicator features say which.
Optional labels: ``graph["var"].solution`` = x*, ``graph["con"].solution`` = y* (row duals in the
shared sign convention).

Batching: PyG's ``Batch.from_data_list`` / ``DataLoader`` concatenate each node type separately
and shift the edge indices of each edge type by the node counts of its own source and target
types, so a batch is one block-diagonal LP (constraint and variable indices shift separately).
"""

from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from bilevel.linalg import LinearOperator, power_iteration
from bilevel.linalg.operators import csr_row_indices, csr_tensor

__all__ = ["lp_to_graph", "normalize_graph", "graph_operator", "signed_operator",
           "unscale_solution", "VAR", "CON", "EDGE", "REVERSE_EDGE", "VAR_FEATURES", "CON_FEATURES"]

VAR, CON = "var", "con"
EDGE = (CON, "coef", VAR)
REVERSE_EDGE = (VAR, "coef_t", CON)
VAR_FEATURES = 5
CON_FEATURES = 7


def _encode(bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    finite = torch.isfinite(bound)
    return torch.where(finite, bound, torch.zeros_like(bound)), finite.to(bound.dtype)


def variable_features(c: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """(n, 5) features [c, enc(l), enc(u), [l finite], [u finite]]."""
    lo, has_lo = _encode(lower)
    up, has_up = _encode(upper)
    return torch.stack([c, lo, up, has_lo, has_up], dim=1)


def constraint_features(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """(m, 7) features [enc(l), enc(u), equality, >= only, <= only, ranged, free]."""
    lo, has_lo = _encode(lower)
    up, has_up = _encode(upper)
    has_lo, has_up = has_lo.bool(), has_up.bool()
    equality = has_lo & has_up & (lower == upper)
    row_type = [equality, has_lo & ~has_up, ~has_lo & has_up, has_lo & has_up & ~equality,
                ~has_lo & ~has_up]
    return torch.stack([lo, up, *[t.to(lower.dtype) for t in row_type]], dim=1)


def lp_to_graph(lp, x_star: torch.Tensor | None = None, y_star: torch.Tensor | None = None, *,
                dtype: torch.dtype = torch.float64, reverse: bool = True, scaling: bool = False,
                operator_norm: bool = True, device: torch.device | str = "cpu",
                normalize: tuple[float, float] | None = None) -> HeteroData:
    """The bipartite graph of ``lp`` (see the module docstring for every field).

    Args:
        lp: an :class:`l2o.LinearProgram` (any sense; the graph holds the minimization form),
            or an :class:`l2o.pdhg.PreparedLP`: then the graph lies on the prepared LP's device
            (``device`` is ignored) and, with ``scaling``, is built from its scaled LP as it is,
            nothing preconditioned again; the prepared A~ and A~^T ride along as
            ``graph.operator_csr`` (see :func:`graph_operator`).
        x_star, y_star: optional labels (of ``lp``, unscaled), shapes (n,), (m,), stored as
            ``solution`` (scaled along with the LP when ``scaling``).
        dtype: floating dtype of features, raw vectors and edge values (float64 keeps the LP
            exact; float32 halves memory for training).
        reverse: also store the reversed edge type ``("var", "coef_t", "con")``.
        scaling: hold the solver's preconditioned LP (see the module docstring).
        operator_norm: estimate ||A||_2 by power iteration (``a_norm``); if False ``a_norm`` = 1.
        device: where the preconditioning, the power iteration and the graph live (a GPU
            spares a million-node LP seconds of CPU work; the graph is the same).
        normalize: (r_c, r_b) to rescale objective and bounds to these root mean squares
            (:func:`normalize_graph`), or None (the graph as the solver scales it).

    Returns:
        HeteroData with node types "var", "con" and edge type ("con", "coef", "var").
    """
    from l2o.pdhg.prepare import PreparedLP
    from l2o.pdhg.scaling import scale_lp  # the solver's preconditioner, not a copy of it

    prepared = lp if isinstance(lp, PreparedLP) else None
    if prepared is not None:
        lp, device = prepared.lp, prepared.device
    device = torch.device(device)
    m, n = lp.num_rows, lp.num_cols
    c0 = lp.minimize_c[1]
    prepared_op = None
    if scaling:
        if prepared is not None:
            s = prepared.scaled
            prepared_op = s.op             # A~ with its transpose: no second transpose built
        else:
            s = scale_lp(lp, device=device, dtype=torch.float64)
        A, c = s.op.csr, s.c
        col_lower, col_upper, row_lower, row_upper = s.col_lower, s.col_upper, s.row_lower, \
            s.row_upper
        var_scale, con_scale = s.col_scale / s.bound_scale, s.row_scale / s.objective_scale
        objective_unscale = 1.0 / (s.bound_scale * s.objective_scale)
    else:
        A = lp.A.to_sparse_csr().to(device, torch.float64)
        c, col_lower, col_upper, row_lower, row_upper = (
            v.to(device, torch.float64) for v in (lp.minimize_c[0], lp.col_lower, lp.col_upper,
                                                  lp.row_lower, lp.row_upper))
        var_scale = torch.ones(n, dtype=torch.float64, device=device)
        con_scale = torch.ones(m, dtype=torch.float64, device=device)
        objective_unscale = 1.0
    values = A.values()
    rows = csr_row_indices(A.crow_indices(), values.numel())
    cols = A.col_indices().to(torch.int64)

    graph = HeteroData()
    var, con = graph[VAR], graph[CON]
    var.c = c.to(dtype)
    var.lower, var.upper = col_lower.to(dtype), col_upper.to(dtype)
    var.x = variable_features(var.c, var.lower, var.upper)
    var.scale = var_scale.to(dtype)
    var.num_nodes = n
    con.lower, con.upper = row_lower.to(dtype), row_upper.to(dtype)
    con.x = constraint_features(con.lower, con.upper)
    con.scale = con_scale.to(dtype)
    con.num_nodes = m
    graph[EDGE].edge_index = torch.stack([rows, cols])
    graph[EDGE].edge_attr = values.to(dtype).unsqueeze(1)
    if reverse:
        graph[REVERSE_EDGE].edge_index = torch.stack([cols, rows])
        graph[REVERSE_EDGE].edge_attr = graph[EDGE].edge_attr
    if x_star is not None:
        var.solution = (_label(x_star, n, "x_star").to(device) / var_scale).to(dtype)
    if y_star is not None:
        con.solution = (_label(y_star, m, "y_star").to(device) / con_scale).to(dtype)
    if prepared_op is not None:
        # the prepared A~ and A~^T for the model's products (graph_operator would rebuild them
        # from the edges: an argsort of all nonzeros for A^T); int64 indices as it builds them
        graph.operator_csr = tuple(
            csr_tensor(a.crow_indices().long(), a.col_indices().long(), a.values().to(dtype),
                       tuple(a.shape)) for a in (prepared_op.csr, prepared_op.csr_t))

    a_norm = 1.0
    if operator_norm and values.numel() and bool((values != 0).any()):
        op = prepared_op if prepared_op is not None else LinearOperator.from_sparse(A)
        a_norm = power_iteration(op, mode="svd", iters=100, tol=1e-4)
    graph.a_norm = torch.tensor([a_norm], dtype=dtype, device=device)
    graph.c0 = torch.tensor([c0], dtype=dtype, device=device)
    graph.objective_unscale = torch.tensor([objective_unscale], dtype=dtype, device=device)
    graph.maximize = torch.tensor([lp.sense == "maximize"], device=device)
    graph.scaled = torch.tensor([bool(scaling)], device=device)
    graph.name = lp.name
    return graph if normalize is None else normalize_graph(graph, *normalize)


def normalize_graph(graph: HeteroData, objective_rms: float = 1.0, bound_rms: float = 1.0
                    ) -> HeteroData:
    """Rescale one graph's LP so that rms(c) = ``objective_rms`` and rms(b) = ``bound_rms``.

    With rms(c) = ||c|| / sqrt(n) and rms(b) = ||b|| / sqrt(m) (b: the finite row bounds, an
    equality row counted once, as the solver's ||b||), k_c = objective_rms / rms(c) and k_b =
    bound_rms / rms(b) (1 where the norm is 0), the LP  min c^T x, l_r <= A x <= u_r,
    l_c <= x <= u_c  becomes  min (k_c c)^T x', k_b l_r <= A x' <= k_b u_r, k_b l_c <= x' <=
    k_b u_c: the same A, solutions x' = k_b x, y' = k_c y. So the per-node unscaling factors
    ``scale`` are divided by k_b (variables) and k_c (constraints), ``objective_unscale`` by
    k_c k_b, the features recomputed and labels (``solution``, ``x_star``, ``y_star``) multiplied;
    :func:`unscale_solution` and :func:`l2o.training.loss.kkt_losses` then read the graph as
    before. ``graph.normalized`` = True. A single graph (not a batch); modified in place and
    returned, so it serves as a dataset transform.
    """
    from l2o.lp.kkt import finite_bound_norm

    if not (objective_rms > 0 and bound_rms > 0):
        raise ValueError(f"normalize_graph: the target root mean squares must be positive, got "
                         f"{objective_rms}, {bound_rms}")
    if getattr(graph, "num_graphs", 1) != 1 or bool(getattr(graph, "normalized", False)):
        raise ValueError("normalize_graph: expects one graph that is not normalized yet")
    var, con = graph[VAR], graph[CON]
    n, m = var.num_nodes, con.num_nodes
    rms_c = float(torch.linalg.vector_norm(var.c.double())) / max(n, 1) ** 0.5
    rms_b = float(finite_bound_norm(con.lower.double(), con.upper.double())) / max(m, 1) ** 0.5
    k_c = objective_rms / rms_c if rms_c > 0 else 1.0
    k_b = bound_rms / rms_b if rms_b > 0 else 1.0
    var.c = var.c * k_c
    var.lower, var.upper = var.lower * k_b, var.upper * k_b
    con.lower, con.upper = con.lower * k_b, con.upper * k_b
    var.x = variable_features(var.c, var.lower, var.upper)
    con.x = constraint_features(con.lower, con.upper)
    var.scale, con.scale = var.scale / k_b, con.scale / k_c
    graph.objective_unscale = graph.objective_unscale / (k_c * k_b)
    for store, key, k in ((var, "solution", k_b), (var, "x_star", k_b), (con, "solution", k_c),
                          (con, "y_star", k_c)):
        if getattr(store, key, None) is not None:
            store[key] = store[key] * k
    graph.normalized = torch.tensor([True], device=var.c.device)
    return graph


def unscale_solution(graph: HeteroData, x: torch.Tensor, y: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of the LP (minimization form) from (x~, y~) of the graph's (scaled) LP.

    x = graph["var"].scale * x~, y = graph["con"].scale * y~ (identity for unscaled graphs).
    Shapes: x (N,), y (M,) over all nodes of a graph or batch.
    """
    return x * graph[VAR].scale.to(x), y * graph[CON].scale.to(y)


def _label(value, size: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(value).detach().reshape(-1).to("cpu", torch.float64)
    if t.numel() != size:
        raise ValueError(f"lp_to_graph: {what} has {t.numel()} entries, expected {size}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"lp_to_graph: {what} has non-finite entries")
    return t


def graph_operator(graph: HeteroData, dtype: torch.dtype | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, A^T) of a (batched) graph as torch sparse CSR matrices, for ``A @ X``, ``A^T @ Y``.

    A batch is block diagonal: shape (sum m_b, sum n_b). Built with coalesce, so the edge order
    does not matter; duplicate edges are summed.

    A graph built from a solver's prepared LP (``l2o.net.warmstart.inference_graph``) carries
    the pair already, as ``graph.operator_csr`` (the prepared A~ and its transpose, the same
    matrices in the same entry order): it is returned when its dtype fits, nothing is sorted.

    Returns:
        (A, AT): CSR, shapes (M, N) and (N, M), on the graph's device, values in ``dtype``
        (default the edge values' dtype).
    """
    cached = getattr(graph, "operator_csr", None)
    if cached is not None and (dtype is None or cached[0].dtype == dtype):
        return cached
    store = graph[EDGE]
    index = store.edge_index
    values = store.edge_attr.reshape(-1)
    if dtype is not None:
        values = values.to(dtype)
    M, N = graph[CON].num_nodes, graph[VAR].num_nodes
    return _csr(index[0], index[1], values, (M, N)), _csr(index[1], index[0], values, (N, M))


def signed_operator(csr: torch.Tensor) -> torch.Tensor:
    """[A+ | A-] (M, 2N) of a sparse CSR matrix A (M, N): A+ holds its positive nonzeros, A- its
    negative ones (explicit zeros go to A+), so A+ + A- = A and

        A+ Z + A- Z' = [A+ | A-] [Z; Z']        (Z, Z' of shape (N, d))

    is one sparse product that reads A's nonzeros once (``PDHGLayer(signed=True)``). Same row
    pointer as A; a negative entry A_ij moves to column N + j. Within a row the positive entries
    come first (a stable sort keeps A's order among each sign), so column indices stay sorted.
    """
    crow, col, values = csr.crow_indices(), csr.col_indices(), csr.values()
    M, N = csr.shape
    negative = values < 0
    rows = csr_row_indices(crow, values.numel())
    order = torch.sort(2 * rows + negative, stable=True).indices
    col = (col.long() + N * negative)[order]
    return csr_tensor(crow.long(), col, values[order], (M, 2 * N))


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    # Sort by (row, col); PyG batches keep each graph's CSR order, but other builders may not.
    key = rows * shape[1] + cols
    if key.numel() > 1 and not bool((key[1:] >= key[:-1]).all()):
        order = torch.argsort(key)
        rows, cols, values = rows[order], cols[order], values[order]
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    return csr_tensor(crow, cols, values, shape)
