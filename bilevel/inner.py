"""``bilevel.inner_solve``: the inner solution y*(x) = argmin_y g(x, y), to high accuracy.

Slow and exact, for checks and references, not for the outer loop (the algorithms take a
few warm-started steps per outer step instead):

* damped Newton with the dense Hessian (N <= 2000 entries by default): quadratic
  convergence to machine precision; where the Hessian is not positive definite (a
  non-convex g) it is shifted, H + mu I, until Cholesky succeeds (Levenberg);
* L-BFGS with a strong-Wolfe line search for larger N, then a few Newton-CG steps that
  take it the last digits (L-BFGS stalls a few digits above machine precision).

y may be a tensor or a dict of tensors (a model's parameters): the solvers run on one
flat vector of all entries.  Build the problem in float64 for reference-quality answers:
nothing here changes precision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import grad, vmap

from .linalg import LinearOperator, cg, hvp_closure
from .linalg import tree as T
from .linalg.tree import Tree

__all__ = ["InnerSolveError", "dense_hessian", "inner_solve", "minimize"]

_DEFAULT = object()
NEWTON_MAX_N = 2000


class InnerSolveError(RuntimeError):
    """The inner problem was not solved to the requested gradient norm."""


def inner_solve(problem: Any, x: Tree, y0: Tree | None = None, *, tol: float = 1e-10,
                method: str = "auto", max_iter: int = 200,
                batch: Any = _DEFAULT) -> Tree:
    """y*(x) = argmin_y g(x, y, batch) of a :class:`~bilevel.BilevelProblem`, to
    ||grad_y g|| <= tol.

    Args:
        problem: the bilevel problem (its ``inner`` is used).
        x: the outer variable.
        y0: the starting point (default ``problem.y0``); a warm start near y*(x) makes
            the solve short.
        tol: target gradient norm.
        method: "newton" (dense Hessian), "lbfgs" or "auto" (Newton up to 2000 entries).
        max_iter: Newton iterations, or L-BFGS rounds of 50 evaluations.
        batch: the inner batch (default: the problem's first, None for full batch).

    Returns:
        y*(x) with y0's structure (detached).

    Raises:
        InnerSolveError: ||grad_y g|| is still above 100 tol after ``max_iter`` (the
            message gives it): a result is never returned silently unsolved.
    """
    batch = problem.first_inner_batch if batch is _DEFAULT else batch
    g = problem.inner
    x = T.tree_map(lambda t: t.detach(), x)
    return minimize(lambda y: g(x, y, batch), problem.y0 if y0 is None else y0, tol=tol,
                    method=method, max_iter=max_iter)


def minimize(fn: Callable[[Tree], torch.Tensor], y0: Tree, *, tol: float = 1e-10,
             method: str = "auto", max_iter: int = 200, strict: bool = True) -> Tree:
    """argmin_y fn(y) from y0 to ||grad fn|| <= tol (the engine of :func:`inner_solve`);
    ``strict=False`` returns the last iterate instead of raising (the caller measures
    ||grad fn|| itself and reports it)."""
    flat0, unflatten = T.flatten(T.tree_map(lambda t: t.detach(), y0))
    flat_fn = lambda v: fn(unflatten(v))
    y = flat0.clone()
    if method == "auto":
        method = "newton" if y.numel() <= NEWTON_MAX_N else "lbfgs"
    if method == "newton":
        y = _newton(flat_fn, y, tol, max_iter)
    elif method == "lbfgs":
        y = _lbfgs(flat_fn, y, tol, max_iter)
        y = _newton_cg_polish(flat_fn, y, tol)
    else:
        raise ValueError(f"inner_solve: method must be 'auto', 'newton' or 'lbfgs', "
                         f"got {method!r}")
    residual = float(grad(flat_fn)(y).norm())
    if strict and not residual <= 100 * tol:
        raise InnerSolveError(f"inner_solve ({method}): ||grad_y g|| = {residual:.3e} after "
                              f"{max_iter} iterations, above 100 * tol = {100 * tol:.1e}")
    return T.tree_map(lambda t: t.clone(), unflatten(y))


def dense_hessian(fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor,
                  chunk: int = 512) -> torch.Tensor:
    """The dense Hessian of a scalar fn at y, as an (N, N) matrix (N = y.numel()).

    Columns are Hessian-vector products against unit vectors, ``chunk`` of them at a
    time through ``vmap`` over one linearization (memory ~ chunk x one backward pass).
    The result is symmetrized, (H + H^T) / 2, to remove round-off asymmetry.
    """
    n = y.numel()
    product = hvp_closure(lambda z: fn(z.reshape(y.shape)), y.reshape(-1))
    eye = torch.eye(n, dtype=y.dtype, device=y.device)
    H = torch.cat([vmap(product)(eye[i:i + chunk]) for i in range(0, n, chunk)])
    return (H + H.T) / 2


def _newton(fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, tol: float,
            max_iter: int) -> torch.Tensor:
    for _ in range(max_iter):
        gy = grad(fn)(y)
        if float(gy.norm()) <= tol:
            return y
        step = _newton_step(dense_hessian(fn, y), gy)
        # Near y* the decrease of fn drowns in round-off: there accept the full step
        # when it lowers ||grad||, else backtrack on fn (Armijo).
        if float(grad(fn)(y - step).norm()) < 0.5 * float(gy.norm()):
            y = y - step
            continue
        value, t = float(fn(y)), 1.0
        slope = float((gy * step).sum())
        while float(fn(y - t * step)) > value - 1e-4 * t * slope and t > 1e-10:
            t /= 2
        y = y - t * step
    return y


def _newton_step(H: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """(H + mu I)^{-1} grad with the smallest mu in 0, 1e-10 s, 1e-9 s, ... (s = max |H_ii|)
    for which Cholesky succeeds: a descent direction also where H is not positive definite."""
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    scale = float(H.diagonal().abs().max()) or 1.0
    mu = 0.0
    for _ in range(30):
        chol, failed = torch.linalg.cholesky_ex(H + mu * eye)
        if int(failed) == 0:
            return torch.cholesky_solve(gy.reshape(-1, 1), chol).reshape(gy.shape)
        mu = 1e-10 * scale if mu == 0.0 else 10 * mu
    return gy / scale  # not reached for a finite H; a gradient step


def _lbfgs(fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, tol: float,
           max_iter: int) -> torch.Tensor:
    param = y.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([param], max_iter=50, tolerance_grad=tol / 10,
                            tolerance_change=0.0, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = fn(param)
        loss.backward()
        return loss

    for _ in range(max_iter):
        opt.step(closure)
        if float(grad(fn)(param.detach()).norm()) <= tol:
            break
    return param.detach()


def _newton_cg_polish(fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, tol: float,
                      steps: int = 5, maxiter: int = 500) -> torch.Tensor:
    """A few Newton steps with matrix-free CG solves, from a point already near y*; a step
    that does not lower ||grad|| (not near y* yet, or a non-convex region) ends it."""
    gy = grad(fn)(y)
    for _ in range(steps):
        norm = float(gy.norm())
        if norm <= tol:
            break
        step, info = cg(LinearOperator.from_hvp(fn, y), gy, tol=1e-12,
                        maxiter=min(10 * y.numel(), maxiter))
        if info.negative_curvature:
            break
        g_new = grad(fn)(y - step)
        if not float(g_new.norm()) < norm:
            break
        y, gy = y - step, g_new
    return y
