"""Micro-timings of two pieces of ``solve_lp``'s CUDA setup on one PageRank LP (RESULTS_lp.md,
"Ruiz by segment reductions"): the row/column reductions of the scaling (scatter atomics vs
segment reductions), ``scale_lp`` old vs new (and whether their scaled LPs are bitwise equal),
and the host-to-device copy of the LP (pageable vs page-locked staging).

    python benchmarks/setup_micro.py --nodes 1000000 --old OLD_SCALING.py --json OUT.json

``--old`` is a copy of the earlier ``l2o/pdhg/scaling.py`` (loaded as a sibling module, so its
relative imports resolve).  Times are medians of ``--reps`` runs, each bracketed by
``torch.cuda.synchronize``; the first run of each piece is a warm-up and not counted, except
for the pinned copy, whose first call (the page-locking) is reported on its own.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import statistics
import sys
import time

import torch

from l2o.datasets import generate
from l2o.pdhg import scaling, solver


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, reps: int) -> tuple[float, list[float], object]:
    """(median seconds over reps after one warm-up, all times, last result)."""
    times, out = [], None
    for _ in range(reps + 1):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]), times, out


def _load_old(path: str):
    spec = importlib.util.spec_from_file_location("l2o.pdhg._scaling_old", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod                        # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _scaled_fields(p) -> dict[str, torch.Tensor]:
    return {"row_scale": p.row_scale, "col_scale": p.col_scale, "c": p.c,
            "row_lower": p.row_lower, "row_upper": p.row_upper, "col_lower": p.col_lower,
            "col_upper": p.col_upper, "A_values": p.op.csr.values(),
            "At_values": p.op.csr_t.values(), "At_col": p.op.csr_t.col_indices(),
            "At_crow": p.op.csr_t.crow_indices(),
            "theta": torch.tensor([p.bound_scale, p.objective_scale])}


def _diff(p, q) -> dict[str, object]:
    """Per field: bitwise equal (nan == nan), else the largest relative difference."""
    out = {}
    for k, a in _scaled_fields(p).items():
        b = _scaled_fields(q)[k].to(a.device)
        if torch.equal(a, b) or (a.is_floating_point() and bool(torch.equal(
                torch.nan_to_num(a, posinf=1e308, neginf=-1e308),
                torch.nan_to_num(b, posinf=1e308, neginf=-1e308)))):
            out[k] = "bitwise"
        else:
            fin = torch.isfinite(a) & torch.isfinite(b)
            rel = ((a - b).abs() / b.abs().clamp_min(1e-300))[fin]
            out[k] = f"max rel diff {float(rel.max()) if rel.numel() else float('nan'):.3e}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--old", required=True, help="the earlier scaling.py")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda", help="cpu: only to try the script")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.ones(1, device=dev)                                # CUDA context outside the timings
    lp = generate("pagerank", nodes=args.nodes, seed=5_000_000)
    old = _load_old(args.old)
    out: dict[str, object] = {"lp": f"pagerank:{args.nodes}", "shape": list(lp.A.shape),
                              "nnz": lp.nnz, "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                              "torch": torch.__version__}
    ms = lambda s: round(1e3 * s, 3)

    # host-to-device copy: pageable (as solve_lp does) vs page-locked staging
    t0 = time.perf_counter()
    scaling.lp_arrays(lp, dev, pinned=True)
    _sync()
    out["to_device_pinned_first_ms"] = ms(time.perf_counter() - t0)
    for name, pinned in (("pageable", False), ("pinned", True)):
        med, times, _ = _timed(lambda: scaling.lp_arrays(lp, dev, pinned=pinned), args.reps)
        out[f"to_device_{name}_ms"] = ms(med)
        out[f"to_device_{name}_all_ms"] = [ms(t) for t in times]
    a = scaling.lp_arrays(lp, dev)
    b = scaling.lp_arrays(lp, dev, pinned=True)
    out["pinned_arrays_equal"] = all(torch.equal(getattr(a, k), getattr(b, k)) for k in
                                     ("crow", "col", "values", "c", "col_lower", "col_upper",
                                      "row_lower", "row_upper"))

    # one Ruiz pass's reductions alone, and the Pock-Chambolle sums
    m, n = a.shape
    row = torch.repeat_interleave(torch.arange(m, device=dev), a.crow[1:] - a.crow[:-1])
    col = a.col.long()
    vals = a.values.abs()
    order, crow_t = scaling.column_order(a.col, n)

    def scatter(index, size, how):
        return torch.zeros(size, dtype=torch.float64, device=dev).scatter_reduce_(
            0, index, vals, how, include_self=True)

    def segment(offsets, how, perm=None):
        v = vals if perm is None else vals[perm]
        return torch.segment_reduce(v, how, offsets=offsets, initial=0.0, unsafe=True)

    pieces = {"row_max_scatter": lambda: scatter(row, m, "amax"),
              "col_max_scatter": lambda: scatter(col, n, "amax"),
              "row_max_segment": lambda: segment(a.crow, "max"),
              "col_max_segment": lambda: segment(crow_t, "max", order),
              "row_sum_scatter": lambda: scatter(row, m, "sum"),
              "col_sum_scatter": lambda: scatter(col, n, "sum"),
              "row_sum_segment": lambda: segment(a.crow, "sum"),
              "col_sum_segment": lambda: segment(crow_t, "sum", order),
              "column_order": lambda: scaling.column_order(a.col, n)}
    for k, fn in pieces.items():
        out[f"{k}_ms"] = ms(_timed(fn, args.reps)[0])
    same = lambda x, y: bool(torch.equal(x, y))
    out["row_max_equal"] = same(pieces["row_max_scatter"](), pieces["row_max_segment"]())
    out["col_max_equal"] = same(pieces["col_max_scatter"](), pieces["col_max_segment"]())
    out["row_sum_equal"] = same(pieces["row_sum_scatter"](), pieces["row_sum_segment"]())
    out["col_sum_equal"] = same(pieces["col_sum_scatter"](), pieces["col_sum_segment"]())
    out["row_sum_scatter_repeatable"] = same(pieces["row_sum_scatter"](),
                                             pieces["row_sum_scatter"]())

    # the whole scaling (factors + operator), old vs new, and the bits of their results
    new_scale = functools.partial(scaling.scale_lp, lp, device=dev, dtype=torch.float64,
                                  arrays=a)
    old_arrays = old.lp_arrays(lp, dev) if hasattr(old, "lp_arrays") else None
    old_scale = functools.partial(old.scale_lp, lp, device=dev, dtype=torch.float64,
                                  arrays=old_arrays)
    med_new, _, p_new = _timed(new_scale, args.reps)
    med_old, _, p_old = _timed(old_scale, args.reps)
    out["scale_lp_new_ms"], out["scale_lp_old_ms"] = ms(med_new), ms(med_old)
    out["new_vs_old"] = _diff(p_new, p_old)
    out["old_vs_old_again"] = _diff(old_scale(), p_old)
    out["new_vs_new_again"] = _diff(new_scale(), p_new)

    # solve_lp's phases with the page-locked copy, same process (3rd solve = per-solve cost)
    phases = {}
    for name, pinned in (("pageable", False), ("pinned", True)):
        solver.lp_arrays = functools.partial(scaling.lp_arrays, pinned=pinned)
        phases[name] = [solver.solve_lp(lp, tol=1e-4, device=dev, profile=True).timings
                        for _ in range(3)]
    solver.lp_arrays = scaling.lp_arrays
    out["solve_phases_ms"] = {k: [{p: ms(s) for p, s in t.items()} for t in v]
                              for k, v in phases.items()}
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
