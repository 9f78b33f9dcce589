"""A Hessian product split into its once-per-point part and its per-vector part.

Autograd's product H_yy u of an inner objective g(x, y) (a backward pass through the
record of grad_y g, :func:`bilevel.linalg.hvp.inner_linearization`) recomputes, at every
product, values that do not depend on u: e.g. the softmax exp(z - logsumexp(z)) of a
cross-entropy, which the backward formula of logsumexp recomputes from its saved inputs,
or the chain of constant factors w / n * exp(...) that multiplies the product's first
term.  A solver that takes many products at one point (x, y) pays them every iteration.

:func:`stage_product` traces ``(x, y, u) -> H_yy(x, y) u`` once into aten ops
(``make_fx``) and splits the trace by dependence on u:

    setup(x, y) -> constants           every op that does not depend on u (run once per point)
    apply(constants, u) -> H_yy u      only the ops that do (run per product)

and, before splitting, rewrites the per-vector ops into fewer kernels (equal up to
rounding): identical calls are merged; a + a, a / k and the sigmoid and tanh backward
formulas with a constant output become products by constants; c + a @ b becomes
addmm(c, a, b) (addmv for a vector); a negation followed, through sums and
reshapes, by a product with a constant moves onto that constant; and chains of constant
factors are multiplied together, (a * c1) * c2 -> a * (c1 * c2) when a * c1 has no other
use, so c1 * c2 is a constant.  Otherwise the same aten ops on the same values.

:meth:`StagedProduct.compile` passes ``apply`` through ``torch.compile`` (inductor), which
fuses its elementwise ops into fewer kernels around the matrix products (MNIST cleaning's
captured CG step on the H200: 54 -> 43 us; the first call compiles, 3-6 s there).

The trace is only valid at other points when g has no data-dependent control flow: a trace
that read a value on the host (``.item()``, ``bool(tensor)``, ``nonzero``) is refused
(:class:`StagingError`), and the captured hypergradients, the one user, also trace under
CUDA's sync-debug "error" mode and compare the staged product with autograd's before using
it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch.fx import Graph, GraphModule, Node
from torch.fx.experimental.proxy_tensor import make_fx

from . import tree as T
from .hvp import inner_linearization
from .tree import Tree

__all__ = ["StagedProduct", "StagingError", "stage_product"]

aten = torch.ops.aten
# ops whose result the host read while tracing: the trace may hold a value-dependent branch
_HOST_READS = {"_local_scalar_dense", "is_nonzero", "nonzero", "equal", "item"}
# products by a factor: (a * c1) * c2 -> a * (c1 * c2) when c1, c2 are constants
_PRODUCTS = (aten.mul.Tensor, aten.mul.Scalar)


class StagingError(RuntimeError):
    """The product cannot be staged (its trace is not a pure function of (x, y, u))."""


@dataclass
class StagedProduct:
    """``setup(x, y) -> constants`` and ``apply(constants, u) -> H_yy u`` (module
    docstring); ``kernels``: aten ops per ``apply`` that are not views (for reports);
    ``compiled``: ``apply`` goes through ``torch.compile`` (:meth:`compile`)."""

    setup: Callable[[Tree, Tree], tuple]
    apply: Callable[[tuple, Tree], Tree]
    kernels: int
    compiled: bool = False
    _module: GraphModule | None = field(default=None, repr=False)
    _vector: Tree | None = field(default=None, repr=False)   # the layout of u and of H u

    def compile(self) -> StagedProduct:
        """This product with ``apply``'s ops compiled by ``torch.compile`` (inductor; static
        shapes, the whole graph or an error). Compiling happens at the first ``apply`` (and
        again for another autograd mode or shapes): it reads the device, so that call must not
        be inside a CUDA graph capture; the values are the same up to rounding."""
        if self._module is None:
            raise ValueError("StagedProduct.compile: only a product of stage_product compiles")
        module = torch.compile(self._module, fullgraph=True, dynamic=False)
        return replace(self, apply=_applier(module, self._vector), compiled=True)


def _applier(module: Callable, vector: Tree) -> Callable[[tuple, Tree], Tree]:
    """``apply(constants, u)``: ``module`` on the constants and u's leaves, shaped as u."""
    def apply(constants: tuple, u: Tree) -> Tree:
        pieces = iter(module(*constants, *T.leaves(u)))
        return T.tree_map(lambda _: next(pieces), vector)

    return apply


