"""The PDHG-Net paper's setting: the learned start handed to OR-Tools PDLP, one CPU thread.

The paper (Li et al., "PDHG-unrolled learning-to-optimize method for large-scale linear
programming", ICML 2024) reports its network's prediction, used as the initial solution of
OR-Tools PDLP on a CPU with one thread, solving PageRank LPs up to 3x faster than PDLP alone.
This script measures that claim with our models, on fresh instances, next to PDLP's cold start
and the cheap PageRank heuristic:

    cold       PDLP's own start (x = proj(0), y = 0)                           (the baseline)
    model      PDHG-Net's prediction (l2o.net.predict_warm_start on the CPU: graph, inference,
               projection), then PDLP from it
    power{k}   PageRank only: k power iterations from the uniform vector, y = 0
               (benchmarks/pdhgnet.py's power_start)

    total = prediction (wall seconds, CPU, ``--threads`` torch threads) + PDLP (wall seconds of
            the solve call, ``num_threads = --threads``)

Cases: PageRank (Barabasi-Albert, degree 3) with ``--pagerank-nodes`` (default 1e4, 1e5, 1e6)
and the bundled ``pagerank`` model; set cover, combinatorial auction and facility location at
their training size and 4x it (``SIZES`` of benchmarks/pdhgnet.py) with
``benchmarks/models/{family}.pt``. Instances use seeds ``--seed-base`` (>= 9,200,000: never
seen in training, which uses seeds < 5,000,000), ``--seed-base`` + 1, ...

Tolerance: PDLP stops when, in l2 norms, ||primal residual|| <= eps_abs + tol ||b||,
||dual residual|| <= eps_abs + tol ||c|| and |gap| <= eps_abs + tol (|pobj| + |dobj|).
By default eps_abs = tol: l2o's relative criterion tol (1 + ||.||) (an eps_abs of 0 never
stops on PageRank, whose c = 0 makes the dual and gap tests absolute). The paper's released
scripts set only ``eps_optimal_relative = 1e-8``, leaving PDLP's default
``eps_optimal_absolute = 1e-6``: ``--eps-absolute 1e-6`` reproduces that criterion exactly.

OR-Tools cannot share a process with highspy (which l2o imports): every instance is written
to a job file and solved by ``benchmarks/_pdlp_worker.py`` in a subprocess whose PYTHONPATH
starts with ``--ortools-path`` (OR-Tools installed there, e.g.
``pip install --target /tmp/ortools_site ortools``).

    PYTHONPATH=$PWD python benchmarks/pdhgnet_ortools.py --ortools-path /tmp/ortools_site \\
        [--families pagerank setcover auction facility] [--sizes train x4] \\
        [--pagerank-nodes 10000 100000 1000000] [--tols 1e-4 1e-8] [--seeds 3] \\
        [--seed-base 9200000] [--time-limit 600] [--threads 1] [--out OUT]

Outputs in OUT (default ``benchmarks/out/pdhgnet_ortools``): ``pdhgnet_ortools.json``
(settings, rows, summary) and ``.csv`` (one row per case, seed, tolerance and start:
family, size, seed, tol, start, iterations, predict_s, solve_s, total_s, speedup (cold
total / total), status, ...), ``partial.csv`` (rows as they finish), and a Markdown table of
geometric means over the seeds on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))   # benchmarks/: pdhgnet.py's power_start, SIZES, cases, load_models
import pdhgnet
from _l2o_import import import_l2o
from _paths import default_out, write_rows

SEED_BASE = 9_200_000           # fresh: training never uses seeds >= 5,000,000
PAGERANK_NODES = (10_000, 100_000, 1_000_000)
# the untimed first prediction per family runs on one such instance (the families: training size)
WARMUP_OPTIONS = {"pagerank": {"nodes": 1000}}
WORKER = HERE / "_pdlp_worker.py"
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# OR-Tools PDLP in its own process

def worker_env(ortools_path: str) -> dict[str, str]:
    """The environment of the PDLP subprocess: ``ortools_path`` first on PYTHONPATH."""
    env = dict(os.environ)
    if ortools_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ortools_path, env.get("PYTHONPATH"))
                                            if p)
    return env


def ortools_missing(ortools_path: str) -> str | None:
    """None when ``ortools.pdlp`` imports in a subprocess with ``ortools_path``, else why not."""
    probe = subprocess.run([sys.executable, "-c", "from ortools.pdlp.python import pdlp"],
                           env=worker_env(ortools_path), capture_output=True, text=True,
                           check=False)
    if probe.returncode == 0:
        return None
    return (probe.stderr.strip().splitlines() or ["no output"])[-1]


def lp_job(lp, starts: dict[str, tuple[torch.Tensor, torch.Tensor] | None]) -> dict:
    """The arrays of a worker job: the LP in minimization form (A as CSC) and the starts."""
    c, _ = lp.minimize_c
    A = lp.scipy_matrix().tocsc()
    arrays = {"c": c.double().numpy(), "A_data": A.data, "A_indices": A.indices,
              "A_indptr": A.indptr, "A_shape": np.asarray(A.shape),
              "row_lower": lp.row_lower.double().numpy(),
              "row_upper": lp.row_upper.double().numpy(),
              "col_lower": lp.col_lower.double().numpy(),
              "col_upper": lp.col_upper.double().numpy()}
    for name, start in starts.items():
        if start is not None:
            x, y = start
            arrays[f"x_{name}"] = torch.as_tensor(x).double().cpu().numpy()
            arrays[f"y_{name}"] = torch.as_tensor(y).double().cpu().numpy()
    return arrays


def solve_pdlp(lp, starts: dict[str, tuple[torch.Tensor, torch.Tensor] | None],
               tols: list[float], *, eps_absolute: float | None = None, threads: int = 1,
               time_limit: float = 600.0, reps: int = 1, ortools_path: str = "",
               on_result=None) -> list[dict]:
    """Solve ``lp`` with OR-Tools PDLP from each start (None: PDLP's own cold start) to each
    tolerance, in a subprocess (``benchmarks/_pdlp_worker.py``).

    Returns:
        One dict per (tol, start), tolerances outer, as the worker prints them (its docstring);
        ``on_result`` is called with each as soon as it arrives.

    Raises:
        RuntimeError: the worker failed (its last stderr lines in the message).
    """
    settings = {"starts": list(starts), "tols": [float(t) for t in tols],
                "eps_absolute": eps_absolute, "threads": int(threads),
                "time_limit": float(time_limit), "reps": int(reps)}
    results = []
    with tempfile.TemporaryDirectory(prefix="pdlp_job_") as folder:
        job = Path(folder) / "job.npz"
        np.savez(job, settings=json.dumps(settings), **lp_job(lp, starts))
        with subprocess.Popen([sys.executable, str(WORKER), str(job)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=worker_env(ortools_path)) as worker:
            for line in worker.stdout:
                results.append(json.loads(line))
                if on_result is not None:
                    on_result(results[-1])
            stderr = worker.stderr.read()
        if worker.returncode != 0:
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"the OR-Tools PDLP worker failed on {lp.name!r} "
                               f"(exit {worker.returncode}):\n{tail}")
    return results


# ---------------------------------------------------------------------------------------------
# starts

def timed(function, *args, **kwargs) -> tuple[object, float]:
    """(function(*args, **kwargs), its wall seconds)."""
    t = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - t


@dataclass(frozen=True)
class Prediction:
    """A start of one instance: (x, y) or None (PDLP's cold start) and its wall seconds; for
    the model also predict_warm_start's split into graph (preconditioning and ||A||_2
    included) and inference seconds."""

    start: tuple[torch.Tensor, torch.Tensor] | None
    seconds: float
    graph_s: float = math.nan
    inference_s: float = math.nan


def predict_starts(lp, family: str, model, args) -> dict[str, Prediction]:
    """name -> :class:`Prediction` of every start of one instance."""
    from l2o.net import predict_warm_start

    starts = {"cold": Prediction(None, 0.0)}
    if model is not None:
        warm, seconds = timed(predict_warm_start, model, lp, device=CPU)
        starts["model"] = Prediction((warm.x, warm.y), seconds, warm.graph_time,
                                     warm.inference_time)
    if family == "pagerank" and args.power_iterations > 0:
        starts[f"power{args.power_iterations}"] = Prediction(*timed(
            pdhgnet.power_start, lp, args.power_iterations, CPU))
    return starts


# ---------------------------------------------------------------------------------------------
# the benchmark

def run(args) -> dict:
    import_l2o()
    from l2o.datasets import generate

    if args.seed_base < SEED_BASE:
        raise SystemExit(f"pdhgnet_ortools.py: --seed-base {args.seed_base} < {SEED_BASE}: "
                         f"use seeds never seen in training")
    missing = ortools_missing(args.ortools_path)
    if missing:
        raise SystemExit(f"pdhgnet_ortools.py: OR-Tools PDLP does not import with "
                         f"--ortools-path {args.ortools_path!r}: {missing} (install it apart "
                         f"from highspy: pip install --target DIR ortools)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "partial.csv"
    partial.unlink(missing_ok=True)
    models = pdhgnet.load_models(args, CPU)
    tols = [float(t) for t in args.tols]
    rows, warmed_up = [], set()
    for family, size, options in pdhgnet.cases(args):
        for k in range(args.seeds):
            seed = args.seed_base + k
            lp, gen_s = timed(generate, family, seed=seed, **options)
            if family not in warmed_up:        # first call of a model: lazy imports, allocations
                small = generate(family, seed=seed, **WARMUP_OPTIONS.get(family, {}))
                predict_starts(small, family, models[family], args)
                warmed_up.add(family)
            starts = predict_starts(lp, family, models[family], args)
            load = os.getloadavg()[0]
            info = {"family": family, "size": size, "seed": seed, "rows": lp.num_rows,
                    "cols": lp.num_cols, "nnz": lp.nnz}
            print(f"\n{family} {size} seed {seed}: {lp.num_rows} x {lp.num_cols}, nnz {lp.nnz}, "
                  f"generated in {gen_s:.2f} s; load average {load:.2f}; predictions "
                  + ", ".join(f"{n} {p.seconds:.3f} s" for n, p in starts.items()), flush=True)
            kkt0 = {name: max(pdhgnet.initial_kkt(lp, p.start).values())
                    for name, p in starts.items()}
            results = solve_pdlp(lp, {name: p.start for name, p in starts.items()}, tols,
                                 eps_absolute=args.eps_absolute, threads=args.threads,
                                 time_limit=args.time_limit, reps=args.reps,
                                 ortools_path=args.ortools_path)
            for r in results:
                cold = next(c for c in results if c["tol"] == r["tol"] and c["start"] == "cold")
                prediction = starts[r["start"]]
                total = prediction.seconds + r["solve_s"]
                row = {**info, "tol": r["tol"], "start": r["start"],
                       "iterations": r["iterations"], "predict_s": prediction.seconds,
                       "solve_s": r["solve_s"], "total_s": total,
                       "speedup": cold["solve_s"] / total, "status": r["status"],
                       "graph_s": prediction.graph_s, "inference_s": prediction.inference_s,
                       "pdlp_time_s": r["pdlp_time_s"], "objective": r["objective"],
                       "kkt0_max": kkt0[r["start"]], "load_avg": load}
                rows.append(row)
                print(format_row(row), flush=True)
                with open(partial, "a", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(row))
                    if len(rows) == 1:
                        writer.writeheader()
                    writer.writerow(row)
    summary = summarize(rows)
    settings = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "command": " ".join(sys.argv), "cpu_count": os.cpu_count(),
                "torch": torch.__version__, "args": vars(args)}
    write_rows(out, "pdhgnet_ortools", rows, settings=settings, summary=summary)
    print("\n" + markdown_table(summary))
    return {"settings": settings, "rows": rows, "summary": summary}


def summarize(rows: list[dict]) -> list[dict]:
    """Per (family, size, tol, start): geometric means over the seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["size"], r["tol"], r["start"]), []).append(r)
    return [{"family": family, "size": size, "tol": tol, "start": start, "seeds": len(rs),
             "statuses": ",".join(sorted({r["status"] for r in rs})),
             **{key: statistics.geometric_mean(max(r[key], 1e-12) for r in rs)
                for key in ("iterations", "predict_s", "solve_s", "total_s", "speedup")}}
            for (family, size, tol, start), rs in groups.items()]


