"""``solve_lp(lp, ..., distributed=True)``: one PDHG solve sharded over a torch.distributed group.

A script launched as ``torchrun --nproc_per_node N script.py`` that calls
``torch.distributed.init_process_group`` (NCCL with one GPU per process, or gloo on CPUs) and
then ``solve_lp(lp, distributed=True)`` on every process with the same LP runs one solve on N
processes (``l2o solve`` under torchrun does both: :mod:`l2o.cli.solve`).  Every process returns
the same status and the whole x, y; rank 0 alone calls ``progress``.

The split (:mod:`l2o.pdhg.partition`).  Process r holds a contiguous block of rows of A~ (its
slice of y and of every row vector: bounds, scaling D1, ...) and a contiguous block of rows of
A~^T (its slice of x and of every column vector), both balanced by nonzeros.  Its two products

    (A~ x)_r   = A~[rows_r, :] x          (A~^T y)_r = A~^T[cols_r, :] y

read all of x and all of y, so each begins with an all-gather of the vector's slices
(:class:`ShardGather`): per iteration a process receives the other W - 1 slices of x_bar and
of y (``Partition.bytes_per_iteration``).  The block's column indices are renumbered once into
the layout of the gathered buffer (slices padded to the longest), so a product reads the
buffer as the collective left it.  The elementwise work runs on the slices.  Where no block
reads another process's slice (A~ block diagonal along the split: always with one process,
``Partition.coupled`` False) the products read the slices themselves (:class:`LocalSlice`,
the block's columns renumbered from the slice's start): no buffer and no collective, whose
result would be the local slice (a launch that moves nothing).

The iteration is the one-process iteration on the slices: the same torch ops
(:func:`l2o.pdhg.iteration.halpern_iteration`, its products through :class:`Sharded`) or the
same Triton kernels (:mod:`l2o.pdhg.fused`, its products through :class:`IterationExchange`),
and on CUDA the chunk of iterations between two checks and the check are replayed as CUDA
graphs with their NCCL collectives inside (gloo's cannot be captured: CPU runs are eager).
The iteration's x_bar and y live in this process's slots of the gathered buffers, so an
iteration adds two in-place all-gathers to the one-process iteration and nothing else: no copy,
no host sync; and where the blocks are not coupled (one process), not even those: the same
kernels as the one-process iteration (``tests/l2o/test_pdhg_distributed.py`` counts the ops).

One reduction per check.  The check's scalars are sums, dot products, norms and maxima of row
and column vectors, combined by formulas (ratios, square roots, clamps); each process reduces
its slices to a small vector of partial values, the W vectors are all-gathered once and
reduced in rank order (sums or maxima by kind) on every process, with the elapsed time appended
(its maximum is the time limit's clock: :class:`Sharded`).  The fused check
(:mod:`l2o.pdhg.fused_check`) computes the partials in its kernels and gathers its two
multi-vector products' inputs (:meth:`Sharded.a_mm`, :meth:`Sharded.at_mm`): 3 collectives
(1 where the blocks are not coupled).
The torch check (:func:`l2o.pdhg.statistics.device_statistics`) has :class:`Sharded` as its
termination data's ``rows`` and ``cols`` reducer, which evaluates the formulas twice around
the one all-gather: the first pass records each reduction's partial value on this process, the
second returns the global values in the same order; with its 7 products' gathers, 8
collectives (1 where the blocks are not coupled).  Every process thus holds bitwise the same
statistics record and takes the same decisions (status, restart, primal weight, warm start or
cold).  A result gathers the point, or the ray, at the end (:meth:`ShardedOperator.whole`).

What runs where.  The LP's setup (validation, Ruiz / Pock-Chambolle scaling, ||A~||_2) runs on
every process as one process's solve runs it (on its device; small LPs on the CPU), then rank
0's scaled LP is broadcast over the others' (the scaling's reductions on a GPU use atomics, so
two processes' roundings may differ, and the processes must agree to the bit); each process
then keeps only its blocks and slices.  So the setup holds the whole LP on every device once:
sharding saves device memory during the iterations, not during the setup (a setup sharded from
the start, with the scaling's row and column norms reduced over the group, is not done).
Presolve is not done: ``presolve`` True, "highs" or "gpu" is refused, "auto" solves
the LP as given (``LPResult.presolve`` says so); ``polish`` and ``method="highs"`` are refused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise
from typing import Any

import torch
import torch.distributed as dist

from bilevel.distributed import DataParallel, data_parallel
from bilevel.linalg import LinearOperator
from bilevel.linalg.operators import csr_tensor
from l2o.device import resolve_device

# Gather equal-size tensors from every rank into one (concatenated along dim 0): the name is
# all_gather_single from torch 2.13 on, all_gather_into_tensor before (torch 2.11 on the GPUs).
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
from l2o.lp.result import LPResult
from l2o.lp.segments import WHOLE
from l2o.lp.validate import check_structure

from .finish import Checked
from .options import SolverOptions, check_dtype, default_check_every
from .partition import Partition, partition_lp
from .prepare import PreparedLP, prepare_lp
from .presolve import no_presolve_report
from .profile import PhaseTimer
from .scaling import ScaledLP
from .start import is_warm, warm_start_vectors
from .termination import TerminationCriteria, TerminationData

__all__ = ["IterationExchange", "LocalSlice", "ShardGather", "Sharded", "ShardedOperator",
           "shard_prepared", "solve_sharded"]

_INT32_MAX = 2**31 - 1
_SUM, _MAX = 0.0, 1.0      # kinds of the check's reductions


def padded_positions(bounds: list[int], width: int) -> torch.Tensor:
    """(k,) int64: where entry i of a vector sharded by ``bounds`` lies in the gathered buffer
    (process q's slice starts at q * width)."""
    pieces = [torch.arange(a, b, dtype=torch.int64) - a + q * width
              for q, (a, b) in enumerate(pairwise(bounds))]
    return torch.cat(pieces)


class ShardGather:
    """The all-gather of a vector (or of ``columns`` vectors side by side) sharded in contiguous
    blocks, in place, into one padded buffer.

    The buffer (W width,) or (W width, columns) holds process q's slice at rows
    [q width, q width + len_q); the rows after it, up to (q + 1) width, stay zero.  A process's
    part of the buffer is what it sends: NCCL and gloo gather in place when the send buffer is
    the receive buffer at rank x width, so an all-gather copies nothing on this process.
    ``local`` is this process's slice in the buffer: a vector kept there (the iteration's x_bar
    and y, :class:`IterationExchange`) is gathered with no copy at all.  ``positions`` (k,):
    where entry i of the whole vector lies in the buffer.
    """

    def __init__(self, bounds: list[int], width: int, rank: int, dtype: torch.dtype,
                 device: torch.device, columns: int | None = None):
        world = len(bounds) - 1
        size = bounds[rank + 1] - bounds[rank]
        shape = (world * width,) if columns is None else (world * width, columns)
        self.buffer = torch.zeros(shape, dtype=dtype, device=device)
        self.send = self.buffer[rank * width:(rank + 1) * width]
        self.local = self.buffer[rank * width:rank * width + size]
        self.positions = padded_positions(bounds, width).to(device)

    def gather(self) -> torch.Tensor:
        """The padded whole vector of every process's ``local`` slice (one collective)."""
        _all_gather(self.buffer, self.send)
        return self.buffer

    def __call__(self, local: torch.Tensor) -> torch.Tensor:
        """The padded whole vector of every process's ``local`` (a copy into the buffer and
        one collective).  The buffer is reused: valid until the next call."""
        self.local.copy_(local)
        return self.gather()

    def whole(self, local: torch.Tensor) -> torch.Tensor:
        """The whole vector (unpadded, a new tensor on the device)."""
        return self(local)[self.positions]


class LocalSlice:
    """What a product reads where no process's block reads another's slice
    (``Partition.coupled`` False; always with one process): this process's slice itself.

    The interface of :class:`ShardGather` without the collective: ``buffer`` = ``local`` is a
    slice-long vector (or ``columns`` of them side by side), :meth:`gather` does nothing and a
    call returns the vector it is given (no copy).  ``positions`` (k,): entry i of the whole
    vector lies at i - start in the slice (the block reads no entry outside it).
    """

    def __init__(self, bounds: list[int], rank: int, dtype: torch.dtype, device: torch.device,
                 columns: int | None = None):
        start, end = bounds[rank], bounds[rank + 1]
        shape = (end - start,) if columns is None else (end - start, columns)
        self.buffer = self.local = torch.zeros(shape, dtype=dtype, device=device)
        self.positions = torch.arange(bounds[-1], dtype=torch.int64, device=device) - start

    def gather(self) -> torch.Tensor:
        return self.buffer

    def __call__(self, local: torch.Tensor) -> torch.Tensor:
        return local


def _row_block(csr: torch.Tensor, start: int, end: int, positions: torch.Tensor, width: int,
               device: torch.device) -> torch.Tensor:
    """Rows [start, end) of a CSR matrix, its column indices renumbered by ``positions`` into
    the gathered buffer's layout of ``width`` entries, on ``device``."""
    crow = csr.crow_indices().to(torch.int64)
    first, last = int(crow[start]), int(crow[end])
    cols = positions.to(crow.device)[csr.col_indices()[first:last].to(torch.int64)]
    index = torch.int32 if max(width, last - first) < _INT32_MAX else torch.int64
    # copies: a view would keep the whole matrix alive on the device
    return csr_tensor((crow[start:end + 1] - first).to(device, index), cols.to(device, index),
                      csr.values()[first:last].to(device, copy=True), (end - start, width))


class ShardedOperator(LinearOperator):
    """A~ on one process of a sharded solve: v -> (A~ v)_rows and u -> (A~^T u)_cols from this
    process's slices of v (n_r,) and u (m_r,), each product after an all-gather (where the
    blocks are coupled).

    Attributes:
        csr: the block A~[rows_r, :] (m_r, W width_x), columns in the gathered x's layout;
            (m_r, n_r), columns from the slice's start, where the blocks are not coupled.
        csr_t: the block A~^T[cols_r, :] (n_r, W width_y), columns in the gathered y's
            layout; likewise (n_r, m_r).
        gather_x, gather_y: what the products read of x and of y: a :class:`ShardGather`
            (copies in: for vectors other than the iteration's, e.g. the check's), or where
            the blocks are not coupled a :class:`LocalSlice`.
    """

    def __init__(self, full: LinearOperator, partition: Partition, rank: int,
                 dtype: torch.dtype, device: torch.device):
        self.partition, self.rank, self.dtype, self.device = partition, rank, dtype, device
        self.gather_x, self.gather_y = self.new_gather(primal=True), self.new_gather(primal=False)
        (r0, r1), (c0, c1) = partition.rows(rank), partition.cols(rank)
        self.csr = _row_block(full.csr, r0, r1, self.gather_x.positions,
                              self.gather_x.buffer.shape[0], device)
        self.csr_t = _row_block(full.csr_t, c0, c1, self.gather_y.positions,
                                self.gather_y.buffer.shape[0], device)
        super().__init__(lambda v: torch.mv(self.csr, self.gather_x(v)),
                         lambda u: torch.mv(self.csr_t, self.gather_y(u)), (r1 - r0, c1 - c0))

    def new_gather(self, primal: bool, columns: int | None = None) -> ShardGather | LocalSlice:
        """What a product reads, with its own buffer, of x's slices (``primal``; what ``csr``
        multiplies) or of y's (what ``csr_t`` multiplies): a :class:`ShardGather`, or a
        :class:`LocalSlice` where the blocks are not coupled."""
        bounds = self.partition.col_bounds if primal else self.partition.row_bounds
        if not self.partition.coupled:
            return LocalSlice(bounds, self.rank, self.dtype, self.device, columns)
        return self.padded_gather(primal, columns)

    def padded_gather(self, primal: bool, columns: int | None = None) -> ShardGather:
        """A :class:`ShardGather` of x's slices (``primal``) or of y's, with its own buffer."""
        width_x, width_y = self.partition.padded_widths()
        bounds = self.partition.col_bounds if primal else self.partition.row_bounds
        return ShardGather(bounds, width_x if primal else width_y, self.rank, self.dtype,
                           self.device, columns)

    def whole(self, local: torch.Tensor, primal: bool) -> torch.Tensor:
        """The whole x (``primal``) or y of every process's slice ``local`` (one all-gather,
        into a buffer of its own: for the results, coupled blocks or not)."""
        return self.padded_gather(primal).whole(local)


class IterationExchange:
    """The iteration's two all-gathers, in place (:attr:`l2o.pdhg.fused.FusedPlan.exchange`).

    The iteration state's x_bar and y live in this process's slots of the buffers ``x_bar`` and
    ``y`` (:meth:`Sharded.attach`), so an iteration communicates with two collectives and
    copies nothing: ``gather_x_bar()`` before A~ x_bar, ``gather_y()`` before A~^T y.  Where
    the blocks are not coupled (one process) the buffers are x_bar and y themselves
    (:class:`LocalSlice`) and the gathers do nothing.
    """

    def __init__(self, op: ShardedOperator):
        self._x_bar, self._y = op.new_gather(primal=True), op.new_gather(primal=False)
        self.x_bar, self.y = self._x_bar.buffer, self._y.buffer

    def gather_x_bar(self) -> None:
        self._x_bar.gather()

    def gather_y(self) -> None:
        self._y.gather()

    def attach(self, s: Any) -> None:
        """Move ``s.x_bar`` (scratch) and ``s.y`` (with its value) into their slots."""
        s.x_bar = self._x_bar.local
        s.y = self._y.local.copy_(s.y)


class Sharded:
    """Where a sharded solve's products and reductions run (the ``parallel`` of
    :class:`~l2o.pdhg.iteration.IterationState` and the ``rows`` / ``cols`` of its
    :class:`~l2o.pdhg.termination.TerminationData`); module docstring.

    As a reducer (:class:`l2o.lp.segments.Reducer`) it is only valid inside :meth:`check`: the
    first pass returns this process's partial values, the second the global ones.

    The clock.  Each check's gathered vector carries this process's elapsed time (``clock``, a
    device scalar written on the host after the previous check: a value written at capture
    would be replayed forever); its maximum over the processes comes to the host last, with the
    check's numbers, and :meth:`received` takes it off.  So the processes agree on the time
    without a collective or a host sync of their own, and the clock a check reports is the time
    its chunk was launched: a time limit is seen up to one chunk late.
    """

    def __init__(self, op: ShardedOperator, group: DataParallel, dtype: torch.dtype,
                 device: torch.device, full: ScaledLP, start: float):
        self.op, self.group, self.dtype, self.device = op, group, dtype, device
        # the whole LP's vectors and scaling on the CPU (the op is this process's block), for
        # the float64 re-check of a certificate, which reads the whole ray
        self.whole_scaled = ScaledLP(op=op, **{
            name: value.cpu() if isinstance(value, torch.Tensor) else value
            for name, value in vars(full).items() if name != "op"})
        self.start = start
        self.exchange = IterationExchange(op)
        self.clock = torch.zeros(1, dtype=torch.float64, device=device)
        self._clock: float | None = None           # the agreed clock of the last check
        self._recorded: list[tuple[float, torch.Tensor]] | None = None
        self._values: torch.Tensor | None = None
        self._next = 0
        self._kinds: dict[tuple[float, ...], torch.Tensor] = {}
        self._gathered: dict[int, torch.Tensor] = {}
        self._multi: dict[tuple[bool, int], ShardGather | LocalSlice] = {}
        self._is_max: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.fused_grad = self._addmv_works()

    def _addmv_works(self) -> bool:
        """Whether sparse addmv with beta runs here (the single-process iteration's A^T y - c in
        one product: the same choice keeps the two solves' roundings alike)."""
        try:
            torch.addmv(torch.zeros(self.op.csr_t.shape[0], dtype=self.dtype, device=self.device),
                        self.op.csr_t, self.op.gather_y.buffer, beta=-1.0)
        except (RuntimeError, NotImplementedError):
            return False
        return True

    def attach(self, s: Any) -> None:
        """Make ``s`` iterate here: its x_bar and y in the exchange's buffers, the clock set."""
        s.parallel = self
        self.exchange.attach(s)
        self.clock.fill_(time.perf_counter() - self.start)

    # -- the iteration's products (the torch iteration; the fused one calls the exchange) -----
    def ax_bar(self, p: ScaledLP, s: Any) -> None:
        """s.ax_bar = (A~ x_bar)_rows, after the all-gather of x_bar."""
        self.exchange.gather_x_bar()
        torch.mv(self.op.csr, self.exchange.x_bar, out=s.ax_bar)

    def grad(self, p: ScaledLP, s: Any) -> None:
        """s.grad = (A~^T y)_cols - c~, after the all-gather of y."""
        self.exchange.gather_y()
        y = self.exchange.y
        if self.fused_grad:
            torch.addmv(p.c, self.op.csr_t, y, beta=-1.0, out=s.grad)
        else:
            torch.mv(self.op.csr_t, y, out=s.grad).sub_(p.c)

    # -- the fused check's products and reduction ---------------------------------------------
    def a_mm(self, p: ScaledLP, xr: torch.Tensor) -> torch.Tensor:
        """(A~ xr^T)_rows (m_r, k) of k sliced column vectors xr (k, n_r): one all-gather
        (none where the blocks are not coupled)."""
        return torch.mm(self.op.csr, self._gather_columns(True, xr))

    def at_mm(self, p: ScaledLP, yr: torch.Tensor) -> torch.Tensor:
        """(A~^T yr^T)_cols (n_r, k) of k sliced row vectors yr (k, m_r): one all-gather
        (none where the blocks are not coupled)."""
        return torch.mm(self.op.csr_t, self._gather_columns(False, yr))

    def _gather_columns(self, primal: bool, vectors: torch.Tensor) -> torch.Tensor:
        key = (primal, vectors.shape[0])
        gather = self._multi.get(key)
        if gather is None:      # at the first (eager) check: no allocation in a graph capture
            gather = self._multi[key] = self.op.new_gather(primal, columns=vectors.shape[0])
        return gather(vectors.t())

    def combine(self, values: torch.Tensor, maxima: torch.Tensor) -> torch.Tensor:
        """The global values (K + 1,) float64 of this process's partial sums and maxima
        (``values`` (K,), ``maxima`` (K,) bool), then the agreed clock: one all-gather of the
        W x (K + 1) partials, reduced in rank order (the same bits on every process)."""
        partials = torch.cat([values, self.clock])
        gathered = self._gathered.get(partials.numel())
        if gathered is None:
            gathered = self._gathered.setdefault(partials.numel(), partials.new_empty(
                self.group.world_size * partials.numel()))
        _all_gather(gathered, partials)
        gathered = gathered.view(self.group.world_size, -1)
        _, is_max = self._is_max.get(id(maxima), (None, None))
        if is_max is None:      # at the first (eager) check: no kernel in a graph capture
            is_max = torch.cat([maxima, maxima.new_ones(1)])     # the clock: a maximum
            self._is_max[id(maxima)] = (maxima, is_max)      # maxima kept: its id stays its own
        return torch.where(is_max, gathered.amax(0), gathered.sum(0))

    def received(self, values: list[float]) -> list[float]:
        """The check's numbers without the agreed clock (kept for :meth:`elapsed`); this
        process's clock set for the next check."""
        self._clock = values[-1]
        self.clock.fill_(time.perf_counter() - self.start)
        return values[:-1]

    def elapsed(self, start: float) -> float:
        """The largest elapsed time of the processes at the last check (every process reads the
        same number, so the time limit stops them together)."""
        return time.perf_counter() - start if self._clock is None else self._clock

    # -- the torch check's reductions ---------------------------------------------------------
    def sum(self, v: torch.Tensor) -> torch.Tensor:
        return self._reduce(_SUM, lambda: torch.sum(v))

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._reduce(_SUM, lambda: torch.dot(a, b))

    def norm(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self._reduce(_SUM, lambda: torch.dot(v, v)))

    def max_abs(self, v: torch.Tensor) -> torch.Tensor:
        return self._reduce(_MAX, lambda: WHOLE.max_abs(v))

    def _reduce(self, kind: float, partial: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self._values is not None:          # second pass: the global value
            value = self._values[self._next]
            self._next += 1
            return value
        if self._recorded is None:
            raise RuntimeError("Sharded: a reduction outside Sharded.check")
        local = partial()
        self._recorded.append((kind, local))
        return local

    def check(self, scalars: Callable[[], tuple[list[torch.Tensor], Any]]
              ) -> tuple[torch.Tensor, Any]:
        """The check's stacked scalars (float64), then the agreed clock, with one all-gather
        (module docstring)."""
        self._recorded, self._values = [], None
        try:
            scalars()                                            # this process's partials
            kinds = tuple(kind for kind, _ in self._recorded)
            is_max = self._kinds.get(kinds)
            if is_max is None:      # at the first (eager) check: no copy in a graph capture
                is_max = self._kinds.setdefault(
                    kinds, torch.tensor(kinds, device=self.device) == _MAX)
            partials = torch.stack([v.to(torch.float64) for _, v in self._recorded])
            reduced = self.combine(partials, is_max)
            self._values, self._next, self._recorded = reduced[:-1].to(self.dtype), 0, None
            values, other = scalars()                            # the global statistics
        finally:
            self._recorded, self._values = None, None
        stacked = torch.stack([v.to(torch.float64) for v in values], dim=-1)
        return torch.cat([stacked, reduced[-1:]]), other

    # -- the result ----------------------------------------------------------------------------
    def whole_checked(self, checked: Checked | None) -> Checked | None:
        """The checked point with the whole x, y, reduced costs (CPU)."""
        if checked is None:
            return None
        point = checked.point
        whole = {"x": self.op.whole(point["x"], primal=True).cpu(),
                 "y": self.op.whole(point["y"], primal=False).cpu(),
                 "reduced_costs": self.op.whole(point["reduced_costs"], primal=True).cpu()}
        return Checked(checked.stats, whole)

    def whole_ray(self, scaled: ScaledLP, ray: torch.Tensor,
                  primal: bool) -> tuple[ScaledLP, torch.Tensor]:
        """(the whole scaled LP, the whole scaled ray), on the CPU."""
        return self.whole_scaled, self.op.whole(ray, primal).cpu()


def broadcast_prepared(prepared: PreparedLP, group: DataParallel) -> PreparedLP:
    """``prepared`` with rank 0's values on every process: its scaled matrix and vectors, the
    termination data's vectors and norms, the scalars (in place, then a new PreparedLP)."""
    p, t = prepared.scaled, prepared.termination
    tensors = [p.op.csr.values(), p.op.csr_t.values()]
    tensors += [v for v in vars(p).values() if isinstance(v, torch.Tensor)]
    tensors += [v for v in vars(t).values() if isinstance(v, torch.Tensor)]
    for tensor in tensors:
        dist.broadcast(tensor, src=0)
    bound, objective, norm = (group.main_value(v) for v in (p.bound_scale, p.objective_scale,
                                                            prepared.operator_norm))
    return replace(prepared, scaled=replace(p, bound_scale=bound, objective_scale=objective),
                   operator_norm=norm)


def shard_prepared(full: PreparedLP, partition: Partition, group: DataParallel,
                   device: torch.device, start: float) -> tuple[PreparedLP, Sharded]:
    """This process's shard of a prepared LP (on the CPU), on ``device``: the PreparedLP of its
    blocks and slices, and the :class:`Sharded` that runs its products and reductions."""
    p, t, rank = full.scaled, full.termination, group.rank
    (r0, r1), (c0, c1) = partition.rows(rank), partition.cols(rank)
    # copies: a view would keep the whole vector alive
    rows = lambda v: v[r0:r1].to(device, copy=True)
    cols = lambda v: v[c0:c1].to(device, copy=True)
    op = ShardedOperator(p.op, partition, rank, full.dtype, device)
    sharded = Sharded(op, group, full.dtype, device, p, start)
    scaled = ScaledLP(op=op, c=cols(p.c), col_lower=cols(p.col_lower),
                      col_upper=cols(p.col_upper), row_lower=rows(p.row_lower),
                      row_upper=rows(p.row_upper), row_scale=rows(p.row_scale),
                      col_scale=cols(p.col_scale), bound_scale=p.bound_scale,
                      objective_scale=p.objective_scale, orig_c=cols(p.orig_c),
                      orig_col_lower=cols(p.orig_col_lower),
                      orig_col_upper=cols(p.orig_col_upper),
                      orig_row_lower=rows(p.orig_row_lower),
                      orig_row_upper=rows(p.orig_row_upper), c0=p.c0)
    termination = TerminationData(
        rc_lower=cols(t.rc_lower), rc_upper=cols(t.rc_upper),
        rec_col_lower=cols(t.rec_col_lower), rec_col_upper=cols(t.rec_col_upper),
        rec_row_lower=rows(t.rec_row_lower), rec_row_upper=rows(t.rec_row_upper),
        dual_rec_lower=rows(t.dual_rec_lower), dual_rec_upper=rows(t.dual_rec_upper),
        rhs_norm=t.rhs_norm.to(device), c_norm=t.c_norm.to(device), rows=sharded, cols=sharded)
    shard = replace(full, device=device, scaled=scaled, termination=termination)
    return shard, sharded


def _group_and_device(device: Any) -> tuple[DataParallel, torch.device]:
    """This process's place in the group and its device: "auto" is cuda:LOCAL_RANK under NCCL,
    the CPU under gloo."""
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("solve_lp(distributed=True): no torch.distributed process group is "
                         "initialized; call torch.distributed.init_process_group first (under "
                         "torchrun), or run `torchrun --nproc_per_node N -m l2o solve FILE`")
    nccl = dist.get_backend() == "nccl"
    if device in (None, "auto"):
        device = "cuda" if nccl else "cpu"
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count()))
        dev = torch.device("cuda", local)
    if nccl != (dev.type == "cuda"):
        raise ValueError(f"solve_lp(distributed=True): the process group's backend "
                         f"{dist.get_backend()!r} does not serve a solve on {dev}: use NCCL "
                         f"with CUDA devices and gloo with the CPU")
    return data_parallel(True, dev), dev