def stage_product(g: Callable[[Tree, Tree], torch.Tensor], x: Tree, y: Tree) -> StagedProduct:
    """The inner Hessian product of ``g`` at points like (x, y), staged (module docstring).

    Traces with the values of (x, y) and a random u (the trace runs the product once).

    Raises:
        StagingError: the trace read a value on the host, or mutates a tensor in place.
    """
    x_leaves, y_leaves = T.leaves(x), T.leaves(y)
    nx, ny = len(x_leaves), len(y_leaves)

    def unflat(like: Tree, leaves: list) -> Tree:
        pieces = iter(leaves)
        return T.tree_map(lambda _: next(pieces), like)

    def product(*leaves: torch.Tensor) -> list[torch.Tensor]:
        xs, ys = unflat(x, leaves[:nx]), unflat(y, leaves[nx:nx + ny])
        u = unflat(y, leaves[nx + ny:])
        return T.leaves(inner_linearization(g, xs, ys)[0](u))

    u_leaves = [torch.randn_like(t) for t in y_leaves]
    try:
        with torch.no_grad():
            traced = make_fx(product)(*[t.detach() for t in x_leaves + y_leaves], *u_leaves)
    except Exception as err:  # the reason, whatever it is, as a StagingError
        if "_local_scalar_dense" in str(err) or "data-dependent" in str(err):
            raise StagingError("the product reads a value on the host (.item(), float(), "
                               "bool()): it may branch on data, so one trace does not serve "
                               "every point") from err
        raise StagingError(f"the product could not be traced: {err}") from err
    variable = _variable_nodes(traced.graph, nx + ny)
    _refuse_unsafe_mutations(traced.graph, variable)
    _merge_duplicates(traced.graph)
    _linear_as_products(traced.graph, variable)
    _fold_additions_into_products(traced.graph, variable)
    _fold_negations(traced.graph, variable)
    _fold_constant_factors(traced.graph, variable)
    setup_gm, apply_gm, kernels = _split(traced, nx + ny)

    def setup(xx: Tree, yy: Tree) -> tuple:
        return tuple(setup_gm(*[t.detach() for t in T.leaves(xx) + T.leaves(yy)]))

    return StagedProduct(setup, _applier(apply_gm, y), kernels, _module=apply_gm, _vector=y)


def _refuse_unsafe_mutations(graph: Graph, variable: set[Node]) -> None:
    """In-place ops are kept where they cannot cross the split: refused when a per-vector op
    would write a constant (every product would change it), or a once-per-point op writes
    a tensor that per-vector ops read (they would read it after the write); also refused:
    a trace that read a value on the host."""
    for node in graph.nodes:
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        if name in _HOST_READS:
            raise StagingError(f"the product reads a value on the host ({node.target}): it may "
                               "branch on data, so one trace does not serve every point")
        schema = getattr(node.target, "_schema", None)
        if schema is None or not schema.is_mutable:
            continue
        written = [a for a, spec in zip(node.args, schema.arguments)
                   if isinstance(a, Node) and spec.alias_info is not None
                   and spec.alias_info.is_write]
        written += [a for k, a in node.kwargs.items() if isinstance(a, Node)]
        for target in written:
            if (node in variable) != (target in variable) or (
                    node not in variable and any(u in variable for u in target.users)):
                raise StagingError(f"the product's trace writes a tensor in place across "
                                   f"the split ({node.target})")


def _variable_nodes(graph: Graph, constant_inputs: int) -> set[Node]:
    """The nodes that depend on u (the placeholders after the first ``constant_inputs``)."""
    variable: set[Node] = set()
    placeholders = 0
    for node in graph.nodes:
        if node.op == "placeholder":
            if placeholders >= constant_inputs:
                variable.add(node)
            placeholders += 1
        elif node.op != "output" and any(i in variable for i in node.all_input_nodes):
            variable.add(node)
    return variable


