"""Benchmark of the shared linear algebra (issue: foundation).

1. HVP of L2-regularized logistic regression (m samples x d features, float32): the
   plain torch.func forward-over-reverse product, and the product used inside the
   solvers (``LinearOperator.from_hvp``: linearized once), against the memory floor
   (X read twice at the copy bandwidth measured in the same run).
2. CG on that Hessian and on a small (launch-bound) softmax-regression Hessian:
   time per iteration, eager loop vs CUDA-graph replay.
3. Sparse A v and A^T v (n x n, nnz random columns): torch's own CSR (int64, A^T via
   a transposed view) vs ``LinearOperator.from_sparse`` (int32, cached CSR transpose).

    python benchmarks/linalg.py [--m 100000 --d 4096 --n 1000000 --nnz 10000000] [--out DIR]

Prints a table and writes linalg.json / linalg.csv to --out (default ``benchmarks/out/linalg``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _paths import default_out  # noqa: E402
from _timing import copy_bandwidth_tbs, device_name, time_ms  # noqa: E402

from bilevel.linalg import LinearOperator, cg, hvp  # noqa: E402


def bench_hvp(m: int, d: int, device: str, bandwidth: float) -> list[dict]:
    g = torch.Generator(device=device).manual_seed(0)
    X = torch.randn(m, d, device=device, generator=g)
    y = torch.sign(torch.randn(m, device=device, generator=g))
    w = 0.01 * torch.randn(d, device=device, generator=g)
    v = torch.randn(d, device=device, generator=g)

    def loss(w):
        return F.softplus(-y * (X @ w)).mean() + 1e-3 * (w * w).sum()

    floor_ms = 2 * X.numel() * 4 / (bandwidth * 1e12) * 1e3
    op = LinearOperator.from_hvp(loss, w)
    err = float(torch.linalg.norm(op @ v - hvp(loss, w, v)) / torch.linalg.norm(hvp(loss, w, v)))
    rows = [
        {"case": f"hvp plain jvp(grad) m={m} d={d}", "ms": time_ms(lambda: hvp(loss, w, v))},
        {"case": f"hvp from_hvp product m={m} d={d}", "ms": time_ms(lambda: op @ v)},
        {"case": f"hvp from_hvp build+1 product m={m} d={d}",
         "ms": time_ms(lambda: LinearOperator.from_hvp(loss, w) @ v)},
    ]
    for r in rows:
        r["floor_ms"] = floor_ms
        r["ratio_to_floor"] = r["ms"] / floor_ms
    rows[1]["rel_diff_vs_plain"] = err
    # CG per-iteration time on this Hessian, eager vs graph
    for graph in (False, "auto", True):
        iters = 50
        ms = time_ms(lambda: cg(op, v, tol=0.0, maxiter=iters, cuda_graph=graph),
                     warmup=1, reps=5)
        rows.append({"case": f"cg 50 it logistic m={m} d={d} graph={graph}", "ms": ms,
                     "ms_per_iter": ms / iters, "floor_ms": floor_ms * iters,
                     "ratio_to_floor": ms / (floor_ms * iters)})
    return rows


def bench_small_cg(device: str) -> list[dict]:
    """The MNIST-cleaning Hessian size (5000 x 784 inputs, 785 x 10 weights): launch-bound."""
    g = torch.Generator(device=device).manual_seed(1)
    X = torch.rand(5000, 784, device=device, generator=g)
    labels = torch.randint(0, 10, (5000,), device=device, generator=g)
    weights = torch.sigmoid(torch.randn(5000, device=device, generator=g))
    W = 0.01 * torch.randn(785, 10, device=device, generator=g)
    b = torch.randn(785, 10, device=device, generator=g)

    def inner(W):
        losses = F.cross_entropy(X @ W[:-1] + W[-1], labels, reduction="none")
        return (weights * losses).mean() + 1e-3 * (W * W).sum()

    rows = []
    for graph in (False, "auto", True):
        def solve():
            return cg(LinearOperator.from_hvp(inner, W), b, tol=0.0, maxiter=80,
                      cuda_graph=graph)
        ms = time_ms(solve, warmup=2, reps=7)
        rows.append({"case": f"cg 80 it softmax 5000x784 (incl. linearize) graph={graph}",
                     "ms": ms, "ms_per_iter": ms / 80})
    return rows


def bench_sparse(n: int, nnz: int, device: str, dtype: torch.dtype) -> list[dict]:
    g = torch.Generator(device=device).manual_seed(2)
    per_row = nnz // n
    crow = torch.arange(0, n + 1, device=device, dtype=torch.int64) * per_row
    col = torch.randint(0, n, (n * per_row,), device=device, generator=g)
    col = col.view(n, per_row).sort(dim=1).values.reshape(-1)
    val = torch.randn(n * per_row, device=device, dtype=dtype, generator=g)
    A = torch.sparse_csr_tensor(crow, col, val, size=(n, n))
    v = torch.randn(n, device=device, dtype=dtype, generator=g)
    op = LinearOperator.from_sparse(A)
    At_view = A.t()  # torch's own transpose: a CSC view
    itemsize = torch.finfo(dtype).bits // 8
    tag = str(dtype).replace("torch.", "")

    def minimal_bytes(index_bytes: int) -> int:
        return nnz * (itemsize + index_bytes) + (n + 1) * index_bytes + 2 * n * itemsize

    rows = []
    cases = [
        ("torch CSR int64 A v", lambda: torch.mv(A, v), 8),
        ("torch CSR int64 A^T v (transposed view)", lambda: At_view @ v, 8),
        ("ours int32 A v", lambda: op @ v, 4),
        ("ours int32 A^T v (cached CSR transpose)", lambda: op.rmatvec(v), 4),
    ]
    for name, fn, ib in cases:
        try:
            ms = time_ms(fn, reps=30)
        except RuntimeError as err:  # an op torch does not support on this layout
            rows.append({"case": f"spmv {tag} n={n} nnz={nnz}: {name}", "ms": None,
                         "note": str(err)[:80]})
            continue
        rows.append({"case": f"spmv {tag} n={n} nnz={nnz}: {name}", "ms": ms,
                     "TB_per_s": minimal_bytes(ib) / (ms * 1e-3) / 1e12})
    rows[-1]["max_abs_diff_vs_torch"] = float((op.rmatvec(v) - torch.mv(A.to_dense().T, v)
                                               ).abs().max()) if n <= 20000 else None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--nnz", type=int, default=10_000_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(default_out("linalg")))
    args = parser.parse_args()
    bw = copy_bandwidth_tbs(args.device, gib=1.0 if args.device != "cpu" else 0.1)
    rows = bench_hvp(args.m, args.d, args.device, bw)
    rows += bench_small_cg(args.device)
    for dtype in (torch.float32, torch.float64):
        rows += bench_sparse(args.n, args.nnz, args.device, dtype)
    meta = {"device": device_name(args.device), "torch": torch.__version__,
            "copy_bandwidth_TB_s": bw, "args": vars(args)}
    print(f"# {meta['device']}  torch {meta['torch']}  copy bandwidth {bw:.2f} TB/s")
    print(f"{'case':72s} {'ms':>9s} {'ms/iter':>8s} {'xfloor':>7s} {'TB/s':>6s}")
    for r in rows:
        ms = "-" if r.get("ms") is None else f"{r['ms']:.3f}"
        per = f"{r['ms_per_iter']:.3f}" if "ms_per_iter" in r else ""
        xf = f"{r['ratio_to_floor']:.2f}" if "ratio_to_floor" in r else ""
        tb = f"{r['TB_per_s']:.2f}" if "TB_per_s" in r else ""
        print(f"{r['case'][:72]:72s} {ms:>9s} {per:>8s} {xf:>7s} {tb:>6s}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "linalg.json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    keys = sorted({k for r in rows for k in r})
    with open(os.path.join(args.out, "linalg.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
