"""Validation of a :class:`~l2o.lp.LinearProgram`, with errors that name the row or column.

An LP is well formed when

* shapes agree: A is (m, n) sparse, c and the column bounds have n entries, the row bounds
  m entries, names (if given) one per row / column;
* c, c0 and the entries of A are finite (no NaN, no +-inf);
* bounds are not NaN, a lower bound is never +inf, an upper bound never -inf, and
  lower <= upper for every row and column (an empty interval is a data error here, not an
  infeasibility the solver should discover);
* sense is "minimize" or "maximize".

Errors are :class:`InvalidLPError` (a ``ValueError``); :class:`LPFormatError`, its subclass,
is raised by :func:`l2o.read_lp` for files that are not readable LPs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import LinearProgram

__all__ = ["BOUND_PROBLEMS", "InvalidLPError", "LPFormatError", "check_structure", "invalid_bounds",
           "validate_lp"]

_MAX_LISTED = 3  # offenders quoted in one message

# The ways a bound pair lower <= . <= upper is invalid: the one definition every check uses
# (validate_lp, which names the culprit, and the solver's one-sync device test, invalid_bounds).
BOUND_PROBLEMS = (
    ("lower bound is NaN", lambda lower, upper: torch.isnan(lower)),
    ("upper bound is NaN", lambda lower, upper: torch.isnan(upper)),
    ("lower bound is +inf", lambda lower, upper: lower == float("inf")),
    ("upper bound is -inf", lambda lower, upper: upper == float("-inf")),
    ("lower bound > upper bound", lambda lower, upper: lower > upper),
)


class InvalidLPError(ValueError):
    """The data of a LinearProgram is invalid (NaN/inf, lower > upper, shape mismatch)."""


class LPFormatError(InvalidLPError):
    """A file is not a readable LP (not MPS/LP, parse error, or invalid data in it)."""


def validate_lp(lp: LinearProgram) -> None:
    """Check ``lp`` (see the module docstring) and raise :class:`InvalidLPError` if it is not
    well formed. The message names the first offending rows/columns (by name when known)
    and how many there are.

    Works on any device; costs a few vector reductions and one host sync per check.
    """
    check_structure(lp)
    _check_finite(lp.c, "objective coefficient c", lp.col_label, "column")
    _check_matrix_finite(lp)
    for kind, lower, upper, label in (
            ("row", lp.row_lower, lp.row_upper, lp.row_label),
            ("column", lp.col_lower, lp.col_upper, lp.col_label)):
        _check_bounds(kind, lower, upper, label)


def check_structure(lp: LinearProgram) -> None:
    """The checks of :func:`validate_lp` that read no vector entries (shapes, names, sense, c0):
    cheap enough for every solve, before its data are copied anywhere."""
    _check_shapes(lp)
    if lp.sense not in ("minimize", "maximize"):
        raise InvalidLPError(f"sense must be 'minimize' or 'maximize', got {lp.sense!r}")
    if not _finite_scalar(lp.c0):
        raise InvalidLPError(f"objective constant c0 is {lp.c0}; it must be finite")


def invalid_bounds(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Bool mask of the bound pairs with one of the :data:`BOUND_PROBLEMS` (any device)."""
    mask = torch.zeros_like(lower, dtype=torch.bool)
    for _, test in BOUND_PROBLEMS:
        mask |= test(lower, upper)
    return mask


def _finite_scalar(value) -> bool:
    return bool(torch.isfinite(torch.as_tensor(float(value))))


def _check_shapes(lp: LinearProgram) -> None:
    A = lp.A
    if not isinstance(A, torch.Tensor) or A.dim() != 2:
        raise InvalidLPError(f"A must be a 2-D torch sparse CSR tensor, got {type(A).__name__}"
                             f"{' of dim ' + str(A.dim()) if isinstance(A, torch.Tensor) else ''}")
    if A.layout != torch.sparse_csr:
        raise InvalidLPError(f"A must be in torch.sparse_csr layout, got {A.layout}")
    m, n = A.shape
    for what, vec, size, dim in (("c", lp.c, n, "columns"),
                                 ("col_lower", lp.col_lower, n, "columns"),
                                 ("col_upper", lp.col_upper, n, "columns"),
                                 ("row_lower", lp.row_lower, m, "rows"),
                                 ("row_upper", lp.row_upper, m, "rows")):
        if not isinstance(vec, torch.Tensor) or vec.dim() != 1 or vec.numel() != size:
            shape = tuple(vec.shape) if isinstance(vec, torch.Tensor) else type(vec).__name__
            raise InvalidLPError(f"{what} has shape {shape}, expected ({size},): A is {m} x {n} "
                                 f"and {what} needs one entry per {dim[:-1]}")
    if lp.row_names is not None and len(lp.row_names) != m:
        raise InvalidLPError(f"row_names has {len(lp.row_names)} names for {m} rows")
    if lp.col_names is not None and len(lp.col_names) != n:
        raise InvalidLPError(f"col_names has {len(lp.col_names)} names for {n} columns")


def _describe(indices: torch.Tensor, label, kind: str) -> str:
    """'column 'X ONE' (index 0), ...' for the first few indices."""
    shown = [f"{kind} {label(int(i))!r} (index {int(i)})" for i in indices[:_MAX_LISTED]]
    more = f" and {indices.numel() - _MAX_LISTED} more" if indices.numel() > _MAX_LISTED else ""
    return ", ".join(shown) + more


def _check_finite(values: torch.Tensor, what: str, label, kind: str) -> None:
    bad = torch.nonzero(~torch.isfinite(values)).flatten().cpu()
    if bad.numel():
        first = float(values[int(bad[0])])
        raise InvalidLPError(f"{what} is not finite ({first}) for {_describe(bad, label, kind)}")


def _check_matrix_finite(lp: LinearProgram) -> None:
    values = lp.A.values()
    bad = torch.nonzero(~torch.isfinite(values)).flatten().cpu()
    if not bad.numel():
        return
    crow = lp.A.crow_indices().cpu()
    cols = lp.A.col_indices().cpu()[bad]
    rows = torch.searchsorted(crow, bad, right=True) - 1
    entries = [f"row {lp.row_label(int(i))!r} (index {int(i)}), column {lp.col_label(int(j))!r} "
               f"(index {int(j)}): {float(values[int(k)])}"
               for i, j, k in zip(rows[:_MAX_LISTED], cols[:_MAX_LISTED], bad[:_MAX_LISTED])]
    more = f" and {bad.numel() - _MAX_LISTED} more" if bad.numel() > _MAX_LISTED else ""
    raise InvalidLPError("constraint matrix A has non-finite entries at " + "; ".join(entries)
                         + more)


def _check_bounds(kind: str, lower: torch.Tensor, upper: torch.Tensor, label) -> None:
    for problem, test in BOUND_PROBLEMS:
        bad = torch.nonzero(test(lower, upper)).flatten().cpu()
        if bad.numel():
            i = int(bad[0])
            raise InvalidLPError(
                f"{bad.numel()} {kind}{'s' if bad.numel() > 1 else ''} with {problem}: "
                f"{_describe(bad, label, kind)}; the first has [lower, upper] = "
                f"[{float(lower[i])}, {float(upper[i])}]")
