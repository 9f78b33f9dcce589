"""PDHG-Net warm starts vs cold starts of ``l2o.solve_lp`` on fresh LP instances (GPU).

For every case (family, size) and fresh seed (``--seed-base`` + 0, 1, ...; at least
``BENCH_SEED``: training never uses seeds >= 5,000,000), and for every tolerance, each start is
timed end to end, its own prediction included:

    cold       x = 0 (projected on the bounds), y = 0                      (the baseline)
    model      PDHG-Net's prediction, then the warm-started solve, sharing one setup
               (l2o.net.solve_with_model)
    power{k}   PageRank only: for each k of ``--power-iterations`` (default 5), k power
               iterations of the PageRank vector from the uniform vector, y = 0 (the cheap
               heuristic the model must beat; the bundled model, PageRank's power iteration
               with K = 12 learned steps, is fairly compared with k = 12 too)
    reduced{keep}  relaxation families, for each KEEP of ``--reduce`` (FAMILY:KEEP[:SCREEN] for one
               family, with its own screening tolerance): the model's start of a
               reduced LP, then the whole solve, sharing the whole LP's setup
               (:func:`l2o.net.solve_with_reduced_start`): the fraction KEEP of the columns the
               model ranks first, solved to the row's tolerance (the column set settled by
               ``--reduce-rounds`` pricing rounds at ``--reduce-screen-tol`` first); its
               prediction time holds the model, the reduced solves and the pricing

    total = prediction (graph + inference + copies, or the heuristic) + solve_lp (scaling, PDHG)

(for the model and the reduced starts: total = the wall time of the two-stage call; prediction
= the start's own time, solve = the rest: the shared setup, which the solver does anyway, and
the iterations)

Reported per start: iterations, prediction / solve / total seconds (medians over ``--reps``
after one warm-up pass, CUDA synchronized), the speedup cold total / total, and the start's
initial KKT error (relative primal residual, dual residual and gap of the solver's own
termination formulas, :func:`l2o.net.kkt_error`).  Per instance also the solver's floor: the
time of ``solve_lp`` stopped after its first iteration and check (transfer, preconditioning,
setup), which even an exact start pays, so cold total / floor bounds any warm start's speedup.

The model's start is :func:`l2o.net.solve_with_model`: ``l2o.pdhg.prepare`` (the solver's
checks, copy to the GPU and preconditioning, once), :func:`l2o.net.predict_warm_start` on that
prepared LP (graph from the scaled LP already on the GPU, the ||A~||_2 power iteration the
model's steps are normalized by; inference; projection onto the bounds and dual signs, on the
GPU), then ``solve_lp(prepared, warm_start=...)`` (no second setup, the start read on the GPU).
Its ``graph_time`` and ``inference_time`` are kept in the rows.  (Before, the prediction
copied and preconditioned the LP itself and the solve did it again.)

Cases: PageRank (Barabasi-Albert, degree 3) at ``--pagerank-nodes`` (default the bundled
model's largest training size, 10x it, and 1e6 nodes) with the bundled model ``pagerank``;
set cover, combinatorial auction and facility location at their training size ("train", the
generator defaults) and 4x it ("x4"), with ``benchmarks/models/{family}.pt``
(``benchmarks/train_family_models.py``).

Every solve is PDHG without presolve (``method="pdhg", presolve=False``), as the targets ask.

    python benchmarks/pdhgnet.py --device cuda --out OUT [--families ...] [--sizes train x4]
        [--pagerank-nodes 8000 80000 1000000] [--seeds 3] [--seed-base 9200000]
        [--tols 1e-4 1e-8] [--reps 3] [--power-iterations 5 12]

Outputs: ``pdhgnet.json`` (settings, rows, summary) and ``pdhgnet.csv`` (one row per
case, seed, tolerance and start) in OUT (default ``benchmarks/out/pdhgnet``), and the table on
stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o  # noqa: E402
from _paths import default_out  # noqa: E402

BENCH_SEED = 5_000_000            # fresh: training never uses seeds >= 5,000,000
SOLVE = {"method": "pdhg", "presolve": False}   # every solve of the benchmark: PDHG, no presolve
MODELS = Path(__file__).resolve().parent / "models"
RELAXATIONS = ("setcover", "auction", "facility")
FAMILIES = ("pagerank", *RELAXATIONS)
# "train": the generator defaults the models were trained on; "x4": four times the columns with
# the same nonzeros per column (set cover), items per bid (auction), customer/facility ratio.
SIZES = {
    "setcover": {"train": {}, "x4": dict(rows=2000, cols=4000, density=0.0125)},
    "auction": {"train": {}, "x4": dict(items=400, bids=2000)},
    "facility": {"train": {}, "x4": dict(customers=200, facilities=100)},
}
PAGERANK_NODES = (8_000, 80_000, 1_000_000)
KKT_KEYS = ("rel_primal_residual", "rel_dual_residual", "rel_gap")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# starts

def power_start(lp, iterations: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """PageRank heuristic: ``iterations`` power steps x <- d P x + (1 - d)/n from x = 1/n; y = 0.

    Written with the LP's own rank rows (I - d P) x >= (1 - d)/n (the first n rows, lower
    bounds l): d P x + (1 - d)/n = x + (l - (A x)[:n]).  Runs on ``device`` (the matrix is copied
    there first, which the time includes).

    Returns:
        x (n,), y (m,) float64 on the CPU (y = 0).
    """
    n = lp.num_cols
    A = lp.A.to(device)
    lower = lp.row_lower[:n].to(device, torch.float64)
    x = torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
    for _ in range(iterations):
        x = x + (lower - (A @ x)[:n])
    return x.clamp_min(0.0).cpu(), torch.zeros(lp.num_rows, dtype=torch.float64)


class TwoStage:
    """A start whose prediction and solve share one setup of the LP: ``solve(tol)`` returns
    (LPResult, the start), the start's ``prediction_time`` excluding the setup
    (:func:`time_shared`)."""

    def __init__(self, solve):
        self.solve = solve


def make_starts(lp, family: str, model, args, device: torch.device) -> dict:
    """name -> callable of the tolerance returning (x, y) or None (cold), each timed as the
    start's prediction, or a :class:`TwoStage` ("model" and the reduced starts, which share the
    whole LP's setup with the solve)."""
    from l2o.net import solve_with_model, solve_with_reduced_start

    options = {"device": device, "time_limit": args.time_limit, "check_every": args.check_every,
               **({"profile": True} if getattr(args, "profile", False) else {}), **SOLVE}
    starts = {"cold": lambda tol: None}
    if model is not None:
        starts["model"] = TwoStage(lambda tol: solve_with_model(model, lp, tol=tol, **options))
    if family == "pagerank":
        counts = args.power_iterations
        for k in [counts] if isinstance(counts, int) else counts:
            if k > 0:
                starts[f"power{k}"] = lambda tol, k=k: power_start(lp, k, device)
    elif model is not None:
        for only, keep, screen in getattr(args, "reduce", None) or []:
            if only not in (None, family):
                continue
            starts[f"reduced{keep:g}"] = TwoStage(
                lambda tol, keep=keep, screen=screen: solve_with_reduced_start(
                    model, lp, tol=tol, keep=keep, rounds=args.reduce_rounds,
                    screen_tol=args.reduce_screen_tol if screen is None else screen,
                    **options))
    return starts


