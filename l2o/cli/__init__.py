"""The ``l2o`` command line (also ``python -m l2o``): one module per subcommand.

* ``l2o solve FILE | --example NAME`` (:mod:`l2o.cli.solve`): solve an LP with the PDHG solver;
  the exit code says how the solve ended.
* ``l2o info FILE | --example NAME`` (:mod:`l2o.cli.info`): sizes, row and bound types.
* ``l2o generate FAMILY [--OPTION VALUE ...] --out FILE`` (:mod:`l2o.cli.generate`).
* ``l2o dataset build ...`` (:mod:`l2o.cli.dataset`): a labelled dataset.
* ``l2o train ...`` (:mod:`l2o.cli.train`): train PDHG-Net.

The exit codes are :class:`~l2o.cli.exit_codes.ExitCode`. Each command module has
``add_parser(commands)``, which sets ``handler=fn`` with ``fn(args) -> exit code``. Building the
parser imports nothing heavy (``l2o --help`` does not import torch); the handlers import what
they need.

Other packages may add commands: each entry ``"module:function"`` of :data:`PLUGINS` names a
function that gets the subparsers object, with the same contract (the handler may raise
:class:`CommandError` for user errors). A plugin that fails to load is reported on stderr and
the other commands keep working.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from . import dataset, generate, info, solve, train
from ._common import CommandError
from .exit_codes import EXIT_CODES, ExitCode, exit_codes_epilog

__all__ = ["EXIT_CODES", "PLUGINS", "CommandError", "ExitCode", "build_parser", "main"]

# "module:function" entries of other packages' commands (none by default)
PLUGINS: tuple[str, ...] = ()

_COMMANDS = (solve, info, generate, dataset, train)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("bilevel-l2o")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        import l2o

        return f"{l2o.__version__} (not installed)"


def _add_plugins(commands) -> None:
    for entry in PLUGINS:
        name, _, function = entry.partition(":")
        try:
            module = importlib.import_module(name)
            add = getattr(module, function or "add_cli_commands", None)
            if callable(add):
                add(commands)
        except ModuleNotFoundError as error:
            if error.name != name:  # absent plugin: nothing to add; else a missing dependency
                print(f"l2o: warning: commands of {name} unavailable: {error}", file=sys.stderr)
        except Exception as error:  # noqa: BLE001 - a broken plugin must not break `l2o solve`
            print(f"l2o: warning: commands of {name} unavailable: {type(error).__name__}: "
                  f"{error}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The ``l2o`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="l2o", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Learning to optimize linear programs: solve, inspect and generate LPs; build "
                    "labelled datasets and train PDHG-Net.",
        epilog="Run 'l2o COMMAND --help' for a command's options.\n\n" + exit_codes_epilog())
    parser.add_argument("--version", action=_PrintVersion)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        module.add_parser(commands)
    _add_plugins(commands)
    return parser


class _PrintVersion(argparse.Action):
    """``--version``: print ``l2o VERSION`` and exit (the version is looked up only then)."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help="print the version of l2o and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see ``l2o --help``)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit with code 2 here
    if args.command is None:
        parser.print_help()
        return ExitCode.USAGE_ERROR if argv else ExitCode.OK
    command = f"l2o {args.command}"
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # a reader gone early (`| head`) shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _drop_stdout()
        return int(ExitCode.OUTPUT_CLOSED)
    except CommandError as error:  # from a plugin's handler
        print(f"{command}: error: {error}", file=sys.stderr)
        return int(error.code)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the contract is an exit code, not a traceback
        traceback.print_exc(file=sys.stderr)
        print(f"{command}: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return int(ExitCode.INTERNAL_ERROR)


def _drop_stdout() -> None:
    """Point stdout at /dev/null: its reader has gone, and Python's final flush of what is left
    in the buffer would otherwise print a BrokenPipeError at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
