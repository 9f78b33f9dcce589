"""Reproduce the bundled PageRank model (``l2o/models/pagerank.pt``) end to end, then measure it.

The trained model goes to ``runs/pagerank_model/pagerank.pt`` under the current directory
(``--out``), never into the installed package: to replace the bundled model, copy it there.

The PageRank LP's only feasible point is the PageRank vector, the fixed point of the power
iteration x <- d P x + (1 - d)/n, and a few power iterations are a strong start (y = 0 is an
optimal dual of this zero-cost LP). The model, :class:`l2o.net.PowerIterationNet`, is that
iteration unrolled for K steps with one learned step size per step (a learned polynomial
acceleration; see its module docstring), run on the solver's preconditioned graph.

1. Datasets (:func:`l2o.datasets.build_dataset`, labels by ``l2o.solve_lp`` at tol 1e-10, so
   that the labels are far more accurate than the starts to be learned): PageRank LPs
   (Barabasi-Albert, degree 3, damping 0.85) of 2,000 and 8,000 nodes for training (seeds
   10000-10031, 20000-20015) and 4,000 nodes for validation (seeds 40000-40007).
2. Model: ``PowerIterationNet(steps=12, spread=0.6)``, float64, its steps initialized as the
   Chebyshev semi-iteration for a spectrum of I - d P in [0.4, 1.6].
3. Loss: the squared relative primal residual of the start, the solver's own criterion
   (``kkt_weight`` 1e8, which makes the label term, the relative squared error of x, a
   1e-4 part of the loss), dual weight 0 (the model predicts y = 0).
4. Training: Adam (lr 0.02), batch 8, 60 epochs, on the CPU; the best validation epoch is
   written with :func:`l2o.net.save_model` (no optimizer state) to ``--out``.
5. Evaluation on fresh seeds (900001, ...) at ``--eval-nodes``, to tol 1e-8 (presolve off):
   PDHG iterations and time from the cold start (x = 0, y = 0), the model's start
   (:func:`l2o.net.solve_with_model`: prediction included), the untrained Chebyshev steps
   (the same model before training), and the power-iteration starts with 5 and with K steps
   (as many sparse products as the model), each with its relative primal residual.

What it printed for the shipped model (the run that wrote it, with the defaults and
``--work benchmarks/out/prwork``; this project's 2-core CPU shared with other jobs, 2026-12-03;
training 499 s, best epoch 39 of 60, learned steps 2.425 0.726 2.072 0.644 1.698 0.624 1.385
0.667 1.179 0.767 0.976 0.869; the times are noisy, the iteration counts and residuals are not):

       nodes        start  primal res0  iters predict s  total s  speedup
       10000         cold     5.00e-01    769     0.000    1.324    1.00x
       10000        model     1.97e-09      1     0.020    0.129   10.24x
       10000    untrained     7.55e-09      1     0.021    0.120   11.05x
       10000     power x5     5.33e-05    322     0.008    0.687    1.93x
       10000    power x12     1.71e-06    194     0.011    0.447    2.96x
       80000         cold     5.00e-01   1921     0.000   25.934    1.00x
       80000        model     7.01e-10      1     0.222    1.249   20.76x
       80000    untrained     2.83e-09      1     0.231    1.361   19.06x
       80000     power x5     1.92e-05    770     0.046   12.994    2.00x
       80000    power x12     6.46e-07    578     0.084   10.407    2.49x

What is learned and what is not: the Chebyshev steps alone (``untrained``) already bring the
start below 1e-8, ~230x closer than 12 plain power iterations; training lowers the start's
residual 4x further (the margin below the tolerance that larger or harder graphs need), and
the solve then stops at its first check. Plain power iteration gets there in about 20 steps
(in a separate CPU run on seed 4,000,000: 20 steps left 2.2e-08 at 1e4 nodes, 66 PDHG
iterations, and 8.5e-09 at 8e4, one), so against more power iterations the learned steps save
sparse products, not PDHG iterations.

    python examples/train_pagerank_model.py [--work DIR] [--out FILE] [--epochs N]
        [--steps K] [--eval-nodes 10000 80000] [--threads 1] [--skip-train] [--quick]

``--skip-train --out pagerank`` evaluates the bundled model. ``--quick`` is a smoke run of
every stage at a toy size (8 training LPs of 1,000 nodes, 4 for validation, 2 epochs, one
evaluation at 2,000 nodes, in ``runs/pagerank_model_quick``): its model is not a useful one.
Rerunning reuses the finished datasets (a build resumes) and refuses to overwrite a finished
training run in ``WORK/run`` (delete it to retrain).
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import torch
from _quick import parse_with_quick  # examples/_quick.py
from torch.utils.data import ConcatDataset

import l2o
from l2o.datasets import LPDataset, build_dataset, pagerank
from l2o.net import PowerIterationNet, kkt_error, load_model, save_model, solve_with_model
from l2o.training import train

TRAIN_SETS = [(2000, 32, 10_000), (8000, 16, 20_000)]  # nodes, count, first seed
VAL_SET = (4000, 8, 40_000)
EVAL_SEED = 900_001
LABEL_TOL = 1e-10
EVAL_TOL = 1e-8
DEFAULT_WORK = Path("runs") / "pagerank_model"
# --quick: every stage at a toy size (options given explicitly still win)
QUICK_WORK = Path("runs") / "pagerank_model_quick"
QUICK = {"work": QUICK_WORK, "out": QUICK_WORK / "pagerank.pt", "epochs": 2,
         "train_sets": ["1000:8:10000"], "val_set": "1000:4:40000", "eval_nodes": [2000]}


def build(work: Path, train_sets=TRAIN_SETS, device: str = "cpu", val_set=VAL_SET
          ) -> tuple[ConcatDataset, LPDataset]:
    """Build (or resume) the datasets; returns (training set, validation set) of float64
    preconditioned graphs.

    ``train_sets``: (nodes, count, first seed) per training size; ``val_set``: the same for the
    validation set; ``device``: where the labelling solves run.
    """
    def one(nodes: int, count: int, seed: int, name: str) -> LPDataset:
        folder = work / f"{name}_n{nodes}"
        started = time.perf_counter()
        report = build_dataset("pagerank", count, folder, seed=seed, tol=LABEL_TOL,
                               progress=False, device=device, nodes=nodes)
        print(f"dataset {folder}: {report.stored} instances ({report.built} built, "
              f"{report.kept} kept, {len(report.excluded)} excluded), "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        return LPDataset(folder, scaling=True, cache=True, dtype=torch.float64)

    train_sets = [one(*spec, "train") for spec in train_sets]
    return ConcatDataset(train_sets), one(*val_set, "val")


def power_start(lp, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The heuristic start: ``iterations`` power iterations x <- d P x + (1 - d)/n from the
    uniform vector (written with the LP's rows (I - d P) x >= (1 - d)/n: x <- x + (l - A x)
    on the n rank rows), and y = 0."""
    n = lp.num_cols
    x = torch.full((n,), 1.0 / n, dtype=torch.float64)
    lower = lp.row_lower[:n].double()
    for _ in range(iterations):
        x = x + (lower - (lp.A @ x)[:n])
    return x.clamp_min(0.0), torch.zeros(lp.num_rows, dtype=torch.float64)


