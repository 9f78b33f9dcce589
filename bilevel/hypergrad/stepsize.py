"""Safe step sizes from the inner Hessian's largest eigenvalue.

Gradient descent on g and the Neumann series for H_yy^{-1} both contract when the step
is below 2 / lambda_max(H_yy); 1 / lambda_max is the classical choice (it is also the
largest step for which every eigen-direction decreases monotonically).  Power iteration
returns a lower bound of lambda_max that increases towards it, so 1 / estimate slightly
over-shoots 1 / lambda_max; it stays inside the safe range (below 2 / lambda_max) as long as
the estimate exceeds lambda_max / 2, which a few dozen iterations from a Gaussian start
reach unless the start is nearly orthogonal to the top eigenspace.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..linalg import LinearOperator, power_iteration
from ..linalg.tree import Tree

__all__ = ["CountingOperator", "lambda_max"]


class CountingOperator(LinearOperator):
    """Wrap an operator and count its products (in Python: no host sync)."""

    def __init__(self, op: LinearOperator) -> None:
        self.count = 0

        def product(v: Tree) -> Tree:
            self.count += 1
            return op.matvec(v)

        super().__init__(product, product, op.shape, like=op.like)


def lambda_max(operator: LinearOperator, *, iters: int = 50, tol: float = 1e-3,
               seed: int = 0) -> tuple[float, int]:
    """Largest eigenvalue estimate of a symmetric positive semidefinite operator.

    Returns:
        (estimate, number of products used).

    Raises:
        ValueError: the estimate is zero (g does not depend on y), so no step size exists.
    """
    counted = CountingOperator(operator)
    estimate = power_iteration(counted, iters=iters, tol=tol, seed=seed)
    if not estimate > 0.0:
        raise ValueError("lambda_max: the inner Hessian H_yy is zero along the power-iteration "
                         "direction; pass the step size explicitly")
    return estimate, counted.count


def inner_lambda_max(g: Callable[[Tree, Tree], torch.Tensor], x: Tree, y: Tree,
                     **kwargs) -> tuple[float, int]:
    """lambda_max of H_yy g(x, .) at y: (estimate, products used)."""
    x = _detach(x)
    return lambda_max(LinearOperator.from_hvp(lambda yy: g(x, yy), _detach(y)), **kwargs)


def _detach(tree: Tree) -> Tree:
    from ..linalg.tree import tree_map
    return tree_map(lambda t: t.detach(), tree)
