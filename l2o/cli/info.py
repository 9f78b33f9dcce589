"""``l2o info FILE | --example NAME``: sizes, row types and bound types of an LP file."""

from __future__ import annotations

import argparse
import json

from ._common import add_lp_input, command, load_lp, new_parser
from .exit_codes import ExitCode

__all__ = ["add_parser", "run"]


def add_parser(commands) -> argparse.ArgumentParser:
    parser = new_parser(
        commands, "info", summary="size, nonzeros, row and bound types of an LP file",
        description="Print an LP's name, size, nonzeros, objective sense and constant, row "
                    "types (equality, <=, >=, ranged, free) and column bound types (fixed, "
                    "boxed, lower-only, upper-only, free).")
    add_lp_input(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)
    return parser


@command("l2o info")
def run(args: argparse.Namespace) -> int:
    from l2o.lp import lp_summary

    lp, path = load_lp(args)
    summary = {"file": str(path), **lp_summary(lp)}
    if args.json:
        print(json.dumps(summary))
        return ExitCode.OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{lp.name or path.name}  ({path})", show_header=False, box=None,
                  title_justify="left", pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("size", f"{lp.num_rows} rows x {lp.num_cols} columns, {lp.nnz} nonzeros "
                          f"(density {summary['density']:.3g})")
    table.add_row("objective", f"{lp.sense}, {summary['objective_nonzeros']} nonzero costs, "
                               f"constant {lp.c0:g}")
    table.add_row("rows", ", ".join(f"{count} {kind}" for kind, count in
                                    summary["row_types"].items()))
    table.add_row("bounds", ", ".join(f"{count} {kind.replace('_', '-')}" for kind, count in
                                      summary["bound_types"].items()))
    Console(highlight=False).print(table)
    return ExitCode.OK
