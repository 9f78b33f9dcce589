"""Hypergradient time to relative error <= 1e-4: ``bilevel.hypergrad`` vs TorchOpt.

Problems (``--cases``), each at a fixed point (x, y*) with y* from a float64 inner solve:

* ``mnist``: the data-cleaning hypergradient of ``shared/anchors/hypergrad_anchor.py``
  (5,000 per-example weights, W of 785 x 10, x = 0, the anchor's split and objectives);
* ``ijcnn1``: the per-feature regularization hypergradient of
  :func:`bilevel.tasks.hyperparameter_tuning` (22 weights, theta of 23, x = log_reg);
* ``mlp``: MNIST cleaning with a 2-layer tanh MLP (784-128-10, parameters a dict; x = 0,
  y an inner optimum by float64 L-BFGS), against the damped float64 reference
  (H + lam I) v = grad_y f with lam = 1e-3 lambda_max (MINRES to 1e-11, CG as a
  cross-check); every engine solves that same damped system (ours ``ridge=lam``, TorchOpt
  ``solve_cg(ridge=lam)``), and the fastest setting is reported at each of
  ``--mlp-targets``.

The reference is the exact hypergradient at the same (x, y*): dense float64 Hessian,
Cholesky solve (:func:`bilevel.tasks.reference.exact_hypergradient`). Every variant runs
in float32 at y*.float(), as the anchor does, and is timed the anchor's way (median of
``--reps`` runs after a warm-up, synchronizing before reading the clock). For each
variant a small sweep of its accuracy knob (our ``tol``; TorchOpt's ``maxiter`` and
``rtol``) is timed, and the fastest setting that reaches relative error <= ``--target``
is reported:

* ``ours-cg``, ``ours-minres``: ``bilevel.hypergrad(problem, x, y, method=..., tol=...)``
  (the default ``cuda_graph="auto"``: the warm-up call is eager, the first timed call
  captures, the median is a replay); ``ours-cg-eager``: ``cuda_graph=False``;
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

The default-call suite (``--suites default``; mnist, ijcnn1) measures what a user gets
without knowing about CUDA graphs: ``bilevel.hypergrad(problem, x, y, tol=tol)``, only
``tol`` set, on a fresh problem object, called ``--calls`` times in a row at changing x
(cycling through ``--points`` points x + delta N(0, I), each with its own y*(x) and exact
reference), timed as the mean over the calls with the first call and the automatic
capture included (``ours-default``); TorchOpt under the same protocol
(``torchopt-default``); the largest relative error over the calls decides the target.

Run:  python benchmarks/hypergrad.py --device cuda     # JSON to benchmarks/out/hypergrad.json
      python benchmarks/hypergrad.py --small            # CPU smoke test on subsets
The items of issue 11 on a GPU (one command, from the repository root):
      PYTHONPATH=. python benchmarks/hypergrad.py --device cuda --cases ijcnn1,mnist,mlp \
        --suites default,sweep --variants ours-cg,ours-cg-eager,ours-cg-graph,torchopt \
        --reps 5 --out benchmarks/out/hypergrad_nn.json
      followed by the end-to-end MLP run of ``examples/data_cleaning.py --hidden 128``.
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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.func import grad

import bilevel
from bilevel.tasks import data_cleaning, hyperparameter_tuning, load_ijcnn1, load_mnist
from bilevel.tasks import reference as R

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out

OURS_TOLS = [1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 1e-7]
TORCHOPT_MAXITERS = [10, 20, 40, 60, 80, 100, 120, 160, 200]
TORCHOPT_RTOLS = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 1e-7]


@dataclass
class Case:
    """One hypergradient problem at a fixed point, with its float64 reference."""

    name: str
    problem: bilevel.BilevelProblem  # float32, on the device
    x: torch.Tensor
    y: torch.Tensor  # (a dict for the MLP)
    exact: torch.Tensor  # float64 hypergradient at (x, y)
    v0_warm: torch.Tensor | None
    info: dict
    # (x64, y64 start) -> (y*(x) float64, exact hypergradient float64): for moving points
    reference_at: Callable | None = None
    x64: torch.Tensor | None = None
    y64: torch.Tensor | None = None
    options: dict = field(default_factory=dict)  # for every engine (the MLP: its ridge)


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

    def reference_at(x, y_start):
        y = R.inner_solution(problem64, x, y_start, method="lbfgs", tol=1e-10)
        return y, R.exact_hypergradient(problem64, x, y, solve_inner=False,
                                        eigenvalues_up_to=0).grad
    return Case("mnist-cleaning", problem, x64.float(), y64.float(), exact.grad,
                prev.v.float(), {"n_x": x64.numel(), "n_y": y64.numel(),
                                 "hessian_eigs": [exact.hessian_min_eig, exact.hessian_max_eig],
                                 "inner_grad_norm": exact.inner_grad_norm,
                                 "reference_s": time.perf_counter() - t0},
                reference_at, x64, y64)


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

    def reference_at(x, y_start):
        y = R.inner_solution(problem64, x, y_start, tol=1e-12)
        return y, R.exact_hypergradient(problem64, x, y, solve_inner=False).grad
    return Case("ijcnn1-tuning", problem, x64.float(), y64.float(), exact.grad,
                prev.v.float(), {"n_x": x64.numel(), "n_y": y64.numel(), "log_reg": log_reg,
                                 "hessian_eigs": [exact.hessian_min_eig, exact.hessian_max_eig],
                                 "inner_grad_norm": exact.inner_grad_norm,
                                 "reference_s": time.perf_counter() - t0},
                reference_at, x64, y64)


def mlp_case(device: torch.device, small: bool, hidden: int) -> Case:
    """MNIST hyper-cleaning with a 2-layer tanh MLP (784-hidden-10, parameters a dict):
    x = 0 (every weight 1/2), y an inner optimum by float64 L-BFGS from the seeded
    initialization, and the reference hypergradient of the damped system
    (H + lam I) v = grad_y f, lam = 1e-3 lambda_max(H), solved in float64 by MINRES to a
    relative residual of 1e-11 (and by CG, as a cross-check).  Every engine is timed on
    that same damped system (ours: ``ridge=lam``; TorchOpt: ``solve_cg(ridge=lam)``)."""
    from bilevel.hypergrad.stepsize import inner_lambda_max
    from bilevel.inner import minimize

    split = load_mnist()
    # --small: 200 / 100 rows, 50 central pixels, at most 8 hidden units (a CPU smoke test)
    n_train, n_val, cols = (200, 100, slice(350, 400)) if small else (5000, 2000, slice(None))
    hidden = min(hidden, 8) if small else hidden
    args = (split.X_train[:n_train, cols], split.y_train[:n_train], split.X_val[:n_val, cols],
            split.y_val[:n_val])
    problem64 = data_cleaning(*args, n_classes=10, hidden=hidden, device=device,
                              dtype=torch.float64)
    problem = data_cleaning(*args, n_classes=10, hidden=hidden, device=device,
                            dtype=torch.float32)
    x64 = problem64.x0
    t0 = time.perf_counter()
    g64 = lambda y: problem64.inner(x64, y, None)
    y64 = minimize(g64, problem64.y0, method="lbfgs", tol=1e-9, max_iter=10 if small else 60,
                   strict=False)
    inner_norm = float(torch.sqrt(sum((t * t).sum() for t in grad(g64)(y64).values())))
    lam_max, _ = inner_lambda_max(lambda x, y: problem64.inner(x, y, None), x64, y64)
    lam = 1e-3 * lam_max
    ref_opts = dict(ridge=lam, tol=1e-11, maxiter=20000, fallback=None, cuda_graph=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bilevel.InnerNotConvergedWarning)
        exact, info = bilevel.hypergrad(problem64, x64, y64, method="minres", **ref_opts)
        check, check_info = bilevel.hypergrad(problem64, x64, y64, method="cg", **ref_opts)
    y32 = {k: t.float() for k, t in y64.items()}
    return Case("mnist-mlp-cleaning", problem, x64.float(), y32, exact, None,
                {"n_x": x64.numel(), "n_y": sum(t.numel() for t in y64.values()),
                 "hidden": hidden, "inner_grad_norm": inner_norm, "lambda_max": lam_max,
                 "ridge": lam, "reference_residual": info.residual,
                 "reference_converged": info.converged,
                 "reference_cg_vs_minres": relative_error(check, exact),
                 "reference_cg_reason": check_info.solve.reason,
                 "reference_s": time.perf_counter() - t0},
                # the same damped system for every engine; float32 CG cannot reach the
                # tightest tolerances: cap it as TorchOpt's settings are capped
                options={"ridge": lam, "maxiter": 1000})


def relative_error(h: torch.Tensor, exact: torch.Tensor) -> float:
    h = h.detach().double().to(exact.device)
    return float(torch.linalg.norm(h - exact) / torch.linalg.norm(exact))


def ours_variants(case: Case, opts: dict, library=bilevel, prefix: str = "ours"
                  ) -> list[tuple[str, dict, Callable]]:
    """Our engines over the tolerance sweep; ``library`` may be another copy of the
    package (``--baseline``), timed on the same objectives and data.

    ``ours-cg``: the default call (``cuda_graph="auto"``: eager on the warm-up call,
    captured on the first timed one, replays after: the median is a replay);
    ``ours-cg-eager``: ``cuda_graph=False``; ``-warm``: v0 from a nearby point;
    ``-graph``: ``cuda_graph=True`` (captured on the warm-up call)."""
    problem = case.problem
    if library is not bilevel:
        problem = library.BilevelProblem(outer=problem.outer, inner=problem.inner,
                                         x0=problem.x0, y0=problem.y0)
    variants = []
    for method, warm, graph in (("cg", False, "auto"), ("cg", False, False),
                                ("minres", False, "auto"), ("cg", True, "auto"),
                                ("cg", False, True), ("cg", True, True)):
        if graph is not False and library is not bilevel:
            continue  # the baseline copies predate whole-call graphs
        if warm and case.v0_warm is None:
            continue
        name = f"{prefix}-{method}" + ("-warm" if warm else "") + \
            {"auto": "", False: "-eager", True: "-graph"}[graph]
        for tol in OURS_TOLS:
            kw = dict(method=method, tol=tol, **case.options, **opts)
            if warm:
                kw["v0"] = case.v0_warm
            kw["cuda_graph"] = graph  # (False for -eager: the default would be "auto")

            def run(kw=kw):
                return library.hypergrad(problem, case.x, case.y, **kw)
            variants.append((name, {"tol": tol}, run))
    return variants


def torchopt_variants(case: Case) -> list[tuple[str, dict, Callable]]:
    """TorchOpt's implicit hypergradient (``custom_root`` + ``solve_cg``) over its accuracy
    knobs, with the case's ridge (``solve_cg(ridge=...)``) where it has one."""
    variants = []
    for setting in torchopt_settings():
        run_at = torchopt_hypergrad(case, setting)
        variants.append(("torchopt", setting,
                         lambda run_at=run_at: (run_at(case.x, case.y), None)))
    return variants


