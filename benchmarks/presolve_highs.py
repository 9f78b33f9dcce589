"""HiGHS presolve on the CPU and the GPU reductions: how long they take and what they remove.

For every ``*.mps.gz`` / ``*.mps`` in the given folders it runs :func:`l2o.lp.presolve.presolve_lp`
(one run after reading the file) and prints rows/cols/nnz before, the removed counts, the time of
HiGHS's presolve alone and with the conversions to and from HiGHS, and the time of postsolve
(of the reduced LP's zero point clamped into its bounds: postsolve replays the same record
whatever the point, so this times it without solving). With ``--gpu`` the torch reductions
(:func:`l2o.lp.gpu_presolve.gpu_presolve_lp`, on ``--device``; one warm-up run first) are timed
too and their removed counts printed next to HiGHS's. With ``--solve`` the reduced LP is solved
by HiGHS (interior point, CPU) and postsolved, and the original LP's objective and KKT errors
(float64) of the postsolved point are printed next to the file's ``optimal_values.csv``. With
``--pdhg TOL`` the LP is solved by ``l2o.solve_lp`` (CPU, float64) to TOL with presolve off,
by HiGHS and (with ``--gpu``) by the GPU reductions, and the iteration counts printed (each
counts every PDHG iteration of the solve, postsolve checks on the original LP included), and
with ``--gpu`` those of the GPU-reduced LP alone ("it gpu-red": to the solver's own criterion,
no postsolve check).
``--threads N`` sets torch's CPU threads (on a loaded machine 1 is far faster than 2).

    python benchmarks/presolve_highs.py ../shared/data/lp/large [--gpu] [--solve] [--pdhg 1e-4]
        [--device cpu] [--threads 1] [--only ken-11 pds-10] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o


def _optima(folder: Path) -> dict[str, float]:
    path = folder / "optimal_values.csv"
    if not path.exists():
        return {}
    with open(path) as handle:
        return {row["name"]: float(row["optimal_objective"]) for row in csv.DictReader(handle)}


def measure(path: Path, solve: bool, optimum: float | None, pdhg_tol: float | None,
            gpu: bool, device: str) -> dict:
    l2o = import_l2o()
    from l2o.lp.gpu_presolve import gpu_presolve_lp
    from l2o.lp.kkt import kkt_error
    from l2o.lp.presolve import presolve_lp

    lp = l2o.read_lp(path)
    pre = presolve_lp(lp)
    row = {"name": lp.name, "rows": lp.num_rows, "cols": lp.num_cols, "nnz": lp.nnz,
           "outcome": pre.outcome.value, **pre.report(), "highs_presolve_s": pre.timings["presolve"]}
    if gpu:
        gpu_presolve_lp(lp, device=device)   # warm-up (allocator, kernels)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        fast = gpu_presolve_lp(lp, device=device)
        row.update({f"gpu_{key}": value for key, value in fast.report().items()},
                   gpu_outcome=fast.outcome.value, gpu_rounds=fast.rounds)
    if pre.reduced_or_empty:
        red = pre.reduced
        if red is not None:
            x0 = torch.clamp(torch.zeros(red.num_cols, dtype=torch.float64), red.col_lower,
                             red.col_upper)
            y0 = torch.zeros(red.num_rows, dtype=torch.float64)
            _, _, _, row["postsolve_s"] = pre.postsolve(x0, y0)
        if solve:
            pre = presolve_lp(lp)     # a fresh record: postsolve consumes HiGHS's solution
            start = time.perf_counter()
            if pre.reduced is not None:
                ref = l2o.lp.reference.solve_highs(pre.reduced, method="ipm")
                row["reduced_status"] = ref.status.value
                x, y, _, _ = pre.postsolve(ref.x, ref.y)
            else:
                x, y, _, _ = pre.postsolve()
            row["solve_s"] = time.perf_counter() - start
            row["objective"] = lp.objective(x)
            row["optimum"] = optimum
            row.update(kkt_error(lp, x, y))
    if pdhg_tol is not None:
        for key, presolve in PDHG_VARIANTS:
            if key == "gpu" and not gpu:
                continue
            result = l2o.solve_lp(lp, tol=pdhg_tol, device="cpu", iteration_limit=200_000,
                                  presolve=presolve)
            row[f"iters_{key}"] = (result.iterations if result.status.value == "optimal"
                                   else result.status.value)
            row[f"pdhg_s_{key}"] = result.solve_time
        if gpu and fast.reduced is not None:
            # the reduced LP alone, to the solver's own criterion (no postsolve check)
            result = l2o.solve_lp(fast.reduced, tol=pdhg_tol, device="cpu",
                                  iteration_limit=200_000, presolve=False)
            row["iters_gpu_reduced"] = (result.iterations if result.status.value == "optimal"
                                        else result.status.value)
    return row


# --pdhg: solve_lp's presolve= per column
PDHG_VARIANTS = (("off", False), ("highs", True), ("gpu", "gpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--solve", action="store_true",
                        help="solve the reduced LP with HiGHS and check the postsolved point")
    parser.add_argument("--pdhg", type=float, metavar="TOL",
                        help="PDHG iterations (CPU) to TOL on the original and the reduced LP")
    parser.add_argument("--gpu", action="store_true",
                        help="also time the GPU reductions (l2o.lp.gpu_presolve) on --device")
    parser.add_argument("--device", default="cpu", help="where the GPU reductions run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--only", nargs="*", help="only these LPs (names without suffix)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    header = (f"{'LP':<10} {'rows':>7} {'cols':>7} {'nnz':>8} {'-rows':>7} {'-cols':>7} "
              f"{'-nnz':>8} {'highs s':>8} {'total s':>8} {'post s':>7}")
    if args.gpu:
        header += f" {'gpu -r':>7} {'gpu -c':>7} {'gpu -nnz':>8} {'gpu s':>7} {'rounds':>6}"
    if args.pdhg:
        header += "".join(f" {'it ' + key:>9} {'s ' + key:>8}" for key, _ in PDHG_VARIANTS
                          if key != "gpu" or args.gpu)
        if args.gpu:
            header += f" {'it gpu-red':>10}"
    if args.solve:
        header += f" {'objective':>16} {'optimum':>16} {'rel_p':>8} {'rel_d':>8} {'rel_gap':>8}"
    print(header)
    for folder in args.folders:
        optima = _optima(folder)
        for path in sorted([*folder.glob("*.mps.gz"), *folder.glob("*.mps")]):
            name = path.name.split(".")[0]
            if args.only and name not in args.only:
                continue
            row = measure(path, args.solve, optima.get(name), args.pdhg, args.gpu, args.device)
            rows.append(row)
            line = (f"{name:<10} {row['rows']:>7} {row['cols']:>7} {row['nnz']:>8} "
                    f"{row['rows_removed']:>7} {row['cols_removed']:>7} {row['nnz_removed']:>8} "
                    f"{row['highs_presolve_s']:>8.3f} {row['time_s']:>8.3f} "
                    f"{row.get('postsolve_s', float('nan')):>7.3f}")
            if args.gpu:
                line += (f" {row['gpu_rows_removed']:>7} {row['gpu_cols_removed']:>7} "
                         f"{row['gpu_nnz_removed']:>8} {row['gpu_time_s']:>7.3f} "
                         f"{row['gpu_rounds']:>6}")
            if args.pdhg:
                line += "".join(f" {row[f'iters_{key}']!s:>9} {row[f'pdhg_s_{key}']:>8.2f}"
                                for key, _ in PDHG_VARIANTS if f"iters_{key}" in row)
                if args.gpu:
                    line += f" {row.get('iters_gpu_reduced')!s:>10}"
            if args.solve and "objective" in row:
                line += (f" {row['objective']:>16.9g} {row['optimum'] or float('nan'):>16.9g} "
                         f"{row['rel_primal_residual']:>8.1e} {row['rel_dual_residual']:>8.1e} "
                         f"{row['rel_gap']:>8.1e}")
            elif row["outcome"] != "reduced":
                line += f"  ({row['outcome']})"
            print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
