"""Per-iteration time of CG's vector work: torch ops vs the Triton forms (bilevel.linalg.fused).

    PYTHONPATH=. python benchmarks/cg_fused_micro.py [--sizes 23,7850,101770,1000000]

For each size n and dtype, CG on a diagonal SPD operator (one elementwise kernel per product,
the same in every form) is recorded as a CUDA graph of ``--chunk`` iterations (the tolerance
is 0: every iteration does work) and replayed; the time per iteration is reported for the
torch form, the form ``cg`` picks ("auto"), and each fused form forced: one program holding
the vectors in registers ("one-program", n <= 8192 only) and three kernels of many programs
("many").  That tells where ``ONE_PROGRAM_MAX`` of :mod:`bilevel.linalg.fused` belongs.  The
rows go to ``--out`` (default ``benchmarks/out/cg_fused_micro.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out

from bilevel.linalg import as_operator
from bilevel.linalg import fused as F
from bilevel.linalg import tree as T
from bilevel.linalg.solvers import cg_iteration

# form -> (fused, thresholds forced on bilevel.linalg.fused)
FORMS = {
    "torch": (False, {}),
    "auto": (None, {}),
    "one-program": (True, {"ONE_PROGRAM_MAX": 1 << 13}),
    "many": (True, {"ONE_PROGRAM_MAX": 0}),
}


@contextmanager
def thresholds(values: dict):
    saved = {k: getattr(F, k) for k in values}
    for k, v in values.items():
        setattr(F, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(F, k, v)


def per_iteration_us(n: int, dtype: torch.dtype, form: str, chunk: int, replays: int) -> float:
    """Microseconds per CG iteration, from replays of a graph of ``chunk`` iterations."""
    fused, forced = FORMS[form]
    gen = torch.Generator().manual_seed(0)
    d = (1.0 + 99.0 * torch.rand(n, generator=gen, dtype=torch.float64)).to(dtype).cuda()
    b = torch.randn(n, generator=gen, dtype=torch.float64).to(dtype).cuda()
    op = as_operator(lambda v: d * v)
    with thresholds(forced):
        if fused:
            assert F._compiled(n, dtype, b.device), "the fused kernels did not compile"
        it = cg_iteration(op, b, None, 0.0, T.norm(b), fused=fused)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(stream):
            s = it.body(op, it.state)  # warm-up (cuBLAS, the kernels)
            with torch.cuda.graph(graph, stream=stream):
                for _ in range(chunk):
                    s = it.body(op, s)
        torch.cuda.current_stream().wait_stream(stream)
        graph.replay()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
    return start.elapsed_time(end) * 1e3 / (replays * chunk)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="23,1024,2048,4096,7850,101770,1000000")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--out", default=str(default_out("cg_fused_micro.json")))
    args = ap.parse_args(argv)
    if not F.available("cuda") or not torch.cuda.is_available():
        raise SystemExit("cg_fused_micro needs CUDA and Triton")
    rows = []
    for dtype in [getattr(torch, name) for name in args.dtypes.split(",")]:
        for n in [int(v) for v in args.sizes.split(",")]:
            row = {"n": n, "dtype": str(dtype).removeprefix("torch.")}
            for form in FORMS:
                if form == "one-program" and n > 1 << 13:
                    continue
                row[form] = round(per_iteration_us(n, dtype, form, args.chunk, args.replays), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