def torchopt_settings() -> list[dict]:
    return ([{"maxiter": k} for k in TORCHOPT_MAXITERS]
            + [{"rtol": r, "maxiter": 1000} for r in TORCHOPT_RTOLS])


def torchopt_hypergrad(case: Case, setting: dict) -> Callable:
    """(x, y) -> TorchOpt's hypergradient at (x, y), the anchor's construction: the inner
    "solver" returns the given optimum, so only the implicit backward pass is timed.
    TorchOpt's ``custom_root`` takes a tensor or a tuple of tensors, so a dict y travels
    as the tuple of its values (in key order)."""
    import torchopt

    keys = list(case.y) if isinstance(case.y, dict) else None
    as_tree = (lambda t: dict(zip(keys, t))) if keys else (lambda t: t)
    as_flat = (lambda y: tuple(y[k] for k in keys)) if keys else (lambda y: y)
    f = lambda x, y: case.problem.outer(x, as_tree(y), None)
    g = lambda x, y: case.problem.inner(x, as_tree(y), None)
    ridge = case.options.get("ridge")
    solve = torchopt.linear_solve.solve_cg(**setting, **({"ridge": ridge} if ridge else {}))
    current = {}

    @torchopt.diff.implicit.custom_root(lambda y, xx: grad(g, 1)(xx, y), argnums=1,
                                        solve=solve)
    def solve_inner(y0, xx):
        return current["y"]

    start = current["y"] = as_flat(case.y)
    if keys:  # custom_root flattens tuple arguments (argnums would then miss x): a stand-in
        start = torch.empty(0, device=case.x.device)

    def run(x, y):
        current["y"] = as_flat(y)
        xx = x.clone().requires_grad_(True)
        return torch.autograd.grad(f(xx, solve_inner(start if keys else y, xx)), xx)[0]
    return run


