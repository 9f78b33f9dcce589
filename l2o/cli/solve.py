"""``l2o solve FILE | --example NAME``: solve an LP with the PDHG solver (:func:`l2o.solve_lp`).

A live progress display, a final summary, JSON output, warm starts from a solution file or from
a PDHG-Net prediction (``--model NAME|PATH [--compare-cold]``, :mod:`l2o.net.warmstart`); the
exit code says how the solve ended (:data:`STATUS_EXIT`).

Under ``torchrun --nproc_per_node N -m l2o solve FILE ...`` (its ``WORLD_SIZE`` in the
environment) the LP is solved sharded over the N processes (``solve_lp(distributed=True)``,
:mod:`l2o.pdhg.distributed`): the process group is initialized here (NCCL on CUDA, gloo on the
CPU), rank 0 alone shows progress, prints and writes, and every process exits with the code of
the common status.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import (
    CommandError,
    add_lp_input,
    check_output_path,
    command,
    device,
    load_lp,
    new_parser,
    positive_float,
    positive_int,
)
from .exit_codes import ExitCode

__all__ = ["STATUS_EXIT", "add_parser", "run"]

# LPStatus value -> exit code
STATUS_EXIT = {
    "optimal": ExitCode.OK,
    "primal_infeasible": ExitCode.PRIMAL_INFEASIBLE,
    "dual_infeasible": ExitCode.DUAL_INFEASIBLE,
    "iteration_limit": ExitCode.LIMIT,
    "time_limit": ExitCode.LIMIT,
    "numerical_error": ExitCode.NUMERICAL_ERROR,
}


# --presolve value -> solve_lp's presolve=
PRESOLVE_CHOICES = {"auto": "auto", "on": True, "off": False, "gpu": "gpu"}


def _bundled_names() -> str:
    from l2o.models import bundled_models  # a light import: lists l2o/models/*.pt

    return ", ".join(bundled_models()) or "none installed"


def add_parser(commands) -> argparse.ArgumentParser:
    solve = new_parser(
        commands, "solve", summary="solve an LP with the GPU PDHG solver",
        description="Solve an LP with restarted PDHG (l2o.solve_lp) on a GPU or the CPU. Shows a "
                    "live progress display and a final summary; --json prints one JSON object "
                    "{status, objective, dual_objective, iterations, solve_time, kkt, x: {column: "
                    "value}, y: {row: dual}} instead. The exit code tells how it ended. With "
                    "--model, PDHG-Net predicts the start point first (two-stage solving).")
    add_lp_input(solve)
    solve.add_argument("--tol", type=positive_float, default=1e-4,
                       help="relative tolerance on primal residual, dual residual and gap "
                            "(default: 1e-4)")
    solve.add_argument("--time-limit", type=positive_float, metavar="S",
                       help="stop after S seconds (exit code 6)")
    solve.add_argument("--iter-limit", type=positive_int, metavar="N",
                       help="stop after N iterations (exit code 6)")
    solve.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto: CUDA when available (default)")
    solve.add_argument("--method", choices=("pdhg", "highs", "auto"), default="pdhg",
                       help="pdhg: the PDHG solver (default); highs: HiGHS's dual simplex on the "
                            "CPU; auto: HiGHS for small LPs without a warm start, else PDHG")
    solve.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="float32 is faster on GPUs; tolerances below ~1e-6 need float64")
    solve.add_argument("--presolve", choices=tuple(PRESOLVE_CHOICES), default="auto",
                       help="reduce the LP before PDHG and map the solution back: on (HiGHS's "
                            "presolve), gpu (the cheap reductions in torch on the solve's "
                            "device: fixed columns, empty and singleton rows, empty columns), "
                            "off, or auto (the default: on LPs large enough for it to pay, "
                            "the gpu reductions where they remove >= 20%% of the rows or of the "
                            "nonzeros; on a GPU only LPs with >= 40%% singleton rows); "
                            "--json reports what was done under \"presolve\"")
    solve.add_argument("--polish", action="store_true",
                       help="after an optimal solve, drive the relative primal and dual "
                            "residuals to --polish-tol on the original LP by feasibility "
                            "polishing (PDLP's), the gap kept within --tol; --json reports it "
                            "under \"polish\" (the solve's point is kept, and the message says "
                            "why, when it falls short)")
    solve.add_argument("--polish-tol", type=positive_float, default=None, metavar="T",
                       help="the relative feasibility --polish reaches (default: 1e-8)")
    solve.add_argument("--reproducible", action="store_true",
                       help="the same bits in every run on a GPU too (solve_lp's "
                            "reproducible=True): cuSPARSE's fixed-order products (up to 1.5x "
                            "slower per iteration on LPs with long rows) and fixed-order sums "
                            "in the GPU presolve; --model is refused with it on a GPU. CPU "
                            "solves repeat without it")
    solve.add_argument("--warm-start", metavar="SOL",
                       help="start from a solution file of an LP with the same row and column "
                            "names: JSON (as written by --output) or a HiGHS solution file "
                            "(.sol)")
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
    solve.add_argument("--output", "-o", metavar="FILE",
                       help="write the solution: FILE.sol as a HiGHS solution file (x, y, "
                            "reduced costs; HiGHS's format, readable by highspy), any other "
                            "name as one JSON object (as --json prints it)")
    solve.add_argument("--json", action="store_true",
                       help="print only the JSON solution object on stdout")
    solve.add_argument("--quiet", "-q", action="store_true",
                       help="no progress display or table: one result line")
    solve.set_defaults(handler=run)
    return solve


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


def _fmt(value: Any, spec: str = ".10g") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        format(value, spec)


def _print_summary(lp, path: Path, data: dict, ran_on: str, known: float | None) -> None:
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
    pre = data.get("presolve")
    if pre:
        who = {"highs": "HiGHS", "gpu": "the GPU reductions"}.get(pre["by"], pre["by"])
        table.add_row("presolve", (f"{who} removed {pre['rows_removed']} rows, "
                                   f"{pre['cols_removed']} columns, {pre['nnz_removed']} "
                                   f"nonzeros in {pre['time_s']:.3f} s" if pre["applied"]
                                   else "not applied") + f"  ({pre['reason']})")
    polish = data.get("polish")
    if polish:
        table.add_row("polish", (f"to {polish['tol']:g} in {polish['time_s']:.3f} s, "
                                 f"{polish['iterations']} iterations, {polish['rounds']} "
                                 f"round(s)" if polish["applied"] else "not applied")
                      + f"  ({polish['reason']})")
    table.add_row("time", f"{data['solve_time']:.3f} s  ({ran_on})")
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


def _load_model(args: argparse.Namespace, where):
    """The PDHG-Net of ``--model`` (a checkpoint path or a bundled name; a path wins)."""
    from l2o.net.warmstart import CheckpointError, ModelNotFoundError, load_model

    try:
        return load_model(args.model, device=where)
    except ModelNotFoundError as error:
        raise CommandError(f"--model: {error}", ExitCode.USAGE_ERROR) from None
    except CheckpointError as error:
        raise CommandError(f"--model: {error}", ExitCode.BAD_INPUT) from None


def _solve_options(args: argparse.Namespace, where) -> dict[str, Any]:
    import torch

    from l2o.pdhg.options import POLISH_TOL
    return {"tol": args.tol, "device": where,
            "dtype": torch.float32 if args.dtype == "float32" else torch.float64,
            "time_limit": args.time_limit, "iteration_limit": args.iter_limit,
            "method": args.method, "presolve": PRESOLVE_CHOICES[args.presolve],
            **({"polish": True, "polish_tol": args.polish_tol or POLISH_TOL}
               if args.polish else {}),
            **({"reproducible": True} if args.reproducible else {})}


def _torchrun_group(args: argparse.Namespace, where) -> tuple[int, bool] | None:
    """Under torchrun (``WORLD_SIZE`` set): the process group, initialized here if the caller
    has not (NCCL on CUDA with this process's GPU, gloo on the CPU); (this process's rank,
    whether it was initialized here).  None outside torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return None
    for flag, given in (("--model", args.model is not None), ("--compare-cold", args.compare_cold),
                        ("--polish", args.polish), (f"--presolve {args.presolve}", args.presolve in ("on", "gpu")),
                        (f"--method {args.method}", args.method != "pdhg"),
                        ("--reproducible", args.reproducible)):
        if given:
            raise CommandError(f"{flag} does not combine with torchrun (the sharded solve is "
                               f"PDHG on the LP as given)", ExitCode.USAGE_ERROR)
    import torch
    import torch.distributed as dist

    initialized_here = not dist.is_initialized()
    if initialized_here:
        if where.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    return dist.get_rank(), initialized_here


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
    from l2o.net.power import NotAPageRankLPError

    progress = None if quiet else _Progress()
    try:
        with progress.running() if progress else contextlib.nullcontext():
            return solve_with_model(model, lp, progress=progress, **options)
    except NotAPageRankLPError as error:     # a model made for other LPs than this one
        raise CommandError(f"the model does not fit this LP: {error}",
                           ExitCode.BAD_INPUT) from None


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


