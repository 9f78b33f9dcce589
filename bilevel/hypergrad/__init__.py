"""Hypergradients grad h(x) = d/dx f(x, y*(x)) of a :class:`~bilevel.BilevelProblem`.

``bilevel.hypergrad(problem, x, y, method="cg", **options) -> (grad_x, HypergradInfo)``

Engines (interchangeable: same call, same result type):

* implicit differentiation (AID, see :mod:`bilevel.hypergrad.aid`): solve
  (H + lam I) v = grad_y f at (x, y), then grad_x f - (d^2 g / dx dy)^T v.  The linear
  solver is a value: ``solve=bilevel.linalg.cg`` (or ``minres``, ``neumann``, ``gmres``,
  ``functools.partial(cg, maxiter=50)``, ``bilevel.linalg.as_solver("neumann",
  alpha=0.1)``, any callable ``solve(A, b, *, x0, tol, maxiter, ...) -> (x, SolveInfo)``);
  ``method="cg"`` / ``"minres"`` / ``"neumann"`` are shorthands for it.  Options: ``tol``
  (1e-6), ``maxiter``, ``v0`` (warm start), ``check_every``, ``ridge`` (lam, 0.0),
  ``fallback`` ("ridge": on non-positive curvature damp with lam doubling from 1e-4
  lambda_max, at most 10 times; "minres": re-solve with MINRES; None), ``hessian``
  ("exact" or "gauss-newton": J^T H_l J for a problem given as ``inner_output`` /
  ``inner_loss``); Neumann by name: ``alpha`` (default 1 / lambda_max), ``maxiter`` (100
  terms).  ``cuda_graph``: ``"auto"`` (default: on a GPU, the whole call is captured as
  CUDA graphs the second time the same problem, shapes and options come, and replayed
  from then on; the solver replays graphs of its iterations when a solve is long),
  ``True`` (capture on the first call), ``False`` (no graphs); see
  :mod:`bilevel.hypergrad.graph` (on a CPU, with minibatches or where capture fails it
  runs eagerly and ``info.cuda_graph`` says why).  A y far from y*(x) is reported
  (``info.inner_grad_norm``, ``info.inner_converged``, an ``InnerNotConvergedWarning``).
* ``"itd"``: reverse mode through unrolled inner steps from y (see
  :mod:`bilevel.hypergrad.itd`).  Options: ``unroll`` K (100), ``truncate`` T (K),
  ``inner_lr`` (default 1 / lambda_max for sgd / momentum, 1e-2 for adam),
  ``inner_optimizer`` ("sgd" | "momentum" | "adam"), ``use_torchopt`` (default: when
  installed).  Unrolled steps that move away from stationarity are reported the same way.

Both take ``outer_batch`` and ``inner_batch`` (default: the problem's first batch, or
None for full batch).  This module is itself callable, so ``bilevel.hypergrad(...)`` and
``from bilevel.hypergrad import hypergrad`` are the same function.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import torch

from ..linalg import as_solver
from ..linalg import tree as T
from ..linalg.tree import Tree
from ..problem import BilevelProblem
from .aid import AID_SOLVERS, aid_hypergrad
from .graph import captured_hypergrad, clear_cuda_graphs
from .info import HypergradInfo
from .itd import INNER_OPTIMIZERS, itd_hypergrad
from .stepsize import inner_lambda_max
from .system import InnerNotConvergedWarning

__all__ = ["METHODS", "HypergradInfo", "InnerNotConvergedWarning", "aid_hypergrad",
           "clear_cuda_graphs", "hypergrad", "itd_hypergrad"]

METHODS = (*AID_SOLVERS, "itd")
_DEFAULT = object()
_ADAM_DEFAULT_LR = 1e-2
_AID_OPTIONS = {"tol", "maxiter", "v0", "check_every", "fallback", "cuda_graph", "ridge",
                "hessian", "solve"}


def hypergrad(problem: BilevelProblem, x: Tree, y: Tree, method: str | None = None, *,
              outer_batch: Any = _DEFAULT, inner_batch: Any = _DEFAULT,
              **options: Any) -> tuple[Tree, HypergradInfo]:
    """One hypergradient of ``problem`` at (x, y).

    Args:
        problem: the bilevel problem (its f and g are used; x0, y0 are not).
        x: outer variable (like ``problem.x0``).
        y: inner variable: for AID a point at (or near) the inner solution y*(x); for ITD
            the start of the unrolled inner loop.
        method: "cg", "minres", "neumann" (AID with that solver) or "itd"; default "cg",
            or AID with the solver given as ``solve=``.
        outer_batch, inner_batch: the batches to use (default: the problem's first batch,
            None for full batch).
        **options: the engine's options (module docstring); unknown names raise TypeError.

    Returns:
        (grad_x, info): grad_x has x's structure; ``info`` is a :class:`HypergradInfo`.
        Check ``info.converged``: a linear solve that missed its tolerance is reported,
        not hidden; ``info.inner_converged``: y was near y*(x).
    """
    if method is not None and method not in METHODS:
        raise ValueError(f"hypergrad: method must be one of {METHODS} (or pass the linear "
                         f"solver as solve=), got {method!r}")
    if not isinstance(problem, BilevelProblem):
        raise TypeError("hypergrad: problem must be a BilevelProblem, got "
                        f"{type(problem).__name__}")
    _check_like("x", x, problem.x0)
    _check_like("y", y, problem.y0)
    outer_batch = problem.first_outer_batch if outer_batch is _DEFAULT else outer_batch
    inner_batch = problem.first_inner_batch if inner_batch is _DEFAULT else inner_batch
    f, g = problem.outer_at(outer_batch), problem.inner_at(inner_batch)
    if method != "itd":
        _check_options(method or "aid", options,
                       _AID_OPTIONS | ({"alpha"} if method == "neumann" else set()))
        if method is not None and "solve" in options:
            raise TypeError(f"hypergrad: method={method!r} and solve= both name the linear "
                            "solver; give one of them")
        solve = as_solver(options.pop("solve", method or "cg"))
        if options.get("alpha") is not None:
            solve = solve.configure(alpha=options.pop("alpha"))
        options.pop("alpha", None)
        return captured_hypergrad(problem, f, g, x, y, solve=solve,
                                  full_batch=outer_batch is None and inner_batch is None,
                                  cuda_graph=options.pop("cuda_graph", "auto"),
                                  split=problem.inner_split_at(inner_batch), **options)
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
    if isinstance(value, torch.Tensor) and isinstance(reference, torch.Tensor):
        if value.shape == reference.shape:  # the common case, checked without tree walks
            return
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