def _hashable(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    hash(value)  # TypeError for what cannot be compared this way
    return value


def _merge_duplicates(graph: Graph) -> None:
    """One node for identical calls (same op on the same inputs; not ops that write or
    draw random numbers): e.g. the two equal halves of the second derivative of a
    product y * y."""
    # a merged buffer must not be written in place through one of its names: the inputs of
    # in-place ops and what they view are left alone
    written = [a for n in graph.nodes
               if getattr(getattr(n.target, "_schema", None), "is_mutable", False)
               for a in n.all_input_nodes]
    touched: set[Node] = set()
    while written:
        node = written.pop()
        if node not in touched:
            touched.add(node)
            if _is_view(node):
                written.extend(node.all_input_nodes)
    seen: dict[tuple, Node] = {}
    for node in list(graph.nodes):
        schema = getattr(node.target, "_schema", None)
        if node.op != "call_function" or schema is None or schema.is_mutable or node in touched \
                or torch.Tag.nondeterministic_seeded in getattr(node.target, "tags", ()):
            continue
        try:
            key = (node.target, _hashable(node.args), _hashable(node.kwargs))
        except TypeError:
            continue
        if key in seen:
            node.replace_all_uses_with(seen[key])
            graph.erase_node(node)
        else:
            seen[key] = node


def _linear_as_products(graph: Graph, variable: set[Node]) -> None:
    """Ops linear in a per-vector argument, with constant coefficients, as products (which
    the folds below can merge): a + a -> a * 2, a / k -> a * (1 / k), and the backward formulas
    sigmoid_backward(a, s) = a * s (1 - s), tanh_backward(a, t) = a * (1 - t^2) for a
    constant s or t (their coefficient is then computed once, in the setup)."""
    for node in list(graph.nodes):
        if node.op != "call_function" or node.kwargs:
            continue
        if node.target is aten.add.Tensor and node.args[0] is node.args[1] \
                and node.args[0] in variable:  # a + a (after _merge_duplicates)
            node.target, node.args = aten.mul.Tensor, (node.args[0], 2.0)
        elif node.target is aten.div.Scalar and node.args[0] in variable \
                and isinstance(node.args[1], (int, float)) and node.args[1] != 0:
            node.target, node.args = aten.mul.Tensor, (node.args[0], 1.0 / node.args[1])
        elif node.target in (aten.sigmoid_backward.default, aten.tanh_backward.default):
            a, out = node.args
            if a not in variable or (isinstance(out, Node) and out in variable):
                continue
            with graph.inserting_before(node):
                if node.target is aten.sigmoid_backward.default:  # s (1 - s)
                    slope = graph.call_function(aten.mul.Tensor, (
                        out, graph.call_function(aten.rsub.Scalar, (out, 1))))
                else:  # 1 - t^2
                    slope = graph.call_function(aten.rsub.Scalar, (
                        graph.call_function(aten.mul.Tensor, (out, out)), 1))
            node.target, node.args = aten.mul.Tensor, (a, slope)


def _same_value_type(a: object, b: Node) -> bool:
    """Whether node ``a``'s value has the shape and dtype of node ``b``'s (from the trace)."""
    va, vb = (getattr(n, "meta", {}).get("val") for n in (a, b))
    return (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)
            and va.shape == vb.shape and va.dtype == vb.dtype)


def _fold_additions_into_products(graph: Graph, variable: set[Node]) -> None:
    """c + a @ b -> addmm(c, a, b) (addmv for a matrix-vector product: one cuBLAS call, the
    addition in its epilogue) when the product depends on u, is used only there, and c has
    its shape and dtype."""
    fused = {aten.mm.default: aten.addmm.default, aten.mv.default: aten.addmv.default}
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not aten.add.Tensor or node.kwargs:
            continue
        for mm, other in (node.args, node.args[::-1]):
            if (isinstance(mm, Node) and mm.target in fused and mm in variable
                    and len(mm.users) == 1 and isinstance(other, Node)
                    and _same_value_type(other, node) and _same_value_type(mm, node)):
                node.target, node.args = fused[mm.target], (other, *mm.args)
                graph.erase_node(mm)
                break


# ops that commute with a negation, followed through by _fold_negations
_LINEAR = (aten.sum.dim_IntList, aten.sum.default, aten.unsqueeze.default, aten.squeeze.dim,
           aten.view.default, aten.reshape.default, aten.t.default, aten.permute.default,
           aten.expand.default)


