"""Train one PDHG-Net per LP-relaxation family for the warm-start benchmark (``pdhgnet.py``).

For each family (set cover, combinatorial auction, capacitated facility location) this

1. builds a labelled training and validation set with :func:`l2o.datasets.build_dataset`
   (labels: ``l2o.solve_lp`` to 1e-8 on ``--label-device``), in shards of ``--shard-size``
   instances that ``--workers`` processes build side by side;
2. trains ``PDHGNet(hidden, layers, scaling=True, operator_norm=...)`` (the solver's
   preconditioned graphs, so one model sees instances of comparable scale) with
   :func:`l2o.training.train` on ``--device``, one run per (hidden, layers) combination, the runs
   in parallel processes with ``--parallel``;
3. writes the run with the lowest validation loss, its best epoch, weights only, to
   ``OUT_DIR/{family}.pt`` (loadable with ``l2o.net.load_model(path)``) and a summary of every
   run to ``OUT_DIR/training.json``. OUT_DIR (``--out-dir``) defaults to the git-ignored
   ``benchmarks/out/family_models``; ``--out-dir benchmarks/models`` replaces the tracked models
   that ``pdhgnet.py`` reads (their ``training.json`` is the record ``--baseline`` reads back).

Loss: the training loss of :func:`l2o.training.train`, the per-instance relative squared error
``||x^ - x*||^2 / ||x*||^2 + ||y^ - y*||^2 / ||y*||^2`` on the preconditioned graph ("label
loss"), plus ``--kkt-weight`` W times K = r_p^2 + r_d^2 + gap^2, the squared relative KKT error
of the start the solver would get (:func:`l2o.training.loss.kkt_losses`), averaged over the
validation instances. The best epoch and the best (hidden, layers) are chosen by that objective
within one weight. Several weights (``--kkt-weight 1 10``) are trained as further combinations,
each weight's models written to its own ``OUT_DIR/kkt{W}/`` (their objectives differ, so no
weight is "best" by validation loss; the benchmark decides). Every model, and with ``--baseline
DIR`` the models ``DIR/{family}.pt`` (e.g. the committed ones), is also evaluated on the same
validation set by the label loss alone (``check_val_loss``, ``baseline_val_loss``) and by the
mean K (``check_val_kkt``, ``baseline_val_kkt``), so old and new compare on equal terms.

``operator_norm="bound"`` (the default) divides the learned steps by the bound ||A~||_2 <= 1 of
the preconditioned operator instead of a power-iteration estimate: the prediction then runs no
power iteration (see ``l2o.net.model``).

Seeds: training instance i uses generator seed ``i`` (``0 .. count-1``), validation instance i
seed ``1,000,000 + i``; the benchmark draws its instances from seeds >= ``pdhgnet.BENCH_SEED``
(5,000,000), never used here (nor by ``examples/train_pagerank_model.py``, whose seeds are
10,000-40,015 and 900,001). The models committed before 2026-11-27 18:00 UTC used validation
seeds 1000-1015 (fine then: only 128 training seeds).

Time: with ``--time-budget S`` a run is one ``train(..., resume=True, time_limit=...)`` call:
it stops after the epoch that reaches S seconds (or ``--deadline``), so it may overrun by up to
one epoch, or at ``--epochs``; ``best.pt`` keeps the best epoch, and calling the script again
resumes the run exactly (data order and RNG states are restored). Per-epoch numbers are in each
run's ``metrics.csv``.
``--deadline S`` caps the whole script (labels + training) at S seconds of wall time and
``--label-budget S`` skips label shards not started S seconds after the start (the summary gives
the instances actually used).

Sizes are each family's generator defaults (``l2o.datasets.family_options``). CPU defaults (a few
minutes per family on a 2-core CPU):

    python benchmarks/train_family_models.py [--families setcover auction facility]
        [--count 128] [--val-count 16] [--epochs N] [--work benchmarks/out/family_models/work]

On a GPU machine with 16 cores (labels on the CPU cores, training on the GPU), e.g.:

    python benchmarks/train_family_models.py --device cuda --label-device cpu --workers 13 \\
        --gpu-label-workers 3 --shard-size 16 --label-budget 170 --count 1024 --val-count 64 \\
        --hidden 64 --layers 4 8 --batch-size 16 --parallel --epochs 1000 --time-budget 260 \\
        --deadline 460 --baseline benchmarks/models --work /tmp/fam --out-dir OUT/models

(add ``--kkt-weight 1 10`` for the KKT term; those runs' directories are ``run_h64_l8_kkt1``...).

PageRank is not trained here: the benchmark uses the bundled model ``l2o/models/pagerank.pt``
(``examples/train_pagerank_model.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out  # noqa: E402

RELAXATION_FAMILIES = ("setcover", "auction", "facility")
# Epochs per family (--epochs overrides): set cover's validation loss was still falling at 60
# (0.59) and went on to 0.38 at 150; auction and facility level off before 60 (128 instances,
# hidden 32, 4 layers, batch 8 on the CPU).
EPOCHS = {"setcover": 150, "auction": 60, "facility": 60}
TRAIN_SEED, VAL_SEED = 0, 1_000_000
LABEL_TOL = 1e-8


# ---- labelled data, in shards -------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    """Instances ``first .. first + count - 1`` of one split: generator seeds ``seed + first ..``.

    Stored in its own dataset directory ``folder`` (its records numbered from 0); a split is the
    concatenation of its shards in order, so instance i of the split always has seed ``seed + i``
    whatever the shard size.
    """

    family: str
    split: str
    first: int
    count: int
    seed: int
    folder: str
    device: str


def plan_shards(family: str, split: str, count: int, seed: int, size: int, root: Path,
                device: str) -> list[Shard]:
    """The shards of one split: ``ceil(count / size)`` directories ``root/family/split/NNNN``."""
    if count < 1 or size < 1:
        raise ValueError(f"{family} {split}: need count >= 1 and shard size >= 1, got {count}, "
                         f"{size}")
    return [Shard(family, split, first, min(size, count - first), seed,
                  str(root / family / split / f"{first // size:04d}"), device)
            for first in range(0, count, size)]


_WORKER_DEVICE: str | None = None  # a pool worker's label device (None: the shard's own)


def _label_worker(devices) -> None:
    """Pool initializer: take one label device from the shared queue, one solve thread."""
    global _WORKER_DEVICE
    _WORKER_DEVICE = devices.get()
    torch.set_num_threads(1)  # one solve per process: the processes are the parallelism


def build_shard(shard: Shard, not_after: float = math.inf) -> dict:
    """Build (or resume) one shard unless ``time.time()`` is past ``not_after``; a summary."""
    from l2o.datasets import build_dataset

    if time.time() > not_after:
        return asdict(shard) | {"skipped": True}
    device = _WORKER_DEVICE or shard.device
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exclusions are counted in the summary
        report = build_dataset(shard.family, shard.count, shard.folder,
                               seed=shard.seed + shard.first, tol=LABEL_TOL, progress=False,
                               device=device)
    return asdict(shard) | {"device": device, "skipped": False, "stored": report.stored,
                            "built": report.built, "kept": report.kept,
                            "excluded": len(report.excluded),
                            "seconds": round(time.perf_counter() - started, 1)}


def build_all(shards: list[Shard], workers: int, not_after: float,
              gpu_workers: int = 0) -> list[dict]:
    """Build every shard, ``workers`` processes on each shard's device plus ``gpu_workers``
    processes on CUDA, each taking the next shard when it is free (in this process when there
    is one worker in all)."""
    if workers + gpu_workers <= 1:
        results = [build_shard(s, not_after) for s in shards]
    else:
        # spawn: a fresh interpreter per worker (a CUDA label device cannot follow a fork)
        context = multiprocessing.get_context("spawn")
        devices = context.Queue()
        for device in [None] * workers + ["cuda"] * gpu_workers:
            devices.put(device)
        with context.Pool(workers + gpu_workers, _label_worker, (devices,)) as pool:
            results = pool.starmap(build_shard, [(s, not_after) for s in shards], chunksize=1)
    for name, c in label_counts(results).items():
        print(f"{name}: {c['stored']} instances stored ({c['excluded']} excluded, "
              f"{c['skipped']} skipped for time), {c['worker_seconds']:.0f} s of worker time",
              flush=True)
    return results


def label_counts(results: list[dict]) -> dict[str, dict]:
    """Per "family split": instances stored, excluded (not optimal), skipped; worker seconds."""
    counts: dict[str, dict] = {}
    for r in results:
        c = counts.setdefault(f"{r['family']} {r['split']}",
                              {"stored": 0, "excluded": 0, "skipped": 0, "worker_seconds": 0.0})
        c["stored"] += r.get("stored", 0)
        c["excluded"] += r.get("excluded", 0)
        c["skipped"] += r["count"] if r["skipped"] else 0
        c["worker_seconds"] = round(c["worker_seconds"] + r.get("seconds", 0.0), 1)
        if not r["skipped"]:  # instances and seconds per label device: their throughput
            d = c.setdefault("by_device", {}).setdefault(r["device"], [0, 0.0])
            d[0], d[1] = d[0] + r["stored"], round(d[1] + r["seconds"], 1)
    return counts


def load_split(family: str, split: str, root: Path):
    """The finished shards of a split as one dataset of preconditioned float32 graphs."""
    from torch.utils.data import ConcatDataset

    from l2o.datasets import LPDataset
    from l2o.datasets.store import MANIFEST, read_manifest

    parts = []
    for folder in sorted((root / family / split).glob("[0-9][0-9][0-9][0-9]")):
        if (folder / MANIFEST).exists() and read_manifest(folder).get("complete", False):
            parts.append(LPDataset(folder, scaling=True, cache=True, dtype=torch.float32))
    if not parts:
        raise RuntimeError(f"{family} {split}: no finished shard under {root / family / split}")
    return ConcatDataset(parts)


def seed_ranges(family: str, split: str, root: Path) -> list[list[int]]:
    """The generator seeds of a split's finished shards, as merged [first, last] ranges."""
    from l2o.datasets.store import MANIFEST, read_manifest

    ranges: list[list[int]] = []
    for folder in sorted((root / family / split).glob("[0-9][0-9][0-9][0-9]")):
        if not (folder / MANIFEST).exists():
            continue
        manifest = read_manifest(folder)
        if not manifest.get("complete", False):
            continue
        first, last = int(manifest["seeds"]["first"]), int(manifest["seeds"]["last"])
        if ranges and ranges[-1][1] + 1 == first:
            ranges[-1][1] = last
        else:
            ranges.append([first, last])
    return ranges


