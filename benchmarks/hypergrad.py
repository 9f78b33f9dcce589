"""Hypergradient time to relative error <= 1e-4: ``bilevel.hypergrad`` vs TorchOpt.

Two problems, each at a fixed point (x, y*) with y* from a float64 inner solve:

* ``mnist``: the data-cleaning hypergradient of ``shared/anchors/hypergrad_anchor.py``
  (5,000 per-example weights, W of 785 x 10, x = 0, the anchor's split and objectives);
* ``ijcnn1``: the per-feature regularization hypergradient of
  :func:`bilevel.tasks.hyperparameter_tuning` (22 weights, theta of 23, x = log_reg).

The reference is the exact hypergradient at the same (x, y*): dense float64 Hessian,
Cholesky solve (:func:`bilevel.tasks.reference.exact_hypergradient`). Every variant runs
in float32 at y*.float(), as the anchor does, and is timed the anchor's way (median of
``--reps`` runs after a warm-up, synchronizing before reading the clock). For each
variant a small sweep of its accuracy knob (our ``tol``; TorchOpt's ``maxiter`` and
``rtol``) is timed, and the fastest setting that reaches relative error <= ``--target``
is reported:

* ``ours-cg``, ``ours-minres``: ``bilevel.hypergrad(problem, x, y, method=..., tol=...)``;
* ``ours-cg-warm``: CG warm-started with v0 = the exact solution at a nearby previous
  outer iterate x_prev = x + delta (delta ~ N(0, ``--warm-delta``^2) per entry, y* and v
  recomputed there): what ``bilevel.solve`` passes between outer steps;
* ``ours-cg-graph``, ``ours-cg-warm-graph``: the same with ``cuda_graph=True`` (the whole
  call captured once and replayed, :mod:`bilevel.hypergrad.graph`); the timed calls are
  replays (input copies, replays and the one host sync included); the capturing first
  call is the warm-up, reported as ``first_call_ms``; ``cuda_graph`` = the last call's
  account (a row that ran eagerly says so);
* ``torchopt``: ``torchopt.diff.implicit.custom_root`` with
  ``torchopt.linear_solve.solve_cg`` (the anchor's code), gradient by autograd.

Run:  python benchmarks/hypergrad.py --device cuda     # JSON to benchmarks/out/hypergrad.json
      python benchmarks/hypergrad.py --small            # CPU smoke test on subsets
Extra keyword arguments for our engine: ``--opt check_every=16`` (repeatable).
``--count-ops 1e-4`` counts the aten ops of one call per variant instead (any device: the
launch overhead that dominates small solves on a GPU is per op).
Before/after in one run: ``--baseline bilevel_base`` with an earlier commit's package copied
to ``bilevel_base/`` on the path (``git archive COMMIT bilevel | tar -x``, then rename).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.func import grad

import bilevel
from bilevel.tasks import data_cleaning, hyperparameter_tuning, load_ijcnn1, load_mnist
from bilevel.tasks import reference as R

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out  # noqa: E402

OURS_TOLS = [1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 1e-7]
TORCHOPT_MAXITERS = [10, 20, 40, 60, 80, 100, 120, 160, 200]
TORCHOPT_RTOLS = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 1e-7]


@dataclass
class Case:
    """One hypergradient problem at a fixed point, with its float64 reference."""

    name: str
    problem: bilevel.BilevelProblem  # float32, on the device
    x: torch.Tensor
    y: torch.Tensor
    exact: torch.Tensor  # float64 hypergradient at (x, y)
    v0_warm: torch.Tensor
    info: dict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], torch.Tensor], device: torch.device, reps: int
           ) -> tuple[float, torch.Tensor, float]:
    """Median wall time (s) of fn() over ``reps`` runs after one warm-up; its last output;
    the warm-up call's own time (s; for ``cuda_graph=True`` variants: the capture)."""
    start = time.perf_counter()
    out = fn()
    _sync(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out, first


def _reference(problem64, x64, y64, warm_delta: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Exact hypergradient at (x, y*) and the exact v at a nearby x_prev (warm start)."""
    exact = R.exact_hypergradient(problem64, x64, y64, solve_inner=False)
    gen = torch.Generator().manual_seed(seed)
    x_prev = x64 + warm_delta * torch.randn(x64.shape, generator=gen, dtype=x64.dtype).to(
        x64.device)
    prev = R.exact_hypergradient(problem64, x_prev, y0=y64, tol=1e-9)
    return exact, prev


def mnist_case(device: torch.device, small: bool, warm_delta: float) -> Case:
    split = load_mnist()
    # --small: 500 / 200 rows and 100 central pixels (W of 101 x 10) for a CPU smoke test
    n_train, n_val, cols = (500, 200, slice(300, 400)) if small else (5000, 2000, slice(None))
    args = (split.X_train[:n_train, cols], split.y_train[:n_train], split.X_val[:n_val, cols],
            split.y_val[:n_val])
    problem64 = data_cleaning(*args, n_classes=10, device=device, dtype=torch.float64)
    problem = data_cleaning(*args, n_classes=10, device=device, dtype=torch.float32)
    x64 = problem64.x0
    t0 = time.perf_counter()
    y64 = R.inner_solution(problem64, x64, problem64.y0, method="lbfgs", tol=1e-10)
    exact, prev = _reference(problem64, x64, y64, warm_delta, seed=1)
    return Case("mnist-cleaning", problem, x64.float(), y64.float(), exact.grad,
                prev.v.float(), {"n_x": x64.numel(), "n_y": y64.numel(),
                                 "hessian_eigs": [exact.hessian_min_eig, exact.hessian_max_eig],
                                 "inner_grad_norm": exact.inner_grad_norm,
                                 "reference_s": time.perf_counter() - t0})


def ijcnn1_case(device: torch.device, small: bool, warm_delta: float, log_reg: float) -> Case:
    split = load_ijcnn1()
    n = 2000 if small else None
    args = (split.X_train[:n], split.y_train[:n], split.X_val[:n], split.y_val[:n])
    problem64 = hyperparameter_tuning(*args, log_reg0=log_reg, device=device,
                                      dtype=torch.float64)
    problem = hyperparameter_tuning(*args, log_reg0=log_reg, device=device, dtype=torch.float32)
    x64 = problem64.x0
    t0 = time.perf_counter()
    y64 = R.inner_solution(problem64, x64, problem64.y0, tol=1e-12)
    exact, prev = _reference(problem64, x64, y64, warm_delta, seed=2)
    return Case("ijcnn1-tuning", problem, x64.float(), y64.float(), exact.grad,
                prev.v.float(), {"n_x": x64.numel(), "n_y": y64.numel(), "log_reg": log_reg,
                                 "hessian_eigs": [exact.hessian_min_eig, exact.hessian_max_eig],
                                 "inner_grad_norm": exact.inner_grad_norm,
                                 "reference_s": time.perf_counter() - t0})


def relative_error(h: torch.Tensor, exact: torch.Tensor) -> float:
    h = h.detach().double().to(exact.device)
    return float(torch.linalg.norm(h - exact) / torch.linalg.norm(exact))


def ours_variants(case: Case, opts: dict, library=bilevel, prefix: str = "ours"
                  ) -> list[tuple[str, dict, Callable]]:
    """Our engines over the tolerance sweep; ``library`` may be another copy of the
    package (``--baseline``), timed on the same objectives and data."""
    problem = case.problem
    if library is not bilevel:
        problem = library.BilevelProblem(outer=problem.outer, inner=problem.inner,
                                         x0=problem.x0, y0=problem.y0)
    variants = []
    for method, warm, graph in (("cg", False, False), ("minres", False, False),
                                ("cg", True, False), ("cg", False, True), ("cg", True, True)):
        if graph and library is not bilevel:
            continue  # the baseline copies predate cuda_graph=True
        name = f"{prefix}-{method}" + ("-warm" if warm else "") + ("-graph" if graph else "")
        for tol in OURS_TOLS:
            kw = dict(method=method, tol=tol, **opts)
            if warm:
                kw["v0"] = case.v0_warm
            if graph:
                kw["cuda_graph"] = True

            def run(kw=kw):
                return library.hypergrad(problem, case.x, case.y, **kw)
            variants.append((name, {"tol": tol}, run))
    return variants


def torchopt_variants(case: Case) -> list[tuple[str, dict, Callable]]:
    import torchopt

    f = lambda x, y: case.problem.outer(x, y, None)
    g = lambda x, y: case.problem.inner(x, y, None)
    settings = [{"maxiter": k} for k in TORCHOPT_MAXITERS]
    settings += [{"rtol": r, "maxiter": 1000} for r in TORCHOPT_RTOLS]
    variants = []
    for setting in settings:
        # the anchor's construction: the inner solver returns the known optimum, so only
        # the implicit backward pass (the hypergradient) is timed
        @torchopt.diff.implicit.custom_root(lambda y, xx: grad(g, 1)(xx, y), argnums=1,
                                            solve=torchopt.linear_solve.solve_cg(**setting))
        def solve_inner(y0, xx):
            return case.y

        def run(solve_inner=solve_inner):
            xx = case.x.clone().requires_grad_(True)
            y = solve_inner(case.y, xx)
            return torch.autograd.grad(f(xx, y), xx)[0], None
        variants.append(("torchopt", setting, run))
    return variants


def run_case(case: Case, device: torch.device, reps: int, target: float, opts: dict,
             with_torchopt: bool, baseline=None, only: list[str] | None = None) -> list[dict]:
    rows = []
    variants = ours_variants(case, opts)
    if baseline is not None:
        variants += ours_variants(case, opts, baseline, "base")
    if with_torchopt:
        variants += torchopt_variants(case)
    if only:
        variants = [v for v in variants if v[0] in only]
    for name, setting, fn in variants:
        seconds, (h, info), first = timeit(fn, device, reps)
        row = {"case": case.name, "variant": name, **setting, "ms": 1e3 * seconds,
               "first_call_ms": 1e3 * first, "relerr": relative_error(h, case.exact)}
        if info is not None:
            row.update(iterations=info.iterations, residual=info.residual,
                       converged=info.converged, hvp_count=info.hvp_count)
            if getattr(info, "cuda_graph", None) is not None:
                row["cuda_graph"] = info.cuda_graph  # the timed calls' own account
        row["meets_target"] = row["relerr"] <= target
        rows.append(row)
        print(json.dumps(row), flush=True)  # as it comes: a run cut short keeps its rows
    return rows


# aten ops that only make views (no kernel launch on a GPU)
_VIEW_OPS = {"reshape", "view", "t", "expand", "slice", "select", "as_strided", "detach",
             "alias", "_unsafe_view", "unsqueeze", "squeeze", "transpose", "permute"}


def count_ops(fn: Callable) -> dict:
    """aten ops dispatched by one call of fn (after a warm-up): all, and those that are
    not views (each launches a kernel on a GPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            self.names[name] = self.names.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    fn()
    with Counter() as counter:
        fn()
    names = counter.names
    return {"ops": sum(names.values()),
            "kernel_ops": sum(n for k, n in names.items() if k not in _VIEW_OPS)}


def op_counts(case: Case, opts: dict, baseline, with_torchopt: bool, tol: float) -> list[dict]:
    """Op counts of one call per variant at one accuracy setting (ours/base: ``tol``;
    TorchOpt: rtol = ``tol``, maxiter 1000)."""
    variants = [v for v in ours_variants(case, opts) if v[1]["tol"] == tol]
    if baseline is not None:
        variants += [v for v in ours_variants(case, opts, baseline, "base") if v[1]["tol"] == tol]
    if with_torchopt:
        variants += [v for v in torchopt_variants(case) if v[1].get("rtol") == tol]
    rows = []
    for name, setting, fn in variants:
        row = {"case": case.name, "variant": name, **setting, **count_ops(fn)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def best_rows(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """The fastest row meeting the target for each (case, variant)."""
    best: dict[tuple[str, str], dict] = {}
    for row in rows:
        if not row["meets_target"]:
            continue
        key = (row["case"], row["variant"])
        if key not in best or row["ms"] < best[key]["ms"]:
            best[key] = row
    return best


def print_table(rows: list[dict], target: float) -> dict:
    best = best_rows(rows)
    print(f"\nFastest setting reaching relative error <= {target:g} (median wall time):")
    print(f"{'case':16s} {'variant':18s} {'setting':22s} {'iters':>5s} {'ms':>9s} "
          f"{'relerr':>9s} {'vs torchopt':>11s}")
    summary = {}
    for case in dict.fromkeys(r["case"] for r in rows):
        ref = best.get((case, "torchopt"))
        for variant in dict.fromkeys(r["variant"] for r in rows if r["case"] == case):
            row = best.get((case, variant))
            if row is None:
                closest = min((r for r in rows if r["case"] == case and r["variant"] == variant),
                              key=lambda r: r["relerr"])
                print(f"{case:16s} {variant:18s} {'(target missed)':22s} {'':>5s} "
                      f"{'':>9s} {closest['relerr']:9.2e}")
                continue
            setting = ", ".join(f"{k}={row[k]:g}" for k in ("tol", "maxiter", "rtol")
                                if k in row)
            ratio = row["ms"] / ref["ms"] if ref else math.nan
            iters = str(row.get("iterations", ""))
            print(f"{case:16s} {variant:18s} {setting:22s} {iters:>5s} {row['ms']:9.2f} "
                  f"{row['relerr']:9.2e} {ratio:10.2f}x")
            summary[f"{case}/{variant}"] = {**row, "ratio_vs_torchopt": ratio}
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", default="mnist,ijcnn1")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--target", type=float, default=1e-4)
    parser.add_argument("--warm-delta", type=float, default=0.05)
    parser.add_argument("--ijcnn1-log-reg", type=float, default=-4.0)
    parser.add_argument("--small", action="store_true", help="subsets, for a CPU smoke test")
    parser.add_argument("--no-torchopt", action="store_true")
    parser.add_argument("--opt", action="append", default=[],
                        help="extra keyword for bilevel.hypergrad, e.g. check_every=16")
    parser.add_argument("--out", default=str(default_out("hypergrad.json")),
                        help="JSON file for all rows and the summary (%(default)s)")
    parser.add_argument("--baseline", default=None, metavar="MODULE",
                        help="also time another copy of the library, importable as MODULE "
                             "(e.g. an earlier commit's bilevel/ copied to bilevel_base/), "
                             "as variants base-*, in the same run")
    parser.add_argument("--variants", default=None,
                        help="comma list of variant names to time (default: all), e.g. "
                             "ours-cg,ours-cg-graph,torchopt")
    parser.add_argument("--count-ops", type=float, default=None, metavar="TOL",
                        help="instead of timing, count the aten ops of one call per variant "
                             "at this tolerance (TorchOpt: rtol)")
    args = parser.parse_args(argv)
    baseline = None
    if args.baseline:
        import importlib
        baseline = importlib.import_module(args.baseline)
    device = torch.device(args.device)
    opts = {}
    for item in args.opt:
        key, value = item.split("=", 1)
        opts[key] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    cases = []
    for name in args.cases.split(","):
        if name == "mnist":
            cases.append(mnist_case(device, args.small, args.warm_delta))
        elif name == "ijcnn1":
            cases.append(ijcnn1_case(device, args.small, args.warm_delta, args.ijcnn1_log_reg))
        else:
            raise SystemExit(f"unknown case {name!r} (mnist, ijcnn1)")
    rows = []
    if args.count_ops is not None:
        counts = [r for case in cases for r in op_counts(case, opts, baseline,
                                                         not args.no_torchopt, args.count_ops)]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump({"device": str(device), "torch": torch.__version__,
                       "op_counts": counts}, fh, indent=1)
        return {"op_counts": counts}
    for case in cases:
        print(f"{case.name}: {case.info}", flush=True)
        rows += run_case(case, device, args.reps, args.target, opts, not args.no_torchopt,
                         baseline, args.variants.split(",") if args.variants else None)
    summary = print_table(rows, args.target)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "target": args.target, "opts": opts,
              "cases": {c.name: c.info for c in cases}, "rows": rows, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
