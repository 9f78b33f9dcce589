"""LP benchmark of ``l2o.solve_lp`` against cuPDLPx: its CLI in the same run, or anchor numbers.

``run`` times ``solve_lp`` to each tolerance (wall time including presolve, scaling, the norm
estimate and polishing, excluding file reading; one solve after a global warm-up) on a set of
instances (``--set``: the default PageRank 1e5/1e6 + ken-11 + osa-07 + 20 NETLIB LPs, ``netlib``,
``large``: the 16 LPs of ../shared/data/lp/large, or ``--instances``), with ``--method``,
``--presolve`` (one or more of auto/on/off: ours runs once per value) and ``--polish``, all
recorded in every row.  With ``--cupdlpx BIN`` the cuPDLPx CLI solves the same MPS files in the
same run, without its presolve (``--no_presolve``), with it, or both (``--cupdlpx-presolve``),
with ``--feasibility_polishing`` when ours polishes; its time is its own "Runtime (sec)" (after
reading; its presolve and scaling included).  Ours with presolve off is paired with cuPDLPx
without presolve, ours with auto/on with cuPDLPx's presolve (each row's ``ratio``); the summary
gives every pairing's geometric-mean time ratio ours / cuPDLPx as the issue defines it (a
non-OPTIMAL result counts as the time limit; LPs neither solves, and blend and dfl001, which
cuPDLPx misreads, left out), the same where both solve, and the LPs cuPDLPx solves and ours not.
Every point, ours and the one cuPDLPx writes, is also checked on the original LP
(:func:`original_lp_check`: cuPDLPx checks termination on its presolved LP only); the summary's
``ratios_checked`` repeats the pairings with an OPTIMAL point that fails that check counted as
not solved, and names those rows.
Without ``--cupdlpx``, cuPDLPx's no-presolve rows of ``--anchor`` (another run's CSV) are used.

Instances are NAME.pt (``convert``, for a machine without highspy) or NAME.mps[.gz] read with
highspy, from ``--data`` and ``--mps`` folders, with known optima from their
``optimal_values.csv``.  ``convert`` (here, with highspy):

    python benchmarks/lp_suite.py convert --shared ../shared/data/lp --data .devdata/pdhg

On the GPU machine (highspy carried; the large set and cuPDLPx's sources copied there), e.g.:

    python benchmarks/lp_suite.py run --data .devdata/lp/large --set large --tols 1e-4 \
        --time-limit 15 --presolve auto off --cupdlpx /tmp/cpx/cupdlpx --out OUT

Outputs: ``lp_suite.json`` (rows and summary) and ``lp_suite.csv`` in OUT (default
``benchmarks/out/lp_suite``), ``lp_suite_partial.csv`` as the run goes, and the table on stdout.
``highs`` times HiGHS on the CPU on the same instances; ``summarize A/lp_suite.json
B/lp_suite.json ...`` gives the ratio summary of a set split over several runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o  # noqa: E402
from _paths import default_out, write_rows  # noqa: E402

NETLIB = ["adlittle", "afiro", "agg", "bandm", "blend", "brandy", "capri", "grow7", "israel",
          "kb2", "lotfi", "recipe", "sc105", "sc205", "sc50a", "sc50b", "scagr7", "scrs8",
          "share2b", "stocfor1"]
LARGE = ["ken-11", "osa-07"]
PAGERANK = {"pagerank_1e5": 100_000, "pagerank_1e6": 1_000_000}
# the shared large set (../shared/data/lp/large: ken-11, osa-07 and 14 larger real LPs)
LARGE_SET = ["bpmpd", "cre-b", "cre-d", "dbir2", "dfl001", "fit2p", "ken-11", "nemsemm2",
             "nemswrld", "nsct2", "osa-07", "pds-10", "pds-30", "pds-50", "rail516", "t0331-4l"]
SETS = {"default": list(PAGERANK) + LARGE + NETLIB, "netlib": NETLIB, "large": LARGE_SET,
        "pagerank": list(PAGERANK)}


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

# cuPDLPx's rows that are wrong answers, not solves (it misreads these files): out of the ratios
MISREAD = ("blend", "dfl001")
# --presolve value -> solve_lp's presolve= (as ``l2o solve --presolve``)
PRESOLVE = {"auto": "auto", "on": True, "off": False, "gpu": "gpu"}


def find_lp(name: str, folders: list[Path]) -> Path | None:
    """The instance file of ``name`` in the first folder that has one: NAME.pt, NAME.mps.gz or
    NAME.mps (None if none has)."""
    for folder in folders:
        for suffix in (".pt", ".mps.gz", ".mps"):
            if (folder / f"{name}{suffix}").exists():
                return folder / f"{name}{suffix}"
    return None


def find_mps(name: str, folders: list[Path]) -> Path | None:
    """The MPS file of ``name`` (what cuPDLPx reads), or None."""
    for folder in folders:
        for suffix in (".mps.gz", ".mps"):
            if (folder / f"{name}{suffix}").exists():
                return folder / f"{name}{suffix}"
    return None


def read_optima(folders: list[Path]) -> dict[str, float]:
    """Known optima from every optimal_values.csv in ``folders``."""
    optima = {}
    for folder in folders:
        path = folder / "optimal_values.csv"
        if path.exists():
            with open(path) as f:
                optima.update({r["name"]: float(r["optimal_objective"])
                               for r in csv.DictReader(f)})
    return optima


def load_instance(l2o, path: Path, optima: dict[str, float]):
    """(LinearProgram, known optimum or nan) of a .pt (``convert``) or an MPS file (highspy)."""
    if path.suffix == ".pt":
        return load(l2o, path)
    lp = l2o.read_lp(path)
    name = path.name.split(".mps")[0]
    return lp, optima.get(name, math.nan)


def read_anchor(path: Path | None) -> dict:
    """cuPDLPx's no-presolve rows of an anchor CSV ((name, tol) -> row); {} without one."""
    out = {}
    if path is None or not path.exists():
        return out
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["presolve"] == "nopre":
                out[(r["name"], float(r["eps"]))] = r
    return out


