"""``l2o train --data DIR --out DIR --epochs N ...``: train PDHG-Net on a labelled dataset.

The model is :func:`make_model`'s PDHGNet, the loop :func:`l2o.training.train` (also under
``torchrun --nproc_per_node N -m l2o train ...``).
"""

from __future__ import annotations

import argparse

from ._common import CommandError, command, new_parser
from .exit_codes import ExitCode

__all__ = ["add_parser", "make_model", "run"]


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``train`` to the subcommands; returns its parser."""
    parser = new_parser(
        commands, "train", summary="train PDHG-Net on a labelled LP dataset (torchrun for "
                                   "multi-GPU)",
        codes=(ExitCode.OK, ExitCode.INTERNAL_ERROR, ExitCode.USAGE_ERROR, ExitCode.BAD_INPUT),
        description="Train PDHG-Net to predict optimal (x, y) on a dataset built with "
                    "`l2o dataset build`. Writes OUT/metrics.csv, OUT/loss.png, OUT/best.pt and "
                    "OUT/last.pt after every epoch; --resume continues a stopped run exactly. "
                    "Multi-GPU: torchrun --nproc_per_node N -m l2o train ...")
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
    parser.add_argument("--normalize", action="store_true",
                        help="rescale each instance's objective and bounds to root mean square 1 "
                             "(PDHGNet(normalize=(1, 1))): the solver's own rescaling shrinks "
                             "them like 1/sqrt(size), so without it a model meets inputs of "
                             "another magnitude at another size")
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
    parser.set_defaults(handler=run)
    return parser


@command("l2o train")
def run(args: argparse.Namespace) -> int:
    """Run ``l2o train`` from parsed arguments; returns the exit code."""
    import torch

    from l2o.datasets.store import LPDataset
    from l2o.training import CheckpointError, TrainingDiverged, train

    try:
        dtype = torch.float64 if args.dtype == "float64" else torch.float32
        torch.manual_seed(args.seed)  # reproducible initial weights (DDP broadcasts rank 0's)
        model = make_model(args)
        # the graphs the model expects: preconditioned ones for PDHGNet(scaling=True)
        graphs = {"dtype": dtype, "scaling": bool(getattr(model, "scaling", False)),
                  "cache": args.cache, "transform": graph_transform(model)}
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
    except CheckpointError as error:  # a ValueError: caught first
        raise CommandError(str(error), ExitCode.BAD_INPUT) from None
    except ValueError as error:  # bad settings, device or output directory
        raise CommandError(str(error), ExitCode.USAGE_ERROR) from None
    except TrainingDiverged as error:
        raise CommandError(str(error), ExitCode.INTERNAL_ERROR) from None
    return ExitCode.OK


def graph_transform(model):
    """The dataset transform that gives ``model`` the graphs it reads: ``normalize_graph`` with
    the model's ``normalize`` root mean squares (None without them)."""
    from functools import partial

    from l2o.net.graph import normalize_graph

    normalize = getattr(model, "normalize", None)
    return None if normalize is None else partial(normalize_graph, objective_rms=normalize[0],
                                                  bound_rms=normalize[1])


def make_model(args: argparse.Namespace):
    """The model ``l2o train`` trains: ``l2o.net.PDHGNet(hidden=..., layers=..., scaling=...,
    operator_norm=..., messages=..., normalize=...)``."""
    import torch

    from l2o.net import PDHGNet

    model = PDHGNet(hidden=args.hidden, layers=args.layers,
                    scaling=bool(getattr(args, "scaling", False)),
                    operator_norm=getattr(args, "operator_norm", "estimate"),
                    messages=getattr(args, "messages", "plain"),
                    normalize=(1.0, 1.0) if getattr(args, "normalize", False) else None)
    return model.to(torch.float64) if getattr(args, "dtype", "float32") == "float64" else model


def _split(dataset, fraction: float, seed: int):
    """(train, validation) subsets: a seeded random ``fraction`` of the items for validation."""
    import torch
    from torch.utils.data import Subset

    if not 0 < fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {fraction}")
    count = len(dataset)
    n_val = max(1, round(fraction * count))
    if n_val >= count:
        raise ValueError(f"--val-fraction {fraction} leaves no training instances out of {count}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(order[n_val:])), Subset(dataset, sorted(order[:n_val]))
