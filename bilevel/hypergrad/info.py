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
        method: the engine: the linear solver's name ("cg", "minres", "neumann", ...) or
            "itd".
        v: the solution of H_yy v = grad_y f (y-shaped), to warm-start the next solve;
            None for "itd".
        solve: the linear solver's :class:`~bilevel.linalg.SolveInfo` (of the solve whose v
            was returned, i.e. MINRES's after a fallback), or None for "itd".
        residual: relative residual ||grad_y f - H v|| / ||grad_y f|| of v (None for "itd").
        iterations: solver iterations (all solves, fallback included) or unrolled steps.
        hvp_count: second-order products (Hessian-vector, mixed, and backward passes through
            unrolled steps), including the power iteration for unset step sizes.
        grad_count: first-order gradient evaluations of f or g.
        fallback: None, or what was done when the solver met non-positive curvature
            (damping with a ridge, or MINRES), and why.
        converged: False when the returned v did not meet the tolerance (or the solve broke
            down); the hypergradient is then approximate and the caller decides.
        outer_loss: f(x, y, batch) at the point where grad_x f was taken (0-dim tensor, on
            the device: reading it is the caller's host sync).
        step_size: the step used (Neumann alpha or ITD inner_lr), None when not applicable.
        cuda_graph: how a call that may use whole-call CUDA graphs
            (:mod:`bilevel.hypergrad.graph`) ran: "captured in ... s, replayed (...)",
            "replayed (...)" or "eager: <why>"; None where graphs were not considered
            (a CPU with the default ``cuda_graph="auto"``, or ``cuda_graph=False``).
        hessian: the matrix of the linear system: "exact" (H_yy) or "gauss-newton"
            (J^T H_l J); None for "itd".
        ridge: lam of the system (H + lam I) v = grad_y f that was solved last: the
            requested ridge, plus the automatic damping (0.0: undamped); None for "itd".
        damping_steps: solves with automatic damping after non-positive curvature
            (``fallback="ridge"``; each doubles lam).
        inner_grad_norm: ||grad_y g(x, y)|| at the y used (AID) or at the last unrolled
            iterate (ITD): how far y is from stationarity.
        inner_converged: AID: ||grad_y g|| <= 100 tol ||grad_y f|| (y near enough y*(x)
            for the implicit formula; otherwise an ``InnerNotConvergedWarning`` was
            issued).  ITD: the unrolled steps did not increase ||grad_y g||.
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
    hessian: str | None = None
    ridge: float | None = None
    damping_steps: int = 0
    inner_grad_norm: float | None = None
    inner_converged: bool = True
