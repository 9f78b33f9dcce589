"""The training loss of PDHG-Net: per-instance relative squared errors of x and y.

For a batch of B instances with predictions (x^_b, y^_b) and labels (x*_b, y*_b):

    L_b = ||x^_b - x*_b||^2 / (||x*_b||^2 + eps)  +  w_dual ||y^_b - y*_b||^2 / (||y*_b||^2 + eps)
    loss = (1 / B) sum_b L_b

Normalizing per instance makes instances of different sizes and scales weigh the same (a large
LP does not dominate the batch because it has more nodes, an LP with large costs does not
dominate because its duals are large). ``eps`` keeps an all-zero label finite; for such a label
the term is the absolute error divided by eps, so keep eps well below the labels' squared norms.
Predictions and labels are in the graph's coordinates (for a preconditioned graph,
``lp_to_graph(scaling=True)``, the scaled LP's x~, y~: the labels of
:class:`~l2o.datasets.store.LPDataset` are scaled with it). Instances are told apart by the batch vectors ``graph["var"].batch`` / ``graph["con"].batch``
of a PyG batch (a single graph is one instance).
"""

from __future__ import annotations

import torch

__all__ = ["graph_index", "instance_losses", "node_labels"]


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


def instance_losses(x_pred: torch.Tensor, y_pred: torch.Tensor, graph, *, eps: float = 1e-6,
                    dual_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-instance losses of a (batched) graph (see the module docstring).

    Args:
        x_pred, y_pred: predictions, shapes (N,), (M,) (all variable / constraint nodes).
        graph: the (batched) graph with labels.
        eps: guard of the normalization.
        dual_weight: w_dual.

    Returns:
        (L, primal, dual), each of shape (B,): the total and the two relative squared errors.
    """
    from l2o.net.graph import CON, VAR

    x_star, y_star = node_labels(graph)
    graphs = int(getattr(graph, "num_graphs", 1))
    var_index = graph_index(graph[VAR], x_pred.shape[0], x_pred.device)
    con_index = graph_index(graph[CON], y_pred.shape[0], y_pred.device)
    primal = _relative_error(x_pred, x_star, var_index, graphs, eps)
    dual = _relative_error(y_pred, y_star, con_index, graphs, eps)
    return primal + dual_weight * dual, primal, dual
