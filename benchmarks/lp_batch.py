"""Many LPs at once: ``l2o.solve_lp_batch`` against a loop of ``l2o.solve_lp`` (issue 14).

    python benchmarks/lp_batch.py --device cuda --dataset-count 0      # the solves (issue 14)
    python benchmarks/lp_batch.py --device cuda --families             # the dataset build only
    python benchmarks/lp_batch.py --device cpu --quick                 # a small check, any machine

Families (generator defaults unless --quick):
  * setcover: 256 set-cover LPs, seeds 0-255 (500 x 1000, density 0.05: 25,000 nonzeros each);
  * pagerank: 64 PageRank LPs of 1e4 nodes, seeds 0-63.
For each family and tolerance (--tols, default 1e-4 and 1e-8) it times, after one warm-up of
each (the first LP alone, and a batch of the first two):

  * loop:  [solve_lp(lp, tol, device, method="pdhg", presolve=False) for lp in lps]
  * batch: solve_lp_batch(lps, tol, device) (on CUDA with Triton: the fused iteration,
    l2o.pdhg.batch_fused, the default)
  * batch_elementwise (CUDA only): the same with fused="elementwise" (the iteration's
    cuSPARSE products even where the default takes the "spmv" plan, rows all short)
  * batch_torch (CUDA only): solve_lp_batch(lps, tol, device, fused=False), the torch ops

``--profile`` runs each batch once more with ``profile=True`` (untimed) and prints its seconds
per phase (l2o.pdhg.batch.PROFILE_PHASES).

from the list of LPs to the list of results (setup, copies and results included; wall clock,
the results are on the host when each call returns), and checks the two against each other:
statuses, the largest relative objective difference and the largest KKT error of the batch.

``--dataset-count N`` (default 1000; 0 skips it) also times ``l2o dataset build --family
setcover --count N`` (default sizes, tol --dataset-tol, default 1e-8) with and without
``--batch B`` (--dataset-batch, default 256), each into a fresh directory
(``--dataset-variants batch`` or ``sequential``: one of the two, for calls with a time limit),
through ``build_dataset`` (what the command calls), and with ``--batch`` its floor: the same
LPs solved in the same batches by ``solve_lp_batch``, alone; the build beyond those solves,
per instance, is what it spends besides them (and one instance's generation, timed apart).  Besides the solves, a build
generates each instance and computes its ||A||_2 twice (``lp_to_graph``), in worker processes
ahead of the solves (--dataset-workers, default the build's: every core but two with CUDA),
and writes the records on a background thread.

Writes OUT/lp_batch.json and OUT/lp_batch.csv (default benchmarks/out/lp_batch) and prints the
table.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o
from _paths import default_out, write_rows
from _timing import device_name

FAMILIES = {
    # name: (count, generator options) at full size, then with --quick
    "setcover": ((256, {}), (16, {"rows": 50, "cols": 100, "density": 0.1})),
    "pagerank": ((64, {"nodes": 10_000}), (8, {"nodes": 300})),
}


# the batch variants of compare(), in the order printed
VARIANTS = ("batch", "batch_elementwise", "batch_torch")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def compare(l2o, family: str, lps: list, tol: float, device: str, profile: bool) -> dict:
    """Loop vs batch on ``lps`` at ``tol`` (module docstring): one row of the table."""
    def loop():
        return [l2o.solve_lp(lp, tol=tol, device=device, method="pdhg", presolve=False)
                for lp in lps]

    variants = {"batch": {}}
    if device.startswith("cuda"):
        variants["batch_elementwise"] = {"fused": "elementwise"}
        variants["batch_torch"] = {"fused": False}
    # warm-up: CUDA context, kernels, cuSPARSE and graph pools of every path
    l2o.solve_lp(lps[0], tol=tol, device=device, method="pdhg", presolve=False)
    for options in variants.values():
        l2o.solve_lp_batch(lps[:2], tol=tol, device=device, **options)
    singles, loop_s = _timed(loop, device)
    row = {"family": family, "count": len(lps), "nnz_each": lps[0].nnz, "tol": tol,
           "loop_s": round(loop_s, 4), "iterations_loop": sum(a.iterations for a in singles)}
    for name, options in variants.items():
        batched, batch_s = _timed(lambda options=options: l2o.solve_lp_batch(
            lps, tol=tol, device=device, **options), device)
        row |= _against_loop(name, singles, batched, loop_s, batch_s)
        if profile:     # once more, untimed: seconds per phase (the device synced at each)
            timings = l2o.solve_lp_batch(lps, tol=tol, device=device, profile=True,
                                         **options)[0].timings
            row[f"{name}_phases"] = {k: round(v, 4) for k, v in timings.items()}
    return row


def _against_loop(name: str, singles: list, batched: list, loop_s: float,
                  batch_s: float) -> dict:
    """The columns of one batch variant: its time, speedup and agreement with the loop."""
    optimal = [(a, b) for a, b in zip(singles, batched)
               if a.status.name == b.status.name == "OPTIMAL"]
    objective_gap = max((abs(a.objective - b.objective) / (1 + abs(a.objective))
                         for a, b in optimal), default=float("nan"))
    return {
        f"{name}_s": round(batch_s, 4), f"{name}_speedup": round(loop_s / batch_s, 2),
        f"{name}_same_status": sum(a.status == b.status for a, b in zip(singles, batched)),
        f"{name}_optimal": sum(b.status.name == "OPTIMAL" for b in batched),
        f"{name}_max_rel_objective_diff": objective_gap,
        f"{name}_max_kkt": max(max(b.kkt.values()) for b in batched),
        f"{name}_iterations": sum(b.iterations for b in batched),
        f"{name}_max_iterations": max(b.iterations for b in batched),
        f"{name}_same_iterations": sum(a.iterations == b.iterations
                                       for a, b in zip(singles, batched)),
    }


def dataset_build(l2o, count: int, batch: int, device: str, quick: bool, variants: list[str],
                  tol: float, workers: int | None) -> list[dict]:
    """Time ``l2o dataset build`` of ``count`` set-cover instances without ("sequential") and
    with --batch ("batch"), those of ``variants``, through ``build_dataset`` (what the command
    calls), next to its floor: the same LPs (read back from the batch build's records) solved
    by ``solve_lp_batch`` in the build's batches, alone (after the builds, so warm), and the
    generation of one instance (the first 64 timed)."""
    from l2o.datasets import generate
    from l2o.datasets.build import build_dataset
    from l2o.datasets.store import load_record, record_path, record_to_lp

    sizes = {} if not quick else {"rows": 50, "cols": 100, "density": 0.1}
    rows = []
    root = Path(tempfile.mkdtemp(prefix="lp_batch_dataset_"))
    runs = {"sequential": ("sequential", None), "batch": (f"batch {batch}", batch)}
    try:
        for label, batch_size in (runs[v] for v in variants):
            options = {"tol": tol, "device": device.split(":")[0], "batch": batch_size,
                       "workers": workers, **sizes}
            options = {k: v for k, v in options.items() if v is not None}
            out = root / label.replace(" ", "_")
            report, seconds = _timed(lambda out=out, options=options: build_dataset(
                "setcover", count, out, progress=False, **options), device)
            flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items())
            rows.append({"family": "dataset build setcover", "count": count, "variant": label,
                         "seconds": round(seconds, 2), "build_s": round(report.elapsed, 2),
                         "stored": report.stored,
                         # the build's own count of its solves' seconds, where it keeps one
                         "solving_s": round(getattr(report, "solving", float("nan")), 2),
                         "command": f"l2o dataset build --family setcover --count {count} "
                                    f"--out DIR {flags}"})
        if "batch" in variants:
            # the LPs the build solved, read back from its records (generating 1000 again
            # would cost ~20 s of CPU); generation timed on the first 64
            stored = root / runs["batch"][0].replace(" ", "_")
            lps = [record_to_lp(load_record(record_path(stored, i)))
                   if record_path(stored, i).is_file()
                   else generate("setcover", seed=i, **sizes) for i in range(count)]
            sample = min(count, 64)
            _, generate_s = _timed(lambda: [generate("setcover", seed=seed, **sizes)
                                            for seed in range(sample)], "cpu")
            _, solves_s = _timed(lambda: [
                l2o.solve_lp_batch(lps[start:start + batch], tol=tol, device=device)
                for start in range(0, count, batch)], device)
            for row in (r for r in rows if r["variant"].startswith("batch")):
                row |= {"alone_generate_ms_per_instance": round(1e3 * generate_s / sample, 2),
                        "alone_batched_solves_s": round(solves_s, 2),
                        "beyond_batched_solves_ms_per_instance": round(
                            1e3 * (row["build_s"] - solves_s) / count, 2)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help="small LPs and counts (a check that runs in a minute on a CPU)")
    parser.add_argument("--tols", type=float, nargs="+", default=[1e-4, 1e-8])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES),
                        help="families of the loop-vs-batch comparison (none: only the build)")
    parser.add_argument("--count", type=int, help="LPs per family (default: the issue's)")
    parser.add_argument("--dataset-count", type=int, default=None,
                        help="instances of the dataset build (default 1000, --quick 32; 0: skip)")
    parser.add_argument("--dataset-batch", type=int, default=256)
    parser.add_argument("--dataset-variants", nargs="+", default=["sequential", "batch"],
                        choices=["sequential", "batch"],
                        help="which builds to time (each alone fits a shorter call)")
    parser.add_argument("--dataset-tol", type=float, default=1e-8,
                        help="tolerance of the build's labels (default 1e-8, the command's)")
    parser.add_argument("--dataset-workers", type=int, default=None,
                        help="the build's worker processes (default: the build's own)")
    parser.add_argument("--profile", action="store_true",
                        help="also run each batch once with profile=True and print its phases")
    parser.add_argument("--out", default=str(default_out("lp_batch")))
    args = parser.parse_args()
    l2o = import_l2o()
    from l2o.datasets import generate

    rows = []
    for family in args.families:
        count, options = FAMILIES[family][1 if args.quick else 0]
        count = args.count or count
        lps = [generate(family, seed=seed, **options) for seed in range(count)]
        for tol in args.tols:
            row = compare(l2o, family, lps, tol, args.device, args.profile)
            rows.append(row)
            line = f"{family:9s} x{row['count']:4d} tol {tol:g}: loop {row['loop_s']:8.3f} s"
            for name in VARIANTS:
                if f"{name}_s" in row:
                    line += (f" | {name} {row[name + '_s']:7.3f} s {row[name + '_speedup']:6.2f}x"
                             f" status {row[name + '_same_status']}/{row['count']}"
                             f" iterations {row[name + '_iterations']}"
                             f" (max {row[name + '_max_iterations']})"
                             f" obj diff {row[name + '_max_rel_objective_diff']:.1e}")
            print(line + f" | loop iterations {row['iterations_loop']}", flush=True)
            for name in VARIANTS:
                if f"{name}_phases" in row:
                    print(f"    {name} phases (s): {row[name + '_phases']}", flush=True)
    dataset_count = args.dataset_count if args.dataset_count is not None else (
        32 if args.quick else 1000)
    dataset_rows = []
    if dataset_count > 0:
        dataset_rows = dataset_build(l2o, dataset_count, min(args.dataset_batch, dataset_count),
                                     args.device, args.quick, args.dataset_variants,
                                     args.dataset_tol, args.dataset_workers)
        for row in dataset_rows:
            line = (f"{row['family']} x{row['count']} {row['variant']:12s}: "
                    f"{row['seconds']:8.2f} s (build {row['build_s']:.2f} s, its solves "
                    f"{row['solving_s']:.2f} s; {row['stored']} stored)")
            if "alone_batched_solves_s" in row:
                line += (f" | alone: generation {row['alone_generate_ms_per_instance']:.1f} "
                         f"ms an instance, batched "
                         f"solves {row['alone_batched_solves_s']:.2f} s; build beyond them "
                         f"{row['beyond_batched_solves_ms_per_instance']:.1f} ms an instance")
            print(line, flush=True)
    write_rows(args.out, "lp_batch", rows, dataset=dataset_rows, device=device_name(args.device),
               torch=torch.__version__, python=platform.python_version(),
               date=time.strftime("%Y-%m-%d"), argv=sys.argv[1:])
    print(f"wrote {Path(args.out) / 'lp_batch.json'}")


if __name__ == "__main__":
    main()
