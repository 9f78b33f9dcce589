"""How an LP is split over the processes of a sharded solve: contiguous blocks balanced by work.

Process r of W holds the rows [row_bounds[r], row_bounds[r+1]) of A~ (its slice of y and of
every row vector) and the rows [col_bounds[r], col_bounds[r+1]) of A~^T (its slice of x and of
every column vector).  An iteration's cost on a process is its two sparse products and its
elementwise updates, so a block's weight is its nonzeros plus its length:

    weight(block) = sum over its rows i of (nnz_i + 1)

and the W blocks are cut where the running weight crosses k / W of the total (k = 1 .. W-1),
each cut at the nearer of the two rows around the crossing.  Contiguous blocks keep the
vector slices contiguous, so a product's all-gather is one collective with no reordering.  No
graph partitioner reorders the rows first (KaMinPar, METIS): with the all-gather of whole
vectors, which every product here does, the bytes moved do not depend on the order.  An
all-gather of only the entries some other process reads (a halo, :func:`exported_entries`)
would move 54-100% of those bytes on the shared large LPs in their own order and 98-100% on
PageRank (2, 4 and 8 processes: benchmarks/RESULTS.md), for an extra packing kernel per
gather, so it is not done.  A METIS reordering of the row/column graph makes that halo 1.5-20%
of the slices on multicommodity and staircase LPs (pds-30, nemswrld, ken-11) but leaves it at
88-98% on PageRank (RESULTS.md), so reordering and a halo exchange would go together, for
those LPs only.

A product needs the other processes' slices only when a block reads them: when every nonzero
A~_ij has row i and column j on the same process (A~ block diagonal along the split, e.g.
always on one process), each block reads only its own slices of x and y, and the products
need no collective at all (``Partition.coupled`` False: :class:`l2o.pdhg.distributed.ShardGather`
then skips its all-gather).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch

__all__ = ["Partition", "balanced_bounds", "crosses_blocks", "exported_entries", "partition_lp"]


def balanced_bounds(nnz_per_row: torch.Tensor, parts: int) -> list[int]:
    """The parts + 1 bounds of contiguous blocks of rows balanced by nnz + 1 (module docstring).

    Args:
        nnz_per_row: (k,) integer nonzeros of each row.
        parts: the number of blocks W >= 1.

    Returns:
        [0, b_1, ..., b_{W-1}, k], nondecreasing (a block is empty when k < W).
    """
    if parts < 1:
        raise ValueError(f"balanced_bounds: parts must be >= 1, got {parts}")
    weight = nnz_per_row.to(torch.float64) + 1.0
    running = torch.cumsum(weight, 0)           # running[i]: weight of rows 0..i
    k = running.numel()
    total = float(running[-1]) if k else 0.0
    bounds = [0]
    for q in range(1, parts):
        target = total * q / parts
        # the first row whose running weight reaches the target; cut after it or before it
        i = int(torch.searchsorted(running, torch.tensor(target, dtype=torch.float64)))
        after = min(i + 1, k)
        before = max(after - 1, 0)
        weight_before = float(running[before - 1]) if before > 0 else 0.0
        weight_after = float(running[after - 1]) if after > 0 else 0.0
        cut = before if target - weight_before < weight_after - target else after
        bounds.append(max(cut, bounds[-1]))
    bounds.append(k)
    return bounds


@dataclass(frozen=True)
class Partition:
    """The blocks of a sharded LP (module docstring).

    Attributes:
        row_bounds: W + 1 bounds of the blocks of rows of A~ (slices of y).
        col_bounds: W + 1 bounds of the blocks of columns of A~, i.e. rows of A~^T (slices of x).
        row_nnz, col_nnz: nonzeros of A~ in each process's block of rows / of A~^T in its block
            of columns (what its two products read).
        coupled: whether some process's block reads another process's slice of x or y (a
            nonzero A~_ij with row i and column j on two processes): then each product begins
            with an all-gather; when False no product needs one.
    """

    row_bounds: list[int]
    col_bounds: list[int]
    row_nnz: list[int]
    col_nnz: list[int]
    coupled: bool

    @property
    def world_size(self) -> int:
        return len(self.row_bounds) - 1

    def rows(self, rank: int) -> tuple[int, int]:
        """[start, end) of ``rank``'s rows of A~ (its slice of y)."""
        return self.row_bounds[rank], self.row_bounds[rank + 1]

    def cols(self, rank: int) -> tuple[int, int]:
        """[start, end) of ``rank``'s columns of A~ (its slice of x)."""
        return self.col_bounds[rank], self.col_bounds[rank + 1]

    def padded_widths(self) -> tuple[int, int]:
        """(longest slice of x, longest slice of y), at least 1: an all-gather moves slices of
        one length, so every process sends its slice padded to the longest."""
        widths = [max(max(b - a for a, b in pairwise(bounds)), 1)
                  for bounds in (self.col_bounds, self.row_bounds)]
        return widths[0], widths[1]

    def bytes_per_iteration(self, itemsize: int) -> int:
        """Bytes one process receives per iteration: the two all-gathers (x_bar for A~ x_bar,
        y for A~^T y) bring the W - 1 other padded slices of x and of y (none when the blocks
        are not ``coupled``)."""
        if not self.coupled:
            return 0
        width_x, width_y = self.padded_widths()
        return (self.world_size - 1) * (width_x + width_y) * itemsize

    def describe(self, itemsize: int) -> str:
        """One line: processes, nonzeros per process (of the A~ and A~^T blocks), bytes."""
        nnz = [a + b for a, b in zip(self.row_nnz, self.col_nnz)]
        return (f"{self.world_size} process(es), nonzeros of A~ and A~^T per process "
                f"{min(nnz)}-{max(nnz)}, {self.bytes_per_iteration(itemsize)} bytes received "
                f"per process per iteration")