def run_case(case: Case, device: torch.device, reps: int, target: float, opts: dict,
             with_torchopt: bool, baseline=None, only: list[str] | None = None) -> list[dict]:
    rows = []
    # TorchOpt first: our cuda_graph=True variants compile the Hessian product (torch.compile),
    # and TorchOpt's host-bound calls ran ~15% slower after that in the same process (H200)
    variants = torchopt_variants(case) if with_torchopt else []
    variants += ours_variants(case, opts)
    if baseline is not None:
        variants += ours_variants(case, opts, baseline, "base")
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


# -- the default call: mean over consecutive calls at changing x --------------------------

def moving_points(case: Case, n_points: int, delta: float, seed: int = 7) -> list[tuple]:
    """``n_points`` points (x_j, y*(x_j), exact hypergradient there), x_j = x + delta N(0, I)
    (float32 x, y for the engines; the reference in float64, each y* warm-started)."""
    gen = torch.Generator().manual_seed(seed)
    points, y_start = [], case.y64
    for _ in range(n_points):
        x = case.x64 + delta * torch.randn(case.x64.shape, generator=gen,
                                           dtype=case.x64.dtype).to(case.x64.device)
        y, exact = case.reference_at(x, y_start)
        points.append((x.float(), y.float(), exact))
    return points