def reduce_spec(text: str) -> tuple[str | None, float, float | None]:
    """A ``--reduce`` item: KEEP (every relaxation family), FAMILY:KEEP or FAMILY:KEEP:SCREEN
    (that family only; SCREEN its screening tolerance) -> (family or None, keep, screen or
    None)."""
    parts = text.split(":")
    family = parts.pop(0) if len(parts) > 1 else None
    try:
        keep = float(parts[0])
        screen = float(parts[1]) if len(parts) > 1 else None
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r}: not KEEP, FAMILY:KEEP or "
                                         f"FAMILY:KEEP:SCREEN") from None
    if len(parts) > 2 or family not in (None, *RELAXATIONS) or not 0 < keep <= 1 \
            or (screen is not None and not screen > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: not KEEP, FAMILY:KEEP or "
                                         f"FAMILY:KEEP:SCREEN with a family of {RELAXATIONS}, "
                                         f"KEEP in (0, 1] and SCREEN > 0")
    return family, keep, screen


def initial_kkt(lp, start) -> dict[str, float]:
    """The solver's relative KKT errors of a start (cold: x = proj(0), y = 0)."""
    from l2o.net import kkt_error

    if start is None:
        x = torch.clamp(torch.zeros(lp.num_cols, dtype=torch.float64),
                        lp.col_lower.double().cpu(), lp.col_upper.double().cpu())
        start = (x, torch.zeros(lp.num_rows, dtype=torch.float64))
    return kkt_error(lp, *start)