def crosses_blocks(csr: torch.Tensor, row_bounds: list[int], col_bounds: list[int]) -> bool:
    """Whether some block of rows of ``csr`` (by ``row_bounds``) has a nonzero outside the
    same process's block of columns (by ``col_bounds``): a product of that block reads
    entries of the vector that another process holds.  O(nnz), at setup."""
    crow, cols = csr.crow_indices(), csr.col_indices()
    for (r0, r1), (c0, c1) in zip(pairwise(row_bounds), pairwise(col_bounds)):
        block = cols[int(crow[r0]):int(crow[r1])]
        if block.numel() and (int(block.min()) < c0 or int(block.max()) >= c1):
            return True
    return False


def exported_entries(csr: torch.Tensor, row_bounds: list[int],
                     col_bounds: list[int]) -> list[int]:
    """For each process q, how many entries of its slice of the vector ``csr`` multiplies
    (blocks by ``col_bounds``) some other process's block of rows (by ``row_bounds``) reads:
    what an all-gather of only the entries read elsewhere (a halo) would send.  O(nnz)."""
    crow, cols = csr.crow_indices(), csr.col_indices().to(torch.int64)
    cuts = torch.tensor(col_bounds[1:-1], dtype=torch.int64, device=cols.device)
    read_elsewhere = torch.zeros(csr.shape[1], dtype=torch.bool, device=cols.device)
    for r, (r0, r1) in enumerate(pairwise(row_bounds)):
        block = cols[int(crow[r0]):int(crow[r1])]
        read_elsewhere[block[torch.bucketize(block, cuts, right=True) != r]] = True
    return [int(read_elsewhere[a:b].sum()) for a, b in pairwise(col_bounds)]


def partition_lp(csr: torch.Tensor, csr_t: torch.Tensor, parts: int) -> Partition:
    """The :class:`Partition` of an LP into ``parts`` blocks, from its scaled matrix A~ (m, n)
    and A~^T (n, m) in CSR."""
    crow, crow_t = csr.crow_indices(), csr_t.crow_indices()
    row_nnz, col_nnz = crow.diff().to(torch.int64), crow_t.diff().to(torch.int64)
    row_bounds, col_bounds = balanced_bounds(row_nnz, parts), balanced_bounds(col_nnz, parts)

    def block_nnz(nnz: torch.Tensor, bounds: list[int]) -> list[int]:
        return [int(nnz[a:b].sum()) for a, b in pairwise(bounds)]

    # A~ crosses the blocks exactly where A~^T does (the same nonzeros, transposed)
    return Partition(row_bounds=row_bounds, col_bounds=col_bounds,
                     row_nnz=block_nnz(row_nnz, row_bounds),
                     col_nnz=block_nnz(col_nnz, col_bounds),
                     coupled=crosses_blocks(csr, row_bounds, col_bounds))
