"""The optimal value of a batch of LPs and its exact sensitivities (``LPLayer(mode="value")``).

For the LP in minimization form

    V(c, A, l_r, u_r, l_c, u_c) = min c^T x   s.t.   l_r <= A x <= u_r,   l_c <= x <= u_c

take the Lagrangian of :mod:`l2o.lp.kkt` (y the row duals, r the reduced costs, y^+ = max(y, 0),
y^- = max(-y, 0); y_i >= 0 where the lower row bound is active, <= 0 where the upper one is)

    L(x, y, r) = c^T x - y^T A x - r^T x + sum_i (l_r,i y_i^+ - u_r,i y_i^-)
                                         + sum_j (l_c,j r_j^+ - u_c,j r_j^-).

At an optimal primal-dual pair (x*, y*, r*), V = L(x*, y*, r*), and where that pair is unique
the envelope theorem differentiates V as L at fixed (x*, y*, r*):

    dV/dc = x*,   dV/dl_r = y*^+,   dV/du_r = -y*^-,   dV/dl_c = r*^+,   dV/du_c = -r*^-,
    dV/dA_ij = -y*_i x*_j                     (at the nonzeros (i, j) of A's pattern).

An infinite bound is no variable: its gradient is 0 (the multiplier's part paired with it is 0
anyway).  An equality row given as l_r,i = u_r,i gets y^+ and -y^- on its two bounds; moving both
together changes V by y_i.  For a maximization, V_max(c, .) = max c^T x = -V_min(-c, .) with
(y*, r*) the minimization-form duals that :class:`l2o.LPResult` reports, so dV_max/dc = x* still
and every other derivative changes sign.

Where the optimum is not unique V has a kink: V_min is concave in c and x* is then one
supergradient (the one the solver found), and likewise for the other inputs.

The solution x* is piecewise constant in the data (its Jacobian is 0 almost everywhere), so it
is returned without a gradient; a loss of x needs ``mode="perturbed"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["BatchSolution", "OptimalValue"]


@dataclass
class BatchSolution:
    """The optimal points of a batch of K LPs, in the dtype and on the device of the batch's c.

    Attributes:
        x: (K, n) primal solutions.
        y: (K, m) row duals (minimization-form signs, as :class:`l2o.LPResult`).
        reduced_costs: (K, n) column duals r = proj(c - A^T y) (likewise).
    """

    x: torch.Tensor
    y: torch.Tensor
    reduced_costs: torch.Tensor


# A batch's solve: c (K, n) -> its BatchSolution; it knows the rest of the LPs' data.
BatchSolve = Callable[[torch.Tensor], BatchSolution]


def _finite_mask(bound: torch.Tensor) -> torch.Tensor:
    """1 where the bound is finite, 0 where it is +-inf (same dtype)."""
    return torch.isfinite(bound).to(bound.dtype)


class OptimalValue(torch.autograd.Function):
    """(x*, V) of a batch of LPs; V differentiable in every input (module docstring).

    ``apply(solve, rows, cols, sign, c, A_values, row_lower, row_upper, col_lower, col_upper)``
    with ``solve`` the batch's :data:`BatchSolve`, ``rows``, ``cols`` (nnz,) the row and column
    of each pattern entry, ``sign`` +1 for a minimization and -1 for a maximization.

    Shapes: c, col_lower, col_upper (B, n); A_values (B, nnz); row_lower, row_upper (B, m).
    Returns x* (B, n) (no gradient) and V = c^T x* (B,) in the LP's own sense.
    """

    @staticmethod
    def forward(ctx, solve: BatchSolve, rows: torch.Tensor, cols: torch.Tensor, sign: float,
                c: torch.Tensor, A_values: torch.Tensor, row_lower: torch.Tensor,
                row_upper: torch.Tensor, col_lower: torch.Tensor, col_upper: torch.Tensor):
        solution = solve(c)
        x, y, r = solution.x, solution.y, solution.reduced_costs
        ctx.save_for_backward(x, y, r, rows, cols, _finite_mask(row_lower),
                              _finite_mask(row_upper), _finite_mask(col_lower),
                              _finite_mask(col_upper))
        ctx.sign = sign
        ctx.dtypes = tuple(t.dtype for t in (A_values, row_lower, row_upper, col_lower, col_upper))
        ctx.mark_non_differentiable(x)
        return x, (c * x).sum(-1)

    @staticmethod
    def backward(ctx, grad_x, grad_value):
        x, y, r, rows, cols, rl_finite, ru_finite, cl_finite, cu_finite = ctx.saved_tensors
        g = grad_value[:, None]
        # d V_min / d data for the bounds and A, sign-flipped for a maximization
        signed = ctx.sign * g
        grads = (
            signed * y.clamp(min=0) * rl_finite,            # row_lower:  y^+
            signed * y.clamp(max=0) * ru_finite,            # row_upper: -y^-
            signed * r.clamp(min=0) * cl_finite,            # col_lower:  r^+
            signed * r.clamp(max=0) * cu_finite,            # col_upper: -r^-
        )
        grad_A = -signed * y[:, rows] * x[:, cols]          # -y_i x_j at the pattern's (i, j)
        a_dtype, *bound_dtypes = ctx.dtypes
        return (None, None, None, None, g * x, grad_A.to(a_dtype),
                *(grad.to(dtype) for grad, dtype in zip(grads, bound_dtypes)))
