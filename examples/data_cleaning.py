"""Data hyper-cleaning on MNIST: learn which training labels are wrong.

Half of 5,000 MNIST training labels are replaced by a different random class (the split of
``shared/anchors/hypergrad_anchor.py``); a multinomial logistic regression weighs each
training example by sigmoid(x_i), and the bilevel problem tunes x on 2,000 clean
validation images. Each method's run is compared with the oracle (the same model trained
on the clean examples only); examples with weight < 0.5 count as flagged.

    python examples/data_cleaning.py [--device cuda] [--methods aid-cg,borep] [--steps N] [--quick]
    python examples/data_cleaning.py --hidden 128 --methods aid-cg --seeds 0,1,2   # an MLP

``--hidden H`` replaces the linear model by a 2-layer tanh MLP (784-H-10, its parameters a
dict): the inner problem of a neural network; its oracle is the same MLP trained (float64
L-BFGS from the same initialization) on the clean examples only.  ``--seeds`` repeats the
run on other splits, corruptions and initializations and reports the mean.

What is compared with the oracle (the comparison of the bilevel-NN issue: "test accuracy
of the cleaned model vs the same MLP trained to convergence on the 2,500 uncorrupted
training examples") is the *cleaned model*: the same model trained the oracle's way
(float64 L-BFGS from the same seeded initialization, loss normalized by the total weight)
with the learned weights sigmoid(x) in place of the true clean mask, i.e. y*(x) of the
learned x, trained as far as the oracle is (its L-BFGS |grad| is printed next to the
oracle's).  The *last iterate*, the inner variable y where the run stopped
(``inner_steps`` gradient steps per outer step from a warm start: the MLP's is far from
trained), is shown too, as what the run itself holds.  Both are also scored on the
validation images, which the method sees (the test images it never sees).

``--quick``: 1,000 training labels, aid-cg only, 6 outer steps, no oracle (a smoke run).

Prints a summary table and saves ``data_cleaning.png`` (validation loss and test accuracy
against wall time, one line per method; the first seed).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _quick import parse_with_quick  # examples/_quick.py

import bilevel
from bilevel.inner import minimize
from bilevel.tasks import data_cleaning, flag_scores, load_mnist
from bilevel.tasks.reference import oracle_cleaning

# outer step sizes that work for each method on this task (Adam for the AID/ITD/penalty
# family; BO-REP's normalized step moves x by exactly outer_lr per step in total norm)
DEFAULT_LR = {"aid-cg": 0.1, "aid-minres": 0.1, "aid-neumann": 0.1, "itd": 0.1,
              "penalty": 0.1, "borep": 3.0}
# --quick: a smoke run (options given explicitly still win)
QUICK = {"n_train": 1000, "methods": "aid-cg", "steps": 6, "eval_every": 3, "no_oracle": True}


def float64_task(split, device, hidden: int | None = None, seed: int = 0):
    """The task in float64, for the oracle and the retrained cleaned model."""
    return data_cleaning(split.X_train, split.y_train, split.X_val, split.y_val,
                         n_classes=10, device=device, dtype=torch.float64, hidden=hidden,
                         init_seed=seed, return_task=True)[1]


def retrained(task64, x: torch.Tensor, split, max_iter: int = 100) -> dict:
    """The model trained the oracle's way with the learned weights w = sigmoid(x):
    minimize sum_i w_i CE_i / sum_i w_i + penalty (the oracle's loss when w is the clean
    mask) by float64 L-BFGS from the task's initial parameters, as
    :func:`~bilevel.tasks.reference.oracle_cleaning` does; its test and validation
    accuracy.  ``max_iter``: L-BFGS rounds of 50 evaluations (the oracle's for the MLP)."""
    weights = torch.sigmoid(x.detach().to(task64.X_train))
    weights = weights / weights.mean()
    W = minimize(lambda W: task64.weighted_loss(W, weights), task64.initial_params(),
                 method="lbfgs", tol=1e-6, max_iter=max_iter, strict=False)
    return {"test_acc": float(task64.accuracy(W, split.X_test, split.y_test)),
            "val_acc": float(task64.accuracy(W, split.X_val, split.y_val)),
            "grad_norm": _grad_norm(task64, W, weights)}


def _grad_norm(task64, W, weights: torch.Tensor) -> float:
    """|grad_W| of the weighted training loss at W: how far L-BFGS got."""
    gradient = torch.func.grad(task64.weighted_loss)(W, weights)
    leaves = gradient.values() if isinstance(gradient, dict) else [gradient]
    return float(sum((t * t).sum() for t in leaves) ** 0.5)


def oracle_accuracy(task64, split, hidden: int | None = None) -> dict:
    """Test accuracy of the model trained on the clean examples only (the linear model:
    two normalizations; the MLP: the mean over the clean examples, from the same seeded
    initialization, with the gradient norm L-BFGS reached as "grad_norm")."""
    device = task64.X_train.device
    out = {}
    for norm in ("clean", "all") if hidden is None else ("clean",):
        W = oracle_cleaning(task64, split.info["corrupted"], normalization=norm,
                            strict=hidden is None, max_iter=200 if hidden is None else 100)
        out[norm] = float(task64.accuracy(W, split.X_test, split.y_test))
        if hidden is not None:
            clean = ~split.info["corrupted"].to(device)
            weights = clean.double() * (clean.numel() / int(clean.sum()))
            out["grad_norm"] = _grad_norm(task64, W, weights)
    return out


def run_method(problem, task, split, method: str, args, seed: int = 0, task64=None) -> dict:
    curve = []
    corrupted = split.info["corrupted"]
    X_test = split.X_test.to(task.X_train.device)
    y_test = split.y_test.to(task.X_train.device)

    def callback(record):
        k = record["step"]
        if k % args.eval_every == 0 or k == args.steps - 1:
            curve.append({"step": k, "wall_time": record["wall_time"],
                          "val_loss": float(task.outer(record["x"], record["y"], None)),
                          "test_acc": float(task.accuracy(record["y"], X_test, y_test)),
                          "f1": flag_scores(record["x"], corrupted)["f1"]})

    lr = args.outer_lr if args.outer_lr is not None else DEFAULT_LR.get(method, 0.1)
    start = time.perf_counter()
    options = {"hessian": args.hessian} if method.startswith("aid") and args.hessian else {}
    result = bilevel.solve(problem, method=method, outer_steps=args.steps,
                           inner_steps=args.inner_steps, outer_lr=lr, seed=seed,
                           callback=callback, progress=not args.quiet, **options)
    seconds = time.perf_counter() - start
    flags = flag_scores(result.x, corrupted)
    again = retrained(task64, result.x, split) if task64 is not None else {}
    return {"method": method, "seed": seed, "status": result.status.value,
            "steps": result.n_steps,
            "outer_lr": lr, "seconds": seconds,
            "val_loss": float(task.outer(result.x, result.y, None)),
            "test_acc": float(task.accuracy(result.y, X_test, y_test)),
            "val_acc": float(task.accuracy(result.y, split.X_val, split.y_val)),
            "retrained_test_acc": again.get("test_acc", float("nan")),
            "retrained_val_acc": again.get("val_acc", float("nan")),
            "retrained_grad_norm": again.get("grad_norm", float("nan")),
            "f1": flags["f1"], "precision": flags["precision"], "recall": flags["recall"],
            "weight_clean": flags["weight_clean"], "weight_corrupted": flags["weight_corrupted"],
            "curve": curve, "message": result.message}


def plot(rows, oracle: float, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for row in rows:
        t = [c["wall_time"] for c in row["curve"]]
        ax1.plot(t, [c["val_loss"] for c in row["curve"]], label=row["method"])
        ax2.plot(t, [100 * c["test_acc"] for c in row["curve"]], label=row["method"])
    ax2.axhline(100 * oracle, color="k", ls="--", lw=1, label="oracle")
    ax1.set(xlabel="wall time (s)", ylabel="validation loss", title="MNIST hyper-cleaning")
    ax2.set(xlabel="wall time (s)", ylabel="test accuracy (%)")
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MNIST data hyper-cleaning")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="aid-cg,borep")
    parser.add_argument("--steps", type=int, default=40,
                        help="outer steps (the H100 results in benchmarks/RESULTS.md used 100)")
    parser.add_argument("--inner-steps", type=int, default=10)
    parser.add_argument("--outer-lr", type=float, default=None,
                        help="default: a per-method value (DEFAULT_LR)")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-val", type=int, default=2000)
    parser.add_argument("--hidden", type=int, default=None,
                        help="a 2-layer tanh MLP with this many hidden units (default: linear)")
    parser.add_argument("--hessian", choices=["exact", "gauss-newton"], default=None,
                        help="the AID methods' linear system (default: exact for the linear "
                             "model; gauss-newton for the MLP, positive definite even far "
                             "from a minimum, where the MLP's Hessian is indefinite)")
    parser.add_argument("--seeds", default="0",
                        help="comma list: split, corruption, initialization and run seeds")
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--plot", default="data_cleaning.png")
    parser.add_argument("--json", default=None, help="also write the results as JSON")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                         for k, v in QUICK.items()))
    args = parse_with_quick(parser, argv, QUICK)
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.hessian is None and args.hidden is not None:
        args.hessian = "gauss-newton"

    seeds = [int(v) for v in args.seeds.split(",")]
    model = "linear model" if args.hidden is None else f"2-layer MLP (hidden {args.hidden})"
    rows, oracles = [], []
    for seed in seeds:
        split = load_mnist(n_train=args.n_train, n_val=args.n_val, corruption=0.5, seed=seed)
        # the oracle and the retrained cleaned model (both float64 L-BFGS) go together
        task64 = None if args.no_oracle else float64_task(split, device, args.hidden, seed)
        oracle = {"clean": float("nan")} if task64 is None \
            else oracle_accuracy(task64, split, args.hidden)
        oracles.append(oracle)
        for method in args.methods.split(","):
            problem, task = data_cleaning(split.X_train, split.y_train, split.X_val,
                                          split.y_val, n_classes=10, device=device,
                                          hidden=args.hidden, init_seed=seed,
                                          return_task=True)
            row = run_method(problem, task, split, method, args, seed, task64)
            row["oracle"] = max(v for k, v in oracle.items() if k != "grad_norm")
            rows.append(row)

    print(f"\nMNIST hyper-cleaning, {model}: {args.n_train} training labels, 50% corrupted; "
          f"device {device}; seeds {seeds}")
    for seed, oracle in zip(seeds, oracles):
        if args.no_oracle:
            print(f"seed {seed}: oracle test accuracy not computed (--no-oracle)")
            continue
        extra = f", L-BFGS |grad| {oracle['grad_norm']:.1e}" if "grad_norm" in oracle else ""
        print(f"seed {seed}: oracle test accuracy " + ", ".join(
            f"{100 * v:.2f}% ({k})" for k, v in oracle.items() if k != "grad_norm") + extra)
    print("accuracy (%): test / validation; the cleaned model (trained to convergence as "
          "the oracle, with the learned weights: what is compared with the oracle) and the "
          "last iterate (module docstring); vs oracle: test accuracy minus the oracle's")
    print(f"{'method':12s} {'seed':>4s} {'steps':>5s} {'time s':>7s} {'val loss':>9s} "
          f"{'cleaned test/val':>16s} {'vs oracle':>9s} {'|grad|':>7s} {'last test/val':>13s} "
          f"{'vs oracle':>9s} {'F1':>6s} {'prec':>6s} {'recall':>6s}  status")
    for r in rows:
        print(f"{r['method']:12s} {r['seed']:4d} {r['steps']:5d} {r['seconds']:7.1f} "
              f"{r['val_loss']:9.4f} {100 * r['retrained_test_acc']:9.2f}/"
              f"{100 * r['retrained_val_acc']:6.2f} "
              f"{100 * (r['retrained_test_acc'] - r['oracle']):+9.2f} "
              f"{r['retrained_grad_norm']:7.1e} "
              f"{100 * r['test_acc']:6.2f}/{100 * r['val_acc']:6.2f} "
              f"{100 * (r['test_acc'] - r['oracle']):+9.2f} {r['f1']:6.3f} "
              f"{r['precision']:6.3f} {r['recall']:6.3f}  {r['status']}")
    if len(seeds) > 1:
        for method in args.methods.split(","):
            mine = [r for r in rows if r["method"] == method]
            def mean(key: str, mine: list = mine) -> float:
                return sum(r[key] for r in mine) / len(mine)
            print(f"{method:12s} mean of {len(mine)} seeds: oracle {100 * mean('oracle'):.2f}%; "
                  f"cleaned model {100 * mean('retrained_test_acc'):.2f}% "
                  f"({100 * (mean('retrained_test_acc') - mean('oracle')):+.2f} points); "
                  f"last iterate {100 * mean('test_acc'):.2f}% "
                  f"({100 * (mean('test_acc') - mean('oracle')):+.2f} points); "
                  f"F1 {mean('f1'):.3f}")
    first = [r for r in rows if r["seed"] == seeds[0]]
    if args.plot:
        plot(first, first[0]["oracle"], args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"oracles": dict(zip(map(str, seeds), oracles)), "rows": rows,
                       "args": vars(args)}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
