"""Train one PDHG-Net per LP-relaxation family for the warm-start benchmark (``pdhgnet.py``).

For each family (set cover, combinatorial auction, capacitated facility location) this builds a
labelled training set and a validation set with :func:`l2o.datasets.build_dataset` (labels:
``l2o.solve_lp`` to 1e-8 on the CPU), trains ``PDHGNet(hidden, layers, scaling=True)`` (the
solver's preconditioned graphs, so one model sees instances of comparable scale) with
:func:`l2o.train.train` on the CPU, and writes the best validation epoch, weights only, to
``benchmarks/models/{family}.pt`` (loadable with ``l2o.net.load_model(path)``).

Seeds: training instances use generator seeds ``0 .. count-1``, validation ``1000 ..``; the
benchmark draws its instances from seeds >= ``pdhgnet.BENCH_SEED`` (5,000,000), never used here
(nor by ``examples/train_pagerank_model.py``, whose seeds are 10,000-40,015 and 900,001).

Sizes are each family's generator defaults (``l2o.datasets.family_options``): modest, so a
family builds and trains in a few minutes on a 2-core CPU:

    python benchmarks/train_family_models.py [--families setcover auction facility]
        [--count 128] [--val-count 16] [--epochs N] [--work .devdata/family_models]

PageRank is not trained here: the benchmark uses the bundled model ``l2o/models/pagerank.pt``
(``examples/train_pagerank_model.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

MODELS = Path(__file__).resolve().parent / "models"
RELAXATION_FAMILIES = ("setcover", "auction", "facility")
# Epochs per family (--epochs overrides): set cover's validation loss was still falling at 60
# (0.59) and went on to 0.38 at 150; auction and facility level off before 60.
EPOCHS = {"setcover": 150, "auction": 60, "facility": 60}
TRAIN_SEED, VAL_SEED = 0, 1000
LABEL_TOL = 1e-8


def build(family: str, count: int, seed: int, folder: Path):
    """Build (or resume) one labelled dataset; returns the ``LPDataset`` of scaled graphs."""
    from l2o.datasets import LPDataset, build_dataset

    started = time.perf_counter()
    report = build_dataset(family, count, folder, seed=seed, tol=LABEL_TOL, progress=False,
                           device="cpu")
    print(f"{family}: {folder} {report.stored} instances ({report.built} built, {report.kept} "
          f"kept, {len(report.excluded)} excluded) in {time.perf_counter() - started:.0f} s",
          flush=True)
    return LPDataset(folder, scaling=True, cache=True, dtype=torch.float32)


def train_family(family: str, args: argparse.Namespace) -> dict:
    """Datasets, training, and the weights-only model file of one family; a summary dict."""
    from l2o.net import PDHGNet, load_model, save_model
    from l2o.train import train

    work = Path(args.work) / family
    train_set = build(family, args.count, TRAIN_SEED, work / "train")
    val_set = build(family, args.val_count, VAL_SEED, work / "val")
    torch.manual_seed(args.seed)
    model = PDHGNet(hidden=args.hidden, layers=args.layers, scaling=True)
    run = work / "run"
    started = time.perf_counter()
    epochs = args.epochs or EPOCHS[family]
    result = train(model, train_set, val_set, epochs=epochs, lr=args.lr,
                   batch_size=args.batch_size, out_dir=run, resume=(run / "last.pt").exists(),
                   device="cpu", seed=args.seed, grad_clip=args.grad_clip,
                   verbose=args.verbose)
    seconds = time.perf_counter() - started   # this call's share, if it resumed a run
    best = torch.load(result.best, weights_only=True)
    out = Path(args.out_dir) / f"{family}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(load_model(result.best), out, config=best["config"], history=best["history"],
               best=best["best"], epoch=best["epoch"])
    summary = {"family": family, "train": len(train_set), "val": len(val_set),
               "epochs": epochs, "best_epoch": result.best_epoch,
               "best_val_loss": result.best_loss,
               "first_val_loss": result.history[0].get("val_loss"),
               "train_seconds_this_call": round(seconds, 1),
               "train_seconds_total": round(float(result.history[-1]["elapsed"]), 1),
               "model": out.name,
               "bytes": out.stat().st_size}
    print(json.dumps(summary), flush=True)
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(RELAXATION_FAMILIES),
                    choices=RELAXATION_FAMILIES)
    ap.add_argument("--count", type=int, default=128, help="training instances per family (128)")
    ap.add_argument("--val-count", type=int, default=16, help="validation instances (16)")
    ap.add_argument("--epochs", type=int, default=0,
                    help=f"epochs for every family (default per family: {EPOCHS})")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-clip", type=float, default=1.0,
                    help="gradient norm clip (1.0; without it Adam's loss spikes now and then)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: more threads thrash on a shared 2-core machine)")
    ap.add_argument("--work", default=".devdata/family_models",
                    help="datasets and training runs (git-ignored)")
    ap.add_argument("--out-dir", default=str(MODELS), help="where {family}.pt goes")
    ap.add_argument("--verbose", action="store_true", help="one line per epoch")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    summaries = [train_family(family, args) for family in args.families]
    path = Path(args.out_dir) / "training.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update({s["family"]: s for s in summaries})
    path.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
