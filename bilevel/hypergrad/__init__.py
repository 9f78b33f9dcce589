"""Hypergradients grad h(x) = d/dx f(x, y*(x)) of a :class:`~bilevel.BilevelProblem`.

``bilevel.hypergrad(problem, x, y, method="cg", **options) -> (grad_x, HypergradInfo)``

Engines (interchangeable: same call, same result type):

* ``"cg"``, ``"minres"``, ``"neumann"``: implicit differentiation (AID, see
  :mod:`bilevel.hypergrad.aid`): solve H_yy v = grad_y f at (x, y), then
  grad_x f - (d^2 g / dx dy)^T v.  Options: ``tol`` (1e-6), ``maxiter``, ``v0`` (warm
  start), ``check_every``, ``fallback`` (CG -> MINRES on non-positive curvature, default
  True); Neumann: ``alpha`` (default 1 / lambda_max), ``maxiter`` (100 terms).
  ``cuda_graph``: ``"auto"`` (default: the solver replays CUDA graphs of its iterations
  when a solve is long), ``False`` (no graphs), or ``True``: the whole call is captured
  once per (problem, shapes, options) and replayed, one host synchronization per call
  (see :mod:`bilevel.hypergrad.graph`; on a CPU, with minibatches or where capture fails
  it runs eagerly and ``info.cuda_graph`` says why).
* ``"itd"``: reverse mode through unrolled inner steps from y (see
  :mod:`bilevel.hypergrad.itd`).  Options: ``unroll`` K (100), ``truncate`` T (K),
  ``inner_lr`` (default 1 / lambda_max for sgd / momentum, 1e-2 for adam),
  ``inner_optimizer`` ("sgd" | "momentum" | "adam"), ``use_torchopt`` (default: when
  installed).

Both take ``outer_batch`` and ``inner_batch`` (default: the problem's first batch, or
None for full batch).  This module is itself callable, so ``bilevel.hypergrad(...)`` and
``from bilevel.hypergrad import hypergrad`` are the same function.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import torch

from ..linalg import tree as T
from ..linalg.tree import Tree
from ..problem import BilevelProblem
from .aid import AID_SOLVERS, aid_hypergrad
from .graph import captured_hypergrad, clear_cuda_graphs
from .info import HypergradInfo
from .itd import INNER_OPTIMIZERS, itd_hypergrad
from .stepsize import inner_lambda_max

__all__ = ["METHODS", "HypergradInfo", "aid_hypergrad", "clear_cuda_graphs", "hypergrad",
           "itd_hypergrad"]

METHODS = AID_SOLVERS + ("itd",)
_DEFAULT = object()
_ADAM_DEFAULT_LR = 1e-2


def hypergrad(problem: BilevelProblem, x: Tree, y: Tree, method: str = "cg", *,
              outer_batch: Any = _DEFAULT, inner_batch: Any = _DEFAULT,
              **options: Any) -> tuple[Tree, HypergradInfo]:
    """One hypergradient of ``problem`` at (x, y).

    Args:
        problem: the bilevel problem (its f and g are used; x0, y0 are not).
        x: outer variable (like ``problem.x0``).
        y: inner variable: for AID a point at (or near) the inner solution y*(x); for ITD
            the start of the unrolled inner loop.
        method: "cg", "minres", "neumann" or "itd".
        outer_batch, inner_batch: the batches to use (default: the problem's first batch,
            None for full batch).
        **options: the engine's options (module docstring); unknown names raise TypeError.

    Returns:
        (grad_x, info): grad_x has x's structure; ``info`` is a :class:`HypergradInfo`.
        Check ``info.converged``: a linear solve that missed its tolerance is reported,
        not hidden.  CG meeting non-positive curvature falls back to MINRES
        (``info.fallback`` says so).
    """
    if method not in METHODS:
        raise ValueError(f"hypergrad: method must be one of {METHODS}, got {method!r}")
    if not isinstance(problem, BilevelProblem):
        raise TypeError("hypergrad: problem must be a BilevelProblem, got "
                        f"{type(problem).__name__}")
    _check_like("x", x, problem.x0)
    _check_like("y", y, problem.y0)
    outer_batch = problem.first_outer_batch if outer_batch is _DEFAULT else outer_batch
    inner_batch = problem.first_inner_batch if inner_batch is _DEFAULT else inner_batch
    f, g = problem.outer_at(outer_batch), problem.inner_at(inner_batch)
    if method in AID_SOLVERS:
        allowed = {"tol", "maxiter", "v0", "check_every", "fallback", "cuda_graph"}
        if method == "neumann":
            allowed |= {"alpha"}
        _check_options(method, options, allowed)
        if options.get("cuda_graph") is True:
            options.pop("cuda_graph")
            return captured_hypergrad(problem, f, g, x, y, solver=method,
                                      full_batch=outer_batch is None and inner_batch is None,
                                      **options)
        return aid_hypergrad(f, g, x, y, solver=method, **options)
    _check_options(method, options, {"unroll", "truncate", "inner_lr", "inner_optimizer",
                                     "use_torchopt"})
    extra_products = 0
    if options.get("inner_lr") is None:
        if options.get("inner_optimizer", "sgd") == "adam":
            options["inner_lr"] = _ADAM_DEFAULT_LR
        else:
            lam, extra_products = inner_lambda_max(g, x, y)
            options["inner_lr"] = 1.0 / lam
    if options.get("inner_optimizer", "sgd") not in INNER_OPTIMIZERS:
        raise ValueError(f"hypergrad: inner_optimizer must be one of {INNER_OPTIMIZERS}, "
                         f"got {options['inner_optimizer']!r}")
    grad_x, info, _ = itd_hypergrad(f, g, x, y, **options)
    info.hvp_count += extra_products
    return grad_x, info


def _check_like(name: str, value: Tree, reference: Tree) -> None:
    """x / y must have the structure and shapes of the problem's x0 / y0."""
    try:
        T.tree_map(lambda a, b: None, value, reference)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"hypergrad: {name} does not have the structure of the problem's "
                         f"{name}0: {err}") from None
    for a, b in zip(T.leaves(value), T.leaves(reference)):
        if not isinstance(a, torch.Tensor) or a.shape != b.shape:
            got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(f"hypergrad: {name} has a tensor of shape {got} where the "
                             f"problem's {name}0 has {tuple(b.shape)}")


def _check_options(method: str, options: dict, allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"hypergrad: unknown option(s) {unknown} for method {method!r}; "
                        f"allowed: {sorted(allowed)}")


class _CallableModule(types.ModuleType):
    """Lets ``bilevel.hypergrad`` be both this package and the function it exports."""

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Tree, HypergradInfo]:
        return hypergrad(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
