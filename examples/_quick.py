"""The ``--quick`` option the examples share: a smaller run, whose settings options given
explicitly on the command line still override."""

from __future__ import annotations

import argparse
from typing import Any


def parse_with_quick(parser: argparse.ArgumentParser, argv: list[str] | None,
                     quick: dict[str, Any]) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick``, again with ``quick`` as the defaults."""
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args