@command("l2o solve")
def run(args: argparse.Namespace) -> int:
    if args.model is not None and args.warm_start is not None:
        raise CommandError("--model and --warm-start exclude each other (the model predicts "
                           "the warm start)", ExitCode.USAGE_ERROR)
    if args.model is not None and args.method != "pdhg":
        raise CommandError("--model warm-starts the PDHG solver: it needs --method pdhg",
                           ExitCode.USAGE_ERROR)
    if args.model is not None and args.presolve in ("on", "gpu"):
        raise CommandError(f"--presolve {args.presolve} does not combine with --model (the "
                           f"model's warm start is predicted for the LP as given, which is "
                           f"solved as prepared)",
                           ExitCode.USAGE_ERROR)
    if args.polish_tol is not None and not args.polish:
        raise CommandError("--polish-tol needs --polish", ExitCode.USAGE_ERROR)
    if args.compare_cold and args.model is None:
        raise CommandError("--compare-cold needs --model (it compares the model's warm start "
                           "with a cold start)", ExitCode.USAGE_ERROR)
    check_output_path(args.output)
    where = device(args.device)
    if args.reproducible and args.model is not None and where.type == "cuda":
        raise CommandError("--model does not combine with --reproducible on a GPU (the "
                           "model's prediction is not made in a fixed order)",
                           ExitCode.USAGE_ERROR)
    group = _torchrun_group(args, where)
    if group is None:
        return _run(args, where, None)
    rank, initialized_here = group
    try:
        return _run(args, where, rank)
    finally:
        if initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(args: argparse.Namespace, where, rank: int | None) -> int:
    """The solve, its output and exit code; ``rank``: this process's under torchrun (rank 0
    alone prints and writes), None without."""
    from l2o.lp import read_warm_start
    from l2o.lp.examples import list_examples
    from l2o.lp.solution import solution_dict, write_solution

    model = _load_model(args, where) if args.model is not None else None
    lp, path = load_lp(args)
    quiet = args.quiet or args.json or bool(rank)

    warm = None
    options = _solve_options(args, where)
    if rank is not None:
        options["distributed"] = True
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
    if rank:            # under torchrun rank 0 writes and prints: the result is the same on all
        return STATUS_EXIT.get(data["status"], ExitCode.INTERNAL_ERROR)
    if args.output:
        try:
            write_solution(lp, result, args.output, data)
        except ValueError as error:  # NaN/inf in x or y: the .sol format cannot hold them
            raise CommandError(f"the solve ended {data['status']}; cannot write {args.output}: "
                               f"{error}", STATUS_EXIT.get(data["status"],
                                                           ExitCode.INTERNAL_ERROR)) from None
    if args.json:
        print(json.dumps(data, allow_nan=False))
    elif args.quiet:
        print(f"{data['status']} objective {_fmt(data['objective'])} after "
              f"{data['iterations']} iterations ({data['solve_time']:.3f} s)" + _quiet_extra(data))
    else:
        known = list_examples()[args.example].optimal_objective if args.example else None
        ran_on = f"{where}, {args.dtype}" if result.method == "pdhg" else "HiGHS, CPU"
        if result.distributed:
            ran_on += f", sharded over {result.distributed['processes']} processes"
        _print_summary(lp, path, data, ran_on, known)
        if args.output:
            print(f"solution written to {args.output}")
    return STATUS_EXIT.get(data["status"], ExitCode.INTERNAL_ERROR)


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
