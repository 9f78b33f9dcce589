"""Per-iteration time of the PDHG solve on large LPs, ours vs cuPDLPx, next to the SpMV floor.

    python benchmarks/lp_periter.py --cupdlpx /tmp/cpx/cupdlpx FILE.mps.gz ... [--pagerank 1000000]

Per-iteration time = (T(6000) - T(1000)) / 5000 from two solves with iteration limits 1000 and
6000 (ours ``iteration_limit``, cuPDLPx ``--iter_limit``), presolve off (ours ``--presolve``,
recorded in each row, method "pdhg"), tol 1e-12, so setup and the checks' share are the solver's
own.  T is ours ``LPResult.solve_time`` and cuPDLPx's own
"Runtime (sec)".  Ours runs with ``profile=True``, and ``ours_loop_us`` is the same difference
of the loop's phases alone (the chunks and their checks, ``LPResult.timings``): setup costs that
vary from one solve to the next (seen on the H200: 0.1-0.3 s) cannot disturb it.  Variants of ours are SolverOptions given as ``--variant NAME:key=value,...``.

The SpMV floor of one iteration is the fewest bytes the two products A~ x and A~^T y move (the
values and column indices of A and A^T, their row pointers, each input vector read once and
each output written once) over the device copy bandwidth measured in the same run.  Next to it,
the time of one product of A and of A^T by ``torch.mv`` and by cuSPARSE's CSR_ALG2
(``bilevel.linalg.cusparse``), from replays of a CUDA graph of 20 products.

Writes OUT/periter.csv (one row per instance) and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out
from _timing import copy_bandwidth_tbs, device_name
from lp_variants import parse_variant  # NAME:key=value,... -> solve_lp keywords

LIMITS = (1000, 6000)


def graph_time_us(fn, reps: int = 20, replays: int = 10) -> float:
    """Microseconds per call of fn from replays of a CUDA graph of ``reps`` calls (median)."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    return sorted(times)[len(times) // 2]


def csr_bytes(csr: torch.Tensor) -> int:
    """Bytes of one pass over a CSR matrix and its input and output vectors."""
    m, n = csr.shape
    crow, col, val = csr.crow_indices(), csr.col_indices(), csr.values()
    return (crow.numel() * crow.element_size() + col.numel() * col.element_size()
            + val.numel() * val.element_size() + (m + n) * val.element_size())


def spmv_micro(p) -> dict[str, float]:
    try:
        from bilevel.linalg.cusparse import csr_spmv
    except ImportError:              # an older checkout, timed for comparison
        csr_spmv = lambda *args: None

    out = {}
    for name, A in (("A", p.op.csr), ("At", p.op.csr_t)):
        m, n = A.shape
        x = torch.randn(n, dtype=A.dtype, device=A.device)
        y = torch.empty(m, dtype=A.dtype, device=A.device)
        out[f"torch_{name}_us"] = graph_time_us(lambda A=A, x=x, y=y: torch.mv(A, x, out=y))
        ref = y.clone()
        spmv = csr_spmv(A, x, y)
        if spmv is None:
            out[f"alg2_{name}_us"] = float("nan")
            continue
        y.fill_(float("nan"))
        spmv()
        torch.cuda.synchronize()
        err = float((y - ref).norm() / ref.norm().clamp_min(1e-300))
        if not err < 1e-12:
            raise RuntimeError(f"cuSPARSE ALG2 differs from torch.mv on {name}: {err:.2e}")
        out[f"alg2_{name}_us"] = graph_time_us(spmv)
    return out


# --presolve value -> solve_lp's presolve= (as ``l2o solve --presolve``)
PRESOLVE = {"auto": "auto", "on": True, "off": False}


def ours(lp, limit: int, options: dict, presolve: str = "off") -> tuple[float, int]:
    """(solve_time, iterations) of solve_lp with PDHG (``method="pdhg"``: HiGHS has no PDHG
    iterations to time) and ``presolve`` ("off", the protocol's default: with it the reduced LP
    is timed, a smaller one; its presolve time cancels out of T(6000) - T(1000))."""
    import l2o

    r = l2o.solve_lp(lp, tol=1e-12, device="cuda", iteration_limit=limit, method="pdhg",
                     presolve=PRESOLVE[presolve], profile=True, **options)
    return r.solve_time, r.iterations, loop_seconds(r.timings)


def loop_seconds(timings: dict[str, float]) -> float:
    """Seconds of the solve's loop alone (``profile=True`` phases: the chunks of iterations and
    their checks), without the setup, the graph capture and the result: a per-iteration figure
    that one-off setup costs cannot disturb."""
    return timings.get("first_check", 0.0) + timings.get("iterations", 0.0)