def cupdlpx_run(binary: str, mps: Path, tol: float, limit: float, presolve: bool,
                polish_tol: float | None, check=None) -> dict:
    """One cuPDLPx CLI solve: {status, iterations, time_s (its own 'Runtime (sec)': after reading
    the file, its presolve and scaling included), wall_s}, and with ``check`` (a function of
    its x and y, :func:`original_lp_check`) the check of the point it wrote on the original LP.
    """
    with tempfile.TemporaryDirectory() as d:
        cmd = [binary, "-q", "--eps_opt", str(tol), "--eps_feas", str(tol), "--time_limit",
               str(limit)]
        if not presolve:
            cmd.append("--no_presolve")
        if polish_tol is not None:
            cmd += ["--feasibility_polishing", "--eps_feas_polish", str(polish_tol)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd + [str(mps), d], capture_output=True, text=True,
                           timeout=limit * 3 + 120, check=False)
        wall = time.perf_counter() - t0
        summary = Path(d, mps.name.split(".mps")[0] + "_summary.txt")
        if not summary.exists():
            last = (p.stderr.strip().splitlines() or ["?"])[-1][:60]
            return {"status": f"ERROR: {last}", "iterations": None, "time_s": None,
                    "objective": None, "wall_s": wall}
        text = summary.read_text()
        get = lambda key: (re.search(re.escape(key) + r":\s*(\S+)", text) or [None, ""])[1]
        number = lambda key: float(get(key)) if get(key) else None
        iterations = number("Iterations Count")
        polish_iterations = number("Feasibility Polishing Iteration Count")
        checked = {}
        if check is not None:
            stem = mps.name.split(".mps")[0]
            checked = check(Path(d, stem + "_primal_solution.txt"),
                            Path(d, stem + "_dual_solution.txt"))
        return {**checked, "status": get("Termination Reason"), "time_s": number("Runtime (sec)"),
                "iterations": int(iterations) if iterations is not None else None,
                "objective": number("Primal Objective Value"), "wall_s": wall,
                "presolve_time_s": number("Presolve Time (sec)"),
                "rel_primal_residual": number("Relative Primal Residual"),
                "rel_dual_residual": number("Relative Dual Residual"),
                "rel_gap": number("Relative Objective Gap"),
                "polish_time_s": number("Feasibility Polishing Time (sec)"),
                "polish_iterations": (int(polish_iterations) if polish_iterations is not None
                                      else None)}


