"""Solution files: JSON (ours, the default) or HiGHS's solution format (``.sol``), keyed by name.

The format follows the file name: ``.sol`` is a HiGHS solution file, anything else JSON.

JSON, written by ``l2o solve --output`` (and printed by ``--json``)::

    {"status": "optimal", "objective": -464.75, "dual_objective": -464.75,
     "iterations": 193, "solve_time": 0.71,
     "kkt": {"rel_primal_residual": ..., "rel_dual_residual": ..., "rel_gap": ...},
     "x": {"X01": 80.0, ...},          # column name -> primal value
     "y": {"R09": -0.628, ...},        # row name -> dual (minimization-form sign convention)
     "message": "...",
     "presolve": {"applied": false, "by": null, "reason": "...", "rows_removed": 0,
                  "cols_removed": 0, "nnz_removed": 0, "time_s": 0.0},
     "polish": null,                   # or, with polishing (l2o solve --polish):
               # {"applied": true, "reached": true, "reason": "...", "tol": 1e-08,
               #  "time_s": 0.06, "primal_residual": ..., "dual_residual": ..., "gap": ...,
               #  "iterations": 386, "primal_iterations": 193, "dual_iterations": 193,
               #  "rounds": 1}
     "problem": {"name": "afiro", "rows": 27, "columns": 32, "nonzeros": 83}}

Non-finite numbers are written as ``null`` (JSON has no NaN). Rows and columns without names
use the generated ``r0, r1, ...`` and ``x0, x1, ...``.

HiGHS solution files (raw style, what ``highs --solution_file`` writes and ``Highs.readSolution``
reads) are written and read by HiGHS itself (highspy): x, the row activities A x, the reduced
costs and y, with duals in HiGHS's convention (the LP's own sense: negated for a maximization).
HiGHS writes blanks in names as '_' and numbers with at most 13 decimals and 15 significant
digits (small values keep 7: a round trip may change a value by about 1e-13 max(1, |value|)),
and judges the values itself: its "Model status" is
"Optimal" when they pass its KKT checks at its absolute tolerances (1e-7), else "Unknown", and
"Feasible"/"Infeasible" are those checks, not l2o's status (the JSON file has that).

:func:`read_warm_start` reads ``x`` and ``y`` back from either format for an LP with the same
names (the order does not matter; a missing or unknown name is an error, so a solution of
another LP is never applied by position).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._highs import highspy, lp_to_highs, quiet_highs
from .io import names_without_blanks
from .model import MAXIMIZE, LinearProgram
from .validate import InvalidLPError

__all__ = [
    "SolutionFileError",
    "dump_solution",
    "is_highs_solution_file",
    "read_highs_solution",
    "read_warm_start",
    "solution_dict",
    "write_highs_solution",
    "write_solution",
]


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
        "presolve": _report(result, "presolve"),
        "polish": _report(result, "polish"),
        "problem": {"name": lp.name, "rows": lp.num_rows, "columns": lp.num_cols,
                    "nonzeros": lp.nnz},
    }


def _report(result: Any, name: str) -> dict[str, Any] | None:
    """``result.presolve`` or ``result.polish`` (l2o.pdhg.presolve, l2o.pdhg.polish) as JSON
    values, or None for a result without."""
    report = getattr(result, name, None)
    if not report:
        return None
    return {key: _number(value) if isinstance(value, float) else value
            for key, value in report.items()}


def is_highs_solution_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a HiGHS solution file (``.sol``) rather than JSON."""
    return Path(path).suffix.lower() == ".sol"


def write_solution(lp: LinearProgram, result: Any, path: str | os.PathLike,
                   data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``result`` to ``path``: a HiGHS solution file for ``.sol``
    (:func:`write_highs_solution`), else ``data`` as JSON (:func:`dump_solution`).

    Args:
        data: the JSON object (default :func:`solution_dict`; ``l2o solve`` adds its warm-start
            timings to it).

    Returns:
        ``data``.
    """
    data = solution_dict(lp, result) if data is None else data
    if is_highs_solution_file(path):
        write_highs_solution(lp, result, path)
    else:
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
    """(x, y) from a solution file written for an LP with the same row/column names: a HiGHS
    solution file for ``.sol`` (:func:`read_highs_solution`), else JSON.

    Either part may be absent (a JSON key absent or null, a HiGHS file without duals): that part
    is then None (solve_lp's default start).

    Raises:
        FileNotFoundError: no such file. SolutionFileError: not a solution file of that format,
            names that do not match ``lp``, or non-numeric values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"warm-start file not found: {path}")
    if is_highs_solution_file(path):
        return read_highs_solution(lp, path)
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


# ---- HiGHS solution files ----------------------------------------------------------------------

def _highs_model(lp: LinearProgram) -> tuple[highspy.HighsLp, str]:
    """The HighsLp of ``lp`` with every row and column named as HiGHS's solution files name them
    (generated labels for an unnamed LP, blanks as '_'), and "" or why the names cannot key a
    file (two names alike once blanks are '_')."""
    named, _ = names_without_blanks(replace(lp, row_names=lp.row_labels(),
                                            col_names=lp.col_labels()))
    for kind, names in (("row", named.row_names), ("column", named.col_names)):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                return lp_to_highs(named), (f"{kind} name {name!r} (blanks written as '_') "
                                            f"repeats: a solution keyed by name would lose it")
            seen.add(name)
    return lp_to_highs(named), ""


def _finite(name: str, values: torch.Tensor) -> np.ndarray:
    array = values.detach().cpu().double().numpy().copy()
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name} has {bad} non-finite entries: a HiGHS solution file cannot "
                         f"hold them (write JSON, which keeps them as null)")
    return array


