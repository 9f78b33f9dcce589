"""Cheap presolve reductions in torch, on the LP's device, and their postsolve.

HiGHS presolve (:mod:`l2o.lp.presolve`) costs 1-28 us per nonzero on the CPU, more than the
whole GPU solve of many large LPs. The reductions here are the cheap ones, each a handful of
vectorized kernels over the nonzeros (no loop over rows or columns), repeated in rounds while
they remove something (at most :data:`MAX_ROUNDS`). For the minimization form

    min c^T x + c0   s.t.   l_r <= A x <= u_r,   l_c <= x <= u_c

a round does, in this order (each is one *step* of the postsolve record):

1. fixed columns (l_c,j = u_c,j = v): x_j = v, moved into the row bounds
   (l_r,i -= a_ij v, u_r,i -= a_ij v) and into c0 (+= c_j v);
2. free rows (l_r,i = -inf, u_r,i = +inf) and empty rows (no nonzero left): removed; an empty
   row with 0 outside [l_r,i, u_r,i] proves the LP primal infeasible;
3. singleton rows (one nonzero a_ij left): l_r,i <= a_ij x_j <= u_r,i becomes the column bounds
   [l_r,i / a_ij, u_r,i / a_ij] (swapped for a_ij < 0), intersected with x_j's own; the row that
   set a bound is remembered (its *source*); crossed bounds prove primal infeasibility;
4. empty columns (no nonzero in a remaining row): fixed at the bound its cost prefers (lower for
   c_j > 0, upper for c_j < 0, the point of its interval nearest 0 for c_j = 0); an infinite
   preferred bound proves dual infeasibility (the ray -sign(c_j) e_j; the LP is unbounded if
   it is feasible).

Postsolve. x: the reduced LP's x at the kept columns, the fixed values elsewhere. y: the reduced
LP's y at the kept rows, 0 at removed rows, except that the source row s of a column bound takes
the column's reduced cost: going through the columns in reverse order of removal (kept columns
first), with rho_j = c_j - sum_i a_ij y_i over the rows whose dual is known,

    rho_j > 0 and the lower bound of x_j came from row s:  y_s = rho_j / a_sj   (r_j = 0)
    rho_j < 0 and the upper bound came from row s:         y_s = rho_j / a_sj   (r_j = 0)

(y_s > 0 pairs with l_r,s for a_sj > 0, as the minimization-form convention asks; a_sj < 0
flips both). Otherwise r_j = rho_j stays with the column's own bound. For a kept column rho_j
is the reduced LP's own multiplier of its bound when the caller has one (the solver's dual
slack), so every absolute residual of the reduced LP's point is kept. This keeps
c - A^T y - r = 0 for every column and the dual objective of the reduced LP: rho_j l_c,j with
l_c,j = l_r,s / a_sj is y_s l_r,s. A row removed before a column's step can hold that column
only as its singleton source, so the order is well defined. A Farkas ray of the reduced LP maps
back the same way with c = 0; a primal ray by position (0 at removed columns).

Not here (HiGHS does them): doubleton equations, dominated columns, dependent rows, implied
free columns, bound tightening from row activities.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bilevel.linalg.operators import csr_tensor

from .model import LinearProgram
from .presolve import PresolveOutcome, ReducedLPMap

__all__ = ["FEASIBILITY_TOLERANCE", "MAX_ROUNDS", "GpuPresolved", "gpu_presolve_lp"]

# Rounds of the four reductions; on the shared large LPs the reductions stop removing
# anything after a few rounds (benchmarks/presolve_highs.py --gpu prints the rounds).
MAX_ROUNDS = 20
# Relative tolerance of the infeasibility tests (empty rows, crossed column bounds): a bound
# off by less than this times (1 + the magnitudes involved) is rounding, not infeasibility.
FEASIBILITY_TOLERANCE = 1e-9


@dataclass
class _Record:
    """What postsolve needs (on the presolve's device).

    rows, cols, vals: the original LP's nonzero entries (COO).

    col_step, row_step: (n,), (m,) int64, the step that removed each column / row; kept ones
        hold :data:`_KEPT`.
    value: (n,) float64, the value of each removed column.
    lower_source, upper_source: (n,) int64, the row that set each column bound (-1: its own).
    row_coef: (m,) float64, a_sj of each singleton row s (0 for other rows).
    """

    rows: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor
    col_step: torch.Tensor
    row_step: torch.Tensor
    value: torch.Tensor
    lower_source: torch.Tensor
    upper_source: torch.Tensor
    row_coef: torch.Tensor
    steps: int


_KEPT = 2 ** 62


@dataclass
class GpuPresolved(ReducedLPMap):
    """An LP after the torch reductions, with what postsolve needs.

    The same interface as :class:`l2o.lp.presolve.Presolved` (HiGHS's), so the solver's
    presolve loop takes either.

    Attributes:
        original: the LP given to :func:`gpu_presolve_lp`.
        outcome: REDUCED, EMPTY (everything removed), NOT_REDUCED, INFEASIBLE or UNBOUNDED
            (:class:`~l2o.lp.presolve.PresolveOutcome`).
        reduced: the reduced LP (REDUCED; CPU float64, the original names), else None.
        col_index, row_index: (n_red,), (m_red,) int64 CPU, the original column / row of each
            reduced one.
        time_s: seconds of the reductions (the copy of the reduced LP to the host included).
        message: what was removed, in words, or what was proved.
        ray: for INFEASIBLE a Farkas ray y (m,) and for UNBOUNDED a primal ray x (n,) of the
            original LP (CPU float64; the caller verifies it), else None.
        rounds: rounds of reductions run.
    """

    original: LinearProgram
    outcome: PresolveOutcome
    reduced: LinearProgram | None
    col_index: torch.Tensor
    row_index: torch.Tensor
    time_s: float
    message: str
    ray: torch.Tensor | None = None
    rounds: int = 0
    _record: _Record | None = field(default=None, repr=False)

    by = "gpu"

    def reduce_warm_start(self, x: torch.Tensor | None,
                          y: torch.Tensor | None) -> tuple[torch.Tensor | None,
                                                           torch.Tensor | None]:
        """A start (x, y) of the original LP restricted to the reduced LP's columns and rows
        (x_red = x[col_index], y_red = y[row_index]; None stays None). The kept variables are
        the original ones, so x_red is the same point; PDHG projects it onto the tightened
        bounds."""
        return self._restrict_start(x, y)

    def postsolve(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                  reduced_costs: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """The original LP's primal-dual point of a reduced LP's point (module docstring).

        Args:
            x: (n_red,) primal point of ``reduced`` (None for the EMPTY outcome).
            y: (m_red,) its row duals, minimization-form convention (None for EMPTY).
            reduced_costs: (n_red,) the multipliers of the reduced LP's column bounds that go
                with (x, y) (the solver's dual slack); None: c - A^T y. A kept column's
                multiplier of a bound a singleton row set is handed to that row.

        Returns:
            (x, y, r, time_s): (n,), (m,), (n,) float64 CPU tensors of the original LP (y and
            the reduced costs r in the minimization-form convention) and the seconds
            postsolve took.
        """
        start = time.perf_counter()
        x_red, y_red = self._reduced_point(x, "x"), self._reduced_point(y, "y")
        c = self.original.minimize_c[0]
        x_out = self._place_columns(x_red, self._record.value)
        kept = None
        if reduced_costs is not None:
            kept = self._place_columns(self._reduced_point(reduced_costs, "x"),
                                       torch.zeros(self.original.num_cols, dtype=torch.float64))
        y_out, r_out = self._dual_postsolve(y_red, c, kept)
        return x_out, y_out, r_out, time.perf_counter() - start

    def carry_dual_ray(self, y: torch.Tensor) -> torch.Tensor:
        """A Farkas ray y (m_red,) of the reduced LP as one of the original LP ((m,) float64
        CPU): the dual postsolve with c = 0 (the caller verifies it)."""
        return self._dual_postsolve(self._reduced_point(y, "y"),
                                    torch.zeros(self.original.num_cols, dtype=torch.float64))[0]

    def carry_primal_ray(self, x: torch.Tensor) -> torch.Tensor:
        """A primal ray x (n_red,) of the reduced LP placed in the original LP's columns (0 at
        removed ones; (n,) float64 CPU; the caller verifies it)."""
        zero = torch.zeros(self.original.num_cols, dtype=torch.float64)
        return self._place_columns(self._reduced_point(x, "x"), zero)

    # -- postsolve internals ------------------------------------------------------------------
    def _reduced_point(self, v: torch.Tensor | None, what: str) -> torch.Tensor:
        if not self.reduced_or_empty:
            raise ValueError(f"presolve outcome {self.outcome.value}: nothing to postsolve")
        size = len(self.col_index) if what == "x" else len(self.row_index)
        if v is None:
            if size:
                raise ValueError(f"postsolve: {what} of the reduced LP ({size} entries) is "
                                 f"required")
            return torch.zeros(0, dtype=torch.float64)
        v = torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(-1)
        if v.shape != (size,):
            raise ValueError(f"postsolve: {what} has {v.shape[0]} entries, the reduced LP {size}")
        return v

    def _place_columns(self, x_red: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        device = self._record.value.device
        out = removed.to(device, torch.float64).clone()
        out[self.col_index.to(device)] = x_red.to(device)
        return out.cpu()

    def _dual_postsolve(self, y_red: torch.Tensor, c: torch.Tensor,
                        kept_costs: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, r) of the original LP: y_red at the kept rows, the reduced costs of the columns
        handed to their bounds' source rows (:func:`_hand_to_sources`)."""
        rec = self._record
        device = rec.value.device
        y = torch.zeros(self.original.num_rows, dtype=torch.float64, device=device)
        y[self.row_index.to(device)] = y_red.to(device)
        if kept_costs is not None:
            kept_costs = kept_costs.to(device)
        y, r = _hand_to_sources(rec, y, c.to(device, torch.float64), kept_costs)
        return y.cpu(), r.cpu()


def _hand_to_sources(rec: _Record, y: torch.Tensor, c: torch.Tensor,
                     kept_costs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, r): y (m,) with each column's reduced cost rho_j = c_j - (A^T y)_j handed to the
    source row of the bound it pushes against (module docstring), columns in reverse order of
    removal (kept ones first; their rho is ``kept_costs`` where given: the reduced LP's own
    multipliers of their bounds); y is updated in place. r (n,): rho_j where it stays with the
    column's own bound, 0 where a row took it."""
    rows, cols, vals = rec.rows, rec.cols, rec.vals
    r = torch.zeros_like(c)
    for step in [_KEPT, *range(rec.steps - 1, -1, -1)]:
        here = rec.col_step == step
        if not bool(here.any()):
            continue
        if step == _KEPT and kept_costs is not None:
            rho = kept_costs
        else:
            on_nnz = here[cols]
            aty = torch.zeros_like(c).index_add_(0, cols[on_nnz],
                                                 vals[on_nnz] * y[rows[on_nnz]])
            rho = c - aty
        handed = torch.zeros_like(here)
        for source, wants in ((rec.lower_source, rho > 0), (rec.upper_source, rho < 0)):
            take = here & wants & (source >= 0)
            y[source[take]] = rho[take] / rec.row_coef[source[take]]
            handed |= take
        r = torch.where(here & ~handed, rho, r)
    return y, r


def _coo(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, col, value) of each stored entry of a CSR matrix, int64 / float64."""
    crow = A.crow_indices().long()
    rows = torch.repeat_interleave(torch.arange(A.shape[0], device=crow.device), crow.diff())
    return rows, A.col_indices().long(), A.values().to(torch.float64)


def _bound_scale(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    finite = lambda v: torch.where(torch.isfinite(v), v.abs(), torch.zeros_like(v))
    return 1 + finite(lower) + finite(upper)


class _Reducer:
    """The working state of :func:`gpu_presolve_lp`: bounds as reduced so far, what is still
    in the LP, and the postsolve record (module docstring).

    ``rows, cols, vals`` are the entries of the rows and columns alive at the start of the
    round (compacted by :meth:`compact`), ``live`` those still alive now.
    """

    def __init__(self, lp: LinearProgram, device: torch.device):
        f64 = lambda v: torch.as_tensor(v).to(device, torch.float64).clone()
        m, n = lp.num_rows, lp.num_cols
        rows, cols, vals = _coo(lp.A.to(device))
        keep = vals != 0     # explicit zeros are no entries
        self.rows, self.cols, self.vals = rows[keep], cols[keep], vals[keep]
        self.live = torch.ones_like(self.rows, dtype=torch.bool)
        c, c0 = lp.minimize_c
        self.c, self.c0 = f64(c), float(c0)
        self.row_lower, self.row_upper = f64(lp.row_lower), f64(lp.row_upper)
        self.col_lower, self.col_upper = f64(lp.col_lower), f64(lp.col_upper)
        # magnitude of what row bounds absorbed: the scale of their rounding
        self.row_scale = _bound_scale(self.row_lower, self.row_upper)
        self.row_alive = torch.ones(m, dtype=torch.bool, device=device)
        self.col_alive = torch.ones(n, dtype=torch.bool, device=device)
        kept = torch.full((n,), _KEPT, dtype=torch.int64, device=device)
        self.record = _Record(
            rows=self.rows, cols=self.cols, vals=self.vals,
            col_step=kept, row_step=torch.full((m,), _KEPT, dtype=torch.int64, device=device),
            value=torch.zeros(n, dtype=torch.float64, device=device),
            lower_source=torch.full((n,), -1, dtype=torch.int64, device=device),
            upper_source=torch.full((n,), -1, dtype=torch.int64, device=device),
            row_coef=torch.zeros(m, dtype=torch.float64, device=device), steps=0)
        self.proof: tuple[PresolveOutcome, str, torch.Tensor | None] | None = None

    def compact(self) -> None:
        """Drop the entries of removed rows and columns (later rounds touch fewer)."""
        self.rows, self.cols, self.vals = (self.rows[self.live], self.cols[self.live],
                                           self.vals[self.live])
        self.live = torch.ones_like(self.rows, dtype=torch.bool)

    # each reduction returns how many rows + columns it removed (one host sync)
    def _remove_columns(self, which: torch.Tensor, value: torch.Tensor) -> int:
        count = int(which.sum())
        if count:
            rec = self.record
            on = self.live & which[self.cols]
            moved = torch.where(on, self.vals * value[self.cols], torch.zeros_like(self.vals))
            self.row_lower -= torch.zeros_like(self.row_lower).index_add_(0, self.rows, moved)
            self.row_upper -= torch.zeros_like(self.row_upper).index_add_(0, self.rows, moved)
            self.row_scale.index_add_(0, self.rows, moved.abs())
            self.c0 += float(torch.where(which, self.c * value, torch.zeros_like(value)).sum())
            rec.value = torch.where(which, value, rec.value)
            rec.col_step.masked_fill_(which, rec.steps)
            self.col_alive &= ~which
            self.live &= ~on
            rec.steps += 1
        return count

    def _remove_rows(self, which: torch.Tensor) -> int:
        count = int(which.sum())
        if count:
            self.record.row_step.masked_fill_(which, self.record.steps)
            self.row_alive &= ~which
            self.live &= ~which[self.rows]
            self.record.steps += 1
        return count

    def _counts(self, index: torch.Tensor, size: int) -> torch.Tensor:
        """Live entries per row (index = rows) or column (index = cols)."""
        return torch.zeros(size, dtype=torch.int64, device=index.device).index_add_(
            0, index, self.live.long())

    def fixed_columns(self) -> int:
        return self._remove_columns(self.col_alive & (self.col_lower == self.col_upper),
                                    self.col_lower)

    def empty_and_free_rows(self) -> int:
        empty = self.row_alive & (self._counts(self.rows, len(self.row_alive)) == 0)
        tol = FEASIBILITY_TOLERANCE * self.row_scale
        bad = empty & ((self.row_lower > tol) | (self.row_upper < -tol))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            ray = torch.zeros_like(self.row_lower)
            ray[i] = 1.0 if float(self.row_lower[i]) > 0 else -1.0
            why = (f"row {i} has no nonzero left (its columns fixed) and needs "
                   f"{float(self.row_lower[i]):.6g} <= 0 <= {float(self.row_upper[i]):.6g}")
            self.proof = (PresolveOutcome.INFEASIBLE, why, ray)
            return 0
        free = self.row_alive & torch.isinf(self.row_lower) & torch.isinf(self.row_upper)
        return self._remove_rows(empty | free)

    def singleton_rows(self) -> int:
        single = self.row_alive & (self._counts(self.rows, len(self.row_alive)) == 1)
        if not bool(single.any()):
            return 0
        on = self.live & single[self.rows]
        rows, cols, a = self.rows[on], self.cols[on], self.vals[on]
        lo, hi = self.row_lower[rows] / a, self.row_upper[rows] / a
        implied_lower = torch.where(a > 0, lo, hi)
        implied_upper = torch.where(a > 0, hi, lo)
        rec = self.record
        rec.row_coef[rows] = a
        for bound, implied, source, reduce in (
                (self.col_lower, implied_lower, rec.lower_source, "amax"),
                (self.col_upper, implied_upper, rec.upper_source, "amin")):
            new = bound.scatter_reduce(0, cols, implied, reduce=reduce, include_self=True)
            tighter = (implied != bound[cols]) & (implied == new[cols])
            source[cols[tighter]] = rows[tighter]   # ties: any of them (the same bound)
            bound.copy_(new)
        gap = self.col_lower - self.col_upper
        if bool((gap > 0).any()):
            tol = FEASIBILITY_TOLERANCE * _bound_scale(self.col_lower, self.col_upper)
            if bool((gap > tol).any()):
                j = int((gap > tol).nonzero()[0, 0])
                why = (f"column {j}'s bounds cross after its singleton rows: "
                       f"[{float(self.col_lower[j]):.6g}, {float(self.col_upper[j]):.6g}]")
                self.proof = (PresolveOutcome.INFEASIBLE, why, self._crossing_ray(j))
                return 0
            # rounding: the lower bound wins (its source row keeps its dual)
            self.col_upper.copy_(torch.maximum(self.col_lower, self.col_upper))
        return self._remove_rows(single)

    def _crossing_ray(self, j: int) -> torch.Tensor:
        """A Farkas ray of column j's crossed bounds L > U: y_s = 1 / a_sj on the row s that
        set L and y_t = -1 / a_tj on the row t that set U, so (A^T y)_j = 0 (a bound of x_j's
        own takes the part r_j = -+1) and the ray's objective is L - U > 0; the columns removed
        before hand their part to their sources as in postsolve, with c = 0."""
        rec = self.record
        y = torch.zeros_like(self.row_lower)
        for source, sign in ((int(rec.lower_source[j]), 1.0), (int(rec.upper_source[j]), -1.0)):
            if source >= 0:
                y[source] = sign / rec.row_coef[source]
        return _hand_to_sources(rec, y, torch.zeros_like(self.c))[0]

    def empty_columns(self) -> int:
        empty = self.col_alive & (self._counts(self.cols, len(self.col_alive)) == 0)
        if not bool(empty.any()):
            return 0
        c, lower, upper = self.c, self.col_lower, self.col_upper
        value = torch.where(c > 0, lower, torch.where(c < 0, upper, torch.clamp(
            torch.zeros_like(c), lower, upper)))
        unbounded = empty & torch.isinf(value)
        if bool(unbounded.any()):
            j = int(unbounded.nonzero()[0, 0])
            ray = torch.zeros_like(c)
            ray[j] = -1.0 if float(c[j]) > 0 else 1.0
            why = (f"column {j} is in no remaining row and its cost {float(c[j]):.6g} "
                   f"decreases without bound along it")
            self.proof = (PresolveOutcome.UNBOUNDED, why, ray)
            return 0
        return self._remove_columns(empty, value)


def gpu_presolve_lp(lp: LinearProgram, device: Any = None,
                    max_rounds: int = MAX_ROUNDS) -> GpuPresolved:
    """Reduce ``lp`` by the cheap reductions of the module docstring, in torch on ``device``.

    Args:
        lp: the LP (validated: finite data, lower <= upper).
        device: where the reductions run (None: where ``lp.A`` lives). The reduced LP comes
            back on the CPU (float64), as every LinearProgram; the postsolve record stays.
        max_rounds: rounds of the four reductions at most (they stop earlier when a round
            removes nothing).

    Returns:
        A :class:`GpuPresolved`.
    """
    start = time.perf_counter()
    device = lp.A.device if device is None else torch.device(device)
    work = _Reducer(lp, device)
    rounds = removed_total = 0
    for rounds in range(1, max_rounds + 1):
        removed = 0
        for reduction in (work.fixed_columns, work.empty_and_free_rows, work.singleton_rows,
                          work.empty_columns):
            removed += reduction()
            if work.proof is not None:
                break
        removed_total += removed
        if removed:
            work.compact()
        if work.proof is not None or removed == 0:
            break
    empty_index = torch.zeros(0, dtype=torch.int64)
    if work.proof is not None:
        outcome, why, ray = work.proof
        word = "infeasible" if outcome == PresolveOutcome.INFEASIBLE else "dual infeasible"
        return GpuPresolved(lp, outcome, None, empty_index, empty_index,
                            time.perf_counter() - start,
                            f"GPU presolve: {word}: {why}",
                            None if ray is None else ray.cpu(), rounds)
    if removed_total == 0:
        return GpuPresolved(lp, PresolveOutcome.NOT_REDUCED, None, empty_index, empty_index,
                            time.perf_counter() - start, "GPU presolve: nothing to remove",
                            None, rounds)
    col_index = work.col_alive.nonzero().reshape(-1)
    row_index = work.row_alive.nonzero().reshape(-1)
    reduced = _reduced_lp(lp, work, row_index, col_index)
    nnz_kept = reduced.nnz
    outcome = PresolveOutcome.REDUCED
    if reduced.num_cols == 0 and reduced.num_rows == 0:
        outcome, reduced = PresolveOutcome.EMPTY, None
    message = (f"GPU presolve: {lp.num_rows - len(row_index)} rows, "
               f"{lp.num_cols - len(col_index)} columns, {lp.nnz - nnz_kept} nonzeros "
               f"removed in {rounds} round(s)")
    return GpuPresolved(lp, outcome, reduced, col_index.cpu(), row_index.cpu(),
                        time.perf_counter() - start, message, None, rounds, work.record)


def _reduced_lp(lp: LinearProgram, work: _Reducer, row_index: torch.Tensor,
                col_index: torch.Tensor) -> LinearProgram:
    """The LP of the kept rows and columns (CPU float64).

    With every column removed, kept rows would be rows without entries: EMPTY, no LP.
    """
    # compacted after the last round that removed something: the kept rows' and columns' entries
    new_row = torch.cumsum(work.row_alive.long(), 0) - 1
    new_col = torch.cumsum(work.col_alive.long(), 0) - 1
    m, n = len(row_index), len(col_index)
    rows, cols, vals = new_row[work.rows], new_col[work.cols], work.vals
    # rows stay sorted (entries come in CSR order): the row pointers are counts' prefix sums
    crow = torch.zeros(m + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=m), 0)
    A = csr_tensor(crow.cpu(), cols.cpu(), vals.cpu(), (m, n))
    cpu = lambda v: v.to("cpu", torch.float64)
    c = work.c[col_index]
    sign = -1.0 if lp.sense == "maximize" else 1.0   # back to the LP's own sense
    names = lambda names, index: (None if names is None
                                  else [names[i] for i in index.tolist()])
    reduced = LinearProgram(
        c=cpu(sign * c), A=A, row_lower=cpu(work.row_lower[row_index]),
        row_upper=cpu(work.row_upper[row_index]), col_lower=cpu(work.col_lower[col_index]),
        col_upper=cpu(work.col_upper[col_index]), c0=sign * work.c0, sense=lp.sense,
        row_names=names(lp.row_names, row_index), col_names=names(lp.col_names, col_index),
        name=lp.name)
    if not math.isfinite(reduced.c0):
        raise RuntimeError("GPU presolve: the objective constant is not finite")
    return reduced
