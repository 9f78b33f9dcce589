"""``HypergradInfo``: what one hypergradient computation did and how well it went."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..linalg import SolveInfo
from ..linalg.tree import Tree

__all__ = ["HypergradInfo"]


@dataclass
class HypergradInfo:
    """Diagnostics of one hypergradient.

    Attributes:
        method: the engine ("cg", "minres", "neumann", "itd").
        v: the solution of H_yy v = grad_y f (y-shaped), to warm-start the next solve;
            None for "itd".
        solve: the linear solver's :class:`~bilevel.linalg.SolveInfo` (of the solve whose v
            was returned, i.e. MINRES's after a fallback), or None for "itd".
        residual: relative residual ||grad_y f - H v|| / ||grad_y f|| of v (None for "itd").
        iterations: solver iterations (all solves, fallback included) or unrolled steps.
        hvp_count: second-order products (Hessian-vector, mixed, and backward passes through
            unrolled steps), including the power iteration for unset step sizes.
        grad_count: first-order gradient evaluations of f or g.
        fallback: None, or why another solver was used (CG met non-positive curvature ->
            MINRES).
        converged: False when the returned v did not meet the tolerance (or the solve broke
            down); the hypergradient is then approximate and the caller decides.
        outer_loss: f(x, y, batch) at the point where grad_x f was taken (0-dim tensor, on
            the device: reading it is the caller's host sync).
        step_size: the step used (Neumann alpha or ITD inner_lr), None when not applicable.
        cuda_graph: with ``cuda_graph=True`` (:mod:`bilevel.hypergrad.graph`), how the call
            ran: "captured in ... s, replayed (...)", "replayed (...)" or "eager: <why>";
            None otherwise.
    """

    method: str
    v: Tree | None
    solve: SolveInfo | None
    residual: float | None
    iterations: int
    hvp_count: int
    grad_count: int
    fallback: str | None = None
    converged: bool = True
    outer_loss: torch.Tensor | None = None
    step_size: float | None = None
    cuda_graph: str | None = None
