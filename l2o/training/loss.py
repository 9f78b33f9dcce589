"""The training loss of PDHG-Net: per-instance relative squared errors of x and y, and
optionally the prediction's own KKT error.

For a batch of B instances with predictions (x^_b, y^_b) and labels (x*_b, y*_b):

    L_b = ||x^_b - x*_b||^2 / (||x*_b||^2 + eps)  +  w_dual ||y^_b - y*_b||^2 / (||y*_b||^2 + eps)
          + w_kkt K_b
    loss = (1 / B) sum_b L_b

K_b (:func:`kkt_losses`, only computed when w_kkt > 0) is the squared relative KKT error of the
start the solver would get from the prediction: x projected onto the column bounds, y onto the
dual signs its rows allow, then the solver's three criteria (those of
:func:`l2o.net.kkt_error`) on the original LP, also for a preconditioned graph (its residuals
and objectives mapped back with the graph's factors, see :mod:`l2o.net.graph`: the solver stops
on the unscaled criteria, and the scaled ones do not track them; on PageRank a model with a 3x
smaller scaled residual had a 3-7x larger unscaled one):

    r_p = ||A x - proj_[l_r, u_r](A x)|| / (1 + ||b||),    r_d = ||g - proj_K(g)|| / (1 + ||c||),
    gap = |c^T x - d(y)| / (1 + |c^T x| + |d(y)|),          K_b = r_p^2 + r_d^2 + gap^2,

with g = c - A^T y, proj_K the reduced-cost signs the column bounds allow and d(y) = sum(l_r
y^+ - u_r y^-) + sum(l_c r^+ - u_c r^-), r = proj_K(g) (both objectives without the constant
c0, which :func:`l2o.net.kkt_error` adds to each: the gap's numerator is the same, its
denominator differs when c0 != 0). Why: the distance to one optimal pair is not what a warm
start is judged by; the solver stops on these criteria, and on LPs with many optimal solutions
(the LP relaxations) or a sum-to-one row (PageRank) a small label error can still leave a large
residual or gap.

Normalizing per instance makes instances of different sizes and scales weigh the same (a large
LP does not dominate the batch because it has more nodes, an LP with large costs does not
dominate because its duals are large). ``eps`` keeps an all-zero label finite; for such a label
the term is the absolute error divided by eps, so keep eps well below the labels' squared norms.
Predictions and labels are in the graph's coordinates (for a preconditioned graph,
``lp_to_graph(scaling=True)``, the scaled LP's x~, y~: the labels of
:class:`~l2o.datasets.store.LPDataset` are scaled with it). Instances are told apart by the
batch vectors ``graph["var"].batch`` / ``graph["con"].batch`` of a PyG batch (a single graph is
one instance).
"""

from __future__ import annotations

import torch

__all__ = ["graph_index", "instance_losses", "kkt_losses", "node_labels"]


def node_labels(graph) -> tuple[torch.Tensor, torch.Tensor]:
    """(x*, y*) of a (batched) graph: ``x_star`` / ``y_star`` as :class:`~l2o.datasets.store.
    LPDataset` attaches them, or ``solution`` on each node type (:func:`l2o.net.lp_to_graph`)."""
    from l2o.net.graph import CON, VAR

    found = []
    for store, key in ((graph[VAR], "x_star"), (graph[CON], "y_star")):
        value = getattr(store, key, None)
        if value is None:
            value = getattr(store, "solution", None)
        if value is None:
            raise ValueError(f"training graph has no labels: graph[{store._key!r}] lacks "
                             f"{key!r} (and 'solution'); build the data with "
                             f"`l2o dataset build`")
        found.append(value)
    return found[0], found[1]


def graph_index(store, count: int, device: torch.device) -> torch.Tensor:
    """Instance of every node: the store's ``batch`` vector, or zeros for one graph."""
    batch = getattr(store, "batch", None)
    return batch if batch is not None else torch.zeros(count, dtype=torch.int64, device=device)


def _relative_error(pred: torch.Tensor, label: torch.Tensor, index: torch.Tensor,
                    graphs: int, eps: float) -> torch.Tensor:
    if pred.shape != label.shape:
        raise ValueError(f"prediction has shape {tuple(pred.shape)}, labels {tuple(label.shape)}: "
                         f"the model must return one value per node")
    label = label.to(pred.dtype)
    error = pred.new_zeros(graphs).index_add_(0, index, (pred - label).square())
    norm = pred.new_zeros(graphs).index_add_(0, index, label.square())
    return error / (norm + eps)


def _per_instance(values: torch.Tensor, index: torch.Tensor, graphs: int) -> torch.Tensor:
    return values.new_zeros(graphs).index_add_(0, index, values)


