"""Training PDHG-Net (or any model of the same interface) on labelled LP datasets.

``train(model, train_set, val_set, ...)`` trains any ``torch.nn.Module`` whose
``forward(batch)`` returns ``(x_pred, y_pred)``: one prediction per variable node and one per
constraint node of a PyG batch of LP graphs (:class:`l2o.datasets.store.LPDataset` items), with

* Adam on the per-instance relative squared error of x and y (:mod:`l2o.training.loss`),
  ``mean_b ||x^_b - x*_b||^2 / (||x*_b||^2 + eps) + w ||y^_b - y*_b||^2 / (||y*_b||^2 + eps)``,
  plus, with ``kkt_weight`` > 0, that weight times the prediction's squared relative KKT error;
* validation after every epoch; ``metrics.csv`` (epoch, train/val loss and their primal, dual
  and KKT parts, lr, epoch time, elapsed time), ``loss.png``, TensorBoard under ``tensorboard/``
  when the package is installed;
* ``best.pt`` (lowest validation loss; training loss without a validation set) and ``last.pt``
  written atomically after every epoch: model and optimizer state, epoch, RNG states, settings
  and history, all loadable with ``torch.load(weights_only=True)``;
* ``resume=True`` continues from ``last.pt``: the data order of epoch e is a permutation seeded
  by ``seed + e`` (``DistributedSampler``) and the RNG states are restored, so a run killed and
  resumed ends with the same weights as an uninterrupted one (bit for bit on the CPU; an epoch
  interrupted midway is redone from its start);
* DistributedDataParallel when started by ``torchrun --nproc_per_node N -m l2o train ...``
  (RANK / WORLD_SIZE / LOCAL_RANK; NCCL on GPUs, gloo on the CPU): every process trains on its
  shard of each epoch's permutation (``DistributedSampler``), gradients are averaged, losses
  are summed over processes, and only rank 0 writes files or prints. With batch size b on N
  processes a step sees the same N b instances as one process with batch size N b (when the
  training set size is not a multiple of N, the sampler repeats a few instances so that every
  process gets as many; validation is split without repeats).

The CLI is ``l2o train --data DIR --out DIR --epochs N ...`` (:func:`build_parser` /
:func:`run_train`).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bilevel.persist import rng_state, set_rng_state
from l2o.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from l2o.training.distributed import Distributed, setup
from l2o.training.loss import instance_losses
from l2o.training.metrics import TensorBoard, plot_losses, write_csv

__all__ = [
    "TrainResult",
    "TrainingDiverged",
    "build_parser",
    "load_model",
    "make_model",
    "run_train",
    "train",
]

# Settings a resumed run must share with the checkpoint (else it would not continue the run).
_RESUME_STRICT = ("lr", "batch_size", "seed", "eps", "dual_weight", "kkt_weight", "grad_clip",
                  "weight_decay", "model_class", "model_config")
# Settings added after runs were saved: a checkpoint without the key had this value.
_LATER_DEFAULTS = {"kkt_weight": 0.0}
# Settings whose change is allowed but breaks the exact-continuation guarantee.
_RESUME_WARN = ("world_size", "train_size", "val_size")


class TrainingDiverged(RuntimeError):
    """The training loss became nan or inf."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        history: one dict per completed epoch (the columns of ``metrics.csv``).
        best_epoch, best_loss: the epoch of ``best.pt`` and its validation (or training) loss.
        out_dir: where the files are; ``last`` / ``best``: the checkpoint paths.
        stopped_early: the ``time_limit`` ended the call before ``epochs`` (resume continues).
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_loss: float
    out_dir: Path
    stopped_early: bool = False
    last: Path = field(init=False)
    best: Path = field(init=False)

    def __post_init__(self) -> None:
        self.last, self.best = self.out_dir / "last.pt", self.out_dir / "best.pt"


def _class_name(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _shard(dataset, rank: int, world_size: int):
    """Every ``world_size``-th item from ``rank`` (no padding: each item counted once)."""
    if world_size == 1:
        return dataset
    return torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world_size)))


