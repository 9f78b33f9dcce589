"""ITD bilevel loop ("itd").

Per outer step k (Franceschi et al. 2017; Ji, Yang, Liang 2021, "ITD-BiO"), from the
warm-started y: K = ``inner_steps`` differentiable inner steps (TorchOpt sgd / momentum /
adam), a backward pass through the last T of them for the hypergradient, then
x <- OuterOptimizer(x, hypergradient) and y <- y_K.  With data, each unrolled step draws
its own minibatch.
"""

from __future__ import annotations

from torch.func import grad

from ..hypergrad.itd import itd_hypergrad
from ..linalg import tree as T
from .common import Algorithm, detach

__all__ = ["ITDAlgorithm"]

_ADAM_DEFAULT_LR = 1e-2


class ITDAlgorithm(Algorithm):
    """Options: ``truncate`` (T, default all K steps), ``inner_optimizer`` ("sgd")."""

    name = "itd"
    defaults = {"truncate": None, "inner_optimizer": "sgd"}

    def init_state(self) -> dict:
        return {"x": detach(self.problem.x0), "y": detach(self.problem.y0),
                "opt": self.outer_optimizer.init(self.problem.x0), "inner_lr": None}

    def step(self, state: dict, k: int) -> tuple[dict, dict]:
        x, y = state["x"], state["y"]
        optimizer = self.options["inner_optimizer"]
        if optimizer == "adam" and self.fixed_inner_lr is None:
            lr, power_products = _ADAM_DEFAULT_LR, 0
        else:
            lr, power_products = self.inner_lr(state, k, x, y)
        gs = [self.g() for _ in range(self.inner_steps)]
        f = self.f()

        def unrolled(lr):
            grad_x, info, y_new = itd_hypergrad(f, gs, x, y, unroll=self.inner_steps,
                                                truncate=self.options["truncate"], inner_lr=lr,
                                                inner_optimizer=optimizer)
            # ||grad_y g|| at the final inner iterate, on the last inner batch.
            return grad_x, info, y_new, T.norm(grad(gs[-1], argnums=1)(x, y_new))

        grad_x, info, y_new, inner_norm = unrolled(lr)
        extra_grads = 0
        if optimizer == "sgd" and power_products == 0 and self.fixed_inner_lr is None:
            # Stale-step guard (see Algorithm.guarded_descent): gradient descent with a
            # safe step does not increase ||grad_y g|| on a convex g.
            first, extra_grads = T.norm(grad(gs[0], argnums=1)(x, y)), 1
            factor = 1.0 if self.problem.inner_data is None else 2.0
            if not float(inner_norm) <= factor * float(first):
                lr, more = self.inner_lr(state, k, x, y, force=True)
                power_products += more
                grad_x, redo, y_new, inner_norm = unrolled(lr)
                extra_grads += info.grad_count + 1
                redo.hvp_count += info.hvp_count
                info = redo
        x_new, opt = self.outer_optimizer.step(x, grad_x, state["opt"], k)
        new_state = {"x": x_new, "y": y_new, "opt": opt, "inner_lr": state["inner_lr"]}
        stats = {"outer_loss": info.outer_loss, "hypergrad": grad_x,
                 "hypergrad_norm": T.norm(grad_x),
                 "inner_grad_norm": inner_norm, "solve_residual": None,
                 "hvp_count": info.hvp_count + power_products,
                 "grad_count": info.grad_count + 1 + extra_grads}
        return new_state, stats