# A point "fails the check" on the original LP when a relative residual exceeds this multiple
# of the tolerance it was solved to (a clear miss, not the criteria's differences: below), and
# this multiple of the noise its file's rounding alone would cause (ROUNDING_NOISE_SAMPLES).
CHECK_MARGIN = 10.0
# cuPDLPx's CLI writes x and y with 10 significant digits ("%.10g"); where the duals are large
# against c (dbir2: max |y| 3.6e4, ||c|| 96), that rounding alone moves the relative dual
# residual by ~1.5e-7 (our own 1e-8 point of dbir2: 1.1e-12 exact, 1.5e-7 rounded so).
FILE_DIGITS = 10
ROUNDING_NOISE_SAMPLES = 3


def rounding_noise(lp, x: torch.Tensor, y: torch.Tensor, digits: int,
                   residuals: tuple[float, float]) -> tuple[float, float]:
    """How much writing (x, y) with ``digits`` significant digits can move its relative primal
    and dual residuals (``residuals``, of the point as read): the largest change over a few
    draws of the point with each entry moved by a relative e uniform in +-0.5 10^(1 - digits)
    (a rounding error, at most the largest a digit string makes)."""
    from l2o.lp.kkt import kkt_error

    half = 0.5 * 10.0 ** (1 - digits)
    gen = torch.Generator().manual_seed(0)
    moved = lambda v: v * (1 + (torch.rand(v.shape, generator=gen, dtype=torch.float64) * 2 - 1)
                           * half)
    primal = dual = 0.0
    for _ in range(ROUNDING_NOISE_SAMPLES):
        errors = kkt_error(lp, moved(x), moved(y))
        primal = max(primal, abs(errors["rel_primal_residual"] - residuals[0]))
        dual = max(dual, abs(errors["rel_dual_residual"] - residuals[1]))
    return primal, dual


def original_lp_check(lp, tol: float, x, y, digits: int | None = None) -> dict:
    """A solver's point (x, y) judged on the original LP: ``checked_rel_primal_residual`` and
    ``checked_rel_dual_residual`` of :func:`l2o.lp.kkt.kkt_error` without reduced costs (r =
    proj_K(c - A^T y): the dual residual is the part of c - A^T y no multiplier of the column
    bounds' signs explains, at most the residual with any other r of those signs, so no
    stricter than the solver's own criterion), and ``checked``: "ok" (both within
    CHECK_MARGIN x tol), "failed" (one above it and above CHECK_MARGIN x the rounding noise of
    a point written with ``digits`` significant digits, :func:`rounding_noise`), "not judged"
    (above the margin, but within what the file's rounding explains) or why there was nothing
    to check. The gap without the solver's r is stricter than the solver's (module docstring of
    l2o.lp.kkt): reported, not judged; the objective against the known optimum is the row's
    rel_obj_error.

    Why: cuPDLPx checks termination on its presolved LP only and postsolves without a check;
    ours checks the postsolved point on the original LP (issue 10's fit2p: PSLP's point has a
    relative dual residual of 1.9e-2 there).
    """
    if lp.sense != "minimize":
        return {"checked": "not checked (a maximization: the dual's sign convention)"}
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    if x.numel() != lp.num_cols or y.numel() != lp.num_rows:
        return {"checked": f"not checked ({x.numel()} x, {y.numel()} y for {lp.num_cols} "
                           f"columns, {lp.num_rows} rows)"}
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return {"checked": "failed (non-finite values)"}
    from l2o.lp.kkt import kkt_error

    errors = kkt_error(lp, x, y)
    residuals = (errors["rel_primal_residual"], errors["rel_dual_residual"])
    out = {"checked_rel_primal_residual": residuals[0],
           "checked_rel_dual_residual": residuals[1], "checked_rel_gap": errors["rel_gap"]}
    if max(residuals) <= CHECK_MARGIN * tol:
        return {"checked": "ok", **out}
    if digits is None:
        return {"checked": "failed", **out}
    floors = rounding_noise(lp, x, y, digits, residuals)
    out.update(checked_rounding_noise_primal=floors[0], checked_rounding_noise_dual=floors[1])
    beyond = [r > CHECK_MARGIN * max(tol, floor) for r, floor in zip(residuals, floors)]
    return {"checked": "failed" if any(beyond) else
            f"not judged (within {CHECK_MARGIN:g}x the noise of {digits}-digit values)", **out}


