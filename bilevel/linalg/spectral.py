"""Largest eigenvalue / singular value estimates by power iteration.

Used for safe step sizes: the Neumann series and unrolled gradient steps need
lambda_max of the inner Hessian; PDHG needs ||A||_2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import tree as T
from .tree import Tree
from .operators import LinearOperator, as_operator

__all__ = ["power_iteration"]


def power_iteration(A: LinearOperator | Callable[[Tree], Tree] | torch.Tensor, *,
                    mode: str = "eig", iters: int = 200, tol: float = 1e-7,
                    x0: Tree | None = None, seed: int = 0,
                    check_every: int | None = None) -> float:
    """Estimate |lambda|_max of a symmetric operator, or sigma_max of any operator.

    mode="eig": v <- A v / ||A v||; the estimate ||A v|| (v unit) increases to the
    largest eigenvalue magnitude.  mode="svd": the same on A^T A (needs
    ``rmatvec``), returning sqrt(||A^T A v||).  Both estimates are lower bounds
    that converge at the rate (lambda_2 / lambda_1)^k.

    Args:
        A: the operator.
        mode: "eig" (A symmetric) or "svd".
        iters: iteration cap.
        tol: stop when the estimate changes by less than tol (relative) between checks.
        x0: start vector; default a seeded Gaussian shaped like ``A.like``.
        seed: seed of the default start vector.
        check_every: iterations between host-side checks (default 10).

    Returns:
        The estimate, a Python float.
    """
    if mode not in ("eig", "svd"):
        raise ValueError(f"power_iteration: mode must be 'eig' or 'svd', got {mode!r}")
    op = as_operator(A)
    if mode == "svd":
        def apply(v: Tree) -> Tree:
            return op.rmatvec(op.matvec(v))
    else:
        apply = op.matvec
    if x0 is None:
        if op.like is None:
            raise ValueError("power_iteration: pass x0 (the operator has no example vector `like`)")
        x0 = T.randn_like(op.like, torch.Generator().manual_seed(seed))
    v = T.tree_map(lambda t: t / T.norm(x0), x0)
    check_every = check_every or 10
    estimate, previous = None, None
    it = 0
    while it < iters:
        for _ in range(min(check_every, iters - it)):
            w = apply(v)
            estimate = T.norm(w)
            scale = torch.where(estimate > 0, 1.0 / estimate, torch.zeros_like(estimate))
            v = T.tree_map(lambda t: t * scale, w)
        it += check_every
        current = float(estimate)
        if current != current or current == float("inf"):
            raise FloatingPointError(f"power_iteration: non-finite estimate at iteration {it}")
        if current == 0.0 or (previous is not None and abs(current - previous) <= tol * current):
            break
        previous = current
    value = float(estimate)
    return value ** 0.5 if mode == "svd" else value