def _run_epoch(model: nn.Module, loader, device: torch.device, run: Distributed, *,
               optimizer: torch.optim.Optimizer | None, eps: float, dual_weight: float,
               kkt_weight: float, grad_clip: float | None, log_every: int,
               log_prefix: str) -> list[float]:
    """One pass over ``loader``; trains when ``optimizer`` is given, else evaluates.

    Returns:
        [mean loss, mean primal error, mean dual error, mean KKT term] over all instances of all
        processes (nan when there are none). Sums stay on the device: one host sync per epoch
        (and one per ``log_every`` steps when logging).
    """
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, primal, dual, kkt, count
    for step, batch in enumerate(loader, start=1):
        batch = batch.to(device)
        with torch.set_grad_enabled(optimizer is not None):
            x_pred, y_pred = model(batch)
            losses, primal, dual, kkt = instance_losses(x_pred, y_pred, batch, eps=eps,
                                                        dual_weight=dual_weight,
                                                        kkt_weight=kkt_weight)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            losses.mean().backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        sums += torch.stack([losses.detach().sum(), primal.detach().sum(), dual.detach().sum(),
                             kkt.detach().sum(), losses.new_tensor(losses.numel())]
                            ).to(torch.float64)
        if log_every and step % log_every == 0 and run.is_main:
            running = (sums[0] / sums[4]).item()
            print(f"{log_prefix} step {step}: running loss {running:.4e}", flush=True)
    run.all_reduce_sum(sums)
    *totals, count = sums.tolist()
    if count == 0:
        return [math.nan] * 4
    return [total / count for total in totals]