def _fold_negations(graph: Graph, variable: set[Node]) -> None:
    """-a followed (through sums and reshapes, each used once) by a product with a
    constant c: the negation moves onto c (a constant of the setup)."""
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not aten.neg.default \
                or node not in variable:
            continue
        end = node
        while len(end.users) == 1:
            user = next(iter(end.users))
            if user.target not in _LINEAR or user.args[0] is not end:
                break
            end = user
        if len(end.users) != 1:
            continue
        product = next(iter(end.users))
        if product.target not in _PRODUCTS or product.kwargs or len(product.args) != 2:
            continue
        a, c = product.args if product.args[0] is end else product.args[::-1]
        if a is not end or (isinstance(c, Node) and c in variable):
            continue
        if isinstance(c, Node):
            with graph.inserting_before(product):
                negated = graph.call_function(aten.neg.default, (c,))
        elif isinstance(c, (int, float)):
            negated = -c
        else:
            continue
        product.target, product.args = aten.mul.Tensor, (end, negated)
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)


def _fold_constant_factors(graph: Graph, variable: set[Node]) -> None:
    """(a * c1) * c2 -> a * (c1 * c2) for a depending on u, c1 and c2 not, and a * c1 used
    only there (the product c1 * c2 is then a constant of the setup)."""

    def split(node: Node) -> tuple[Node, object] | None:
        """(the factor depending on u, the constant one) of a product node, or None."""
        if node.op != "call_function" or node.target not in _PRODUCTS or node.kwargs:
            return None
        a, b = node.args
        if isinstance(a, Node) and a in variable and not (isinstance(b, Node) and b in variable):
            return a, b
        if isinstance(b, Node) and b in variable and not (isinstance(a, Node) and a in variable):
            return b, a
        return None

    for node in list(graph.nodes):
        outer = split(node)
        if outer is None:
            continue
        inner_node, c2 = outer
        inner = split(inner_node)
        if inner is None or len(inner_node.users) != 1:
            continue
        a, c1 = inner
        if isinstance(c1, Node) or isinstance(c2, Node):
            first, second = (c1, c2) if isinstance(c1, Node) else (c2, c1)  # a tensor first
            with graph.inserting_before(node):
                factor = graph.call_function(aten.mul.Tensor, (first, second))
        elif isinstance(c1, (int, float)) and isinstance(c2, (int, float)):
            factor = c1 * c2
        else:
            continue
        node.target = aten.mul.Tensor
        node.args = (a, factor)
        graph.erase_node(inner_node)
    graph.lint()


def _split(traced: GraphModule, constant_inputs: int) -> tuple[GraphModule, GraphModule, int]:
    """(setup, apply, kernels per apply) from the trace (module docstring)."""
    graph = traced.graph
    variable = _variable_nodes(graph, constant_inputs)
    output = next(n for n in graph.nodes if n.op == "output")
    # the constants that the per-vector ops (or the output) read
    frontier = [n for n in graph.nodes if n not in variable and n.op != "output"
                and any(user in variable or user is output for user in n.users)]

    setup_graph, env = Graph(), {}
    for node in graph.nodes:
        if node.op == "output":
            break
        if node.op == "placeholder" and node in variable:
            continue
        if node not in variable:
            env[node] = setup_graph.node_copy(node, lambda n: env[n])
    setup_graph.output(tuple(env[n] for n in frontier))
    setup_graph.eliminate_dead_code()

    apply_graph, env = Graph(), {}
    for node in frontier:
        env[node] = apply_graph.placeholder(f"constant_{len(env)}")
    kernels = 0
    for node in graph.nodes:
        if node in variable:
            env[node] = apply_graph.node_copy(node, lambda n: env[n])
            if node.op == "call_function" and not _is_view(node):
                kernels += 1
    results = output.args[0]
    # a constant result (a block of H that does not depend on u) is returned as a copy: the
    # caller may update a product in place
    apply_graph.output([env[r] if r in variable else
                        apply_graph.call_function(aten.clone.default, (env[r],))
                        for r in results])
    apply_graph.eliminate_dead_code()
    return GraphModule(traced, setup_graph), GraphModule(traced, apply_graph), kernels


def _is_view(node: Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    if node.target is operator.getitem:
        return True
    return schema is not None and any(
        r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
