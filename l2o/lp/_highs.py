"""Conversions between :class:`LinearProgram` and highspy's ``HighsLp``, and a quiet HiGHS.

HiGHS stores an LP exactly as :class:`LinearProgram` does (``min/max c^T x + offset``,
``row_lower <= A x <= row_upper``, ``col_lower <= x <= col_upper``, infinite bounds as +-inf),
so the conversion is a copy of arrays. HiGHS's ``offset`` is our ``c0``: for an MPS file it is
minus the RHS entry of the objective row (the CPLEX/HiGHS convention).

HiGHS prints to stdout by default, also for errors. :func:`quiet_highs` silences the console
and captures the log in a temporary file, so that readers can quote HiGHS's own error and
warning lines in Python exceptions and warnings.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .model import MAXIMIZE, MINIMIZE, LinearProgram



class _LazyHighspy:
    """``highspy``, imported on first use: ``import l2o`` (the solver, the models) must work
    where highspy is not installed (a GPU box); only file I/O and the reference solver need it."""

    def __getattr__(self, name: str):
        try:
            import highspy as module
        except ImportError as err:
            raise ImportError("reading/writing LP files and the HiGHS reference solver need "
                              "highspy: pip install highspy") from err
        return getattr(module, name)


highspy = _LazyHighspy()

__all__ = ["HighsLog", "quiet_highs", "lp_from_highs", "lp_to_highs", "SMALL_MATRIX_VALUE",
           "DEFAULT_SMALL_MATRIX_VALUE"]

# HiGHS drops matrix entries with |a| <= small_matrix_value (default 1e-9) when it reads a
# file; gas11 has twelve entries of 9.999e-10. 1e-12 is the smallest value HiGHS accepts:
# keep every entry the file has (tinier ones are dropped by HiGHS with a warning we forward).
# The option also steers HiGHS's solvers (with 1e-12 its simplex ends "Unknown" on klein1):
# solvers set it back to the default once the model is passed (the matrix keeps its entries).
SMALL_MATRIX_VALUE = 1e-12
DEFAULT_SMALL_MATRIX_VALUE = 1e-9


@dataclass
class HighsLog:
    """HiGHS's log lines of one quiet session (filled when the session ends)."""

    lines: list[str] = field(default_factory=list)

    def matching(self, *prefixes: str) -> list[str]:
        """Lines that start with one of ``prefixes`` (e.g. "ERROR", "WARNING")."""
        return [line for line in self.lines if line.startswith(prefixes)]