def _init_defaults(model: nn.Module) -> dict[str, Any]:
    """The keyword defaults of the model class's constructor (e.g. PDHGNet's operator_norm)."""
    parameters = inspect.signature(type(model).__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _resume_state(path: Path, config: dict[str, Any], model: nn.Module,
                  optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load ``last.pt`` into model and optimizer after checking it continues this run."""
    checkpoint = load_checkpoint(path)
    old = {**_LATER_DEFAULTS, **checkpoint["config"]}
    if isinstance(old.get("model_config"), dict):  # keys added later mean their default then
        old["model_config"] = {**_init_defaults(model), **old["model_config"]}
    changed = [k for k in _RESUME_STRICT if old.get(k) != config.get(k)]
    if changed:
        detail = "; ".join(f"{k}: {old.get(k)!r} in the checkpoint, {config.get(k)!r} now"
                           for k in changed)
        raise ValueError(f"cannot resume {path}: settings differ ({detail}); resume with the "
                         f"same settings or train into a new directory")
    drift = [k for k in _RESUME_WARN if old.get(k) != config.get(k)]
    if drift:
        warnings.warn(f"resuming {path} with different {', '.join(drift)}: training continues "
                      f"but is no longer identical to an uninterrupted run", stacklevel=3)
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not fit this model/optimizer "
                              f"({str(exc).splitlines()[0]})") from exc
    return checkpoint


def train(model: nn.Module, train_set, val_set=None, *, epochs: int, lr: float = 1e-3,
          batch_size: int = 8, out_dir: str | Path, resume: bool = False, device: Any = "auto",
          seed: int = 0, log_every: int = 0, eps: float = 1e-6, dual_weight: float = 1.0,
          kkt_weight: float = 0.0, grad_clip: float | None = None, weight_decay: float = 0.0,
          num_workers: int = 0, verbose: bool = True,
          time_limit: float | None = None) -> TrainResult:
    """Train ``model`` to predict (x*, y*) (see the module docstring for what is written).

    Args:
        model: ``forward(batch) -> (x_pred (N,), y_pred (M,))``; its ``config`` attribute, if
            any, is stored so that :func:`load_model` can rebuild it.
        train_set, val_set: datasets of labelled LP graphs (``LPDataset`` or a ``Subset`` of
            one); ``val_set`` may be None (then ``best.pt`` follows the training loss).
        epochs: total epochs (a resumed run continues up to this number).
        lr, weight_decay: Adam's settings.  batch_size: instances per step and process.
        out_dir: directory of checkpoints and metrics (created).
        resume: continue from ``out_dir/last.pt`` (a fresh start if there is none yet).
        device: "auto", "cpu", "cuda" (under torchrun: GPU LOCAL_RANK) or a torch.device.
        seed: seeds the RNGs of a fresh run and the per-epoch data order.
        log_every: print the running loss every this many steps (0: once per epoch only).
        eps, dual_weight, kkt_weight: of the loss (:func:`l2o.training.loss.instance_losses`;
            kkt_weight > 0 adds the prediction's squared relative KKT error).
        grad_clip: clip the gradient's global norm to this value (None: no clipping).
        num_workers: DataLoader worker processes.
        verbose: print one line per epoch (rank 0 only).
        time_limit: wall-clock seconds for this call: after the epoch that reaches it, training
            stops with both checkpoints written (``stopped_early``); ``resume=True`` continues
            exactly where it stopped. None: no limit. All processes stop after the same epoch.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: bad settings, an empty training set, an ``out_dir`` holding a run while
            ``resume`` is False, or a checkpoint of a run with other settings.
        CheckpointError: a corrupted or foreign ``last.pt``.
        TrainingDiverged: the loss became nan/inf (the last good checkpoint is kept).
    """
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler
    from torch_geometric.loader import DataLoader

    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"train: epochs must be a positive integer, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"train: batch_size must be a positive integer, got {batch_size!r}")
    if time_limit is not None and not time_limit >= 0:
        raise ValueError(f"train: time_limit must be >= 0 seconds or None, got {time_limit!r}")
    if not (kkt_weight >= 0 and math.isfinite(kkt_weight)):
        raise ValueError(f"train: kkt_weight must be a finite number >= 0, got {kkt_weight!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"train: lr must be a positive number, got {lr!r}")
    if len(train_set) == 0:
        raise ValueError("train: the training set is empty")
    out = Path(out_dir)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if last_path.exists() and not resume:
        raise ValueError(f"{out} already holds a training run (last.pt); pass resume=True "
                         f"(--resume) to continue it, or choose a new directory")

    call_started = time.perf_counter()
    stopped_early = False
    run = setup(device)
    try:
        config = {"epochs": epochs, "lr": float(lr), "batch_size": batch_size, "seed": int(seed),
                  "eps": float(eps), "dual_weight": float(dual_weight),
                  "kkt_weight": float(kkt_weight),
                  "grad_clip": None if grad_clip is None else float(grad_clip),
                  "weight_decay": float(weight_decay), "model_class": _class_name(model),
                  "model_config": getattr(model, "config", None),
                  "world_size": run.world_size, "train_size": len(train_set),
                  "val_size": 0 if val_set is None else len(val_set)}
        model.to(run.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        history: list[dict[str, Any]] = []
        best = {"epoch": 0, "loss": math.inf}
        if resume and last_path.exists():
            checkpoint = _resume_state(last_path, config, model, optimizer)
            history, best = list(checkpoint["history"]), dict(checkpoint["best"])
            set_rng_state(checkpoint["rng"])
            if run.is_main and verbose:
                print(f"resuming {last_path} after epoch {checkpoint['epoch']}", flush=True)
        else:
            _seed_everything(seed)
        start_epoch = len(history)

        net = (DistributedDataParallel(model, device_ids=[run.device.index]
                                       if run.device.type == "cuda" else None)
               if run.enabled else model)
        sampler = DistributedSampler(train_set, num_replicas=run.world_size, rank=run.rank,
                                     shuffle=True, seed=seed)
        train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler,
                                  num_workers=num_workers)
        val_loader = (DataLoader(_shard(val_set, run.rank, run.world_size),
                                 batch_size=batch_size, shuffle=False, num_workers=num_workers)
                      if val_set is not None and len(val_set) else None)
        board = TensorBoard(out / "tensorboard", purge_step=start_epoch + 1) if run.is_main \
            else None
        if run.is_main:
            out.mkdir(parents=True, exist_ok=True)
        elapsed = history[-1]["elapsed"] if history else 0.0
        common = {"eps": eps, "dual_weight": dual_weight, "kkt_weight": kkt_weight,
                  "grad_clip": grad_clip}

        for epoch in range(start_epoch, epochs):
            started = time.perf_counter()
            sampler.set_epoch(epoch)
            net.train()
            train_metrics = _run_epoch(net, train_loader, run.device, run, optimizer=optimizer,
                                       log_every=log_every, log_prefix=f"epoch {epoch + 1}",
                                       **common)
            if not all(math.isfinite(v) for v in train_metrics):
                raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: loss "
                                   f"{train_metrics[0]} (the last good checkpoint {last_path} "
                                   f"is kept); lower the learning rate or set grad_clip")
            val_metrics = [None] * 4
            if val_loader is not None:
                model.eval()
                val_metrics = _run_epoch(model, val_loader, run.device, run, optimizer=None,
                                         log_every=0, log_prefix="", **common)
            epoch_time = time.perf_counter() - started
            elapsed += epoch_time
            row = {"epoch": epoch + 1, "train_loss": train_metrics[0],
                       "train_primal": train_metrics[1], "train_dual": train_metrics[2],
                       "val_loss": val_metrics[0], "val_primal": val_metrics[1],
                       "val_dual": val_metrics[2], "train_kkt": train_metrics[3],
                       "val_kkt": val_metrics[3], "lr": optimizer.param_groups[0]["lr"],
                       "epoch_time": epoch_time, "elapsed": elapsed}
            history.append(row)
            score = row["val_loss"] if val_loader is not None else row["train_loss"]
            improved = score < best["loss"]
            if improved:
                best = {"epoch": epoch + 1, "loss": float(score)}
            if run.is_main:
                state = {"epoch": epoch + 1, "model": model.state_dict(),
                             "model_class": _class_name(model),
                             "model_config": getattr(model, "config", None),
                             "optimizer": optimizer.state_dict(), "rng": rng_state(), "config": config,
                             "history": history, "best": best}
                # best before last: a run killed in between redoes this epoch and rewrites both.
                if improved:
                    save_checkpoint(state, best_path)
                save_checkpoint(state, last_path)
                write_csv(history, out / "metrics.csv")
                if not plot_losses(history, out / "loss.png") and epoch == start_epoch:
                    warnings.warn("matplotlib is not installed: no loss.png (metrics.csv has "
                                  "the same numbers)", stacklevel=2)
                board.log(row)
                if verbose:
                    val = "" if val_loader is None else f"  val {row['val_loss']:.4e}"
                    print(f"epoch {epoch + 1}/{epochs}  train {row['train_loss']:.4e}{val}  "
                          f"lr {row['lr']:.2e}  {epoch_time:.1f} s" + ("  *" if improved else ""),
                          flush=True)
            if time_limit is not None and epoch + 1 < epochs:
                # one decision for all processes (their clocks differ): stop if any is over
                over = torch.tensor([float(time.perf_counter() - call_started >= time_limit)],
                                    dtype=torch.float64, device=run.device)
                if run.all_reduce_sum(over).item() > 0:
                    stopped_early = True
                    if run.is_main and verbose:
                        print(f"time limit of {time_limit:g} s reached after epoch {epoch + 1}; "
                              f"resume to continue", flush=True)
                    break
        if board is not None:
            board.close()
        # Free the DDP wrapper while the process group is still registered, so that its
        # reducer only drops a reference and the group is destroyed by destroy_process_group
        # (which releases the GIL). Destroyed through the reducer instead, gloo's destructor
        # joins its worker thread with the GIL held while that thread may still need the GIL
        # to free the last collective's tensors: a deadlock (pytorch/pytorch#56297) that hung
        # the two-process test once on this project's CI machine.
        del net
        gc.collect()
    except BaseException:
        run.close(barrier=False)
        raise
    run.close()
    return TrainResult(history=history, best_epoch=best["epoch"], best_loss=best["loss"],
                       out_dir=out, stopped_early=stopped_early)


# ---- models -------------------------------------------------------------------------------------

def make_model(args: argparse.Namespace) -> nn.Module:
    """The model ``l2o train`` trains: ``l2o.net.PDHGNet(hidden=..., layers=..., scaling=...,
    operator_norm=..., messages=...)``."""
    from l2o.net import PDHGNet

    model = PDHGNet(hidden=args.hidden, layers=args.layers,
                    scaling=bool(getattr(args, "scaling", False)),
                    operator_norm=getattr(args, "operator_norm", "estimate"),
                    messages=getattr(args, "messages", "plain"))
    return model.to(torch.float64) if getattr(args, "dtype", "float32") == "float64" else model


def load_model(path: str | Path, device: Any = "cpu") -> nn.Module:
    """The trained ``PDHGNet`` of a checkpoint (``best.pt`` / ``last.pt``), in eval mode.

    A path only; :func:`l2o.net.load_model` also takes the name of a bundled model.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: corrupted/foreign file, another model class, or weights that do not fit.
    """
    from l2o.net.warmstart import load_checkpoint_model

    return load_checkpoint_model(path, device)


# ---- command line ---------------------------------------------------------------------------------

def _split(dataset, fraction: float, seed: int):
    """(train, validation) subsets: a seeded random ``fraction`` of the items for validation."""
    from torch.utils.data import Subset

    if not 0 < fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {fraction}")
    count = len(dataset)
    n_val = max(1, round(fraction * count))
    if n_val >= count:
        raise ValueError(f"--val-fraction {fraction} leaves no training instances out of {count}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(order[n_val:])), Subset(dataset, sorted(order[:n_val]))


def build_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` to an ``argparse`` subparsers object; sets ``handler=run_train``."""
    parser = subparsers.add_parser(
        "train", help="train PDHG-Net on a labelled LP dataset (torchrun for multi-GPU)",
        description="Train PDHG-Net to predict optimal (x, y) on a dataset built with "
                    "`l2o dataset build`. Writes OUT/metrics.csv, OUT/loss.png, OUT/best.pt and "
                    "OUT/last.pt after every epoch; --resume continues a stopped run exactly. "
                    "Multi-GPU: torchrun --nproc_per_node N -m l2o train ...",
        epilog="exit codes: 0 trained, 2 bad option / settings, 3 missing or unreadable data or "
               "checkpoint, 1 training failed (e.g. diverged)")
    parser.add_argument("--data", required=True, metavar="DIR", help="training dataset")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-data", metavar="DIR", help="validation dataset")
    val.add_argument("--val-fraction", type=float, metavar="F",
                     help="hold out this fraction of --data for validation (default: 0.1; 0: no "
                          "validation, best.pt follows the training loss)")
    parser.add_argument("--out", "-o", required=True, metavar="DIR",
                        help="output directory (checkpoints and metrics)")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="instances per step and process (8)")
    parser.add_argument("--hidden", type=int, default=64, help="channels per node (64)")
    parser.add_argument("--layers", type=int, default=4, help="unrolled PDHG layers (4)")
    parser.add_argument("--scaling", action="store_true",
                        help="work on the solver's preconditioned LP (PDHGNet(scaling=True))")
    parser.add_argument("--operator-norm", choices=("estimate", "bound"), default="estimate",
                        help="normalize the learned steps by a power-iteration estimate of ||A|| "
                             "(default) or by the bound ||A~|| <= 1 of the preconditioned LP "
                             "(needs --scaling; prediction then runs no power iteration)")
    parser.add_argument("--messages", choices=("plain", "signed"), default="plain",
                        help="one channel map per message direction (plain, the paper's layer; "
                             "default) or one per sign of A_ij (signed: tells positive from "
                             "negative coefficients, two sparse products per direction)")
    parser.add_argument("--dual-weight", type=float, default=1.0,
                        help="weight of the dual term of the loss (1)")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="stop after the epoch that reaches this wall-clock time, with the "
                             "checkpoints written; --resume continues exactly (default: none)")
    parser.add_argument("--kkt-weight", type=float, default=0.0,
                        help="weight of the prediction's squared relative KKT error (primal "
                             "residual, dual residual, gap of the start the solver would get) "
                             "in the loss (0: labels only)")
    parser.add_argument("--grad-clip", type=float, metavar="NORM",
                        help="clip the gradient norm (default: no clipping)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--cache", action="store_true",
                        help="keep the graphs in memory after their first load (faster epochs)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (0)")
    parser.add_argument("--log-every", type=int, default=0, metavar="STEPS",
                        help="print the running loss every STEPS steps (default: per epoch)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT from last.pt")
    parser.set_defaults(handler=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Run ``l2o train`` from parsed arguments; returns the exit code."""
    from l2o.datasets.store import LPDataset

    command = "l2o train"
    try:
        dtype = torch.float64 if args.dtype == "float64" else torch.float32
        torch.manual_seed(args.seed)  # reproducible initial weights (DDP broadcasts rank 0's)
        model = make_model(args)
        # the graphs the model expects: preconditioned ones for PDHGNet(scaling=True)
        graphs = {"dtype": dtype, "scaling": bool(getattr(model, "scaling", False)),
                  "cache": args.cache}
        data = LPDataset(args.data, **graphs)
        if args.val_data is not None:
            train_set, val_set = data, LPDataset(args.val_data, **graphs)
        elif args.val_fraction == 0:
            train_set, val_set = data, None
        else:
            fraction = 0.1 if args.val_fraction is None else args.val_fraction
            train_set, val_set = _split(data, fraction, args.seed)
        train(model, train_set, val_set, epochs=args.epochs, lr=args.lr,
              batch_size=args.batch_size, out_dir=args.out, resume=args.resume,
              device=args.device, seed=args.seed, log_every=args.log_every,
              dual_weight=args.dual_weight, kkt_weight=args.kkt_weight,
              grad_clip=args.grad_clip, num_workers=args.num_workers,
              time_limit=args.time_limit)
    except FileNotFoundError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 3
    except CheckpointError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 3
    except ValueError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 1
    return 0
