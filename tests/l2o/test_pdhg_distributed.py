"""solve_lp(distributed=True): 2 and 3 gloo processes against one process (l2o.pdhg.distributed).

The sharded solves run in one torchrun launch per group size (this file is its script: see the
bottom); every process saves its results, and the tests compare them with the single-process
solve of the same LP: the same status and iteration count, and x, y within 1e-12 (relative, in
float64) after 1000 iterations (afiro, PageRank 1e4; 300 for sc50a and adlittle, for the test's
time), and bitwise the same on every process.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

import l2o
from l2o import LinearProgram, LPStatus, solve_lp
from l2o.datasets import pagerank
from l2o.pdhg.partition import balanced_bounds, crosses_blocks, exported_entries, partition_lp

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"
ROOT = Path(__file__).resolve().parents[2]


def _warm_afiro() -> tuple[torch.Tensor, torch.Tensor]:
    """A start near afiro's solution (its 400-iteration point, perturbed)."""
    lp = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    res = solve_lp(lp, device="cpu", presolve=False, iteration_limit=400)
    gen = torch.Generator().manual_seed(0)
    return (res.x * (1 + 1e-3 * torch.randn(res.x.shape, generator=gen, dtype=torch.float64)),
            res.y)


def _tiny_infeasible() -> LinearProgram:
    """x1 + x2 <= 1 and x1 + x2 >= 2, x >= 0 (2 columns: with 3 processes one holds none)."""
    return LinearProgram.create([1, 1], np.array([[1.0, 1], [1, 1]]), row_lower=[-np.inf, 2],
                                row_upper=[1, np.inf])


def _afiro_twice() -> LinearProgram:
    """Two copies of afiro side by side (A block diagonal): 2 processes hold one copy each,
    so no block reads the other process's slices (``Partition.coupled`` False); 3 do."""
    import scipy.sparse as sp

    lp = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    block = sp.csr_matrix(lp.A.to_dense().numpy())
    twice = lambda v: torch.cat([v, v])
    return LinearProgram.create(twice(lp.c), sp.block_diag([block, block], format="csr"),
                                twice(lp.row_lower), twice(lp.row_upper), twice(lp.col_lower),
                                twice(lp.col_upper))


def _tiny_unbounded() -> LinearProgram:
    """min -x1 s.t. x1 - x2 <= 1, x >= 0: unbounded along x = (1, 1) (1 row, 2 columns)."""
    return LinearProgram.create([-1, 0], np.array([[1.0, -1]]), row_upper=[1])


# name -> (the LP, solve_lp's keyword arguments); the same on every process and in the parent.
# gas11, the shared unbounded LP, needs ~20,000 iterations: too long for a gloo test on 2 cores
# (each all-gather takes 1-3 ms there), so the tiny unbounded LP stands in for it (run by hand
# with 2 processes: DUAL_INFEASIBLE after 19841 iterations as one process, the ray within
# 9e-12); klein1 (~2.2e5 iterations) likewise is left out.
def _cases() -> dict[str, tuple[LinearProgram, dict]]:
    netlib = lambda name: l2o.read_lp(DATA / "netlib" / f"{name}.mps.gz")
    limit = {"tol": 1e-12, "iteration_limit": 1000}
    shorter = {"tol": 1e-12, "iteration_limit": 300}       # the test's time on 2 cores
    return {
        "afiro": (netlib("afiro"), limit),                  # optimal after 705 iterations
        "afiro_twice": (_afiro_twice(), limit),             # 2 processes: blocks not coupled
        "sc50a": (netlib("sc50a"), shorter),
        "adlittle": (netlib("adlittle"), shorter),
        "pagerank": (pagerank(10_000, seed=0), limit),
        "afiro_warm": (netlib("afiro"), {"tol": 1e-6, "warm_start": _warm_afiro()}),
        **{name: (l2o.read_lp(DATA / "infeasible" / f"{name}.mps"), {"iteration_limit": 5000})
           for name in ("box1", "galenet", "woodinfe")},
        "tiny_infeasible": (_tiny_infeasible(), {"iteration_limit": 5000}),
        "tiny_unbounded": (_tiny_unbounded(), {"iteration_limit": 5000}),
    }


