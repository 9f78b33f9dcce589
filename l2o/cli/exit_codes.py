"""The exit codes of every ``l2o`` command, defined once.

Shown by each command's ``--help``; ``l2o solve`` maps the solver's status onto them
(:data:`l2o.cli.solve.STATUS_EXIT`).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["EXIT_CODES", "ExitCode", "exit_codes_epilog"]


class ExitCode(IntEnum):
    """How an ``l2o`` command ended."""

    OK = 0                   # optimal (solve), or: the command succeeded
    INTERNAL_ERROR = 1       # a bug, or training that failed (diverged)
    USAGE_ERROR = 2          # a bad option or value
    BAD_INPUT = 3            # an input file or model that cannot be used
    PRIMAL_INFEASIBLE = 4
    DUAL_INFEASIBLE = 5
    LIMIT = 6                # iteration or time limit before the tolerance
    NUMERICAL_ERROR = 7      # nan/inf in the iteration
    INTERRUPTED = 130        # Ctrl-C (the shell's 128 + SIGINT)
    OUTPUT_CLOSED = 141      # stdout closed by its reader, e.g. `| head` (128 + SIGPIPE)


# the meaning of each code, as --help lists it (the interruption and the closed pipe are the
# shell's conventions)
EXIT_CODES = {
    ExitCode.OK: "optimal (or: command succeeded)",
    ExitCode.INTERNAL_ERROR: "internal error (a bug: please report it), or training diverged",
    ExitCode.USAGE_ERROR: "usage error (bad option or value)",
    ExitCode.BAD_INPUT: "bad input file (missing, not an MPS/LP file, NaN/inf data, lower > "
                        "upper, warm start that does not match, unreadable dataset, corrupted "
                        "checkpoint or model with non-finite weights)",
    ExitCode.PRIMAL_INFEASIBLE: "primal infeasible",
    ExitCode.DUAL_INFEASIBLE: "dual infeasible (the LP is unbounded, if feasible)",
    ExitCode.LIMIT: "iteration or time limit reached before the tolerance",
    ExitCode.NUMERICAL_ERROR: "numerical error (nan/inf in the iteration)",
}


def exit_codes_epilog(codes=tuple(EXIT_CODES)) -> str:
    """The ``exit codes:`` section of a ``--help`` (``codes``: the ones the command can end
    with; default: all)."""
    return "\n".join(["exit codes:"] + [f"  {int(code)}  {EXIT_CODES[code]}" for code in codes])
