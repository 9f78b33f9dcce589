"""Where the time of ``solve_lp(..., presolve=...)`` goes: the presolve path phase by phase.

For each LP file (MPS, or the .pt of ``lp_suite.py convert``: no highspy needed) and each
``--presolve`` value it runs ``l2o.solve_lp(lp, tol, device, presolve=..., profile=True)``
(after one unprofiled warm-up solve of the same LP and value on CUDA: kernels loaded, Triton
compiled) and prints the phases of ``LPResult.timings``
(:mod:`l2o.pdhg.presolve`), grouped:

    decide+validate   the decision and the host check of the original LP
    presolve          the reductions (HiGHS or torch on the device), reduced LP built
    setup             the reduced LP's preparation (copy, checks, scaling, operator, step)
    first+capture     the first chunk and its check, the CUDA graph capture
    loop              every later chunk of iterations and its check
    postsolve         x, y and the reduced costs mapped back
    evaluate          the check of the postsolved point on the original LP
    resolve           any later solve (a tightened re-solve or the original LP)
    other             the rest (result copies, Python between phases)

Profiled marks synchronize the device, so ``total`` is a little above an unprofiled solve's
``solve_time``, printed as ``plain`` with ``--plain`` (one more solve, not profiled).

    python benchmarks/presolve_path.py ../shared/data/lp/large/{ken-11,osa-07}.mps.gz \
        --device cpu --threads 1 --presolve off gpu highs --tol 1e-4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o
from lp_suite import load_instance

PRESOLVE = {"off": False, "gpu": "gpu", "highs": True, "auto": "auto"}
SETUP = {"to_device", "validate", "scaling", "operator", "norm", "move", "termination", "state",
         "fused_plan"}
FIRST = {"first_check", "cold_probe", "graph_capture"}
COLUMNS = ("decide+validate", "presolve", "setup", "first+capture", "loop", "postsolve",
           "evaluate", "resolve", "other")


def group(timings: dict[str, float], presolved: bool) -> dict[str, float]:
    """The phases of ``LPResult.timings`` summed into :data:`COLUMNS` (seconds)."""
    out = dict.fromkeys(COLUMNS, 0.0)
    for phase, seconds in timings.items():
        if phase == "total":
            continue
        if phase.startswith("resolve."):
            column = "resolve"
        else:
            inner = phase.split(".", 1)[1] if phase.startswith("solve.") else phase
            if not presolved or phase.startswith("solve."):
                column = ("setup" if inner in SETUP else "first+capture" if inner in FIRST
                          else "loop" if inner == "iterations" else "other")
            else:
                column = {"decide": "decide+validate", "validate": "decide+validate",
                          "presolve": "presolve", "postsolve": "postsolve",
                          "evaluate": "evaluate"}.get(phase, "other")
        out[column] += seconds
    return out


def measure(l2o, path: Path, mode: str, tol: float, device: str, time_limit: float,
            plain: bool) -> dict:
    lp, _ = load_instance(l2o, path, {})     # .pt (lp_suite.py convert: no highspy) or MPS
    kwargs = {"tol": tol, "device": device, "presolve": PRESOLVE[mode], "time_limit": time_limit}
    if device.startswith("cuda"):
        l2o.solve_lp(lp, **kwargs)      # warm-up: kernels loaded, Triton compiled, allocator
    res = l2o.solve_lp(lp, profile=True, **kwargs)
    row = {"name": path.name.split(".")[0], "presolve": mode, "status": res.status.name,
           "iterations": res.iterations, "total": res.timings["total"],
           **group(res.timings, "decide" in res.timings),
           "by": res.presolve["by"], "rows_removed": res.presolve["rows_removed"],
           "cols_removed": res.presolve["cols_removed"], "presolve_s": res.presolve["time_s"],
           "max_kkt": max(res.kkt.values()),
           "objective": res.objective, "timings": res.timings}
    if plain:
        start = time.perf_counter()
        again = l2o.solve_lp(lp, **kwargs)
        row["plain"] = again.solve_time
        row["plain_wall"] = time.perf_counter() - start
        row["plain_iterations"] = again.iterations
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--presolve", nargs="+", choices=tuple(PRESOLVE), default=["off", "gpu"])
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--plain", action="store_true",
                    help="also time one unprofiled solve (the 'plain' column)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    l2o = import_l2o()
    rows = []
    head = (f"{'LP':10s} {'presolve':8s} {'status':9s} {'it':>7s} "
            + " ".join(f"{c[:10]:>10s}" for c in COLUMNS) + f" {'total':>8s} {'plain':>8s}  kept")
    print(f"seconds per phase, tol {args.tol:g}, device {args.device}")
    print(head)
    for path in args.files:
        for mode in args.presolve:
            row = measure(l2o, path, mode, args.tol, args.device, args.time_limit, args.plain)
            rows.append(row)
            print(f"{row['name']:10s} {mode:8s} {row['status'][:9]:9s} {row['iterations']:7d} "
                  + " ".join(f"{row[c]:10.4f}" for c in COLUMNS)
                  + f" {row['total']:8.4f} {row.get('plain', float('nan')):8.4f}"
                  + f"  {row['by'] or '-'} (-{row['rows_removed']} rows)", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
