"""Solution files: one JSON object per solve, keyed by row and column names.

Written by ``l2o solve --output`` (and printed by ``--json``)::

    {"status": "optimal", "objective": -464.75, "dual_objective": -464.75,
     "iterations": 193, "solve_time": 0.71,
     "kkt": {"rel_primal_residual": ..., "rel_dual_residual": ..., "rel_gap": ...},
     "x": {"X01": 80.0, ...},          # column name -> primal value
     "y": {"R09": -0.628, ...},        # row name -> dual (minimization-form sign convention)
     "message": "...", "problem": {"name": "afiro", "rows": 27, "columns": 32, "nonzeros": 83}}

Non-finite numbers are written as ``null`` (JSON has no NaN). Rows and columns without names
use the generated ``r0, r1, ...`` and ``x0, x1, ...``. :func:`read_warm_start` reads ``x`` and
``y`` back for an LP with the same names (the order does not matter; a missing or unknown name
is an error, so a solution of another LP is never applied by position).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from .model import LinearProgram
from .validate import InvalidLPError

__all__ = ["SolutionFileError", "solution_dict", "write_solution", "dump_solution",
           "read_warm_start"]


class SolutionFileError(ValueError):
    """A solution / warm-start file is unreadable or does not match the LP's names."""


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _named(values: torch.Tensor, names: list[str], what: str) -> dict[str, float | None]:
    if len(set(names)) != len(names):
        seen: set[str] = set()
        duplicate = next(name for name in names if name in seen or seen.add(name))
        raise InvalidLPError(f"the LP's {what} names are not unique ({duplicate!r} repeats): a "
                             f"solution keyed by name would lose entries")
    return {name: _number(v) for name, v in zip(names, values.detach().cpu().double().tolist())}


def solution_dict(lp: LinearProgram, result: Any) -> dict[str, Any]:
    """The JSON object of ``result`` (an :class:`l2o.LPResult`) for ``lp`` (see module doc)."""
    status = getattr(result.status, "value", result.status)
    return {
        "status": status,
        "objective": _number(result.objective),
        "dual_objective": _number(result.dual_objective),
        "iterations": int(result.iterations),
        "solve_time": float(result.solve_time),
        "kkt": {key: _number(value) for key, value in dict(result.kkt).items()},
        "x": _named(result.x, lp.col_labels(), "column"),
        "y": _named(result.y, lp.row_labels(), "row"),
        "message": str(result.message),
        "problem": {"name": lp.name, "rows": lp.num_rows, "columns": lp.num_cols,
                    "nonzeros": lp.nnz},
    }


def write_solution(lp: LinearProgram, result: Any, path: str | os.PathLike) -> dict[str, Any]:
    """Write :func:`solution_dict` to ``path`` (JSON, indented) and return it."""
    data = solution_dict(lp, result)
    dump_solution(data, path)
    return data


def dump_solution(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a :func:`solution_dict` object to ``path`` (one JSON object, indented)."""
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1, allow_nan=False)
        handle.write("\n")


def _vector(entries: Any, names: list[str], what: str, path: Path) -> torch.Tensor | None:
    if entries is None:
        return None
    if not isinstance(entries, dict):
        raise SolutionFileError(f"{path}: {what!r} must be an object {{name: value}}, "
                                f"got {type(entries).__name__}")
    missing = [name for name in names if name not in entries]
    known = set(names)
    unknown = [name for name in entries if name not in known]
    if missing or unknown:
        parts = []
        for label, bad in (("missing", missing), ("unknown", unknown)):
            if bad:
                shown = ", ".join(repr(b) for b in bad[:5])
                parts.append(f"{len(bad)} {label} ({shown}{', ...' if len(bad) > 5 else ''})")
        kind = "column" if what == "x" else "row"
        raise SolutionFileError(f"{path}: the {kind} names of {what!r} do not match the LP: "
                                + "; ".join(parts))
    values = []
    for name in names:
        value = entries[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value):
            raise SolutionFileError(f"{path}: {what}[{name!r}] = {value!r} is not a finite number")
        values.append(float(value))
    return torch.tensor(values, dtype=torch.float64)


def read_warm_start(lp: LinearProgram, path: str | os.PathLike
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(x, y) from a solution file written for an LP with the same row/column names.

    Either key may be absent (or null): that part is then None (solve_lp's default start).

    Raises:
        FileNotFoundError: no such file. SolutionFileError: not JSON, not an object, names
            that do not match ``lp``, or non-numeric values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"warm-start file not found: {path}")
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SolutionFileError(f"{path} is not a JSON solution file: {error}") from None
    if not isinstance(data, dict):
        raise SolutionFileError(f"{path}: expected a JSON object with 'x' and 'y'")
    if data.get("x") is None and data.get("y") is None:
        raise SolutionFileError(f"{path}: has neither 'x' nor 'y'")
    return (_vector(data.get("x"), lp.col_labels(), "x", path),
            _vector(data.get("y"), lp.row_labels(), "y", path))
