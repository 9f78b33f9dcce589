"""The sharded PDHG solve (``solve_lp(distributed=True)``, issue 16): its overhead on one GPU,
and its strong scaling over several.

One process (the single-GPU overhead; target <= 5% per iteration):

    python benchmarks/lp_distributed.py [--pagerank 1000000 ...] [FILE.pt | FILE.mps.gz ...]

FILE.pt: an instance of ``lp_suite.py convert`` (the GPU machine has no highspy to read MPS
files: convert here, carry ``.devdata``); PageRank LPs are built on the spot from the vectorized
Barabasi-Albert edges (``lp_suite.pagerank_lp``).  On the GPU machine, e.g.

    python benchmarks/lp_suite.py convert --shared ../shared/data/lp --data .devdata/pdhg   # here
    python benchmarks/lp_distributed.py --pagerank 1000000 10000000 \
        .devdata/pdhg/ken-11.pt .devdata/pdhg/osa-07.pt                                  # there

initializes a one-process group itself (NCCL on CUDA, gloo on the CPU) and solves each LP
with ``distributed=False`` (the default solve: Triton kernels and CUDA graphs where they run)
and ``distributed=True`` (the sharded solve on one process: the same kernels and CUDA graphs,
no collective in the iterations, as no block reads another process's slice, 1 per check),
presolve off, float64:

  * ``iter_us``: microseconds per iteration of a solve capped at ``--iters`` iterations with a
    tolerance it does not reach (1e-12), from its first check to its last (the host's clock
    when ``progress`` is called, after each check's copy to the host: the same moment in both
    solves; the setup and the first iteration left out, the checks' share kept);
  * for each of ``--tols``: ``solve_time`` (setup included), iterations and status.

Then one line per LP: ``overhead`` = iter_us(distributed) / iter_us(single) - 1.

Ops per iteration (CPU, gloo, one process; what a GPU iteration would launch is not counted
here, but the torch iteration's ops are its kernels one to one):

    python benchmarks/lp_distributed.py --count-ops --device cpu --pagerank 1000 FILE ...

counts the torch ops (``TorchDispatchMode``) the single and the sharded solve dispatch inside
their iterations (per iteration) and outside them (per check: one more chunk of
``--check-every`` iterations, setup cancelled), collectives among them, and prints one JSON
line per LP (:func:`count_ops`; ``tests/l2o/test_pdhg_distributed.py`` pins the extra ops
per iteration at 0).

What an all-gather of only the entries other processes read (a halo) would move (CPU, the
LPs' structure; no solve):

    python benchmarks/lp_distributed.py --halo 2 4 8 --pagerank FILE ... [--partitioner metis]

prints, for each LP and number of processes W, the largest count of a process's x (and y)
entries read by another process's block (``partition.exported_entries``) next to the padded
slice the solve all-gathers (``Partition.padded_widths``), and the ratio of the bytes; with
``--partitioner metis``, after reordering rows and columns by a METIS partition of the bipartite
row/column graph (``pymetis``; what a halo exchange would pair with).

Several GPUs (strong scaling; a machine of several GPUs was not lent when this was written):

    torchrun --nproc_per_node N benchmarks/lp_distributed.py --scaling [...]

runs only ``distributed=True``, on the N processes of torchrun's group; run it with N = 1, 2,
4, 8 and compare ``iter_us`` (efficiency at N = iter_us(1) / (N iter_us(N))).  Rank 0 prints
one JSON line per solve and writes OUT/lp_distributed_{N}procs.json and .csv.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o
from _paths import default_out, write_rows
from lp_suite import load_instance, pagerank_lp

ROOT = Path(__file__).resolve().parents[1]


def _init_group(device: torch.device) -> None:
    """The process group: torchrun's, or one process of our own."""
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if "WORLD_SIZE" in os.environ:
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        return
    with socket.socket() as probe:          # a free port for the one-process group
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)


def _solve(lp, distributed: bool, device: torch.device, **kwargs):
    """(LPResult, [(iteration, host clock) of every check])."""
    from l2o import solve_lp

    checks: list[tuple[int, float]] = []
    result = solve_lp(lp, device=device, presolve=False, distributed=distributed,
                      progress=lambda info: checks.append((info["iteration"],
                                                           time.perf_counter())),
                      **kwargs)
    return result, checks