def evaluate(model: PowerIterationNet, sizes: list[int], tol: float = EVAL_TOL) -> None:
    """Cold vs model vs untrained model vs power-iteration starts on fresh PageRank LPs."""
    steps = model.config["steps"]
    untrained = PowerIterationNet(**model.config).double()
    print(f"\nfresh PageRank LPs (seed {EVAL_SEED}), PDHG on the CPU to tol {tol:g}, presolve "
          f"off (prediction included in the totals):")
    print(f"{'nodes':>8} {'start':>12} {'primal res0':>12} {'iters':>6} {'predict s':>9} "
          f"{'total s':>8} {'speedup':>8}")
    # one untimed round first: the first forward pass and solve of a process pay one-time costs
    solve_with_model(model, pagerank(500, seed=EVAL_SEED - 1), tol=tol, device="cpu")
    for nodes in sizes:
        lp = pagerank(nodes, seed=EVAL_SEED)
        rows = []
        cold = l2o.solve_lp(lp, tol=tol, device="cpu", presolve=False)
        zeros = (torch.zeros(lp.num_cols, dtype=torch.float64),
                 torch.zeros(lp.num_rows, dtype=torch.float64))
        rows.append(("cold", zeros, 0.0, cold.solve_time, cold))
        for name, net in (("model", model), ("untrained", untrained)):
            started = time.perf_counter()
            result, ws = solve_with_model(net, lp, tol=tol, device="cpu")
            total = time.perf_counter() - started
            rows.append((name, (ws.x, ws.y), ws.prediction_time, total, result))
        for k in sorted({5, steps}):
            started = time.perf_counter()
            start = power_start(lp, k)
            predict = time.perf_counter() - started
            result = l2o.solve_lp(lp, tol=tol, device="cpu", presolve=False, warm_start=start)
            rows.append((f"power x{k}", start, predict, predict + result.solve_time, result))
        for name, start, predict, total, result in rows:
            residual = kkt_error(lp, *start)["rel_primal_residual"]
            speedup = cold.solve_time / total if total > 0 else math.nan
            print(f"{nodes:>8} {name:>12} {residual:>12.2e} {result.iterations:>6} "
                  f"{predict:>9.3f} {total:>8.3f} {speedup:>7.2f}x"
                  + ("" if result.status == l2o.LPStatus.OPTIMAL else f"  {result.status.value}"),
                  flush=True)