def _new_highs() -> highspy.Highs:
    """``highspy.Highs()`` without its banner: HiGHS >= 1.16 prints "Running HiGHS ..." from C++
    to the process's stdout when constructed, before any option can be set, which would corrupt
    ``l2o solve --json`` output. File descriptor 1 is pointed at /dev/null for the call."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def quiet_highs() -> Iterator[tuple[highspy.Highs, HighsLog]]:
    """A ``Highs`` instance that prints nothing; its log is in the returned ``HighsLog``."""
    highs = _new_highs()
    log = HighsLog()
    fd, log_path = tempfile.mkstemp(prefix="l2o-highs-", suffix=".log")
    os.close(fd)
    try:
        highs.setOptionValue("log_to_console", False)
        highs.setOptionValue("log_file", log_path)
        highs.setOptionValue("small_matrix_value", SMALL_MATRIX_VALUE)
        yield highs, log
    finally:
        highs.setOptionValue("log_file", "")  # closes the file
        highs.setOptionValue("output_flag", False)
        with open(log_path, "rb") as handle:  # HiGHS may echo raw bytes of a garbage file
            text = handle.read().decode("utf-8", errors="replace")
        log.lines = [line.strip() for line in text.splitlines() if line.strip()]
        with contextlib.suppress(OSError):
            os.remove(log_path)


def lp_from_highs(hlp: highspy.HighsLp, name: str = "") -> tuple[LinearProgram, list[str]]:
    """Copy a ``HighsLp`` into a :class:`LinearProgram` (unvalidated).

    Integer, semi-continuous and semi-integer columns are relaxed: integrality is dropped and
    a semi-continuous column (x = 0 or l <= x <= u) gets the bounds [min(0, l), u].

    Returns:
        (lp, relaxed): the LP and the names of the columns that were relaxed.
    """
    m, n = int(hlp.num_row_), int(hlp.num_col_)
    matrix = hlp.a_matrix_
    start = np.asarray(matrix.start_, dtype=np.int64)
    index = np.asarray(matrix.index_, dtype=np.int64)
    value = np.asarray(matrix.value_, dtype=np.float64)
    if matrix.format_ == highspy.MatrixFormat.kRowwise:
        A = sp.csr_matrix((value, index, start), shape=(m, n))
    else:
        A = sp.csc_matrix((value, index, start), shape=(m, n)).tocsr()

    col_lower = np.array(hlp.col_lower_, dtype=np.float64).reshape(n)
    col_upper = np.array(hlp.col_upper_, dtype=np.float64).reshape(n)
    row_names = list(hlp.row_names_) if len(hlp.row_names_) == m else None
    col_names = list(hlp.col_names_) if len(hlp.col_names_) == n else None

    relaxed: list[str] = []
    if len(hlp.integrality_):
        kinds = np.array([int(k) for k in hlp.integrality_])
        semi = (kinds == int(highspy.HighsVarType.kSemiContinuous)) | (
            kinds == int(highspy.HighsVarType.kSemiInteger))
        col_lower[semi] = np.minimum(col_lower[semi], 0.0)
        discrete = np.flatnonzero(kinds != int(highspy.HighsVarType.kContinuous))
        relaxed = [col_names[j] if col_names else f"x{j}" for j in discrete]

    sense = MAXIMIZE if hlp.sense_ == highspy.ObjSense.kMaximize else MINIMIZE
    lp = LinearProgram.create(
        np.asarray(hlp.col_cost_, dtype=np.float64).reshape(n), A,
        np.asarray(hlp.row_lower_, dtype=np.float64).reshape(m),
        np.asarray(hlp.row_upper_, dtype=np.float64).reshape(m),
        col_lower, col_upper, c0=float(hlp.offset_) + 0.0, sense=sense,  # + 0.0: no -0.0
        row_names=row_names, col_names=col_names, name=name or str(hlp.model_name_),
        validate=False)
    return lp, relaxed


def lp_to_highs(lp: LinearProgram) -> highspy.HighsLp:
    """Copy a :class:`LinearProgram` into a ``HighsLp`` (column-wise matrix, names if any)."""
    A = lp.scipy_matrix().tocsc()
    A.sort_indices()
    hlp = highspy.HighsLp()
    hlp.num_col_ = lp.num_cols
    hlp.num_row_ = lp.num_rows
    hlp.col_cost_ = _numpy(lp.c)
    hlp.col_lower_ = _numpy(lp.col_lower)
    hlp.col_upper_ = _numpy(lp.col_upper)
    hlp.row_lower_ = _numpy(lp.row_lower)
    hlp.row_upper_ = _numpy(lp.row_upper)
    hlp.offset_ = float(lp.c0)
    hlp.sense_ = highspy.ObjSense.kMaximize if lp.sense == MAXIMIZE else highspy.ObjSense.kMinimize
    hlp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    hlp.a_matrix_.num_col_ = lp.num_cols
    hlp.a_matrix_.num_row_ = lp.num_rows
    hlp.a_matrix_.start_ = A.indptr.astype(np.int32)
    hlp.a_matrix_.index_ = A.indices.astype(np.int32)
    hlp.a_matrix_.value_ = A.data.astype(np.float64)
    if lp.name:
        hlp.model_name_ = lp.name
    if lp.row_names is not None:
        hlp.row_names_ = list(lp.row_names)
    if lp.col_names is not None:
        hlp.col_names_ = list(lp.col_names)
    return hlp


def _numpy(t) -> np.ndarray:
    return t.detach().to("cpu").double().numpy().copy()