def _iter_us(checks: list[tuple[int, float]]) -> float:
    """Microseconds per iteration from the first check to the last (nan on ranks > 0, which
    get no progress calls)."""
    if not checks:
        return float("nan")
    (i0, t0), (i1, t1) = checks[0], checks[-1]
    return (t1 - t0) / (i1 - i0) * 1e6 if i1 > i0 else float("nan")


def measure(lp, name: str, distributed: bool, device: torch.device, iters: int,
            tols: list[float], time_limit: float) -> list[dict]:
    """The rows of one LP in one mode (module docstring)."""
    processes = dist.get_world_size() if distributed else 1
    base = {"lp": name, "rows": lp.num_rows, "cols": lp.num_cols, "nnz": lp.nnz,
            "mode": "distributed" if distributed else "single", "processes": processes}
    result, checks = _solve(lp, distributed, device, tol=1e-12, iteration_limit=iters)
    rows = [{**base, "tol": None, "iter_us": _iter_us(checks), "iterations": result.iterations,
             "status": result.status.value, "solve_time": result.solve_time,
             "bytes_per_iteration": result.distributed.get("bytes_per_iteration", 0)}]
    for tol in tols:
        result, checks = _solve(lp, distributed, device, tol=tol, time_limit=time_limit)
        rows.append({**base, "tol": tol, "iter_us": _iter_us(checks),
                     "iterations": result.iterations, "status": result.status.value,
                     "solve_time": result.solve_time,
                     "bytes_per_iteration": result.distributed.get("bytes_per_iteration", 0)})
    return rows


class _Ops(TorchDispatchMode):
    """Counts the ops dispatched while it is active, by name: those inside
    ``IterationState.iterate`` apart (``iteration``) from the rest (``other``: the checks, the
    setup, the result)."""

    def __init__(self):
        super().__init__()
        self.iterations = 0
        self.ops = {"iteration": Counter(), "other": Counter()}
        self.where = "other"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[self.where][str(func)] += 1
        return func(*args, **(kwargs or {}))


def count_solve_ops(lp, distributed: bool, iterations: int,
                    check_every: int) -> tuple[Counter, int, Counter]:
    """(the ops of every iteration together, the iterations, the ops outside them) of a CPU
    solve of ``lp`` stopped at ``iterations`` (``distributed``: in the process group this
    process initialized)."""
    from l2o import solve_lp
    from l2o.pdhg.iteration import IterationState

    mode, iterate = _Ops(), IterationState.iterate

    def counted(state, p, last=True):
        mode.where, mode.iterations = "iteration", mode.iterations + 1
        try:
            iterate(state, p, last)
        finally:
            mode.where = "other"

    IterationState.iterate = counted
    try:
        with mode:
            result = solve_lp(lp, device="cpu", presolve=False, tol=1e-12,
                              iteration_limit=iterations, check_every=check_every,
                              distributed=distributed)
    finally:
        IterationState.iterate = iterate
    if result.iterations != iterations:
        raise RuntimeError(f"count_solve_ops: the solve stopped after {result.iterations} "
                           f"iterations ({result.status.value}), not {iterations}")
    return mode.ops["iteration"], mode.iterations, mode.ops["other"]