def _check_same_lp(lp, group: DataParallel) -> None:
    """Raise the same ValueError on every process unless all hold rank 0's LP (by its sizes and
    a few sums of its data): a process given another LP would otherwise solve a mixture."""
    A = lp.A if lp.A.layout == torch.sparse_csr else lp.A.to_sparse_csr()
    finite = lambda v: torch.where(torch.isfinite(v), v, torch.zeros_like(v)).double()
    values, cols = A.values().double(), A.col_indices().double()
    c, c0 = lp.minimize_c
    print_ = torch.tensor([lp.num_rows, lp.num_cols, lp.nnz, float(values.sum()),
                           float((values * (cols + 1)).sum()), float(finite(c).sum()), c0,
                           float(finite(lp.row_lower).sum() + finite(lp.row_upper).sum()),
                           float(finite(lp.col_lower).sum() + finite(lp.col_upper).sum())],
                          dtype=torch.float64, device=group.device)
    everyone = print_.new_empty(group.world_size * print_.numel())
    _all_gather(everyone, print_)
    everyone = everyone.view(group.world_size, -1)
    other = [r for r in range(group.world_size) if not torch.equal(everyone[r], everyone[0])]
    if other:
        raise ValueError(f"solve_lp(distributed=True): process(es) {other} were given another "
                         "LP than process 0; every process must pass the same LP")


