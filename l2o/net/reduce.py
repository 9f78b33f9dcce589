"""A start exact on a subset of the columns: the columns a model ranks first, solved as a
smaller LP, priced against the rest (a learned column reduction).

PDHG-Net's predictions of the LP relaxations are 30-40% off in (x, y), far from the 0.3-1%
a start needs to save a third of PDHG's iterations to 1e-8 (benchmarks/RESULTS.md, "Which part
of a start must be accurate"). Their *ranking* of the columns is better than their values:
most columns of these LPs sit at their lower bound at the optimum (set cover: 90%), and the
columns the model gives the largest x include the optimal support and the columns whose reduced
costs decide the dual. So:

1. predict (x^, y^) (:func:`l2o.net.predict_warm_start`) and keep the k = ceil(keep n) columns
   with the largest x^_j - l_j (columns without a finite lower bound always stay), plus, for
   every row whose bounds exclude 0 (l_i > 0 or u_i < 0) without a kept nonzero, its best-ranked
   column (so a covering row can still be met);
2. fix the other columns at their lower bounds, x_j = l_j (row bounds shifted by A_j l_j, the
   objective constant by c_j l_j), drop the rows this leaves without a constraint (no kept
   nonzero and 0 within the shifted bounds, or one kept nonzero whose column bounds imply
   the row's: their dual is 0), and solve the reduced LP (the kept columns and rows) with
   ``l2o.solve_lp`` to half the tolerance of the final solve (``FINAL_MARGIN``);
3. price: with its duals y_R, the reduced costs d = c - A^T y_R (minimization form) of the
   dropped columns must be >= 0 for (x_R, l; y_R) to be optimal for the whole LP; columns with
   d_j < -tol (1 + ||c||_inf) join the kept ones and the reduced LP is solved again from the
   last solution, up to ``rounds`` times: first at ``screen_tol`` (1e-4: cheap re-solves) to
   settle the column set (there every column with d_j < +screen_tol (1 + ||c||_inf) joins:
   near-ties at 1e-4 may price in at 1e-8; the columns of the last round, or of a round that
   adds at most ``SETTLED`` of the kept ones, join the next phase's solve without another
   screening solve), then at the final tolerance;
4. the start: x = x_R on the kept columns, l elsewhere; y = y_R on the kept rows, 0 elsewhere.

The dropped columns all price out, so the start is an optimal pair of the whole LP to the
reduced solve's tolerance and the whole solve stops at its first check. Otherwise (a reduced
LP not solved: the kept columns cannot meet the rows, a time limit; or columns still pricing
in after the last round) the fallback start, the model's own, is returned: a start that is
nearly optimal but not quite is kept by the solver and can cost more than cold (set cover at
4x, keep 0.1, three rounds: 87,954 iterations of the whole solve against cold 31,489). The
reduced solves are part of the prediction and counted in its time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["ReducedStart", "ranked_columns", "reduced_start", "reduced_warm_start",
           "solve_with_reduced_start"]

# The last reduced solve goes to FINAL_MARGIN tol: the whole solve's first check measures the
# dual residual with its own reduced costs (one primal step), a little above the reduced
# LP's. A start at 0.99 tol there (facility at 4x, seed 9,400,001: dual residual 1.3e-8 at the
# whole solve's first check) is not optimal to it and cost the whole solve 9,362 iterations;
# at 0.5 tol it stops at its first check, for 0 and 64 more reduced iterations on the other
# two facility seeds (CPU, seeds 9,400,000-2)
FINAL_MARGIN = 0.5
# A screening round whose pricing adds at most this fraction of the kept columns ends the
# screening: those columns join the solve to tol directly (module docstring, step 3)
SETTLED = 0.01


@dataclass(frozen=True)
class ReducedStart:
    """A start from a reduced LP (module docstring); iterates to (x, y) like a WarmStart.

    Attributes:
        x, y: float64 CPU (n,), (m,) (x in its bounds, y of the minimization form).
        prediction_time: seconds of everything: the model's prediction, the selection, the
            reduced solves and the pricing.
        graph_time, inference_time: the model's graph and forward pass (part of it).
        columns: columns of the last reduced LP (of n).
        reduced_iterations: PDHG iterations of all reduced solves together.
        rounds: reduced solves made (at the screening tolerance and at tol).
        status: "OPTIMAL" (the reduced LP was solved to tol and every dropped column priced
            out: the start is optimal for the whole LP) or "FALLBACK" (a reduced solve did not
            end optimal, or columns still priced in after the last round: the fallback start,
            e.g. the model's own, is returned).
        history: one dict per reduced solve: columns, rows, tol, iterations, status,
            seconds (its ``LPResult.solve_time``, setup included) and, for solves with
            ``profile=True``, timings (``LPResult.timings``: seconds per phase).
    """

    x: torch.Tensor
    y: torch.Tensor
    prediction_time: float
    graph_time: float
    inference_time: float
    columns: int
    reduced_iterations: int
    rounds: int
    status: str
    history: list[dict[str, Any]] = field(default_factory=list)

    def __iter__(self):
        return iter((self.x, self.y))


def ranked_columns(x_pred: torch.Tensor, lower: torch.Tensor, keep: float, A_csr,
                   row_lower: np.ndarray, row_upper: np.ndarray) -> np.ndarray:
    """Boolean mask (n,) of the columns kept (module docstring, step 1).

    Args:
        x_pred: the predicted x (n,), in its bounds.
        lower: the column lower bounds (n,) (-inf allowed: such columns are kept).
        keep: fraction of the columns to keep by rank, in (0, 1].
        A_csr: the constraint matrix as a scipy CSR matrix (m, n).
        row_lower, row_upper: row bounds (m,).
    """
    n = x_pred.numel()
    score = (x_pred.double() - lower.double()).numpy()
    score = np.where(np.isfinite(score), score, np.inf)        # no finite lower bound: keep
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(-score, kind="stable")[:max(1, math.ceil(keep * n))]] = True
    mask |= np.isinf(score)
    # rows that x = 0 on their columns cannot meet need one kept column
    needs = (row_lower > 0) | (row_upper < 0)
    met = np.asarray((A_csr[:, mask] != 0).sum(axis=1)).ravel() > 0
    for i in np.flatnonzero(needs & ~met):
        cols = A_csr.indices[A_csr.indptr[i]:A_csr.indptr[i + 1]]
        if cols.size:
            mask[cols[np.argmax(score[cols])]] = True
    return mask


def _reduced_lp(lp, mask: np.ndarray, A_csr, fixed: np.ndarray):
    """The LP over the columns of ``mask``, the others fixed at ``fixed`` (their lower bounds),
    without the rows it does not need: (LP, kept columns, kept rows).

    A row left with no kept nonzero whose shifted bounds hold 0, or with one kept nonzero
    a_ik whose bounds hold a_ik [l_k, u_k] (implied by x_k's own bounds), constrains nothing:
    it is dropped, and y_i = 0 is its optimal dual.  Facility location's x_ij - y_j <= 0 of a
    dropped x_ij becomes -y_j <= 0: redundant with y_j >= 0, and on facility at 4x the training
    size, 14,000 such rows of 20,301 made the reduced LP harder for PDHG than the whole LP
    (seed 9,400,000, keep 0.3: 18,049 iterations to 1e-4, without them 5,633; the whole LP
    10,305).
    """
    from l2o.lp.model import LinearProgram

    kept = np.flatnonzero(mask)
    dropped = ~mask
    shift = A_csr @ np.where(dropped, fixed, 0.0)                # row activity of fixed columns
    c = lp.c.double().numpy()
    lower = lp.row_lower.double().numpy() - shift
    upper = lp.row_upper.double().numpy() - shift
    col_lower = lp.col_lower.double().numpy()[kept]
    col_upper = lp.col_upper.double().numpy()[kept]
    A_kept = A_csr[:, kept].tocsr()
    count = np.diff(A_kept.indptr)
    empty = (count == 0) & (lower <= 0) & (upper >= 0)
    # the activity range a_ik [l_k, u_k] of a row's one kept nonzero (a_ik of either sign)
    single = np.flatnonzero(count == 1)
    a = A_kept.data[A_kept.indptr[single]]
    k = A_kept.indices[A_kept.indptr[single]]
    with np.errstate(invalid="ignore"):                  # 0 * inf: no nonzero is 0 here
        ends = np.stack([a * col_lower[k], a * col_upper[k]])
    implied = np.zeros_like(empty)
    implied[single] = (lower[single] <= ends.min(axis=0)) & (upper[single] >= ends.max(axis=0))
    rows = np.flatnonzero(~(empty | implied))
    return LinearProgram.create(
        c[kept], A_kept[rows], lower[rows], upper[rows], col_lower, col_upper,
        c0=lp.c0 + float(c[dropped] @ fixed[dropped]),
        sense=lp.sense, name=f"{lp.name}_reduced", validate=False), kept, rows


def reduced_warm_start(model, lp, *, keep: float = 0.2, tol: float = 1e-8, rounds: int = 3,
                       screen_tol: float = 1e-4, device: Any = None,
                       **solve_options: Any) -> ReducedStart:
    """The start of a reduced LP over the columns ``model`` ranks first (module docstring).

    Args:
        model: a PDHG-Net model (:func:`l2o.net.load_model`); its predicted x ranks the columns
            and its (x, y) is the start returned when no reduced solve succeeds.
        lp: an :class:`l2o.LinearProgram`.
        keep, tol, rounds, screen_tol: see :func:`reduced_start`.
        device: where the model and the reduced solves run (default: the model's device).
        **solve_options: further ``l2o.solve_lp`` arguments of the reduced solves.

    Returns:
        A :class:`ReducedStart` (its times include the prediction); ``solve_lp(lp,
        warm_start=start)`` takes it.
    """
    from .warmstart import predict_warm_start

    started = time.perf_counter()
    predicted = predict_warm_start(model, lp, device)
    start = reduced_start(lp, predicted.x, keep=keep, tol=tol, rounds=rounds,
                          screen_tol=screen_tol, device=predicted.device,
                          fallback=(predicted.x, predicted.y), **solve_options)
    return replace(start, prediction_time=time.perf_counter() - started,
                   graph_time=predicted.graph_time, inference_time=predicted.inference_time)


def solve_with_reduced_start(model, lp, tol: float = 1e-8, device: Any = None,
                             dtype: torch.dtype = torch.float64, *, keep: float = 0.2,
                             rounds: int = 3, screen_tol: float = 1e-4,
                             **solve_options: Any):
    """The reduced start and the whole solve from it, with one setup of the whole LP (as
    :func:`l2o.net.solve_with_model`):

        prepared = l2o.pdhg.prepare(lp, device, dtype, **preparation options)
        ws = predict_warm_start(model, prepared)        # graph from the prepared scaled LP
        start = reduced_start(lp, ws.x, ...)             # the reduced solves (their own setups)
        res = solve_lp(prepared, tol=tol, warm_start=start, **other options)

    Without it the whole LP is preconditioned twice: by the model's graph (on ``device``) and
    by the solve.

    Times: ``start.prediction_time`` is everything between the setup and the whole solve (the
    model, the selection, the reduced solves and the pricing); ``res.solve_time`` the setup plus
    the whole solve, so their sum is the whole time.

    Args:
        model, keep, rounds, screen_tol: as in :func:`reduced_warm_start`.
        lp, tol, device, dtype: as in :func:`l2o.net.solve_with_model`.
        **solve_options: other :func:`l2o.solve_lp` arguments of the whole solve and of the
            reduced solves (``progress`` and ``iteration_limit``: the whole solve's alone).

    Returns:
        (LPResult, ReducedStart).
    """
    from l2o.device import resolve_device
    from l2o.pdhg import prepare, solve_lp
    from l2o.pdhg.options import PREPARE_OPTIONS

    from .warmstart import predict_warm_start

    if "warm_start" in solve_options:
        raise TypeError("solve_with_reduced_start: the reduced LP gives the warm start; use "
                        "l2o.solve_lp for a given one")
    device = next(model.parameters()).device if device is None else resolve_device(device)
    setup = {k: solve_options[k] for k in (*PREPARE_OPTIONS, "profile") if k in solve_options}
    prepared = prepare(lp, device, dtype, **setup)
    started = time.perf_counter()
    predicted = predict_warm_start(model, prepared)
    reduced = {k: v for k, v in solve_options.items() if k not in ("progress", "iteration_limit")}
    start = reduced_start(lp, predicted.x, keep=keep, tol=tol, rounds=rounds,
                          screen_tol=screen_tol, device=prepared.device, dtype=dtype,
                          fallback=(predicted.x, predicted.y), **reduced)
    start = replace(start, prediction_time=time.perf_counter() - started,
                    graph_time=predicted.graph_time, inference_time=predicted.inference_time)
    return solve_lp(prepared, tol=tol, warm_start=start, **solve_options), start


def reduced_start(lp, rank: torch.Tensor, *, keep: float = 0.2, tol: float = 1e-8,
                  rounds: int = 3, screen_tol: float = 1e-4, device: Any = "cpu",
                  fallback: tuple[torch.Tensor, torch.Tensor] | None = None,
                  **solve_options: Any) -> ReducedStart:
    """The start of the reduced LP over the columns ranked first by ``rank`` (module docstring,
    steps 1-4): the reduced LP solved to ``screen_tol`` and priced, columns that price in
    added, up to ``rounds`` times; then the same to ``tol`` (if tighter), from the last
    screening solution.

    Args:
        lp: an :class:`l2o.LinearProgram`.
        rank: (n,) a predicted x: columns are ranked by rank_j - l_j (largest first).
        keep: fraction of the columns kept by rank, in (0, 1].
        tol: tolerance of the last reduced solve (that of the final solve) and its pricing.
        rounds: times columns may join in each phase (at ``screen_tol``, then at ``tol``);
            0: none, the first column set is solved and returned only if it prices out.
        screen_tol: tolerance of the solves that settle the column set (each round's solve and
            pricing): a re-solve to 1e-8 after columns join costs nearly a whole solve, a
            re-solve to 1e-4 a few hundred iterations.
        device: where the reduced solves run.
        fallback: (x, y) returned if no reduced solve ends optimal (default: x = proj(0),
            y = 0, the cold start).
        **solve_options: further ``l2o.solve_lp`` arguments of the reduced solves (method,
            presolve, check_every, time_limit, ...).

    Returns:
        A :class:`ReducedStart` (graph_time and inference_time nan: no model ran).
    """
    from l2o.pdhg import solve_lp

    if not 0 < keep <= 1:
        raise ValueError(f"reduced_start: keep must be in (0, 1], got {keep}")
    if rounds < 0:
        raise ValueError(f"reduced_start: rounds must be >= 0, got {rounds}")
    rank = torch.as_tensor(rank).detach().to("cpu", torch.float64).reshape(-1)
    if rank.numel() != lp.num_cols or not bool(torch.isfinite(rank).all()):
        raise ValueError(f"reduced_start: rank must hold {lp.num_cols} finite values, got "
                         f"{rank.numel()}")
    started = time.perf_counter()
    A = lp.A.to_sparse_csr() if lp.A.layout != torch.sparse_csr else lp.A
    A_csr = sp.csr_matrix((A.values().double().numpy(), A.col_indices().numpy(),
                           A.crow_indices().numpy()), shape=tuple(A.shape))
    lower, upper = lp.col_lower.double(), lp.col_upper.double()
    fixed = torch.where(torch.isfinite(lower), lower, torch.zeros_like(lower)).numpy()
    mask = ranked_columns(rank, lower, keep, A_csr, lp.row_lower.double().numpy(),
                          lp.row_upper.double().numpy())
    c_min = lp.minimize_c[0].double().numpy()
    c_scale = 1.0 + float(np.abs(c_min).max(initial=0.0))
    history: list[dict[str, Any]] = []

    def solve(mask: np.ndarray, solve_tol: float, start, margin: float):
        """Solve the reduced LP of ``mask`` (from ``start``, an (x, y) of the whole LP, or
        cold); (x, y) of the whole LP and the dropped columns with reduced costs below
        ``margin`` c_scale, or None if the solve did not end optimal."""
        reduced, kept, rows = _reduced_lp(lp, mask, A_csr, fixed)
        if start is not None:
            start = (start[0][torch.from_numpy(kept)], start[1][torch.from_numpy(rows)])
        res = solve_lp(reduced, tol=solve_tol, device=device, warm_start=start, **solve_options)
        history.append({"columns": int(kept.size), "rows": int(rows.size), "tol": solve_tol,
                        "iterations": int(res.iterations), "status": res.status.name,
                        "seconds": res.solve_time, **({"timings": res.timings}
                                                      if res.timings else {})})
        if res.status.name != "OPTIMAL":
            return None
        x = torch.from_numpy(fixed.copy())
        x[torch.from_numpy(kept)] = res.x.double().cpu()
        y = torch.zeros(lp.num_rows, dtype=torch.float64)
        y[torch.from_numpy(rows)] = res.y.double().cpu()
        # reduced costs of the dropped columns, at their lower bounds: d_j >= 0 is optimal
        d = c_min - A_csr.T @ y.numpy()
        return torch.clamp(x, lower, upper), y, (~mask) & (d < margin * c_scale)

    # screening: settle the column set at the looser tolerance. Its duals are only that
    # accurate, so columns whose reduced costs are within it of 0 join too (d_j < +screen):
    # a column missed here that prices in at tol costs a re-solve to tol (37,074 iterations
    # for one column, set cover at 4x), an extra column almost nothing
    screen = max(tol, screen_tol)
    found, start = None, None
    for round_ in range(rounds + 1):
        found = solve(mask, screen, start, screen if screen > tol else -tol)
        if found is None:
            break
        x, y, wrong = found
        if not wrong.any() or (round_ == rounds and screen == tol):
            break
        mask = mask | wrong
        start = (x, y)
        # the last round's columns, or a few (the set settled), join the solve to tol without
        # another screening solve: each solve pays its setup again, and on the H200 that cost
        # more than the iterations of the 1-34-iteration re-screens it saves
        if screen > tol and (round_ == rounds or wrong.sum() <= SETTLED * mask.sum()):
            break
    # the solve to tol, priced at tol too: columns that price in now (their reduced costs were
    # within the screening tolerance) join and the reduced LP is solved again, up to ``rounds``
    # times. A start that does not price out in the end is not returned: it is close to
    # optimal (so the keep rule takes it) yet not optimal, and such a start cost the whole
    # solve 87,954 iterations against cold 31,489 (set cover at 4x, keep 0.1)
    for round_ in range(rounds + 1 if found is not None and screen > tol else 0):
        x, y, _ = found
        # the first from the screening solution; a re-solve after columns joined from cold:
        # from the last solution, optimal but for those columns, the one that joined (set
        # cover at 4x) took 37,522 iterations against 13,138 for the first solve to tol
        start = (x, y) if round_ == 0 else None
        found = solve(mask, FINAL_MARGIN * tol, start, -tol)
        if found is None or not found[2].any() or round_ == rounds:
            break
        mask = mask | found[2]
    if found is not None and found[2].any():
        found = None                                       # not priced out: not returned
    if found is None:
        if fallback is None:
            fallback = (torch.clamp(torch.zeros_like(lower), lower, upper),
                        torch.zeros(lp.num_rows, dtype=torch.float64))
        (x, y), status = fallback, "FALLBACK"
    else:
        (x, y, _), status = found, "OPTIMAL"
    return ReducedStart(x=x, y=y, prediction_time=time.perf_counter() - started,
                        graph_time=math.nan, inference_time=math.nan,
                        columns=int(mask.sum()),
                        reduced_iterations=sum(h["iterations"] for h in history),
                        rounds=len(history), status=status, history=history)
