"""Reading and writing LP files through HiGHS (highspy): no parser of our own.

Formats (chosen by HiGHS from the file name):

* MPS, fixed format (names with blanks, e.g. ``LIM 1``) and free format, with the
  ``OBJSENSE`` section (``MAX``/``MIN``), ``RANGES``, every bound type (``UP LO FX FR MI PL BV
  LI UI SC``), an objective constant given as the RHS of the objective row (the constant is
  minus that RHS: the CPLEX/HiGHS convention), integer ``MARKER`` lines;
* CPLEX LP files (``.lp``), objective constants included;
* either one gzipped (``.mps.gz``, ``.lp.gz``).

A MIP (integer markers, integer/binary/semi-continuous bounds) is read as its LP relaxation,
with a :class:`UserWarning` naming the relaxed columns. HiGHS reports a *warning* status for
some valid files (gas11: bound-section notes, tiny coefficients); those files are accepted and
HiGHS's warning lines are forwarded as a :class:`UserWarning` only when they mean data changed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import highspy

from ._highs import lp_from_highs, lp_to_highs, quiet_highs
from .model import LinearProgram
from .validate import InvalidLPError, LPFormatError, validate_lp

__all__ = ["read_lp", "write_lp"]

_WRITABLE = (".mps", ".mps.gz", ".lp", ".lp.gz")

# HiGHS warnings that mean the LP in memory differs from the file's text.
_DATA_CHANGING = ("ignored", "not in ROWS", "not in COLUMNS", "duplicate")


def read_lp(path: str | os.PathLike) -> LinearProgram:
    """Read an LP from an MPS (fixed or free, optionally ``.gz``) or CPLEX LP file.

    Args:
        path: file name; HiGHS picks the format from the extension (``.mps``, ``.lp``, with an
            optional ``.gz``); other extensions are read as MPS.

    Returns:
        The validated :class:`LinearProgram`, with the file's row and column names, objective
        sense and constant (``c0``). ``lp.name`` is the file's NAME (or the file stem).

    Raises:
        FileNotFoundError: no such file.
        LPFormatError: HiGHS cannot parse it, or it parses to invalid data (NaN, lower > upper),
            with HiGHS's message and the offending row/column.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LP file not found: {path}")
    if not path.is_file():
        raise LPFormatError(f"{path} is not a file")
    with quiet_highs() as (highs, log):
        status = highs.readModel(str(path))
        hlp = highs.getLp() if status != highspy.HighsStatus.kError else None
    if hlp is None:
        details = "; ".join(log.matching("ERROR")) or "HiGHS returned an error status"
        raise LPFormatError(f"cannot read {path} as an MPS or LP file: {details}")

    stem = path.name.split(".")[0]
    lp, relaxed = lp_from_highs(hlp, name=str(hlp.model_name_) or stem)
    changed = [line for line in log.matching("WARNING") if any(k in line for k in _DATA_CHANGING)]
    if changed:
        warnings.warn(f"{path}: HiGHS changed data while reading: " + " | ".join(changed),
                      UserWarning, stacklevel=2)
    if relaxed:
        shown = ", ".join(relaxed[:5]) + (f" and {len(relaxed) - 5} more" if len(relaxed) > 5
                                          else "")
        warnings.warn(f"{path} is a MIP: reading its LP relaxation ({len(relaxed)} integer or "
                      f"semi-continuous columns relaxed: {shown})", UserWarning, stacklevel=2)
    try:
        validate_lp(lp)
    except InvalidLPError as error:
        raise LPFormatError(f"{path}: {error}") from error
    return lp


def write_lp(lp: LinearProgram, path: str | os.PathLike) -> None:
    """Write ``lp`` to an MPS or CPLEX LP file (optionally gzipped) through HiGHS.

    MPS keeps the LP exactly (ranged rows via RANGES, the objective constant as the RHS of
    the objective row, OBJSENSE MAX). Notes on what HiGHS writes: free-format MPS, with blanks
    in names replaced by underscores; in ``.lp`` files a ranged row becomes two rows
    (``NAMElo``, ``NAMEup``). Numbers are written with full double precision.

    Args:
        lp: the LP (any device; copied to the host).
        path: ``.mps``, ``.mps.gz``, ``.lp`` or ``.lp.gz``.

    Raises:
        ValueError: unsupported extension; InvalidLPError: invalid LP; OSError: HiGHS could
            not write the file.
    """
    path = Path(path)
    if not str(path).lower().endswith(_WRITABLE):
        raise ValueError(f"cannot write {path}: use one of the extensions {', '.join(_WRITABLE)}")
    validate_lp(lp)
    with quiet_highs() as (highs, log):
        passed = highs.passModel(lp_to_highs(lp))
        written = highs.writeModel(str(path)) if passed != highspy.HighsStatus.kError else None
    if passed == highspy.HighsStatus.kError:
        raise InvalidLPError(f"HiGHS rejected the LP: {'; '.join(log.matching('ERROR'))}")
    if written == highspy.HighsStatus.kError:
        raise OSError(f"HiGHS could not write {path}: {'; '.join(log.matching('ERROR'))}")
