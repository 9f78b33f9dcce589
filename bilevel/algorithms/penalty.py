"""Fully first-order penalty method ("penalty"), after Kwon, Kwon, Wright, Nowak:
"A fully first-order method for stochastic bilevel optimization" (F2SA, ICML 2023) and
"On penalty methods for nonconvex bilevel optimization and first-order stochastic
approximation" (ICLR 2024).

The bilevel problem is relaxed to the penalty function (sigma > 0 small)

    L_sigma(x) = min_y [ f(x, y) + (g(x, y) - min_z g(x, z)) / sigma ],

whose gradient needs only first derivatives: with y_sigma(x) = argmin_y sigma f + g and
z*(x) = argmin_z g,

    grad L_sigma(x) = grad_x f(x, y_sigma) + (grad_x g(x, y_sigma) - grad_x g(x, z*)) / sigma,

and grad L_sigma -> grad h as sigma -> 0 (the error is O(sigma)).  Per outer step k, both
inner variables take ``inner_steps`` warm-started gradient steps,

    z <- z - beta grad_z g(x, z),     y <- y - beta / (1 + sigma_k) grad_y (sigma_k f + g)(x, y),

(the y step is shrunk by 1 + sigma because the smoothness of sigma f + g is at most
L_g + sigma L_f, about (1 + sigma) L_g when f and g have similar curvature), then
x <- OuterOptimizer(x, the penalty gradient above).  The penalty follows the schedule
sigma_k = max(sigma_min, sigma0 / (k + 1)^p) (lambda_k = 1 / sigma_k grows polynomially,
as in F2SA).  No Hessian or Hessian-vector product is ever formed.

Variable names follow the brief: ``y`` minimizes sigma f + g and ``z`` minimizes g; the
result's y (and the callback's) is z, the approximation of y*(x), and the recorded outer
loss is f(x, z).
"""

from __future__ import annotations

from torch.func import grad

from ..linalg import tree as T
from .common import Algorithm, detach

__all__ = ["PenaltyAlgorithm"]


def _penalized(f, g, sigma: float):
    """(x, y) -> sigma f(x, y) + g(x, y)."""
    return lambda x, y: sigma * f(x, y) + g(x, y)


class PenaltyAlgorithm(Algorithm):
    """Options: ``sigma0`` (1.0), ``sigma_power`` p (0.5), ``sigma_min`` (1e-3)."""

    name = "penalty"
    defaults = {"sigma0": 1.0, "sigma_power": 0.5, "sigma_min": 1e-3}

    def sigma(self, k: int) -> float:
        o = self.options
        return max(o["sigma_min"], o["sigma0"] / (k + 1) ** o["sigma_power"])

    def inner_solution(self, state: dict):
        """z approximates y*(x) = argmin g(x, .); y is the penalized variable."""
        return state["z"]

    def init_state(self) -> dict:
        return {"x": detach(self.problem.x0), "y": detach(self.problem.y0),
                "z": detach(self.problem.y0), "opt": self.outer_optimizer.init(self.problem.x0),
                "inner_lr": None}

    def step(self, state: dict, k: int) -> tuple[dict, dict]:
        x, y, z = state["x"], state["y"], state["z"]
        sigma = self.sigma(k)
        problem = self.problem
        batches = [(problem.inner_at(self.inner_stream.next()),
                    problem.outer_at(self.outer_stream.next())) for _ in range(self.inner_steps)]

        def run(lr: float):
            # the guard watches z's gradient descent (y's step is the same step shrunk by
            # 1 + sigma); with one step, one more gradient at the new z gives the last norm
            y_new, z_new, first, last = self._inner_steps(x, y, z, lr, sigma, batches)
            grads = 2 * len(batches)
            if len(batches) == 1:
                last, grads = T.norm(grad(batches[0][0], argnums=1)(x, z_new)), grads + 1
            return (y_new, z_new), first, last, grads

        (y_new, z_new), inner_norm, _, power_products, grads = self.with_stale_step_guard(
            state, k, x, y, run)
        grad_count = grads - 2 * self.inner_steps  # those are counted below
        y, z = y_new, z_new
        g, f = self.g(), self.f()
        f_x = grad(f, argnums=0)(x, y)
        # The recorded outer loss is f at z ~ y*(x): f at y_sigma is biased low (y_sigma
        # trades g for f), so it would flatter the method.
        outer_loss = f(x, z)
        g_x_y = grad(g, argnums=0)(x, y)
        g_x_z = grad(g, argnums=0)(x, z)
        estimate = T.tree_map(lambda a, b, c: a + (b - c) / sigma, f_x, g_x_y, g_x_z)
        x_new, opt = self.outer_optimizer.step(x, estimate, state["opt"], k)
        new_state = {"x": x_new, "y": y, "z": z, "opt": opt, "inner_lr": state["inner_lr"]}
        stats = {"outer_loss": outer_loss.detach(), "hypergrad": estimate,
                 "hypergrad_norm": T.norm(estimate),
                 "inner_grad_norm": inner_norm,
                 "solve_residual": None, "sigma": sigma, "hvp_count": power_products,
                 "grad_count": 3 * self.inner_steps + 3 + grad_count}
        return new_state, stats

    @staticmethod
    def _inner_steps(x, y, z, lr, sigma, batches):
        """Gradient steps on z (g) and y (sigma f + g), one per (g, f) batch pair:
        (y, z, ||grad_z g|| of the first and of the last step)."""
        first = last = None
        for g, f in batches:
            g_z = grad(g, argnums=1)(x, z)
            last = T.norm(g_z)
            first = last if first is None else first
            z = T.axpy(-lr, g_z, z)
            y = T.axpy(-lr / (1.0 + sigma), grad(_penalized(f, g, sigma), argnums=1)(x, y), y)
        return y, z, first, last
