"""One process of the data-parallel tests (tests/bilevel/test_distributed.py), launched as

    python -m torch.distributed.run --nproc_per_node 2 ... _distributed_worker.py MODE OUT [...]

MODE "compare": aid-cg, itd and penalty, 20 outer steps each, on the minibatch ridge
problem of :func:`ridge_problem`, then solves whose y0 or data differ between the processes;
rank 0 saves {method: (x, y, history), "refusals y0" / "refusals data": each process's
error message} to OUT.
MODE "run": one aid-cg solve with ``--checkpoint``; ``--hang-after K`` makes every process
write its pid to OUT.pid<rank> and then sleep in the callback after outer step K (the test
kills them with SIGKILL there); without it rank 0 saves (x, y, history, n_steps) of the
resumed run and of an uninterrupted one to OUT.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from _bilevel_refs import DT, Ridge  # this file's folder is first on sys.path when run

import bilevel

COMPARED = ("aid-cg", "itd", "penalty")
SOLVE = {"outer_steps": 20, "inner_steps": 2, "inner_lr": 0.3, "outer_lr": 0.05, "seed": 3,
         "progress": False}
RUN = {**SOLVE, "outer_steps": 12, "method": "aid-cg"}


def ridge_problem() -> bilevel.BilevelProblem:
    """Ridge with per-feature weights (tests/bilevel/_bilevel_refs.py), minibatch data whose
    batches do not split evenly over 2 processes: inner a shuffled DataLoader of 15-row
    batches (8 + 7 rows per process), outer a list of 15-row batches."""
    ridge = Ridge(n=5, m=45, mv=30, seed=1)
    inner = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ridge.X, ridge.t),
                                        batch_size=15, shuffle=True)
    outer = [(ridge.Xv[:15], ridge.tv[:15]), (ridge.Xv[15:], ridge.tv[15:])]
    return bilevel.BilevelProblem(outer=ridge.outer, inner=ridge.inner, x0=ridge.x0,
                                  y0=torch.zeros(ridge.n, dtype=DT), outer_data=outer,
                                  inner_data=inner)


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["compare", "run"])
    parser.add_argument("out")
    parser.add_argument("--checkpoint")
    parser.add_argument("--hang-after", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    torch.manual_seed(0)  # the DataLoader's first batch (BilevelProblem draws it) as in the test
    problem = ridge_problem()
    if args.mode == "compare":
        results = {}
        for method in COMPARED:
            res = bilevel.solve(problem, method=method, **SOLVE)
            results[method] = (res.x, res.y, res.history)
        # a y0, or data, that differs between the processes is refused on every one of them
        own_y0 = bilevel.BilevelProblem(problem.outer, problem.inner, x0=problem.x0,
                                        y0=torch.full_like(problem.y0, float(rank)),
                                        outer_data=problem.outer_data,
                                        inner_data=problem.inner_data)
        shard = [b for i, b in enumerate(problem.outer_data) if i % 2 == rank]  # DDP habit
        own_data = bilevel.BilevelProblem(problem.outer, problem.inner, x0=problem.x0,
                                          y0=problem.y0, outer_data=shard,
                                          inner_data=problem.inner_data)
        for name, other in (("y0", own_y0), ("data", own_data)):
            try:
                bilevel.solve(other, **SOLVE)
                refusal = "ran"
            except ValueError as err:
                refusal = str(err)
            refusals = [None] * dist.get_world_size()
            dist.all_gather_object(refusals, refusal)
            results[f"refusals {name}"] = refusals
        if rank == 0:
            torch.save(results, args.out)
    else:
        callback = None
        if args.hang_after is not None:
            def callback(record: dict) -> None:
                if record["step"] == args.hang_after:
                    Path(f"{args.out}.pid{rank}").write_text(str(os.getpid()))
                    time.sleep(300)  # killed here by the test (SIGKILL)
        resumed = bilevel.solve(problem, checkpoint=args.checkpoint, checkpoint_every=4,
                                callback=callback, **RUN)
        fresh = bilevel.solve(problem, **RUN)
        if rank == 0:
            torch.save({"resumed": (resumed.x, resumed.y, resumed.history, resumed.n_steps),
                        "fresh": (fresh.x, fresh.y, fresh.history, fresh.n_steps)}, args.out)
    # Both processes idle before the group goes, and no interpreter finalization after it: on
    # a loaded machine gloo's threads, still alive then, aborted a process that had destroyed
    # its group ("terminate called without an active exception", SIGABRT at exit; torch 2.13,
    # 1 run in 8 with two busy cores; pytorch/pytorch#179291 describes the mechanism).
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _main()
