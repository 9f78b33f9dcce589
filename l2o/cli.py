"""The ``l2o`` command line (also ``python -m l2o``).

Subcommands (each with ``--help``):

* ``l2o solve FILE | --example NAME``: solve an LP with the PDHG solver (:func:`l2o.solve_lp`),
  with a live progress display, a final summary, JSON output and warm starts from a solution
  file or from a PDHG-Net prediction (``--model NAME|PATH [--compare-cold]``,
  :mod:`l2o.net.warmstart`); the exit code says how the solve ended (:data:`EXIT_CODES`).
* ``l2o info FILE | --example NAME``: sizes, row types and bound types of an LP file.
* ``l2o generate FAMILY [--OPTION VALUE ...] --out FILE``: write a generated LP
  (:mod:`l2o.datasets`; e.g. ``l2o generate pagerank --nodes 100000 --out pr.mps.gz``).

Other modules add their commands (``l2o dataset build``, ``l2o train``): each entry
``"module:function"`` of :data:`PLUGINS` names a function that gets the subparsers object;
every parser it adds sets ``handler=fn`` with ``fn(args) -> exit code`` (it may raise
:class:`CommandError` for user errors). A plugin that fails to load is reported on stderr and
the other commands keep working.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "EXIT_CODES"]

# ---- exit codes -------------------------------------------------------------------------------

EXIT_OPTIMAL = 0
EXIT_INTERNAL_ERROR = 1
EXIT_USAGE_ERROR = 2
EXIT_BAD_INPUT = 3
EXIT_PRIMAL_INFEASIBLE = 4
EXIT_DUAL_INFEASIBLE = 5
EXIT_LIMIT = 6
EXIT_NUMERICAL_ERROR = 7

EXIT_CODES = {
    EXIT_OPTIMAL: "optimal (or: command succeeded)",
    EXIT_INTERNAL_ERROR: "internal error (a bug: please report it)",
    EXIT_USAGE_ERROR: "usage error (bad option or value)",
    EXIT_BAD_INPUT: "bad input file (missing, not an MPS/LP file, NaN/inf data, "
                    "lower > upper, warm start that does not match)",
    EXIT_PRIMAL_INFEASIBLE: "primal infeasible",
    EXIT_DUAL_INFEASIBLE: "dual infeasible (the LP is unbounded, if feasible)",
    EXIT_LIMIT: "iteration or time limit reached before the tolerance",
    EXIT_NUMERICAL_ERROR: "numerical error (nan/inf in the iteration)",
}

# LPStatus value -> exit code
STATUS_EXIT = {
    "optimal": EXIT_OPTIMAL,
    "primal_infeasible": EXIT_PRIMAL_INFEASIBLE,
    "dual_infeasible": EXIT_DUAL_INFEASIBLE,
    "iteration_limit": EXIT_LIMIT,
    "time_limit": EXIT_LIMIT,
    "numerical_error": EXIT_NUMERICAL_ERROR,
}


def _exit_codes_epilog() -> str:
    lines = ["exit codes:"] + [f"  {code}  {text}" for code, text in EXIT_CODES.items()]
    return "\n".join(lines)


class CommandError(Exception):
    """An error the user can fix: printed as ``l2o COMMAND: error: ...`` with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ---- argument types ---------------------------------------------------------------------------

def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _bundled_names() -> str:
    from l2o.models import bundled_models  # a light import: lists l2o/models/*.pt
    return ", ".join(bundled_models()) or "none installed"


def _example_names() -> list[str]:
    from l2o.lp.examples import list_examples
    return list(list_examples())


# ---- loading an LP ----------------------------------------------------------------------------

