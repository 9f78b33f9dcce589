"""The plain PDHG step of the shared convention (``pdhg_math.md``), and its projections.

LP in minimization form: min c^T x + c0  s.t.  l_r <= A x <= u_r,  l_c <= x <= u_c, with the
Lagrangian L(x, y) = c^T x - y^T A x + p(y), p(y) = sum_i (l_r,i y_i^+ - u_r,i y_i^-).  One step
with fixed step sizes tau, sigma:

    x_new = proj_[l_c, u_c]( x - tau (c - A^T y) )
    x_bar = 2 x_new - x
    w     = y - sigma A x_bar
    y_new = w - sigma proj_[-u_r, -l_r]( w / sigma )

The dual update is the prox of sigma p^*: for an equality row (l = u = b) it is
y + sigma (b - A x_bar); for a row l <= a^T x only, y_new = max(0, w + sigma l).
Since sigma > 0, sigma proj_[-u, -l](w / sigma) = clamp(w, -sigma u, -sigma l), which is the
form used here (no division, and infinite bounds need no special case).
"""

from __future__ import annotations

import torch

__all__ = ["pdhg_step", "project_dual"]


def project_dual(w: torch.Tensor, sigma_lower: torch.Tensor,
                 sigma_upper: torch.Tensor) -> torch.Tensor:
    """y = w - clamp(w, -sigma u_r, -sigma l_r), given sigma_lower = sigma l_r, sigma_upper = sigma u_r.

    Shapes: all (m,).  Rows with l_r = -inf get y <= 0, rows with u_r = +inf get y >= 0.
    """
    return w - torch.clamp(w, -sigma_upper, -sigma_lower)


def pdhg_step(lp, x: torch.Tensor, y: torch.Tensor, tau: float,
              sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One plain PDHG step on the LP as given (no scaling, no restarts), see the module docstring.

    A maximization LP is negated first (c <- -c), as in the shared convention.

    Args:
        lp: an :class:`l2o.LinearProgram` (on the device and in the dtype of x, y; see ``lp.to``).
        x: (n,) primal iterate.
        y: (m,) dual iterate (row duals).
        tau, sigma: primal and dual step sizes (positive).

    Returns:
        (x_new, y_new), shapes (n,), (m,).
    """
    if not (tau > 0 and sigma > 0):
        raise ValueError(f"pdhg_step: tau and sigma must be positive, got tau={tau}, sigma={sigma}")
    n, m = lp.num_cols, lp.num_rows
    if x.shape != (n,) or y.shape != (m,):
        raise ValueError(f"pdhg_step: x must have shape ({n},) and y ({m},), "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    c, _ = lp.minimize_c
    A = lp.A.to(device=x.device, dtype=x.dtype)
    # A^T y through the transposed view (CSC), no copy of A.
    x_new = torch.clamp(x - tau * (c.to(x) - torch.mv(A.t(), y)),
                        lp.col_lower.to(x), lp.col_upper.to(x))
    x_bar = 2.0 * x_new - x
    w = y - sigma * torch.mv(A, x_bar)
    y_new = project_dual(w, sigma * lp.row_lower.to(y), sigma * lp.row_upper.to(y))
    return x_new, y_new
