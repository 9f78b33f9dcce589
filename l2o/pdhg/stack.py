"""B prepared LPs as one block-diagonal LP: what :func:`l2o.solve_lp_batch` iterates on.

With LP b scaled as A~_b = D1_b A_b D2_b (:mod:`l2o.pdhg.scaling`), the stack is

    A~ = diag(A~_1, ..., A~_B)    (m, n) = (sum m_b, sum n_b)

with every row and column vector concatenated in the same order, and the segment ids
``row_lp`` (m,) and ``col_lp`` (n,) naming the LP of each row and column.  One SpMV with A~ is
the B SpMVs at once; a row of A~ holds exactly the entries of its LP's row, in the same order, so
the products round as the single LP's do.  The per-LP scalars theta_b, theta_c are spread over
the LP's entries (``col_bound_scale`` ...), so :class:`StackedLP` answers the unscaling methods of
:class:`~l2o.pdhg.scaling.ScaledLP` elementwise and the iteration, the check statistics and the
KKT terms (:mod:`l2o.pdhg.iteration`, :mod:`l2o.pdhg.statistics`, :mod:`l2o.pdhg.termination`)
run on it unchanged; the check's sums and norms go per LP through the :class:`Segments` of the
stacked :class:`~l2o.pdhg.termination.TerminationData`.

:meth:`StackedLP.select` keeps some of the LPs (the unfinished ones), on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from bilevel.linalg import LinearOperator
from bilevel.linalg.operators import csr_row_indices, csr_tensor
from l2o.lp.segments import Segments

from .scaling import ScaledLP
from .termination import TerminationData

__all__ = ["StackIndex", "StackedLP", "select_termination", "stack_lps"]

_INT32_MAX = 2**31 - 1

# The vectors of a ScaledLP / TerminationData by the index they run over (the rest are
# per-LP scalars or reducers).
_ROW_VECTORS = ("row_lower", "row_upper", "row_scale", "orig_row_lower", "orig_row_upper")
_COL_VECTORS = ("c", "col_lower", "col_upper", "col_scale", "orig_c", "orig_col_lower",
                "orig_col_upper")
_TERMINATION_ROWS = ("rec_row_lower", "rec_row_upper", "dual_rec_lower", "dual_rec_upper")
_TERMINATION_COLS = ("rc_lower", "rc_upper", "rec_col_lower", "rec_col_upper")
_TERMINATION_LPS = ("rhs_norm", "c_norm")


@dataclass
class StackedLP:
    """B scaled LPs stacked block-diagonally (module docstring); the ScaledLP interface.

    Attributes:
        op: LinearOperator of A~ (m, n) (CSR and CSR transpose, block-diagonal).
        c, col_lower, col_upper, col_scale, orig_c, orig_col_lower, orig_col_upper: (n,)
            the ScaledLP column vectors, concatenated.
        row_lower, row_upper, row_scale, orig_row_lower, orig_row_upper: (m,) likewise.
        col_bound_scale, col_objective_scale: (n,) theta_b, theta_c of each column's LP.
        row_bound_scale, row_objective_scale: (m,) those of each row's LP.
        c0: (B,) objective constants (minimization form).
        row_lp, col_lp: (m,), (n,) int64 segment ids (LP of each row / column).
        rows, cols: (m_b,), (n_b,) sizes of each LP (host lists).
    """

    op: LinearOperator
    c: torch.Tensor
    col_lower: torch.Tensor
    col_upper: torch.Tensor
    row_lower: torch.Tensor
    row_upper: torch.Tensor
    row_scale: torch.Tensor
    col_scale: torch.Tensor
    orig_c: torch.Tensor
    orig_col_lower: torch.Tensor
    orig_col_upper: torch.Tensor
    orig_row_lower: torch.Tensor
    orig_row_upper: torch.Tensor
    col_bound_scale: torch.Tensor
    col_objective_scale: torch.Tensor
    row_bound_scale: torch.Tensor
    row_objective_scale: torch.Tensor
    c0: torch.Tensor
    row_lp: torch.Tensor
    col_lp: torch.Tensor
    rows: list[int]
    cols: list[int]

    @property
    def shape(self) -> tuple[int, int]:
        return self.op.shape

    @property
    def count(self) -> int:
        """B, the number of LPs."""
        return len(self.rows)

    def row_slice(self, b: int) -> slice:
        """The rows of LP b in the stacked vectors."""
        start = sum(self.rows[:b])
        return slice(start, start + self.rows[b])

    def col_slice(self, b: int) -> slice:
        """The columns of LP b in the stacked vectors."""
        start = sum(self.cols[:b])
        return slice(start, start + self.cols[b])

    # the maps of ScaledLP (x = D2 x~ / theta_b, y = D1 y~ / theta_c, ...), entry by entry
    def unscale_primal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.col_scale / self.col_bound_scale

    def unscale_dual(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.row_scale / self.row_objective_scale

    def scale_primal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.col_bound_scale / self.col_scale

    def scale_dual(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.row_objective_scale / self.row_scale

    def unscale_row_product(self, ax: torch.Tensor) -> torch.Tensor:
        return ax / (self.row_scale * self.row_bound_scale)

    def unscale_col_product(self, aty: torch.Tensor) -> torch.Tensor:
        return aty / (self.col_scale * self.col_objective_scale)

    def index(self, keep: Sequence[int]) -> StackIndex:
        """The :class:`StackIndex` of the LPs at positions ``keep`` (increasing)."""
        return StackIndex.build(self, keep)

    def select(self, index: StackIndex) -> StackedLP:
        """The stack of the LPs of ``index`` only (on the device; their order kept)."""
        vectors = {name: getattr(self, name)[index.rows] for name in
                   (*_ROW_VECTORS, "row_bound_scale", "row_objective_scale")}
        vectors |= {name: getattr(self, name)[index.cols] for name in
                    (*_COL_VECTORS, "col_bound_scale", "col_objective_scale")}
        csr = _select_csr(self.op.csr, index.rows, index.cols)
        csr_t = _select_csr(self.op.csr_t, index.cols, index.rows)
        rows = [self.rows[b] for b in index.kept]
        cols = [self.cols[b] for b in index.kept]
        device = self.c.device
        return StackedLP(op=LinearOperator.from_csr(csr, csr_t), c0=self.c0[index.lps],
                         row_lp=_segment_ids(rows, device), col_lp=_segment_ids(cols, device),
                         rows=rows, cols=cols, **vectors)


@dataclass(frozen=True)
class StackIndex:
    """Which LPs of a stack to keep: their positions (host) and the (int64, device) indices of
    their LPs, rows and columns in the stack's vectors."""

    kept: list[int]
    lps: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor

    @classmethod
    def build(cls, stack: StackedLP, keep: Sequence[int]) -> StackIndex:
        device = stack.c.device
        kept = list(keep)
        lps = torch.tensor(kept, dtype=torch.int64, device=device)
        mask = torch.zeros(stack.count, dtype=torch.bool, device=device)
        mask[lps] = True
        rows = torch.nonzero(mask[stack.row_lp]).flatten()
        cols = torch.nonzero(mask[stack.col_lp]).flatten()
        return cls(kept=kept, lps=lps, rows=rows, cols=cols)