def cupdlpx(binary: str, path: str, limit: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as d:
        cmd = [binary, "-q", "--eps_opt", "1e-12", "--eps_feas", "1e-12", "--iter_limit",
               str(limit), "--no_presolve", path, d]
        subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        name = os.path.basename(path).split(".")[0]
        summary = Path(d, name + "_summary.txt")
        if not summary.exists():
            return float("nan"), 0
        text = summary.read_text()
        get = lambda k: (re.search(re.escape(k) + r":\s*(\S+)", text) or [None, "nan"])[1]
        return float(get("Runtime (sec)")), int(float(get("Iterations Count")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--cupdlpx", default=None, help="the cuPDLPx binary (omit: ours only)")
    ap.add_argument("--pagerank", type=int, nargs="*", default=[],
                    help="PageRank LPs of these node counts (ours only unless --pagerank-mps)")
    ap.add_argument("--pagerank-mps", action="store_true",
                    help="also write PageRank LPs as MPS for cuPDLPx (slow above 1e6 nodes)")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:key=value,... SolverOptions of an extra variant of ours")
    ap.add_argument("--presolve", choices=tuple(PRESOLVE), default="off",
                    help="solve_lp's presolve for ours (default off, as the protocol and "
                         "cuPDLPx's --no_presolve here); recorded in each row")
    ap.add_argument("--out", default=str(default_out("periter")))
    args = ap.parse_args()

    import l2o
    from l2o.datasets import generate
    from l2o.pdhg import prepare

    variants = [("ours", {})] + [parse_variant(v) for v in args.variant]
    os.makedirs(args.out, exist_ok=True)
    bandwidth = copy_bandwidth_tbs("cuda")
    print(f"# {device_name('cuda')}, torch {torch.__version__}, copy bandwidth "
          f"{bandwidth:.2f} TB/s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          flush=True)
    instances = [(Path(f).name.split(".")[0], f) for f in args.files]
    instances += [(f"pagerank_{n:.0e}".replace("+0", ""), n) for n in args.pagerank]
    warm = l2o.load_example("afiro")
    ours(warm, 100, {})                                    # CUDA context, Triton, cuSPARSE
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in instances:
            if isinstance(source, int):
                lp = generate("pagerank", nodes=source, seed=0)
                path = None
                if args.pagerank_mps and args.cupdlpx:
                    path = os.path.join(tmp, f"{name}.mps")
                    l2o.write_lp(lp, path)
            else:
                lp, path = l2o.read_lp(source), source
            row = {"name": name, "rows": lp.num_rows, "cols": lp.num_cols, "nnz": lp.nnz,
                   "method": "pdhg", "presolve": args.presolve}
            p = prepare(lp, device="cuda").scaled
            floor_bytes = csr_bytes(p.op.csr) + csr_bytes(p.op.csr_t)
            row["floor_us"] = floor_bytes / (bandwidth * 1e12) * 1e6
            row.update(spmv_micro(p))
            del p
            for label, options in variants:
                (t1, _, l1), (t2, it2, l2) = (ours(lp, k, options, args.presolve)
                                              for k in LIMITS)
                row[f"{label}_us"] = (t2 - t1) / (LIMITS[1] - LIMITS[0]) * 1e6
                row[f"{label}_loop_us"] = (l2 - l1) / (LIMITS[1] - LIMITS[0]) * 1e6
                row[f"{label}_iters"] = it2
            if args.cupdlpx and path is not None:
                (t1, _), (t2, it2) = (cupdlpx(args.cupdlpx, path, k) for k in LIMITS)
                row["cupdlpx_us"] = (t2 - t1) / (LIMITS[1] - LIMITS[0]) * 1e6
                row["cupdlpx_iters"] = it2
            rows.append(row)
            cells = " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in row.items())
            print(cells, flush=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(os.path.join(args.out, "periter.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    print("\n| instance | nnz | floor us | " + " | ".join(f"{v} us | {v} loop us"
                                                       for v, _ in variants)
          + " | cuPDLPx us | ratio | torch A+At us | ALG2 A+At us |")
    print("|---" * (7 + 2 * len(variants)) + "|")
    for row in rows:
        ratio = row.get("ours_us", float("nan")) / row.get("cupdlpx_us", float("nan"))
        print(f"| {row['name']} | {row['nnz']} | {row['floor_us']:.1f} | "
              + " | ".join(f"{row[f'{v}_us']:.1f} | {row[f'{v}_loop_us']:.1f}"
                           for v, _ in variants)
              + f" | {row.get('cupdlpx_us', float('nan')):.1f} | {ratio:.2f} | "
              f"{row['torch_A_us'] + row['torch_At_us']:.1f} | "
              f"{row['alg2_A_us'] + row['alg2_At_us']:.1f} |")


if __name__ == "__main__":
    main()
