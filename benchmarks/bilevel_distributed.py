"""Overhead of data-parallel ``bilevel.solve`` (``bilevel.distributed``) on one process.

One process joins a process group of world size 1 (NCCL on a GPU, gloo on the CPU; a file
store, no torchrun needed) and runs each method twice per repetition on the same minibatch
problem: the plain path and ``distributed=True`` (every value and derivative of f and g
all-reduced through the Copy / Reduce pair, CUDA graphs off).  The time per outer step is
the median of the differences of the history's wall times (each step ends with the one
host synchronization of ``bilevel.solve``'s record), after ``--warmup`` steps; the two paths
alternate over ``--reps`` repetitions and the median over them is reported, with the
ratio distributed / plain and the largest difference of the final x (the same arithmetic
up to rounding).  On the CPU the solves run on one thread, and the CPU time of the process
per outer step (``time.process_time`` over the whole solve, start-up included) is reported
next to the wall time: on a shared machine the wall time of a step, and a gloo all-reduce's
wait for its worker thread, measure the machine's load more than the code.

Problems: "ijcnn1" (bundled; 22 per-feature L2 weights of a logistic regression, float64,
minibatches of ``--batch`` rows: launch-bound, the worst case for per-call collectives)
and "synthetic" (a float32 logistic regression with ``--features`` features and
``--rows`` training rows: more work per call).

    python benchmarks/bilevel_distributed.py --device cuda             # H200: NCCL
    python benchmarks/bilevel_distributed.py --device cpu --steps 8    # a CPU check (gloo)

Writes ``bilevel_distributed.json`` / ``.csv`` to --out (default
``benchmarks/out/bilevel_distributed``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out, write_rows
from _timing import device_name

import bilevel
from bilevel.tasks import hyperparameter_tuning, load_ijcnn1


def problem_factory(name: str, device: torch.device, args: argparse.Namespace
                    ) -> Callable[[], bilevel.BilevelProblem]:
    """A function building the problem afresh: its minibatches (``IndexBatches``) draw from
    their own seeded generator, so every run must start from a new one to see the same
    batches."""
    if name == "ijcnn1":
        split = load_ijcnn1()
        data, dtype = (split.X_train, split.y_train, split.X_val, split.y_val), torch.float64
    elif name == "synthetic":
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(args.features, generator=gen)
        X = torch.randn(args.rows + args.rows // 4, args.features, generator=gen)
        labels = torch.sign(X @ w + 0.5 * torch.randn(X.shape[0], generator=gen))
        data = (X[:args.rows], labels[:args.rows], X[args.rows:], labels[args.rows:])
        dtype = torch.float32
        data = tuple(t.to(device) for t in data)
    else:
        raise ValueError(f"unknown problem {name!r}: ijcnn1 or synthetic")
    return lambda: hyperparameter_tuning(*data, batch_size=args.batch, device=device,
                                         dtype=dtype, log_reg0=-4.0)


def step_ms(result: bilevel.BilevelResult, warmup: int) -> float:
    """Median time per outer step (ms) from the history's cumulative wall times."""
    times = [r["wall_time"] for r in result.history]
    steps = [b - a for a, b in zip(times[warmup:], times[warmup + 1:])]
    return 1e3 * statistics.median(steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default="aid-cg,itd,penalty")
    parser.add_argument("--problems", default="ijcnn1,synthetic")
    parser.add_argument("--steps", type=int, default=40, help="outer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps not timed")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--inner-steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=262_144)
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--out", default=str(default_out("bilevel_distributed")))
    args = parser.parse_args(argv)
    if args.steps < args.warmup + 3:
        parser.error("--steps must exceed --warmup by at least 3")
    device = torch.device(args.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cpu":
        torch.set_num_threads(1)  # intra-op threads would contend with the machine's load
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)  # NCCL's device for this process
    store = Path(tempfile.mkdtemp()) / "store"
    dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)
    try:
        rows = []
        for name in args.problems.split(","):
            make = problem_factory(name, device, args)
            for method in args.methods.split(","):
                kw = {"method": method, "outer_steps": args.steps,
                      "inner_steps": args.inner_steps, "seed": 0, "progress": False}
                paths = ("plain", "distributed")
                times: dict[str, list[float]] = {p: [] for p in paths}
                cpu: dict[str, list[float]] = {p: [] for p in paths}
                finals = {}
                for _ in range(args.reps):
                    for path in paths:
                        problem = make()
                        started = time.process_time()
                        result = bilevel.solve(problem, distributed=path == "distributed",
                                               **kw)
                        cpu[path].append(1e3 * (time.process_time() - started) / args.steps)
                        times[path].append(step_ms(result, args.warmup))
                        finals[path] = result.x
                plain, parallel = (statistics.median(times[p]) for p in paths)
                difference = float((finals["distributed"] - finals["plain"]).abs().max())
                row = {"problem": name, "method": method, "plain_ms": round(plain, 3),
                       "distributed_ms": round(parallel, 3),
                       "ratio": round(parallel / plain, 3), "max_abs_dx": difference}
                shown = ""
                if device.type == "cpu":
                    plain_cpu, parallel_cpu = (statistics.median(cpu[p]) for p in paths)
                    row.update(plain_cpu_ms=round(plain_cpu, 3),
                               distributed_cpu_ms=round(parallel_cpu, 3),
                               cpu_ratio=round(parallel_cpu / plain_cpu, 3))
                    shown = (f"   CPU time {plain_cpu:8.2f} vs {parallel_cpu:8.2f} ms/step, "
                             f"ratio {parallel_cpu / plain_cpu:5.2f}")
                rows.append(row)
                print(f"{name:10s} {method:8s} plain {plain:9.3f} ms/step   distributed "
                      f"{parallel:9.3f} ms/step   ratio {parallel / plain:5.2f}   "
                      f"max|dx| {difference:.1e}{shown}", flush=True)
        write_rows(args.out, "bilevel_distributed", rows, device=device_name(str(device)),
                   backend=backend, torch=torch.__version__, args=vars(args))
        print(f"wrote {Path(args.out) / 'bilevel_distributed.json'}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
