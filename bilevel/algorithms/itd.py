"""ITD bilevel loop ("itd").

Per outer step k (Franceschi et al. 2017; Ji, Yang, Liang 2021, "ITD-BiO"), from the
warm-started y: K = ``inner_steps`` differentiable inner steps (TorchOpt sgd / momentum /
adam), a backward pass through the last T of them for the hypergradient, then
x <- OuterOptimizer(x, hypergradient) and y <- y_K.  With data, each unrolled step draws
its own minibatch.
"""

from __future__ import annotations

import torch
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
        gs = [self.g() for _ in range(self.inner_steps)]
        f = self.f()

        spent = {"hvp": 0, "grad": 0}  # over every run (a redone one included)

        def run(lr: float):
            grad_x, info, y_new = itd_hypergrad(f, gs, x, y, unroll=self.inner_steps,
                                                truncate=self.options["truncate"], inner_lr=lr,
                                                inner_optimizer=optimizer, warn_inner=False)
            # ||grad_y g|| at the first step and at the final inner iterate (last batch)
            first = T.norm(grad(gs[0], argnums=1)(x, y))
            last = torch.as_tensor(info.inner_grad_norm, dtype=first.dtype, device=first.device)
            spent["hvp"] += info.hvp_count
            spent["grad"] += info.grad_count + 1
            return (grad_x, info, y_new), first, last, 0

        if optimizer == "sgd":
            # the stale-step guard holds for gradient descent only (momentum and Adam may
            # raise ||grad_y g|| on the way with a safe step)
            (grad_x, info, y_new), inner_norm, lr, power_products, _ = \
                self.with_stale_step_guard(state, k, x, y, run)
        else:
            if optimizer == "adam" and self.fixed_inner_lr is None:
                lr, power_products = _ADAM_DEFAULT_LR, 0
            else:
                lr, power_products = self.inner_lr(state, k, x, y)
            (grad_x, info, y_new), _, inner_norm, _ = run(lr)
        x_new, opt = self.outer_optimizer.step(x, grad_x, state["opt"], k)
        new_state = {"x": x_new, "y": y_new, "opt": opt, "inner_lr": state["inner_lr"]}
        stats = {"outer_loss": info.outer_loss, "hypergrad": grad_x,
                 "hypergrad_norm": T.norm(grad_x),
                 "inner_grad_norm": inner_norm, "solve_residual": None,
                 "hvp_count": spent["hvp"] + power_products, "grad_count": spent["grad"]}
        return new_state, stats
