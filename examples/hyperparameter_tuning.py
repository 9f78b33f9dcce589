"""Per-feature L2 regularization of a logistic regression on ijcnn1, tuned on validation data.

ijcnn1 (22 features): 35,000 training / 14,990 validation rows (a seeded split of the
.trn file), 91,701 test rows. x_j = log of feature j's L2 weight; the bilevel problem
minimizes the validation loss h(x) = f(x, theta*(x)). The run is judged against float64
references (:mod:`bilevel.tasks.reference`):

* the true hypergradient norm ||grad h(x)|| (theta*(x) by Newton, dense Hessian solve)
  at the start and at the end: it should fall by >= 100x;
* h at the end against the best single shared weight exp(s) of a grid search;
* the test loss next to the validation loss (22 tuned weights can overfit validation).

Defaults: start x = -4 (every weight exp(-4)), 300 outer steps of Adam at a constant 0.3
(BO-REP: normalized steps of length 0.3 / (1 + k / 100), 50 inner gradient steps every
second outer step); aid-* solve the inner problem by warm-started damped Newton steps to
||grad_y g|| <= 1e-10 (``inner_method="newton"``).

    python examples/hyperparameter_tuning.py [--device cuda] [--methods aid-cg,borep] [--steps N]
        [--quick]

``--quick``: aid-cg only, 10 outer steps, a 4-point grid (a smoke run, far from converged;
BO-REP, the slow method here, is left out).

Prints a summary table and saves ``hyperparameter_tuning.png`` (validation loss and test
loss against wall time, one line per method).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _quick import parse_with_quick  # examples/_quick.py

import bilevel
from bilevel.tasks import hyperparameter_tuning, load_ijcnn1
from bilevel.tasks import reference as R

GRID = [-30.0, -25.0, -20.0] + [float(s) for s in range(-16, 3)]
# outer step per method: Adam's step (constant) for most; BO-REP's normalized step moves x
# by exactly outer_lr (in norm) per step, decayed as outer_lr / (1 + k / 100): with
# eta = 1.0 constant it walked every weight to exp(-22..-49), the flat "no regularization"
# limit (val loss = the grid's best to 1e-10), instead of the interior optimum
DEFAULT_LR = {"borep": 0.3}
LR_DECAY = {"borep": 100.0}
ADAM_LR = 0.3
# AID methods solve the inner problem by warm-started damped Newton steps (CG directions)
# to ||grad_y g|| <= 1e-10: as the weights fall towards "no regularization" the inner
# Hessian's condition number grows (7 at x = -4, ~300 at the tuned x), and 20 gradient
# steps of size 1/lambda_max per outer step leave theta far from theta*(x) and the
# hypergradient estimate 20-99% off (--inner-method gd --diagnose); from x = 0 that drove
# 7 weights to exp(4..7) (features switched off) and the run stalled at val 0.1828
# (benchmarks/RESULTS.md).
AID_OPTIONS = {"inner_method": "newton", "inner_tol": 1e-10}
INNER_STEPS = {"newton": 5, "gd": 20, "borep": 50}
# --quick: a smoke run (options given explicitly still win)
QUICK = {"methods": "aid-cg", "steps": 10, "grid": "-12,-8,-4,0", "eval_every": 5}


def exact_metrics(task64, x: torch.Tensor, theta0: torch.Tensor, split) -> dict:
    """h(x), the true hypergradient norm and the test loss at theta*(x), in float64."""
    problem = (task64.outer, task64.inner)
    exact = R.exact_hypergradient(outer=problem[0], inner=problem[1],
                                  x=x.detach().double().to(task64.X_train.device),
                                  y0=theta0.detach().double().to(task64.X_train.device),
                                  solve_inner=True, tol=1e-11)
    xs = x.detach().double().to(task64.X_train.device)
    return {"val_loss": float(task64.outer(xs, exact.y, None)),
            "true_hypergrad_norm": float(exact.grad.norm()),
            "test_loss": float(task64.loss(exact.y, split.X_test, split.y_test)),
            "test_acc": float(task64.accuracy(exact.y, split.X_test, split.y_test)),
            "inner_condition": exact.hessian_max_eig / exact.hessian_min_eig,
            "theta": exact.y}


def run_method(problem, task, task64, split, method: str, args, start_metrics: dict) -> dict:
    curve = []
    X_test = split.X_test.to(task.X_train.device)
    y_test = split.y_test.to(task.X_train.device)

    x_before = [problem.x0]  # the x at which the current step's estimate was taken
    reference_start = [start_metrics["theta"]]  # warm start of the reference, not the iterate

    def callback(record):
        k = record["step"]
        if k % args.eval_every == 0 or k == args.steps - 1:
            point = {"step": k, "wall_time": record["wall_time"],
                     "val_loss": float(task.outer(record["x"], record["y"], None)),
                     "test_loss": float(task.loss(record["y"], X_test, y_test)),
                     "hypergrad_norm": record["hypergrad_norm"]}
            if args.diagnose:
                # the step's estimate and inner iterate against the exact ones at its x
                exact = R.exact_hypergradient(
                    outer=task64.outer, inner=task64.inner,
                    x=x_before[0].detach().double().to(task64.X_train.device),
                    y0=reference_start[0], solve_inner=True, tol=1e-11)
                reference_start[0] = exact.y
                estimate = record["hypergrad"].detach().double().to(exact.grad.device)
                theta = record["y"].detach().double().to(exact.y.device)
                point["hypergrad_relerr"] = float((estimate - exact.grad).norm()
                                                  / exact.grad.norm())
                point["theta_error"] = float((theta - exact.y).norm())
            curve.append(point)
        x_before[0] = record["x"]

    lr = args.outer_lr if args.outer_lr is not None else DEFAULT_LR.get(method, ADAM_LR)
    base = lr
    decay = args.lr_decay if args.lr_decay is not None else LR_DECAY.get(method, 0.0)
    schedule = (lambda k: base / (1 + k / decay)) if decay > 0 else base
    options = {}
    if method.startswith("aid-"):
        options = {**AID_OPTIONS, "inner_method": args.inner_method}
        if args.inner_method == "gd":
            options.pop("inner_tol")
    inner_steps = args.inner_steps or INNER_STEPS.get(
        method, INNER_STEPS[options.get("inner_method", "gd")])
    start = time.perf_counter()
    result = bilevel.solve(problem, method=method, outer_steps=args.steps,
                           inner_steps=inner_steps, outer_lr=schedule, seed=0,
                           lr_every=args.lr_every, callback=callback,
                           progress=not args.quiet, **options)
    seconds = time.perf_counter() - start
    end = exact_metrics(task64, result.x, start_metrics["theta"], split)
    drop = start_metrics["true_hypergrad_norm"] / max(end["true_hypergrad_norm"], 1e-300)
    return {"method": method, "status": result.status.value, "steps": result.n_steps,
            "start_val_loss": start_metrics["val_loss"],
            "start_true_hypergrad_norm": start_metrics["true_hypergrad_norm"],
            "options": options, "inner_steps": inner_steps, "lr_decay": decay,
            "outer_lr": lr, "seconds": seconds, "val_loss": end["val_loss"],
            "test_loss": end["test_loss"], "test_acc": end["test_acc"],
            "true_hypergrad_norm": end["true_hypergrad_norm"], "norm_drop": drop,
            "inner_condition": end["inner_condition"],
            "x": result.x.detach().cpu().tolist(), "curve": curve, "message": result.message}


def plot(rows, grid_best: float, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for row in rows:
        t = [c["wall_time"] for c in row["curve"]]
        ax1.plot(t, [c["val_loss"] for c in row["curve"]], label=row["method"])
        ax2.plot(t, [c["test_loss"] for c in row["curve"]], label=row["method"])
    ax1.axhline(grid_best, color="k", ls="--", lw=1, label="best scalar weight (grid)")
    ax1.set(xlabel="wall time (s)", ylabel="validation loss", title="ijcnn1 per-feature L2")
    ax2.set(xlabel="wall time (s)", ylabel="test loss")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ijcnn1 per-feature regularization tuning")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="aid-cg,borep")
    parser.add_argument("--steps", type=int, default=300, help="outer steps")
    parser.add_argument("--inner-steps", type=int, default=None,
                        help="inner steps per outer step (default: 5 Newton steps, at most, "
                             "for aid-* with --inner-method newton; 50 for borep; 20 "
                             "gradient steps else)")
    parser.add_argument("--inner-method", default="newton", choices=["newton", "gd"],
                        help="inner solver of the aid-* methods")
    parser.add_argument("--outer-lr", type=float, default=None,
                        help="default: a per-method value (DEFAULT_LR, else ADAM_LR)")
    parser.add_argument("--lr-decay", type=float, default=None,
                        help="outer_lr / (1 + k / lr_decay); 0 for a constant step (default: "
                             "per method, LR_DECAY, else constant)")
    parser.add_argument("--lr-every", type=int, default=10,
                        help="outer steps between periodic re-estimates of the inner step "
                             "1/lambda_max (it is also re-estimated when it goes stale)")
    parser.add_argument("--log-reg0", type=float, default=-4.0,
                        help="start: every weight exp(log_reg0) (default -4: 0.018, a "
                             "moderate weight; from 0 the start is in the flat, heavily "
                             "regularized region, see benchmarks/RESULTS.md)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                        help="precision of the run (the data are small; float64 lets the "
                             "hypergradient norm fall far below float32 round-off)")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--diagnose", action="store_true",
                        help="at each evaluation also compare the step's hypergradient "
                             "estimate and inner iterate with the exact ones (float64 Newton "
                             "and dense solve at the step's x) and print them")
    parser.add_argument("--grid", default=",".join(f"{s:g}" for s in GRID),
                        help="log weights s of the scalar grid search, comma-separated")
    parser.add_argument("--plot", default="hyperparameter_tuning.png")
    parser.add_argument("--json", default=None)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                         for k, v in QUICK.items()))
    args = parse_with_quick(parser, argv, QUICK)
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)

    split = load_ijcnn1()
    data = (split.X_train, split.y_train, split.X_val, split.y_val)
    _, task64 = hyperparameter_tuning(*data, device=device, dtype=torch.float64,
                                      return_task=True)
    grid = R.scalar_grid_search(task64, [float(v) for v in args.grid.split(",")])
    x0 = torch.full((22,), args.log_reg0, dtype=torch.float64, device=device)
    start = exact_metrics(task64, x0, torch.zeros(23, dtype=torch.float64), split)
    rows = []
    for method in args.methods.split(","):
        problem, task = hyperparameter_tuning(*data, log_reg0=args.log_reg0, device=device,
                                              dtype=getattr(torch, args.dtype),
                                              return_task=True)
        rows.append(run_method(problem, task, task64, split, method, args, start))

    best_s = grid["best_log_reg"]
    theta_grid = grid["best_theta"]
    grid_test = float(task64.loss(theta_grid, split.X_test, split.y_test))
    print(f"\nijcnn1 per-feature L2 (22 weights), device {device}; losses at the exact "
          f"theta*(x) (float64 Newton)")
    print(f"start x = {args.log_reg0:g}: val loss {start['val_loss']:.5f}, test loss "
          f"{start['test_loss']:.5f}, ||grad h|| {start['true_hypergrad_norm']:.3e}")
    print(f"best scalar weight exp({best_s:g}) of a {len(grid['log_reg'])}-point grid: val loss "
          f"{grid['best_val_loss']:.5f}, test loss {grid_test:.5f}")
    print(f"{'method':12s} {'steps':>5s} {'time s':>7s} {'val loss':>9s} {'vs grid':>9s} "
          f"{'test loss':>9s} {'test acc':>8s} {'||grad h||':>10s} {'drop':>8s}  status")
    for r in rows:
        print(f"{r['method']:12s} {r['steps']:5d} {r['seconds']:7.1f} {r['val_loss']:9.5f} "
              f"{r['val_loss'] - grid['best_val_loss']:+9.5f} {r['test_loss']:9.5f} "
              f"{100 * r['test_acc']:7.2f}% {r['true_hypergrad_norm']:10.3e} "
              f"{r['norm_drop']:7.1f}x  {r['status']}")
    if args.diagnose:
        print("\nstep, relative error of the step's hypergradient estimate, "
              "||theta - theta*(x)||:")
        for r in rows:
            print(f"{r['method']:12s} " + "  ".join(
                f"{c['step']}: {c['hypergrad_relerr']:.2e}, {c['theta_error']:.2e}"
                for c in r["curve"]))
    if args.plot:
        plot(rows, grid["best_val_loss"], args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"grid": {k: v for k, v in grid.items() if k != "best_theta"},
                       "grid_best_test_loss": grid_test,
                       "start": {k: v for k, v in start.items() if k != "theta"},
                       "rows": rows}, fh, indent=1, default=str)
    return rows


if __name__ == "__main__":
    main()
