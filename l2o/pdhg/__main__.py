"""``python -m l2o.pdhg``: solve_lp's time per phase on some LPs (see l2o.pdhg.profile)."""

from __future__ import annotations

import torch


def _load(spec: str):
    """``pagerank:N`` (generated, seed 5,000,000 as benchmarks/pdhgnet.py) or an MPS/LP path."""
    if spec.startswith("pagerank:"):
        from l2o.datasets import generate
        return generate("pagerank", nodes=int(spec.split(":", 1)[1]), seed=5_000_000)
    from l2o import read_lp
    return read_lp(spec)


def main(argv: list[str] | None = None) -> None:
    """Print the phase breakdown of ``solve_lp`` on each LP, ``--reps`` solves each: the first
    pays one-time costs (Triton compile, cuSPARSE handles), the later ones are per-solve costs.

        python -m l2o.pdhg pagerank:1000000 l2o/data/afiro.mps.gz --device cuda
    """
    import argparse
    import json

    from l2o.pdhg.solver import solve_lp

    ap = argparse.ArgumentParser(description="solve_lp's time per phase")
    ap.add_argument("lps", nargs="+", help="pagerank:N or a path to an MPS/LP file")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--torch-profile", type=int, default=0, metavar="ROWS",
                    help="also run the last solve of each LP under torch.profiler and print "
                         "its ROWS most expensive ops (CPU time, self)")
    args = ap.parse_args(argv)
    rows = []
    for spec in args.lps:
        lp = _load(spec)
        for rep in range(args.reps):
            res = solve_lp(lp, tol=args.tol, device=args.device, profile=True)
            row = {"lp": spec, "rep": rep, "nnz": lp.nnz, "iterations": res.iterations,
                   "status": res.status.name, **res.timings}
            rows.append(row)
            print(f"{spec} rep {rep}: {res.iterations} it {res.status.name} | "
                  + " ".join(f"{k} {1e3 * v:.1f}" for k, v in res.timings.items()) + " (ms)",
                  flush=True)
        if args.torch_profile > 0:
            _torch_profile(lp, args, args.torch_profile)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)



def _torch_profile(lp, args, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    from l2o.pdhg.solver import solve_lp

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        solve_lp(lp, tol=args.tol, device=args.device)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows,
                                    max_name_column_width=48), flush=True)


if __name__ == "__main__":
    main()
