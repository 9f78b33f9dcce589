"""How close must a warm start be before PDHG needs fewer iterations? (issue 5's "why")

For each LP-relaxation family (the benchmark's instances: ``pdhgnet.py``'s sizes and fresh
seeds >= ``BENCH_SEED``), solve to ``--label-tol`` (1e-8) for a reference optimal pair (x*, y*),
then warm-start ``l2o.solve_lp`` to ``--tol`` (1e-4) from perturbed copies

    x0 = proj_[l_c, u_c]( x* + eps ||x*|| / sqrt(n) z ),   y0 = y* + eps ||y*|| / sqrt(m) z',

z, z' standard normal (seeded), for a range of relative errors eps (||x0 - x*|| ~ eps ||x*||
before the projection), and report the iterations against the cold start's. A learned
prediction has relative errors of this kind (the models' validation relative squared errors
0.14-0.45, i.e. eps ~ 0.4-0.7), so the table says which accuracy a model would need for a
given saving, independently of any model. eps = 0 is the reference pair itself (its KKT error
is the label tolerance). With ``--models DIR`` the family's model ``DIR/{family}.pt`` is run on the
same instances too (its prediction, projected as ``l2o.net.predict_warm_start`` does), and its
own relative errors ||x^ - x*|| / ||x*||, ||y^ - y*|| / ||y*|| and iterations are reported next to
the perturbed starts' (rows with eps = "model").

    python benchmarks/warmstart_sensitivity.py [--families setcover auction facility]
        [--sizes train] [--seeds 2] [--seed-base N] [--eps 0.5 0.1 0.01 0.001 0]
        [--models benchmarks/models] [--device cpu] [--out DIR]

Prints a table and writes ``sensitivity.json`` and ``sensitivity.csv`` to ``--out`` (default
``benchmarks/out/sensitivity``). Iteration
counts do not depend on the machine (timing is not measured here); on a 2-core CPU the default
run takes a few minutes.
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
import pdhgnet  # noqa: E402  (the benchmark's instances: sizes and seeds)
from _paths import default_out, write_rows  # noqa: E402

FAMILIES = ("setcover", "auction", "facility")
DEFAULT_EPS = (1.0, 0.5, 0.2, 0.1, 0.03, 0.01, 0.001, 0.0)


def perturbed_start(lp, x_star: torch.Tensor, y_star: torch.Tensor, eps: float,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, y0) at relative distance ~eps from (x*, y*) (see the module docstring)."""
    from l2o.net import project_dual_signs

    def noise(v: torch.Tensor) -> torch.Tensor:
        if v.numel() == 0:
            return v.clone()
        scale = eps * float(torch.linalg.vector_norm(v)) / math.sqrt(v.numel())
        return v + scale * torch.randn(v.shape, generator=generator, dtype=torch.float64)

    x0 = torch.clamp(noise(x_star), lp.col_lower.double(), lp.col_upper.double())
    return x0, project_dual_signs(lp, noise(y_star))