def run_sequence(call: Callable, sequence: list[tuple], device: torch.device
                 ) -> tuple[list[float], list]:
    """Each call's wall time (s; synchronized, as a caller reading the result would) and
    output, over the sequence of points, in order."""
    times, outputs = [], []
    for x, y, _ in sequence:
        start = time.perf_counter()
        out = call(x, y)
        _sync(device)
        times.append(time.perf_counter() - start)
        outputs.append(out)
    return times, outputs


def default_call_rows(case: Case, device: torch.device, target: float, with_torchopt: bool,
                      calls: int, points: list[tuple]) -> list[dict]:
    """Mean time of ``calls`` consecutive calls cycling through ``points`` (x changes every
    call), the first call and any capture included: ours with only ``tol`` set (a fresh
    problem object per setting, so nothing is captured in advance), TorchOpt with each of
    its settings; the largest relative error over the calls decides the target."""
    sequence = [points[i % len(points)] for i in range(calls)]
    base = case.problem
    warmup = bilevel.BilevelProblem(outer=base.outer, inner=base.inner, x0=base.x0, y0=base.y0)
    bilevel.hypergrad(warmup, case.x, case.y, cuda_graph=False, **case.options)  # CUDA init
    runs = []
    for tol in OURS_TOLS:
        problem = bilevel.BilevelProblem(outer=base.outer, inner=base.inner, x0=base.x0,
                                         y0=base.y0)

        def ours(x, y, problem=problem, tol=tol):
            return bilevel.hypergrad(problem, x, y, tol=tol, **case.options)
        runs.append(("ours-default", {"tol": tol}, ours))
    if with_torchopt:
        torchopt_hypergrad(case, {"maxiter": 10})(case.x, case.y)  # its warm-up
        for setting in torchopt_settings():
            run_at = torchopt_hypergrad(case, setting)
            runs.append(("torchopt-default", setting,
                         lambda x, y, run_at=run_at: (run_at(x, y), None)))
    rows = []
    for name, setting, call in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bilevel.InnerNotConvergedWarning)
            times, outputs = run_sequence(call, sequence, device)
        errors = [relative_error(h, exact) for (h, _), (_, _, exact) in zip(outputs, sequence)]
        row = {"case": case.name, "suite": "default-call", "variant": name, **setting,
               "calls": calls, "points": len(points), "ms": 1e3 * statistics.mean(times),
               "first_call_ms": 1e3 * times[0], "second_call_ms": 1e3 * times[1],
               "median_ms": 1e3 * statistics.median(times), "relerr": max(errors)}
        infos = [info for _, info in outputs if info is not None]
        if infos:
            row["cuda_graph"] = [infos[0].cuda_graph, infos[1].cuda_graph, infos[-1].cuda_graph]
            row["iterations"] = infos[-1].iterations
        row["meets_target"] = row["relerr"] <= target
        rows.append(row)
        print(json.dumps(row), flush=True)
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


