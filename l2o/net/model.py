"""PDHG-Net: PDHG unrolled into a graph neural network over the LP's bipartite graph.

    X^0 = embed_var(features_var),  Y^0 = embed_con(features_con)           (n x d, m x d)
    (X^{k+1}, Y^{k+1}) = PDHGLayer_k(X^k, Y^k)    k = 0, ..., K-1            (see layers.py)
    x = readout_x(X^K),  y = readout_y(Y^K)                                  (n,), (m,)

The prediction (x, y) approximates an optimal primal-dual pair of the LP (the minimization form;
y are row duals in the shared sign convention) and warm-starts PDLP. It runs on one graph or a
PyG batch of graphs of different sizes (the batch is one block-diagonal LP; A X and A^T Y are
sparse CSR products).

With ``normalize_steps=True`` layer k uses steps tau_k / ||A_g||_2 and sigma_k / ||A_g||_2 on
graph g (``a_norm`` of the graph), so tau_k sigma_k < 1 is PDHG's step condition on every
instance whatever its scale, and the same weights serve instances of different sizes.
``operator_norm`` says where ||A_g||_2 comes from: "estimate" (the default) reads the graph's
``a_norm``, a 100-step power iteration that the graph builders run; "bound" (only with
``scaling=True``) uses the bound ||A~_g||_2 <= 1 that the Pock-Chambolle step of the solver's
preconditioning guarantees on every preconditioned graph, i.e. steps tau_k and sigma_k as they
are: no power iteration is needed, and the graph builders skip it
(:attr:`PDHGNet.needs_operator_norm`). Since ||A~|| <= 1, tau_k sigma_k < 1 still implies
tau_k sigma_k ||A~||^2 < 1.

With ``messages="signed"`` every layer has separate channel maps for the positive and the
negative entries of A (``PDHGLayer(signed=True)``; A+ + A- = A, so with equal maps it is the
plain layer): a node can then tell, say, the positive diagonal entry of a PageRank row from its
negative neighbour entries. The sparse products read A's nonzeros once, as in the plain layer
(through [A+ | A-], :func:`l2o.net.graph.signed_operator`, built once per forward), on twice as
many dense rows.

With ``normalize=(r_c, r_b)`` the model works on graphs whose objective and bounds are rescaled
to these root mean squares per instance (:func:`l2o.net.graph.normalize_graph`): the solver's
own rescaling shrinks them like 1 / sqrt(size), which a model trained at one size does not
follow; the normalized inputs do not depend on the size. A model trained on graphs without it
can be given the root mean squares its training graphs had (measured on them), and then sees
the same inputs at the training size and inputs of the same magnitude at any other size.

References:
    B. Li et al., "PDHG-Unrolled Learning-to-Optimize Method for Large-Scale Linear
    Programming", ICML 2024 (channel expansion, eq. (5)-(6); embedding and readout MLPs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.data import HeteroData

from .graph import (
    CON,
    CON_FEATURES,
    VAR,
    VAR_FEATURES,
    graph_operator,
    lp_to_graph,
    signed_operator,
    unscale_solution,
)
from .layers import PDHGLayer

__all__ = ["PDHGNet"]


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class PDHGNet(nn.Module):
    """K unrolled, channel-expanded PDHG layers between an embedding and readout MLPs.

    Args:
        hidden: channels d per node.
        layers: number K of unrolled PDHG layers.
        leak: leak of the layers' projections (0 = exact projections; see layers.py).
        normalize_steps: scale each graph's steps by 1 / ||A||_2 (see the module docstring).
        tau, sigma: initial (normalized) step sizes of every layer.
        init_noise: perturbation of the identity initialization of the d x d maps.
        start: "learned" (embedding MLPs of the node features) or "zero" (X^0 = 0, Y^0 = 0).
        readout: "mlp" (d -> d -> 1 with ReLU) or "linear" (d -> 1).
        operator_norm: "estimate" (graph ``a_norm``, power iteration) or "bound" (the known
            ||A~||_2 <= 1 of preconditioned graphs; needs ``scaling=True``); see the module
            docstring. Checkpoints without the key load as "estimate".
        scaling: whether the model works on preconditioned graphs (``lp_to_graph(scaling=True)``)
            or on the LP as given (the default, like ``lp_to_graph``); :meth:`predict` builds
            its graph accordingly, and forward refuses a graph of the other kind.
        messages: "plain" (one map per direction, the paper's layer) or "signed" (one map per
            sign of A_ij, see the module docstring). Checkpoints without the key load as
            "plain".
        normalize: (r_c, r_b), the root mean squares of the objective and of the row bounds
            of its graphs (:func:`l2o.net.graph.normalize_graph`), or None (graphs as the solver
            scales them; checkpoints without the key load so).

    Shapes:
        forward(graph) -> (x (N,), y (M,)) for a graph (or batch) of N variable and M constraint
        nodes; ``x0`` (N,) / ``y0`` (M,) given to forward replace the start embeddings (tiled
        over the d channels).
    """

    def __init__(self, hidden: int = 64, layers: int = 4, *, leak: float = 0.0,
                 normalize_steps: bool = True, tau: float = 0.9, sigma: float = 0.9,
                 init_noise: float = 0.1, start: str = "learned", readout: str = "mlp",
                 scaling: bool = False, operator_norm: str = "estimate",
                 messages: str = "plain",
                 normalize: tuple[float, float] | list[float] | None = None) -> None:
        super().__init__()
        if hidden < 1 or layers < 0:
            raise ValueError(f"PDHGNet: need hidden >= 1 and layers >= 0, got hidden={hidden}, "
                             f"layers={layers}")
        if start not in ("learned", "zero"):
            raise ValueError(f"PDHGNet: start must be 'learned' or 'zero', got {start!r}")
        if readout not in ("mlp", "linear"):
            raise ValueError(f"PDHGNet: readout must be 'mlp' or 'linear', got {readout!r}")
        if operator_norm not in ("estimate", "bound"):
            raise ValueError(f"PDHGNet: operator_norm must be 'estimate' or 'bound', got "
                             f"{operator_norm!r}")
        if messages not in ("plain", "signed"):
            raise ValueError(f"PDHGNet: messages must be 'plain' or 'signed', got {messages!r}")
        if normalize is not None:
            normalize = [float(v) for v in normalize]
            if len(normalize) != 2 or not all(v > 0 for v in normalize):
                raise ValueError(f"PDHGNet: normalize must be two positive root mean squares "
                                 f"(objective, bounds) or None, got {normalize!r}")
        if operator_norm == "bound" and not scaling:
            # ||A|| <= 1 holds for the preconditioned A~ only; a raw A has any norm
            raise ValueError("PDHGNet: operator_norm='bound' needs scaling=True (the bound "
                             "||A~||_2 <= 1 holds on preconditioned graphs only)")
        # Everything needed to rebuild the module (checkpoints store it next to the weights).
        self.config: dict[str, Any] = dict(
            hidden=hidden, layers=layers, leak=leak, normalize_steps=normalize_steps, tau=tau,
            sigma=sigma, init_noise=init_noise, start=start, readout=readout, scaling=scaling,
            operator_norm=operator_norm, messages=messages, normalize=normalize)
        self.hidden, self.normalize_steps, self.start = hidden, normalize_steps, start
        self.scaling, self.operator_norm, self.messages = scaling, operator_norm, messages
        self.normalize = None if normalize is None else tuple(normalize)
        if start == "learned":
            self.var_embedding = nn.Sequential(nn.Linear(VAR_FEATURES, hidden), nn.ReLU())
            self.con_embedding = nn.Sequential(nn.Linear(CON_FEATURES, hidden), nn.ReLU())
        self.layers = nn.ModuleList(
            PDHGLayer(hidden, tau=tau, sigma=sigma, leak=leak, init_noise=init_noise,
                      signed=messages == "signed")
            for _ in range(layers))
        self.primal_readout = _mlp(hidden, hidden, 1) if readout == "mlp" else nn.Linear(hidden, 1)
        self.dual_readout = _mlp(hidden, hidden, 1) if readout == "mlp" else nn.Linear(hidden, 1)

    @property
    def needs_operator_norm(self) -> bool:
        """Whether forward reads the graph's ``a_norm`` (so its builder must estimate it)."""
        return self.normalize_steps and self.operator_norm == "estimate"

    @property
    def graph_options(self) -> dict[str, Any]:
        """The :func:`l2o.net.lp_to_graph` options of the graphs this model reads."""
        return {"scaling": self.scaling, "operator_norm": self.needs_operator_norm,
                "normalize": self.normalize}

    @classmethod
    def from_pdhg(cls, K: int, tau: float, sigma: float,
                  dtype: torch.dtype = torch.float64) -> PDHGNet:
        """The network that is exactly K plain PDHG steps with fixed steps tau, sigma.

        d = 1, identity channel maps, exact projections, no step normalization, zero start
        (or the ``x0, y0`` given to forward), identity readouts. In float64 its output equals K
        calls of :func:`l2o.pdhg.pdhg_step` up to rounding.

        Args:
            K: number of steps (layers).
            tau, sigma: the fixed primal and dual step sizes.
            dtype: parameter dtype (set before the steps are written, so that float64 holds
                log(tau) without a float32 rounding).
        """
        net = cls(hidden=1, layers=K, leak=0.0, normalize_steps=False, tau=tau, sigma=sigma,
                  init_noise=0.0, start="zero", readout="linear", scaling=False).to(dtype)
        with torch.no_grad():
            for layer in net.layers:
                layer.reset_parameters()
            for readout in (net.primal_readout, net.dual_readout):
                readout.weight.fill_(1.0)
                readout.bias.zero_()
        return net

    def forward(self, graph: HeteroData, x0: torch.Tensor | None = None,
                y0: torch.Tensor | None = None, *,
                return_hidden: bool = False):
        """Predict (x, y) for every variable and constraint node of ``graph``.

        Args:
            graph: from :func:`l2o.net.lp_to_graph`, or a PyG batch of them.
            x0, y0: optional start points (N,), (M,) replacing the start embedding.
            return_hidden: also return the final node states (X^K, Y^K).

        Returns:
            (x, y), shapes (N,), (M,) (and (X^K, Y^K), shapes (N, d), (M, d)).
        """
        scaled = getattr(graph, "scaled", None)
        if scaled is not None and bool((scaled != self.scaling).any()):
            kind = "scaled" if self.scaling else "unscaled"
            raise ValueError(f"PDHGNet: the model works on {kind} graphs, got a graph built with "
                             f"scaling={not self.scaling} (see lp_to_graph(scaling=...))")
        normalized = getattr(graph, "normalized", None)
        if (normalized is not None and bool(normalized.all())) != (self.normalize is not None):
            raise ValueError(f"PDHGNet: the model reads graphs built with normalize="
                             f"{self.normalize}, got one built "
                             f"{'with' if normalized is not None else 'without'} it (see "
                             f"lp_to_graph(normalize=...), model.graph_options)")
        dtype = self._dtype()
        var, con = graph[VAR], graph[CON]
        N, M = var.num_nodes, con.num_nodes
        c = var.c.to(dtype)
        x_lower, x_upper = var.lower.to(dtype), var.upper.to(dtype)
        y_lower, y_upper = con.lower.to(dtype), con.upper.to(dtype)
        A, AT = graph_operator(graph, dtype)
        if self.messages == "signed":
            A, AT = signed_operator(A), signed_operator(AT)

        X = self._start(x0, N, var, self.var_embedding if self.start == "learned" else None, c)
        Y = self._start(y0, M, con, self.con_embedding if self.start == "learned" else None, c)
        step_x: torch.Tensor | float = 1.0
        step_y: torch.Tensor | float = 1.0
        if self.needs_operator_norm:  # with "bound" the divisor is 1: steps as they are
            inv_norm = 1.0 / graph.a_norm.to(dtype).clamp_min(torch.finfo(dtype).tiny)
            step_x = inv_norm[_graph_index(var, N)].unsqueeze(1)
            step_y = inv_norm[_graph_index(con, M)].unsqueeze(1)
        for layer in self.layers:
            X, Y = layer(X, Y, A, AT, c, x_lower, x_upper, y_lower, y_upper, step_x, step_y)
        x = self.primal_readout(X).squeeze(1)
        y = self.dual_readout(Y).squeeze(1)
        return (x, y, X, Y) if return_hidden else (x, y)

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _start(self, given: torch.Tensor | None, count: int, store, embedding: nn.Module | None,
               like: torch.Tensor) -> torch.Tensor:
        if given is not None:
            given = given.to(like).reshape(-1)
            if given.numel() != count:
                raise ValueError(f"PDHGNet: start point has {given.numel()} entries, the graph "
                                 f"has {count} nodes of that type")
            return given.unsqueeze(1).expand(count, self.hidden).contiguous()
        if embedding is None:
            return like.new_zeros(count, self.hidden)
        return embedding(store.x.to(like.dtype))

    @torch.no_grad()
    def predict(self, lp, device: torch.device | str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) for one :class:`l2o.LinearProgram`, ready to warm-start ``l2o.solve_lp``.

        Builds the graph (preconditioned if the model was made with ``scaling=True``), runs the
        network, maps the prediction back to the LP's own variables and projects x onto the
        column bounds.

        Returns:
            float64 CPU tensors x (n,), y (m,) (row duals of the minimization form).
        """
        device = device if device is not None else next(self.parameters()).device
        graph = lp_to_graph(lp, dtype=self._dtype(), reverse=False,
                            **self.graph_options).to(device)
        x, y = unscale_solution(graph, *self(graph))
        x = torch.clamp(x.double().cpu(), lp.col_lower, lp.col_upper)
        return x, y.double().cpu()


def _graph_index(store, count: int) -> torch.Tensor:
    """Graph of every node: ``store.batch`` in a PyG batch, zeros for a single graph."""
    batch = getattr(store, "batch", None)
    if batch is None:
        return torch.zeros(count, dtype=torch.int64, device=store.c.device
                           if hasattr(store, "c") else store.lower.device)
    return batch
