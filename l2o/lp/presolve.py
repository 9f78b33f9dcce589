"""HiGHS presolve and postsolve of a :class:`LinearProgram`, through highspy.

:func:`presolve_lp` hands the LP to HiGHS's presolve (``Highs.presolve``), which removes empty
and singleton rows, fixed and dominated columns, doubleton equations, dependent equations and
more, and keeps a record of each reduction. The reduced LP (``Highs.getPresolvedLp``) is solved
by any solver; :meth:`Presolved.postsolve` then replays the record backwards
(``Highs.postsolve`` with a primal-dual solution and no basis, HiGHS >= 1.16) and returns the
primal-dual point of the original LP.

Which original column and row each reduced one is: HiGHS keeps the names of the columns and rows
that survive presolve, so the LP is passed with the names ``"0", "1", ...`` (its position) and
the reduced LP's names give ``col_index`` / ``row_index``. The reduced LP carries the original
names again (or none, if the original had none).

Conventions. Duals here are those of :class:`l2o.LPResult` (minimization form: y_i >= 0 on an
active lower row bound, <= 0 on an active upper one; reduced costs c_min - A^T y). HiGHS works
with duals in the sense of its own LP, and its presolved LP of a maximization is a minimization
of the negated objective (c0 negated too), so the signs are converted on the way in and out.

Outcomes (:class:`PresolveOutcome`): REDUCED (solve ``reduced``, then postsolve), EMPTY (every
row and column removed: :meth:`Presolved.postsolve` of the empty point is the solution),
NOT_REDUCED (nothing to remove), INFEASIBLE (presolve proved it), UNBOUNDED_OR_INFEASIBLE
(presolve could not tell which: solve the original LP to find out), UNBOUNDED, TIMEOUT (the
time limit came before any reduction; one that comes later gives REDUCED, with the reductions
made so far), FAILED (any other HiGHS presolve status).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._highs import highspy, lp_from_highs, lp_to_highs, quiet_highs
from .model import MAXIMIZE, LinearProgram

__all__ = ["PresolveOutcome", "Presolved", "ReducedLPMap", "presolve_lp"]


class PresolveOutcome(enum.Enum):
    """What HiGHS presolve made of an LP (see the module docstring)."""

    REDUCED = "reduced"
    EMPTY = "empty"
    NOT_REDUCED = "not_reduced"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    UNBOUNDED_OR_INFEASIBLE = "unbounded_or_infeasible"
    TIMEOUT = "timeout"
    FAILED = "failed"


_STATUS_WORDS = {
    PresolveOutcome.REDUCED: "reduced",
    PresolveOutcome.EMPTY: "reduced to empty",
    PresolveOutcome.NOT_REDUCED: "not reduced",
    PresolveOutcome.INFEASIBLE: "infeasible",
    PresolveOutcome.UNBOUNDED: "unbounded",
    PresolveOutcome.UNBOUNDED_OR_INFEASIBLE: "unbounded or infeasible",
    PresolveOutcome.TIMEOUT: "time limit reached before any reduction",
}


def _outcome(presolve_status, model_status) -> PresolveOutcome:
    ps, ms = highspy.HighsPresolveStatus, highspy.HighsModelStatus
    if presolve_status == ps.kInfeasible or model_status == ms.kInfeasible:
        return PresolveOutcome.INFEASIBLE
    if model_status == ms.kUnbounded:
        return PresolveOutcome.UNBOUNDED
    if (presolve_status == ps.kUnboundedOrInfeasible
            or model_status == ms.kUnboundedOrInfeasible):
        return PresolveOutcome.UNBOUNDED_OR_INFEASIBLE
    if presolve_status == ps.kReducedToEmpty:
        return PresolveOutcome.EMPTY
    if presolve_status == ps.kReduced:
        return PresolveOutcome.REDUCED
    if presolve_status == ps.kNotReduced:
        return PresolveOutcome.NOT_REDUCED
    if presolve_status == ps.kTimeout:   # a time limit after some reductions gives kReduced
        return PresolveOutcome.TIMEOUT
    return PresolveOutcome.FAILED


class ReducedLPMap:
    """What a presolve record (HiGHS's :class:`Presolved`, the GPU reductions'
    :class:`~l2o.lp.gpu_presolve.GpuPresolved`) shares: the counts of what was removed and the
    restriction of a start to the kept columns and rows.  Needs the attributes ``original``,
    ``outcome``, ``reduced``, ``col_index``, ``row_index`` (index arrays or tensors) and
    ``time_s``.
    """

    @property
    def reduced_or_empty(self) -> bool:
        """Whether postsolve applies (the LP was REDUCED or EMPTY)."""
        return self.outcome in (PresolveOutcome.REDUCED, PresolveOutcome.EMPTY)

    @property
    def rows_removed(self) -> int:
        return self.original.num_rows - len(self.row_index) if self.reduced_or_empty else 0

    @property
    def cols_removed(self) -> int:
        return self.original.num_cols - len(self.col_index) if self.reduced_or_empty else 0

    @property
    def nnz_removed(self) -> int:
        if not self.reduced_or_empty:
            return 0
        return self.original.nnz - (self.reduced.nnz if self.reduced is not None else 0)

    def report(self) -> dict[str, Any]:
        """{rows_removed, cols_removed, nnz_removed, time_s} of this presolve."""
        return {"rows_removed": self.rows_removed, "cols_removed": self.cols_removed,
                "nnz_removed": self.nnz_removed, "time_s": self.time_s}

    def _restrict_start(self, x: torch.Tensor | None,
                        y: torch.Tensor | None) -> tuple[torch.Tensor | None,
                                                         torch.Tensor | None]:
        """(x[col_index], y[row_index]) of a start of the original LP; None stays None."""
        if self.reduced is None:
            raise ValueError(f"presolve outcome {self.outcome.value}: no reduced LP to start")

        def restrict(v: torch.Tensor | None, index: Any, size: int, what: str):
            if v is None:
                return None
            v = torch.as_tensor(v).detach()
            if v.shape != (size,):
                raise ValueError(f"warm start: {what} has shape {tuple(v.shape)}, the LP needs "
                                 f"({size},)")
            return v[torch.as_tensor(index).to(v.device)]

        return (restrict(x, self.col_index, self.original.num_cols, "x"),
                restrict(y, self.row_index, self.original.num_rows, "y"))


@dataclass
class Presolved(ReducedLPMap):
    """An LP after HiGHS presolve, with what it takes to map solutions back.

    Attributes:
        original: the LP given to :func:`presolve_lp`.
        outcome: :class:`PresolveOutcome`.
        reduced: the reduced LP (REDUCED), else None. Its names are the original ones.
        col_index: (n_red,) int64, the original column of each reduced column (empty if none).
        row_index: (m_red,) int64, the original row of each reduced row.
        time_s: seconds of the presolve, conversions to and from HiGHS included.
        message: HiGHS's presolve status in words, and its reductions line.
        timings: seconds of its phases: "to_highs" (copy and pass the LP), "presolve"
            (HiGHS), "from_highs" (copy the reduced LP back).
    """

    original: LinearProgram
    outcome: PresolveOutcome
    reduced: LinearProgram | None
    col_index: np.ndarray
    row_index: np.ndarray
    time_s: float
    message: str
    timings: dict[str, float] = field(default_factory=dict)
    _highs: Any = field(default=None, repr=False)

    by = "highs"   # LPResult.presolve["by"]
    ray = None     # HiGHS proves infeasibility / unboundedness without a certificate


    def reduce_warm_start(self, x: torch.Tensor | None,
                          y: torch.Tensor | None) -> tuple[torch.Tensor | None,
                                                           torch.Tensor | None]:
        """A start (x, y) of the original LP restricted to the reduced LP's columns and rows.

        x_red = x[col_index], y_red = y[row_index] (either may be None and stays None). The
        reduced LP's variables are original variables (HiGHS presolve removes and substitutes
        columns, it does not transform the survivors), so x_red is the same point; a row that
        absorbed a substituted column keeps its dual, a good start though not always exact.
        """
        return self._restrict_start(x, y)

    def carry_dual_ray(self, y: torch.Tensor) -> torch.Tensor:
        """A Farkas ray y (m_red,) of the reduced LP placed at its rows of the original LP (0 at
        removed rows; (m,) float64 CPU): HiGHS has no postsolve of rays, so the caller verifies
        it on the original LP."""
        out = torch.zeros(self.original.num_rows, dtype=torch.float64)
        out[torch.from_numpy(self.row_index)] = torch.as_tensor(y).detach().to("cpu",
                                                                                torch.float64)
        return out

    def carry_primal_ray(self, x: torch.Tensor) -> torch.Tensor:
        """A primal ray x (n_red,) of the reduced LP placed at its columns of the original LP
        (0 at removed columns; (n,) float64 CPU; the caller verifies it)."""
        out = torch.zeros(self.original.num_cols, dtype=torch.float64)
        out[torch.from_numpy(self.col_index)] = torch.as_tensor(x).detach().to("cpu",
                                                                                torch.float64)
        return out

    def postsolve(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                  reduced_costs: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """The original LP's primal-dual point of a reduced LP's point, by HiGHS postsolve.

        Args:
            x: (n_red,) primal point of ``reduced`` (None or empty for the EMPTY outcome).
            y: (m_red,) row duals of ``reduced`` in the minimization-form convention.
            reduced_costs: (n_red,) the column duals that go with (x, y) (the solver's dual
                slack), minimization form; None: c_red - A_red^T y (exact stationarity).

        Returns:
            (x, y, r, time_s): (n,), (m,), (n,) float64 CPU tensors of the original LP (y and
            the column duals r in the minimization-form convention) and the seconds
            postsolve took.

        Raises:
            ValueError: postsolve does not apply (outcome not REDUCED/EMPTY), wrong shapes.
            RuntimeError: HiGHS's postsolve failed.
        """
        if not self.reduced_or_empty:
            raise ValueError(f"presolve outcome {self.outcome.value}: nothing to postsolve")
        start = time.perf_counter()
        solution = highspy.HighsSolution()
        if self.reduced is None:   # EMPTY
            x_red = y_red = col_dual = row_value = np.zeros(0)
        else:
            red = self.reduced
            x_red = _host(x, red.num_cols, "x")
            y_red = _host(y, red.num_rows, "y")
            A = red.scipy_matrix()
            if reduced_costs is None:
                c_min = red.minimize_c[0].detach().cpu().double().numpy()
                col_dual = c_min - A.T @ y_red
            else:
                col_dual = _host(reduced_costs, red.num_cols, "reduced_costs")
            row_value = A @ x_red
            if red.sense == MAXIMIZE:   # HiGHS's duals are in the LP's own sense
                y_red, col_dual = -y_red, -col_dual
        solution.col_value = x_red
        solution.row_value = row_value
        solution.col_dual = col_dual
        solution.row_dual = y_red
        solution.value_valid = True
        solution.dual_valid = True
        status = self._highs.postsolve(solution)
        if status == highspy.HighsStatus.kError:
            raise RuntimeError("HiGHS postsolve failed")
        out = self._highs.getSolution()
        n, m = self.original.num_cols, self.original.num_rows
        x_out = torch.tensor(np.asarray(out.col_value, dtype=np.float64).reshape(n))
        y_out = torch.tensor(np.asarray(out.row_dual, dtype=np.float64).reshape(m))
        r_out = torch.tensor(np.asarray(out.col_dual, dtype=np.float64).reshape(n))
        if self.original.sense == MAXIMIZE:
            y_out, r_out = -y_out, -r_out
        return x_out, y_out, r_out, time.perf_counter() - start


def _host(v: torch.Tensor | None, size: int, what: str) -> np.ndarray:
    if v is None:
        if size:
            raise ValueError(f"postsolve: {what} of the reduced LP ({size} entries) is required")
        return np.zeros(0)
    out = torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(-1).numpy()
    if out.shape != (size,):
        raise ValueError(f"postsolve: {what} has {out.shape[0]} entries, the reduced LP {size}")
    return out


def _positions(names: list[str], size: int, what: str) -> np.ndarray:
    try:
        index = np.array([int(name) for name in names], dtype=np.int64)
    except ValueError:
        index = np.zeros(0, dtype=np.int64)
    if len(index) != size or len(np.unique(index)) != size:
        raise RuntimeError(f"HiGHS presolve lost the {what} names that identify its {what}s")
    return index


def presolve_lp(lp: LinearProgram, time_limit: float | None = None) -> Presolved:
    """Run HiGHS presolve on ``lp`` (CPU; any device's LP is copied to the host).

    Args:
        lp: the LP.
        time_limit: seconds HiGHS may spend (None: no limit): it stops there and the outcome
            is REDUCED with the reductions made so far, or TIMEOUT if there were none.

    Returns:
        A :class:`Presolved` (holding the HiGHS instance that postsolve needs).
    """
    start = time.perf_counter()
    hlp = lp_to_highs(lp)
    hlp.col_names_ = [str(j) for j in range(lp.num_cols)]
    hlp.row_names_ = [str(i) for i in range(lp.num_rows)]
    timings = {}
    with quiet_highs() as (highs, log):
        highs.passModel(hlp)
        if time_limit is not None:
            highs.setOptionValue("time_limit", float(time_limit))
        timings["to_highs"] = time.perf_counter() - start
        highs.presolve()
        timings["presolve"] = time.perf_counter() - start - timings["to_highs"]
        presolve_status = highs.getModelPresolveStatus()
        outcome = _outcome(presolve_status, highs.getModelStatus())
        presolved = highs.getPresolvedLp() if outcome == PresolveOutcome.REDUCED else None
    message = "HiGHS presolve: " + _STATUS_WORDS.get(outcome, str(presolve_status))
    reductions = log.matching("Presolve reductions")
    if reductions:
        message += f" ({reductions[-1]})"
    empty = np.zeros(0, dtype=np.int64)
    reduced, col_index, row_index = None, empty, empty
    if presolved is not None:
        reduced, _ = lp_from_highs(presolved, name=lp.name)
        col_index = _positions(reduced.col_labels(), reduced.num_cols, "column")
        row_index = _positions(reduced.row_labels(), reduced.num_rows, "row")
        reduced.col_names = ([lp.col_names[j] for j in col_index]
                             if lp.col_names is not None else None)
        reduced.row_names = ([lp.row_names[i] for i in row_index]
                             if lp.row_names is not None else None)
    total = time.perf_counter() - start
    timings["from_highs"] = total - timings["to_highs"] - timings["presolve"]
    return Presolved(original=lp, outcome=outcome, reduced=reduced, col_index=col_index,
                     row_index=row_index, time_s=total, message=message, timings=timings,
                     _highs=highs)