def solution_file_check(lp, tol: float, digits: int = FILE_DIGITS):
    """:func:`original_lp_check` of cuPDLPx's solution files (one value a line, ``digits``
    significant digits), for :func:`cupdlpx_run`'s ``check``."""
    def check(primal: Path, dual: Path) -> dict:
        if not (primal.exists() and dual.exists()):
            return {"checked": "not checked (no solution files)"}
        try:
            x = [float(v) for v in primal.read_text().split()]
            y = [float(v) for v in dual.read_text().split()]
        except ValueError as e:
            return {"checked": f"not checked (unreadable solution file: {e})"}
        return original_lp_check(lp, tol, x, y, digits)
    return check


def per_iteration(l2o, lp, device: str, checks: int, check_every: int | None,
                  fused: object = "auto") -> float:
    """Steady-state seconds per iteration: between the first and the last check of a run."""
    seen = []
    every = check_every or 64
    l2o.solve_lp(lp, tol=1e-30, device=device, iteration_limit=1 + checks * every,
                 check_every=every, progress=seen.append, fused=fused, presolve=False)
    first, last = seen[0], seen[-1]
    return (last["elapsed"] - first["elapsed"]) / (last["iteration"] - first["iteration"])


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def ratio_summary(rows: list[dict], ours: str, peer: str, tol: float, limit: float,
                  checked: bool = False) -> dict:
    """ours / peer time ratios at ``tol`` (the issue's rule): a non-OPTIMAL result counts as the
    time limit; LPs neither solves, and cuPDLPx's misread ones (:data:`MISREAD`), are left out.
    Also the geometric mean where both solve, and the LPs the peer solves and ours does not.

    With ``checked``, an OPTIMAL row whose point failed the check on the original LP
    (:func:`original_lp_check`) counts as not solved, and the summary names those rows."""
    def solved(row: dict) -> bool:
        return row["status"] == "OPTIMAL" and not (
            checked and str(row.get("checked", "")).startswith("failed"))

    def time_of(row: dict | None) -> float | None:
        if row is None or row["time_s"] is None:
            return None
        return row["time_s"] if solved(row) else limit

    by = {}
    for row in rows:
        if row["tol"] == tol and row["solver"] in (ours, peer):
            by.setdefault(row["name"], {})[row["solver"]] = row
    counted, both, only_peer, failed = [], [], [], []
    for name, pair in by.items():
        a, b = pair.get(ours), pair.get(peer)
        if name in MISREAD or a is None or b is None:
            continue
        failed += [f"{name} ({row['solver']})" for row in (a, b)
                   if row["status"] == "OPTIMAL" and not solved(row)]
        solved_a, solved_b = solved(a), solved(b)
        if not (solved_a or solved_b) or time_of(b) is None or time_of(a) is None:
            continue
        counted.append(time_of(a) / time_of(b))
        if solved_a and solved_b:
            both.append(a["time_s"] / b["time_s"])
        if solved_b and not solved_a:
            only_peer.append(name)
    summary = {"ours": ours, "peer": peer, "tol": tol, "geomean_ratio": geomean(counted),
               "instances": len(counted), "geomean_ratio_both_solve": geomean(both),
               "both_solve": len(both), "peer_solves_ours_not": only_peer}
    if checked:
        summary.update(rule="checked on the original LP", failed_check=failed)
    return summary


def ours_label(method: str, presolve: str, polish: bool) -> str:
    return f"ours[{method},presolve={presolve}{',polish' if polish else ''}]"