# ---- training -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One training run: a family and one (hidden, layers) combination, plus the settings."""

    family: str
    hidden: int
    layers: int
    operator_norm: str
    epochs: int
    budget: float          # seconds of training (inf: none)
    stop_at: float         # time.time() by which training must end (inf: none)
    work: str
    device: str
    lr: float
    batch_size: int
    grad_clip: float
    seed: int
    threads: int
    kkt_weight: float = 0.0

    @property
    def name(self) -> str:
        kkt = f" kkt{self.kkt_weight:g}" if self.kkt_weight else ""
        return f"{self.family} h{self.hidden} L{self.layers}{kkt}"

    @property
    def run_dir(self) -> Path:
        # weight 0 keeps the directory name of runs made before --kkt-weight (they resume)
        kkt = f"_kkt{self.kkt_weight:g}" if self.kkt_weight else ""
        return Path(self.work) / self.family / f"run_h{self.hidden}_l{self.layers}{kkt}"


def train_job(job: Job) -> dict:
    """Train one run up to ``job.epochs`` or its time budget / ``job.stop_at``; a summary dict."""
    from l2o.net import PDHGNet
    from l2o.training import train

    torch.set_num_threads(job.threads)
    warnings.filterwarnings("ignore", message="matplotlib is not installed")
    root = Path(job.work)
    train_set = load_split(job.family, "train", root)
    val_set = load_split(job.family, "val", root)
    torch.manual_seed(job.seed)
    model = PDHGNet(hidden=job.hidden, layers=job.layers, scaling=True,
                    operator_norm=job.operator_norm)
    started = time.perf_counter()
    end = min(time.time() + job.budget, job.stop_at)
    limit = max(0.0, end - time.time()) if math.isfinite(end) else None
    result = train(model, train_set, val_set, epochs=job.epochs, lr=job.lr,
                   batch_size=job.batch_size, out_dir=job.run_dir, resume=True,
                   device=job.device, seed=job.seed, grad_clip=job.grad_clip,
                   kkt_weight=job.kkt_weight, verbose=False, time_limit=limit)
    stopped = "time" if result.stopped_early else "epochs"
    row = result.history[-1]
    kkt = f" (kkt {row['val_kkt']:.4f})" if job.kkt_weight else ""
    print(f"[{job.name}] epoch {len(result.history)}: train {row['train_loss']:.4f} val "
          f"{row['val_loss']:.4f}{kkt} best {result.best_loss:.4f} (epoch "
          f"{result.best_epoch}), stopped by {stopped}, {time.perf_counter() - started:.0f} s",
          flush=True)
    best_row = result.history[result.best_epoch - 1] if result.best_epoch else {}
    return {"family": job.family, "hidden": job.hidden, "layers": job.layers,
            "kkt_weight": job.kkt_weight,
            "operator_norm": job.operator_norm, "train": len(train_set), "val": len(val_set),
            "epochs": len(result.history), "max_epochs": job.epochs, "stopped_by": stopped,
            "batch_size": job.batch_size, "lr": job.lr, "device": job.device,
            "best_epoch": result.best_epoch, "best_val_loss": result.best_loss,
            "best_val_kkt": best_row.get("val_kkt"),
            "first_val_loss": result.history[0].get("val_loss"),
            "last_train_loss": result.history[-1]["train_loss"],
            "train_seconds_this_call": round(time.perf_counter() - started, 1),
            "train_seconds_total": round(float(result.history[-1]["elapsed"]), 1),
            "checkpoint": str(result.best)}


