"""Per-iteration time of the PDHG iteration: torch ops vs the Triton plans (l2o.pdhg.fused).

    PYTHONPATH=.:.devdata/pdhg/stub python benchmarks/lp_fused_micro.py [--instances ...]

For each converted instance (benchmarks/lp_suite.py convert): the row statistics of A~, the plan
``fused="auto"`` picks, and, per mode (torch, "elementwise", "spmv"), the time of one iteration
from replays of a CUDA graph of 64 iterations (no checks), then solve_lp to 1e-4 (wall time and
iterations) with that mode. The rows go to ``--out`` (default
``benchmarks/out/lp_fused_micro.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lp_suite as B
from _paths import default_out  # noqa: E402

MODES = (False, "elementwise", "spmv")


def replay_time(S, p, mode, chunk: int = 64, replays: int = 20) -> float:
    """Seconds per iteration of a captured graph of ``chunk`` iterations (steady state)."""
    from l2o.pdhg import fused
    n, m = p.shape[1], p.shape[0]
    z = lambda k: torch.zeros(k, dtype=torch.float64, device="cuda")
    s = S.IterationState.init(p, z(n), z(m))
    s.set_steps(p, 0.998, 1.0)
    s.fused_plan = fused.make_plan(p, s, mode)
    for _ in range(3):
        S.halpern_iteration(p, s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(chunk):
            S.halpern_iteration(p, s)
    g.replay()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(replays):
        g.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / (chunk * replays)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".devdata/pdhg")
    ap.add_argument("--instances", nargs="*")
    ap.add_argument("--out", default=str(default_out("lp_fused_micro.json")))
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    l2o = B.import_l2o()
    from l2o.pdhg import fused
    from l2o.pdhg import iteration as S
    from l2o.pdhg.scaling import scale_lp
    names = args.instances or list(B.PAGERANK) + B.LARGE + B.NETLIB
    warm, _ = B.load(l2o, Path(args.data) / "afiro.pt")
    t0 = time.perf_counter()
    l2o.solve_lp(warm, tol=1e-4, device="cuda")        # CUDA context + Triton compile/load
    print(f"first solve (CUDA context, kernels compiled or loaded): "
          f"{time.perf_counter() - t0:.2f} s", flush=True)
    rows = []
    for name in names:
        lp, _ = B.load(l2o, Path(args.data) / f"{name}.pt")
        p = scale_lp(lp, device="cuda", dtype=torch.float64)
        (mean_a, max_a), (mean_at, max_at) = fused._row_stats(p.op.csr), \
            fused._row_stats(p.op.csr_t)
        s = S.IterationState.init(p, torch.zeros(p.shape[1], dtype=torch.float64, device="cuda"),
                                  torch.zeros(p.shape[0], dtype=torch.float64, device="cuda"))
        auto = fused.make_plan(p, s, "auto")
        row = {"name": name, "m": p.shape[0], "n": p.shape[1], "nnz": lp.nnz,
               "row_mean_max": [round(mean_a, 1), max_a], "col_mean_max": [round(mean_at, 1), max_at],
               "auto": "spmv" if auto.spmv else "elementwise"}
        for mode in MODES:
            key = str(mode)
            row[f"iter_us_{key}"] = round(replay_time(S, p, mode) * 1e6, 2)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = l2o.solve_lp(lp, tol=args.tol, device="cuda", fused=mode, time_limit=20)
            row[f"solve_s_{key}"] = round(time.perf_counter() - t0, 4)
            row[f"it_{key}"] = res.iterations
            row[f"status_{key}"] = res.status.name
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
