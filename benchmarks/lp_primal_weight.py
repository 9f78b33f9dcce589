"""How the start of the primal weight decides PDHG's iterations (CPU, float64, one thread).

    python benchmarks/lp_primal_weight.py --tol 1e-4 --data ../shared/data/lp/large \
        --factors 0.0625,0.25,1,4,16 --trace nemsemm2 ken-11

The bound and objective rescaling (theta_b = 1 / (1 + ||b~||), theta_c = 1 / (1 + ||c~||),
:mod:`l2o.pdhg.scaling`) act on PDHG only through the start of the primal weight: bounds f
times larger with omega^0 = 1 are omega^0 = f with the bounds as they were
(``tests/l2o/test_pdhg_loop.py::test_initial_primal_weight_is_a_bound_rescaling``).  So the
scaling a presolve moves, or another rule for theta_b, is measured here as a start
``primal_weight.initial`` of the solver, with no other change.  Per LP this prints theta_b and
theta_c of the original LP, of the original LP with its empty rows left out of ||b~|| and of
the reduced LP of ``presolve="auto"`` (the GPU reductions kept when they remove
``AUTO_MIN_ROWS_REMOVED`` of the rows), then the iterations of

* ``off`` / ``reduced``: the original / reduced LP, omega^0 = each of ``--factors``;
* ``reduced-original-theta``: the reduced LP with the original LP's theta_b / theta_c;
* ``off-nonempty``: the original LP with theta_b from its non-empty rows only.

``--trace`` prints omega at every restart of the factor-1 solves (with the displacements and
relative residuals the controller saw).  One JSON line per solve goes to OUT (default
``benchmarks/out/lp_primal_weight.jsonl``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o
from _paths import append_row, default_out

LARGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "lp" / "large"


def thetas(lp, skip_empty_rows: bool = False) -> tuple[float, float]:
    """(theta_b, theta_c) of ``lp`` as :func:`l2o.pdhg.scaling.scale_lp` computes them, or with
    the empty rows' bounds left out of ||b~||."""
    from l2o.lp.kkt import finite_bound_norm
    from l2o.pdhg.scaling import equilibrate, lp_arrays

    a = lp_arrays(lp, torch.device("cpu"))
    e = equilibrate(a)
    lower, upper = e.row_lower, e.row_upper
    if skip_empty_rows:
        keep = a.crow.diff() > 0
        lower, upper = lower[keep], upper[keep]
    norm_b = float(finite_bound_norm(lower, upper))
    norm_c = float(torch.linalg.vector_norm(e.c))
    return 1.0 / (1.0 + norm_b), 1.0 / (1.0 + norm_c)


class WeightTrace:
    """Prints omega at every restart of a solve (wraps the solver's controller while on)."""

    def __init__(self) -> None:
        self.solver = importlib.import_module("l2o.pdhg.solver")
        self.plain = self.solver.PrimalWeightPID
        self.on = False
        plain, trace = self.plain, self

        class Traced(plain):
            def update(self, primal_move, dual_move, rel_primal, rel_dual):
                before = self.weight
                after = super().update(primal_move, dual_move, rel_primal, rel_dual)
                if trace.on:
                    print(f"    omega {before:.3g} -> {after:.3g}  |dx| {primal_move:.3g} "
                          f"|dy| {dual_move:.3g}  rel primal {rel_primal:.2g} "
                          f"rel dual {rel_dual:.2g}")
                return after

        self.solver.PrimalWeightPID = Traced


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="+")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--factors", default="1", help="omega^0 values, comma-separated")
    ap.add_argument("--modes", default="off,reduced,reduced-original-theta,off-nonempty")
    ap.add_argument("--iteration-limit", type=int, default=200_000)
    ap.add_argument("--time-limit", type=float, default=600.0, help="seconds per solve")
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--data", type=Path, default=LARGE, help="folder of NAME.mps.gz")
    ap.add_argument("--out", type=Path, default=default_out("lp_primal_weight.jsonl"))
    args = ap.parse_args()
    l2o = import_l2o()
    from l2o.lp.gpu_presolve import gpu_presolve_lp
    from l2o.pdhg.presolve import AUTO_MIN_ROWS_REMOVED
    from l2o.pdhg.restart import PrimalWeightParams

    torch.set_num_threads(1)
    factors = [float(f) for f in args.factors.split(",")]
    modes = args.modes.split(",")
    trace = WeightTrace() if args.trace else None
    for instance in args.instances:
        path = Path(instance) if "/" in instance else args.data / f"{instance}.mps.gz"
        name = path.name.split(".")[0]
        lp = l2o.read_lp(str(path))
        reduced = gpu_presolve_lp(lp, min_rows_removed=AUTO_MIN_ROWS_REMOVED).reduced
        original, nonempty = thetas(lp), thetas(lp, skip_empty_rows=True)
        own = thetas(reduced) if reduced is not None else None
        print(f"{name}: theta_b, theta_c original {original[0]:.4g}, {original[1]:.4g}; "
              f"non-empty rows {nonempty[0]:.4g}, {nonempty[1]:.4g}; reduced "
              + (f"{own[0]:.4g}, {own[1]:.4g}" if own else "(auto keeps no reduction)"),
              flush=True)
        ratio = lambda t: t[0] / t[1]       # omega^0 on the unscaled LP is omega^0 theta_b/theta_c
        runs = {"off": [(lp, f) for f in factors],
                "off-nonempty": [(lp, ratio(nonempty) / ratio(original))],
                "reduced": [(reduced, f) for f in factors],
                "reduced-original-theta": [(reduced, ratio(original) / ratio(own))
                                           if own else (None, 1.0)]}
        for mode in modes:
            for problem, initial in runs[mode]:
                if problem is None:
                    continue
                if trace is not None:
                    trace.on = initial == 1.0 and mode in ("off", "reduced")
                    if trace.on:
                        print(f"  {mode}: omega at each restart")
                start = time.perf_counter()
                r = l2o.solve_lp(problem, tol=args.tol, device="cpu", method="pdhg",
                                 presolve=False, iteration_limit=args.iteration_limit,
                                 time_limit=args.time_limit,
                                 primal_weight=PrimalWeightParams(initial=initial))
                row = {"lp": name, "mode": mode, "initial_weight": round(initial, 6),
                       "tol": args.tol, "status": r.status.name, "iterations": r.iterations,
                       "seconds": round(time.perf_counter() - start, 1)}
                append_row(args.out, row)


if __name__ == "__main__":
    main()