def _load_lp(args: argparse.Namespace):
    """The LP named by FILE or --example, with read warnings printed as ``l2o: warning:``."""
    from l2o.lp import read_lp
    from l2o.lp.examples import example_path

    if (args.file is None) == (args.example is None):
        raise CommandError("give an LP file or --example NAME (one of them)", EXIT_USAGE_ERROR)
    path = example_path(args.example) if args.example else Path(args.file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lp = read_lp(path)
    for warning in caught:
        print(f"l2o: warning: {warning.message}", file=sys.stderr)
    return lp, path


def _check_output_path(path: str | None) -> None:
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise CommandError(f"cannot write {path}: directory {Path(path).parent} does not exist",
                           EXIT_USAGE_ERROR)


# ---- l2o info -----------------------------------------------------------------------------------

def _cmd_info(args: argparse.Namespace) -> int:
    from l2o.lp import lp_summary

    lp, path = _load_lp(args)
    summary = {"file": str(path), **lp_summary(lp)}
    if args.json:
        print(json.dumps(summary))
        return EXIT_OPTIMAL
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
    return EXIT_OPTIMAL


# ---- l2o solve ----------------------------------------------------------------------------------

class _Progress:
    """The live display of ``solve_lp``'s progress hook: on a terminal a rich table of the
    latest checks (erased at the end); elsewhere a plain line on stderr every few seconds."""

    COLUMNS = ("iteration", "rel_primal_residual", "rel_dual_residual", "rel_gap", "elapsed")
    HEADERS = ("iteration", "primal res", "dual res", "gap", "elapsed s")
    SHOWN = 8           # rows of the live table
    LOG_EVERY = 5.0     # seconds between lines when stderr is not a terminal

    def __init__(self) -> None:
        from rich.console import Console
        self.console = Console(stderr=True, highlight=False)
        self.rows: list[dict] = []
        self.live = None
        self.last_log = 0.0  # the first line after LOG_EVERY seconds: short solves stay quiet

    def _table(self):
        from rich.table import Table
        table = Table(title="l2o solve: PDHG progress", title_justify="left")
        for header in self.HEADERS:
            table.add_column(header, justify="right")
        for row in self.rows[-self.SHOWN:]:
            table.add_row(str(row["iteration"]), *(f"{row[key]:.2e}" for key in self.COLUMNS[1:4]),
                          f"{row['elapsed']:.2f}")
        return table

    def __call__(self, info: dict) -> None:
        self.rows = [*self.rows[-(self.SHOWN - 1):],
                     {key: info.get(key, math.nan) for key in self.COLUMNS}]
        if self.live is not None:
            self.live.update(self._table())
        elif info.get("elapsed", 0.0) - self.last_log >= self.LOG_EVERY:
            self.last_log = info.get("elapsed", 0.0)
            self.console.print(
                f"iteration {info['iteration']}: primal {info['rel_primal_residual']:.2e}, "
                f"dual {info['rel_dual_residual']:.2e}, gap {info['rel_gap']:.2e}, "
                f"{info['elapsed']:.1f} s")

    @contextlib.contextmanager
    def running(self) -> Iterator[_Progress]:
        if not self.console.is_terminal:
            yield self
            return
        from rich.live import Live
        with Live(self._table(), console=self.console, transient=True,
                  refresh_per_second=8) as live:
            self.live = live
            try:
                yield self
            finally:
                self.live = None


def _device(name: str) -> str:
    import torch
    if name == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda: no CUDA device is available (use --device cpu or "
                           "auto)", EXIT_USAGE_ERROR)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _fmt(value: Any, spec: str = ".10g") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        format(value, spec)


def _print_summary(lp, path: Path, data: dict, device: str, dtype: str, known: float | None
                   ) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{lp.name or path.name}: {lp.num_rows} rows x {lp.num_cols} columns, "
                        f"{lp.nnz} nonzeros ({lp.sense})", show_header=False, box=None,
                  title_justify="left", pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    status = data["status"]
    colour = "green" if status == "optimal" else "red"
    table.add_row("status", f"[{colour}]{status}[/{colour}]")
    table.add_row("message", data["message"])
    table.add_row("objective", _fmt(data["objective"]))
    table.add_row("dual objective", _fmt(data["dual_objective"]))
    if known is not None and data["objective"] is not None:
        rel = abs(data["objective"] - known) / max(1.0, abs(known))
        table.add_row("published optimum", f"{known:.10g}  (relative difference {rel:.1e})")
    kkt = data["kkt"]
    table.add_row("residuals", f"primal {_fmt(kkt.get('rel_primal_residual'), '.2e')}, dual "
                               f"{_fmt(kkt.get('rel_dual_residual'), '.2e')}, gap "
                               f"{_fmt(kkt.get('rel_gap'), '.2e')}  (relative)")
    table.add_row("iterations", str(data["iterations"]))
    table.add_row("time", f"{data['solve_time']:.3f} s  ({device}, {dtype})")
    warm = data.get("warm_start")
    if warm is not None:
        start = warm["initial_kkt"]
        table.add_row("warm start", f"{warm['model']}: prediction {warm['prediction_time']:.3f} s "
                                    f"(graph {warm['graph_time']:.3f} s, inference "
                                    f"{warm['inference_time']:.3f} s)")
        table.add_row("prediction", f"primal {_fmt(start['rel_primal_residual'], '.2e')}, dual "
                                    f"{_fmt(start['rel_dual_residual'], '.2e')}, gap "
                                    f"{_fmt(start['rel_gap'], '.2e')}  (relative)")
        table.add_row("total time", f"{data['total_time']:.3f} s  (prediction + solve)")
    cold = data.get("cold")
    if cold is not None:
        table.add_row("cold start", f"{cold['status']}, {cold['iterations']} iterations, "
                                    f"{cold['solve_time']:.3f} s")
        table.add_row("speedup", f"{_fmt(data['speedup'], '.2f')}x  (cold solve time / warm "
                                 f"total time); iterations {cold['iterations']} -> "
                                 f"{data['iterations']}")
    Console(highlight=False).print(table)


def _load_model(args: argparse.Namespace, device: str):
    """The PDHG-Net of ``--model`` (a checkpoint path or a bundled name; a path wins)."""
    from l2o.net.warmstart import CheckpointError, ModelNotFoundError, load_model

    try:
        return load_model(args.model, device=device)
    except ModelNotFoundError as error:
        raise CommandError(f"--model: {error}", EXIT_USAGE_ERROR) from None
    except CheckpointError as error:
        raise CommandError(f"--model: {error}", EXIT_BAD_INPUT) from None


def _solve_options(args: argparse.Namespace, device: str) -> dict[str, Any]:
    import torch
    return dict(tol=args.tol, device=device,
                dtype=torch.float32 if args.dtype == "float32" else torch.float64,
                time_limit=args.time_limit, iteration_limit=args.iter_limit)


def _run_solve(lp, options: dict[str, Any], warm_start, quiet: bool):
    from l2o import solve_lp

    progress = None if quiet else _Progress()
    with progress.running() if progress else contextlib.nullcontext():
        return solve_lp(lp, warm_start=warm_start, progress=progress, **options)


def _run_two_stage(model, lp, options: dict[str, Any], quiet: bool):
    """``--model``: PDHG-Net's warm start and the solve with one shared setup
    (:func:`l2o.net.solve_with_model`: the LP is copied and preconditioned once for both);
    (LPResult, WarmStart)."""
    from l2o.net import solve_with_model

    progress = None if quiet else _Progress()
    with progress.running() if progress else contextlib.nullcontext():
        return solve_with_model(model, lp, progress=progress, **options)


def _warm_start_data(args: argparse.Namespace, prediction, lp) -> dict:
    """The JSON "warm_start" object of ``--model``'s prediction."""
    from l2o.net import kkt_error
    from l2o.net.warmstart import resolve_model

    return {
        "model": args.model,
        "path": str(resolve_model(args.model)),
        "prediction_time": prediction.prediction_time,
        "graph_time": prediction.graph_time,
        "inference_time": prediction.inference_time,
        "initial_kkt": {key: _json_number(value)
                        for key, value in kkt_error(lp, prediction.x, prediction.y).items()},
    }


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _cmd_solve(args: argparse.Namespace) -> int:
    from l2o.lp import read_warm_start
    from l2o.lp.examples import list_examples
    from l2o.lp.solution import dump_solution, solution_dict

    if args.model is not None and args.warm_start is not None:
        raise CommandError("--model and --warm-start exclude each other (the model predicts "
                           "the warm start)", EXIT_USAGE_ERROR)
    if args.compare_cold and args.model is None:
        raise CommandError("--compare-cold needs --model (it compares the model's warm start "
                           "with a cold start)", EXIT_USAGE_ERROR)
    _check_output_path(args.output)
    device = _device(args.device)
    model = _load_model(args, device) if args.model is not None else None
    lp, path = _load_lp(args)
    quiet = args.quiet or args.json

    warm = None
    options = _solve_options(args, device)
    if model is not None:
        result, prediction = _run_two_stage(model, lp, options, quiet)
        warm = _warm_start_data(args, prediction, lp)
    else:
        warm_start = read_warm_start(lp, args.warm_start) if args.warm_start else None
        result = _run_solve(lp, options, warm_start, quiet)
    data = solution_dict(lp, result)
    if warm is not None:
        data["warm_start"] = warm
        # solve_time includes the setup shared with the prediction; prediction_time is the
        # graph and the forward pass: together the whole two-stage time
        data["total_time"] = warm["prediction_time"] + data["solve_time"]
    if args.compare_cold:
        # Runs second: one-time costs of the process (CUDA context, kernel compilation) fall on
        # the warm solve above, so the speedup is not flattered by them.
        cold = _run_solve(lp, options, None, quiet)
        data["cold"] = {"status": cold.status.value, "iterations": int(cold.iterations),
                        "solve_time": float(cold.solve_time),
                        "kkt": {key: _json_number(float(value))
                                for key, value in dict(cold.kkt).items()}}
        data["speedup"] = cold.solve_time / data["total_time"] if data["total_time"] > 0 \
            else None
    if args.output:
        dump_solution(data, args.output)
    if args.json:
        print(json.dumps(data, allow_nan=False))
    elif args.quiet:
        print(f"{data['status']} objective {_fmt(data['objective'])} after "
              f"{data['iterations']} iterations ({data['solve_time']:.3f} s)" + _quiet_extra(data))
    else:
        known = list_examples()[args.example].optimal_objective if args.example else None
        _print_summary(lp, path, data, device, args.dtype, known)
        if args.output:
            print(f"solution written to {args.output}")
    return STATUS_EXIT.get(data["status"], EXIT_INTERNAL_ERROR)


def _quiet_extra(data: dict) -> str:
    if "warm_start" not in data:
        return ""
    text = (f"; warm start from {data['warm_start']['model']}: prediction "
            f"{data['warm_start']['prediction_time']:.3f} s, total {data['total_time']:.3f} s")
    if "cold" in data:
        cold = data["cold"]
        text += (f"; cold start: {cold['status']} after {cold['iterations']} iterations "
                 f"({cold['solve_time']:.3f} s), speedup {_fmt(data['speedup'], '.2f')}x")
    return text


# ---- l2o generate -----------------------------------------------------------------------------

def _option_type(default: Any) -> Callable[[str], Any]:
    if isinstance(default, bool):
        def boolean(text: str) -> bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")
        return boolean
    return type(default) if isinstance(default, (int, float, str)) else str


def _cmd_generate(args: argparse.Namespace) -> int:
    from l2o.datasets import generate
    from l2o.lp import write_lp

    _check_output_path(args.out)
    options = {name: getattr(args, name) for name in args.family_options}
    started = time.perf_counter()
    try:
        lp = generate(args.family, **options)
    except ValueError as error:  # an option value the generator rejects
        raise CommandError(str(error), EXIT_USAGE_ERROR) from None
    try:
        write_lp(lp, args.out)
    except ValueError as error:  # unsupported extension
        raise CommandError(str(error), EXIT_USAGE_ERROR) from None
    print(f"wrote {args.out}: {lp.name}, {lp.num_rows} rows x {lp.num_cols} columns, "
          f"{lp.nnz} nonzeros ({time.perf_counter() - started:.1f} s)")
    return EXIT_OPTIMAL


def _add_generate(commands) -> None:
    generate = commands.add_parser(
        "generate", help="write a generated LP instance (PageRank, ...) to an MPS/LP file",
        description="Generate an LP instance of a family and write it to FILE (.mps, .mps.gz, "
                    ".lp, .lp.gz). Each family has its own options: l2o generate FAMILY --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_exit_codes_epilog())
    try:
        from l2o.datasets import FAMILIES, family_options
    except ImportError as error:  # keep the rest of the CLI usable
        reason = f"l2o.datasets is unavailable: {error}"
        generate.set_defaults(handler=lambda args: _fail(reason))
        return
    families = generate.add_subparsers(dest="family", metavar="FAMILY", required=True)
    for family, generator in FAMILIES.items():
        doc = (generator.__doc__ or "").strip().splitlines()
        sub = families.add_parser(family, help=doc[0] if doc else family,
                                  description=doc[0] if doc else None,
                                  epilog=_exit_codes_epilog(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        names = []
        for name, default in family_options(family).items():
            names.append(name)
            sub.add_argument(f"--{name.replace('_', '-')}", dest=name, default=default,
                             type=_option_type(default), metavar=type(default).__name__.upper(),
                             help=f"default: {default}")
        sub.add_argument("--out", "-o", required=True, metavar="FILE",
                         help="output file: .mps, .mps.gz, .lp or .lp.gz")
        sub.set_defaults(handler=_cmd_generate, family_options=names)


def _fail(message: str) -> int:
    raise CommandError(message, EXIT_INTERNAL_ERROR)


# ---- commands of other modules ----------------------------------------------------------------

PLUGINS = ("l2o.datasets.build:build_parser", "l2o.train:build_parser")


def _add_plugins(commands) -> None:
    import importlib

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


# ---- the parser ---------------------------------------------------------------------------------

def _add_input(parser: argparse.ArgumentParser) -> None:
    examples = _example_names()
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="LP file: MPS (fixed or free), CPLEX LP, optionally .gz")
    parser.add_argument("--example", metavar="NAME", choices=examples,
                        help=f"a bundled LP instead of FILE: {', '.join(examples)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l2o", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Learning to optimize linear programs: solve, inspect and generate LPs; build "
                    "labelled datasets and train PDHG-Net.",
        epilog="Run 'l2o COMMAND --help' for a command's options.\n\n" + _exit_codes_epilog())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    solve = commands.add_parser(
        "solve", help="solve an LP with the GPU PDHG solver",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_exit_codes_epilog(),
        description="Solve an LP with restarted PDHG (l2o.solve_lp) on a GPU or the CPU. Shows a "
                    "live progress display and a final summary; --json prints one JSON object "
                    "{status, objective, dual_objective, iterations, solve_time, kkt, x: {column: "
                    "value}, y: {row: dual}} instead. The exit code tells how it ended. With "
                    "--model, PDHG-Net predicts the start point first (two-stage solving).")
    _add_input(solve)
    solve.add_argument("--tol", type=_positive_float, default=1e-4,
                       help="relative tolerance on primal residual, dual residual and gap "
                            "(default: 1e-4)")
    solve.add_argument("--time-limit", type=_positive_float, metavar="S",
                       help="stop after S seconds (exit code 6)")
    solve.add_argument("--iter-limit", type=_positive_int, metavar="N",
                       help="stop after N iterations (exit code 6)")
    solve.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto: CUDA when available (default)")
    solve.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="float32 is faster on GPUs; tolerances below ~1e-6 need float64")
    solve.add_argument("--warm-start", metavar="SOL.json",
                       help="start from a solution file of an LP with the same row and column "
                            "names (as written by --output)")
    solve.add_argument("--model", metavar="MODEL",
                       help="warm-start from PDHG-Net's prediction: a checkpoint path (of "
                            "`l2o train`) or the name of a bundled model (" + _bundled_names()
                            + "); a path wins when both exist. Unknown MODEL: exit code 2; a "
                            "corrupted or foreign checkpoint: exit code 3. Adds warm_start "
                            "{model, path, prediction_time, graph_time, inference_time, "
                            "initial_kkt} and total_time (prediction + solve; the LP is "
                            "preconditioned once for both) to --json")
    solve.add_argument("--compare-cold", action="store_true",
                       help="with --model: also solve from the cold start with the same options "
                            "(after the warm solve) and show its status, iterations and time and "
                            "the speedup (cold solve time / warm total time); --json gains cold "
                            "{status, iterations, solve_time, kkt} and speedup")
    solve.add_argument("--output", "-o", metavar="SOL.json",
                       help="write the solution as one JSON object")
    solve.add_argument("--json", action="store_true",
                       help="print only the JSON solution object on stdout")
    solve.add_argument("--quiet", "-q", action="store_true",
                       help="no progress display or table: one result line")
    solve.set_defaults(handler=_cmd_solve)

    info = commands.add_parser(
        "info", help="size, nonzeros, row and bound types of an LP file",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_exit_codes_epilog(),
        description="Print an LP's name, size, nonzeros, objective sense and constant, row "
                    "types (equality, <=, >=, ranged, free) and column bound types (fixed, "
                    "boxed, lower-only, upper-only, free).")
    _add_input(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_cmd_info)

    _add_generate(commands)
    _add_plugins(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see ``l2o --help``)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit with code 2 here
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE_ERROR if argv else EXIT_OPTIMAL
    from l2o.lp import InvalidLPError, SolutionFileError

    command = f"l2o {args.command}"
    try:
        return args.handler(args)
    except CommandError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return error.code
    except (FileNotFoundError, IsADirectoryError, InvalidLPError, SolutionFileError) as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the contract is an exit code, not a traceback
        traceback.print_exc(file=sys.stderr)
        print(f"{command}: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
