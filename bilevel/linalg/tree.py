"""Arithmetic on "vectors" that are a tensor or a (nested) dict of tensors.

The solvers and operators in :mod:`bilevel.linalg` treat a model's parameters
(a dict of tensors) exactly like one flat vector; these helpers are the only
place that knows about the two representations.  Reductions return 0-dim
tensors on the vector's device, so a solver never synchronizes with the host
by accident.

Public: ``from bilevel.linalg.tree import Tree, tree_map, dot, ...`` (or
``bilevel.linalg.tree``), for users writing their own solvers or engines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Union

import torch

Tree = Union[torch.Tensor, Mapping[str, "Tree"]]

__all__ = ["Tree", "tree_map", "leaves", "dot", "norm", "axpy", "axpy_", "xpby_", "clone",
           "zeros_like", "randn_like", "numel", "like_info", "is_finite", "where", "flatten"]


def tree_map(fn: Callable[..., torch.Tensor], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leaf-wise to one or more trees of the same structure."""
    if isinstance(tree, Mapping):
        _check_same_keys(tree, rest)
        return {k: tree_map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    return fn(tree, *rest)


def _check_same_keys(tree: Mapping, rest: tuple) -> None:
    for r in rest:
        if not isinstance(r, Mapping) or r.keys() != tree.keys():
            got = sorted(r.keys()) if isinstance(r, Mapping) else type(r).__name__
            raise ValueError(f"vector structures differ: keys {sorted(tree.keys())} vs {got}")


def leaves(tree: Tree) -> list[torch.Tensor]:
    """The tensors of a tree, in key order."""
    if isinstance(tree, Mapping):
        return [t for k in tree for t in leaves(tree[k])]
    return [tree]


def dot(a: Tree, b: Tree) -> torch.Tensor:
    """<a, b> summed over all leaves, as a 0-dim tensor (no host sync)."""
    la, lb = leaves(a), leaves(b)
    if len(la) != len(lb):
        raise ValueError("vector structures differ")
    total = torch.vdot(la[0].reshape(-1), lb[0].reshape(-1))
    for x, y in zip(la[1:], lb[1:]):
        total = total + torch.vdot(x.reshape(-1), y.reshape(-1))
    return total


def norm(a: Tree) -> torch.Tensor:
    """Euclidean norm over all leaves, as a 0-dim tensor (one kernel for a tensor)."""
    if isinstance(a, torch.Tensor):
        return torch.linalg.vector_norm(a)
    return dot(a, a).clamp_min(0).sqrt()


def axpy(alpha: torch.Tensor | float, x: Tree, y: Tree, *, negate: bool = False) -> Tree:
    """alpha * x + y leaf-wise (y - alpha * x with ``negate``), one fused kernel per leaf.

    ``alpha`` is a number or a 0-dim tensor (a solver's step, kept on the device).  Small
    solves are bound by kernel launches, so this is ``torch.add(y, x, alpha=a)`` for a
    number and ``torch.addcmul(y, alpha, x)`` for a tensor, not a multiply and an add (and
    a negation for ``negate``).
    """
    sign = -1.0 if negate else 1.0
    if isinstance(alpha, torch.Tensor):
        return tree_map(lambda xi, yi: torch.addcmul(yi, alpha, xi, value=sign), x, y)
    return tree_map(lambda xi, yi: torch.add(yi, xi, alpha=sign * alpha), x, y)


def axpy_(alpha: torch.Tensor | float, x: Tree, y: Tree, *, negate: bool = False) -> Tree:
    """y += alpha * x (y -= alpha * x with ``negate``) in place, one kernel per leaf;
    returns y.  For solver iterations that own their state (no copies back into it)."""
    sign = -1.0 if negate else 1.0
    if isinstance(alpha, torch.Tensor):
        tree_map(lambda xi, yi: yi.addcmul_(alpha, xi, value=sign), x, y)
    else:
        tree_map(lambda xi, yi: yi.add_(xi, alpha=sign * alpha), x, y)
    return y


def xpby_(x: Tree, beta: torch.Tensor, y: Tree) -> Tree:
    """y = x + beta * y in place (beta a 0-dim tensor), one kernel per leaf; returns y."""
    tree_map(lambda xi, yi: torch.addcmul(xi, beta, yi, out=yi), x, y)
    return y


def clone(a: Tree) -> Tree:
    return tree_map(torch.clone, a)


def zeros_like(a: Tree) -> Tree:
    return tree_map(torch.zeros_like, a)


def randn_like(a: Tree, generator: torch.Generator | None = None) -> Tree:
    def draw(t: torch.Tensor) -> torch.Tensor:
        # Draw on the CPU with the (CPU) generator so results are reproducible
        # across devices, then move.
        return torch.randn(t.shape, dtype=t.dtype, generator=generator).to(t.device)
    return tree_map(draw, a)


def numel(a: Tree) -> int:
    return sum(t.numel() for t in leaves(a))


def like_info(a: Tree) -> tuple[torch.dtype, torch.device]:
    first = leaves(a)[0]
    return first.dtype, first.device


def is_finite(a: Tree) -> torch.Tensor:
    """0-dim bool tensor: every entry of every leaf is finite."""
    flags = [torch.isfinite(t).all() for t in leaves(a)]
    out = flags[0]
    for f in flags[1:]:
        out = out & f
    return out


def where(cond: torch.Tensor, a: Tree, b: Tree) -> Tree:
    """Leaf-wise ``torch.where(cond, a, b)`` with a 0-dim condition."""
    return tree_map(lambda x, y: torch.where(cond, x, y), a, b)


def flatten(a: Tree) -> tuple[torch.Tensor, Callable[[torch.Tensor], Tree]]:
    """One flat vector holding every leaf, and the inverse map (views, no copies)."""
    parts = leaves(a)
    flat = torch.cat([t.reshape(-1) for t in parts])
    shapes = [t.shape for t in parts]
    sizes = [t.numel() for t in parts]

    def unflatten(v: torch.Tensor) -> Tree:
        pieces = iter([p.view(s) for p, s in zip(torch.split(v, sizes), shapes)])
        return tree_map(lambda _: next(pieces), a)

    return flat, unflatten