def select_termination(t: TerminationData, index: StackIndex,
                       stack: StackedLP) -> TerminationData:
    """The stacked TerminationData of the LPs of ``index`` (``stack``: the selected stack)."""
    values = {name: getattr(t, name)[index.rows] for name in _TERMINATION_ROWS}
    values |= {name: getattr(t, name)[index.cols] for name in _TERMINATION_COLS}
    values |= {name: getattr(t, name)[index.lps] for name in _TERMINATION_LPS}
    return replace(t, rows=Segments(stack.row_lp, stack.count),
                   cols=Segments(stack.col_lp, stack.count), **values)


def stack_lps(scaled: Sequence[ScaledLP], terms: Sequence[TerminationData],
              device: torch.device) -> tuple[StackedLP, TerminationData]:
    """Stack the prepared LPs (their ScaledLP and TerminationData) block-diagonally on
    ``device``.

    Parts that all lie on the CPU are concatenated there and copied to ``device`` once (a few
    large copies instead of many small ones); otherwise each part is moved and concatenated on
    ``device``.
    """
    on_cpu = all(p.c.device.type == "cpu" for p in scaled)
    where = torch.device("cpu") if on_cpu else device

    def cat(parts) -> torch.Tensor:
        return torch.cat([v.to(where) for v in parts]).to(device)

    rows = [p.shape[0] for p in scaled]
    cols = [p.shape[1] for p in scaled]
    dtype = scaled[0].c.dtype

    def spread(values: list[float], sizes: list[int]) -> torch.Tensor:
        return torch.repeat_interleave(torch.tensor(values, dtype=dtype),
                                       torch.tensor(sizes)).to(device)

    vectors = {name: cat([getattr(p, name) for p in scaled]) for name in _ROW_VECTORS}
    vectors |= {name: cat([getattr(p, name) for p in scaled]) for name in _COL_VECTORS}
    bound = [p.bound_scale for p in scaled]
    objective = [p.objective_scale for p in scaled]
    csr = _stack_csr([p.op.csr for p in scaled], where, device)
    csr_t = _stack_csr([p.op.csr_t for p in scaled], where, device)
    stack = StackedLP(
        op=LinearOperator.from_csr(csr, csr_t),
        col_bound_scale=spread(bound, cols), col_objective_scale=spread(objective, cols),
        row_bound_scale=spread(bound, rows), row_objective_scale=spread(objective, rows),
        c0=torch.tensor([p.c0 for p in scaled], dtype=dtype, device=device),
        row_lp=_segment_ids(rows, device), col_lp=_segment_ids(cols, device),
        rows=rows, cols=cols, **vectors)
    values = {name: cat([getattr(t, name) for t in terms])
              for name in (*_TERMINATION_ROWS, *_TERMINATION_COLS)}
    values |= {name: cat([getattr(t, name).reshape(1) for t in terms])
               for name in _TERMINATION_LPS}
    term = TerminationData(rows=Segments(stack.row_lp, stack.count),
                           cols=Segments(stack.col_lp, stack.count), **values)
    return stack, term