def solve_sharded(lp, *, tol: float, device: Any, dtype: torch.dtype | None, warm_start: Any,
                  progress: Callable[[dict], None] | None, method: str, presolve: Any,
                  polish: bool, opts: SolverOptions, criteria: TerminationCriteria,
                  start: float, optimize: Callable[..., LPResult]) -> LPResult:
    """``solve_lp(lp, ..., distributed=True)`` on this process (module docstring).

    ``optimize`` is the solver's loop (:func:`l2o.pdhg.solver._optimize`), run on this process's
    shard with a :class:`Sharded`.

    Raises:
        ValueError: no process group, a device its backend does not serve, a presolve asked for,
            polish, a method other than "pdhg", or processes given other LPs.
        TypeError: a PreparedLP.
    """
    if isinstance(lp, PreparedLP):
        raise TypeError("solve_lp(distributed=True) takes the LinearProgram (each process "
                         "prepares its shard), not a PreparedLP")
    refused = {f"presolve={presolve!r} (the sharded solve does not presolve yet; use "
               "presolve=False or 'auto')": presolve not in (False, "auto"), "polish=True": polish,
               f"method={method!r}": method != "pdhg"}
    for what, is_refused in refused.items():
        if is_refused:
            raise ValueError(f"solve_lp(distributed=True) does not take {what}")
    dtype = torch.float64 if dtype is None else dtype
    check_dtype("solve_lp", dtype)
    check_structure(lp)
    group, dev = _group_and_device(device)
    _check_same_lp(lp, group)
    opts = replace(opts, check_every=opts.check_every or default_check_every(lp.nnz))
    x_start, y_start = warm_start_vectors(lp, warm_start)
    timer = PhaseTimer(False)
    full = broadcast_prepared(prepare_lp(lp, dev, dtype, replace(opts, profile=False), timer,
                                         start), group)
    partition = partition_lp(full.scaled.op.csr, full.scaled.op.csr_t, group.world_size)
    shard, sharded = shard_prepared(full, partition, group, dev, start)
    (r0, r1), (c0, c1) = partition.rows(group.rank), partition.cols(group.rank)
    result = optimize(shard, x_start[c0:c1], y_start[r0:r1], is_warm(warm_start), opts,
                      criteria, start, progress if group.is_main else None, timer, sharded)
    result.presolve = no_presolve_report("distributed=True: the sharded solve does not presolve"
                                         if presolve == "auto" else "presolve=False")
    result.distributed = {"processes": group.world_size,
                          "bytes_per_iteration": partition.bytes_per_iteration(
                              torch.finfo(dtype).bits // 8),
                          "row_bounds": partition.row_bounds,
                          "col_bounds": partition.col_bounds}
    return result