# ---------------------------------------------------------------------------------------------
# measurement

def time_start(l2o, lp, make, tol: float, device: torch.device, args) -> dict:
    """One end-to-end run of a start: prediction, then the (warm-started) solve."""
    _sync(device)
    t0 = time.perf_counter()
    start = make(tol)
    _sync(device)
    t1 = time.perf_counter()
    res = l2o.solve_lp(lp, tol=tol, device=device, warm_start=start,
                       time_limit=args.time_limit, check_every=args.check_every, **SOLVE)
    _sync(device)
    t2 = time.perf_counter()
    # a WarmStart's own split of its prediction time (graph build vs forward pass and copies)
    graph_s, inference_s = (getattr(start, "graph_time", math.nan),
                            getattr(start, "inference_time", math.nan))
    return {"start": start, "predict_s": t1 - t0, "solve_s": t2 - t1, "total_s": t2 - t0,
            "graph_s": graph_s, "inference_s": inference_s,
            "iterations": res.iterations, "status": res.status.name,
            "objective": res.objective, **reduced_info(start)}


def reduced_info(start) -> dict:
    """A reduced start's own PDHG iterations, columns kept (of n), status, and its reduced
    solves: how many, their seconds together (``LPResult.solve_time``: setup included) and
    each one's columns, rows, tolerance, iterations, status and seconds (else None)."""
    history = getattr(start, "history", None)
    return {"reduced_iterations": getattr(start, "reduced_iterations", None),
            "reduced_columns": getattr(start, "columns", None),
            "reduced_status": getattr(start, "status", None),
            "reduced_solves": None if history is None else len(history),
            "reduced_solve_s": None if history is None else sum(h["seconds"] for h in history),
            "reduced_history": None if history is None else json.dumps(history)}


def time_shared(l2o, lp, make: TwoStage, tol: float, device: torch.device, args) -> dict:
    """One end-to-end run of a two-stage solve with one shared setup (the model's,
    :func:`l2o.net.solve_with_model`, or a reduced start's,
    :func:`l2o.net.solve_with_reduced_start`): total = its wall time, prediction = the start's
    ``prediction_time`` (graph + inference + copies, and the reduced solves), solve = the rest
    (setup + iterations), as for cold."""
    _sync(device)
    t0 = time.perf_counter()
    res, start = make.solve(tol)
    _sync(device)
    total = time.perf_counter() - t0
    return {"start": start, "predict_s": start.prediction_time,
            "solve_s": total - start.prediction_time, "total_s": total,
            "graph_s": start.graph_time, "inference_s": start.inference_time,
            "iterations": res.iterations, "status": res.status.name,
            "objective": res.objective, **reduced_info(start)}


def solve_floor(l2o, lp, device: torch.device, args) -> float:
    """Median seconds of ``solve_lp`` stopped after its first iteration and check: what any
    start, even an exact one, still pays (transfer, scaling, setup); cold total / floor bounds
    the speedup a warm start can give."""
    times = []
    for rep in range(args.reps + 1):
        _sync(device)
        t = time.perf_counter()
        l2o.solve_lp(lp, tol=1e-30, device=device, iteration_limit=1,
                     check_every=args.check_every, **SOLVE)
        _sync(device)
        if rep > 0 or args.reps == 0:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def cases(args) -> list[tuple[str, str, dict]]:
    out = []
    for family in args.families:
        if family == "pagerank":
            out += [("pagerank", f"n{n}", {"nodes": n}) for n in args.pagerank_nodes]
        else:
            out += [(family, size, SIZES[family][size]) for size in args.sizes]
    return out


def load_models(args, device: torch.device) -> dict:
    from l2o.net import load_model

    models = {}
    for family in args.families:
        where = args.pagerank_model if family == "pagerank" else str(
            Path(args.models) / f"{family}.pt")
        try:
            models[family] = load_model(where, device)
        except FileNotFoundError as error:
            raise SystemExit(f"pdhgnet.py: no model for {family}: {error} (train the relaxation "
                             f"models with benchmarks/train_family_models.py)") from None
        models[family].model_source = where
    return models


