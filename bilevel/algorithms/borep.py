"""BO-REP: Bilevel Optimization with lower-level initialization REfinement and Periodic
updates (Hao, Gong, Liu, ICLR 2024), for upper-level functions with unbounded smoothness.

With step k, momentum beta, outer step eta, linear-system step nu, update period I and
N lower-level steps (Algorithm 1 of the paper; the official code is
MingruiLiu-ML-Lab/Bilevel-Optimization-under-Unbounded-Smoothness):

    k = 0:          y <- InitializationRefinement(x_0, y)      (epochs of SGD on g(x_0, .))
    k % I == 0:     y <- N SGD steps on g(x_k, .) from the previous y   (periodic updates)
    otherwise:      y unchanged
    z <- Proj_R( z - nu (H_yy(x_k, y) z - grad_y f(x_k, y)) )  (one stochastic gradient step
                                                     on the quadratic z^T H z / 2 - z^T grad_y f)
    m <- beta m + (1 - beta) (grad_x f(x_k, y) - (d^2 g / dx dy)^T z)
    x <- x - eta m / ||m||                                     (normalized momentum)

The refinement runs ``refine_epochs`` epochs of SGD, epoch e with ``refine_steps * 2^e``
steps of size ``inner_lr / 2^e`` (the epoch-SGD schedule of the paper's refinement
subroutine); we keep each epoch's last iterate where the paper averages, which for
full-batch gradients is at least as accurate.  The outer optimizer option is not used:
the normalized momentum step *is* BO-REP's outer update; ``outer_lr`` is eta.

Reference: J. Hao, X. Gong, M. Liu. Bilevel optimization under unbounded smoothness: a new
algorithm and convergence analysis. ICLR 2024.
"""

from __future__ import annotations

import torch
from torch.func import grad

from ..linalg import hvp, mixed_vjp
from ..linalg import tree as T
from .common import Algorithm, detach, gradient_steps, outer_gradients

__all__ = ["BOREPAlgorithm"]


class BOREPAlgorithm(Algorithm):
    """Options: ``beta`` (0.9), ``nu`` (z step; default the inner step 1/lambda_max),
    ``update_interval`` I (2), ``refine_epochs`` (3), ``refine_steps`` (default
    10 * inner_steps), ``z_radius`` (projection radius R; None = no projection)."""

    name = "borep"
    defaults = {"beta": 0.9, "nu": None, "update_interval": 2, "refine_epochs": 3,
                "refine_steps": None, "z_radius": None}

    def init_state(self) -> dict:
        x0 = self.problem.x0
        return {"x": detach(x0), "y": detach(self.problem.y0), "z": T.zeros_like(self.problem.y0),
                "m": T.zeros_like(x0), "inner_lr": None}

    def step(self, state: dict, k: int) -> tuple[dict, dict]:
        opts = self.options
        x, y = state["x"], state["y"]
        grad_count = 0
        inner_norm = None
        if k > 0 and k % opts["update_interval"] == 0:
            y, inner_norm, lr, power_products, extra = self.guarded_descent(
                state, k, x, y, [self.g() for _ in range(self.inner_steps)])
            grad_count += self.inner_steps + extra
        else:
            lr, power_products = self.inner_lr(state, k, x, y)
        if k == 0:
            refine_steps = opts["refine_steps"] or 10 * self.inner_steps
            for epoch in range(opts["refine_epochs"]):
                steps = refine_steps * 2 ** epoch
                y, inner_norm = gradient_steps([self.g() for _ in range(steps)], x, y,
                                               lr / 2 ** epoch)
                grad_count += steps
        g = self.g()
        if inner_norm is None:  # y was not updated: report ||grad_y g|| at it (one gradient)
            inner_norm = T.norm(grad(g, argnums=1)(x, y))
            grad_count += 1
        (f_x, f_y), outer_loss = outer_gradients(self.f(), x, y)
        hz = hvp(lambda yy: g(x, yy), y, state["z"])
        nu = opts["nu"] if opts["nu"] is not None else lr
        # z <- z - nu (H z - grad_y f)
        z = T.axpy(-nu, T.axpy(-1.0, f_y, hz), state["z"])
        if opts["z_radius"] is not None:
            scale = torch.clamp(opts["z_radius"] / T.norm(z).clamp_min(1e-30), max=1.0)
            z = T.tree_map(lambda t: t * scale, z)
        # Hypergradient estimate with the updated z, in the order of the official code.
        estimate = T.axpy(-1.0, mixed_vjp(g, x, y, z), f_x)
        beta = opts["beta"]
        m = T.tree_map(lambda mi, ei: beta * mi + (1 - beta) * ei, state["m"], estimate)
        m_norm = T.norm(m)
        eta = self.outer_optimizer.learning_rate(k)
        scale = eta / m_norm.clamp_min(1e-30)
        x_new = T.tree_map(lambda xi, mi: xi - scale * mi, x, m)
        new_state = {"x": x_new, "y": y, "z": z, "m": m, "inner_lr": state["inner_lr"]}
        stats = {"outer_loss": outer_loss.detach(), "hypergrad": estimate,
                 "hypergrad_norm": T.norm(estimate),
                 "inner_grad_norm": inner_norm, "solve_residual": None,
                 "hvp_count": 2 + power_products, "grad_count": grad_count + 1}
        return new_state, stats
