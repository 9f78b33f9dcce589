"""``l2o dataset build --family F --count N [--SIZE-OPTION VALUE ...] --out DIR [--batch N]``.

Builds a labelled dataset with :func:`l2o.datasets.build_dataset` (see there for resuming,
extending and the instances left out).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from l2o.datasets.families import family_names, family_options

from ._common import CommandError, command, new_parser, option_type
from .exit_codes import ExitCode

__all__ = ["add_parser", "run"]

_COMMAND = "l2o dataset build"


def _size_options_by_name() -> dict[str, list[tuple[str, Any]]]:
    """option name -> [(family, default), ...] over every family (seed excluded)."""
    names: dict[str, list[tuple[str, Any]]] = {}
    for family in family_names():
        for name, default in family_options(family).items():
            if name != "seed":
                names.setdefault(name, []).append((family, default))
    return names


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``dataset`` (with its action ``build``) to the subcommands; returns its parser."""
    dataset = commands.add_parser(
        "dataset", help="build labelled LP datasets for training PDHG-Net",
        description="Datasets of generated LPs labelled with their optimal solutions.")
    actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    build = new_parser(
        actions, "build", summary="generate, solve and store N labelled instances of a family",
        description="Generate N instances of an LP family (instance i with seed S + i), solve "
                    "each with l2o.solve_lp to --tol for the labels (x*, y*), and store one "
                    "file per instance plus manifest.json in DIR. Running the same command "
                    "again resumes an interrupted build (corrupted files are redone); a larger "
                    "--count extends the dataset. Instances whose solve is not optimal are "
                    "left out and listed in the manifest (exit code 0).",
        codes=(ExitCode.OK, ExitCode.INTERNAL_ERROR, ExitCode.USAGE_ERROR, ExitCode.BAD_INPUT))
    build.add_argument("--family", required=True, choices=sorted(family_names()))
    build.add_argument("--count", "-n", required=True, type=int, metavar="N",
                       help="number of instances")
    build.add_argument("--out", "-o", required=True, metavar="DIR", help="dataset directory")
    build.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    build.add_argument("--tol", type=float, default=1e-8,
                       help="relative KKT tolerance of the labelling solves (default: 1e-8)")
    build.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where the labelling solves run (default: auto)")
    build.add_argument("--time-limit", type=float, metavar="S",
                       help="per-instance solve time limit; instances hitting it are excluded")
    build.add_argument("--batch", type=int, metavar="N",
                       help="label N instances at a time with l2o.solve_lp_batch (one stacked "
                            "PDHG run per N instances, without presolve); --time-limit is then "
                            "per batch")
    build.add_argument("--workers", type=int, metavar="N",
                       help="processes generating the instances ahead of the solves (default: "
                            "every CPU core but two, 1 to 16, when the solves run on CUDA; 0 on "
                            "the CPU); the dataset does not depend on it")
    build.add_argument("--keep-names", action="store_true", help="store row and column names")
    build.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    sizes = build.add_argument_group("size options (each belongs to some families; "
                                     "unset ones take the family default)")
    for name, owners in _size_options_by_name().items():
        defaults = ", ".join(f"{family}: {default}" for family, default in owners)
        sizes.add_argument(f"--{name.replace('_', '-')}", dest=f"size_{name}", default=None,
                           metavar="VALUE", help=f"default {defaults}")
    build.set_defaults(handler=run)
    return dataset


def _size_options(args: argparse.Namespace) -> dict[str, Any]:
    """The size options given, parsed with the types of ``--family``'s defaults."""
    defaults = family_options(args.family)
    options = {}
    for key, value in vars(args).items():
        if not key.startswith("size_") or value is None:
            continue
        name = key[len("size_"):]
        flag = f"--{name.replace('_', '-')}"
        if name not in defaults:
            raise CommandError(f"{flag} is not an option of family {args.family!r}; its "
                               f"options: {', '.join(k for k in defaults if k != 'seed')}",
                               ExitCode.USAGE_ERROR)
        try:
            options[name] = option_type(defaults[name])(value)
        except argparse.ArgumentTypeError as error:
            raise CommandError(f"{flag}: {error}", ExitCode.USAGE_ERROR) from None
    return options


@command(_COMMAND)
def run(args: argparse.Namespace) -> int:
    """Run ``l2o dataset build`` from parsed arguments; returns the exit code."""
    from l2o.datasets import build_dataset

    options = _size_options(args)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exclusions are listed in the summary below
            report = build_dataset(args.family, args.count, args.out, seed=args.seed,
                                   tol=args.tol, progress=not args.quiet, device=args.device,
                                   time_limit=args.time_limit, keep_names=args.keep_names,
                                   batch=args.batch, workers=args.workers, **options)
    except ValueError as error:  # bad settings, device or directory (a missing file: exit 3)
        raise CommandError(str(error), ExitCode.USAGE_ERROR) from None
    print(f"{report.out_dir}: {report.stored} of {report.count} instances stored "
          f"({report.built} solved now, {report.kept} kept, {report.redone} redone) "
          f"in {report.elapsed:.1f} s (solves {report.solving:.1f} s)")
    for entry in report.excluded:
        print(f"{_COMMAND}: warning: instance {entry['index']} (seed {entry['seed']}) excluded: "
              f"{entry['status']} ({entry['message']})", file=sys.stderr)
    return ExitCode.OK