def ops_per_iteration(lp, distributed: bool, check_every: int = 16) -> Counter:
    """The ops of one iteration by name (every iteration dispatches the same ones)."""
    ops, iterations, _ = count_solve_ops(lp, distributed, 1 + 2 * check_every, check_every)
    if any(count % iterations for count in ops.values()):
        raise RuntimeError(f"ops_per_iteration: iterations dispatched different ops: {ops}")
    return Counter({op: count // iterations for op, count in ops.items()})


def count_ops(lp, name: str, check_every: int) -> dict:
    """One row: ops (and collectives) per iteration and per check of the single and the sharded
    solve of ``lp`` on the CPU (module docstring)."""
    row: dict = {"lp": name, "nnz": lp.nnz, "check_every": check_every, "device": "cpu"}
    for mode, distributed in (("single", False), ("sharded", True)):
        iteration = ops_per_iteration(lp, distributed, check_every)
        # the ops outside the iterations of one more chunk: its check (and restart, if any)
        short = count_solve_ops(lp, distributed, 1 + check_every, check_every)[2]
        long = count_solve_ops(lp, distributed, 1 + 3 * check_every, check_every)[2]
        check = {op: (long[op] - short[op]) / 2 for op in long}
        row[f"{mode}_ops_per_iteration"] = sum(iteration.values())
        row[f"{mode}_collectives_per_iteration"] = sum(
            n for op, n in iteration.items() if op.startswith("c10d."))
        row[f"{mode}_ops_per_check"] = sum(check.values())
        row[f"{mode}_collectives_per_check"] = sum(
            n for op, n in check.items() if op.startswith("c10d."))
        row[f"{mode}_iteration_ops"] = iteration
    extra = row["sharded_iteration_ops"] - row["single_iteration_ops"]
    missing = row["single_iteration_ops"] - row["sharded_iteration_ops"]
    row["extra_ops_per_iteration"] = sum(extra.values()) - sum(missing.values())
    row["extra_iteration_ops"] = dict(extra)
    del row["single_iteration_ops"], row["sharded_iteration_ops"]
    return row


def metis_order(A: torch.Tensor, parts: int) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    """A METIS partition (``pymetis``, not a dependency of the library) of the bipartite graph of
    A's rows and columns (one vertex each, an edge per nonzero, vertex weight = degree + 1, the
    balance of :func:`l2o.pdhg.partition.balanced_bounds`), as a reordering: the row and column
    permutations that make each part contiguous, and the parts' row and column bounds."""
    import numpy as np
    import pymetis
    import scipy.sparse as sp

    m, n = A.shape
    csr = sp.csr_matrix((np.ones(A.values().numel()), A.col_indices().numpy(),
                         A.crow_indices().numpy()), shape=(m, n))
    graph = sp.bmat([[None, csr], [csr.T, None]]).tocsr()
    weights = (np.diff(graph.indptr) + 1).astype(np.int64)
    _, membership = pymetis.part_graph(parts, xadj=graph.indptr, adjncy=graph.indices,
                                       vweights=weights)
    membership = np.asarray(membership)
    rows, cols = membership[:m], membership[m:]

    def order_and_bounds(part_of: np.ndarray) -> tuple[torch.Tensor, list[int]]:
        order = np.argsort(part_of, kind="stable")
        counts = np.bincount(part_of, minlength=parts)
        return torch.from_numpy(order), [0, *np.cumsum(counts).tolist()]

    row_order, row_bounds = order_and_bounds(rows)
    col_order, col_bounds = order_and_bounds(cols)
    return row_order, col_order, row_bounds, col_bounds


def halo_rows(lp, name: str, processes: list[int], partitioner: str = "contiguous") -> list[dict]:
    """One row per W: the exported entries against the padded slices (module docstring), with
    the solver's contiguous nonzero-balanced blocks or after a METIS reordering."""
    from l2o.pdhg.partition import exported_entries, partition_lp

    A = lp.A if lp.A.layout == torch.sparse_csr else lp.A.to_sparse_csr()
    rows = []
    for world in processes:
        if partitioner == "metis":
            row_order, col_order, row_bounds, col_bounds = metis_order(A, world)
            coo = A.to_sparse_coo().coalesce()
            r, c = coo.indices()
            new_row = torch.empty_like(row_order)
            new_row[row_order] = torch.arange(len(row_order))
            new_col = torch.empty_like(col_order)
            new_col[col_order] = torch.arange(len(col_order))
            Ap = torch.sparse_coo_tensor(torch.stack([new_row[r], new_col[c]]),
                                         coo.values(), A.shape).coalesce().to_sparse_csr()
            width_x = max(b - a for a, b in pairwise(col_bounds))
            width_y = max(b - a for a, b in pairwise(row_bounds))
        else:
            Ap = A
            part = partition_lp(A, A.t().to_sparse_csr(), world)
            row_bounds, col_bounds = part.row_bounds, part.col_bounds
            width_x, width_y = part.padded_widths()
        At = Ap.t().to_sparse_csr()
        halo_x = max(exported_entries(Ap, row_bounds, col_bounds))
        halo_y = max(exported_entries(At, col_bounds, row_bounds))
        block_nnz = Ap.crow_indices()[row_bounds].diff().to(torch.float64)
        rows.append({"lp": name, "rows": lp.num_rows, "cols": lp.num_cols, "processes": world,
                     "partitioner": partitioner, "halo_x": halo_x, "width_x": width_x,
                     "halo_y": halo_y, "width_y": width_y,
                     "halo_bytes_ratio": round((halo_x + halo_y) / (width_x + width_y), 3),
                     "nnz_imbalance": round(float(block_nnz.max() / block_nnz.mean()), 3)})
    return rows


def _lps(args: argparse.Namespace):
    l2o = import_l2o()
    from l2o.datasets.pagerank import barabasi_albert_edges

    for nodes in map(int, args.pagerank):
        start = time.perf_counter()
        u, v = barabasi_albert_edges(nodes, 3, seed=0)
        lp = pagerank_lp(l2o, {"name": f"pagerank_{nodes}", "nodes": nodes, "damping": 0.85,
                               "u": torch.from_numpy(u), "v": torch.from_numpy(v)})
        _say(f"pagerank {nodes}: generated in {time.perf_counter() - start:.1f} s")
        yield f"pagerank_{nodes}", lp
    for path in args.files:
        yield Path(path).name.split(".")[0], load_instance(l2o, Path(path), {})[0]


def _say(text: str) -> None:
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*",
                        help="instances: .pt of lp_suite.py convert, or MPS (needs highspy)")
    parser.add_argument("--pagerank", nargs="*", type=float, default=[1e6],
                        help="PageRank LPs of these many nodes (default: 1e6)")
    parser.add_argument("--iters", type=int, default=1000,
                        help="iterations of the per-iteration solve (default 1000)")
    parser.add_argument("--tols", nargs="*", type=float, default=[1e-4],
                        help="tolerances of the solves to a tolerance (default 1e-4)")
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="seconds per solve to a tolerance (default 60)")
    parser.add_argument("--scaling", action="store_true",
                        help="distributed=True only (under torchrun: strong scaling)")
    parser.add_argument("--count-ops", action="store_true",
                        help="count the ops per iteration and per check, single vs sharded, on "
                             "the CPU (one gloo process; module docstring)")
    parser.add_argument("--halo", nargs="*", type=int, default=None, metavar="W",
                        help="report the halo of these numbers of processes (no solve)")
    parser.add_argument("--partitioner", choices=("contiguous", "metis"), default="contiguous",
                        help="--halo: the solver's contiguous blocks, or a METIS reordering "
                             "first (needs pymetis)")
    parser.add_argument("--check-every", type=int, default=16,
                        help="iterations per check of --count-ops (default 16)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(default_out("lp_distributed")))
    args = parser.parse_args(argv)

    l2o = import_l2o()
    if args.halo is not None:
        for name, lp in _lps(args):
            for row in halo_rows(lp, name, args.halo or [2, 4, 8], args.partitioner):
                print(json.dumps(row), flush=True)
        return
    device = torch.device(args.device)
    _init_group(device)
    world = dist.get_world_size()
    if world > 1 and not args.scaling:
        parser.error("under torchrun with several processes, pass --scaling (the single-process "
                     "solve cannot run on several processes)")
    if args.count_ops:
        if device.type != "cpu" or world > 1:
            parser.error("--count-ops counts the CPU solve's ops: --device cpu, one process")
        for name, lp in _lps(args):
            _say(json.dumps(count_ops(lp, name, args.check_every)))
        dist.destroy_process_group()
        return
    modes = [True] if args.scaling else [False, True]
    # warm-up: Triton's kernels, the CUDA graphs' first capture, NCCL's communicator
    warm = l2o.datasets.pagerank(1000, seed=0)      # no MPS reading: no highspy there
    for distributed in modes:
        _solve(warm, distributed, device, tol=1e-4)
    rows: list[dict] = []
    for name, lp in _lps(args):
        per_mode = {}
        for distributed in modes:
            new = measure(lp, name, distributed, device, args.iters, args.tols, args.time_limit)
            per_mode[distributed] = new[0]["iter_us"]
            for row in new:
                _say(json.dumps(row))
            rows += new
        if len(per_mode) == 2:
            _say(f"{name}: {per_mode[False]:.1f} us single, {per_mode[True]:.1f} us "
                 f"distributed=True on one process: overhead "
                 f"{per_mode[True] / per_mode[False] - 1:+.1%}")
    if dist.get_rank() == 0:
        name = (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
        write_rows(args.out, f"lp_distributed_{world}procs", rows, device=name,
                   processes=world, command=" ".join(sys.argv))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
