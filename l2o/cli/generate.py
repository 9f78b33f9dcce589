"""``l2o generate FAMILY [--OPTION VALUE ...] --out FILE``: write a generated LP.

The families and their options come from :mod:`l2o.datasets.families` (read from the
generators' source, so ``--help`` imports neither numpy nor torch); e.g.
``l2o generate pagerank --nodes 100000 --out pr.mps.gz``.
"""

from __future__ import annotations

import argparse
import time

from l2o.datasets.families import family, family_names

from ._common import CommandError, check_output_path, command, new_parser, option_type
from .exit_codes import ExitCode, exit_codes_epilog

__all__ = ["add_parser", "run"]


def add_parser(commands) -> argparse.ArgumentParser:
    parser = new_parser(
        commands, "generate",
        summary="write a generated LP instance (PageRank, ...) to an MPS/LP file",
        description="Generate an LP instance of a family and write it to FILE (.mps, .mps.gz, "
                    ".lp, .lp.gz). Each family has its own options: l2o generate FAMILY --help.")
    families = parser.add_subparsers(dest="family", metavar="FAMILY", required=True)
    for name in family_names():
        spec = family(name)
        sub = families.add_parser(name, help=spec.summary, description=spec.summary,
                                  epilog=exit_codes_epilog(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        for option, default in spec.options.items():
            sub.add_argument(f"--{option.replace('_', '-')}", dest=option, default=default,
                             type=option_type(default), metavar=type(default).__name__.upper(),
                             help=f"default: {default}")
        sub.add_argument("--out", "-o", required=True, metavar="FILE",
                         help="output file: .mps, .mps.gz, .lp or .lp.gz")
        sub.set_defaults(handler=run, family_options=list(spec.options))
    return parser


@command("l2o generate")
def run(args: argparse.Namespace) -> int:
    from l2o.datasets import generate
    from l2o.lp import write_lp

    check_output_path(args.out)
    options = {name: getattr(args, name) for name in args.family_options}
    started = time.perf_counter()
    try:
        lp = generate(args.family, **options)
    except ValueError as error:  # an option value the generator rejects
        raise CommandError(str(error), ExitCode.USAGE_ERROR) from None
    try:
        write_lp(lp, args.out)
    except ValueError as error:  # unsupported extension
        raise CommandError(str(error), ExitCode.USAGE_ERROR) from None
    print(f"wrote {args.out}: {lp.name}, {lp.num_rows} rows x {lp.num_cols} columns, "
          f"{lp.nnz} nonzeros ({time.perf_counter() - started:.1f} s)")
    return ExitCode.OK
