"""Where one PDHG iteration's time goes on CUDA: kernels, gaps between them, the check.

    python benchmarks/lp_profile.py [--pagerank 1000000 ...] FILE.mps.gz ...

For each LP (scaled as ``solve_lp`` scales it, the iteration plan ``fused="auto"`` picks):
  * ``iter_us``: one iteration from replays of a CUDA graph of 64 iterations without stores
    (the solver's steady state between checks);
  * ``kernels_us``: the sum of the kernel durations of one such iteration, from the CUDA
    profiler (CUPTI) over eager iterations, and each kernel's mean duration;
    ``iter_us - kernels_us`` is what the graph spends between kernels;
  * ``check_us``, ``fused_check_us``: one replay of the graph of the check, torch
    (``device_statistics``) and Triton (``l2o.pdhg.fused_check``);
  * ``spmv_us``: A~ x and A~^T y alone (torch.mv, graph of 20 products).

Prints one JSON line per LP and writes OUT/profile.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out
from lp_periter import graph_time_us

CHUNK = 64


def profile_lp(lp, name: str, spmv_variants: bool = False) -> dict:
    from l2o.pdhg import fused
    from l2o.pdhg import iteration as S
    from l2o.pdhg.fused_check import make_fused_check
    from l2o.pdhg.options import SPARSE_PRODUCTS
    from l2o.pdhg.scaling import scale_lp
    from l2o.pdhg.statistics import device_statistics
    from l2o.pdhg.termination import TerminationData

    p = scale_lp(lp, device="cuda", dtype=torch.float64)
    m, n = p.shape
    z = lambda k: torch.zeros(k, dtype=torch.float64, device="cuda")
    s = S.IterationState.init(p, z(n), z(m))
    s.set_steps(p, 0.998, 1.0)
    s.fused_plan = fused.make_plan(p, s, "auto")

    def chunk() -> None:
        for i in range(CHUNK):
            S.halpern_iteration(p, s, last=i == CHUNK - 1)

    iter_us = graph_time_us(chunk, reps=1, replays=20) / CHUNK

    t = TerminationData.build(p)
    check_us = graph_time_us(lambda: device_statistics(p, t, s), reps=1, replays=20)
    fused = make_fused_check(p, t, s)
    fused_check_us = (graph_time_us(lambda: fused.statistics(p, t, s), reps=1, replays=20)
                      if fused is not None else float("nan"))

    xs, ys = torch.rand(n, dtype=torch.float64, device="cuda"), z(m) + 1.0
    spmv_a = graph_time_us(lambda: torch.mv(p.op.csr, xs))
    spmv_at = graph_time_us(lambda: torch.mv(p.op.csr_t, ys))

    for _ in range(3):
        S.halpern_iteration(p, s, last=False)
    kernels = kernel_times(lambda: S.halpern_iteration(p, s, last=False))
    row = {"name": name, "m": m, "n": n, "nnz": int(p.op.csr.values().numel()),
           "plan": "spmv" if s.fused_plan.spmv else "elementwise",
           "iter_us": round(iter_us, 2),
           "kernels_us": round(sum(us for us, _ in kernels.values()), 2),
           "check_us": round(check_us, 1), "fused_check_us": round(fused_check_us, 1),
           "spmv_a_us": round(spmv_a, 2), "spmv_at_us": round(spmv_at, 2),
           "kernels": kernels}
    if spmv_variants:
        row["spmv"] = spmv_variants_table(p)
        for products in SPARSE_PRODUCTS:
            s.fused_plan = fused.make_plan(p, s, "elementwise", products)
            row[f"iter_us_elementwise_{products}"] = round(
                graph_time_us(chunk, reps=1, replays=20) / CHUNK, 2)
            row[f"kernels_{products}"] = kernel_times(
                lambda: S.halpern_iteration(p, s, last=False))
    return row


def kernel_times(fn, reps: int = 20) -> dict[str, tuple[float, int]]:
    """{kernel name: (microseconds per call of fn, launches per call)} from the CUDA profiler."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    kernels = {}
    for avg in prof.key_averages():
        total = getattr(avg, "device_time_total", 0.0) or getattr(avg, "cuda_time_total", 0.0)
        if avg.device_type == torch.autograd.DeviceType.CUDA and total > 0:
            kernels[avg.key[:60]] = (round(total / reps, 2), avg.count // reps)
    return kernels


def spmv_variants_table(p) -> dict:
    """A~ x and A~^T y by torch.mv and by cuSPARSE CSR_ALG1 / CSR_ALG2 analysed once: graph
    time per product, its kernels, and the largest difference from torch.mv."""
    from bilevel.linalg.cusparse import CsrSpMV

    out = {}
    for which, A in (("a", p.op.csr), ("at", p.op.csr_t)):
        x = torch.rand(A.shape[1], dtype=A.dtype, device=A.device)
        reference = torch.mv(A, x)
        for name in ("torch", "alg1", "alg2"):
            y = torch.zeros(A.shape[0], dtype=A.dtype, device=A.device)
            try:
                fn = ((lambda A=A, x=x, y=y: torch.mv(A, x, out=y)) if name == "torch"
                      else CsrSpMV(A, x, y, algorithm=name))
                us = graph_time_us(fn)
                out[f"{which}_{name}"] = {"us": round(us, 2), "kernels": kernel_times(fn),
                                          "max_diff": float((y - reference).abs().max())}
            except Exception as exc:  # noqa: BLE001 - report the variant that fails
                out[f"{which}_{name}"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--pagerank", type=int, action="append", default=[],
                    help="a PageRank LP of this many nodes (repeatable)")
    ap.add_argument("--spmv-variants", action="store_true",
                    help="also time A x and A^T y by torch.mv and cuSPARSE ALG1/ALG2")
    ap.add_argument("--out", default=str(default_out("profile")))
    args = ap.parse_args()
    import l2o
    from l2o.datasets import generate

    l2o.solve_lp(l2o.load_example("afiro"), device="cuda")   # context, kernels compiled
    rows = []
    sources = [(Path(f).name.split(".")[0], f) for f in args.files]
    sources += [(f"pagerank_{n}", n) for n in args.pagerank]
    for name, source in sources:
        lp = (generate("pagerank", nodes=source, seed=0) if isinstance(source, int)
              else l2o.read_lp(source))
        try:
            row = profile_lp(lp, name, args.spmv_variants)
        except Exception as exc:  # noqa: BLE001 - report and go on to the next LP
            traceback.print_exc()
            row = {"name": name, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
