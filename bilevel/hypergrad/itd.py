"""Iterative differentiation (ITD): reverse mode through unrolled inner steps.

Starting from y_0 = y, K differentiable optimizer steps on g(x, .) give y_K(x); the
hypergradient is the exact gradient of the surrogate x -> f(x, y_K(x)):

    grad_x f(x, y_K) + sum_k (d y_k / d x)^T grad_y f(x, y_K),

obtained by one backward pass through the recorded steps.  With truncation T < K only
the last T steps are recorded (y_{K-T} is treated as a constant): memory O(T) instead of
O(K), at the price of a bias that decays geometrically in T for strongly convex g
(Shaban et al. 2019).  As K grows (with y_K -> y*(x)) the ITD hypergradient converges to
grad h(x) (Franceschi et al. 2017; Grazzi et al. 2020).

The inner steps are TorchOpt's differentiable functional optimizers (``torchopt.sgd``,
``torchopt.sgd(momentum=...)``, ``torchopt.adam`` with ``apply_updates(inplace=False)``).
Where TorchOpt is not installed (e.g. a bare GPU image), the same three update rules are
run by a small built-in copy with identical formulas (tested equal to TorchOpt).

References:
    L. Franceschi, M. Donini, P. Frasconi, M. Pontil. Forward and reverse gradient-based
    hyperparameter optimization. ICML 2017.
    A. Shaban, C.-A. Cheng, N. Hatch, B. Boots. Truncated back-propagation for bilevel
    optimization. AISTATS 2019.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.func import grad
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from ..linalg import tree as T
from ..linalg.tree import Tree
from .info import HypergradInfo
from .system import InnerNotConvergedWarning

__all__ = ["INNER_OPTIMIZERS", "itd_hypergrad", "make_inner_optimizer"]

INNER_OPTIMIZERS = ("sgd", "momentum", "adam")
_MOMENTUM = 0.9
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
# sqrt(nu + eps_root) keeps the derivative of Adam's denominator finite where a gradient
# coordinate is exactly zero (sqrt'(0) = inf would turn the backward pass into NaN).
_ADAM_EPS_ROOT = 1e-16


def itd_hypergrad(f: Callable[[Tree, Tree], torch.Tensor],
                  g: Callable[[Tree, Tree], torch.Tensor] | Sequence[Callable],
                  x: Tree, y: Tree, *, unroll: int = 100, truncate: int | None = None,
                  inner_lr: float, inner_optimizer: str = "sgd",
                  use_torchopt: bool | None = None,
                  warn_inner: bool = True) -> tuple[Tree, HypergradInfo, Tree]:
    """The ITD hypergradient through ``unroll`` inner steps from y.

    Args:
        f: outer objective f(x, y) (batch bound).
        g: inner objective g(x, y), or a sequence of ``unroll`` of them (one per step, e.g.
            one minibatch each).
        x, y: the point; y is the start of the unrolled inner loop (a warm start).
        unroll: K, the number of inner steps.
        truncate: T <= K, the number of last steps differentiated through (default K).
        inner_lr: step size of the inner optimizer.
        inner_optimizer: "sgd", "momentum" (heavy ball, 0.9) or "adam".
        use_torchopt: force (True) or avoid (False) TorchOpt; default: use it if installed.
        warn_inner: warn (``InnerNotConvergedWarning``) when the unrolled steps increased
            ||grad_y g||: they moved away from stationarity (a step too large for the
            curvature, or Adam near y*, whose normalized steps do not shrink with the
            gradient), and the unrolled derivative then says little about y*(x).

    Returns:
        (grad_x, info, y_K): the hypergradient, its diagnostics, and the last inner
        iterate (detached), which callers use as the next warm start.
    """
    if unroll < 1:
        raise ValueError(f"itd: unroll (K) must be >= 1, got {unroll}")
    truncate = unroll if truncate is None else truncate
    if not 1 <= truncate <= unroll:
        raise ValueError(f"itd: truncate (T) must be in [1, unroll={unroll}], got {truncate}")
    if not inner_lr > 0:
        raise ValueError(f"itd: inner_lr must be positive, got {inner_lr}")
    steps = list(g) if isinstance(g, Sequence) else [g] * unroll
    if len(steps) != unroll:
        raise ValueError(f"itd: got {len(steps)} inner objectives for unroll={unroll}")
    optimizer = make_inner_optimizer(inner_optimizer, inner_lr, use_torchopt)

    x_var = tree_map(lambda t: t.detach().requires_grad_(True), x)
    x_const = tree_map(lambda t: t.detach(), x)
    y_cur = tree_map(lambda t: t.detach(), y)
    state = optimizer.init(y_cur)
    first_recorded = unroll - truncate
    for k, g_k in enumerate(steps):
        if k == first_recorded:
            # Start of the recorded window: y_{K-T} and the optimizer state are constants.
            y_cur = tree_map(lambda t: t.detach().requires_grad_(True), y_cur)
            state = tree_map(_detach, state)
        recorded = k >= first_recorded
        if not recorded:
            y_cur = tree_map(lambda t: t.detach().requires_grad_(True), y_cur)
        loss = g_k(x_var if recorded else x_const, y_cur)
        y_leaves, spec = tree_flatten(y_cur)
        grads = torch.autograd.grad(loss, y_leaves, create_graph=recorded, allow_unused=True)
        grads = [torch.zeros_like(t) if g_ is None else g_ for t, g_ in zip(y_leaves, grads)]
        if k == 0:
            first_norm = torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(t.detach()) for t in grads]))
        updates, state = optimizer.update(tree_unflatten(grads, spec), state,
                                          params=y_cur, inplace=False)
        y_cur = optimizer.apply(y_cur, updates)
        if not recorded:
            y_cur = tree_map(lambda t: t.detach(), y_cur)
            state = tree_map(_detach, state)
    outer_loss = f(x_var, y_cur)
    x_leaves, x_spec = tree_flatten(x_var)
    grads_x = torch.autograd.grad(outer_loss, x_leaves, allow_unused=True)
    grad_x = tree_unflatten([torch.zeros_like(t) if g_ is None else g_
                             for t, g_ in zip(x_leaves, grads_x)], x_spec)
    y_last = tree_map(lambda t: t.detach(), y_cur)
    last_norm = T.norm(grad(steps[-1], argnums=1)(x_const, y_last))
    first, last = torch.stack([first_norm.to(last_norm.dtype), last_norm]).tolist()
    inner_converged = last <= first
    if not inner_converged and warn_inner:
        warnings.warn(f"itd: the {unroll} unrolled {inner_optimizer} steps increased "
                      f"|grad_y g| from {first:.3e} to {last:.3e}: they moved away from "
                      "stationarity (a step too large for the curvature, or Adam near y*, "
                      "whose normalized steps do not shrink with the gradient), so the "
                      "unrolled hypergradient may be meaningless; lower inner_lr or use sgd",
                      InnerNotConvergedWarning, stacklevel=3)
    info = HypergradInfo(method="itd", v=None, solve=None, residual=None, iterations=unroll,
                         hvp_count=truncate, grad_count=unroll + 2, fallback=None,
                         converged=True, outer_loss=outer_loss.detach(), step_size=inner_lr,
                         inner_grad_norm=last, inner_converged=inner_converged)
    return grad_x, info, y_last


def _detach(obj: Any) -> Any:
    return obj.detach() if isinstance(obj, torch.Tensor) else obj


# ---------------------------------------------------------------------------------------
# inner optimizers: TorchOpt's functional API, or the same formulas built in

class _TorchOptInner:
    """TorchOpt's functional optimizer: init / update / apply_updates, all differentiable."""

    def __init__(self, name: str, lr: float) -> None:
        import torchopt
        self._apply = torchopt.apply_updates
        if name == "sgd":
            self._impl = torchopt.sgd(lr)
        elif name == "momentum":
            self._impl = torchopt.sgd(lr, momentum=_MOMENTUM)
        else:
            self._impl = torchopt.adam(lr, betas=_ADAM_BETAS, eps=_ADAM_EPS,
                                       eps_root=_ADAM_EPS_ROOT)

    def init(self, params: Tree) -> Any:
        return self._impl.init(params)

    def update(self, grads: Tree, state: Any, *, params: Tree, inplace: bool) -> tuple[Tree, Any]:
        return self._impl.update(grads, state, params=params, inplace=inplace)

    def apply(self, params: Tree, updates: Tree) -> Tree:
        return self._apply(params, updates, inplace=False)


