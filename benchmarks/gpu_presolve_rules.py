"""The GPU presolve's rules one by one: what each removes, how long it takes, and what it does to
PDHG's iterations.

For every ``*.mps.gz`` / ``*.mps`` in the given folders it runs
:func:`l2o.lp.gpu_presolve.gpu_presolve_lp` on ``--device`` (one warm-up run first) and prints,
per rule of :data:`l2o.lp.gpu_presolve.RULES`, the rows / columns / nonzeros it removed and its
seconds (``--highs``: HiGHS's presolve counts next to them). With ``--pdhg TOL`` it also counts
PDHG iterations to TOL (``l2o.solve_lp`` on ``--solve-device``, float64): ``off`` without
presolve, ``red-base`` and ``red`` the reduced LP alone (to the solver's own criterion) after
the base rules only (fixed columns, free / empty / singleton rows, empty columns) and after all
rules, and ``gpu`` the whole ``solve_lp(presolve="gpu")`` (its postsolved point checked on the
original LP, re-solves included).

    python benchmarks/gpu_presolve_rules.py ../shared/data/lp/large [--only ken-11 fit2p]
        [--device cpu] [--threads 1] [--highs] [--pdhg 1e-4] [--ops] [--json OUT.json]

``--ops`` counts the torch operators (and the host syncs among them) of the presolve and of
one postsolve: on a GPU each is about one kernel launch, their fixed cost. ``--rounds`` prints
the shares of the rows and nonzeros removed after each round (the reductions run to their
fixed point, no threshold) and the rounds ``presolve="auto"``'s thresholds take (it gives up a
reduction far below them: :data:`l2o.lp.gpu_presolve.GIVE_UP_ROUND`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o

BASE_RULES = ("fixed_columns", "empty_and_free_rows", "singleton_rows", "empty_columns")
SHORT = {"fixed_columns": "fixed", "empty_and_free_rows": "empty/free",
         "singleton_rows": "sing-row", "activity_rows": "activity",
         "parallel_rows": "parallel", "singleton_columns": "sing-col",
         "dual_fix": "dual-fix", "empty_columns": "empty-col"}


def _iterations(l2o, lp, tol: float, device: str, presolve) -> str:
    result = l2o.solve_lp(lp, tol=tol, device=device, iteration_limit=200_000, presolve=presolve)
    return str(result.iterations) if result.status.value == "optimal" else result.status.value


# the operators that make the host wait for the device on a GPU (a value read back, a shape
# that depends on the data)
SYNC_OPS = ("aten._local_scalar_dense.default", "aten.nonzero.default",
            "aten.repeat_interleave.Tensor", "aten._unique2.default", "aten.masked_select.default")


def count_ops(run) -> tuple[int, int]:
    """(torch operators dispatched, of which host syncs on a GPU) while ``run()`` runs: the
    fixed cost of the reductions on a GPU is about one kernel launch per operator (their
    arithmetic is microseconds on the large LPs). Counted on any device, the CPU included."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        ops = syncs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.ops += 1
            Counter.syncs += str(func) in SYNC_OPS
            return func(*args, **(kwargs or {}))

    with Counter():
        run()
    return Counter.ops, Counter.syncs


def postsolve_ops(pre) -> tuple[int, int]:
    """:func:`count_ops` of one postsolve of a reduced point (zeros: the work is the same)."""
    if pre.reduced is None:
        return 0, 0
    x = torch.zeros(pre.reduced.num_cols, dtype=torch.float64)
    y = torch.zeros(pre.reduced.num_rows, dtype=torch.float64)
    return count_ops(lambda: pre.postsolve(x, y, x))


def round_shares(lp, device: str) -> list[tuple[float, float]]:
    """(rows, nonzeros) shares removed after each round of ``gpu_presolve_lp`` (no threshold),
    read where each round compacts the entries."""
    from l2o.lp.gpu_rules import Reductions

    shares = []
    compact = Reductions.compact

    def recording(self) -> None:
        compact(self)
        shares.append((1 - int(self.row_alive.sum()) / max(lp.num_rows, 1),
                       1 - self.vals.numel() / max(lp.nnz, 1)))

    from l2o.lp.gpu_presolve import gpu_presolve_lp

    Reductions.compact = recording
    try:
        gpu_presolve_lp(lp, device=device)
    finally:
        Reductions.compact = compact
    return shares


