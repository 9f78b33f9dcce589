"""What the ``l2o`` commands share: the user-error type, argument value types, LP input.

Only light imports at module level: every command's parser is built on each start, and
``l2o --help`` must not import torch.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .exit_codes import ExitCode, exit_codes_epilog

__all__ = ["CommandError", "add_lp_input", "check_output_path", "command", "device",
           "load_lp", "new_parser", "option_type", "positive_float", "positive_int"]


class CommandError(Exception):
    """An error the user can fix: printed as ``l2o COMMAND: error: ...``, exit ``code``."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def _bad_input(error: BaseException) -> bool:
    """A missing or unusable input file (exit 3), from any command."""
    if isinstance(error, (FileNotFoundError, IsADirectoryError)):
        return True
    lp = sys.modules.get("l2o.lp")  # only when loaded: then its errors may be raised
    return lp is not None and isinstance(error, (lp.InvalidLPError, lp.SolutionFileError))


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]],
                                   Callable[[argparse.Namespace], int]]:
    """Decorator of a command's handler ``fn(args) -> exit code``: a :class:`CommandError` or a
    missing/unusable input file is printed as one line ``NAME: error: ...`` on stderr and
    returned as its exit code; anything else propagates (``main`` reports a bug)."""
    def decorate(function: Callable[[argparse.Namespace], int]
                 ) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(function)
        def handler(args: argparse.Namespace) -> int:
            try:
                return int(function(args))
            except CommandError as error:
                print(f"{name}: error: {error}", file=sys.stderr)
                return int(error.code)
            except Exception as error:
                if not _bad_input(error):
                    raise
                print(f"{name}: error: {error}", file=sys.stderr)
                return int(ExitCode.BAD_INPUT)
        return handler
    return decorate


def new_parser(commands, name: str, *, summary: str, description: str,
               codes=None) -> argparse.ArgumentParser:
    """A subcommand's parser, with the exit codes it can end with in its ``--help``."""
    return commands.add_parser(name, help=summary, description=description,
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog=exit_codes_epilog() if codes is None else
                               exit_codes_epilog(codes))


# ---- argument value types ---------------------------------------------------------------------

def positive_float(text: str) -> float:
    """``type=`` of an option that takes a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive_int(text: str) -> int:
    """``type=`` of an option that takes an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def option_type(default: Any) -> Callable[[str], Any]:
    """The parser of ``--option TEXT`` for a generator option whose default is ``default``:
    the default's type (bool: 1/0, true/false, yes/no, on/off). Raises
    ``argparse.ArgumentTypeError`` ("expected a int, got 'x'") for text of another type."""
    kind = type(default) if isinstance(default, (bool, int, float, str)) else str

    def parse(text: str) -> Any:
        if kind is bool and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        if kind is not bool:
            try:
                return kind(text)
            except ValueError:
                pass
        raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def device(name: str):
    """The ``torch.device`` of ``--device NAME`` (CUDA asked for without CUDA: usage error)."""
    from l2o.device import DeviceUnavailableError, resolve_device

    try:
        return resolve_device(name)
    except DeviceUnavailableError:
        raise CommandError(f"--device {name}: no CUDA device is available (use --device cpu or "
                           f"auto)", ExitCode.USAGE_ERROR) from None


# ---- LP input -----------------------------------------------------------------------------------

def add_lp_input(parser: argparse.ArgumentParser) -> None:
    """FILE or ``--example NAME`` (the bundled LPs, listed in the help)."""
    from l2o.lp.examples import list_examples  # light: reads the examples' table only

    examples = list(list_examples())
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="LP file: MPS (fixed or free), CPLEX LP, optionally .gz")
    parser.add_argument("--example", metavar="NAME", choices=examples,
                        help=f"a bundled LP instead of FILE: {', '.join(examples)}")


def load_lp(args: argparse.Namespace):
    """(LP, path) of FILE or ``--example``, with read warnings printed as ``l2o: warning:``."""
    from l2o.lp import read_lp
    from l2o.lp.examples import example_path

    if (args.file is None) == (args.example is None):
        raise CommandError("give an LP file or --example NAME (one of them)",
                           ExitCode.USAGE_ERROR)
    path = example_path(args.example) if args.example else Path(args.file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lp = read_lp(path)
    for warning in caught:
        print(f"l2o: warning: {warning.message}", file=sys.stderr)
    return lp, path


def check_output_path(path: str | None) -> None:
    """A usage error, before any work, when an output file cannot be written there: the path is
    a directory, its directory does not exist, or the file (or a new file in its directory) is
    not writable."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CommandError(f"cannot write {path}: it is a directory (give a file name)",
                           ExitCode.USAGE_ERROR)
    folder = target.resolve().parent
    if not folder.is_dir():
        raise CommandError(f"cannot write {path}: directory {target.parent} does not exist",
                           ExitCode.USAGE_ERROR)
    if not os.access(target if target.exists() else folder, os.W_OK):
        where = target if target.exists() else f"directory {target.parent}"
        raise CommandError(f"cannot write {path}: {where} is not writable", ExitCode.USAGE_ERROR)