def write_highs_solution(lp: LinearProgram, result: Any, path: str | os.PathLike) -> None:
    """Write ``result`` (an :class:`l2o.LPResult`) for ``lp`` as a HiGHS solution file, by HiGHS.

    HiGHS gets the LP and (x, A x, reduced costs, y) and writes the file
    (``Highs.writeSolution``, raw style; duals in HiGHS's convention, the LP's own sense). A solution passed in with ``setSolution`` is written as
    "None" (HiGHS has not assessed it); handing it to ``postsolve`` of an LP that presolve left
    as it is (presolve off) makes HiGHS assess it and keep it as given.

    Raises:
        ValueError: x, y or the reduced costs hold NaN or inf. InvalidLPError: names that
            collide once blanks are '_'. OSError: HiGHS could not write ``path``.
    """
    x = _finite("x", result.x)
    solution = highspy.HighsSolution()
    solution.col_value = x
    solution.row_value = lp.scipy_matrix() @ x
    # postsolve takes the duals of the presolved LP, which HiGHS keeps in minimization form
    # (as l2o does), and negates them for a maximization: no sign change here
    solution.col_dual = _finite("reduced_costs", result.reduced_costs)
    solution.row_dual = _finite("y", result.y)
    solution.value_valid = solution.dual_valid = True
    hlp, collision = _highs_model(lp)
    if collision:
        raise InvalidLPError(f"cannot write {path}: {collision}")
    with quiet_highs() as (highs, log):
        highs.passModel(hlp)
        highs.setOptionValue("presolve", "off")
        highs.presolve()
        assessed = highs.postsolve(solution)
        written = (highs.writeSolution(str(path), 0) if assessed != highspy.HighsStatus.kError
                   else None)
    if assessed == highspy.HighsStatus.kError:
        raise RuntimeError(f"HiGHS did not take the solution: {'; '.join(log.matching('ERROR'))}")
    if written == highspy.HighsStatus.kError:
        raise OSError(f"HiGHS could not write {path}: {'; '.join(log.matching('ERROR'))}")


def read_highs_solution(lp: LinearProgram, path: str | os.PathLike
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(x, y) from a HiGHS solution file (raw style) of an LP with ``lp``'s names, read by HiGHS
    (``Highs.readSolution`` maps the file's names to the model's: any order; an unknown name
    or another size is an error). y is in l2o's minimization form; None when the file has no
    dual values.

    Raises:
        FileNotFoundError: no such file. SolutionFileError: HiGHS cannot read it as a solution of
            ``lp`` (its message), it has no primal values, or its names collide.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"solution file not found: {path}")
    hlp, collision = _highs_model(lp)
    if collision:
        raise SolutionFileError(f"cannot read {path} for this LP: {collision}")
    with quiet_highs() as (highs, log):
        highs.passModel(hlp)
        status = highs.readSolution(str(path), 0)
        solution = highs.getSolution()
    if status == highspy.HighsStatus.kError:
        details = "; ".join(line.removeprefix("ERROR:").strip() for line in log.matching("ERROR"))
        raise SolutionFileError(f"{path} is not a HiGHS solution file of this LP "
                                f"({lp.num_rows} rows, {lp.num_cols} columns): "
                                f"{details or 'HiGHS cannot read it'}")
    if not solution.value_valid:
        raise SolutionFileError(f"{path}: the file has no primal values")
    x = torch.tensor(np.asarray(solution.col_value, dtype=np.float64).reshape(lp.num_cols))
    y = None
    if _has_dual_values(path):  # HiGHS 1.16 reads the duals but leaves dual_valid False
        sign = -1.0 if lp.sense == MAXIMIZE else 1.0
        y = sign * torch.tensor(np.asarray(solution.row_dual, dtype=np.float64
                                           ).reshape(lp.num_rows))
    return x, y


def _has_dual_values(path: Path) -> bool:
    """Whether the line after "# Dual solution values" says the values follow (HiGHS writes
    "None" there when it had no duals, "Feasible" or "Infeasible" before the values)."""
    with open(path, "rb") as handle:
        lines = iter(handle)
        for line in lines:
            if line.strip() == b"# Dual solution values":
                return next(lines, b"").strip() != b"None"
    return False
