"""The Fenchel-Young loss of the perturbed optimizer (Berthet et al. 2020, section 4).

For a maximization, F_eps(c) = E[max_x (c + eps Z)^T x] is convex with gradient x_eps(c)
(:mod:`l2o.diff.perturbed`), and the Fenchel-Young loss of a predicted cost c_hat against a
target solution x_true is

    L(c_hat; x_true) = F_eps(c_hat) - c_hat^T x_true (+ eps Omega(x_true)),
    grad_{c_hat} L   = x_eps(c_hat) - x_true,

with Omega the conjugate regularizer of F_eps (constant in c_hat; dropped here, as in the
authors' implementation).  For a minimization (a shortest path, a cost), F_eps(c) =
E[min_x (c + eps Z)^T x] is concave and the loss is its mirror image

    L(c_hat; x_true) = c_hat^T x_true - F_eps(c_hat),
    grad_{c_hat} L   = x_true - x_eps(c_hat),

the expected excess cost of x_true over the perturbed optimum under c_hat (>= 0 in expectation
when x_true is feasible; an exact sample of it up to eps Z_bar^T x_true).  Either way the loss is
convex in c_hat, and its gradient vanishes when the smoothed optimum at c_hat is x_true.

Both come from one forward of an :class:`~l2o.diff.LPLayer` in ``mode="perturbed"``: its
objective is the sample mean of F_eps, whose gradient is the sample mean x_eps of the same
solves (so no Jacobian of x_eps is needed).
"""

from __future__ import annotations

import torch

from l2o.lp.model import MAXIMIZE

from .lp_layer import LPLayer

__all__ = ["fenchel_young_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def fenchel_young_loss(c_hat: torch.Tensor, x_true: torch.Tensor, layer: LPLayer, A_values,
                       row_lower, row_upper, col_lower, col_upper, *,
                       reduction: str = "mean") -> torch.Tensor:
    """The Fenchel-Young loss of the perturbed optimizer (module docstring), in ``layer``'s sense.

    Args:
        c_hat: (B, n) predicted costs (or (n,)).
        x_true: (B, n) target solutions (or (n,)), e.g. the optima of the true costs.
        layer: an :class:`LPLayer` with ``mode="perturbed"`` (its eps, samples, seed).
        A_values, row_lower, row_upper, col_lower, col_upper: the LPs' data, as
            :meth:`LPLayer.forward` takes them (1-D ones are shared by the batch).
        reduction: "mean" (default) or "sum" over the batch, or "none" for the (B,) losses.

    Returns:
        The loss: 0-d, or (B,) for reduction="none".  Its gradient with respect to c_hat is
        x_eps(c_hat) - x_true for a maximization and x_true - x_eps(c_hat) for a minimization
        (per instance; divided by B for "mean"), with x_eps the sample mean of the layer's
        forward.

    Raises:
        ValueError: a layer not in mode "perturbed", an unknown reduction, x_true not of
            c_hat's shape or not finite; the layer's own errors (:class:`LPLayer`).
    """
    if not isinstance(layer, LPLayer) or layer.mode != "perturbed":
        raise ValueError("fenchel_young_loss needs an LPLayer with mode='perturbed', got "
                         f"{layer!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"fenchel_young_loss: reduction must be one of {_REDUCTIONS}, got "
                         f"{reduction!r}")
    x_true = torch.as_tensor(x_true, dtype=c_hat.dtype, device=c_hat.device)
    if x_true.shape != c_hat.shape:
        raise ValueError(f"fenchel_young_loss: x_true has shape {tuple(x_true.shape)}, c_hat "
                         f"{tuple(c_hat.shape)}; they must match")
    if not bool(torch.isfinite(x_true).all()):
        raise ValueError("fenchel_young_loss: x_true has non-finite entries")
    _, smoothed_value = layer(c_hat, A_values, row_lower, row_upper, col_lower, col_upper)
    target_value = (c_hat * x_true).sum(-1)
    losses = (smoothed_value - target_value if layer.sense == MAXIMIZE
              else target_value - smoothed_value)
    if reduction == "none":
        return losses
    return losses.mean() if reduction == "mean" else losses.sum()