def run(args: argparse.Namespace) -> list[dict]:
    l2o = B.import_l2o()
    from l2o.datasets import generate
    from l2o.net import kkt_error, load_model, predict_warm_start

    device = torch.device(args.device)
    rows = []
    for family in args.families:
        model = load_model(Path(args.models) / f"{family}.pt", device) if args.models else None
        for size in args.sizes:
            options = pdhgnet.SIZES[family][size]
            for k in range(args.seeds):
                seed = args.seed_base + k
                lp = generate(family, seed=seed, **options)
                solve = {"device": device, "time_limit": args.time_limit, "method": "pdhg",
                         "presolve": False}
                ref = l2o.solve_lp(lp, tol=args.label_tol, **solve)
                if ref.status != l2o.LPStatus.OPTIMAL:
                    print(f"{family} {size} seed {seed}: reference {ref.status.value}, skipped")
                    continue
                cold = l2o.solve_lp(lp, tol=args.tol, **solve)
                x_star, y_star = ref.x.double().cpu(), ref.y.double().cpu()
                starts = list(args.eps) + (["model"] if model is not None else [])
                for eps in starts:
                    if eps == "model":
                        ws = predict_warm_start(model, lp, device)
                        start = (ws.x.double().cpu(), ws.y.double().cpu())
                    else:
                        gen = torch.Generator().manual_seed(1000 * k + 17)
                        start = perturbed_start(lp, x_star, y_star, eps, gen)
                    kkt = kkt_error(lp, *start)
                    warm = l2o.solve_lp(lp, tol=args.tol, warm_start=start, **solve)
                    row = {"family": family, "size": size, "seed": seed, "eps": eps,
                           "n": lp.num_cols, "m": lp.num_rows,
                           "rel_error_x": _relative(start[0], x_star),
                           "rel_error_y": _relative(start[1], y_star),
                           "cold_iterations": cold.iterations,
                           "warm_iterations": warm.iterations, "warm_status": warm.status.value,
                           "warm_optimal": warm.status == l2o.LPStatus.OPTIMAL,
                           "iteration_ratio": cold.iterations / max(warm.iterations, 1),
                           "kkt0_primal": kkt["rel_primal_residual"],
                           "kkt0_dual": kkt["rel_dual_residual"], "kkt0_gap": kkt["rel_gap"]}
                    rows.append(row)
                    print(f"{family:>9} {size:>5} seed {seed} eps {eps:>7}  errors "
                          f"{row['rel_error_x']:.2f}/{row['rel_error_y']:.2f}  iterations "
                          f"{warm.iterations:>7} (cold {cold.iterations:>7}) "
                          f"ratio {row['iteration_ratio']:5.2f}x  KKT0 "
                          f"{kkt['rel_primal_residual']:.1e}/{kkt['rel_dual_residual']:.1e}/"
                          f"{kkt['rel_gap']:.1e}  {warm.status.value}", flush=True)
    return rows


def _relative(v: torch.Tensor, ref: torch.Tensor) -> float:
    norm = float(torch.linalg.vector_norm(ref))
    return float(torch.linalg.vector_norm(v - ref)) / norm if norm > 0 else math.nan


def summarize(rows: list[dict]) -> list[dict]:
    """Geometric mean over seeds of the cold / warm iteration ratio per (family, size, eps)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["size"], r["eps"]), []).append(r)
    out = []
    for (family, size, eps), rs in groups.items():
        ratio = math.exp(sum(math.log(r["iteration_ratio"]) for r in rs) / len(rs))
        out.append({"family": family, "size": size, "eps": eps, "seeds": len(rs),
                    "iteration_ratio": ratio,
                    "rel_error_x": [round(r["rel_error_x"], 3) for r in rs],
                    "rel_error_y": [round(r["rel_error_y"], 3) for r in rs],
                    "warm_iterations": [r["warm_iterations"] for r in rs],
                    "cold_iterations": [r["cold_iterations"] for r in rs],
                    "all_optimal": all(r["warm_optimal"] for r in rs)})
    return out


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--sizes", nargs="+", default=["train"], choices=["train", "x4"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--seed-base", type=int, default=pdhgnet.BENCH_SEED,
                    help="first generator seed (training uses seeds < 5,000,000)")
    ap.add_argument("--eps", type=float, nargs="+", default=list(DEFAULT_EPS))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--label-tol", type=float, default=1e-8)
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--models", help="folder of {family}.pt models to compare (optional)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    ap.add_argument("--out", default=str(default_out("sensitivity")))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = run(args)
    summary = summarize(rows)
    print("\nsummary (geometric mean over seeds of cold / warm iterations):")
    for s in summary:
        print(f"  {s['family']:>9} {s['size']:>5} eps {s['eps']:>7}  "
              f"{s['iteration_ratio']:5.2f}x  errors x {s['rel_error_x']} y {s['rel_error_y']}  "
              f"warm {s['warm_iterations']} cold "
              f"{s['cold_iterations']}" + ("" if s["all_optimal"] else "  (not all OPTIMAL)"))
    write_rows(args.out, "sensitivity", rows, summary=summary, settings=vars(args),
               command=" ".join(sys.argv), seconds=time.perf_counter() - started)
    return summary


if __name__ == "__main__":
    main()
