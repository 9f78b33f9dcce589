"""Iterations to a tolerance per variant of the solver's settings (CPU, float64, one thread).

    python benchmarks/lp_variants.py --tol 1e-8 --variant base: \
        --variant anchor:restart.anchor_error=NEW_ANCHOR --variant nec05:restart.necessary=0.5 \
        --variant w4:primal_weight.initial=4 rail516 ken-11 /path/to/afiro.mps.gz

Iteration counts of PDHG hardly depend on the device (a CUDA solve and a CPU solve of the same
settings take the same iterations), so restart rules, step sizes and scaling can be compared
here, one solve at a time (``--device cuda``: the same on a GPU, where 1e-8 on the large LPs
takes seconds instead of minutes), presolve off (``--presolve auto``: the solver's default presolve, the
iterations those of the reduced LP).  A variant is ``NAME:key=value,...`` of
:class:`l2o.pdhg.SolverOptions`; ``restart.FIELD=value`` sets a field of
:class:`l2o.pdhg.restart.RestartParams` (enum fields by member name, e.g.
``restart.anchor_error=NEW_ANCHOR``), ``primal_weight.FIELD=value`` one of
:class:`l2o.pdhg.restart.PrimalWeightParams`.  An instance is a path or the name of an LP in
``--data`` (default ``../shared/data/lp/large`` of the main checkout).  Appends one JSON line per solve to OUT (default
``benchmarks/out/lp_variants.jsonl``) and prints each; ``--table`` prints the table of a file
of such lines with the geometric mean of each variant's iterations over the first variant's
(on the LPs both solve).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _l2o_import import import_l2o
from _paths import append_row, default_out

LARGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "lp" / "large"


def parse_variant(text: str) -> tuple[str, dict]:
    """(name, solve_lp keyword arguments) of ``NAME:key=value,...`` (module docstring)."""
    from l2o.pdhg.restart import PrimalWeightParams, RestartParams

    name, _, rest = text.partition(":")
    options: dict = {}
    nested = {"restart": RestartParams, "primal_weight": PrimalWeightParams}
    parts: dict[str, dict] = {option: {} for option in nested}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        option, dot, field = key.partition(".")
        if dot and option in nested:
            default = {f.name: f for f in dataclasses.fields(nested[option])}[field].default
            parts[option][field] = (type(default)[value] if isinstance(default, enum.Enum)
                                    else float(value))
            continue
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        options[key] = {"True": True, "False": False}.get(value, value)
    for option, fields in parts.items():
        if fields:
            options[option] = nested[option](**fields)
    return name, options


def table(path: Path) -> None:
    """The markdown table of a file of JSON lines, and each variant's geometric mean."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    counts: dict[str, dict[str, int | None]] = {}
    settings = {(r["tol"], r.get("presolve", "off")) for r in rows}
    for r in rows:     # one row per LP, or per LP, tolerance and presolve when the file mixes them
        key = (r["lp"] if len(settings) == 1
               else f"{r['lp']} {r['tol']:g} {r.get('presolve', 'off')}")
        counts.setdefault(key, {})[r["variant"]] = (r["iterations"] if r["status"] == "OPTIMAL"
                                                    else None)
    cell = lambda lp, v: ("" if v not in counts[lp] else
                          str(counts[lp][v]) if counts[lp][v] is not None else "not solved")
    print("| LP | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    for lp in counts:
        print(f"| {lp} | " + " | ".join(cell(lp, v) for v in variants) + " |")
    base = variants[0]
    for v in variants[1:]:
        both = [lp for lp, c in counts.items() if c.get(v) and c.get(base)]
        lost = [lp for lp, c in counts.items() if v in c and c.get(base) and not c[v]]
        won = [lp for lp, c in counts.items() if base in c and c.get(v) and not c[base]]
        if both:
            ratios = {lp: counts[lp][v] / counts[lp][base] for lp in both}
            mean = math.exp(sum(map(math.log, ratios.values())) / len(both))
            worst = max(ratios, key=ratios.get)
            print(f"{v} / {base}: geometric mean {mean:.3f} over {len(both)} LPs, "
                  f"worst {worst} {ratios[worst]:.2f}; solved by {base} alone: "
                  f"{', '.join(lost) or 'none'}; by {v} alone: {', '.join(won) or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="*")
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--iteration-limit", type=int, default=400_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warmup", action="store_true",
                    help="solve the first LP once, untimed, with the run's presolve, before the "
                         "rest (Triton's JIT, CUDA's lazy setup, the GPU presolve's first "
                         "kernels: the first timed solve would pay them)")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds per solve")
    ap.add_argument("--presolve", choices=("off", "auto"), default="off",
                    help="off: presolve=False; auto: the default presolve (method pdhg)")
    ap.add_argument("--data", type=Path, default=LARGE, help="folder of NAME.mps.gz")
    ap.add_argument("--out", type=Path, default=default_out("lp_variants.jsonl"))
    ap.add_argument("--table", type=Path, default=None, help="print the table of this file")
    args = ap.parse_args()
    if args.table is not None:
        table(args.table)
        return
    l2o = import_l2o()
    torch.set_num_threads(1)
    variants = [parse_variant(text) for text in args.variant or ["base:"]]
    if args.warmup and args.instances:
        path = Path(args.instances[0])
        path = path if "/" in args.instances[0] else args.data / f"{args.instances[0]}.mps.gz"
        l2o.solve_lp(l2o.read_lp(str(path)), tol=1e-4, device=args.device, method="pdhg",
                     presolve="auto" if args.presolve == "auto" else False,
                     iteration_limit=1000)
    for instance in args.instances:     # each LP read once; a cut-off run loses whole LPs
        path = Path(instance) if "/" in instance else args.data / f"{instance}.mps.gz"
        lp = l2o.read_lp(str(path))
        for name, options in variants:
            start = time.perf_counter()
            r = l2o.solve_lp(lp, tol=args.tol, device=args.device, method="pdhg",
                             presolve="auto" if args.presolve == "auto" else False,
                             iteration_limit=args.iteration_limit, time_limit=args.time_limit,
                             **options)
            row = {"variant": name, "lp": path.name.split(".")[0], "tol": args.tol,
                   "presolve": args.presolve, "device": args.device,
                   "status": r.status.name, "iterations": r.iterations,
                   "solve_time": round(r.solve_time, 4),       # the solver's clock, setup in
                   "seconds": round(time.perf_counter() - start, 1)}
            append_row(args.out, row)


if __name__ == "__main__":
    main()