def run(args) -> dict:
    l2o = import_l2o()
    from l2o.datasets import generate

    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = load_models(args, device)
    tols = [float(t) for t in args.tols]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {gpu}, torch {torch.__version__}", flush=True)
    rows = []
    for family, size, options in cases(args):
        model = models[family]
        for k in range(args.seeds):
            seed = args.seed_base + k
            t = time.perf_counter()
            lp = generate(family, seed=seed, **options)
            gen_s = time.perf_counter() - t
            starts = make_starts(lp, family, model, args, device)
            info = {"family": family, "size": size, "seed": seed, "rows": lp.num_rows,
                    "cols": lp.num_cols, "nnz": lp.nnz, "generate_s": gen_s}
            print(f"\n{family} {size} seed {seed}: {lp.num_rows} x {lp.num_cols}, nnz {lp.nnz}, "
                  f"generated in {gen_s:.2f} s", flush=True)
            floor = solve_floor(l2o, lp, device, args)
            print(f"  solve_lp floor (setup + 1 iteration + 1 check): {floor:.4f} s", flush=True)
            for tol in tols:
                kkt = {}                # per tolerance: a reduced start depends on it
                runs = {name: [] for name in starts}
                # rep 0 is the warm-up, discarded (--reps 0: the one run is kept)
                for rep in range(args.reps + 1):
                    for name, make in starts.items():
                        timer = time_shared if isinstance(make, TwoStage) else time_start
                        r = timer(l2o, lp, make, tol, device, args)
                        if name not in kkt:
                            kkt[name] = initial_kkt(lp, r["start"])
                        if rep > 0 or args.reps == 0:
                            runs[name].append(r)
                cold_total = statistics.median(r["total_s"] for r in runs["cold"])
                cold_solve = statistics.median(r["solve_s"] for r in runs["cold"])
                for name, rs in runs.items():
                    med = {key: statistics.median(r[key] for r in rs)
                           for key in ("predict_s", "graph_s", "inference_s", "solve_s",
                                       "total_s")}
                    row = {**info, "tol": tol, "start": name,
                           "status": ",".join(sorted({r["status"] for r in rs})),
                           "iterations": rs[0]["iterations"], **med,
                           "speedup_total": cold_total / med["total_s"],
                           "speedup_solve": cold_solve / med["solve_s"],
                           "floor_s": floor, "max_speedup": cold_total / floor,
                           **{f"kkt0_{key}": kkt[name][key] for key in KKT_KEYS},
                           "objective": rs[0]["objective"], "reps": len(rs),
                           **{key: rs[0][key] for key in reduced_info(None)},
                           "model": getattr(model, "model_source", None)
                           if name.startswith(("model", "reduced")) else None}
                    rows.append(row)
                    print(format_row(row), flush=True)
                    with open(out / "pdhgnet_partial.csv", "a", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=list(row))
                        if len(rows) == 1:
                            w.writeheader()
                        w.writerow(row)
    summary = summarize(rows)
    result = {"settings": {"gpu": gpu, "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "command": " ".join(sys.argv), "bench_seed": args.seed_base,
                           "args": vars(args)},
              "summary": summary, "rows": rows}
    print("\nsummary (geometric mean over seeds of cold total / start total):")
    for s in summary:
        print(f"  {s['family']:9s} {s['size']:9s} tol {s['tol']:7.0e} {s['start']:14s} "
              f"speedup {s['speedup_total']:6.2f}x  solve-only {s['speedup_solve']:6.2f}x  "
              f"iterations {s['iterations']:8.0f} (cold {s['cold_iterations']:.0f})  "
              f"bound {s['max_speedup']:6.2f}x")
    (out / "pdhgnet.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    with open(out / "pdhgnet.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return result


def _geomean(values) -> float:
    """Geometric mean of non-negative values (0 if any is 0: a start with zero residual)."""
    values = list(values)
    if min(values) <= 0:
        return 0.0
    return math.exp(sum(map(math.log, values)) / len(values))


def summarize(rows: list[dict]) -> list[dict]:
    """Per (family, size, tol, start): geometric means over seeds of speedups and iterations."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["size"], r["tol"], r["start"]), []).append(r)
    out = []
    for (family, size, tol, start), rs in groups.items():
        cold = groups[(family, size, tol, "cold")]
        out.append({"family": family, "size": size, "tol": tol, "start": start,
                    "seeds": len(rs), "all_optimal": all(r["status"] == "OPTIMAL" for r in rs),
                    "speedup_total": _geomean(r["speedup_total"] for r in rs),
                    "speedup_solve": _geomean(r["speedup_solve"] for r in rs),
                    "iterations": _geomean(r["iterations"] for r in rs),
                    "max_speedup": _geomean(r["max_speedup"] for r in rs),
                    "cold_iterations": _geomean(r["iterations"] for r in cold),
                    "predict_s": _geomean(r["predict_s"] for r in rs),
                    "total_s": _geomean(r["total_s"] for r in rs),
                    **{f"kkt0_{k}": _geomean(r[f"kkt0_{k}"] for r in rs) for k in KKT_KEYS}})
    return out


def format_row(r: dict) -> str:
    kkt = "/".join(f"{r[f'kkt0_{k}']:.1e}" for k in KKT_KEYS)
    return (f"  tol {r['tol']:7.0e} {r['start']:14s} {r['status']:9s} it {r['iterations']:7d}  "
            f"predict {r['predict_s']:8.4f}s solve {r['solve_s']:8.4f}s total {r['total_s']:8.4f}s"
            f"  x{r['speedup_total']:5.2f} (solve x{r['speedup_solve']:5.2f})  kkt0 {kkt}"
            + (f"  reduced: {r['reduced_columns']} columns, {r['reduced_iterations']} it in "
               f"{r['reduced_solves']} solves ({r['reduced_solve_s']:.4f}s), {r['reduced_status']}"
               if r.get("reduced_iterations") is not None else ""))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--sizes", nargs="+", default=["train", "x4"], choices=["train", "x4"],
                    help="sizes of the relaxation families (train: the training size)")
    ap.add_argument("--pagerank-nodes", type=int, nargs="+", default=list(PAGERANK_NODES))
    ap.add_argument("--seeds", type=int, default=1,
                    help="fresh instances per case (seeds SEED_BASE, SEED_BASE + 1, ...)")
    ap.add_argument("--seed-base", type=int, default=BENCH_SEED,
                    help=f"first instance seed (default {BENCH_SEED}; at least {BENCH_SEED}: "
                         f"training never uses seeds >= {BENCH_SEED})")
    ap.add_argument("--tols", nargs="+", default=["1e-4", "1e-8"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--reps", type=int, default=3,
                    help="timed repetitions after one warm-up (0: one run, no warm-up: for "
                         "iteration counts, e.g. on the CPU)")
    ap.add_argument("--power-iterations", type=int, nargs="+", default=[5],
                    help="PageRank heuristic starts: power iterations, one start per count "
                         "(default 5; 0: no heuristic)")
    ap.add_argument("--pagerank-model", default="pagerank",
                    help="bundled model name or checkpoint path for PageRank")
    ap.add_argument("--reduce", type=reduce_spec, nargs="+", default=[], metavar="SPEC",
                    help="relaxation families: also the reduced-LP start of each fraction KEEP "
                         "of the columns the model ranks first: KEEP (every family, e.g. 0.2 "
                         "0.3), FAMILY:KEEP or FAMILY:KEEP:SCREEN (that family, screening at "
                         "SCREEN; e.g. setcover:0.2 facility:0.3:1e-3); default none")
    ap.add_argument("--reduce-rounds", type=int, default=3,
                    help="pricing rounds of the reduced starts at the screening tolerance (3)")
    ap.add_argument("--reduce-screen-tol", type=float, default=1e-4,
                    help="tolerance of the reduced starts' screening solves, which settle the "
                         "column set before the solve to the row's tolerance (1e-4)")
    ap.add_argument("--profile", action="store_true",
                    help="the model's and the reduced starts' solves with profile=True: each "
                         "reduced solve's seconds per phase in reduced_history (setup, graph "
                         "capture, iterations; the phase marks synchronize the device)")
    ap.add_argument("--models", default=str(MODELS),
                    help="folder of the relaxation families' {family}.pt")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--check-every", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    ap.add_argument("--out", default=str(default_out("pdhgnet")))
    return ap


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.reps < 0:
        parser.error(f"--reps {args.reps}: must be >= 0")
    if args.seed_base < BENCH_SEED:
        parser.error(f"--seed-base {args.seed_base}: seeds below {BENCH_SEED} may be training "
                     f"seeds")
    if args.threads:
        torch.set_num_threads(args.threads)
    return run(args)


if __name__ == "__main__":
    main()
