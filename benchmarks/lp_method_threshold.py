"""Where ``solve_lp(method="auto")`` should switch from HiGHS to PDHG: both timed per LP.

For every MPS file given (default: the shared NETLIB set), on one device: the median wall time
of ``solve_lp(lp, method="highs")`` (HiGHS dual simplex on the CPU) and of
``solve_lp(lp, method="pdhg", device=...)`` at each tolerance, after one warm-up solve each
(Triton compile, cuSPARSE handles, HiGHS's first call).  Prints one row per LP, sorted by
nonzeros, and the largest nonzero count below which HiGHS was faster on every LP: the value for
``l2o.pdhg.method.AUTO_HIGHS_MAX_NNZ``.  Rows go to ``--out`` (default
``benchmarks/out/lp_method_threshold.json``).

    python benchmarks/lp_method_threshold.py --device cpu                # CPU (as measured)
    python benchmarks/lp_method_threshold.py --device cuda ../shared/data/lp/netlib/*.mps.gz \
        ../shared/data/lp/large/*.mps.gz                                  # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out

NETLIB = Path("../shared/data/lp/netlib")       # relative to the repository root, as lp_suite.py


def _median_time(solve, reps: int) -> tuple[float, object]:
    solve()                                            # warm-up
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = solve()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lps", nargs="*", help="MPS files (default: the shared NETLIB LPs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tols", nargs="+", type=float, default=[1e-4, 1e-8])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--iteration-limit", type=int, default=200_000)
    ap.add_argument("--out", default=str(default_out("lp_method_threshold.json")))
    args = ap.parse_args(argv)
    import torch

    import l2o

    if args.device == "cpu":
        torch.set_num_threads(1)                       # HiGHS's simplex runs on one thread
    paths = [Path(p) for p in args.lps] or sorted(NETLIB.glob("*.mps.gz"))
    rows = []
    for path in paths:
        lp = l2o.read_lp(path)
        highs_time, ref = _median_time(partial(l2o.solve_lp, lp, method="highs"), args.reps)
        row = {"lp": path.name.split(".")[0], "nnz": lp.nnz, "highs_s": highs_time,
               "highs_status": ref.status.name}
        for tol in args.tols:
            t, res = _median_time(partial(l2o.solve_lp, lp, method="pdhg", tol=tol,
                                          device=args.device,
                                          iteration_limit=args.iteration_limit), args.reps)
            row[f"pdhg_s@{tol:g}"], row[f"pdhg_status@{tol:g}"] = t, res.status.name
            row[f"pdhg_iterations@{tol:g}"] = res.iterations
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: r["nnz"])
    print(f"\n{'lp':>10} {'nnz':>7} {'HiGHS s':>9} " + " ".join(
        f"{'PDHG s @' + format(t, 'g'):>13}" for t in args.tols))
    for r in rows:
        print(f"{r['lp']:>10} {r['nnz']:>7} {r['highs_s']:>9.4f} " + " ".join(
            f"{r[f'pdhg_s@{t:g}']:>13.4f}" for t in args.tols))
    for tol in args.tols:
        # the first LP (by size) where PDHG beats HiGHS; HiGHS wins below it
        wins = [r["nnz"] for r in rows if r[f"pdhg_s@{tol:g}"] < r["highs_s"]
                and r[f"pdhg_status@{tol:g}"] == "OPTIMAL"]
        first = min(wins) if wins else None
        print(f"tol {tol:g}: HiGHS faster on every LP below "
              + (f"{first} nonzeros" if first else f"{rows[-1]['nnz'] + 1} nonzeros (all measured)"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
