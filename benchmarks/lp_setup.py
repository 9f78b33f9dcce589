"""The setup of a GPU solve (``l2o.pdhg.prepare``) on the host or on the GPU, per LP size.

``prepare`` scales LPs under ``cpu_setup_nnz`` nonzeros on the CPU and moves them, larger ones
on the solve's device. This script times ``prepare(lp, "cuda")`` (synchronized, after a
warm-up) with the setup forced onto the host at 16 (or torch's default), 4 and 1 threads,
forced onto the GPU, and with the defaults, on NETLIB LPs, the shared large LPs and the
relaxation families at 4x: the measurement behind ``cpu_setup_nnz``. (The thread counts are
set around the timed calls only: a whole solve after a thread-count change ran 10-25% slower,
benchmarks/RESULTS.md, "The setup of small LPs on the host".)  ``--presolved`` also profiles
``solve_lp(presolve="auto")`` on a few large LPs (the reduced LP's setup is one of its phases).

    python benchmarks/lp_setup.py --netlib ../shared/data/lp/netlib --large ../shared/data/lp/large \\
        --presolved ken-11 cre-d

Needs CUDA and highspy (to read the MPS files). Prints one line per LP (min / median / max ms of
``--reps`` calls) and writes ``lp_setup.json`` to ``--out`` (default ``benchmarks/out/lp_setup``).
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

NETLIB = ["afiro", "sc205", "israel", "scagr7", "stocfor1", "scrs8"]
LARGE = ["fit2p", "ken-11", "nemsemm2", "osa-07", "pds-10", "cre-b", "nsct2"]
FAMILIES = {"facility": {"customers": 200, "facilities": 100},
            "auction": {"items": 400, "bids": 2000},
            "setcover": {"rows": 2000, "cols": 4000, "density": 0.0125}}
NEVER, ALWAYS = 10**15, 0   # cpu_setup_nnz forcing the setup onto the host / the GPU


def time_prepare(prepare, lp, reps: int, threads: int | None, **options) -> list[float]:
    """Seconds of ``reps`` synchronized ``prepare(lp, "cuda", **options)`` calls, with torch's
    CPU threads set to ``threads`` meanwhile (None: as they are)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    seconds = []
    try:
        for _ in range(reps):
            torch.cuda.synchronize()
            start = time.perf_counter()
            prepare(lp, "cuda", torch.float64, **options)
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return seconds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--netlib", default="../shared/data/lp/netlib")
    ap.add_argument("--large", default="../shared/data/lp/large")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--presolved", nargs="*", default=[],
                    help="large LPs solved with presolve='auto' and profile=True (phases printed)")
    ap.add_argument("--out", default=str(default_out("lp_setup")))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("lp_setup.py: needs CUDA (it compares the setup on the host and on the GPU)")
    l2o = import_l2o()
    from l2o.datasets import generate
    from l2o.lp.io import read_lp
    from l2o.pdhg import prepare, solve_lp

    lps = [(name, read_lp(Path(args.netlib) / f"{name}.mps.gz")) for name in NETLIB]
    lps += [(name, read_lp(Path(args.large) / f"{name}.mps.gz")) for name in LARGE]
    lps += [(f"{family}-x4", generate(family, seed=9330000, **size))
            for family, size in FAMILIES.items()]
    default_threads = torch.get_num_threads()
    variants = {f"host {default_threads} thr": (default_threads, NEVER),
                "host 4 thr": (4, NEVER), "host 1 thr": (1, NEVER), "gpu": (None, ALWAYS),
                "default": (None, None)}
    for cpu_setup_nnz in (NEVER, ALWAYS):   # warm-up: kernels, allocator, cuSPARSE handles
        prepare(lps[0][1], "cuda", torch.float64, cpu_setup_nnz=cpu_setup_nnz)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {default_threads} torch "
          f"threads; prepare() ms, min / median / max of {args.reps}", flush=True)
    print(f"{'LP':14s} {'nnz':>8s} " + " ".join(f"| {v:>20s}" for v in variants))
    rows = []
    for name, lp in lps:
        row = {"lp": name, "nnz": int(lp.nnz)}
        cells = []
        for variant, (threads, cpu_setup_nnz) in variants.items():
            options = {} if cpu_setup_nnz is None else {"cpu_setup_nnz": cpu_setup_nnz}
            ms = [1e3 * s for s in time_prepare(prepare, lp, args.reps, threads, **options)]
            row[variant] = {"min": min(ms), "median": statistics.median(ms), "max": max(ms)}
            cells.append(f"{min(ms):6.1f} {statistics.median(ms):6.1f} {max(ms):6.1f}")
        rows.append(row)
        print(f"{name:14s} {lp.nnz:8d} " + " ".join(f"| {c:>20s}" for c in cells), flush=True)
    for name in args.presolved:
        lp = read_lp(Path(args.large) / f"{name}.mps.gz")
        for rep in range(3):   # the first pays the presolve's and the solver's warm-up
            res = solve_lp(lp, tol=1e-4, device="cuda", presolve="auto", method="pdhg",
                           profile=True, time_limit=30)
            phases = {k: round(1e3 * v, 1) for k, v in (res.timings or {}).items() if v > 1e-3}
            print(f"{name} presolve=auto 1e-4, solve {rep}: {res.status.name} {res.iterations} it "
                  f"{res.solve_time:.4f} s; ms per phase {phases}", flush=True)
            rows.append({"lp": name, "presolved": rep, "status": res.status.name,
                         "iterations": res.iterations, "seconds": res.solve_time,
                         "phases_ms": phases})
    write_rows(args.out, "lp_setup", [r for r in rows if "presolved" not in r],
               presolved=[r for r in rows if "presolved" in r], gpu=torch.cuda.get_device_name(),
               torch=torch.__version__, threads=default_threads, l2o=getattr(l2o, "__file__", ""))


if __name__ == "__main__":
    main()