COMMON = {"device": "cpu", "presolve": False}


# ---------------------------------------------------------------------------------------------
# the sharded runs (one torchrun launch per group size) and the single-process references

def _torchrun(world: int, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={world}", *command],
                          check=False, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"{w}procs")
def sharded(request, tmp_path_factory) -> dict[int, dict]:
    """{rank: {case: result dict}} of the launch with ``request.param`` processes."""
    world = request.param
    out = tmp_path_factory.mktemp(f"sharded{world}")
    run = _torchrun(world, __file__, str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {rank: torch.load(out / f"rank{rank}.pt") for rank in range(world)}


@pytest.fixture(scope="module")
def reference() -> dict[str, dict]:
    return {name: _summary(solve_lp(lp, **COMMON, **kwargs))
            for name, (lp, kwargs) in _cases().items()}


def _summary(res) -> dict:
    return {"status": res.status.value, "iterations": res.iterations, "x": res.x, "y": res.y,
            "objective": res.objective, "distributed": res.distributed,
            "message": res.message}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


@pytest.mark.parametrize("name", ["afiro", "afiro_twice", "sc50a", "adlittle", "pagerank",
                                  "afiro_warm"])
def test_same_iterates_as_one_process(sharded, reference, name):
    mine, ref = sharded[0][name], reference[name]
    assert (mine["status"], mine["iterations"]) == (ref["status"], ref["iterations"])
    assert _rel(mine["x"], ref["x"]) <= 1e-12
    assert _rel(mine["y"], ref["y"]) <= 1e-12
    if name in ("afiro", "afiro_warm"):
        assert mine["status"] == "optimal"
        assert mine["objective"] == pytest.approx(ref["objective"], rel=1e-12)


@pytest.mark.parametrize("name,status", [("box1", LPStatus.PRIMAL_INFEASIBLE),
                                         ("galenet", LPStatus.PRIMAL_INFEASIBLE),
                                         ("woodinfe", LPStatus.PRIMAL_INFEASIBLE),
                                         ("tiny_infeasible", LPStatus.PRIMAL_INFEASIBLE),
                                         ("tiny_unbounded", LPStatus.DUAL_INFEASIBLE)])
def test_same_certificates_as_one_process(sharded, reference, name, status):
    mine, ref = sharded[0][name], reference[name]
    assert ref["status"] == mine["status"] == status.value
    assert mine["iterations"] == ref["iterations"]
    ray = "y" if status == LPStatus.PRIMAL_INFEASIBLE else "x"
    assert _rel(mine[ray], ref[ray]) <= 1e-9


def test_every_process_ends_alike(sharded):
    """Same status, iterations and (bitwise) x, y on every process; the report of the split."""
    first = sharded[0]
    world = len(sharded)
    for rank in range(1, world):
        for name, res in sharded[rank].items():
            if name in ("collectives", "per_chunk"):        # each process's own counts
                continue
            if name in ("errors", "time_limit"):
                assert res == first[name]
                continue
            assert res["status"] == first[name]["status"]
            assert res["iterations"] == first[name]["iterations"]
            assert torch.equal(res["x"], first[name]["x"]) and torch.equal(res["y"],
                                                                           first[name]["y"])
    report = first["pagerank"]["distributed"]
    assert report["processes"] == world
    assert report["col_bounds"][0] == 0 and report["col_bounds"][-1] == 10_000
    assert report["bytes_per_iteration"] > 0


def test_collectives_per_chunk_on_several_processes(sharded):
    """Coupled blocks (afiro): two all-gathers per iteration and the torch check's 8; afiro
    twice on 2 processes (each holds one copy): none per iteration, the check's statistics 1."""
    world, chunk = len(sharded), 16
    for rank in sharded:
        counts = sharded[rank]["per_chunk"]
        assert counts["afiro"] == {"collectives": 2 * chunk + 8, "scalar_reads": 0}
        coupled = {"collectives": 2 * chunk + 8 if world > 2 else 1, "scalar_reads": 0}
        assert counts["afiro_twice"] == coupled
    report = sharded[0]["afiro_twice"]["distributed"]
    assert (report["bytes_per_iteration"] == 0) == (world == 2)


def test_fused_path_collectives(sharded):
    """The collectives of the CUDA path (fused iteration and check) on 2 and 3 CPU processes:
    products, reductions and gathers as the whole LP's (:func:`_fused_path_collectives`)."""
    for rank in sharded:
        errors = sharded[rank]["collectives"]
        assert set(errors) == {"a_mm", "at_mm", "combine", "gather_x_bar", "gather_y"}
        assert max(errors.values()) <= 1e-12, errors


def test_time_limit_stops_every_process_together(sharded):
    status, iterations = sharded[0]["time_limit"]
    assert status == "time_limit" and 0 < iterations < 100_000


def test_refusals_on_every_process(sharded):
    for rank in sharded:
        errors = sharded[rank]["errors"]
        assert "presolve=True" in errors["presolve"]
        assert "another LP" in errors["other_lp"]


def test_cli_under_torchrun(tmp_path):
    """`torchrun --nproc_per_node 2 -m l2o solve FILE --json -o OUT`: one JSON object (rank 0's),
    the file written, the single-process solve's iterations and objective."""
    path = DATA / "netlib" / "afiro.mps.gz"
    out = tmp_path / "afiro.json"
    run = _torchrun(2, "-m", "l2o", "solve", str(path), "--device", "cpu", "--presolve", "off",
                    "--json", "-o", str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    printed = json.loads(run.stdout)
    assert json.loads(out.read_text())["iterations"] == printed["iterations"]
    single = solve_lp(l2o.read_lp(path), device="cpu", presolve=False)
    assert printed["status"] == "optimal" and printed["iterations"] == single.iterations
    assert printed["objective"] == pytest.approx(single.objective, rel=1e-12)


def test_no_process_group_is_a_clear_error():
    lp = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    with pytest.raises(ValueError, match="init_process_group"):
        solve_lp(lp, device="cpu", distributed=True)
    with pytest.raises(TypeError, match="distributed"):
        solve_lp(lp, device="cpu", distributed="yes")


# ---------------------------------------------------------------------------------------------
# what a chunk of iterations costs: collectives and host syncs (one process, in this process)

@contextlib.contextmanager
def _one_process_group(backend: str):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


class _Calls(TorchDispatchMode):
    """Counts the collectives (c10d ops) and the host reads of a tensor's value (item, float,
    bool: ``_local_scalar_dense``) dispatched while it is active."""

    def __init__(self):
        super().__init__()
        self.counts = {"collectives": 0, "scalar_reads": 0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "c10d":
            self.counts["collectives"] += 1
        elif func is torch.ops.aten._local_scalar_dense.default:
            self.counts["scalar_reads"] += 1
        return func(*args, **(kwargs or {}))


def _per_chunk(count, chunk: int) -> dict[str, float]:
    """What one more chunk of ``chunk`` iterations and its check add: ``count(limit)`` of
    solves stopped at 1 + chunk and 1 + 3 chunk iterations (the setup cancels out)."""
    short, long = count(1 + chunk), count(1 + 3 * chunk)
    return {key: (long[key] - short[key]) / 2 for key in short}


def _count_per_chunk(lp, chunk: int, distributed: bool) -> dict[str, float]:
    """Collectives and host reads of one more chunk of a solve of ``lp`` (:func:`_per_chunk`)."""
    def solve(limit: int) -> dict[str, int]:
        with _Calls() as calls:
            res = solve_lp(lp, **COMMON, tol=1e-12, iteration_limit=limit, check_every=chunk,
                           distributed=distributed)
        assert res.iterations == limit
        return calls.counts
    return _per_chunk(solve, chunk)


def test_collectives_and_host_reads_per_chunk():
    """gloo, one process: between two checks the sharded solve runs no collective in its
    iterations (no block reads another process's slice) and one in the check (the statistics'
    partials and the clock), and reads no tensor's value on the host (the check's one copy, its
    ``tolist``, is not dispatched on the CPU), as the single solve reads none."""
    lp, chunk = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz"), 16
    assert _count_per_chunk(lp, chunk, False) == {"collectives": 0, "scalar_reads": 0}
    with _one_process_group("gloo"):
        assert _count_per_chunk(lp, chunk, True) == {"collectives": 1, "scalar_reads": 0}


def _benchmark():
    """benchmarks/lp_distributed.py as a module (its op counter)."""
    from _benchmarks import load_benchmark  # tests/l2o/_benchmarks.py

    return load_benchmark("lp_distributed")


@pytest.mark.parametrize("partitioner", ["contiguous", "metis"])
def test_halo_of_a_block_diagonal_lp_is_empty(partitioner):
    """benchmarks/lp_distributed.py --halo: two uncoupled copies of afiro split in two have
    no halo (each block reads only its own slices), in the LP's order and after METIS's."""
    if partitioner == "metis":
        pytest.importorskip("pymetis")
    afiro = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    A = afiro.A.to_dense()
    twice = torch.block_diag(A, A).to_sparse_csr()
    lp = SimpleNamespace(A=twice, num_rows=twice.shape[0], num_cols=twice.shape[1])
    (row,) = _benchmark().halo_rows(lp, "afiro x2", [2], partitioner)
    assert (row["halo_x"], row["halo_y"], row["halo_bytes_ratio"]) == (0, 0, 0.0)
    assert row["width_x"] >= afiro.num_cols and row["width_y"] >= afiro.num_rows


@pytest.mark.parametrize("name", ["afiro", "pagerank"])
def test_sharded_iteration_runs_the_single_ops(name):
    """gloo, one process, the torch iteration: the sharded iteration dispatches exactly the
    single iteration's ops (no collective, no copy in or out of a buffer: 0 extra ops per
    iteration); the extra ops are the check's (its reduction's second pass and one
    all-gather)."""
    lp = (l2o.read_lp(DATA / "netlib" / "afiro.mps.gz") if name == "afiro"
          else pagerank(1000, seed=0))
    ops_per_iteration = _benchmark().ops_per_iteration
    single = ops_per_iteration(lp, False)
    with _one_process_group("gloo"):
        sharded = ops_per_iteration(lp, True)
    assert sum(single.values()) >= 10       # the counter sees the iteration's ops
    assert sharded == single, {op: (single[op], sharded[op])
                               for op in set(single) | set(sharded) if single[op] != sharded[op]}


needs_nccl = pytest.mark.skipif(not (torch.cuda.is_available() and dist.is_nccl_available()),
                                reason="needs CUDA and NCCL")
CUDA_CASES = {"afiro": lambda: l2o.read_lp(DATA / "netlib" / "afiro.mps.gz"),   # "spmv" plan
              "pagerank": lambda: pagerank(10_000, seed=0)}              # "elementwise" plan


@needs_nccl
@pytest.mark.parametrize("name", list(CUDA_CASES))
def test_cuda_one_process_captures_and_matches_single(name):
    """NCCL, one process: the sharded solve's chunks are captured as CUDA graphs with their
    collectives (no fallback warning) and its iterates are the single solve's."""
    lp = CUDA_CASES[name]()
    kwargs = {"device": "cuda", "presolve": False, "tol": 1e-12, "iteration_limit": 1000}
    single = solve_lp(lp, **kwargs)
    with _one_process_group("nccl"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sharded = solve_lp(lp, **kwargs, distributed=True)
    assert not [w for w in caught if "graph capture failed" in str(w.message)]
    assert (sharded.status, sharded.iterations) == (single.status, single.iterations)
    assert _rel(sharded.x, single.x) <= 1e-9 and _rel(sharded.y, single.y) <= 1e-9


@needs_nccl
def test_cuda_collectives_and_host_syncs_per_chunk():
    """NCCL, one process, the fused iteration: no all-gather in the iterations and 1 per check
    (eager, counted as dispatched); in CUDA graphs, one host sync per check (the statistics'
    copy) at most, as the single solve."""
    lp, chunk = pagerank(10_000, seed=0), 16
    kwargs = {"device": "cuda", "presolve": False, "tol": 1e-12, "check_every": chunk}

    def collectives(limit: int) -> dict[str, int]:
        with _Calls() as calls:
            solve_lp(lp, **kwargs, iteration_limit=limit, cuda_graph=False, distributed=True)
        return calls.counts

    def syncs(distributed: bool):
        def count(limit: int) -> dict[str, int]:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    solve_lp(lp, **kwargs, iteration_limit=limit, distributed=distributed)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            return {"syncs": sum("synchroniz" in str(w.message) for w in caught)}
        return count

    # the sync debug mode is a prototype that does not see every synchronizing call: on the
    # H200 it counted 0.5 per chunk for both solves, so "at most one per check" is what is asked
    single = _per_chunk(syncs(False), chunk)["syncs"]
    assert 0 < single <= 1
    with _one_process_group("nccl"):
        assert _per_chunk(collectives, chunk) == {"collectives": 1, "scalar_reads": 0}
        assert _per_chunk(syncs(True), chunk)["syncs"] <= 1


# ---------------------------------------------------------------------------------------------
# the partition

def test_balanced_bounds():
    # weights nnz + 1: 2, 2, 2, 10, 2, 2 (total 20): the cut at 10 falls after row 2 (6) or
    # row 3 (16); 6 is nearer
    assert balanced_bounds(torch.tensor([1, 1, 1, 9, 1, 1]), 2) == [0, 3, 6]
    # more blocks than rows: the cuts land on the nearer rows, one block is empty
    assert balanced_bounds(torch.tensor([1, 1]), 3) == [0, 1, 1, 2]
    assert balanced_bounds(torch.tensor([], dtype=torch.int64), 2) == [0, 0, 0]
    with pytest.raises(ValueError, match="parts"):
        balanced_bounds(torch.tensor([1]), 0)


def test_coupling_and_exported_entries():
    """Row 0 on process 0 reads columns 0, 1 (its own); row 1 on process 1 reads columns 1, 2:
    column 1 of process 0 is read elsewhere; y's entries are read by the A~^T blocks alike."""
    A = torch.tensor([[1.0, 1, 0], [0, 1, 1]]).to_sparse_csr()
    At = A.t().to_sparse_csr()
    assert exported_entries(A, [0, 1, 2], [0, 2, 3]) == [1, 0]
    assert exported_entries(At, [0, 2, 3], [0, 1, 2]) == [0, 1]     # y_1 read by column 1
    assert crosses_blocks(A, [0, 1, 2], [0, 2, 3]) and crosses_blocks(At, [0, 2, 3], [0, 1, 2])
    diagonal = torch.tensor([[1.0, 0], [0, 1]]).to_sparse_csr()
    assert exported_entries(diagonal, [0, 1, 2], [0, 1, 2]) == [0, 0]
    assert not crosses_blocks(diagonal, [0, 1, 2], [0, 1, 2])
    assert crosses_blocks(diagonal, [0, 1, 2], [0, 2, 2])
    part = partition_lp(diagonal, diagonal, 2)
    assert not part.coupled and part.bytes_per_iteration(8) == 0
    assert partition_lp(A, At, 1).coupled is False


def test_partition_balances_nonzeros():
    lp = pagerank(2000, seed=1)
    A = lp.A.to_sparse_csr()
    At = A.t().to_sparse_csr()
    part = partition_lp(A, At, 4)
    weights = [nnz + (b - a) for nnz, (a, b) in zip(part.row_nnz, zip(part.row_bounds,
                                                                      part.row_bounds[1:]))]
    total = A.values().numel() + lp.num_rows
    # each cut lies within one row's weight of its target (the heaviest row: sum x = 1)
    heaviest = int(A.crow_indices().diff().max()) + 1
    assert max(weights) <= total / 4 + 2 * heaviest
    assert sum(part.row_nnz) == sum(part.col_nnz) == lp.nnz
    width_x, width_y = part.padded_widths()
    assert part.bytes_per_iteration(8) == 3 * (width_x + width_y) * 8


# ---------------------------------------------------------------------------------------------
# the worker: run by torchrun as a script (python -m torch.distributed.run ... this_file OUT)

def _fused_path_collectives() -> dict[str, float]:
    """Errors of the collectives the CUDA path runs (fused iteration and check), here on the
    CPU's slices: :meth:`Sharded.a_mm` / ``at_mm`` against the whole LP's products,
    ``combine`` against the sums and maxima over the processes (and the clock), the exchange's
    in-place gathers of x_bar and y against the whole vectors."""
    from l2o.pdhg.distributed import _group_and_device, broadcast_prepared, shard_prepared
    from l2o.pdhg.options import SolverOptions
    from l2o.pdhg.prepare import prepare_lp
    from l2o.pdhg.profile import PhaseTimer

    group, dev = _group_and_device("cpu")
    rank, world = group.rank, group.world_size
    full = broadcast_prepared(prepare_lp(pagerank(2000, seed=1), dev, torch.float64,
                                         SolverOptions(), PhaseTimer(False), 0.0), group)
    A, At = full.scaled.op.csr, full.scaled.op.csr_t
    part = partition_lp(A, At, world)
    shard, sharded = shard_prepared(full, part, group, dev, 0.0)
    (r0, r1), (c0, c1) = part.rows(rank), part.cols(rank)
    gen = torch.Generator().manual_seed(0)             # the same vectors on every process
    xr = torch.randn(4, A.shape[1], generator=gen, dtype=torch.float64)
    yr = torch.randn(3, A.shape[0], generator=gen, dtype=torch.float64)
    errors = {
        "a_mm": (sharded.a_mm(shard.scaled, xr[:, c0:c1]) - (A @ xr.t())[r0:r1]).abs().max(),
        "at_mm": (sharded.at_mm(shard.scaled, yr[:, r0:r1]) - (At @ yr.t())[c0:c1]).abs().max(),
    }
    partials = torch.tensor([1.0, -2.0, 0.5]) * (rank + 1)
    sharded.clock.fill_(10.0 + rank)
    combined = sharded.combine(partials, torch.tensor([False, True, True]))
    expected = torch.tensor([sum(range(1, world + 1)), -2.0, 0.5 * world, 10.0 + world - 1])
    errors["combine"] = (combined - expected).abs().max()
    state = SimpleNamespace(x_bar=torch.zeros(c1 - c0, dtype=torch.float64),
                            y=yr[0, r0:r1].clone())
    sharded.attach(state)
    state.x_bar.copy_(xr[0, c0:c1])
    sharded.exchange.gather_x_bar()
    sharded.exchange.gather_y()
    errors["gather_x_bar"] = (sharded.exchange.x_bar[shard.scaled.op.gather_x.positions]
                              - xr[0]).abs().max()
    errors["gather_y"] = (sharded.exchange.y[shard.scaled.op.gather_y.positions]
                          - yr[0]).abs().max()
    return {name: float(error) for name, error in errors.items()}


def _worker(out: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    cases = _cases()
    results: dict = {name: _summary(solve_lp(lp, **COMMON, distributed=True, **kwargs))
                     for name, (lp, kwargs) in cases.items()}
    errors = {}
    lp = l2o.read_lp(DATA / "netlib" / "afiro.mps.gz")
    try:
        solve_lp(lp, device="cpu", presolve=True, distributed=True)
    except ValueError as error:
        errors["presolve"] = str(error)
    other = lp if rank == 0 else l2o.read_lp(DATA / "netlib" / "sc50a.mps.gz")
    try:
        solve_lp(other, **COMMON, distributed=True)
    except ValueError as error:
        errors["other_lp"] = str(error)
    results["errors"] = errors
    # the processes' clocks differ: the time limit reads the largest, so all stop at one check
    res = solve_lp(l2o.read_lp(DATA / "netlib" / "adlittle.mps.gz"), **COMMON, tol=1e-12,
                   time_limit=0.3, iteration_limit=100_000, distributed=True)
    results["time_limit"] = (res.status.value, res.iterations)
    results["collectives"] = _fused_path_collectives()
    results["per_chunk"] = {name: _count_per_chunk(cases[name][0], 16, True)
                            for name in ("afiro", "afiro_twice")}
    torch.save(results, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
    # no interpreter finalization with gloo's threads alive (tests/bilevel/_distributed_worker.py)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
