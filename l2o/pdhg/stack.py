"""B LPs as one block-diagonal LP: what :func:`l2o.solve_lp_batch` iterates on.

The LPs' arrays are stacked (:func:`stack_arrays`) and preconditioned together
(:func:`scale_stack`): D1, D2 are per row and per column, so each LP gets its own, and
theta_b, theta_c come from per-LP segment norms.  With LP b scaled as A~_b = D1_b A_b D2_b
(:mod:`l2o.pdhg.scaling`), the stack is

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
from l2o.lp.kkt import finite_bound_norm
from l2o.lp.segments import Segments

from .options import SolverOptions
from .scaling import LPArrays, equilibrate, lp_arrays
from .termination import TerminationData

__all__ = ["BlockScales", "StackIndex", "StackedLP", "scale_stack", "select_termination",
           "stack_arrays"]

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

    def block_scales(self, b: int) -> BlockScales:
        """D1, D2 of LP b (what :func:`~l2o.pdhg.finish.ray_result` reads of a ScaledLP)."""
        return BlockScales(row_scale=self.row_scale[self.row_slice(b)],
                           col_scale=self.col_scale[self.col_slice(b)])

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
class BlockScales:
    """The row and column factors D1 (m_b,), D2 (n_b,) of one LP of a stack."""

    row_scale: torch.Tensor
    col_scale: torch.Tensor


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


def stack_arrays(lps: Sequence, device: torch.device) -> tuple[LPArrays, list[float]]:
    """The LPs' arrays (:func:`~l2o.pdhg.scaling.lp_arrays`, minimization form) as one
    block-diagonal LP on ``device``, and the objective constants c0 per LP (the stacked
    arrays' own ``c0`` is 0).

    Each array is concatenated on the host as it is and copied once; the block offsets (LP
    b's column indices shift by the columns before it, its row pointers by the nonzeros
    before it) are added on the device, one kernel per index array."""
    cpu = torch.device("cpu")
    parts = [lp_arrays(lp, cpu) for lp in lps]
    rows = [a.shape[0] for a in parts]
    cols = [a.shape[1] for a in parts]
    nnz = [a.values.numel() for a in parts]
    m, n, total = sum(rows), sum(cols), sum(nnz)
    index = _index_dtype(m, n, total)

    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(a, name) for a in parts]).to(device)

    def offsets(sizes: list[int], counts: list[int], length: int) -> torch.Tensor:
        """(length,): the sum of sizes[:b], repeated counts[b] times for every b."""
        starts = torch.tensor([0, *sizes[:-1]], dtype=torch.int64).cumsum(0).to(index)
        return torch.repeat_interleave(starts.to(device), torch.tensor(counts, device=device),
                                       output_size=length)

    crow = torch.cat([torch.zeros(1, dtype=index)] + [a.crow[1:].to(index) for a in parts])
    crow = crow.to(device)
    crow[1:] += offsets(nnz, rows, m)
    col = torch.cat([a.col.to(index) for a in parts]).to(device) + offsets(cols, nnz, total)
    arrays = LPArrays(crow=crow, col=col, values=cat("values"), c=cat("c"),
                      col_lower=cat("col_lower"), col_upper=cat("col_upper"),
                      row_lower=cat("row_lower"), row_upper=cat("row_upper"), c0=0.0,
                      shape=(m, n))
    return arrays, [a.c0 for a in parts]


def scale_stack(arrays: LPArrays, c0: Sequence[float], rows: list[int], cols: list[int],
                dtype: torch.dtype, opts: SolverOptions) -> tuple[StackedLP, TerminationData]:
    """Precondition the stacked LPs as :func:`~l2o.pdhg.scaling.scale_lp` does each one.

    D1, D2 are each LP's own (:func:`~l2o.pdhg.scaling.equilibrate` works row by row and column
    by column); theta_b, theta_c are computed per LP from segment norms, with no host sync.

    Args:
        arrays, c0: from :func:`stack_arrays`.  rows, cols: the LPs' numbers of rows, columns.
        dtype: the iteration's dtype.  opts: the preparation options (PREPARE_OPTIONS).
    """
    device = arrays.values.device
    e = equilibrate(arrays, opts.ruiz_iterations, opts.geometric_mean_passes,
                    opts.pock_chambolle)
    row_lp, col_lp = _segment_ids(rows, device), _segment_ids(cols, device)
    by_row, by_col = Segments(row_lp, len(rows)), Segments(col_lp, len(cols))
    if opts.bound_objective_rescaling:
        theta_b = 1.0 / (1.0 + finite_bound_norm(e.row_lower, e.row_upper, by_row.sum))
        theta_c = 1.0 / (1.0 + by_col.norm(e.c))
    else:
        theta_b = theta_c = torch.ones(len(rows), dtype=torch.float64, device=device)
    bound_col, bound_row = theta_b[col_lp], theta_b[row_lp]
    objective_col, objective_row = theta_c[col_lp], theta_c[row_lp]
    cast = lambda t: t.to(dtype)
    stack = StackedLP(
        op=e.operator(arrays, dtype), c=cast(objective_col * e.c),
        col_lower=cast(bound_col * e.col_lower), col_upper=cast(bound_col * e.col_upper),
        row_lower=cast(bound_row * e.row_lower), row_upper=cast(bound_row * e.row_upper),
        row_scale=cast(e.d1), col_scale=cast(e.d2), orig_c=cast(arrays.c),
        orig_col_lower=cast(arrays.col_lower), orig_col_upper=cast(arrays.col_upper),
        orig_row_lower=cast(arrays.row_lower), orig_row_upper=cast(arrays.row_upper),
        col_bound_scale=cast(bound_col), col_objective_scale=cast(objective_col),
        row_bound_scale=cast(bound_row), row_objective_scale=cast(objective_row),
        c0=torch.tensor(list(c0), dtype=dtype, device=device), row_lp=row_lp, col_lp=col_lp,
        rows=list(rows), cols=list(cols))
    return stack, TerminationData.build(stack, by_row, by_col)


def _segment_ids(sizes: list[int], device: torch.device) -> torch.Tensor:
    """(sum sizes,) int64 on ``device``: b repeated sizes[b] times."""
    return torch.repeat_interleave(torch.arange(len(sizes), device=device),
                                   torch.tensor(sizes, dtype=torch.int64, device=device),
                                   output_size=sum(sizes))


def _index_dtype(m: int, n: int, nnz: int) -> torch.dtype:
    return torch.int32 if max(m, n, nnz) < _INT32_MAX else torch.int64


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

