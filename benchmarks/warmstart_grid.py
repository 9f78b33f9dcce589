"""Does a warm start ever cost more iterations than the cold start?  (issue 13, item 1)

For each LP, a tight cold solve (``--ref-tol``, 1e-10; HiGHS's simplex where PDHG does not get
there in 1e5 iterations: grow7) gives z* = (x*, y*); then, at each
tolerance, the cold solve and warm solves from

    z0 = z* + d,   d = r |z*| g / |g|,   g ~ N(0, I) over (x, y) jointly (seeded),

for the relative radii r (``--radii``) and seeds (``--seeds``); the solver projects z0 onto the
bounds and dual signs.  Every solve is PDHG without presolve (``method="pdhg",
presolve=False``): the solver's own use of a start.  The target: warm iterations <= cold iterations + 64 for every start.
With ``--model`` the bundled PDHG-Net model's start (``l2o.net.solve_with_model``) on PageRank
(``--model-nodes``, seeds ``--model-seeds``, all >= 9,200,000: never seen in training) is
compared with the cold solve too (the target there: fewer iterations than cold).

    python benchmarks/warmstart_grid.py [--lps afiro ... pagerank] [--tols 1e-4 1e-8]
        [--radii 1e-6 1e-4 1e-2 1e-1] [--seeds 0 1 2] [--trials 0 16] [--model] [--out DIR]

``--trials``: the solver's ``warm_start_trial`` values to compare (l2o.pdhg.start; default the
solver's 16).

Prints one line per (LP, tol) and a summary; writes ``grid.json`` and ``grid.csv`` to ``--out``
(default ``benchmarks/out/warmstart_grid``).  Iteration counts do not depend on the machine
(CPU float64); the full grid takes about half an hour on a busy 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _l2o_import as B  # noqa: E402  (the benchmarks folder's shared import helper)
from _paths import default_out, write_rows  # noqa: E402

NETLIB_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "lp" / "netlib"
LPS = ("afiro", "adlittle", "blend", "brandy", "grow7", "israel", "recipe", "sc105", "sc205",
       "sc50a", "sc50b", "stocfor1", "pagerank")
PAGERANK_NODES, PAGERANK_SEED = 10_000, 0
MODEL_SEEDS = (9_200_000, 9_200_001, 9_200_002)
ALLOWANCE = 64          # one check interval
PDHG = {"method": "pdhg", "presolve": False}


def load(name: str):
    l2o = B.import_l2o()
    if name == "pagerank":
        from l2o.datasets import generate
        return generate("pagerank", nodes=PAGERANK_NODES, seed=PAGERANK_SEED)
    return l2o.read_lp(NETLIB_DIR / f"{name}.mps.gz")


def perturbed(x: torch.Tensor, y: torch.Tensor, radius: float,
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z* + d with |d| = radius |z*|, d in a random direction of (x, y) (module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(x.numel() + y.numel(), generator=gen, dtype=torch.float64)
    z = torch.cat([x, y])
    d = radius * float(torch.linalg.vector_norm(z)) / float(torch.linalg.vector_norm(g)) * g
    return x + d[:x.numel()], y + d[x.numel():]


def grid(args: argparse.Namespace) -> list[dict]:
    l2o = B.import_l2o()
    rows = []
    for name in args.lps:
        lp = load(name)
        ref = l2o.solve_lp(lp, tol=args.ref_tol, device="cpu", iteration_limit=100_000,
                           **PDHG)
        if ref.status != l2o.LPStatus.OPTIMAL:
            ref = l2o.solve_highs(lp)
        if ref.status != l2o.LPStatus.OPTIMAL:
            print(f"{name}: reference {ref.status.value}, skipped", flush=True)
            continue
        for tol in args.tols:
            cold = l2o.solve_lp(lp, tol=tol, device="cpu", **PDHG).iterations
            for trial in args.trials:
                warm = []
                for radius in args.radii:
                    for seed in args.seeds:
                        res = l2o.solve_lp(lp, tol=tol, device="cpu", **PDHG,
                                           warm_start=perturbed(ref.x, ref.y, radius, seed),
                                           warm_start_trial=trial)
                        warm.append(res.iterations)
                        rows.append({"lp": name, "tol": tol, "radius": radius, "seed": seed,
                                     "trial": trial, "cold_iterations": cold,
                                     "warm_iterations": res.iterations,
                                     "excess": res.iterations - cold,
                                     "status": res.status.value})
                print(f"{name:>9} tol {tol:g} trial {trial:2d}  cold {cold:6d}  warm {warm}  "
                      f"worst excess {max(warm) - cold:+d}", flush=True)
    return rows


def model_rows(args: argparse.Namespace) -> list[dict]:
    l2o = B.import_l2o()
    from l2o.datasets import generate
    from l2o.net import load_model, solve_with_model

    model = load_model("pagerank")
    rows = []
    for nodes in args.model_nodes:
        for seed in args.model_seeds:
            lp = generate("pagerank", nodes=nodes, seed=seed)
            cold = l2o.solve_lp(lp, tol=1e-8, device="cpu", **PDHG)
            for trial in args.trials:
                warm, _ = solve_with_model(model, lp, tol=1e-8, device="cpu", **PDHG,
                                           warm_start_trial=trial)
                rows.append({"lp": f"pagerank_{nodes}_model", "tol": 1e-8, "radius": "model",
                             "seed": seed, "trial": trial, "cold_iterations": cold.iterations,
                             "warm_iterations": warm.iterations,
                             "excess": warm.iterations - cold.iterations,
                             "status": warm.status.value})
                print(f"PageRank {nodes} seed {seed} trial {trial}: model start "
                      f"{warm.iterations} iterations, cold {cold.iterations}", flush=True)
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lps", nargs="+", default=list(LPS), choices=LPS)
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-4, 1e-8])
    ap.add_argument("--radii", type=float, nargs="+", default=[1e-6, 1e-4, 1e-2, 1e-1])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, nargs="+", default=[16],
                    help="warm_start_trial values of the warm solves (l2o.pdhg.SolverOptions)")
    ap.add_argument("--ref-tol", type=float, default=1e-10)
    ap.add_argument("--model", action="store_true",
                    help="also the bundled pagerank model's start on fresh PageRank LPs")
    ap.add_argument("--model-nodes", type=int, nargs="+", default=[10_000, 80_000])
    ap.add_argument("--model-seeds", type=int, nargs="+", default=list(MODEL_SEEDS))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    ap.add_argument("--out", default=str(default_out("warmstart_grid")))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = grid(args) + (model_rows(args) if args.model else [])
    perturbed_rows = [r for r in rows if r["radius"] != "model"]
    for trial in args.trials:
        of_trial = [r for r in perturbed_rows if r["trial"] == trial]
        over = [r for r in of_trial if r["excess"] > ALLOWANCE]
        print(f"\ntrial {trial}: {len(of_trial)} perturbed starts: {len(over)} over cold + "
              f"{ALLOWANCE}"
              + "".join(f"\n  {r['lp']} tol {r['tol']:g} r {r['radius']:g} seed {r['seed']}: "
                        f"{r['warm_iterations']} vs cold {r['cold_iterations']}" for r in over))
        if of_trial:
            ratios = [r["warm_iterations"] / r["cold_iterations"] for r in of_trial]
            print(f"warm / cold iterations: geometric mean "
                  f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}, "
                  f"max {max(ratios):.3f}")
    write_rows(args.out, "grid", rows, settings=vars(args), command=" ".join(sys.argv),
               seconds=time.perf_counter() - started)
    return rows


if __name__ == "__main__":
    main()