def _segment_ids(sizes: list[int], device: torch.device) -> torch.Tensor:
    """(sum sizes,) int64: b repeated sizes[b] times."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes,
                                                                          dtype=torch.int64)
                                   ).to(device)


def _index_dtype(m: int, n: int, nnz: int) -> torch.dtype:
    return torch.int32 if max(m, n, nnz) < _INT32_MAX else torch.int64


def _stack_csr(parts: Sequence[torch.Tensor], where: torch.device,
               device: torch.device) -> torch.Tensor:
    """diag(parts) as one CSR tensor on ``device`` (built on ``where``)."""
    m = sum(int(a.shape[0]) for a in parts)
    n = sum(int(a.shape[1]) for a in parts)
    nnzs = [int(a.values().numel()) for a in parts]
    index = _index_dtype(m, n, sum(nnzs))
    crows, cols = [torch.zeros(1, dtype=torch.int64, device=where)], []
    nnz_offset = col_offset = 0
    for a, nnz in zip(parts, nnzs):
        crows.append(a.crow_indices()[1:].to(where, torch.int64) + nnz_offset)
        cols.append(a.col_indices().to(where, torch.int64) + col_offset)
        nnz_offset += nnz
        col_offset += int(a.shape[1])
    values = torch.cat([a.values().to(where) for a in parts])
    return csr_tensor(torch.cat(crows).to(index).to(device), torch.cat(cols).to(index).to(device),
                      values.to(device), (m, n))


def _select_csr(a: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The submatrix of the kept ``rows`` and ``cols`` of a block-diagonal CSR tensor whose
    kept blocks hold every entry of the kept rows (so no entry of a kept row is dropped)."""
    crow, col, values = a.crow_indices(), a.col_indices(), a.values()
    m, n = a.shape
    keep_row = torch.zeros(m, dtype=torch.bool, device=values.device)
    keep_row[rows] = True
    entries = torch.nonzero(keep_row[csr_row_indices(crow, values.numel())]).flatten()
    new_col = torch.full((n,), -1, dtype=torch.int64, device=values.device)
    new_col[cols] = torch.arange(cols.numel(), device=values.device)
    lengths = (crow[1:] - crow[:-1])[rows].to(torch.int64)
    new_crow = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=values.device)
    torch.cumsum(lengths, 0, out=new_crow[1:])
    index = _index_dtype(rows.numel(), cols.numel(), entries.numel())
    return csr_tensor(new_crow.to(index), new_col[col[entries].long()].to(index),
                      values[entries], (rows.numel(), cols.numel()))