@torch.no_grad()
def validation_losses(model_path: Path, family: str, work: Path, device: str
                      ) -> tuple[float, float]:
    """(label loss, K) of a saved model on a family's validation split, each the mean over the
    instances: the relative squared error of (x, y) (train's loss without the KKT term) and
    the squared relative KKT error K of the start the solver would get."""
    from torch_geometric.loader import DataLoader

    from l2o.net import load_model
    from l2o.training.loss import instance_losses

    model = load_model(model_path, device)
    label, kkt, count = 0.0, 0.0, 0
    for batch in DataLoader(load_split(family, "val", work), batch_size=16):
        batch = batch.to(device)
        # kkt_weight=1 only to have K computed; the label loss is primal + dual (weight 1)
        _, primal, dual, k = instance_losses(*model(batch), batch, kkt_weight=1.0)
        label += float((primal + dual).sum())
        kkt += float(k.sum())
        count += primal.numel()
    return label / count, kkt / count


def safe_train_job(job: Job) -> dict:
    """:func:`train_job`, but a failed run (e.g. diverged) is reported, not raised, so the other
    runs of a parallel call keep their results; its ``best.pt`` so far still counts."""
    try:
        return train_job(job)
    except Exception as error:  # noqa: BLE001 - reported in the summary and the log
        print(f"[{job.name}] failed: {error!r}", flush=True)
        best = job.run_dir / "best.pt"
        loss = (float(torch.load(best, weights_only=True)["best"]["loss"]) if best.exists()
                else math.inf)
        return {"family": job.family, "hidden": job.hidden, "layers": job.layers,
                "kkt_weight": job.kkt_weight, "error": repr(error), "best_val_loss": loss,
                "checkpoint": str(best) if best.exists() else None}


