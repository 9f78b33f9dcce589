"""Time per training step of ``l2o.LPLayer``: forward + backward for a batch of LPs (issue 14).

The LPs are the shortest paths of ``examples/shortest_path_dfl.py``: a ``--grid`` x ``--grid``
grid whose edges point right and down, flow conservation rows (the sink's dropped), 0 <= x <= 1,
with random positive costs (uniform in [0.5, 1.5], seeded).  Two steps are timed:

* ``perturbed``: ``l2o.fenchel_young_loss`` through ``LPLayer(mode="perturbed")`` for ``--batch``
  instances with ``--samples`` perturbations each (batch * samples LPs in one batched solve),
  then its backward (the issue's target: 64 LPs, 32 samples);
* ``value``: ``LPLayer(mode="value")``'s optimal values of the ``--batch`` LPs and their backward.

Each is run once to warm up and then ``--reps`` times; the table has the median and the fastest
time per step and the LPs solved per second.  The LPs are built with torch alone (no networkx or
highspy needed on the GPU machine).

    python benchmarks/lp_layer.py --device cuda [--batch 64] [--samples 32] [--grid 5]
        [--tol 1e-4] [--reps 5] [--threads 1] [--out DIR]

Writes ``lp_layer.json`` and ``lp_layer.csv`` to ``--out`` (default ``benchmarks/out/lp_layer``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o
from _paths import default_out, write_rows
from _timing import device_name


def grid_shortest_path(l2o, size: int):
    """The shortest path LP of a size x size grid, edges right and down (costs 0)."""
    def node(i: int, j: int) -> int:
        return i * size + j

    edges = [(node(i, j), node(i, j + 1)) for i in range(size) for j in range(size - 1)]
    edges += [(node(i, j), node(i + 1, j)) for i in range(size - 1) for j in range(size)]
    sink = size * size - 1
    incidence = torch.zeros(sink, len(edges), dtype=torch.float64)   # the sink's row dropped
    for k, (u, v) in enumerate(edges):
        incidence[u, k] = 1.0
        if v != sink:
            incidence[v, k] = -1.0
    supply = torch.zeros(sink, dtype=torch.float64)
    supply[0] = 1.0
    return l2o.LinearProgram.create(torch.zeros(len(edges)), incidence.to_sparse_csr(), supply,
                                    supply, 0.0, 1.0, name=f"grid{size}")


def time_step(step, sync, reps: int) -> list[float]:
    """Seconds of each of ``reps`` calls of ``step`` after one warm-up call."""
    step()
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="where the LPs are solved")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.5)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: the host side is tiny LPs' bookkeeping)")
    parser.add_argument("--out", type=Path, default=default_out("lp_layer"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    l2o = import_l2o()
    from l2o.device import resolve_device

    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    lp = grid_shortest_path(l2o, args.grid)
    _, *data = l2o.LPLayer.lp_inputs(lp)
    generator = torch.Generator().manual_seed(args.seed)
    costs = 0.5 + torch.rand(args.batch, lp.num_cols, generator=generator, dtype=torch.float64)
    targets = l2o.LPLayer.from_lp(lp, device=device, tol=args.tol)(costs, *data)[0]

    perturbed = l2o.LPLayer.from_lp(lp, mode="perturbed", eps=args.eps, samples=args.samples,
                                    device=device, tol=args.tol, seed=args.seed)
    value = l2o.LPLayer.from_lp(lp, device=device, tol=args.tol)

    def perturbed_step():
        c_hat = costs.clone().requires_grad_()
        l2o.fenchel_young_loss(c_hat, targets, perturbed, *data).backward()

    def value_step():
        c_hat = costs.clone().requires_grad_()
        value(c_hat, *data)[1].sum().backward()

    rows = []
    for name, step, lps in (("perturbed", perturbed_step, args.batch * args.samples),
                            ("value", value_step, args.batch)):
        times = time_step(step, sync, args.reps)
        median = statistics.median(times)
        rows.append({"mode": name, "batch": args.batch,
                     "samples": args.samples if name == "perturbed" else 1, "lps": lps,
                     "grid": args.grid, "rows": lp.num_rows, "cols": lp.num_cols,
                     "tol": args.tol, "median_s": median, "min_s": min(times),
                     "lps_per_s": lps / median})
    print(f"LPLayer forward + backward, {device_name(str(device))}, grid {args.grid} "
          f"({lp.num_rows} rows, {lp.num_cols} cols), tol {args.tol:g}")
    print(f"{'mode':>10} {'batch':>6} {'samples':>8} {'LPs':>6} {'median s':>9} {'min s':>8} "
          f"{'LPs/s':>8}")
    for r in rows:
        print(f"{r['mode']:>10} {r['batch']:>6} {r['samples']:>8} {r['lps']:>6} "
              f"{r['median_s']:9.3f} {r['min_s']:8.3f} {r['lps_per_s']:8.0f}")
    write_rows(args.out, "lp_layer", rows, device=device_name(str(device)),
               torch=torch.__version__, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(f"wrote {args.out}/lp_layer.json, .csv")
    return rows


if __name__ == "__main__":
    main()
