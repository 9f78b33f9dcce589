"""Feasibility polishing vs solving to the tight tolerance: what ``solve_lp(polish=True)`` costs.

For each LP, two solves (method "pdhg", ``--presolve`` as given):

* tight:   ``solve_lp(lp, tol=POLISH_TOL)``                 (all three errors <= 1e-8)
* polish:  ``solve_lp(lp, tol=TOL, polish=True, polish_tol=POLISH_TOL)``  (residuals <= 1e-8,
  gap <= TOL, checked on the original LP)

and prints iterations (the solves' own, and the polishing phases'), wall seconds, and the
returned point's relative primal / dual residual and gap on the original LP
(:func:`l2o.lp.kkt.kkt_error`, float64).

    python benchmarks/lp_polish.py [--device cpu] [--presolve off] [--tol 1e-4] \
        [--polish-tol 1e-8] [--time-limit 60] FILE.mps.gz ...

Writes OUT/lp_polish.json and .csv (default ``benchmarks/out/lp_polish``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out, write_rows

PRESOLVE = {"auto": "auto", "on": True, "off": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--presolve", choices=tuple(PRESOLVE), default="off")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--polish-tol", type=float, default=1e-8)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--out", default=str(default_out("lp_polish")))
    args = ap.parse_args()

    import l2o
    from l2o.lp.kkt import kkt_error

    if args.device == "cpu":
        torch.set_num_threads(1)     # small LPs on a shared CPU: threads only contend
    options = {"device": args.device, "method": "pdhg", "presolve": PRESOLVE[args.presolve],
               "time_limit": args.time_limit}
    l2o.solve_lp(l2o.read_lp(args.files[0]), tol=1e-4, **options)       # warm-up
    rows = []
    print(f"{'name':10s} | {'tight: status':14s} {'iters':>7s} {'s':>7s} | "
          f"{'polish: applied':16s} {'iters':>7s} {'+phases':>7s} {'rounds':>6s} {'s':>7s} "
          f"{'primal':>8s} {'dual':>8s} {'gap':>8s}")
    for path in args.files:
        lp = l2o.read_lp(path)
        name = Path(path).name.split(".mps")[0]
        runs = {}
        for label, kwargs in (("tight", {"tol": args.polish_tol}),
                              ("polish", {"tol": args.tol, "polish": True,
                                          "polish_tol": args.polish_tol})):
            t0 = time.perf_counter()
            res = l2o.solve_lp(lp, **kwargs, **options)
            wall = time.perf_counter() - t0
            kkt = kkt_error(lp, res.x, res.y)
            runs[label] = res
            rows.append({"name": name, "nnz": lp.nnz, "run": label, "status": res.status.name,
                         "iterations": res.iterations,
                         "polish_iterations": res.polish.get("iterations", 0),
                         "rounds": res.polish.get("rounds"),
                         "polish_applied": res.polish.get("applied"), "wall_s": wall,
                         "polish_time_s": res.polish.get("time_s"), **kkt,
                         "tol": kwargs["tol"], "polish_tol": args.polish_tol,
                         "presolve": args.presolve, "device": args.device})
        tight, polished = rows[-2], rows[-1]
        print(f"{name:10s} | {tight['status']:14s} {tight['iterations']:7d} "
              f"{tight['wall_s']:7.2f} | {polished['polish_applied']!s:16s} "
              f"{polished['iterations']:7d} {polished['polish_iterations']:7d} "
              f"{polished['rounds']!s:>6s} {polished['wall_s']:7.2f} "
              f"{polished['rel_primal_residual']:8.1e} {polished['rel_dual_residual']:8.1e} "
              f"{polished['rel_gap']:8.1e}", flush=True)
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    write_rows(args.out, "lp_polish", rows, device=gpu, torch=torch.__version__,
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


if __name__ == "__main__":
    main()
