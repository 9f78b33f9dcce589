"""Reading and writing LP files through HiGHS (highspy): no parser of our own.

Formats (chosen by HiGHS from the file name):

* MPS, fixed format (names with blanks, e.g. ``LIM 1``) and free format, with the
  ``OBJSENSE`` section (``MAX``/``MIN``), ``RANGES``, every bound type (``UP LO FX FR MI PL BV
  LI UI SC``), an objective constant given as the RHS of the objective row (the constant is
  minus that RHS: the CPLEX/HiGHS convention), integer ``MARKER`` lines;
* CPLEX LP files (``.lp``), objective constants included;
* either one gzipped (``.mps.gz``, ``.lp.gz``).

A MIP (integer markers, integer/binary/semi-continuous bounds) is read as its LP relaxation,
with a :class:`UserWarning` naming the relaxed columns. Files that HiGHS reads as something other
than what they say are refused with :class:`LPFormatError`: a quadratic objective (``QUADOBJ``,
``QMATRIX``, ``QSECTION``; an LP file's ``[ ... ]/2`` term), a row or column name given twice
(HiGHS would keep both as separate rows/columns and drop every name), and a damaged gzip file
(HiGHS reads a truncated one up to where it ends, without a word). HiGHS reports a *warning* status for
some valid files (gas11: bound-section notes, tiny coefficients); those files are accepted and
HiGHS's warning lines are forwarded as a :class:`UserWarning` only when they mean data changed.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import warnings
import zlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

from ._highs import highspy, lp_from_highs, lp_to_highs, quiet_highs
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
        sense and constant (``c0``). ``lp.name`` is the file name without its extensions
        (``afiro`` for ``afiro.mps.gz``; HiGHS's choice: NAME lines are often free text).

    Raises:
        FileNotFoundError: no such file.
        LPFormatError: HiGHS cannot parse it, or it parses to invalid data (NaN, lower > upper),
            with HiGHS's message and the offending row/column; a damaged gzip file; a quadratic
            objective; a row or column name that repeats.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"LP file not found: {path}")
    if not path.is_file():
        raise LPFormatError(f"{path} is not a file")
    with quiet_highs() as (highs, log):
        status = highs.readModel(str(path))
        hlp = highs.getLp()
        quadratic_terms = highs.getHessianNumNz()
    stem = _stem(path)
    nan_reason = _nan_token(path, hlp)  # raises LPFormatError for a damaged gzip file
    if status == highspy.HighsStatus.kError:
        details = "; ".join(log.matching("ERROR")) or "HiGHS returned an error status"
        # HiGHS rejects NaN bounds (and, from 1.16, a NaN in an LP file): say where it is
        reason = _invalid_data(hlp, stem) or nan_reason
        raise LPFormatError(f"cannot read {path} as an MPS or LP file: {details}"
                            + (f" ({reason})" if reason else ""))
    if nan_reason:
        raise LPFormatError(nan_reason)
    if quadratic_terms:
        raise LPFormatError(f"{path} has a quadratic objective ({quadratic_terms} Hessian "
                            f"entries): it is a QP, and l2o solves linear programs only")
    if reason := _repeated_names(log, hlp):
        raise LPFormatError(f"{path}: {reason}: each row and column needs its own name (in "
                            f"MPS, a column's lines must also be contiguous)")

    lp, relaxed = lp_from_highs(hlp, name=stem)
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

    MPS keeps the LP's structure (ranged rows via RANGES, the objective constant as the RHS
    of the objective row, OBJSENSE MAX). Notes on what HiGHS writes: free-format MPS, with blanks
    in names replaced by underscores; in ``.lp`` files a ranged row becomes two rows
    (``NAMElo``, ``NAMEup``); numbers carry 15 significant digits (HiGHS's format), so a
    value may change by a relative 5e-15 in a round trip.

    Args:
        lp: the LP (any device; copied to the host).
        path: ``.mps``, ``.mps.gz``, ``.lp`` or ``.lp.gz``.

    Raises:
        ValueError: unsupported extension; InvalidLPError: invalid LP; OSError: HiGHS could
            not write the file.
    """
    path = Path(path).expanduser()
    if not str(path).lower().endswith(_WRITABLE):
        raise ValueError(f"cannot write {path}: use one of the extensions {', '.join(_WRITABLE)}")
    validate_lp(lp)
    lp, renamed = names_without_blanks(lp)
    compress = path.suffix.lower() == ".gz"
    # HiGHS 1.15's ".gz" writer writes plain text (and fails on some names): write plain
    # text to a temporary file next to the target, then gzip it here
    target = path.with_suffix("") if compress else path
    if compress:
        fd, tmp = tempfile.mkstemp(prefix=".l2o-", suffix=target.suffix, dir=path.parent or ".")
        os.close(fd)
        target = Path(tmp)
    try:
        with quiet_highs() as (highs, log):
            passed = highs.passModel(lp_to_highs(lp))
            written = (highs.writeModel(str(target)) if passed != highspy.HighsStatus.kError
                       else None)
        if passed == highspy.HighsStatus.kError:
            raise InvalidLPError(f"HiGHS rejected the LP: {'; '.join(log.matching('ERROR'))}")
        if written == highspy.HighsStatus.kError:
            raise OSError(f"HiGHS could not write {path}: {'; '.join(log.matching('ERROR'))}")
        if compress:
            with open(target, "rb") as src, gzip.open(path, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
    finally:
        if compress:
            with contextlib.suppress(OSError):
                os.remove(target)
    if renamed:
        warnings.warn(f"{path}: blanks in {renamed} row/column names written as underscores "
                      f"(free MPS and LP files cannot hold them)", UserWarning, stacklevel=2)


def names_without_blanks(lp: LinearProgram) -> tuple[LinearProgram, int]:
    """``lp`` with whitespace in names replaced by '_' (HiGHS's MPS and solution-file writers do
    the same, its LP writer drops all names instead), and how many names changed."""
    changed = 0

    def clean(names):
        nonlocal changed
        if names is None:
            return None
        out = ["_".join(name.split()) if any(ch.isspace() for ch in name) else name
               for name in names]
        changed += sum(a != b for a, b in zip(out, names))
        return out

    cleaned = replace(lp, row_names=clean(lp.row_names), col_names=clean(lp.col_names))
    return (cleaned if changed else lp), changed


def _repeated_names(log, hlp: highspy.HighsLp) -> str:
    """Which row or column names repeat ("" if none).

    An MPS column whose lines are not contiguous, or a row listed twice in ROWS, becomes a second
    column/row of the same name; HiGHS then logs the pair ('Variables 0 and 2 have the same name
    "X1"') and drops all names. An LP file may name two constraints alike (HiGHS keeps the names).
    """
    repeated = [line.split(":", 1)[-1].strip() for line in log.matching("WARNING")
                if "have the same name" in line]
    for kind, names in (("row", hlp.row_names_), ("column", hlp.col_names_)):
        counts = Counter(names)
        repeated += [f"{kind} name {name!r} is given {count} times"
                     for name, count in counts.items() if count > 1]
    if not repeated:
        return ""
    shown = "; ".join(repeated[:5]) + (f" and {len(repeated) - 5} more" if len(repeated) > 5
                                       else "")
    return f"names repeat ({shown})"


def _stem(path: Path) -> str:
    """``afiro`` for afiro.mps.gz, ``pr_d0.85`` for pr_d0.85.mps (only format suffixes go)."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix.lower()
    return name[: -len(suffix)] if suffix in (".mps", ".lp", ".free", ".fixed") else name


def _invalid_data(hlp: highspy.HighsLp, name: str) -> str:
    """Why the (partially read) LP is invalid, or "" when it looks valid or is unusable."""
    try:
        lp, _ = lp_from_highs(hlp, name=name)
        validate_lp(lp)
    except InvalidLPError as error:
        return str(error)
    except Exception:  # noqa: BLE001 - a half-read model may not even convert
        return ""
    return ""


_BLANK = frozenset(b" \t\r\n")


def _open_text(path: Path):
    """The file as bytes, gunzipped when it starts with the gzip magic (not by its name:
    HiGHS reads a plain-text ``.gz`` too)."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _nan_token(path: Path, hlp: highspy.HighsLp, chunk_bytes: int = 1 << 26) -> str:
    """HiGHS drops a NaN matrix coefficient silently: look for a 'nan' token that is no
    row or column name (a number, then) and say where it is, quoting the line ("" if none).

    A byte search in chunks of whole lines, no parsing of the format: about a second per
    350 MB of text, small next to HiGHS's own read.
    """
    try:
        return _find_nan_token(path, hlp, chunk_bytes)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        # HiGHS reads a truncated .gz up to where it ends (a smaller LP, without a word) or
        # fails on the cut-off line: the damaged file is the reason either way
        raise LPFormatError(f"{path} is a damaged gzip file (truncated or corrupt: {error}); "
                            f"download or compress it again") from None


def _find_nan_token(path: Path, hlp: highspy.HighsLp, chunk_bytes: int) -> str:
    names: set[str] | None = None
    lines_before = 0
    with _open_text(path) as handle:
        while chunk := handle.read(chunk_bytes):
            chunk += handle.readline()  # end the chunk on a line boundary
            text = chunk.lower()
            position = text.find(b"nan")
            while position >= 0:
                start, end = position, position + 3
                if start > 0 and text[start - 1] in b"+-":
                    start -= 1
                if (start == 0 or text[start - 1] in _BLANK) and (end == len(text) or
                                                                  text[end] in _BLANK):
                    if names is None:  # rows/columns may be called "nan": those are names
                        names = {part.lower() for name in (*hlp.row_names_, *hlp.col_names_)
                                 for part in (name, *name.split())}
                    if text[start:end].decode() not in names:  # "-nan" is no name "nan"
                        line_start = text.rfind(b"\n", 0, position) + 1
                        line_end = text.find(b"\n", position)
                        line = chunk[line_start:line_end if line_end >= 0 else len(chunk)]
                        number = lines_before + text.count(b"\n", 0, position) + 1
                        return (f"{path}, line {number}: a number is NaN: "
                                f"{line.decode('utf-8', errors='replace').strip()!r}")
                position = text.find(b"nan", end)
            lines_before += chunk.count(b"\n")
    return ""
