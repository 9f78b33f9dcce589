"""PDHG-Net: the LP's bipartite graph (PyG), unrolled channel-expanded PDHG layers, the model;
PowerIterationNet, the learned PageRank start (unrolled power iteration with learned steps)."""

from .graph import (
    CON,
    EDGE,
    REVERSE_EDGE,
    VAR,
    graph_operator,
    lp_to_graph,
    normalize_graph,
    signed_operator,
    unscale_solution,
)
from .layers import PDHGLayer, project_dual, project_primal
from .model import PDHGNet
from .power import PowerIterationNet
from .reduce import ReducedStart, reduced_start, reduced_warm_start, solve_with_reduced_start
from .warmstart import (
    ModelNotFoundError,
    NonFiniteWeightsError,
    WarmStart,
    bundled_models,
    kkt_error,
    load_model,
    predict_warm_start,
    project_dual_signs,
    save_model,
    solve_with_model,
)

__all__ = ["PDHGNet", "PowerIterationNet", "PDHGLayer", "lp_to_graph", "normalize_graph",
           "graph_operator", "signed_operator",
           "unscale_solution",
           "project_primal",
           "project_dual", "VAR", "CON", "EDGE", "REVERSE_EDGE",
           "load_model", "predict_warm_start", "WarmStart", "bundled_models", "kkt_error",
           "project_dual_signs", "ModelNotFoundError", "NonFiniteWeightsError", "save_model",
           "solve_with_model", "ReducedStart", "reduced_start", "reduced_warm_start",
           "solve_with_reduced_start"]
