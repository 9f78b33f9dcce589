"""Pieces shared by the bilevel algorithms: batch streams, inner gradient steps, the outer
optimizer and step-size estimates.

Every algorithm keeps its whole state in a plain dict of tensors and Python numbers, so
that :mod:`bilevel.checkpoint` can save it and a resumed run replays the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.func import grad, grad_and_value

from ..hypergrad.stepsize import inner_lambda_max
from ..linalg import LinearOperator, cg
from ..linalg import tree as T
from ..linalg.tree import Tree
from ..problem import BilevelProblem

__all__ = ["Algorithm", "BatchStream", "OuterOptimizer", "descent", "detach",
           "estimate_inner_lr", "gradient_steps", "newton_steps", "outer_gradients"]

_SEED_MOD = 2**62


def detach(tree: Tree) -> Tree:
    return T.tree_map(lambda t: t.detach(), tree)


class BatchStream:
    """Endless batches from a re-iterable data source, epoch after epoch, replayable.

    Each epoch's iterator is created under a forked CPU RNG seeded from (seed, stream id,
    epoch), and its first batch is drawn there too (a ``DataLoader``'s ``RandomSampler``
    draws its permutation on the first ``next``).  So the batch order depends only on the
    seed, and a resumed run re-creates the same epoch and skips the batches already used.
    A data source with its own ``generator`` is outside this control.

    ``data=None`` (full batch) yields ``None`` forever.
    """

    def __init__(self, data: Iterable | None, seed: int, stream_id: int, name: str) -> None:
        self.data, self.seed, self.stream_id, self.name = data, seed, stream_id, name
        self.epoch, self.position = 0, 0
        self._iterator = None
        self._pending: list = []

    def state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def restore(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], 0
        self._iterator = None
        if self.data is not None:
            for _ in range(state["position"]):
                self.next()

    def next(self) -> Any:
        if self.data is None:
            return None
        if self._iterator is None:
            self._open()
        if self._pending:
            batch = self._pending.pop()
        else:
            try:
                batch = next(self._iterator)
            except StopIteration:
                self.epoch, self.position = self.epoch + 1, 0
                self._open()
                batch = self._pending.pop()
        self.position += 1
        return batch

    def _open(self) -> None:
        epoch_seed = (self.seed * 1_000_003 + self.stream_id * 7_919 + self.epoch) % _SEED_MOD
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed)
            self._iterator = iter(self.data)
            try:
                self._pending = [next(self._iterator)]
            except StopIteration:
                raise ValueError(f"{self.name} yielded no batches in epoch {self.epoch}") from None


class OuterOptimizer:
    """Functional SGD or Adam on a tree x; the state is a dict (checkpointable).

    SGD: x <- x - lr g.  Adam (Kingma and Ba 2015): m <- b1 m + (1 - b1) g,
    s <- b2 s + (1 - b2) g^2, x <- x - lr (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps).
    ``lr`` is a number or a function of the outer step k (a schedule).
    """

    def __init__(self, name: str, lr: float | Callable[[int], float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if name not in ("sgd", "adam"):
            raise ValueError(f"outer_optimizer must be 'sgd' or 'adam', got {name!r}")
        self.name, self.lr, self.betas, self.eps = name, lr, betas, eps

    def init(self, x: Tree) -> dict:
        if self.name == "sgd":
            return {}
        return {"count": 0, "m": T.zeros_like(x), "s": T.zeros_like(x)}

    def learning_rate(self, k: int) -> float:
        """The step size at outer step k."""
        return self.lr(k) if callable(self.lr) else self.lr

    def step(self, x: Tree, g: Tree, state: dict, k: int) -> tuple[Tree, dict]:
        lr = self.learning_rate(k)
        if self.name == "sgd":
            return T.axpy(-lr, g, x), state
        b1, b2 = self.betas
        count = state["count"] + 1
        m = T.tree_map(lambda mi, gi: b1 * mi + (1 - b1) * gi, state["m"], g)
        s = T.tree_map(lambda si, gi: b2 * si + (1 - b2) * gi * gi, state["s"], g)
        c1, c2 = 1 - b1 ** count, 1 - b2 ** count
        x = T.tree_map(lambda xi, mi, si: xi - lr * (mi / c1) / ((si / c2).sqrt() + self.eps),
                       x, m, s)
        return x, {"count": count, "m": m, "s": s}


def gradient_steps(objectives: list[Callable[[Tree, Tree], torch.Tensor]], x: Tree, y: Tree,
                   lr: float) -> tuple[Tree, torch.Tensor | None]:
    """Gradient descent y <- y - lr grad_y g_t(x, y), one step per objective.

    Returns:
        (y, ||grad_y g|| of the last step as a 0-dim tensor, or None for no steps).
        No host synchronization.
    """
    y, _, norm = descent(objectives, x, y, lr)
    return y, norm


def descent(objectives: list[Callable[[Tree, Tree], torch.Tensor]], x: Tree, y: Tree,
            lr: float) -> tuple[Tree, torch.Tensor | None, torch.Tensor | None]:
    """:func:`gradient_steps`, also returning ||grad_y g|| of the first step:
    (y, first norm, last norm).  No host synchronization."""
    first = norm = None
    for t, g in enumerate(objectives):
        g_y = grad(g, argnums=1)(x, y)
        if t == 0 or t == len(objectives) - 1:
            norm = T.norm(g_y)
            first = norm if t == 0 else first
        y = T.axpy(-lr, g_y, y)
    return y, first, norm


def newton_steps(objectives: list[Callable[[Tree, Tree], torch.Tensor]], x: Tree, y: Tree, *,
                 tol: float | None = None, cg_tol: float = 1e-6,
                 cg_maxiter: int | None = None) -> tuple[Tree, torch.Tensor | None, int, int]:
    """Damped Newton steps y <- y - t H^{-1} grad_y g_t(x, y), one per objective.

    The Newton direction d solves H_yy d = grad_y g by matrix-free CG on one
    linearization (``cg_tol`` relative residual, at most ``cg_maxiter`` iterations: an
    inexact Newton step; CG iterates from 0 on an SPD system are descent directions).
    The step t starts at 1 and is halved until the Armijo condition
    g(y - t d) <= g(y) - 1e-4 t grad^T d holds, up to round-off of g's value (near y*
    the decrease drowns in it, and the full step is then taken).  If d is not a
    descent direction (H_yy not positive definite), the step falls back to -grad.

    Newton's local quadratic convergence makes the warm-started inner problem cheap to
    solve to high accuracy even when it is ill-conditioned, where gradient descent with
    step 1 / lambda_max needs O(kappa) steps.  One host sync per line-search trial.

    Args:
        objectives: one inner objective y -> g(x, y) (batch bound) per step.
        x, y: the outer variable and the warm start.
        tol: stop early once ||grad_y g|| <= tol (None: take every step).

    Returns:
        (y, ||grad_y g|| at the last gradient evaluated (0-dim tensor; before the last
        step taken, or at the final y when ``tol`` stopped the loop), Newton steps
        taken, Hessian-vector products used).
    """
    norm, taken, products = None, 0, 0
    for g in objectives:
        g_y, value = grad_and_value(g, argnums=1)(x, y)
        norm = T.norm(g_y)
        if tol is not None and float(norm) <= tol:
            break
        hessian = LinearOperator.from_hvp(lambda yy: g(x, yy), y)
        d, info = cg(hessian, g_y, tol=cg_tol, maxiter=cg_maxiter)
        products += info.iterations + 1
        slope = float(T.dot(g_y, d))
        if not slope > 0 or info.reason.startswith("non-positive curvature"):
            d, slope = g_y, float(norm) ** 2  # not a descent direction: gradient step
        value = float(value)
        slack = 10 * torch.finfo(norm.dtype).eps * abs(value)
        t = 1.0
        for _ in range(30):
            if float(g(x, T.axpy(-t, d, y))) <= value - 1e-4 * t * slope + slack:
                break
            t /= 2
        y = T.axpy(-t, d, y)
        taken += 1
    return y, norm, taken, products


def outer_gradients(f: Callable[[Tree, Tree], torch.Tensor], x: Tree, y: Tree):
    """((grad_x f, grad_y f), f) at (x, y) in one pass."""
    return grad_and_value(f, argnums=(0, 1))(x, y)


def estimate_inner_lr(g: Callable[[Tree, Tree], torch.Tensor], x: Tree,
                      y: Tree) -> tuple[float, int]:
    """1 / lambda_max(H_yy g) at (x, y) by power iteration: (step, products used)."""
    lam, used = inner_lambda_max(g, x, y)
    return 1.0 / lam, used


class Algorithm:
    """Interface of an outer loop: ``init_state()`` and ``step(state, k)``.

    ``step`` returns the new state and a stats dict with the hypergradient estimate
    ("hypergrad", x-shaped), 0-dim tensors (outer_loss, hypergrad_norm, inner_grad_norm)
    and Python numbers (solve_residual, hvp_count,
    grad_count, ...).  The driver (:func:`bilevel.solve`) syncs them once per outer step.
    """

    name = "base"
    defaults: dict = {}

    def __init__(self, problem: BilevelProblem, streams: tuple[BatchStream, BatchStream], *,
                 inner_steps: int, inner_lr: float | None, outer_optimizer: OuterOptimizer,
                 lr_every: int, options: dict) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(f"solve: unknown option(s) {unknown} for method {self.name!r}; "
                            f"allowed: {sorted(self.defaults)}")
        self.problem = problem
        self.outer_stream, self.inner_stream = streams
        self.inner_steps = inner_steps
        self.fixed_inner_lr = inner_lr
        self.outer_optimizer = outer_optimizer
        self.lr_every = lr_every
        self.options = {**self.defaults, **options}

    # helpers ---------------------------------------------------------------------------
    def f(self) -> Callable[[Tree, Tree], torch.Tensor]:
        return self.problem.outer_at(self.outer_stream.next())

    def g(self) -> Callable[[Tree, Tree], torch.Tensor]:
        return self.problem.inner_at(self.inner_stream.next())

    def inner_lr(self, state: dict, k: int, x: Tree, y: Tree,
                 force: bool = False) -> tuple[float, int]:
        """The inner step: fixed, or 1/lambda_max re-estimated every ``lr_every`` steps
        (and whenever ``force``).

        The estimate uses the problem's first inner batch so it draws nothing from the
        stream (a resumed run sees the same batches)."""
        if self.fixed_inner_lr is not None:
            return self.fixed_inner_lr, 0
        if state.get("inner_lr") is None or k % self.lr_every == 0 or force:
            g = self.problem.inner_at(self.problem.first_inner_batch)
            lr, used = estimate_inner_lr(g, x, y)
            state["inner_lr"] = lr
            return lr, used
        return state["inner_lr"], 0

    def with_stale_step_guard(self, state: dict, k: int, x: Tree, y: Tree,
                              run: Callable[[float], tuple[Any, torch.Tensor | None,
                                                           torch.Tensor | None, int]]
                              ) -> tuple[Any, torch.Tensor | None, float, int, int]:
        """``run(lr)`` (inner gradient steps from y with step lr), safe against a stale step.

        A step 1/lambda_max estimated at an earlier x can exceed 2/lambda_max(H_yy) once x
        has moved (e.g. exp-parametrized regularization weights that grew), and gradient
        descent then diverges.  On a convex L-smooth g, gradient descent with a step
        <= 2/L never increases ||grad_y g|| (grad_{t+1} = (I - lr H_avg) grad_t with
        0 <= H_avg <= L I), so growth is the symptom: when the default step was not
        estimated in this outer step and ||grad_y g|| grew from the first to the last
        step (by a factor 2 with minibatches, whose norms are noisy), the step is
        re-estimated at (x, y) and ``run`` is called again (same batches).  One host
        sync (none with a fixed or fresh step).  The one place of this rule: every
        algorithm's inner steps go through it.

        Args:
            run: lr -> (result, ||grad_y g|| of the first step, of the last step (0-dim
                tensors, or None without steps), gradients evaluated).

        Returns:
            (result, last norm, step used, Hessian-vector products of step estimates,
            gradients evaluated).
        """
        lr, products = self.inner_lr(state, k, x, y)
        result, first, last, grads = run(lr)
        if products == 0 and self.fixed_inner_lr is None and first is not None:
            factor = 1.0 if self.problem.inner_data is None else 2.0
            if not float(last) <= factor * float(first):  # also catches nan/inf
                lr, more = self.inner_lr(state, k, x, y, force=True)
                products += more
                result, _, last, more_grads = run(lr)
                grads += more_grads
        return result, last, lr, products, grads

    def guarded_descent(self, state: dict, k: int, x: Tree, y: Tree,
                        objectives: list[Callable[[Tree, Tree], torch.Tensor]],
                        scale: float = 1.0) -> tuple[Tree, torch.Tensor | None, float, int, int]:
        """Gradient steps of size ``scale`` * inner step under :meth:`with_stale_step_guard`.
        With a single step, one more gradient at the new y (same batch) gives the last norm.

        Returns:
            (y, ||grad_y g|| of the last step, step used, Hessian-vector products of
            step estimates, extra gradients beyond one per objective).
        """
        def run(lr: float):
            y_new, first, last = descent(objectives, x, y, lr * scale)
            if len(objectives) == 1:
                last = T.norm(grad(objectives[0], argnums=1)(x, y_new))
                return y_new, first, last, 2
            return y_new, first, last, len(objectives)

        y_new, last, lr, products, grads = self.with_stale_step_guard(state, k, x, y, run)
        # one gradient per objective is counted by the caller
        return y_new, last, lr, products, grads - len(objectives)

    def inner_solution(self, state: dict) -> Tree:
        """The state's approximation of y*(x) (what the result and callbacks call y)."""
        return state["y"]

    def init_state(self) -> dict:
        raise NotImplementedError

    def step(self, state: dict, k: int) -> tuple[dict, dict]:
        raise NotImplementedError