def run_jobs(jobs: list[Job], parallel: bool) -> list[dict]:
    """Every job's summary, the jobs one after another or each in its own process."""
    if not parallel or len(jobs) == 1:
        return [safe_train_job(job) for job in jobs]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        return pool.map(safe_train_job, jobs, chunksize=1)


# ---- command line -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(RELAXATION_FAMILIES),
                    choices=RELAXATION_FAMILIES)
    ap.add_argument("--count", type=int, default=128, help="training instances per family (128)")
    ap.add_argument("--val-count", type=int, default=16, help="validation instances (16)")
    ap.add_argument("--shard-size", type=int, default=64,
                    help="instances per dataset directory, the unit of parallel labelling (64)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where training runs (cpu)")
    ap.add_argument("--label-device", choices=("cpu", "cuda"),
                    help="where the labelling solves run (default: --device)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes building label shards side by side on --label-device "
                         "(1: in this process)")
    ap.add_argument("--gpu-label-workers", type=int, default=0,
                    help="extra label processes solving on CUDA, alongside --workers (0)")
    ap.add_argument("--epochs", type=int, default=0,
                    help=f"epochs for every run, the most under --time-budget (default per "
                         f"family: {EPOCHS})")
    ap.add_argument("--time-budget", type=float, metavar="S",
                    help="stop each run after the epoch that reaches S seconds (best epoch kept)")
    ap.add_argument("--deadline", type=float, metavar="S",
                    help="end all training after the epoch that reaches S seconds after the "
                         "script started")
    ap.add_argument("--label-budget", type=float, metavar="S",
                    help="skip label shards not started S seconds after the start")
    ap.add_argument("--hidden", type=int, nargs="+", default=[32],
                    help="channels per node; with several values (or --layers values) every "
                         "combination is trained and the lowest validation loss kept (32)")
    ap.add_argument("--layers", type=int, nargs="+", default=[4], help="unrolled layers (4)")
    ap.add_argument("--kkt-weight", type=float, nargs="+", default=[0.0], metavar="W",
                    help="weight of the prediction's squared relative KKT error in the loss "
                         "(0: label loss only); several values: one model set per weight, "
                         "in OUT_DIR/kkt{W}/ (0)")
    ap.add_argument("--operator-norm", choices=("estimate", "bound"), default="bound",
                    help="steps normalized by the power-iteration estimate of ||A~|| or by the "
                         "bound 1 (default: bound; no power iteration at prediction time)")
    ap.add_argument("--parallel", action="store_true",
                    help="train the runs (families x combinations) in parallel processes")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-clip", type=float, default=1.0,
                    help="gradient norm clip (1.0; without it Adam's loss spikes now and then)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads per process (1: more threads thrash on a shared "
                         "2-core machine)")
    ap.add_argument("--work", default=str(default_out("family_models") / "work"),
                    help="datasets and training runs (git-ignored)")
    ap.add_argument("--out-dir", default=str(default_out("family_models")),
                    help="where {family}.pt and training.json go (%(default)s)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also evaluate DIR/{family}.pt on the validation set (and copy DIR's "
                         "training.json entries under 'previous')")
    return ap


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if any(not (w >= 0 and math.isfinite(w)) for w in args.kkt_weight):
        raise SystemExit(f"--kkt-weight {args.kkt_weight}: weights must be finite and >= 0")
    if len(set(args.kkt_weight)) != len(args.kkt_weight):
        raise SystemExit(f"--kkt-weight {args.kkt_weight}: a weight is repeated")
    if args.count >= VAL_SEED - TRAIN_SEED:
        raise SystemExit(f"--count {args.count}: training seeds would reach the validation "
                         f"seeds ({VAL_SEED}..)")
    t0 = time.time()
    torch.set_num_threads(args.threads)
    work, out = Path(args.work), Path(args.out_dir)
    label_device = args.label_device or args.device

    # 1. labels: shards of all families in one pool; validation first (training needs it),
    # then the training shards of the families in turn (a label budget cuts each family alike)
    shards = []
    for split, count, seed in (("val", args.val_count, VAL_SEED),
                               ("train", args.count, TRAIN_SEED)):
        plans = [plan_shards(family, split, count, seed, args.shard_size, work, label_device)
                 for family in args.families]
        shards += [s for group in itertools.zip_longest(*plans) for s in group if s]
    not_after = t0 + args.label_budget if args.label_budget else math.inf
    labels = build_all(shards, args.workers, not_after, args.gpu_label_workers)
    label_seconds = time.time() - t0
    print(f"labels: {label_seconds:.0f} s wall on {args.workers} worker(s) on {label_device} "
          f"+ {args.gpu_label_workers} on cuda", flush=True)

    # 2. training: one job per family and (hidden, layers)
    stop_at = t0 + args.deadline if args.deadline else math.inf
    jobs = [Job(family, hidden, layers, args.operator_norm,
                args.epochs or EPOCHS[family], args.time_budget or math.inf, stop_at,
                str(work), args.device, args.lr, args.batch_size, args.grad_clip, args.seed,
                args.threads, weight)
            for family in args.families
            for weight, hidden, layers in itertools.product(args.kkt_weight, args.hidden,
                                                            args.layers)]
    runs = run_jobs(jobs, args.parallel)

    # 3. the best run per family and weight, weights only; the summary (one per output folder)
    baselines = {}  # family -> (label loss, K) of the baseline model, evaluated once
    summaries = {}
    for weight in args.kkt_weight:
        folder = out if len(args.kkt_weight) == 1 else out / f"kkt{weight:g}"
        summaries[str(folder)] = write_models(
            args, [r for r in runs if r["kkt_weight"] == weight], folder, work,
            label_device, baselines)
    labels_summary = {"seconds": round(label_seconds, 1), "workers": args.workers,
                      "device": label_device, "gpu_workers": args.gpu_label_workers,
                      "tol": LABEL_TOL, "splits": label_counts(labels)}
    for folder, summary in summaries.items():
        summary["_labels"] = labels_summary
        (Path(folder) / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summaries[str(out)] if len(summaries) == 1 else summaries


def write_models(args, runs: list[dict], out: Path, work: Path, label_device: str,
                 baselines: dict) -> dict:
    """Write each family's best run of ``runs`` (one KKT weight) to ``out/{family}.pt``; the
    ``training.json`` summary of ``out`` updated with their entries (not yet written)."""
    from l2o.net import load_model, save_model

    out.mkdir(parents=True, exist_ok=True)
    previous = {}
    if args.baseline and (Path(args.baseline) / "training.json").exists():
        previous = json.loads((Path(args.baseline) / "training.json").read_text())
    path = out / "training.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    for family in args.families:
        # within one weight the objectives are alike: the lowest validation objective wins
        mine = sorted((r for r in runs if r["family"] == family and r["checkpoint"]),
                      key=lambda r: r["best_val_loss"])
        if not mine:
            print(f"{family}: no run produced a model", flush=True)
            continue
        best = mine[0]
        checkpoint = torch.load(best["checkpoint"], weights_only=True)
        target = out / f"{family}.pt"
        save_model(load_model(best["checkpoint"]), target, config=checkpoint["config"],
                   history=checkpoint["history"], best=checkpoint["best"],
                   epoch=checkpoint["epoch"])
        entry = {k: v for k, v in best.items() if k != "checkpoint"} | {
            "model": target.name, "bytes": target.stat().st_size,
            "label_device": label_device, "label_tol": LABEL_TOL,
            "seeds": {split: seed_ranges(family, split, work) for split in ("train", "val")},
            "runs": [{k: r.get(k) for k in ("hidden", "layers", "kkt_weight", "epochs",
                                            "best_epoch", "best_val_loss", "best_val_kkt",
                                            "last_train_loss", "error")}
                     for r in runs if r["family"] == family]}
        # label loss and K of the kept model and of the baseline, on equal terms
        entry["check_val_loss"], entry["check_val_kkt"] = validation_losses(
            target, family, work, args.device)
        base = Path(args.baseline or "") / f"{family}.pt"
        if args.baseline and base.exists():
            if family not in baselines:
                baselines[family] = validation_losses(base, family, work, args.device)
            entry["baseline_val_loss"], entry["baseline_val_kkt"] = baselines[family]
        if family in previous:
            entry["previous"] = previous[family]
        summary[family] = entry
        print(json.dumps({k: v for k, v in entry.items() if k not in ("previous", "runs")}),
              flush=True)
    return summary


if __name__ == "__main__":
    main()
