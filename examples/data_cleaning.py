"""Data hyper-cleaning on MNIST: learn which training labels are wrong.

Half of 5,000 MNIST training labels are replaced by a different random class (the split of
``shared/anchors/hypergrad_anchor.py``); a multinomial logistic regression weighs each
training example by sigmoid(x_i), and the bilevel problem tunes x on 2,000 clean
validation images. Each method's run is compared with the oracle (the same model trained
on the clean examples only); examples with weight < 0.5 count as flagged.

    python examples/data_cleaning.py [--device cuda] [--methods aid-cg,borep] [--steps N]

Prints a summary table and saves ``data_cleaning.png`` (validation loss and test accuracy
against wall time, one line per method).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import bilevel
from bilevel.tasks import data_cleaning, flag_scores, load_mnist
from bilevel.tasks.data_cleaning import DataCleaningTask
from bilevel.tasks.reference import oracle_cleaning

# outer step sizes that work for each method on this task (Adam for the AID/ITD/penalty
# family; BO-REP's normalized step moves x by exactly outer_lr per step in total norm)
DEFAULT_LR = {"aid-cg": 0.1, "aid-minres": 0.1, "aid-neumann": 0.1, "itd": 0.1,
              "penalty": 0.1, "borep": 3.0}


def oracle_accuracy(split, device) -> dict:
    """Test accuracy of the model trained on the clean examples only (two normalizations)."""
    task64 = DataCleaningTask(split.X_train, split.y_train, split.X_val, split.y_val,
                              n_classes=10, device=device, dtype=torch.float64)
    out = {}
    for norm in ("clean", "all"):
        W = oracle_cleaning(task64, split.info["corrupted"], normalization=norm)
        out[norm] = float(task64.accuracy(W, split.X_test, split.y_test))
    return out


def run_method(problem, task, split, method: str, args) -> dict:
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
    result = bilevel.solve(problem, method=method, outer_steps=args.steps,
                           inner_steps=args.inner_steps, outer_lr=lr, seed=0,
                           callback=callback, progress=not args.quiet)
    seconds = time.perf_counter() - start
    flags = flag_scores(result.x, corrupted)
    return {"method": method, "status": result.status.value, "steps": result.n_steps,
            "outer_lr": lr, "seconds": seconds,
            "val_loss": float(task.outer(result.x, result.y, None)),
            "test_acc": float(task.accuracy(result.y, X_test, y_test)),
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


def main(argv: list[str] | None = None) -> list[dict]:
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
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--plot", default="data_cleaning.png")
    parser.add_argument("--json", default=None, help="also write the results as JSON")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    split = load_mnist(n_train=args.n_train, corruption=0.5)
    oracle = {"clean": float("nan"), "all": float("nan")} if args.no_oracle \
        else oracle_accuracy(split, device)
    best_oracle = max(oracle.values())
    rows = []
    for method in args.methods.split(","):
        problem, task = data_cleaning(split.X_train, split.y_train, split.X_val, split.y_val,
                                      n_classes=10, device=device, return_task=True)
        rows.append(run_method(problem, task, split, method, args))

    print(f"\nMNIST hyper-cleaning: {args.n_train} training labels, 50% corrupted; "
          f"device {device}")
    print(f"oracle test accuracy: {100 * oracle['clean']:.2f}% (mean CE over the clean "
          f"examples), {100 * oracle['all']:.2f}% (g with 0/1 weights)")
    print(f"{'method':12s} {'steps':>5s} {'time s':>7s} {'val loss':>9s} {'test acc':>8s} "
          f"{'vs oracle':>9s} {'F1':>6s} {'prec':>6s} {'recall':>6s}  status")
    for r in rows:
        print(f"{r['method']:12s} {r['steps']:5d} {r['seconds']:7.1f} {r['val_loss']:9.4f} "
              f"{100 * r['test_acc']:7.2f}% {100 * (r['test_acc'] - best_oracle):+8.2f} "
              f"{r['f1']:6.3f} {r['precision']:6.3f} {r['recall']:6.3f}  {r['status']}")
    if args.plot:
        plot(rows, best_oracle, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"oracle": oracle, "rows": rows, "args": vars(args)}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
