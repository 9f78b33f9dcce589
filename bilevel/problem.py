"""``BilevelProblem``: the objectives, the starting point and the data of a bilevel program.

    min_x  h(x) = f(x, y*(x))        (outer: validation loss over hyperparameters x)
    s.t.   y*(x) = argmin_y g(x, y)  (inner: training loss over weights y)

f and g are plain functions ``f(x, y, batch)``, ``g(x, y, batch)`` returning a real scalar
tensor; x and y are tensors or dicts of tensors (a model's parameters).  ``outer_data`` and
``inner_data`` are iterables of batches (a list, a ``DataLoader``...), re-iterated every
epoch; ``None`` means full batch, and the objective is then called with ``batch=None``.

Everything that can be checked cheaply is checked once, up front, with an error that names
what is wrong and where: the variables' types, dtypes and devices, NaN/inf in them or in the
first batch of data, and one evaluation of f and g at (x0, y0) on the first batch (which
catches shape mismatches between data and variables before any solver runs).

For neural networks the inner objective may be given split as a loss of the model's
output, g(x, y, batch) = l(x, z(x, y, batch), batch) (``inner_output`` z, ``inner_loss``
l): the hypergradient engines can then use the Gauss-Newton matrix J^T (d^2 l / dz^2) J,
positive semidefinite by construction, instead of the (indefinite) Hessian of g
(``hessian="gauss-newton"``).  z may return a tensor or a dict of tensors, so a weight
penalty on y is part of l when z also passes y through (e.g. ``{"logits": ..., "y": y}``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from .linalg import tree as T
from .linalg.tree import Tree

__all__ = ["BilevelProblem", "Objective"]

Objective = Callable[[Tree, Tree, Any], torch.Tensor]


class BilevelProblem:
    """A bilevel program min_x f(x, y*(x)), y*(x) = argmin_y g(x, y).

    Args:
        outer: f(x, y, batch) -> scalar tensor, the outer (validation) objective.
        inner: g(x, y, batch) -> scalar tensor, the inner (training) objective; the
            hypergradient engines assume it is twice differentiable in y with a
            positive definite Hessian H_yy near the inner solution.  May be None when
            ``inner_output`` and ``inner_loss`` are given (g is then their composition).
        x0: initial outer variable: a floating tensor or a dict of floating tensors.
        y0: initial inner variable, same rules.
        outer_data: iterable of batches for f, or None (full batch: ``batch=None``).
        inner_data: iterable of batches for g, or None.
        inner_output: z(x, y, batch) -> the model's output (a tensor or a dict of them).
        inner_loss: l(x, z, batch) -> scalar tensor, with g = l(x, z(x, y, batch), batch).

    Attributes:
        outer, inner, x0, y0, outer_data, inner_data: as given (x0, y0 detached copies).
        first_outer_batch, first_inner_batch: the batches used for validation (None for
            full batch); :func:`bilevel.hypergrad` uses them by default.

    Raises:
        TypeError: a variable is not a tensor / dict of floating tensors, an objective is
            not callable, or data is not iterable.
        ValueError: mixed devices or dtypes, NaN/inf in x0, y0 or the first batch, an
            empty data iterable, or f / g failing or not returning a finite real scalar
            at (x0, y0) (the message names the objective and includes the original error).
    """

    def __init__(self, outer: Objective, inner: Objective | None, x0: Tree, y0: Tree,
                 outer_data: Iterable | None = None, inner_data: Iterable | None = None, *,
                 inner_output: Callable[[Tree, Tree, Any], Any] | None = None,
                 inner_loss: Callable[[Tree, Any, Any], torch.Tensor] | None = None) -> None:
        if (inner_output is None) != (inner_loss is None):
            raise TypeError("BilevelProblem: give inner_output and inner_loss together (the "
                            "split g(x, y, batch) = inner_loss(x, inner_output(x, y, batch), "
                            "batch)), or neither")
        for name, fn in (("inner_output", inner_output), ("inner_loss", inner_loss)):
            if fn is not None and not callable(fn):
                raise TypeError(f"BilevelProblem: {name} must be callable, got "
                                f"{type(fn).__name__}")
        if inner is None and inner_output is not None:
            inner = _composed(inner_output, inner_loss)
        for name, fn in (("outer", outer), ("inner", inner)):
            if not callable(fn):
                raise TypeError(f"BilevelProblem: {name} must be callable f(x, y, batch), "
                                f"got {type(fn).__name__}")
        self.outer = outer
        self.inner = inner
        self.inner_output = inner_output
        self.inner_loss = inner_loss
        self.x0 = _check_variable("x0", x0)
        self.y0 = _check_variable("y0", y0)
        x_device, y_device = T.like_info(self.x0)[1], T.like_info(self.y0)[1]
        if x_device != y_device:
            raise ValueError(f"BilevelProblem: x0 is on {x_device} but y0 is on {y_device}; "
                             "put both on the same device")
        self.outer_data = outer_data
        self.inner_data = inner_data
        self.first_outer_batch = _first_batch("outer_data", outer_data)
        self.first_inner_batch = _first_batch("inner_data", inner_data)
        # f(x0, y0) and g(x0, y0) on the first batches: also part of a checkpoint's
        # fingerprint (edited data or objectives change them)
        self.initial_values = (
            _check_objective("outer objective f", outer, self.x0, self.y0,
                             self.first_outer_batch),
            _check_objective("inner objective g", inner, self.x0, self.y0,
                             self.first_inner_batch))

    # -- views used by the engines and algorithms ---------------------------------------
    @property
    def device(self) -> torch.device:
        return T.like_info(self.x0)[1]

    @property
    def stochastic(self) -> bool:
        """True when either objective draws minibatches from data."""
        return self.outer_data is not None or self.inner_data is not None

    def outer_at(self, batch: Any) -> Callable[[Tree, Tree], torch.Tensor]:
        """f(., ., batch) as a function of (x, y)."""
        f = self.outer
        return lambda x, y: f(x, y, batch)

    def inner_at(self, batch: Any) -> Callable[[Tree, Tree], torch.Tensor]:
        """g(., ., batch) as a function of (x, y)."""
        g = self.inner
        return lambda x, y: g(x, y, batch)

    def inner_split_at(self, batch: Any) -> tuple[Callable, Callable] | None:
        """(z(., ., batch), l(., ., batch)) as functions of (x, y) and (x, z), or None when
        the problem has no split."""
        if self.inner_output is None:
            return None
        z, loss = self.inner_output, self.inner_loss
        return (lambda x, y: z(x, y, batch)), (lambda x, out: loss(x, out, batch))

    def __repr__(self) -> str:
        def size(t: Tree) -> str:
            return f"{T.numel(t)} entries" + (f" in {len(t)} tensors" if isinstance(t, Mapping)
                                               else "")
        data = lambda d: "full batch" if d is None else type(d).__name__
        return (f"BilevelProblem(x: {size(self.x0)}, y: {size(self.y0)}, "
                f"outer_data: {data(self.outer_data)}, inner_data: {data(self.inner_data)}, "
                f"device={self.device})")


def _composed(output: Callable, loss: Callable) -> Objective:
    """g(x, y, batch) = loss(x, output(x, y, batch), batch)."""
    def inner(x: Tree, y: Tree, batch: Any) -> torch.Tensor:
        return loss(x, output(x, y, batch), batch)
    return inner


# ---------------------------------------------------------------------------------------
# validation

def _check_variable(name: str, tree: Any) -> Tree:
    """A detached copy of a tensor / dict of tensors, after type, dtype and NaN checks."""
    if isinstance(tree, Mapping):
        if len(tree) == 0:
            raise ValueError(f"BilevelProblem: {name} is an empty dict")
        for key in tree:
            if not isinstance(key, str):
                raise TypeError(f"BilevelProblem: {name} keys must be strings, got {key!r}")
    elif not isinstance(tree, torch.Tensor):
        raise TypeError(f"BilevelProblem: {name} must be a tensor or a dict of tensors, "
                        f"got {type(tree).__name__}")
    paths = _leaf_paths(name, tree)
    leaves = T.leaves(tree)
    for path, leaf in zip(paths, leaves):
        if not isinstance(leaf, torch.Tensor):
            raise TypeError(f"BilevelProblem: {path} must be a tensor, got {type(leaf).__name__}")
        if not leaf.is_floating_point():
            raise TypeError(f"BilevelProblem: {path} must be a real floating tensor "
                            f"(float32/float64/...), got dtype {leaf.dtype}")
    dtypes = {leaf.dtype for leaf in leaves}
    devices = {leaf.device for leaf in leaves}
    if len(dtypes) > 1:
        raise ValueError(f"BilevelProblem: the tensors of {name} mix dtypes "
                         f"{sorted(map(str, dtypes))}")
    if len(devices) > 1:
        raise ValueError(f"BilevelProblem: the tensors of {name} are on several devices "
                         f"{sorted(map(str, devices))}")
    for path, leaf in zip(paths, leaves):
        if not bool(torch.isfinite(leaf).all()):
            raise ValueError(f"BilevelProblem: {path} contains NaN or inf")
    return T.tree_map(lambda t: t.detach().clone(), tree)


def _leaf_paths(name: str, tree: Any) -> list[str]:
    if isinstance(tree, Mapping):
        return [p for k in tree for p in _leaf_paths(f"{name}[{k!r}]", tree[k])]
    return [name]


def _first_batch(name: str, data: Iterable | None) -> Any:
    if data is None:
        return None
    try:
        iterator = iter(data)
    except TypeError as err:
        raise TypeError(f"BilevelProblem: {name} must be an iterable of batches (a list, a "
                        f"DataLoader, ...) or None, got {type(data).__name__}") from err
    if iterator is data:
        raise TypeError(f"BilevelProblem: {name} is an iterator, which can be read only once; "
                        "pass a re-iterable collection (a list, a DataLoader, ...)")
    try:
        batch = next(iterator)
    except StopIteration:
        raise ValueError(f"BilevelProblem: {name} is empty (no batches)") from None
    bad = _non_finite_path(batch, "batch")
    if bad is not None:
        raise ValueError(f"BilevelProblem: the first batch of {name} has NaN or inf in {bad}")
    return batch


def _non_finite_path(obj: Any, path: str) -> str | None:
    """The path of the first floating tensor with NaN/inf inside a batch, or None."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            if not bool(torch.isfinite(obj).all()):
                return path
        return None
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, (tuple, list)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = _non_finite_path(value, f"{path}[{key!r}]")
        if found is not None:
            return found
    return None


def _check_objective(name: str, fn: Objective, x0: Tree, y0: Tree, batch: Any) -> float:
    """The value fn(x0, y0, batch), after checking it is a finite real scalar."""
    where = "with batch=None" if batch is None else "on the first batch"
    try:
        value = fn(x0, y0, batch)  # x0, y0 are detached: no graph is recorded
    except Exception as err:
        raise ValueError(f"BilevelProblem: {name}(x0, y0, batch) raised {type(err).__name__} "
                         f"{where}: {err} (check that the data's shapes match x0 and y0)") from err
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"BilevelProblem: {name} must return a scalar tensor, got "
                        f"{type(value).__name__}")
    if value.numel() != 1 or value.ndim > 1:
        raise ValueError(f"BilevelProblem: {name} must return a scalar, got shape "
                         f"{tuple(value.shape)} {where} (reduce it, e.g. .mean())")
    if not value.is_floating_point():
        raise TypeError(f"BilevelProblem: {name} must return a real floating scalar, got dtype "
                        f"{value.dtype}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"BilevelProblem: {name} is {number} at (x0, y0) {where}; "
                         "check the data and the starting point for NaN/inf or overflow")
    return number