def markdown_table(summary: list[dict]) -> str:
    """One line per case and tolerance: cold, then each start's iterations, total seconds
    (prediction in brackets) and speedup; a status other than OPTIMAL is named."""
    lines = ["| case | tol | seeds | start | iterations | total s (predict) | speedup | status |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['family']} {s['size']} | {s['tol']:.0e} | {s['seeds']} | "
                     f"{s['start']} | {s['iterations']:.0f} | {s['total_s']:.3f} "
                     f"({s['predict_s']:.3f}) | {s['speedup']:.2f}x | {s['statuses']} |")
    return "\n".join(lines)


def format_row(r: dict) -> str:
    return (f"  tol {r['tol']:7.0e} {r['start']:8s} {r['status']:10s} it {r['iterations']:7d}  "
            f"predict {r['predict_s']:8.3f}s solve {r['solve_s']:9.3f}s total "
            f"{r['total_s']:9.3f}s  x{r['speedup']:5.2f}  kkt0 {r['kkt0_max']:.1e}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(pdhgnet.FAMILIES),
                    choices=pdhgnet.FAMILIES)
    ap.add_argument("--sizes", nargs="+", default=["train", "x4"], choices=["train", "x4"],
                    help="sizes of the relaxation families (train: the training size)")
    ap.add_argument("--pagerank-nodes", type=int, nargs="+", default=list(PAGERANK_NODES))
    ap.add_argument("--seeds", type=int, default=1, help="fresh instances per case")
    ap.add_argument("--seed-base", type=int, default=SEED_BASE,
                    help=f"first instance seed (>= {SEED_BASE}: never seen in training)")
    ap.add_argument("--tols", nargs="+", default=["1e-4", "1e-8"],
                    help="PDLP's eps_optimal_relative")
    ap.add_argument("--eps-absolute", type=float, default=None,
                    help="PDLP's eps_optimal_absolute (default: the tolerance; the paper's "
                         "scripts left PDLP's default 1e-6)")
    ap.add_argument("--threads", type=int, default=1,
                    help="PDLP's num_threads and torch's CPU threads for the prediction")
    ap.add_argument("--time-limit", type=float, default=600.0, help="seconds per PDLP solve")
    ap.add_argument("--reps", type=int, default=1,
                    help="PDLP solves per (tolerance, start); their median time is kept")
    ap.add_argument("--power-iterations", type=int, default=5,
                    help="PageRank heuristic start: power iterations (0: no heuristic)")
    ap.add_argument("--pagerank-model", default="pagerank",
                    help="bundled model name or checkpoint path for PageRank")
    ap.add_argument("--models", default=str(pdhgnet.MODELS),
                    help="folder of the relaxation families' {family}.pt")
    ap.add_argument("--ortools-path", default=os.environ.get("ORTOOLS_PATH", ""),
                    help="folder put first on the PDLP worker's PYTHONPATH (default "
                         "$ORTOOLS_PATH; empty: OR-Tools importable as it is)")
    ap.add_argument("--out", default=str(default_out("pdhgnet_ortools")))
    return ap


def main(argv=None) -> dict:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
