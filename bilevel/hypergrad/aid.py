"""Approximate implicit differentiation (AID).

At an inner solution y = y*(x) the optimality condition grad_y g(x, y*(x)) = 0 gives, by
the implicit function theorem,

    grad h(x) = grad_x f(x, y) - (d^2 g / dx dy)^T v,    H_yy v = grad_y f(x, y),

with H_yy = d^2 g / dy^2 at (x, y).  The linear system is solved matrix-free with
CG (H_yy positive definite), MINRES (symmetric, possibly indefinite) or a truncated
Neumann series, on one linearization of grad_y g at (x, y) (every product is a backward
pass, see :meth:`LinearOperator.from_hvp`).  At a y that is not exactly y*(x) the same
formula is the usual AID approximation (Pedregosa 2016; Grazzi et al. 2020).

References:
    F. Pedregosa. Hyperparameter optimization with approximate gradient. ICML 2016.
    R. Grazzi, L. Franceschi, M. Pontil, S. Salzo. On the iteration complexity of
    hypergradient computation. ICML 2020.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import grad_and_value

from ..linalg import LinearOperator, SolveInfo, cg, minres, mixed_vjp, neumann
from ..linalg import tree as T
from ..linalg.tree import Tree
from .info import HypergradInfo
from .stepsize import lambda_max

__all__ = ["AID_SOLVERS", "aid_hypergrad"]

AID_SOLVERS = ("cg", "minres", "neumann")
_SOLVERS = {"cg": cg, "minres": minres, "neumann": neumann}


def aid_hypergrad(f: Callable[[Tree, Tree], torch.Tensor], g: Callable[[Tree, Tree], torch.Tensor],
                  x: Tree, y: Tree, *, solver: str = "cg", tol: float = 1e-6,
                  maxiter: int | None = None, v0: Tree | None = None,
                  alpha: float | None = None, check_every: int | None = None,
                  fallback: bool = True,
                  cuda_graph: bool | str = "auto") -> tuple[Tree, HypergradInfo]:
    """One AID hypergradient grad_x f - (d^2 g/dx dy)^T H_yy^{-1} grad_y f at (x, y).

    Args:
        f, g: the outer and inner objectives as functions of (x, y) (batch bound).
        x, y: the point (tensors or dicts); y should be (close to) argmin g(x, .).
        solver: "cg", "minres" or "neumann".
        tol: relative residual target of the linear solve.
        maxiter: iteration cap of the solve (default: the solver's own; Neumann: 100 terms).
        v0: warm start of the solve (e.g. the previous outer step's v).
        alpha: Neumann step; default 1 / lambda_max(H_yy) from power iteration.
        check_every: iterations between host-side convergence checks.
        fallback: when CG meets non-positive curvature, re-solve with MINRES.
        cuda_graph: passed to the solver (capture its iterations as a CUDA graph on GPUs).

    Returns:
        (grad_x, info).  grad_x has x's structure.  ``info.converged`` is False when the
        returned v misses the tolerance; the hypergradient is then approximate.

    Shapes:
        v, v0: like y.  grad_x: like x.
    """
    if solver not in _SOLVERS:
        raise ValueError(f"aid_hypergrad: solver must be one of {AID_SOLVERS}, got {solver!r}")
    x = T.tree_map(lambda t: t.detach(), x)
    y = T.tree_map(lambda t: t.detach(), y)
    (f_x, f_y), outer_loss = grad_and_value(f, argnums=(0, 1))(x, y)
    hessian = LinearOperator.from_hvp(lambda yy: g(x, yy), y)  # linearized once, reused below
    hvp_count = 0
    options: dict = {"tol": tol, "x0": v0, "check_every": check_every, "cuda_graph": cuda_graph}
    if maxiter is not None:
        options["maxiter"] = maxiter
    step = None
    if solver == "neumann":
        if alpha is None:
            lam, used = lambda_max(hessian)
            alpha, hvp_count = 1.0 / lam, hvp_count + used
        options["alpha"] = step = float(alpha)
    v, solve = _SOLVERS[solver](hessian, f_y, **options)
    hvp_count += _products(solve, v0)
    iterations = solve.iterations
    why_fallback = None
    if solver == "cg" and solve.reason.startswith("non-positive curvature") and fallback:
        # H_yy is not positive definite here (a non-convex inner problem, or y far from a
        # minimum): CG's answer is meaningless, MINRES only needs symmetry.
        why_fallback = f"cg: {solve.reason}; fell back to minres"
        minres_options = {k: val for k, val in options.items() if k != "alpha"}
        v, solve = minres(hessian, f_y, **minres_options)
        hvp_count += _products(solve, v0)
        iterations += solve.iterations
    g_x_v = mixed_vjp(g, x, y, v)
    grad_x = T.axpy(-1.0, g_x_v, f_x)
    info = HypergradInfo(method=solver, v=v, solve=solve, residual=solve.residual,
                         iterations=iterations, hvp_count=hvp_count + 1, grad_count=1,
                         fallback=why_fallback, converged=solve.converged,
                         outer_loss=outer_loss.detach(), step_size=step)
    return grad_x, info


def _products(solve: SolveInfo, v0: Tree | None) -> int:
    """Operator products of one solve: its iterations, the final true-residual check, and
    the initial residual of a warm start (none for the trivial b = 0 case)."""
    if solve.iterations == 0 and solve.reason.startswith("b = 0"):
        return 0
    return solve.iterations + 1 + (1 if v0 is not None else 0)