def measure(path: Path, device: str, solve_device: str, highs: bool,
            pdhg_tol: float | None, ops: bool = False, rounds: bool = False) -> dict:
    l2o = import_l2o()
    from l2o.lp.gpu_presolve import gpu_presolve_lp

    lp = l2o.read_lp(path)
    gpu_presolve_lp(lp, device=device)   # warm-up (allocator, kernels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    pre = gpu_presolve_lp(lp, device=device)
    row = {"name": lp.name, "rows": lp.num_rows, "cols": lp.num_cols, "nnz": lp.nnz,
           "outcome": pre.outcome.value, "rounds": pre.rounds,
           "wall_s": time.perf_counter() - start, **pre.report(), "rules": pre.rules}
    if ops:
        row["ops"] = count_ops(lambda: gpu_presolve_lp(lp, device=device))
        row["postsolve_ops"] = postsolve_ops(pre)
    if rounds:
        from l2o.pdhg.presolve import AUTO_MIN_NNZ_REMOVED, AUTO_MIN_ROWS_REMOVED

        row["round_shares"] = round_shares(lp, device)
        auto = gpu_presolve_lp(lp, device=device, min_rows_removed=AUTO_MIN_ROWS_REMOVED,
                               min_nnz_removed=AUTO_MIN_NNZ_REMOVED)
        row["auto_rounds"], row["auto_outcome"] = auto.rounds, auto.outcome.value
    if highs:
        from l2o.lp.presolve import presolve_lp

        hp = presolve_lp(lp)
        row["highs"] = {**hp.report(), "outcome": hp.outcome.value}
    if pdhg_tol is not None:
        row["iters_off"] = _iterations(l2o, lp, pdhg_tol, solve_device, False)
        base = gpu_presolve_lp(lp, device=device, rules=BASE_RULES)
        for key, reduced in (("iters_red_base", base.reduced), ("iters_red", pre.reduced)):
            row[key] = ("-" if reduced is None
                        else _iterations(l2o, reduced, pdhg_tol, solve_device, False))
        row["iters_gpu"] = _iterations(l2o, lp, pdhg_tol, solve_device, "gpu")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--device", default="cpu", help="where the reductions run")
    parser.add_argument("--solve-device", default="cpu", help="where --pdhg solves")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--highs", action="store_true", help="HiGHS presolve's counts too")
    parser.add_argument("--pdhg", type=float, metavar="TOL",
                        help="PDHG iterations to TOL without presolve, on the reduced LPs, and "
                             "with presolve='gpu'")
    parser.add_argument("--only", nargs="*", help="only these LPs (names without suffix)")
    parser.add_argument("--ops", action="store_true",
                        help="torch operators (and host syncs) of the presolve and a postsolve")
    parser.add_argument("--rounds", action="store_true",
                        help="rows / nonzeros shares removed after each round, and the rounds "
                             "presolve='auto' takes")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for folder in args.folders:
        for path in sorted([*folder.glob("*.mps.gz"), *folder.glob("*.mps")]):
            name = path.name.split(".")[0]
            if args.only and name not in args.only:
                continue
            row = measure(path, args.device, args.solve_device, args.highs, args.pdhg,
                          args.ops, args.rounds)
            rows.append(row)
            line = (f"{name:<10} {row['rows']:>6}x{row['cols']:<7} nnz {row['nnz']:>8}  "
                    f"-rows {row['rows_removed']:>6} -cols {row['cols_removed']:>6} "
                    f"-nnz {row['nnz_removed']:>7}  {row['time_s']:.3f} s, "
                    f"{row['rounds']} rounds ({row['outcome']})")
            if args.ops:
                line += (f"  | ops {row['ops'][0]} ({row['ops'][1]} syncs), postsolve "
                         f"{row['postsolve_ops'][0]} ({row['postsolve_ops'][1]} syncs)")
            if "highs" in row:
                h = row["highs"]
                line += (f"  | HiGHS -rows {h['rows_removed']} -cols {h['cols_removed']} "
                         f"-nnz {h['nnz_removed']} {h['time_s']:.3f} s")
            if args.pdhg:
                line += "  | it " + " ".join(f"{key[6:]} {row[key]}" for key in
                                             ("iters_off", "iters_red_base", "iters_red",
                                              "iters_gpu"))
            print(line)
            if args.rounds:
                print("    after each round (rows/nnz removed): " + " ".join(
                    f"{r:.3f}/{z:.3f}" for r, z in row["round_shares"])
                    + f"; auto: {row['auto_rounds']} rounds ({row['auto_outcome']})")
            for rule, r in row["rules"].items():
                if r["rows"] or r["cols"] or r["sides"]:
                    print(f"    {SHORT.get(rule, rule):<11} -rows {r['rows']:>6} -cols {r['cols']:>6} "
                          f"-nnz {r['nnz']:>7} sides {r['sides']:>5}  {r['time_s']:.3f} s")
            sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