class _BuiltinInner:
    """The same update rules as TorchOpt (sgd; heavy ball b = mu b + g; Adam with bias
    correction and eps_root), written out for environments without TorchOpt."""

    def __init__(self, name: str, lr: float) -> None:
        self.name, self.lr = name, lr

    def init(self, params: Tree) -> Any:
        zeros = tree_map(torch.zeros_like, params)
        if self.name == "sgd":
            return ()
        if self.name == "momentum":
            return {"trace": zeros}
        return {"mu": zeros, "nu": tree_map(torch.zeros_like, params), "count": 0}

    def update(self, grads: Tree, state: Any, *, params: Tree, inplace: bool) -> tuple[Tree, Any]:
        lr = self.lr
        if self.name == "sgd":
            return tree_map(lambda g: -lr * g, grads), state
        if self.name == "momentum":
            trace = tree_map(lambda b, g: _MOMENTUM * b + g, state["trace"], grads)  # b_0 = 0
            return tree_map(lambda b: -lr * b, trace), {"trace": trace}
        b1, b2 = _ADAM_BETAS
        count = state["count"] + 1
        # Same operations in the same order as TorchOpt, so both agree to rounding.
        mu = tree_map(lambda m, g: m.mul(b1).add(g, alpha=1 - b1), state["mu"], grads)
        nu = tree_map(lambda n, g: n.mul(b2).addcmul(g, g, value=1 - b2), state["nu"], grads)
        c1, c2 = 1 - b1 ** count, 1 - b2 ** count
        updates = tree_map(lambda m, n: m.div(c1).div(n.div(c2).add(_ADAM_EPS_ROOT).sqrt()
                                                      .add(_ADAM_EPS)).mul(-lr), mu, nu)
        return updates, {"mu": mu, "nu": nu, "count": count}

    def apply(self, params: Tree, updates: Tree) -> Tree:
        return tree_map(lambda p, u: p + u, params, updates)


def make_inner_optimizer(name: str, lr: float, use_torchopt: bool | None = None):
    """A differentiable functional optimizer with ``init``, ``update`` and ``apply``."""
    if name not in INNER_OPTIMIZERS:
        raise ValueError(f"itd: inner_optimizer must be one of {INNER_OPTIMIZERS}, got {name!r}")
    if use_torchopt is None:
        try:
            import torchopt  # noqa: F401
            use_torchopt = True
        except ImportError:
            use_torchopt = False
    return _TorchOptInner(name, lr) if use_torchopt else _BuiltinInner(name, lr)
