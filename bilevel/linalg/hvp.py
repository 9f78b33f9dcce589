"""Second-order products through ``torch.func``, never forming a matrix.

For a scalar function f(x, *args) and a direction v (x, v: a tensor or a dict of
tensors of the same structure):

* ``hvp(f, x, v)``        = (d^2 f / dx^2) v                (x-shaped)
* ``mixed_vjp(g, x, y, u)`` = (d^2 g / dx dy)^T u = grad_x <grad_y g(x, y), u>   (x-shaped)

The mixed product is the last step of every implicit hypergradient:
grad h(x) = grad_x f - (d^2 g / dx dy)^T v with H_yy v = grad_y f.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import grad, jvp, vjp

from . import tree as T
from .tree import Tree

__all__ = ["gauss_newton_closure", "hvp", "hvp_closure", "inner_linearization", "mixed_vjp"]


def hvp(f: Callable[..., torch.Tensor], x: Tree, v: Tree, *args) -> Tree:
    """Hessian-vector product H(x) v of a scalar function, forward-over-reverse.

    Computes d/dt grad f(x + t v, *args) at t = 0 with one ``jvp`` of ``grad``:
    about the cost of two gradient evaluations, no matrix formed.

    Args:
        f: scalar function ``f(x, *args)``.
        x: point (tensor or dict of tensors).
        v: direction, same structure as ``x``.
        *args: extra arguments passed to ``f`` unchanged (not differentiated).

    Returns:
        H(x) v, same structure as ``x``.

    Use :func:`hvp_closure` (or ``LinearOperator.from_hvp``) when many products are
    taken at the same x: it linearizes once and reuses the saved forward pass.
    """
    return jvp(lambda z: grad(f)(z, *args), (x,), (v,))[1]


def hvp_closure(f: Callable[..., torch.Tensor], x: Tree, *args, with_gradient: bool = False):
    """A function v -> H(x) v that reuses one linearization of grad f at x (and, with
    ``with_gradient``, also grad f(x), the linearization's by-product: (product, grad)).

    ``vjp`` of ``grad f`` at x records the gradient computation once; every later
    product is a single backward pass through that record, v -> v^T H = (H v)^T
    (H is symmetric).  This avoids redoing the forward pass per product, which is
    what makes a plain jvp-of-grad loop several times slower (see
    ``shared/anchors/torchopt_hypergrad_h100.json``).
    """
    gradient, pullback = vjp(lambda z: grad(f)(z, *args), x)

    def product(v: Tree) -> Tree:
        return pullback(v)[0]

    return (product, gradient) if with_gradient else product


def gauss_newton_closure(output: Callable[[Tree], Any], loss: Callable[[Any], torch.Tensor],
                         y: Tree) -> tuple[Callable[[Tree], Tree], Tree]:
    """v -> G v with G = J^T (d^2 l / dz^2) J, the Gauss-Newton matrix of l(z(y)) at y.

    J = dz/dy is the Jacobian of the model output z = output(y) (a tensor or a tree), l a
    scalar loss of z.  For a convex l (cross-entropy, squared error) G is positive
    semidefinite whatever the model, unlike the Hessian of l(z(y)), which adds
    sum_k (dl/dz_k) d^2 z_k / dy^2 (Schraudolph 2002; Martens 2010).

    Linearized once: ``vjp`` of z at y (J^T u is one backward pass), ``vjp`` of grad l at
    z (H_l u), and J v as the vjp of the linear map u -> J^T u (a double backward, no
    forward pass per product).

    Returns:
        (product, gradient): v -> G v (y-shaped), and grad_y l(z(y)) = J^T grad l(z).
    """
    z, pullback = vjp(output, y)
    loss_grad, loss_pullback = vjp(grad(loss), z)
    # u -> J^T u is linear in u; its vjp at any u with cotangent v is J v
    _, jacobian_vector = vjp(lambda u: pullback(u)[0], loss_grad)

    def product(v: Tree) -> Tree:
        return pullback(loss_pullback(jacobian_vector(v)[0])[0])[0]

    return product, pullback(loss_grad)[0]


def inner_linearization(g: Callable[[Tree, Tree], torch.Tensor], x: Tree, y: Tree
                        ) -> tuple[Callable[[Tree], Tree], Tree, dict[str, Callable]]:
    """grad_y g(x, y) recorded once (autograd, both x and y tracked), and the backward
    passes of implicit differentiation through that one record:

        product(v) = H_yy v                                  (y-shaped)
        mixed(u)   = (d^2 g / dx dy)^T u                     (x-shaped)
        joint(v)   = (H_yy v, (d^2 g / dx dy)^T v)           one pass for both

    A backward pass runs only the part of the record that leads to what it asks for, so
    a product costs what :func:`hvp_closure`'s does, and the mixed product needs no
    forward pass of its own (:func:`mixed_vjp` records grad_y g again).  An AID
    hypergradient's last steps, the true residual b - H_yy v and the mixed product at
    the same v, are then one backward pass.

    Returns:
        (product, gradient, {"mixed": mixed, "joint": joint}), gradient = grad_y g(x, y).
    """
    xs = T.tree_map(lambda t: t.detach().requires_grad_(), x)
    ys = T.tree_map(lambda t: t.detach().requires_grad_(), y)
    x_leaves, y_leaves = T.leaves(xs), T.leaves(ys)
    with torch.enable_grad():
        recorded = torch.autograd.grad(g(xs, ys), y_leaves, create_graph=True,
                                       allow_unused=True, materialize_grads=True)
    # a leaf g is linear in has a constant gradient: nothing to differentiate through
    tracked = [i for i, t in enumerate(recorded) if t.requires_grad]

    def backward(v: Tree, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        cotangents = T.leaves(T.tree_map(lambda _, vi: vi, y, v))  # in y's key order
        if not tracked:
            return [torch.zeros_like(t) for t in inputs]
        return list(torch.autograd.grad([recorded[i] for i in tracked], inputs,
                                        [cotangents[i] for i in tracked], retain_graph=True,
                                        allow_unused=True, materialize_grads=True))

    def as_tree(like: Tree, parts: list[torch.Tensor]) -> Tree:
        pieces = iter(parts)
        return T.tree_map(lambda _: next(pieces), like)

    def product(v: Tree) -> Tree:
        return as_tree(y, backward(v, y_leaves))

    def mixed(u: Tree) -> Tree:
        return as_tree(x, backward(u, x_leaves))

    def joint(v: Tree) -> tuple[Tree, Tree]:
        parts = backward(v, y_leaves + x_leaves)
        return as_tree(y, parts[:len(y_leaves)]), as_tree(x, parts[len(y_leaves):])

    return product, as_tree(y, [t.detach() for t in recorded]), {"mixed": mixed, "joint": joint}


def mixed_vjp(g: Callable[..., torch.Tensor], x: Tree, y: Tree, u: Tree, *args) -> Tree:
    """Mixed second-derivative product (d^2 g / dx dy)^T u = grad_x <grad_y g(x, y), u>.

    Args:
        g: scalar function ``g(x, y, *args)``.
        x: outer variable (tensor or dict).
        y: inner variable (tensor or dict).
        u: y-shaped cotangent.
        *args: extra arguments to ``g``.

    Returns:
        x-shaped product.  One reverse pass through grad_y g; no Jacobian formed.
    """
    _, pullback = vjp(lambda z: grad(g, argnums=1)(z, y, *args), x)
    return pullback(u)[0]
