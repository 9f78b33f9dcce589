"""``MultiBlockProblem``: a bilevel program with m lower-level problems sharing x.

    min_x  F(x) = 1/m sum_{i=1}^m f(x, y_i*(x), D_i^val)
    s.t.   y_i*(x) = argmin_{y_i} g(x, y_i, D_i^tr),   i = 1, ..., m

(multi-block bilevel optimization, MBBO: one lower level per task, class or client; Hu,
Qiu, Guo, Zhang, Yang, ICML 2023).  f and g are shared by all blocks and called per block,
``f(x, y_i, batch_i)``, ``g(x, y_i, batch_i)``, where ``batch_i`` holds rows of block i's
data only.  They are evaluated under ``torch.func.vmap`` over the blocks, so they must be
vmap-compatible (plain tensor code: no ``.item()``, no data-dependent Python branches).

The per-block data is a :class:`BlockData`: for the inner objective (training data) and
the outer objective (validation data), a tensor or a dict / tuple of tensors whose every
leaf has shape (m, n, ...): m blocks of n rows each (n may differ between inner and outer,
not between blocks).  A batch handed to f or g has the same structure with leaves of shape
(b, ...): b of the block's rows (all n for full batch).

A ``MultiBlockProblem`` *is* the stacked :class:`~bilevel.BilevelProblem` with the
variable Y = (y_1, ..., y_m) (leading dimension m) and the full-batch objectives

    f_stack(x, Y) = 1/m sum_i f(x, y_i, D_i^val),   g_stack(x, Y) = sum_i g(x, y_i, D_i^tr),

whose inner minimizer is (y_1*(x), ..., y_m*(x)) (the blocks decouple; the Hessian of
g_stack is block diagonal) and whose hypergradient is grad F(x).  So every method of
:func:`bilevel.solve` runs on it (e.g. ``method="aid-cg"``: exact-Hessian AID over all
blocks at once), and ``method="mbbo"`` runs the blockwise stochastic algorithms of
:mod:`bilevel.algorithms.mbbo`, which sample blocks and rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import vmap

from .linalg import tree as T
from .linalg.tree import Tree
from .problem import BilevelProblem, Objective

__all__ = ["BlockData", "BlockSampler", "MultiBlockProblem", "map_data"]

_SEED_MOD = 2**62


def map_data(fn: Callable[[torch.Tensor], Any], data: Any) -> Any:
    """Apply ``fn`` to every tensor of a data tree (a tensor, or dicts / tuples / lists)."""
    if isinstance(data, torch.Tensor):
        return fn(data)
    if isinstance(data, Mapping):
        return {k: map_data(fn, v) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(map_data(fn, v) for v in data)
    raise TypeError(f"block data must be tensors in dicts / tuples / lists, got "
                    f"{type(data).__name__}")


def _leaves(data: Any, path: str) -> list[tuple[str, torch.Tensor]]:
    if isinstance(data, torch.Tensor):
        return [(path, data)]
    if isinstance(data, Mapping):
        return [p for k, v in data.items() for p in _leaves(v, f"{path}[{k!r}]")]
    if isinstance(data, (tuple, list)):
        return [p for k, v in enumerate(data) for p in _leaves(v, f"{path}[{k}]")]
    raise TypeError(f"MultiBlockProblem: {path} must be a tensor or a dict / tuple / list of "
                    f"tensors, got {type(data).__name__}")


@dataclass(frozen=True)
class BlockData:
    """Training (inner) and validation (outer) data of m blocks, stacked.

    Attributes:
        inner: data of g: a tensor or dict / tuple / list of tensors, leaves (m, n_inner, ...).
        outer: data of f: same rules, leaves (m, n_outer, ...).

    Shapes: every leaf of ``inner`` has the same first two dimensions (m, n_inner), every
    leaf of ``outer`` (m, n_outer); m is the same for both.
    """

    inner: Any
    outer: Any

    def __post_init__(self) -> None:
        sizes = {name: _rows(name, data) for name, data in (("block_data.inner", self.inner),
                                                            ("block_data.outer", self.outer))}
        (m_in, _), (m_out, _) = sizes.values()
        if m_in != m_out:
            raise ValueError(f"MultiBlockProblem: block_data.inner has {m_in} blocks but "
                             f"block_data.outer has {m_out}")

    @property
    def n_blocks(self) -> int:
        return _rows("inner", self.inner)[0]

    @property
    def n_inner(self) -> int:
        """Rows of training data per block."""
        return _rows("inner", self.inner)[1]

    @property
    def n_outer(self) -> int:
        """Rows of validation data per block."""
        return _rows("outer", self.outer)[1]

    def select(self, which: str, blocks: torch.Tensor, rows: torch.Tensor | None) -> Any:
        """The rows ``rows`` (b per block, shape (I, b)) of the blocks ``blocks`` (I,) of the
        inner or outer data: leaves of shape (I, b, ...); all rows when ``rows`` is None."""
        data = self.inner if which == "inner" else self.outer
        if rows is None:
            return map_data(lambda t: t[blocks], data)
        return map_data(lambda t: t[blocks[:, None], rows], data)


def _rows(name: str, data: Any) -> tuple[int, int]:
    """(m, n) shared by every leaf of one data tree, after checks."""
    leaves = _leaves(data, name)
    if not leaves:
        raise ValueError(f"MultiBlockProblem: {name} holds no tensors")
    shapes = {path: tuple(t.shape[:2]) for path, t in leaves}
    for path, t in leaves:
        if t.ndim < 2:
            raise ValueError(f"MultiBlockProblem: {path} must have shape (m blocks, n rows, "
                             f"...), got {tuple(t.shape)}")
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise ValueError(f"MultiBlockProblem: {path} contains NaN or inf")
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{p}: {s}" for p, s in shapes.items())
        raise ValueError(f"MultiBlockProblem: the leaves of {name} disagree on (m blocks, "
                         f"n rows): {listed}")
    return next(iter(shapes.values()))


class MultiBlockProblem(BilevelProblem):
    """min_x 1/m sum_i f(x, y_i*(x), D_i^val), y_i*(x) = argmin g(x, y_i, D_i^tr).

    Args:
        outer: f(x, y_i, batch_i) -> scalar tensor, shared by the blocks (vmap-compatible).
        inner: g(x, y_i, batch_i) -> scalar tensor, strongly convex in y_i near y_i*.
        x0: the shared outer variable (tensor or dict of tensors).
        y0: the m inner variables stacked: a tensor or dict of tensors, every leaf with
            leading dimension m (y0[i] is block i's start).
        block_data: a :class:`BlockData`, or a dict {"inner": ..., "outer": ...} of the
            stacked per-block training and validation data.

    Attributes:
        block_outer, block_inner: f and g as given (per block).
        block_data: the :class:`BlockData`.
        n_blocks: m.
        outer, inner: the stacked full-batch objectives f_stack, g_stack of the module
            docstring (what the other methods of :func:`bilevel.solve` optimize).

    Raises:
        TypeError / ValueError: as :class:`BilevelProblem`, and: block data that is not
            stacked (m, n, ...) consistently, a y0 leaf whose leading dimension is not m,
            or f / g failing under vmap on the blocks (the message names it).
    """

    def __init__(self, outer: Objective, inner: Objective, x0: Tree, y0: Tree,
                 block_data: BlockData | Mapping[str, Any]) -> None:
        for name, fn in (("outer", outer), ("inner", inner)):
            if not callable(fn):
                raise TypeError(f"MultiBlockProblem: {name} must be callable f(x, y_i, "
                                f"batch_i), got {type(fn).__name__}")
        if isinstance(block_data, Mapping):
            if set(block_data) != {"inner", "outer"}:
                raise ValueError("MultiBlockProblem: block_data must have exactly the keys "
                                 f"'inner' and 'outer', got {sorted(block_data)}")
            block_data = BlockData(inner=block_data["inner"], outer=block_data["outer"])
        elif not isinstance(block_data, BlockData):
            raise TypeError("MultiBlockProblem: block_data must be a BlockData or a dict "
                            f"{{'inner': ..., 'outer': ...}}, got {type(block_data).__name__}")
        m = block_data.n_blocks
        if isinstance(y0, (torch.Tensor, Mapping)):
            for path, leaf in _leaves(y0, "y0"):
                if leaf.ndim == 0 or leaf.shape[0] != m:
                    raise ValueError(f"MultiBlockProblem: {path} has shape {tuple(leaf.shape)}"
                                     f"; its leading dimension must be the number of blocks "
                                     f"m = {m} (block_data has {m} blocks)")
        self.block_outer, self.block_inner = outer, inner
        self.block_data = block_data
        self.n_blocks = m

        def stacked_outer(x: Tree, y: Tree, batch: Any = None) -> torch.Tensor:
            return vmap(lambda yi, di: outer(x, yi, di))(y, block_data.outer).mean()

        def stacked_inner(x: Tree, y: Tree, batch: Any = None) -> torch.Tensor:
            return vmap(lambda yi, di: inner(x, yi, di))(y, block_data.inner).sum()

        super().__init__(outer=stacked_outer, inner=stacked_inner, x0=x0, y0=y0)

    def __repr__(self) -> str:
        return (f"MultiBlockProblem(m={self.n_blocks} blocks, x: {T.numel(self.x0)} entries, "
                f"y_i: {T.numel(self.y0) // self.n_blocks} entries, rows per block: "
                f"{self.block_data.n_inner} inner / {self.block_data.n_outer} outer, "
                f"device={self.device})")


class BlockSampler:
    """The blocks and rows of outer step k, a pure function of (seed, k) (so a resumed run
    draws the same samples without any saved state).

    Blocks: epochs of ``m // I`` steps; each epoch is a fresh random permutation of the m
    blocks cut into consecutive groups of I (every block once per epoch when I divides m;
    otherwise the last ``m % I`` of each permutation wait for the next epoch), as in the
    authors' code.  Rows: for each sampled block, b of its n rows drawn without replacement
    (independently for the inner and the outer data); None means all rows.

    Args:
        n_blocks, n_inner, n_outer: m and the rows per block of the inner / outer data.
        blocks_per_step: I, 1 <= I <= m.
        samples_per_block: b (rows per block and objective), 1 <= b <= min(n_inner,
            n_outer); None for full batches.
        seed: the run's seed.
    """

    def __init__(self, n_blocks: int, n_inner: int, n_outer: int, blocks_per_step: int,
                 samples_per_block: int | None, seed: int) -> None:
        if not isinstance(blocks_per_step, int) or not 1 <= blocks_per_step <= n_blocks:
            raise ValueError(f"solve: blocks_per_step must be an integer in [1, m = "
                             f"{n_blocks}], got {blocks_per_step!r}")
        if samples_per_block is not None and (
                not isinstance(samples_per_block, int)
                or not 1 <= samples_per_block <= min(n_inner, n_outer)):
            raise ValueError(f"solve: samples_per_block must be None (full batch) or an "
                             f"integer in [1, {min(n_inner, n_outer)}] (the blocks have "
                             f"{n_inner} inner and {n_outer} outer rows), got "
                             f"{samples_per_block!r}")
        self.n_blocks, self.n_inner, self.n_outer = n_blocks, n_inner, n_outer
        self.blocks_per_step, self.samples_per_block, self.seed = (
            blocks_per_step, samples_per_block, seed)

    def _generator(self, stream: int, index: int) -> torch.Generator:
        seed = (self.seed * 1_000_003 + stream * 7_919 + index * 104_729) % _SEED_MOD
        return torch.Generator().manual_seed(seed)

    def draw(self, k: int, device: torch.device | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(blocks (I,), inner rows (I, b) or None, outer rows (I, b) or None) of step k."""
        m, size = self.n_blocks, self.blocks_per_step
        per_epoch = m // size
        epoch, position = divmod(k, per_epoch)
        perm = torch.randperm(m, generator=self._generator(0, epoch))
        blocks = perm[position * size:(position + 1) * size]
        if self.samples_per_block is None:
            return blocks.to(device), None, None
        gen = self._generator(1, k)
        rows = [torch.rand(size, n, generator=gen).argsort(dim=1)[:, :self.samples_per_block]
                for n in (self.n_inner, self.n_outer)]
        return blocks.to(device), rows[0].to(device), rows[1].to(device)