def best_rows(rows: list[dict], target: float) -> dict[tuple[str, str], dict]:
    """The fastest row with relative error <= target for each (case, variant)."""
    best: dict[tuple[str, str], dict] = {}
    for row in rows:
        if not row["relerr"] <= target:
            continue
        key = (row["case"], row["variant"])
        if key not in best or row["ms"] < best[key]["ms"]:
            best[key] = row
    return best


def print_table(rows: list[dict], target: float) -> dict:
    best = best_rows(rows, target)
    print(f"\nFastest setting reaching relative error <= {target:g} (ms: the median of --reps "
          "calls at one point; *-default: the mean of --calls calls at changing x, the first "
          "call and any capture included):")
    print(f"{'case':16s} {'variant':18s} {'setting':22s} {'iters':>5s} {'ms':>9s} "
          f"{'relerr':>9s} {'vs torchopt':>11s}")
    summary = {}
    for case in dict.fromkeys(r["case"] for r in rows):
        for variant in dict.fromkeys(r["variant"] for r in rows if r["case"] == case):
            # the default-call suite compares with TorchOpt under the same protocol
            ref = best.get((case, "torchopt-default" if variant.endswith("-default")
                            else "torchopt"))
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
    parser.add_argument("--cases", default="mnist,ijcnn1",
                        help="comma list of mnist, ijcnn1, mlp (MNIST cleaning with a 2-layer "
                             "MLP, dict parameters, damped reference)")
    parser.add_argument("--suites", default="sweep,default",
                        help="sweep: each variant's accuracy knob at one point (median of "
                             "--reps); default: the default call, mean of --calls calls at "
                             "changing x (mnist, ijcnn1)")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--points", type=int, default=5,
                        help="distinct x of the default-call suite (the calls cycle them)")
    parser.add_argument("--point-delta", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=128, help="MLP width (case mlp)")
    parser.add_argument("--mlp-targets", default="1e-2,1e-3,1e-4",
                        help="accuracies for the MLP's time-to-accuracy tables")
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
        elif name == "mlp":
            cases.append(mlp_case(device, args.small, args.hidden))
        else:
            raise SystemExit(f"unknown case {name!r} (mnist, ijcnn1, mlp)")
    suites = args.suites.split(",")
    unknown = set(suites) - {"sweep", "default"}
    if unknown:
        raise SystemExit(f"unknown suite(s) {sorted(unknown)} (sweep, default)")
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
        if "default" in suites and case.reference_at is not None:
            start = time.perf_counter()
            points = moving_points(case, args.points, args.point_delta)
            case.info["points_reference_s"] = time.perf_counter() - start
            rows += default_call_rows(case, device, args.target, not args.no_torchopt,
                                      args.calls, points)
        if "sweep" in suites:
            rows += run_case(case, device, args.reps, args.target, opts, not args.no_torchopt,
                             baseline, args.variants.split(",") if args.variants else None)
    summary = print_table(rows, args.target)
    mlp_rows = [r for r in rows if r["case"] == "mnist-mlp-cleaning"]
    mlp_summary = {}
    for target in map(float, args.mlp_targets.split(",")) if mlp_rows else []:
        mlp_summary[f"{target:g}"] = print_table(mlp_rows, target)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "target": args.target, "opts": opts,
              "cases": {c.name: c.info for c in cases}, "rows": rows, "summary": summary,
              "mlp_time_to_accuracy": mlp_summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