def _sets(parser: argparse.ArgumentParser, specs: list[str], what: str
          ) -> list[tuple[int, int, int]]:
    """NODES:COUNT:SEED specs as (nodes, count, first seed), below the evaluation's seeds."""
    try:
        sets = [tuple(int(v) for v in spec.split(":")) for spec in specs]
    except ValueError:
        sets = []
    if not sets or any(len(spec) != 3 or spec[2] + spec[1] > EVAL_SEED - 1 for spec in sets):
        parser.error(f"{what}: NODES:COUNT:SEED with SEED + COUNT < 900,000")
    return sets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help=f"datasets and the training run (default: ./{DEFAULT_WORK})")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the trained model goes, or with --skip-train the model to "
                             "evaluate (a path or a bundled name, e.g. pagerank); default: "
                             "WORK/pagerank.pt")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=12,
                        help="unrolled power-iteration steps K (sparse products; default 12)")
    parser.add_argument("--spread", type=float, default=0.6,
                        help="half-width of the spectrum of I - d P the Chebyshev "
                             "initialization assumes (default 0.6)")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kkt-weight", type=float, default=1e8,
                        help="weight of the start's squared relative primal residual (~1e-17: "
                             "1e8 makes it the loss; the label term weighs 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--device", default="cpu",
                        help="where labels are solved and the model trains (cpu; e.g. cuda)")
    parser.add_argument("--train-sets", nargs="+", metavar="NODES:COUNT:SEED",
                        help="training sizes, instance counts and first seeds (default: "
                             + " ".join(f"{n}:{c}:{s}" for n, c, s in TRAIN_SETS) + "; seeds "
                             "must stay below 900,000, the evaluation's)")
    parser.add_argument("--val-set", metavar="NODES:COUNT:SEED",
                        default=":".join(str(v) for v in VAL_SET),
                        help="validation size, instance count and first seed (default: "
                             "%(default)s)")
    parser.add_argument("--eval-nodes", type=int, nargs="*", default=[10_000, 80_000],
                        help="sizes of the fresh evaluation LPs (none: skip the evaluation)")
    parser.add_argument("--skip-train", action="store_true",
                        help="only evaluate the model at --out")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of every stage at a toy size, in ./" + str(QUICK_WORK))
    args = parse_with_quick(parser, argv, QUICK)
    args.train_sets = _sets(parser, args.train_sets, "--train-sets") if args.train_sets \
        else TRAIN_SETS
    args.val_set = _sets(parser, [args.val_set], "--val-set")[0]
    if args.out is None:
        args.out = args.work / "pagerank.pt"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    if not args.skip_train:
        if args.quick and args.work == QUICK_WORK:
            # the smoke run's own scratch run: start it afresh each time (train() refuses to
            # overwrite a finished run, which a full run's WORK/run must be protected by)
            shutil.rmtree(QUICK_WORK / "run", ignore_errors=True)
        train_set, val_set = build(args.work, args.train_sets, args.device, args.val_set)
        torch.manual_seed(args.seed)
        model = PowerIterationNet(steps=args.steps, spread=args.spread).double()
        started = time.perf_counter()
        result = train(model, train_set, val_set, epochs=args.epochs, lr=args.lr, batch_size=8,
                       out_dir=args.work / "run", device=args.device, seed=args.seed,
                       dual_weight=0.0, kkt_weight=args.kkt_weight)
        print(f"trained in {time.perf_counter() - started:.0f} s; best epoch "
              f"{result.best_epoch} (validation loss {result.best_loss:.3e})", flush=True)
        best = torch.load(result.best, weights_only=True)
        trained = load_model(result.best)
        print("learned steps:", " ".join(f"{a:.3f}" for a in trained.step_sizes.tolist()))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_model(trained, args.out, config=best["config"], history=best["history"],
                   best=best["best"], epoch=best["epoch"])
        print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    model = load_model(args.out)
    if args.eval_nodes:
        evaluate(model, args.eval_nodes)


if __name__ == "__main__":
    main()
