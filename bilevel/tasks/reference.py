"""Reference computations to check bilevel results against: slow, exact, float64.

* :func:`inner_solution`: y*(x) = argmin_y g(x, y) by damped Newton (dense Hessian) or
  L-BFGS, to a gradient norm near machine precision.
* :func:`exact_hypergradient`: grad h(x) = grad_x f - (d^2 g/dx dy)^T H_yy^{-1} grad_y f
  at y*(x), with H_yy formed densely and factored (Cholesky).
* :func:`scalar_grid_search`: the best single regularization weight of
  :func:`~bilevel.tasks.hyperparameter_tuning` (the baseline per-feature weights must beat).
* :func:`oracle_cleaning`: the data-cleaning model trained on the clean examples only.

The functions take the objectives ``f(x, y, batch)``, ``g(x, y, batch)`` (full batch,
``batch=None``) with y a single tensor; build the problem in float64
(``dtype=torch.float64``) for reference-quality numbers: nothing here changes precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.func import grad

from ..inner import dense_hessian, minimize
from ..linalg import mixed_vjp

__all__ = [
    "ExactHypergradient",
    "dense_hessian",
    "exact_hypergradient",
    "inner_solution",
    "oracle_cleaning",
    "scalar_grid_search",
]

Objective = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


def _inner_of(problem_or_inner) -> Objective:
    return getattr(problem_or_inner, "inner", problem_or_inner)


def inner_solution(inner, x: torch.Tensor, y0: torch.Tensor, *, method: str = "auto",
                   tol: float = 1e-10, max_iter: int = 200) -> torch.Tensor:
    """y*(x) = argmin_y g(x, y, None), to ||grad_y g|| <= tol: :func:`bilevel.inner_solve`
    (damped Newton with the dense Hessian up to N = 2000, else L-BFGS and a Newton-CG
    polish) for a bare objective ``inner`` = g(x, y, batch) or a problem.

    Raises:
        RuntimeError (:class:`bilevel.inner.InnerSolveError`): the gradient norm is still
            above ``100 * tol`` after max_iter (the message gives it).
    """
    g = _inner_of(inner)
    x = x.detach()
    return minimize(lambda y: g(x, y, None), y0, tol=tol, method=method, max_iter=max_iter)


@dataclass
class ExactHypergradient:
    """Result of :func:`exact_hypergradient`.

    Attributes:
        grad: grad h(x), x-shaped.
        y: the inner solution y*(x) used.
        v: H_yy^{-1} grad_y f, y-shaped.
        inner_grad_norm: ||grad_y g(x, y)|| at the y used.
        hessian_min_eig, hessian_max_eig: extreme eigenvalues of H_yy (NaN for large N).
    """

    grad: torch.Tensor
    y: torch.Tensor
    v: torch.Tensor
    inner_grad_norm: float
    hessian_min_eig: float
    hessian_max_eig: float


def exact_hypergradient(problem=None, x: torch.Tensor | None = None,
                        y: torch.Tensor | None = None, *, outer: Objective | None = None,
                        inner: Objective | None = None, y0: torch.Tensor | None = None,
                        solve_inner: bool | None = None, tol: float = 1e-10,
                        eigenvalues_up_to: int = 3000) -> ExactHypergradient:
    """grad h(x) = grad_x f(x, y) - (d^2 g / dx dy)^T v, with H_yy v = grad_y f (dense solve).

    Args:
        problem: a ``BilevelProblem`` (for its ``outer`` / ``inner``), or None with
            ``outer`` and ``inner`` given.
        x: where to differentiate.
        y: the inner point; by default y*(x) from :func:`inner_solution` started at
            ``y0`` (default the problem's y0, else zeros needs y given).
        solve_inner: refine ``y`` to y*(x) first (default: only when y is None).
        tol: gradient tolerance of the inner solve.
        eigenvalues_up_to: report H_yy's extreme eigenvalues only when N is at most this
            (an extra O(N^3) eigendecomposition); NaN otherwise.

    Returns:
        :class:`ExactHypergradient` (grad at the y used; ``inner_grad_norm`` says how
        exact that y is).

    Raises:
        ValueError: H_yy is not positive definite at y (the implicit function theorem
            does not apply there).
    """
    f = outer if outer is not None else problem.outer
    g = inner if inner is not None else problem.inner
    if x is None:
        x = problem.x0
    x = x.detach()
    if solve_inner is None:
        solve_inner = y is None
    start = y if y is not None else (y0 if y0 is not None else problem.y0)
    y = inner_solution(g, x, start, tol=tol) if solve_inner else start.detach()
    gy_f = grad(lambda z: f(x, z, None))(y)
    H = dense_hessian(lambda z: g(x, z, None), y)
    chol, failed = torch.linalg.cholesky_ex(H)
    if int(failed) != 0:
        raise ValueError("exact_hypergradient: H_yy is not positive definite at this y "
                         "(Cholesky failed)")
    # the spectrum (a conditioning report) costs O(N^3) again: only for small N
    eigs = torch.linalg.eigvalsh(H)[[0, -1]].tolist() if H.shape[0] <= eigenvalues_up_to \
        else [math.nan, math.nan]
    v = torch.cholesky_solve(gy_f.reshape(-1, 1), chol).reshape(y.shape)
    gx_f = grad(lambda z: f(z, y, None))(x)
    hypergrad = gx_f - mixed_vjp(lambda a, b: g(a, b, None), x, y, v)
    inner_grad_norm = float(grad(lambda z: g(x, z, None))(y).norm())
    return ExactHypergradient(hypergrad, y, v, inner_grad_norm, eigs[0], eigs[1])


def scalar_grid_search(task, log_reg_grid: Sequence[float], y0: torch.Tensor | None = None
                       ) -> dict:
    """Validation loss of one shared regularization weight exp(s), s on a grid.

    For each s, x = s * ones(d), theta*(x) by Newton, then f(x, theta*). Warm-starts each
    inner solve from the previous optimum.

    Args:
        task: a :class:`~bilevel.tasks.hyperparameter_tuning.LogisticRegressionTask`.
        log_reg_grid: values of s = log(weight).

    Returns:
        dict with "log_reg" (grid), "val_loss" (list), "best_log_reg", "best_val_loss",
        "best_theta".
    """
    d = task.n_features
    like = dict(dtype=task.X_train.dtype, device=task.X_train.device)
    theta = torch.zeros(d + 1, **like) if y0 is None else y0
    losses, thetas = [], []
    for s in log_reg_grid:
        x = torch.full((d,), float(s), **like)
        theta = inner_solution(task.inner, x, theta)
        losses.append(float(task.outer(x, theta, None)))
        thetas.append(theta)
    best = min(range(len(losses)), key=losses.__getitem__)
    return {"log_reg": list(map(float, log_reg_grid)), "val_loss": losses,
            "best_log_reg": float(log_reg_grid[best]), "best_val_loss": losses[best],
            "best_theta": thetas[best]}


def oracle_cleaning(task, corrupted: torch.Tensor, normalization: str = "clean",
                    tol: float = 1e-6, max_iter: int = 200, strict: bool = True):
    """The data-cleaning model trained on the clean training examples only.

    Args:
        task: a :class:`~bilevel.tasks.data_cleaning.DataCleaningTask` (or its MLP
            variant: the same model, from its initial parameters).
        corrupted: bool mask (n,) of the replaced labels (the truth).
        normalization: "clean": minimize 1/n_clean sum_{clean} CE + penalty (a model
            fitted to the clean subset alone); "all": 1/n sum_{clean} CE + penalty
            (the inner objective g with weights exactly 1 on clean, 0 on corrupted
            examples: the best hard weights the bilevel problem can express).
        tol: gradient tolerance of the L-BFGS solve.
        max_iter: L-BFGS rounds (of 50 evaluations).
        strict: raise :class:`bilevel.InnerSolveError` when ||grad|| > 100 tol at the end
            (False: return the last iterate; measure its gradient yourself).

    Returns:
        The parameters (W (p+1, K), or the MLP's dict), detached, in the task's dtype.
    """
    clean = ~torch.as_tensor(corrupted, device=task.X_train.device).bool()
    n = clean.numel()
    if normalization == "clean":
        weights = clean.to(task.X_train.dtype) * (n / int(clean.sum()))
    elif normalization == "all":
        weights = clean.to(task.X_train.dtype)
    else:
        raise ValueError(f"oracle_cleaning: normalization must be 'clean' or 'all', "
                         f"got {normalization!r}")
    return minimize(lambda W: task.weighted_loss(W, weights), task.initial_params(),
                    method="lbfgs", tol=tol, max_iter=max_iter, strict=strict)