def run(args) -> None:
    l2o = import_l2o()
    device = args.device
    folders = [Path(f) for f in [args.data, *(args.mps or [])]]
    optima = read_optima(folders)
    anchor = read_anchor(Path(args.anchor) if args.anchor else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.instances or SETS[args.set]
    tols = [float(t) for t in args.tols]
    polish_tol = args.polish_tol if args.polish else None
    peers = [("cupdlpx+pre" if pre else "cupdlpx", pre)
             for pre in {"off": [False], "on": [True], "both": [False, True]}[
                 args.cupdlpx_presolve]] if args.cupdlpx else []
    variants = [(ours_label(args.method, pre, args.polish), pre) for pre in args.presolve]
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    if not device.startswith("cuda"):
        torch.set_num_threads(1)    # small LPs on a shared CPU: threads only contend
    # warm-up: CUDA context, cuSPARSE handles, allocator, Triton kernels compiled/loaded
    warm_path = find_lp("afiro", folders) or find_lp(names[0], folders)
    warm, _ = load_instance(l2o, warm_path, optima)
    fused = {"true": True, "false": False}.get(args.fused, args.fused)
    l2o.solve_lp(warm, tol=1e-4, device=device, fused=fused, presolve=False)
    if {"gpu", "auto"} & set(args.presolve):
        # the GPU reductions' kernels too ("auto" runs them on a GPU; afiro is below auto's
        # size, "gpu" reduces it all the same)
        l2o.solve_lp(warm, tol=1e-4, device=device, fused=fused, presolve="gpu")
    per_iter = {}
    for name in args.per_iteration:
        path = find_lp(name, folders)
        if path is not None:
            lp, _ = load_instance(l2o, path, optima)
            per_iter[name] = per_iteration(l2o, lp, device, 20, args.check_every, fused)
            print(f"per-iteration {name}: {per_iter[name] * 1e6:.1f} us", flush=True)
    rows = []

    def record(row: dict) -> None:
        rows.append(row)
        with open(out / "lp_suite_partial.csv", "a", newline="") as f:  # survives a timeout
            w = csv.DictWriter(f, fieldnames=ROW_FIELDS)
            if len(rows) == 1:
                w.writeheader()
            w.writerow({k: row.get(k) for k in ROW_FIELDS})
        ratio = row.get("ratio")
        print(f"{row['name']:14s} {row['tol']:7.0e} {row['solver']:38s} {row['status']:16s} "
              f"it={row['iterations']} t={row['time_s']}"
              + (f" ratio vs {row['ratio_vs']}={ratio:.2f}" if ratio else "")
              + (f" relobj={row['rel_obj_error']:.1e}" if row.get("rel_obj_error") is not None
                 else ""), flush=True)

    for name in names:
        path = find_lp(name, folders)
        if path is None:
            print(f"{name}: no .pt, .mps.gz or .mps in {[str(f) for f in folders]}", flush=True)
            continue
        lp, optimum = load_instance(l2o, path, optima)
        mps = find_mps(name, folders)
        shape = {"rows": lp.num_rows, "cols": lp.num_cols, "nnz": lp.nnz}
        for tol in tols:
            peer_rows = {}
            for label, pre in peers:
                if mps is None:
                    continue
                c = cupdlpx_run(args.cupdlpx, mps, tol, args.time_limit, pre, polish_tol,
                                check=solution_file_check(lp, tol))
                obj = c["objective"]
                peer_rows[pre] = {
                    "name": name, **shape, "tol": tol, "solver": label, "method": "cupdlpx",
                    "presolve": "on" if pre else "off", "polish": args.polish,
                    **c, "optimum": optimum,
                    "rel_obj_error": (abs(obj - optimum) / max(1.0, abs(optimum))
                                      if obj is not None and math.isfinite(optimum) else None)}
                record(peer_rows[pre])
            for label, pre in variants:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                res = l2o.solve_lp(lp, tol=tol, device=device, time_limit=args.time_limit,
                                   check_every=args.check_every, fused=fused, method=args.method,
                                   presolve=PRESOLVE[pre], polish=args.polish,
                                   polish_tol=args.polish_tol)
                wall = time.perf_counter() - t0
                rel = (abs(res.objective - optimum) / max(1.0, abs(optimum))
                       if math.isfinite(optimum) else None)
                pre_report, pol = res.presolve or {}, res.polish or {}
                row = {"name": name, **shape, "tol": tol, "solver": label, "method": args.method,
                       "presolve": pre, "polish": args.polish, "status": res.status.name,
                       "iterations": res.iterations, "time_s": wall, "wall_s": wall,
                       "objective": res.objective, "optimum": optimum, "rel_obj_error": rel,
                       **res.kkt, "method_used": res.method,
                       "presolve_applied": pre_report.get("applied"),
                       "presolve_by": pre_report.get("by"),
                       "presolve_time_s": pre_report.get("time_s"),
                       "presolve_reason": pre_report.get("reason"),
                       "polish_applied": pol.get("applied"), "polish_reached": pol.get("reached"),
                       "polish_time_s": pol.get("time_s"), "polish_gap": pol.get("gap"),
                       "polish_iterations": pol.get("iterations"),
                       **(original_lp_check(lp, tol, res.x, res.y)
                          if res.x is not None and res.y is not None else {})}
                # the pairing of the issue: presolve off vs cuPDLPx --no_presolve, else with its own
                peer = peer_rows.get(pre != "off")
                ref = anchor.get((name, tol))
                if peer is not None and peer["time_s"]:
                    row.update(ratio_vs=peer["solver"], ratio=wall / peer["time_s"])
                elif ref:
                    row.update(ratio_vs="anchor", ratio=wall / float(ref["runtime_s"]),
                               anchor_status=ref.get("status"), anchor_iters=int(ref["iters"]),
                               anchor_time_s=float(ref["runtime_s"]))
                record(row)
    summary = {"device": gpu, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "torch": torch.__version__, "check_every": args.check_every, "fused": args.fused,
               "method": args.method, "presolve": args.presolve, "polish": args.polish,
               "polish_tol": polish_tol, "time_limit": args.time_limit,
               "cupdlpx": args.cupdlpx, "cupdlpx_presolve": args.cupdlpx_presolve if peers else None,
               "ratios": [ratio_summary(rows, label, peer, tol, args.time_limit)
                          for tol in tols for label, _ in variants for peer, _ in peers],
               "ratios_checked": [ratio_summary(rows, label, peer, tol, args.time_limit, True)
                                  for tol in tols for label, _ in variants
                                  for peer, _ in peers],
               "per_iteration_s": per_iter}
    if not peers and anchor:
        summary["anchor_geomean_ratio"] = {
            str(tol): geomean([r["ratio"] for r in rows if r["tol"] == tol and r.get("ratio")
                               and r["name"] not in MISREAD]) for tol in tols}
    print(json.dumps(summary, indent=1))
    write_rows(out, "lp_suite", [{k: r.get(k) for k in ROW_FIELDS} for r in rows],
               summary=summary)


# the CSV columns of the partial file (written as the run goes; lp_suite.csv has the same)
ROW_FIELDS = ["name", "rows", "cols", "nnz", "tol", "solver", "method", "presolve", "polish",
              "status", "iterations", "time_s", "wall_s", "objective", "optimum", "rel_obj_error",
              "rel_primal_residual", "rel_dual_residual", "rel_gap", "method_used",
              "presolve_applied", "presolve_by", "presolve_time_s", "presolve_reason",
              "polish_applied", "polish_reached", "polish_time_s", "polish_gap",
              "polish_iterations", "checked", "checked_rel_primal_residual",
              "checked_rel_dual_residual", "checked_rel_gap", "checked_rounding_noise_primal",
              "checked_rounding_noise_dual", "ratio_vs", "ratio",
              "anchor_status", "anchor_iters", "anchor_time_s"]


def highs(args) -> None:
    """HiGHS (CPU, dual simplex and IPM, default tolerances) on the same instances, for reference."""
    l2o = import_l2o()
    from l2o.lp.reference import solve_highs
    torch.set_num_threads(1)
    folders = [Path(args.data)]
    optima = read_optima(folders)
    rows = []
    for name in args.instances or SETS[args.set]:
        path = find_lp(name, folders)
        if path is None:
            print(f"{name}: not found in {args.data}", flush=True)
            continue
        lp, optimum = load_instance(l2o, path, optima)
        for method in ("simplex", "ipm"):
            t0 = time.perf_counter()
            res = solve_highs(lp, method=method, time_limit=args.time_limit)
            wall = time.perf_counter() - t0
            rel = abs(res.objective - optimum) / max(1.0, abs(optimum))
            rows.append({"name": name, "method": method, "status": res.status.name,
                         "time_s": wall, "highs_time_s": res.solve_time,
                         "iterations": res.iterations, "rel_obj_error": rel})
            print(f"{name:14s} {method:8s} {res.status.name:16s} t={wall:8.4f}s "
                  f"(HiGHS run {res.solve_time:.4f}s) relobj={rel:.1e}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "lp_suite_highs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def summarize(args) -> None:
    """The ratio summary of several ``run`` outputs together (a set split over GPU commands)."""
    rows, limits = [], set()
    for path in args.files:
        data = json.loads(Path(path).read_text())
        rows += data["rows"]
        limits.add(data["summary"]["time_limit"])
    if len(limits) != 1:
        raise SystemExit(f"the runs have different time limits {sorted(limits)}: not comparable")
    limit = limits.pop()
    ours = sorted({r["solver"] for r in rows if r["solver"].startswith("ours")})
    peers = sorted({r["solver"] for r in rows if r["solver"].startswith("cupdlpx")})
    tols = sorted({r["tol"] for r in rows}, reverse=True)
    print(json.dumps([ratio_summary(rows, a, b, tol, limit, checked) for checked in (False, True)
                      for tol in tols for a in ours for b in peers], indent=1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="MPS -> .pt (here, with highspy)")
    c.add_argument("--shared", default="../shared/data/lp")
    c.add_argument("--data", default=".devdata/pdhg")
    r = sub.add_parser("run", help="time solve_lp (and the cuPDLPx CLI) on the instances")
    r.add_argument("--data", default=".devdata/pdhg",
                   help="folder of the instances: NAME.pt (convert) or NAME.mps[.gz] (read with "
                        "highspy), with their optimal_values.csv")
    r.add_argument("--mps", nargs="*",
                   help="more folders to look in, e.g. of the MPS files cuPDLPx reads")
    r.add_argument("--anchor", default=".devdata/pdhg/cupdlpx_h100.csv",
                   help="cuPDLPx rows of another run, used when --cupdlpx is not given "
                        "(skipped if the file does not exist)")
    r.add_argument("--out", default=str(default_out("lp_suite")))
    r.add_argument("--device", default="cuda")
    r.add_argument("--tols", nargs="+", default=["1e-4", "1e-8"])
    r.add_argument("--set", choices=tuple(SETS), default="default",
                   help="the instances when --instances is not given (default: PageRank 1e5, "
                        "1e6, ken-11, osa-07 and 20 NETLIB LPs; large: the 16 LPs of "
                        "../shared/data/lp/large)")
    r.add_argument("--instances", nargs="*")
    r.add_argument("--time-limit", type=float, default=30.0)
    r.add_argument("--check-every", type=int, default=None,
                   help="solve_lp's check_every (default: the solver's, by LP size)")
    r.add_argument("--method", choices=("pdhg", "highs", "auto"), default="pdhg",
                   help="solve_lp's method for ours (default pdhg, as every comparison with "
                        "cuPDLPx)")
    r.add_argument("--presolve", nargs="+", choices=tuple(PRESOLVE), default=["off"],
                   help="solve_lp's presolve for ours; several values run ours once with each "
                        "(default: off). Ours with presolve off is compared with cuPDLPx "
                        "--no_presolve, with auto or on with cuPDLPx's own presolve. on and "
                        "auto need highspy on the machine")
    r.add_argument("--polish", action="store_true",
                   help="feasibility polishing for ours (solve_lp polish=True) and cuPDLPx "
                        "(--feasibility_polishing --eps_feas_polish T)")
    r.add_argument("--polish-tol", type=float, default=1e-8)
    r.add_argument("--cupdlpx", default=None,
                   help="the cuPDLPx CLI binary (peer/build_cupdlpx.sh): runs it on NAME.mps[.gz] "
                        "of the same instances in the same run")
    r.add_argument("--cupdlpx-presolve", choices=("off", "on", "both"), default="both",
                   help="cuPDLPx without its presolve (--no_presolve), with it, or both "
                        "(default)")
    r.add_argument("--per-iteration", nargs="*", default=["pagerank_1e6", "afiro"])
    r.add_argument("--fused", default="auto",
                   choices=["auto", "true", "false", "elementwise", "spmv", "mixed"],
                   help="SolverOptions.fused (the Triton iteration kernels)")
    h = sub.add_parser("highs", help="HiGHS on the CPU, same instances (needs highspy)")
    h.add_argument("--data", default=".devdata/pdhg")
    h.add_argument("--out", default=str(default_out("lp_suite")))
    h.add_argument("--set", choices=tuple(SETS), default="default")
    h.add_argument("--instances", nargs="*")
    h.add_argument("--time-limit", type=float, default=60.0)
    m = sub.add_parser("summarize", help="the ratio summary of several run outputs together")
    m.add_argument("files", nargs="+", help="lp_suite.json files of run")
    args = ap.parse_args(argv)
    if args.cmd == "summarize":
        summarize(args)
    elif args.cmd == "convert":
        convert(Path(args.shared), Path(args.data))
    elif args.cmd == "highs":
        highs(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
