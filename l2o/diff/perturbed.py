"""The perturbed optimizer of Berthet et al. (2020) (``LPLayer(mode="perturbed")``).

With x*(c) the LP's solution at cost c (argmin or argmax, the LP's sense) and Z ~ N(0, I_n),

    x_eps(c) = E[x*(c + eps Z)]                  the smoothed solution,
    F_eps(c) = E[(c + eps Z)^T x*(c + eps Z)]    the smoothed optimal value.

Both are smooth in c.  Gradients (Berthet et al., Propositions 2.2 and 3.1):

* F_eps: d/dc (c + eps Z)^T x*(c + eps Z) = x*(c + eps Z) almost surely (envelope theorem), so
  grad F_eps(c) = x_eps(c), estimated by the same sample mean as x_eps;
* x_eps: write x_eps(c) = int x*(u) phi((u - c) / eps) du / eps^n with phi the N(0, I) density;
  only phi depends on c and grad_c phi((u - c) / eps) = phi(.) (u - c) / eps^2, so with
  u = c + eps Z (the Gaussian score-function / likelihood-ratio form)

      J(c) = d x_eps / dc = E[x*(c + eps Z) Z^T] / eps.

  As E[Z] = 0, E[x* Z^T] = Cov(x*, Z), and the estimator used here is the sample covariance of
  the S samples (unbiased; centring lowers its variance as a baseline would):

      J ~ sum_s (x_s - x_bar)(Z_s - Z_bar)^T / ((S - 1) eps),    x_s = x*(c + eps Z_s)

  (for S = 1: x_1 Z_1^T / eps).  Backward needs only products with J^T: for an upstream
  gradient g of x_eps,

      J^T g = sum_s <g, x_s - x_bar> (Z_s - Z_bar) / ((S - 1) eps),

  an (n,) vector per instance from the samples' x and Z saved by the forward (no solve).

Only c is differentiated: the other inputs of the LP enter x_eps through x* alone, with no
density to move the derivative onto.  With common random numbers (the same Z_s), the sum
sum_s w_s(c') x_s / sum_s w_s(c') with the likelihood ratios w_s(c') = phi((u_s - c') / eps) /
phi(Z_s) is a smoothed-solution estimate at c' from the same solves, equal to x_bar at c' = c;
its derivative there is (S - 1) / S times the J above (the tests check J that way).

References: Q. Berthet, M. Blondel, O. Teboul, M. Cuturi, J.-P. Vert, F. Bach, "Learning with
Differentiable Perturbed Optimizers", NeurIPS 2020.
"""

from __future__ import annotations

import torch

from .value import BatchSolve

__all__ = ["PerturbedOptimizer", "jacobian_transpose_product"]


def jacobian_transpose_product(x_samples: torch.Tensor, noise: torch.Tensor, grad: torch.Tensor,
                               eps: float) -> torch.Tensor:
    """J^T g of the module docstring for each instance of a batch.

    Shapes: x_samples, noise (B, S, n); grad (B, n); returns (B, n).
    """
    samples = x_samples.shape[1]
    if samples == 1:
        return (grad * x_samples[:, 0]).sum(-1, keepdim=True) * noise[:, 0] / eps
    x_centred = x_samples - x_samples.mean(1, keepdim=True)
    z_centred = noise - noise.mean(1, keepdim=True)
    weights = (x_centred * grad[:, None, :]).sum(-1)                 # <g, x_s - x_bar>  (B, S)
    return torch.einsum("bs,bsn->bn", weights, z_centred) / ((samples - 1) * eps)


class PerturbedOptimizer(torch.autograd.Function):
    """(x_eps, F_eps) of a batch of LPs, both differentiable in c (module docstring).

    ``apply(solve, eps, c, noise)`` with ``solve`` the :data:`BatchSolve` of the B * S perturbed
    LPs (instance b's sample s at row b * S + s), ``noise`` the Z_s.

    Shapes: c (B, n); noise (B, S, n).  Returns x_eps (B, n) and F_eps (B,), sample means.
    """

    @staticmethod
    def forward(ctx, solve: BatchSolve, eps: float, c: torch.Tensor, noise: torch.Tensor):
        batch, samples, n = noise.shape
        perturbed = c[:, None, :] + eps * noise
        x = solve(perturbed.reshape(batch * samples, n)).x.reshape(batch, samples, n)
        x_mean = x.mean(1)
        ctx.save_for_backward(x, x_mean, noise)
        ctx.eps = eps
        return x_mean, (perturbed * x).sum(-1).mean(1)

    @staticmethod
    def backward(ctx, grad_x, grad_value):
        x, x_mean, noise = ctx.saved_tensors
        grad_c = grad_value[:, None] * x_mean + jacobian_transpose_product(
            x, noise, grad_x, ctx.eps)
        return None, None, grad_c, None
