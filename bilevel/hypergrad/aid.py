"""Approximate implicit differentiation (AID).

At an inner solution y = y*(x) the optimality condition grad_y g(x, y*(x)) = 0 gives, by
the implicit function theorem,

    grad h(x) = grad_x f(x, y) - (d^2 g / dx dy)^T v,    H_yy v = grad_y f(x, y),

with H_yy = d^2 g / dy^2 at (x, y).  The linear system is solved matrix-free by a
linear solver passed as a value (``solve=cg``, ``minres``, ``neumann``, a configured
``functools.partial`` or any callable, see :func:`bilevel.linalg.as_solver`) on one
linearization of grad_y g at (x, y) (every product is a backward pass, see
:meth:`LinearOperator.from_hvp`).  Optionally H_yy is damped, H_yy + lam I (``ridge``),
or replaced by its Gauss-Newton approximation (``hessian="gauss-newton"``, see
:mod:`bilevel.hypergrad.system`).  At a y that is not exactly y*(x) the same formula is
the usual AID approximation (Pedregosa 2016; Grazzi et al. 2020); far from y*(x) it is
meaningless, which is reported (``info.inner_converged``, a warning).

When CG meets non-positive curvature (a non-convex inner problem: H_yy is indefinite),
``fallback="ridge"`` damps the system, lam = ridge + 1e-4 lambda_max 2^k for k = 0, 1, ...
(at most ``MAX_DAMPING`` solves) until the solver goes through; ``fallback="minres"``
re-solves the undamped system with MINRES (symmetric indefinite systems; it may run into
``maxiter`` on hard ones); ``fallback=None`` reports the breakdown.

References:
    F. Pedregosa. Hyperparameter optimization with approximate gradient. ICML 2016.
    R. Grazzi, L. Franceschi, M. Pontil, S. Salzo. On the iteration complexity of
    hypergradient computation. ICML 2020.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import grad_and_value

from ..linalg import LinearSolver, SolveInfo, as_solver, mixed_vjp
from ..linalg import tree as T
from ..linalg.tree import Tree
from .info import HypergradInfo
from .stepsize import lambda_max
from .system import inner_check, inner_operator

__all__ = ["AID_SOLVERS", "FALLBACKS", "MAX_DAMPING", "aid_hypergrad", "check_fallback",
           "mixed_product"]

AID_SOLVERS = ("cg", "minres", "neumann")
FALLBACKS = ("ridge", "minres", None)
MAX_DAMPING = 10
DAMPING_START = 1e-4  # first damping, relative to lambda_max


def check_fallback(fallback: str | bool | None) -> str | None:
    """The fallback as one of ``FALLBACKS`` (False means None)."""
    fallback = None if fallback is False else fallback
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    return fallback


def aid_hypergrad(f: Callable[[Tree, Tree], torch.Tensor], g: Callable[[Tree, Tree], torch.Tensor],
                  x: Tree, y: Tree, *, solve: str | Callable | LinearSolver = "cg",
                  tol: float = 1e-6, maxiter: int | None = None, v0: Tree | None = None,
                  check_every: int | None = None, ridge: float = 0.0,
                  fallback: str | None = "ridge", hessian: str = "exact",
                  split: tuple[Callable, Callable] | None = None,
                  cuda_graph: bool | str = "auto",
                  warn_inner: bool = True) -> tuple[Tree, HypergradInfo]:
    """One AID hypergradient grad_x f - (d^2 g/dx dy)^T (H + lam I)^{-1} grad_y f at (x, y).

    Args:
        f, g: the outer and inner objectives as functions of (x, y) (batch bound).
        x, y: the point (tensors or dicts); y should be (close to) argmin g(x, .).
        solve: the linear solver, a value (:func:`bilevel.linalg.as_solver`: "cg",
            ``bilevel.linalg.minres``, ``functools.partial(neumann, alpha=0.1)``, ...).
        tol: relative residual target of the linear solve.
        maxiter: iteration cap of the solve (default: the solver's own; Neumann: 100 terms).
        v0: warm start of the solve (e.g. the previous outer step's v).
        check_every: iterations between host-side convergence checks.
        ridge: lam >= 0, solve (H + lam I) v = grad_y f (damping; 0: exact).
        fallback: on non-positive curvature: "ridge", "minres" or None (module docstring).
        hessian: "exact" or "gauss-newton" (needs ``split``).
        split: (z, l) with g(x, y) = l(x, z(x, y)), for Gauss-Newton.
        cuda_graph: passed to the solver (capture its iterations as a CUDA graph on GPUs).
        warn_inner: warn (``InnerNotConvergedWarning``) when y is far from y*(x).

    Returns:
        (grad_x, info).  grad_x has x's structure.  ``info.converged`` is False when the
        returned v misses the tolerance; the hypergradient is then approximate.

    Shapes:
        v, v0: like y.  grad_x: like x.
    """
    solver = as_solver(solve)
    fallback = check_fallback(fallback)
    if not ridge >= 0.0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    x = T.tree_map(lambda t: t.detach(), x)
    y = T.tree_map(lambda t: t.detach(), y)
    (f_x, f_y), outer_loss = grad_and_value(f, argnums=(0, 1))(x, y)
    base = inner_operator(g, x, y, hessian=hessian, split=split)  # linearized once
    loop: dict = {"tol": tol, "x0": v0, "check_every": check_every, "cuda_graph": cuda_graph}
    if maxiter is not None:
        loop["maxiter"] = maxiter
    solver, hvp_count = solver.prepared(base.shifted(ridge))
    v, solve_info = solver(base.shifted(ridge), f_y, **loop)
    hvp_count += _products(solve_info, v0)
    iterations, lam, damping_steps, why_fallback = solve_info.iterations, ridge, 0, None
    if solve_info.negative_curvature and fallback == "minres":
        # H is not positive definite here (a non-convex inner problem, or y far from a
        # minimum): CG's answer is meaningless, MINRES only needs symmetry.
        why_fallback = f"{solver.name}: {solve_info.reason}; fell back to minres"
        v, solve_info = as_solver("minres")(base.shifted(ridge), f_y, **loop)
        hvp_count += _products(solve_info, v0)
        iterations += solve_info.iterations
    elif solve_info.negative_curvature and fallback == "ridge":
        first_reason = solve_info.reason
        scale, used = lambda_max(base)
        hvp_count += used
        while solve_info.negative_curvature and damping_steps < MAX_DAMPING:
            lam = ridge + DAMPING_START * scale * 2.0 ** damping_steps
            damping_steps += 1
            v, solve_info = solver(base.shifted(lam), f_y, **loop)
            hvp_count += _products(solve_info, v0)
            iterations += solve_info.iterations
        why_fallback = (f"{solver.name}: {first_reason}; damped: ridge {lam:.3e} "
                        f"({damping_steps} solve(s), lambda_max ~ {scale:.3e})")
        if solve_info.negative_curvature:
            solve_info.reason += (f"; still not positive definite with ridge {lam:.3e} after "
                                  f"{damping_steps} doublings: try hessian='gauss-newton' or "
                                  "fallback='minres'")
    g_x_v = mixed_product(base, g, x, y)(v)
    grad_x = T.axpy(-1.0, g_x_v, f_x)
    inner_norm, rhs_norm = torch.stack([T.norm(base.gradient()), T.norm(f_y)]).tolist()
    info = HypergradInfo(method=solver.name, v=v, solve=solve_info,
                         residual=solve_info.residual, iterations=iterations,
                         hvp_count=hvp_count + 1, grad_count=1, fallback=why_fallback,
                         converged=solve_info.converged, outer_loss=outer_loss.detach(),
                         step_size=solver.options.get("alpha"), hessian=hessian, ridge=lam,
                         damping_steps=damping_steps, inner_grad_norm=inner_norm,
                         inner_converged=inner_check(inner_norm, rhs_norm, tol,
                                                     T.like_info(y)[0], warn=warn_inner))
    return grad_x, info


def mixed_product(base, g: Callable, x: Tree, y: Tree) -> Callable[[Tree], Tree]:
    """u -> (d^2 g / dx dy)^T u: a backward pass through the operator's own record of
    grad_y g where it has one (the exact Hessian), else :func:`mixed_vjp` (Gauss-Newton:
    its record is of the split's pieces, and the mixed product stays exact)."""
    base.hessian_products.linearize()
    return base.hessian_products.extras.get("mixed") or (lambda u: mixed_vjp(g, x, y, u))


def _products(solve: SolveInfo, v0: Tree | None) -> int:
    """Operator products of one solve: its iterations, the final true-residual check, and
    the initial residual of a warm start (none for the trivial b = 0 case)."""
    if solve.iterations == 0 and solve.reason.startswith("b = 0"):
        return 0
    return solve.iterations + 1 + (1 if v0 is not None else 0)

