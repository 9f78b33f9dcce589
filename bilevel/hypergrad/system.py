"""The linear system of implicit differentiation, shared by the eager and the captured
engines: its operator (the inner Hessian, or its Gauss-Newton approximation, plus a
ridge) and the check that y is near y*(x).

    (H + lam I) v = grad_y f,      H = d^2 g / dy^2               (hessian="exact")
                                   H = J^T (d^2 l / dz^2) J       (hessian="gauss-newton")

where for Gauss-Newton the inner objective is split as g(x, y) = l(x, z(x, y)) (the
problem's ``inner_output`` z and ``inner_loss`` l) and J = dz/dy.  The Gauss-Newton
matrix is positive semidefinite for a convex loss l whatever the network; the ridge
lam > 0 makes either positive definite.  Both bias the hypergradient (it is exact for
lam = 0 with the exact Hessian at y = y*(x)); the mixed product (d^2 g / dx dy)^T v stays
exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..linalg import LinearOperator, gauss_newton_closure, inner_linearization
from ..linalg.tree import Tree

__all__ = ["HESSIANS", "InnerNotConvergedWarning", "inner_check", "inner_operator"]

HESSIANS = ("exact", "gauss-newton")
# |grad_y g| above this many times tol |grad_y f| means y is not near y*(x)
INNER_FACTOR = 100.0


class InnerNotConvergedWarning(UserWarning):
    """An implicit hypergradient was taken at a y far from the inner solution y*(x)."""


def inner_operator(g: Callable[[Tree, Tree], torch.Tensor], x: Tree, y: Tree, *,
                   hessian: str = "exact",
                   split: tuple[Callable, Callable] | None = None) -> LinearOperator:
    """The operator H of g(x, .) at y, linearized once; ``op.gradient()`` is grad_y g;
    for the exact Hessian ``op.hessian_products.extras`` has the mixed product
    (d^2 g / dx dy)^T u ("mixed") and (H u, mixed) in one pass ("joint") from the same
    record (:func:`bilevel.linalg.hvp.inner_linearization`).

    Args:
        g: the inner objective g(x, y) (batch bound).
        x, y: the point (detached).
        hessian: "exact" (d^2 g / dy^2) or "gauss-newton" (J^T H_l J; needs ``split``).
        split: (z, l) with g(x, y) = l(x, z(x, y)), batch bound.
    """
    if hessian == "exact":
        # one record serves the products, the mixed product and both at once
        # (``op.hessian_products.extras``: "mixed", "joint")
        return LinearOperator.from_linearization(lambda: inner_linearization(g, x, y), y)
    if hessian != "gauss-newton":
        raise ValueError(f"hessian must be one of {HESSIANS}, got {hessian!r}")
    if split is None:
        raise ValueError("hessian='gauss-newton' needs the inner objective split as "
                         "loss(model output): BilevelProblem(..., inner_output=z(x, y, batch), "
                         "inner_loss=l(x, z, batch))")
    output, loss = split
    return LinearOperator.from_linearization(
        lambda: gauss_newton_closure(lambda yy: output(x, yy), lambda zz: loss(x, zz), y), y)


def inner_check(inner_grad_norm: float, rhs_norm: float, tol: float, dtype: torch.dtype, *,
                warn: bool, where: str = "hypergrad") -> bool:
    """True when |grad_y g(x, y)| <= 100 tol |grad_y f(x, y)|: y is near enough y*(x) for
    the implicit formula (which assumes grad_y g = 0) at the solve's accuracy (tol is
    taken at least the dtype's machine epsilon: round-off is not a distance).  Otherwise
    warns (``InnerNotConvergedWarning``) when ``warn``, and returns False."""
    tol = max(tol, torch.finfo(dtype).eps)
    ok = inner_grad_norm <= INNER_FACTOR * tol * rhs_norm
    if not ok and warn:
        warnings.warn(
            f"{where}: |grad_y g(x, y)| = {inner_grad_norm:.3e} > {INNER_FACTOR:g} tol "
            f"|grad_y f| = {INNER_FACTOR * tol * rhs_norm:.3e}: y is not near the inner "
            "solution y*(x), and the implicit hypergradient (which assumes grad_y g = 0) may "
            "be meaningless; solve the inner problem further (bilevel.inner_solve) first",
            InnerNotConvergedWarning, stacklevel=4)
    return ok


def split_of(problem: Any, batch: Any) -> tuple[Callable, Callable] | None:
    """(z, l) of the problem's Gauss-Newton split with the batch bound, or None."""
    return problem.inner_split_at(batch)
