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

The command line is ``l2o train --data DIR --out DIR --epochs N ...`` (:mod:`l2o.cli.train`).

:func:`train` is four named steps: :func:`_setup` (devices, optimizer, resume or seed, data
loaders), :func:`_train_epoch` (one pass over the training set and the validation),
:func:`_save_epoch` (checkpoints and metrics, rank 0) and :func:`_time_is_up` (the stop
decision all processes share).
"""

from __future__ import annotations

import gc
import inspect
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bilevel.persist import rng_state, set_rng_state

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .distributed import Distributed, setup
from .loss import instance_losses
from .metrics import TensorBoard, plot_losses, write_csv

__all__ = ["TrainOptions", "TrainResult", "TrainingDiverged", "train"]

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


def _pass(model: nn.Module, loader, device: torch.device, run: Distributed, *,
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


@dataclass(frozen=True)
class TrainOptions:
    """The settings of a training run: :func:`train`'s keyword arguments, checked.

    Attributes:
        epochs: total epochs (a resumed run continues up to this number).
        lr, weight_decay: Adam's settings.  batch_size: instances per step and process.
        seed: seeds the RNGs of a fresh run and the per-epoch data order.
        log_every: print the running loss every this many steps (0: once per epoch only).
        eps, dual_weight, kkt_weight: of the loss (:func:`l2o.training.loss.instance_losses`;
            kkt_weight > 0 adds the prediction's squared relative KKT error).
        grad_clip: clip the gradient's global norm to this value (None: no clipping).
        num_workers: DataLoader worker processes.
        verbose: print one line per epoch (rank 0 only).
        time_limit: wall-clock seconds for this call (None: no limit; see :func:`train`).
    """

    epochs: int
    lr: float = 1e-3
    batch_size: int = 8
    seed: int = 0
    log_every: int = 0
    eps: float = 1e-6
    dual_weight: float = 1.0
    kkt_weight: float = 0.0
    grad_clip: float | None = None
    weight_decay: float = 0.0
    num_workers: int = 0
    verbose: bool = True
    time_limit: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"train: epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"train: batch_size must be a positive integer, got "
                             f"{self.batch_size!r}")
        if self.time_limit is not None and not self.time_limit >= 0:
            raise ValueError(f"train: time_limit must be >= 0 seconds or None, got "
                             f"{self.time_limit!r}")
        if not (self.kkt_weight >= 0 and math.isfinite(self.kkt_weight)):
            raise ValueError(f"train: kkt_weight must be a finite number >= 0, got "
                             f"{self.kkt_weight!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"train: lr must be a positive number, got {self.lr!r}")

    @property
    def loss(self) -> dict[str, Any]:
        """The keyword arguments of one pass's loss and gradient step (:func:`_pass`)."""
        return {"eps": self.eps, "dual_weight": self.dual_weight,
                "kkt_weight": self.kkt_weight, "grad_clip": self.grad_clip}

    def config(self, model: nn.Module, run: Distributed, train_set, val_set) -> dict[str, Any]:
        """The settings stored in the checkpoints (and compared on resume)."""
        return {"epochs": self.epochs, "lr": float(self.lr), "batch_size": self.batch_size,
                "seed": int(self.seed), "eps": float(self.eps),
                "dual_weight": float(self.dual_weight), "kkt_weight": float(self.kkt_weight),
                "grad_clip": None if self.grad_clip is None else float(self.grad_clip),
                "weight_decay": float(self.weight_decay), "model_class": _class_name(model),
                "model_config": getattr(model, "config", None),
                "world_size": run.world_size, "train_size": len(train_set),
                "val_size": 0 if val_set is None else len(val_set)}


@dataclass
class _Session:
    """The state of one :func:`train` call between its steps."""

    options: TrainOptions
    run: Distributed
    model: nn.Module
    net: nn.Module | None           # the model, wrapped in DistributedDataParallel when run
    optimizer: torch.optim.Optimizer
    sampler: Any
    train_loader: Any
    val_loader: Any
    board: TensorBoard | None
    out: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    best: dict[str, Any]
    start_epoch: int
    elapsed: float

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"



def train(model: nn.Module, train_set, val_set=None, *, epochs: int, lr: float = 1e-3,
          batch_size: int = 8, out_dir: str | Path, resume: bool = False, device: Any = "auto",
          seed: int = 0, log_every: int = 0, eps: float = 1e-6, dual_weight: float = 1.0,
          kkt_weight: float = 0.0, grad_clip: float | None = None, weight_decay: float = 0.0,
          num_workers: int = 0, verbose: bool = True,
          time_limit: float | None = None) -> TrainResult:
    """Train ``model`` to predict (x*, y*) (see the module docstring for what is written).

    Args:
        model: ``forward(batch) -> (x_pred (N,), y_pred (M,))``; its ``config`` attribute, if
            any, is stored so that :func:`l2o.net.load_model` can rebuild it.
        train_set, val_set: datasets of labelled LP graphs (``LPDataset`` or a ``Subset`` of
            one); ``val_set`` may be None (then ``best.pt`` follows the training loss).
        out_dir: directory of checkpoints and metrics (created).
        resume: continue from ``out_dir/last.pt`` (a fresh start if there is none yet).
        device: "auto", "cpu", "cuda" (under torchrun: GPU LOCAL_RANK) or a torch.device
            (:func:`l2o.device.resolve_device`).
        time_limit: wall-clock seconds for this call: after the epoch that reaches it, training
            stops with both checkpoints written (``stopped_early``); ``resume=True`` continues
            exactly where it stopped. None: no limit. All processes stop after the same epoch.
        epochs, lr, batch_size, seed, log_every, eps, dual_weight, kkt_weight, grad_clip,
            weight_decay, num_workers, verbose: see :class:`TrainOptions`.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: bad settings, a device this machine does not have, an empty training set,
            an ``out_dir`` holding a run while ``resume`` is False, or a checkpoint of a run
            with other settings.
        CheckpointError: a corrupted or foreign ``last.pt``.
        TrainingDiverged: the loss became nan/inf (the last good checkpoint is kept).
    """
    options = TrainOptions(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                           log_every=log_every, eps=eps, dual_weight=dual_weight,
                           kkt_weight=kkt_weight, grad_clip=grad_clip,
                           weight_decay=weight_decay, num_workers=num_workers, verbose=verbose,
                           time_limit=time_limit)
    if len(train_set) == 0:
        raise ValueError("train: the training set is empty")
    out = Path(out_dir)
    if (out / "last.pt").exists() and not resume:
        raise ValueError(f"{out} already holds a training run (last.pt); pass resume=True "
                         f"(--resume) to continue it, or choose a new directory")

    call_started = time.perf_counter()
    stopped_early = False
    run = setup(device)
    try:
        session = _setup(model, train_set, val_set, options, out, resume, run)
        for epoch in range(session.start_epoch, options.epochs):
            row, improved = _train_epoch(session, epoch)
            if run.is_main:
                _save_epoch(session, row, improved, epoch)
            if _time_is_up(session, epoch, call_started):
                stopped_early = True
                if run.is_main and options.verbose:
                    print(f"time limit of {options.time_limit:g} s reached after epoch "
                          f"{epoch + 1}; resume to continue", flush=True)
                break
        _finish(session)
    except BaseException:
        run.close(barrier=False)
        raise
    run.close()
    return TrainResult(history=session.history, best_epoch=session.best["epoch"],
                       best_loss=session.best["loss"], out_dir=out, stopped_early=stopped_early)


def _setup(model: nn.Module, train_set, val_set, options: TrainOptions, out: Path,
           resume: bool, run: Distributed) -> _Session:
    """Model and optimizer on the device; the resumed state (model, optimizer, history, RNG)
    or the seeded RNGs of a fresh run; the (distributed) model, sampler and loaders."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler
    from torch_geometric.loader import DataLoader

    config = options.config(model, run, train_set, val_set)
    model.to(run.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr,
                                 weight_decay=options.weight_decay)
    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "loss": math.inf}
    last_path = out / "last.pt"
    if resume and last_path.exists():
        checkpoint = _resume_state(last_path, config, model, optimizer)
        history, best = list(checkpoint["history"]), dict(checkpoint["best"])
        set_rng_state(checkpoint["rng"])
        if run.is_main and options.verbose:
            print(f"resuming {last_path} after epoch {checkpoint['epoch']}", flush=True)
    else:
        _seed_everything(options.seed)
    start_epoch = len(history)

    net = (DistributedDataParallel(model, device_ids=[run.device.index]
                                   if run.device.type == "cuda" else None)
           if run.enabled else model)
    sampler = DistributedSampler(train_set, num_replicas=run.world_size, rank=run.rank,
                                 shuffle=True, seed=options.seed)
    train_loader = DataLoader(train_set, batch_size=options.batch_size, sampler=sampler,
                              num_workers=options.num_workers)
    val_loader = (DataLoader(_shard(val_set, run.rank, run.world_size),
                             batch_size=options.batch_size, shuffle=False,
                             num_workers=options.num_workers)
                  if val_set is not None and len(val_set) else None)
    board = TensorBoard(out / "tensorboard", purge_step=start_epoch + 1) if run.is_main \
        else None
    if run.is_main:
        out.mkdir(parents=True, exist_ok=True)
    return _Session(options=options, run=run, model=model, net=net, optimizer=optimizer,
                    sampler=sampler, train_loader=train_loader, val_loader=val_loader,
                    board=board, out=out, config=config, history=history, best=best,
                    start_epoch=start_epoch,
                    elapsed=history[-1]["elapsed"] if history else 0.0)


def _train_epoch(session: _Session, epoch: int) -> tuple[dict[str, Any], bool]:
    """Epoch ``epoch`` (0-based): a training pass, then the validation pass.

    Returns:
        (the epoch's metrics row, appended to the history; whether it improved the best).

    Raises:
        TrainingDiverged: a nan/inf training loss.
    """
    s, options = session, session.options
    started = time.perf_counter()
    s.sampler.set_epoch(epoch)
    s.net.train()
    train_metrics = _pass(s.net, s.train_loader, s.run.device, s.run, optimizer=s.optimizer,
                          log_every=options.log_every, log_prefix=f"epoch {epoch + 1}",
                          **options.loss)
    if not all(math.isfinite(v) for v in train_metrics):
        raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: loss "
                               f"{train_metrics[0]} (the last good checkpoint {s.last_path} "
                               f"is kept); lower the learning rate or set grad_clip")
    val_metrics = [None] * 4
    if s.val_loader is not None:
        s.model.eval()
        val_metrics = _pass(s.model, s.val_loader, s.run.device, s.run, optimizer=None,
                            log_every=0, log_prefix="", **options.loss)
    epoch_time = time.perf_counter() - started
    s.elapsed += epoch_time
    row = {"epoch": epoch + 1, "train_loss": train_metrics[0],
           "train_primal": train_metrics[1], "train_dual": train_metrics[2],
           "val_loss": val_metrics[0], "val_primal": val_metrics[1],
           "val_dual": val_metrics[2], "train_kkt": train_metrics[3],
           "val_kkt": val_metrics[3], "lr": s.optimizer.param_groups[0]["lr"],
           "epoch_time": epoch_time, "elapsed": s.elapsed}
    s.history.append(row)
    score = row["val_loss"] if s.val_loader is not None else row["train_loss"]
    improved = score < s.best["loss"]
    if improved:
        s.best = {"epoch": epoch + 1, "loss": float(score)}
    return row, improved


def _save_epoch(session: _Session, row: dict[str, Any], improved: bool, epoch: int) -> None:
    """Rank 0 after an epoch: ``best.pt`` (if improved) and ``last.pt``, the metrics files,
    TensorBoard and the epoch's line."""
    s = session
    state = {"epoch": epoch + 1, "model": s.model.state_dict(),
             "model_class": _class_name(s.model),
             "model_config": getattr(s.model, "config", None),
             "optimizer": s.optimizer.state_dict(), "rng": rng_state(), "config": s.config,
             "history": s.history, "best": s.best}
    # best before last: a run killed in between redoes this epoch and rewrites both.
    if improved:
        save_checkpoint(state, s.best_path)
    save_checkpoint(state, s.last_path)
    write_csv(s.history, s.out / "metrics.csv")
    if not plot_losses(s.history, s.out / "loss.png") and epoch == s.start_epoch:
        warnings.warn("matplotlib is not installed: no loss.png (metrics.csv has the same "
                      "numbers)", stacklevel=3)
    s.board.log(row)
    if s.options.verbose:
        val = "" if s.val_loader is None else f"  val {row['val_loss']:.4e}"
        print(f"epoch {epoch + 1}/{s.options.epochs}  train {row['train_loss']:.4e}{val}  "
              f"lr {row['lr']:.2e}  {row['epoch_time']:.1f} s" + ("  *" if improved else ""),
              flush=True)


def _time_is_up(session: _Session, epoch: int, call_started: float) -> bool:
    """Whether the time limit ends the call after ``epoch``: one decision for all processes
    (their clocks differ: stop if any is over); never after the last epoch."""
    limit = session.options.time_limit
    if limit is None or epoch + 1 >= session.options.epochs:
        return False
    over = torch.tensor([float(time.perf_counter() - call_started >= limit)],
                        dtype=torch.float64, device=session.run.device)
    return session.run.all_reduce_sum(over).item() > 0


def _finish(session: _Session) -> None:
    """Close TensorBoard and free the DDP wrapper before the process group goes.

    Freed while the process group is still registered, the wrapper's reducer only drops a
    reference and the group is destroyed by destroy_process_group (which releases the GIL).
    Destroyed through the reducer instead, gloo's destructor joins its worker thread with the
    GIL held while that thread may still need the GIL to free the last collective's tensors: a
    deadlock (pytorch/pytorch#56297) that hung the two-process test once on this project's CI
    machine.
    """
    if session.board is not None:
        session.board.close()
    session.net = None
    gc.collect()
