"""LP benchmark of ``l2o.solve_lp`` against cuPDLPx's H100 numbers (``anchors/cupdlpx_h100.csv``).

For each shared instance (20 NETLIB + ken-11 + osa-07) and the PageRank LPs of 1e5 and 1e6 nodes
(Barabasi-Albert, degree 3, damping 0.85, Nesterov's formulation), it times ``solve_lp`` to 1e-4
and 1e-8 (wall time including scaling and the norm estimate, excluding file reading; one solve
after a global warm-up), and prints iterations and times next to cuPDLPx's no-presolve rows, the
geometric-mean time ratio ours / cuPDLPx per tolerance, and the per-iteration time on PageRank 1e6
and afiro (steady state: time between the first and last termination check / iterations between
them, checks included).

The GPU machine has no highspy, so instances are converted here first:

    python benchmarks/lp_suite.py convert --shared ../shared/data/lp --data .devdata/pdhg

which writes one ``NAME.pt`` per MPS instance (plain tensors: crow, col, values, bounds, c, c0,
sense) and ``pagerank_N.pt`` with the graph's edges (the LP is rebuilt from them with torch). Then

    python benchmarks/lp_suite.py run --data .devdata/pdhg --anchor anchors.csv --out OUT

Outputs: ``lp_suite.json`` and ``lp_suite.csv`` in OUT (default ``benchmarks/out/lp_suite``), and
the table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o  # noqa: E402
from _paths import default_out  # noqa: E402

NETLIB = ["adlittle", "afiro", "agg", "bandm", "blend", "brandy", "capri", "grow7", "israel",
          "kb2", "lotfi", "recipe", "sc105", "sc205", "sc50a", "sc50b", "scagr7", "scrs8",
          "share2b", "stocfor1"]
LARGE = ["ken-11", "osa-07"]
PAGERANK = {"pagerank_1e5": 100_000, "pagerank_1e6": 1_000_000}


# ---------------------------------------------------------------------------------------------
# conversion (here, with highspy)

def convert(shared: Path, data: Path) -> None:
    l2o = import_l2o()
    from l2o.datasets.pagerank import barabasi_albert_edges
    data.mkdir(parents=True, exist_ok=True)
    optima = {}
    for folder, names in (("netlib", NETLIB), ("large", LARGE)):
        with open(shared / folder / "optimal_values.csv") as f:
            optima.update({r["name"]: float(r["optimal_objective"]) for r in csv.DictReader(f)})
        for name in names:
            lp = l2o.read_lp(shared / folder / f"{name}.mps.gz")
            torch.save({"name": name, "crow": lp.A.crow_indices(), "col": lp.A.col_indices(),
                        "values": lp.A.values(), "shape": tuple(lp.A.shape), "c": lp.c,
                        "c0": lp.c0, "sense": lp.sense, "row_lower": lp.row_lower,
                        "row_upper": lp.row_upper, "col_lower": lp.col_lower,
                        "col_upper": lp.col_upper, "optimum": optima[name]}, data / f"{name}.pt")
    for name, nodes in PAGERANK.items():
        u, v = barabasi_albert_edges(nodes, 3, seed=0)
        torch.save({"name": name, "nodes": nodes, "u": torch.from_numpy(u).int(),
                    "v": torch.from_numpy(v).int(), "damping": 0.85, "optimum": 0.0},
                   data / f"{name}.pt")
    print(f"wrote {len(NETLIB) + len(LARGE) + len(PAGERANK)} instances to {data}")


def pagerank_lp(l2o, d: dict):
    """The PageRank LP of l2o.datasets.pagerank (same rows, columns, values), built with torch."""
    n, damping = d["nodes"], d["damping"]
    u, v = d["u"].long(), d["v"].long()
    deg = torch.bincount(torch.cat([u, v]), minlength=n).double()
    ar = torch.arange(n)
    rows = torch.cat([ar, u, v, torch.full((n,), n)])
    cols = torch.cat([ar, v, u, ar])
    vals = torch.cat([torch.ones(n, dtype=torch.float64), -damping / deg[v], -damping / deg[u],
                      torch.ones(n, dtype=torch.float64)])
    A = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n + 1, n)).coalesce()
    A = A.to_sparse_csr()
    row_lower = torch.full((n + 1,), (1.0 - damping) / n, dtype=torch.float64)
    row_upper = torch.full((n + 1,), math.inf, dtype=torch.float64)
    row_lower[n] = row_upper[n] = 1.0
    return l2o.LinearProgram(c=torch.zeros(n, dtype=torch.float64), A=A, row_lower=row_lower,
                             row_upper=row_upper, col_lower=torch.zeros(n, dtype=torch.float64),
                             col_upper=torch.full((n,), math.inf, dtype=torch.float64),
                             name=d["name"])


def load(l2o, path: Path):
    d = torch.load(path, weights_only=False)
    if "nodes" in d:
        return pagerank_lp(l2o, d), d["optimum"]
    from bilevel.linalg.operators import csr_tensor
    A = csr_tensor(d["crow"], d["col"], d["values"], d["shape"])
    lp = l2o.LinearProgram(c=d["c"], A=A, row_lower=d["row_lower"], row_upper=d["row_upper"],
                           col_lower=d["col_lower"], col_upper=d["col_upper"], c0=d["c0"],
                           sense=d["sense"], name=d["name"])
    return lp, d["optimum"]


# ---------------------------------------------------------------------------------------------
# run (on the GPU)

def read_anchor(path: Path) -> dict:
    out = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["presolve"] == "nopre":
                out[(r["name"], float(r["eps"]))] = r
    return out


def per_iteration(l2o, lp, device: str, checks: int, check_every: int,
                  fused: object = "auto") -> float:
    """Steady-state seconds per iteration: between the first and the last check of a run."""
    seen = []
    l2o.solve_lp(lp, tol=1e-30, device=device, iteration_limit=1 + checks * check_every,
                 check_every=check_every, progress=seen.append, fused=fused)
    first, last = seen[0], seen[-1]
    return (last["elapsed"] - first["elapsed"]) / (last["iteration"] - first["iteration"])


def run(args) -> None:
    l2o = import_l2o()
    device = args.device
    anchor = read_anchor(Path(args.anchor))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.instances or list(PAGERANK) + LARGE + NETLIB
    tols = [float(t) for t in args.tols]
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    # warm-up: CUDA context, cuSPARSE handles, allocator
    warm, _ = load(l2o, Path(args.data) / "afiro.pt")
    fused = {"true": True, "false": False}.get(args.fused, args.fused)
    l2o.solve_lp(warm, tol=1e-4, device=device, fused=fused)  # + Triton kernels compiled/loaded
    per_iter = {}
    for name in args.per_iteration:
        path = Path(args.data) / f"{name}.pt"
        if path.exists():
            lp, _ = load(l2o, path)
            per_iter[name] = per_iteration(l2o, lp, device, 20, args.check_every, fused)
            print(f"per-iteration {name}: {per_iter[name] * 1e6:.1f} us", flush=True)
    rows = []
    for name in names:
        lp, optimum = load(l2o, Path(args.data) / f"{name}.pt")
        for tol in tols:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = l2o.solve_lp(lp, tol=tol, device=device, time_limit=args.time_limit,
                               check_every=args.check_every, fused=fused)
            wall = time.perf_counter() - t0
            ref = anchor.get((name, tol), {})
            rel = abs(res.objective - optimum) / max(1.0, abs(optimum))
            row = {"name": name, "tol": tol, "status": res.status.name,
                   "iterations": res.iterations, "time_s": wall, "objective": res.objective,
                   "optimum": optimum, "rel_obj_error": rel, **res.kkt,
                   "cupdlpx_status": ref.get("status"),
                   "cupdlpx_iters": int(ref["iters"]) if ref else None,
                   "cupdlpx_time_s": float(ref["runtime_s"]) if ref else None,
                   "cupdlpx_note": ref.get("note", "")}
            row["ratio"] = wall / row["cupdlpx_time_s"] if ref else None
            rows.append(row)
            with open(out / "lp_suite_partial.csv", "a", newline="") as f:  # survives a timeout
                w = csv.DictWriter(f, fieldnames=list(row))
                if len(rows) == 1:
                    w.writeheader()
                w.writerow(row)
            print(f"{name:14s} {tol:7.0e} {res.status.name:16s} it={res.iterations:7d} "
                  f"t={wall:8.4f}s cuPDLPx: it={row['cupdlpx_iters']} t={row['cupdlpx_time_s']} "
                  f"ratio={row['ratio'] if row['ratio'] is None else round(row['ratio'], 2)} "
                  f"relobj={rel:.1e}", flush=True)
    summary = {"device": gpu, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "torch": torch.__version__, "check_every": args.check_every, "fused": args.fused,
               "geomean_ratio": {}}
    for tol in tols:
        # blend is excluded: cuPDLPx's row there is a wrong answer (mis-read file), not a solve
        ratios = [r["ratio"] for r in rows if r["tol"] == tol and r["ratio"]
                  and r["name"] != "blend"]
        solved = [r for r in rows if r["tol"] == tol and r["status"] == "OPTIMAL"]
        summary["geomean_ratio"][str(tol)] = {
            "value": math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None,
            "instances": len(ratios), "solved": len(solved),
            "total": sum(1 for r in rows if r["tol"] == tol)}
    summary["per_iteration_s"] = per_iter
    print(json.dumps(summary, indent=1))
    (out / "lp_suite.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    with open(out / "lp_suite.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def highs(args) -> None:
    """HiGHS (CPU, dual simplex and IPM, default tolerances) on the same instances, for reference."""
    l2o = import_l2o()
    from l2o.lp.reference import solve_highs
    torch.set_num_threads(1)
    rows = []
    for name in args.instances or list(PAGERANK) + LARGE + NETLIB:
        lp, optimum = load(l2o, Path(args.data) / f"{name}.pt")
        for method in ("simplex", "ipm"):
            t0 = time.perf_counter()
            res = solve_highs(lp, method=method, time_limit=args.time_limit)
            wall = time.perf_counter() - t0
            rel = abs(res.objective - optimum) / max(1.0, abs(optimum))
            rows.append({"name": name, "method": method, "status": res.status.name,
                         "time_s": wall, "highs_time_s": res.solve_time,
                         "iterations": res.iterations, "rel_obj_error": rel})
            print(f"{name:14s} {method:8s} {res['status'].name:16s} t={wall:8.4f}s "
                  f"(HiGHS run {res['solve_time']:.4f}s) relobj={rel:.1e}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "lp_suite_highs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="MPS -> .pt (here, with highspy)")
    c.add_argument("--shared", default="../shared/data/lp")
    c.add_argument("--data", default=".devdata/pdhg")
    r = sub.add_parser("run", help="time solve_lp on the converted instances")
    r.add_argument("--data", default=".devdata/pdhg")
    r.add_argument("--anchor", default=".devdata/pdhg/cupdlpx_h100.csv")
    r.add_argument("--out", default=str(default_out("lp_suite")))
    r.add_argument("--device", default="cuda")
    r.add_argument("--tols", nargs="+", default=["1e-4", "1e-8"])
    r.add_argument("--instances", nargs="*")
    r.add_argument("--time-limit", type=float, default=30.0)
    r.add_argument("--check-every", type=int, default=64)
    r.add_argument("--per-iteration", nargs="*", default=["pagerank_1e6", "afiro"])
    r.add_argument("--fused", default="auto",
                   choices=["auto", "true", "false", "elementwise", "spmv"],
                   help="SolverOptions.fused (the Triton iteration kernels)")
    h = sub.add_parser("highs", help="HiGHS on the CPU, same instances (needs highspy)")
    h.add_argument("--data", default=".devdata/pdhg")
    h.add_argument("--out", default=str(default_out("lp_suite")))
    h.add_argument("--instances", nargs="*")
    h.add_argument("--time-limit", type=float, default=60.0)
    args = ap.parse_args(argv)
    if args.cmd == "convert":
        convert(Path(args.shared), Path(args.data))
    elif args.cmd == "highs":
        highs(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