def kkt_losses(x_pred: torch.Tensor, y_pred: torch.Tensor, graph) -> torch.Tensor:
    """K_b of every instance of a (batched) graph (see the module docstring), differentiable.

    Args:
        x_pred, y_pred: predictions (N,), (M,) in the graph's coordinates.
        graph: a graph of :func:`l2o.net.lp_to_graph` or a PyG batch of them (its LP: the
            ``var`` / ``con`` node attributes c, lower, upper and the edges' A_ij).

    Returns:
        (B,) tensor: r_p^2 + r_d^2 + gap^2 per instance.
    """
    from l2o.lp.kkt import bound_products, finite_or_zero, sign_bounds
    from l2o.net.graph import CON, VAR, graph_operator

    var, con = graph[VAR], graph[CON]
    dtype = x_pred.dtype
    graphs = int(getattr(graph, "num_graphs", 1))
    vi = graph_index(var, x_pred.shape[0], x_pred.device)
    ci = graph_index(con, y_pred.shape[0], y_pred.device)
    c = var.c.to(dtype)
    col_lower, col_upper = var.lower.to(dtype), var.upper.to(dtype)
    row_lower, row_upper = con.lower.to(dtype), con.upper.to(dtype)
    A, AT = graph_operator(graph, dtype)
    # the start the solver gets: x in its bounds, y with the signs its rows allow
    x = torch.clamp(x_pred, col_lower, col_upper)
    y = torch.clamp(y_pred, *sign_bounds(row_lower, row_upper))
    ax = (A @ x.unsqueeze(1)).squeeze(1)
    g = c - (AT @ y.unsqueeze(1)).squeeze(1)
    r = torch.clamp(g, *sign_bounds(col_lower, col_upper))

    # back to the original LP (module docstring of l2o.net.graph): per-row and per-column
    # positive factors, which commute with the clamps above
    omega = _objective_unscale(graph, graphs, dtype, x_pred.device)
    row_factor = omega[ci] / con.scale.to(dtype)
    col_factor = omega[vi] / var.scale.to(dtype)
    primal_sq = _per_instance((row_factor * (ax - torch.clamp(ax, row_lower, row_upper)))
                              .square(), ci, graphs)
    dual_sq = _per_instance((col_factor * (g - r)).square(), vi, graphs)
    # infinite bounds contribute nothing to ||b|| or to the dual objective
    lr0, ur0 = finite_or_zero(row_lower), finite_or_zero(row_upper)
    # ||b||: the finite row bounds, an equality row counted once (the solver's definition)
    b_sq = (row_factor * lr0).square() + torch.where(row_upper != row_lower, row_factor * ur0,
                                                     0.0).square()
    b_norm = _per_instance(b_sq, ci, graphs).sqrt()
    c_norm = _per_instance((col_factor * c).square(), vi, graphs).sqrt()
    pobj = omega * _per_instance(c * x, vi, graphs)
    dobj = omega * (_per_instance(bound_products(y, row_lower, row_upper), ci, graphs)
                    + _per_instance(bound_products(r, col_lower, col_upper), vi, graphs))
    gap = (pobj - dobj).abs() / (1 + pobj.abs() + dobj.abs())
    # r_p^2 from the squared norm directly: sqrt has no gradient at 0 (a feasible prediction)
    return primal_sq / (1 + b_norm).square() + dual_sq / (1 + c_norm).square() + gap.square()


def _objective_unscale(graph, graphs: int, dtype: torch.dtype, device) -> torch.Tensor:
    """omega = 1 / (theta_b theta_c) per instance (ones for graphs built without scaling)."""
    omega = getattr(graph, "objective_unscale", None)
    if omega is not None:
        return omega.to(device, dtype).reshape(graphs)
    scaled = getattr(graph, "scaled", None)
    if scaled is not None and bool(scaled.any()):
        raise ValueError("kkt_losses: a preconditioned graph without objective_unscale (built "
                         "by an older lp_to_graph): rebuild it")
    return torch.ones(graphs, dtype=dtype, device=device)


def instance_losses(x_pred: torch.Tensor, y_pred: torch.Tensor, graph, *, eps: float = 1e-6,
                    dual_weight: float = 1.0, kkt_weight: float = 0.0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-instance losses of a (batched) graph (see the module docstring).

    Args:
        x_pred, y_pred: predictions, shapes (N,), (M,) (all variable / constraint nodes).
        graph: the (batched) graph with labels.
        eps: guard of the normalization.
        dual_weight: w_dual.
        kkt_weight: w_kkt (0: K_b is not computed and reported as zeros).

    Returns:
        (L, primal, dual, kkt), each of shape (B,): the total, the two relative squared errors
        and K_b.
    """
    from l2o.net.graph import CON, VAR

    x_star, y_star = node_labels(graph)
    graphs = int(getattr(graph, "num_graphs", 1))
    var_index = graph_index(graph[VAR], x_pred.shape[0], x_pred.device)
    con_index = graph_index(graph[CON], y_pred.shape[0], y_pred.device)
    primal = _relative_error(x_pred, x_star, var_index, graphs, eps)
    dual = _relative_error(y_pred, y_star, con_index, graphs, eps)
    total = primal + dual_weight * dual
    if kkt_weight == 0.0:
        return total, primal, dual, torch.zeros_like(primal)
    kkt = kkt_losses(x_pred, y_pred, graph)
    return total + kkt_weight * kkt, primal, dual, kkt
