"""Presolve reductions in torch, on the LP's device, and their exact postsolve.

HiGHS presolve (:mod:`l2o.lp.presolve`) costs 1-28 us per nonzero on the CPU, more than the
whole GPU solve of many large LPs. The reductions here (:mod:`l2o.lp.gpu_rules`, the math in
each rule's docstring) are each a handful of vectorized kernels over the nonzeros, no loop over
rows or columns, repeated in rounds while they change something (at most :data:`MAX_ROUNDS`).
A round runs the cheap rules (:data:`CHEAP_RULES`: 1, 2, 3 and 9 below) or, when a round of
those changed nothing, the costly ones (4-8): kernel launches, not arithmetic, are their cost
on a GPU, so the costly rules wait until the cheap chains (a singleton row fixes a column,
whose removal leaves another singleton row, ...) are done, and the searches for parallel rows
and columns (:data:`SEARCH_RULES`) only while they find something. The rules, in order:

1. fixed columns (l_c,j = u_c,j): moved into the row bounds and the objective constant;
2. free and empty rows: removed (an empty row that needs a nonzero activity: infeasible);
3. singleton rows: turned into column bounds, the row remembered as the bound's source;
4. activity rows: rows whose activity bounds over the column bounds force every column to a
   bound (forcing rows: columns fixed, row removed), make the row redundant (removed) or one of
   its sides redundant (dropped), or prove infeasibility;
5. parallel rows (proportional coefficients): merged into one row with the intersection of
   their bounds;
6. parallel columns (proportional coefficients and costs): merged into one column whose
   bounds are the sums of theirs (t0331-4l: 25% of the nonzeros, 6,913 -> 5,377 PDHG
   iterations to 1e-4);
7. column singletons in equality rows (zero-cost slacks, free columns): substituted out, the
   row becomes an inequality (a free column's row goes);
8. dual fixing: a column no row keeps from moving the way its cost prefers is fixed at that
   bound (nsct2's and dbir2's reduced LPs need 20x fewer PDHG iterations with 7. and 8.);
9. empty columns: fixed at the bound their cost prefers (an infinite one: unbounded);
10. implied bounds, once the others are done (:data:`FINAL_RULES`): an infinite column bound
    replaced by the one its rows' activities imply, loosened by
    :data:`~l2o.lp.gpu_rules.IMPLIED_MARGIN` (PSLP's primal propagation boxes every column
    this way; the box, not a reduction, is what PDHG gains: nsct2 7,297 -> 6,529 iterations to
    1e-4).

The bounds singleton rows set carry their source row, as implied bounds do, so postsolve stays
exact; no finite column bound is tightened (a tighter box close to the optimum slows PDHG:
:data:`~l2o.lp.gpu_rules.IMPLIED_MARGIN`).

Postsolve replays the record (:class:`l2o.lp.gpu_rules.Record`) backwards. x: the reduced LP's
x at the kept columns, the fixed values at fixed ones, then, latest step first, each
substituted column from its equality row, x_j = (b_i - sum_k a_ik x_k) / a_ij, clamped to its
bounds, and each merged parallel column split from its parent's value. y: the reduced LP's y at
the kept rows plus the substitutions' shifts c_j / a_ij, then the walk of
:func:`l2o.lp.gpu_rules.hand_to_sources` (a multiplier on an implied bound handed to its source
row first, :func:`l2o.lp.gpu_rules.release_implied_bounds`; reduced costs handed to the rows
that set column bounds, forcing rows' duals, merged rows' duals split back; a kept column's
multiplier is the reduced LP's own, when the caller has one, so every absolute residual of the
reduced LP's point is kept). The postsolved point of the reduced LP's optimum is optimal for
the original LP (tests: KKT errors 1e-17-1e-9 in float64 against HiGHS's optimum). A Farkas
ray maps back the same way with c = 0, a primal ray through the substitutions and merges with
b = 0.

Not here (HiGHS and PSLP do them): doubleton equations, dominated columns, dependent rows,
finite bound tightening.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bilevel.linalg.operators import csr_tensor

from .gpu_rules import (
    FEASIBILITY_TOLERANCE,
    KEPT,
    Record,
    Reductions,
    forward_columns,
    forward_duals,
    hand_to_sources,
)
from .model import LinearProgram
from .presolve import PresolveOutcome, ReducedLPMap
from .validate import InvalidLPError, check_structure, invalid_bounds, validate_lp

__all__ = ["CHEAP_RULES", "DEFAULT_RULES", "FEASIBILITY_TOLERANCE", "FINAL_RULES",
           "IMPLIED_ROUNDS", "MAX_ROUNDS", "RULES", "SEARCH_RULES", "GpuPresolved",
           "gpu_presolve_lp"]

# Rounds of the reductions at most. A round runs the cheap rules (CHEAP_RULES) or, once a
# round of those changed nothing, the costly ones; on the shared large LPs they stop changing
# anything within 5-17 rounds (ken-11's chain of singleton rows and fixed columns is the
# longest; benchmarks/gpu_presolve_rules.py prints the rounds).
MAX_ROUNDS = 40
# With a keep threshold (presolve="auto"), a reduction that has removed less than
# GIVE_UP_FRACTION of it, in rows and in nonzeros, after GIVE_UP_ROUND rounds is given up: on
# the 16 shared large and 20 NETLIB LPs none such reached the 20% thresholds later (pds-10 went
# from 3.5% to 5.5% of the rows in 7 rounds, scrs8 from 4.1% to 12.4% in 32), and every
# reduction "auto" keeps had removed >= 11% of the rows or 29% of the nonzeros by then
# (benchmarks/gpu_presolve_rules.py --rounds; benchmarks/RESULTS.md, '"auto" gives up a
# reduction far below its threshold').
GIVE_UP_ROUND = 3
GIVE_UP_FRACTION = 0.25
# The rules, in order (methods of l2o.lp.gpu_rules.Reductions).
RULES = ("fixed_columns", "empty_and_free_rows", "singleton_rows", "activity_rows",
         "parallel_rows", "parallel_columns", "singleton_columns", "dual_fix", "empty_columns",
         "implied_bounds")
# Run once the others are done, in rounds of their own (at most IMPLIED_ROUNDS), and nothing
# after them: they remove nothing, and their postsolve needs their source rows and columns
# kept (l2o.lp.gpu_rules.release_implied_bounds).
FINAL_RULES = ("implied_bounds",)
# The first two rounds set nearly all (bounds per round on the shared large LPs: cre-b 2,045,
# 29,773, 0; nemsemm2 23,206, 100, 59, 48; dfl001 5,211, 481, 492, 391): later rounds add a few
# percent for a pass over the nonzeros each.
IMPLIED_ROUNDS = 4
# Costly rules that search the whole LP for pairs (hashing every row or column): each runs
# again only while its last call found something. On the shared large LPs every later call
# found nothing but dbir2's second parallel-rows call (3 rows after 95); each call is 50-130
# kernels (ken-11: parallel columns 4, then 0, 0 in three costly rounds).
SEARCH_RULES = ("parallel_rows", "parallel_columns")
# A few kernels each: they run to a fixed point before the costly rules (70-230 kernels each
# on the large LPs, counted on the CPU) run again, which they do only after a round of cheap
# ones changed nothing. Each kernel launch costs microseconds of host time on a GPU whatever
# its size: ken-11's 8 rounds of all rules were 3,897 torch operations.
CHEAP_RULES = ("fixed_columns", "empty_and_free_rows", "singleton_rows", "empty_columns")
# Those run by default: all. Column singletons (zero-cost or free ones) were left out while
# measured alone (fit2p's 3000 zero-cost slacks substituted: 19585 PDHG iterations against 16193
# without; "auto" does not keep fit2p's reduction, which removes no row); with dual fixing after
# them they make nsct2's reduced LP need 7297 iterations to 1e-4 instead of more than 20000
# (benchmarks/RESULTS.md, "Why PDHG needs more iterations on our reduced nsct2").
DEFAULT_RULES = RULES


@dataclass
class GpuPresolved(ReducedLPMap):
    """An LP after the torch reductions, with what postsolve needs.

    The same interface as :class:`l2o.lp.presolve.Presolved` (HiGHS's), so the solver's
    presolve loop takes either.

    Attributes:
        original: the LP given to :func:`gpu_presolve_lp`.
        outcome: REDUCED, EMPTY (everything removed), NOT_REDUCED, INFEASIBLE or UNBOUNDED
            (:class:`~l2o.lp.presolve.PresolveOutcome`).
        reduced: the reduced LP (REDUCED; CPU float64, no names: ``col_index`` and
            ``row_index`` say which they are), else None.
        col_index, row_index: (n_red,), (m_red,) int64 CPU, the original column / row of each
            reduced one.
        time_s: seconds of the reductions (the copy of the reduced LP to the host included).
        message: what was removed, in words, or what was proved.
        ray: for INFEASIBLE a Farkas ray y (m,) and for UNBOUNDED a primal ray x (n,) of the
            original LP (CPU float64; the caller verifies it), else None.
        rounds: rounds of reductions run.
        rules: per rule of :data:`RULES`, {"rows", "cols", "nnz"} removed, "sides" (row bounds
            dropped) and "time_s".
    """

    original: LinearProgram
    outcome: PresolveOutcome
    reduced: LinearProgram | None
    col_index: torch.Tensor
    row_index: torch.Tensor
    time_s: float
    message: str
    ray: torch.Tensor | None = None
    rounds: int = 0
    rules: dict[str, dict[str, float]] = field(default_factory=dict)
    _record: Record | None = field(default=None, repr=False)

    by = "gpu"

    def reduce_warm_start(self, x: torch.Tensor | None,
                          y: torch.Tensor | None) -> tuple[torch.Tensor | None,
                                                           torch.Tensor | None]:
        """A start (x, y) of the original LP as one of the reduced LP: x_red = x[col_index]
        (the kept variables are the original ones; PDHG projects x onto the reduced bounds; a
        parent of merged parallel columns takes x_j + sum_k lambda_k x_k) and y_red the kept
        rows' duals after :func:`l2o.lp.gpu_rules.forward_duals` (a row that took a
        substituted column's cost has its dual shifted by c_j / a_ij, a merged parallel row's
        dual joins its parent's: the inverse of postsolve). None stays None."""
        x_red, y_red = self._restrict_start(x, y)
        if x_red is not None and self._record is not None:
            rec = self._record
            full = torch.as_tensor(x).detach().to(rec.value.device, torch.float64)
            x_red = forward_columns(rec, full)[self.col_index.to(rec.value.device)].to(
                x_red.device, x_red.dtype)
        if y_red is not None and self._record is not None:
            rec = self._record
            full = torch.as_tensor(y).detach().to(rec.shift.device, torch.float64)
            y_red = forward_duals(rec, full)[self.row_index.to(rec.shift.device)].to(
                y_red.device, y_red.dtype)
        return x_red, y_red

    def postsolve(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                  reduced_costs: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """The original LP's primal-dual point of a reduced LP's point (module docstring).

        Args:
            x: (n_red,) primal point of ``reduced`` (None for the EMPTY outcome).
            y: (m_red,) its row duals, minimization-form convention (None for EMPTY).
            reduced_costs: (n_red,) the multipliers of the reduced LP's column bounds that go
                with (x, y) (the solver's dual slack); None: c - A^T y. A kept column's
                multiplier of a bound a singleton row set is handed to that row.

        Returns:
            (x, y, r, time_s): (n,), (m,), (n,) float64 CPU tensors of the original LP (y and
            the reduced costs r in the minimization-form convention) and the seconds
            postsolve took.
        """
        start = time.perf_counter()
        x_red, y_red = self._reduced_point(x, "x"), self._reduced_point(y, "y")
        c = self.original.minimize_c[0]
        x_out = self._primal_postsolve(x_red, self._record.value, ray=False)
        kept = None
        if reduced_costs is not None:   # built where the record is (no host pass over n)
            device = self._record.value.device
            kept = torch.zeros(self.original.num_cols, dtype=torch.float64, device=device)
            kept[self.col_index.to(device)] = self._reduced_point(reduced_costs, "x").to(device)
        y_out, r_out = self._dual_postsolve(y_red, c, shifts=True, kept_costs=kept)
        return x_out, y_out, r_out, time.perf_counter() - start

    def carry_dual_ray(self, y: torch.Tensor) -> torch.Tensor:
        """A Farkas ray y (m_red,) of the reduced LP as one of the original LP ((m,) float64
        CPU): the dual postsolve with c = 0 (the caller verifies it)."""
        return self._dual_postsolve(self._reduced_point(y, "y"),
                                    torch.zeros(self.original.num_cols, dtype=torch.float64),
                                    shifts=False)[0]

    def carry_primal_ray(self, x: torch.Tensor) -> torch.Tensor:
        """A primal ray x (n_red,) of the reduced LP as one of the original LP: 0 at fixed
        columns, substituted ones from their rows with b = 0 ((n,) float64 CPU; the caller
        verifies it)."""
        zero = torch.zeros(self.original.num_cols, dtype=torch.float64)
        return self._primal_postsolve(self._reduced_point(x, "x"), zero, ray=True)

    # -- postsolve internals ------------------------------------------------------------------
    def _reduced_point(self, v: torch.Tensor | None, what: str) -> torch.Tensor:
        if not self.reduced_or_empty:
            raise ValueError(f"presolve outcome {self.outcome.value}: nothing to postsolve")
        size = len(self.col_index) if what == "x" else len(self.row_index)
        if v is None:
            if size:
                raise ValueError(f"postsolve: {what} of the reduced LP ({size} entries) is "
                                 f"required")
            return torch.zeros(0, dtype=torch.float64)
        v = torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(-1)
        if v.shape != (size,):
            raise ValueError(f"postsolve: {what} has {v.shape[0]} entries, the reduced LP {size}")
        return v

    def _primal_postsolve(self, x_red: torch.Tensor, removed: torch.Tensor,
                          ray: bool) -> torch.Tensor:
        """x (n,): x_red at the kept columns, ``removed`` at fixed ones, then, latest step
        first, the substituted columns from their equality rows (their rows' other columns are
        known by then: kept, fixed, or substituted later) and the merged parallel columns split
        from their parent's value (:meth:`_split_merged_columns`)."""
        rec = self._record
        device = rec.value.device
        out = removed.to(device, torch.float64).clone()
        out[self.col_index.to(device)] = x_red.to(device)
        substituted = rec.sub_row >= 0
        merged = rec.col_parent >= 0
        out[substituted] = 0.0
        if not bool((substituted | merged).any()):
            return out.cpu()
        steps = torch.unique(rec.col_step[substituted | merged]).tolist()
        merge_steps = set(torch.unique(rec.col_step[merged]).tolist())
        m = self.original.num_rows
        for step in sorted(steps, reverse=True):
            if step in merge_steps:
                self._split_merged_columns(out, step, ray)
                continue
            cols = ((rec.col_step == step) & substituted).nonzero().reshape(-1)
            rows = rec.sub_row[cols]
            in_rows = torch.zeros(m, dtype=torch.bool, device=device)
            in_rows[rows] = True
            on = in_rows[rec.rows]
            activity = torch.zeros(m, dtype=torch.float64, device=device).index_add_(
                0, rec.rows[on], rec.vals[on] * out[rec.cols[on]])
            rhs = torch.zeros_like(activity[rows]) if ray else rec.row_rhs[rows]
            value = (rhs - activity[rows]) / rec.sub_coef[cols]
            if not ray:
                value = torch.minimum(torch.maximum(value, rec.sub_lower[cols]),
                                      rec.sub_upper[cols])
            out[cols] = value
        return out.cpu()

    def _split_merged_columns(self, out: torch.Tensor, step: int, ray: bool) -> None:
        """The parallel columns merged at ``step`` (:meth:`l2o.lp.gpu_rules.Reductions.
        parallel_columns`) from their parent's value z = x_j + sum_k lambda_k x_k (in ``out``,
        updated in place). Each member v (the parent, coefficient gamma = 1, and its children,
        gamma = lambda_k) starts at p_v, the point of its bounds nearest 0 (a ray: 0), and the
        rest d = z - sum gamma_v p_v is filled member after member, each taking what its
        bounds allow in d's direction (a ray: only members unbounded that way take any). For
        z within the merged bounds every member ends within its own and the sum is z."""
        rec = self._record
        device = out.device
        child = ((rec.col_step == step) & (rec.col_parent >= 0)).nonzero().reshape(-1)
        parent = rec.col_parent[child]
        heads = torch.unique(parent)
        # members grouped by parent: each parent first, then its children
        first_child = torch.full_like(out, -1, dtype=torch.int64).scatter_reduce(
            0, parent, child, reduce="amin", include_self=False)[heads]
        member = torch.cat([heads, child])
        group = torch.cat([heads, parent])
        gamma = torch.cat([torch.ones_like(heads, dtype=torch.float64), rec.col_ratio[child]])
        lower = torch.cat([rec.parent_lower[first_child], rec.sub_lower[child]])
        upper = torch.cat([rec.parent_upper[first_child], rec.sub_upper[child]])
        order = torch.sort(group, stable=True).indices
        member, group, gamma, lower, upper = (v[order] for v in (member, group, gamma, lower,
                                                                   upper))
        start = torch.zeros(1, dtype=torch.float64, device=device)
        base = start.expand_as(lower) if ray else torch.minimum(torch.maximum(start, lower),
                                                                upper)
        n = len(out)
        z = out[group]
        rest = z - torch.zeros(n, dtype=torch.float64, device=device).index_add_(
            0, group, gamma * base)[group]
        up = (rest * gamma) >= 0                 # this member rises with z (or stays)
        room = torch.where(up, upper - base, base - lower)
        if ray:                                  # a ray moves only along unbounded members
            room = torch.where(torch.isinf(room), torch.inf, 0.0)
        need = rest.abs()
        capacity = torch.minimum(room * gamma.abs(), need)   # finite: at most |rest|
        # what the members before this one in its group take
        before = torch.cumsum(capacity, 0) - capacity
        first = torch.ones_like(group, dtype=torch.bool)
        first[1:] = group[1:] != group[:-1]
        group_start = torch.cummax(torch.where(first, torch.arange(len(group), device=device),
                                               0), 0).values
        before = before - before[group_start]
        take = torch.minimum(torch.clamp(need - before, min=0.0), capacity)
        step_sign = torch.where(up, 1.0, -1.0)
        out[member] = base + step_sign * take / gamma.abs()

    def _dual_postsolve(self, y_red: torch.Tensor, c: torch.Tensor, shifts: bool,
                        kept_costs: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, r) of the original LP: y_red at the kept rows (plus the substitutions' shifts,
        for a solution), then the walk of :func:`l2o.lp.gpu_rules.hand_to_sources`
        (``kept_costs``: the kept columns' own multipliers, (n,) with zeros elsewhere)."""
        rec = self._record
        device = rec.value.device
        y = torch.zeros(self.original.num_rows, dtype=torch.float64, device=device)
        y[self.row_index.to(device)] = y_red.to(device)
        if kept_costs is not None:
            kept_costs = kept_costs.to(device)
        y, r = hand_to_sources(rec, y, c.to(device, torch.float64), shifts, kept_costs)
        return y.cpu(), r.cpu()


def _rule_stats(work: Reductions, names: list[str], step_rule: list[int],
                changes: dict[str, int], seconds: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per rule: {"rows", "cols", "nnz"} it removed, "sides" (row bounds it dropped: its changes
    that removed no row or column) and "time_s" (host seconds: no rule waits for the device
    to time itself). Counted once at the end from the record's steps (one host sync): a row,
    column or entry belongs to the rule of the step that removed it (an entry: the first of its
    row's and its column's)."""
    rec = work.record
    device = rec.col_step.device
    # the rule of each step, and a last slot for what is kept
    rule_of = torch.tensor([*step_rule, len(names)], dtype=torch.int64, device=device)

    def per_rule(step: torch.Tensor) -> torch.Tensor:
        slot = torch.where(step == KEPT, rec.steps, step)
        return torch.bincount(rule_of[slot], minlength=len(names) + 1)[:-1]

    entry_step = torch.minimum(rec.row_step[rec.rows], rec.col_step[rec.cols])
    counts = torch.stack([per_rule(rec.row_step), per_rule(rec.col_step),
                          per_rule(entry_step)]).tolist()
    stats = {}
    for i, name in enumerate(names):
        rows, cols, nnz = counts[0][i], counts[1][i], counts[2][i]
        stats[name] = {"rows": rows, "cols": cols, "nnz": nnz,
                       "sides": changes[name] - rows - cols, "time_s": seconds[name]}
    return stats


def _check_values(lp: LinearProgram, work: Reductions, vals: torch.Tensor) -> None:
    """The value checks of :func:`l2o.lp.validate.validate_lp` (nan/inf in c or A, invalid
    bound pairs) on the copies the reductions work on, in one host sync; on a failure the host
    check names the culprit (:class:`~l2o.lp.validate.InvalidLPError`)."""
    flags = [invalid_bounds(work.col_lower, work.col_upper).any(),
             invalid_bounds(work.row_lower, work.row_upper).any(),
             (~torch.isfinite(work.c)).any(), (~torch.isfinite(vals)).any()]
    if bool(torch.stack(flags).any()):
        validate_lp(lp)
        raise InvalidLPError("gpu_presolve_lp: the LP contains nan/inf or invalid bounds")


def _coo(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, col, value) of each stored entry of a CSR matrix, int64 / float64."""
    crow = A.crow_indices().long()
    rows = torch.repeat_interleave(torch.arange(A.shape[0], device=crow.device), crow.diff())
    return rows, A.col_indices().long(), A.values().to(torch.float64)


def gpu_presolve_lp(lp: LinearProgram, device: Any = None, max_rounds: int = MAX_ROUNDS,
                    rules: tuple[str, ...] = DEFAULT_RULES,
                    min_rows_removed: float = 0.0,
                    min_nnz_removed: float | None = None) -> GpuPresolved:
    """Reduce ``lp`` by the reductions of the module docstring, in torch on ``device``.

    Args:
        lp: the LP; its values are checked on ``device`` (one sync), as
            :func:`l2o.lp.validate.validate_lp` does on the host.
        device: where the reductions run (None: where ``lp.A`` lives). The reduced LP comes
            back on the CPU (float64), as every LinearProgram; the postsolve record stays.
        max_rounds: rounds of the reductions at most (a round: the cheap rules, or the costly
            ones; they stop earlier when a round of each changes nothing).
        rules: which of :data:`RULES` run (in that order): :data:`DEFAULT_RULES`, or another
            subset (to measure a rule).
        min_rows_removed: the share of the rows the reductions must remove for the reduced LP
            to be built (``presolve="auto"``'s criterion); below it the outcome is NOT_REDUCED
            and the message says why. 0: any reduction is built.
        min_nnz_removed: or the share of the nonzeros (None: the rows alone decide): a
            reduction that removes either share is built.

    Returns:
        A :class:`GpuPresolved`.

    Raises:
        InvalidLPError: nan/inf data or invalid bounds (the message names them).
    """
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise ValueError(f"gpu_presolve_lp: unknown rules {unknown}; the rules are {RULES}")
    start = time.perf_counter()
    check_structure(lp)
    device = lp.A.device if device is None else torch.device(device)
    rows, cols, vals = _coo(lp.A.to(device))
    keep = vals != 0     # explicit zeros are no entries
    work = Reductions(lp, rows[keep], cols[keep], vals[keep], device)
    _check_values(lp, work, vals)
    names = [name for name in RULES if name in rules]
    tiers = [[name for name in names if name in CHEAP_RULES],
             [name for name in names if name not in CHEAP_RULES + FINAL_RULES],
             [name for name in names if name in FINAL_RULES]]
    changes = dict.fromkeys(names, 0)
    seconds = dict.fromkeys(names, 0.0)
    step_rule: list[int] = []     # the rule (index into names) that took each step

    exhausted: set[str] = set()   # search rules whose last call found nothing

    def run(tier: list[str]) -> int:
        changed = 0
        for name in tier:
            if name in exhausted:
                continue
            tick = time.perf_counter()
            done = getattr(work, name)()
            if name in SEARCH_RULES and done == 0:
                exhausted.add(name)
            step_rule.extend([names.index(name)] * (work.record.steps - len(step_rule)))
            changes[name] += done
            seconds[name] += time.perf_counter() - tick
            changed += done
            if work.proof is not None:
                break
        return changed

    rounds = changed_total = 0
    gave_up = False
    for rounds in range(1, max_rounds + 1):
        # the costly rules only once the cheap ones are done (an empty tier changes nothing)
        changed = run(tiers[0])
        if changed == 0 and work.proof is None:
            changed = run(tiers[1])
        changed_total += changed
        if work.proof is not None or changed == 0:
            break
        work.compact()
        if rounds == GIVE_UP_ROUND and min_rows_removed > 0:
            gave_up = _far_below(lp, work, min_rows_removed, min_nnz_removed)
            if gave_up:
                break
    stats = _rule_stats(work, names, step_rule, changes, seconds)
    empty_index = torch.zeros(0, dtype=torch.int64)
    if work.proof is not None:
        outcome, why, ray = work.proof
        word = "infeasible" if outcome == PresolveOutcome.INFEASIBLE else "dual infeasible"
        return GpuPresolved(lp, outcome, None, empty_index, empty_index,
                            time.perf_counter() - start,
                            f"GPU presolve: {word}: {why}",
                            None if ray is None else ray.cpu(), rounds, stats)
    removed = {key: sum(r[key] for r in stats.values()) for key in ("rows", "cols", "nnz")}
    share = removed["rows"] / max(lp.num_rows, 1)
    nnz_share = removed["nnz"] / max(lp.nnz, 1)
    everything = removed["rows"] == lp.num_rows and removed["cols"] == lp.num_cols
    enough_nnz = min_nnz_removed is not None and nnz_share >= min_nnz_removed
    worth_it = share >= min_rows_removed or enough_nnz or everything
    if worth_it and tiers[2]:
        # the final rules remove nothing, so they run only where the reduced LP is built
        for _ in range(IMPLIED_ROUNDS):
            changed = run(tiers[2])
            changed_total += changed
            if changed == 0:
                break
        stats = _rule_stats(work, names, step_rule, changes, seconds)
    if changed_total == 0:
        return GpuPresolved(lp, PresolveOutcome.NOT_REDUCED, None, empty_index, empty_index,
                            time.perf_counter() - start, "GPU presolve: nothing to remove",
                            None, rounds, stats)
    by_rule = ", ".join(f"{name} {r['rows']}/{r['cols']}" for name, r in stats.items()
                        if r["rows"] or r["cols"])
    message = (f"GPU presolve: {removed['rows']} rows, {removed['cols']} columns, "
               f"{removed['nnz']} nonzeros removed in {rounds} round(s) (rows/columns: "
               f"{by_rule})")
    if not worth_it:
        # the caller would solve the original LP: no reduced LP to build and copy to the host
        why = f"{share:.1%} of the rows < {min_rows_removed:.0%}"
        if min_nnz_removed is not None:
            why += f" and {nnz_share:.1%} of the nonzeros < {min_nnz_removed:.0%}"
        if gave_up:
            why += (f" (given up after {rounds} rounds, under {GIVE_UP_FRACTION:.0%} of the "
                    f"threshold)")
        return GpuPresolved(lp, PresolveOutcome.NOT_REDUCED, None, empty_index, empty_index,
                            time.perf_counter() - start,
                            f"{message}; {why}: not worth it (the reduced LP is not built)",
                            None, rounds, stats)
    col_index = work.col_alive.nonzero().reshape(-1)
    row_index = work.row_alive.nonzero().reshape(-1)
    reduced = _reduced_lp(lp, work, row_index, col_index)
    outcome = PresolveOutcome.REDUCED
    if reduced.num_cols == 0 and reduced.num_rows == 0:
        outcome, reduced = PresolveOutcome.EMPTY, None
    return GpuPresolved(lp, outcome, reduced, col_index.cpu(), row_index.cpu(),
                        time.perf_counter() - start, message, None, rounds, stats, work.record)


def _far_below(lp: LinearProgram, work: Reductions, min_rows_removed: float,
               min_nnz_removed: float | None) -> bool:
    """Whether the reductions so far (compacted) removed less than GIVE_UP_FRACTION of the
    rows threshold and, if given, of the nonzeros threshold (one host sync)."""
    rows_removed = lp.num_rows - int(work.row_alive.sum())
    if rows_removed >= GIVE_UP_FRACTION * min_rows_removed * lp.num_rows:
        return False
    # compacted: the live entries alone; the record keeps all entries (explicit zeros dropped)
    nnz_removed = work.record.vals.numel() - work.vals.numel()
    return min_nnz_removed is None or nnz_removed < GIVE_UP_FRACTION * min_nnz_removed * lp.nnz


def _reduced_lp(lp: LinearProgram, work: Reductions, row_index: torch.Tensor,
                col_index: torch.Tensor) -> LinearProgram:
    """The LP of the kept rows and columns (CPU float64).

    With every column removed, kept rows would be rows without entries: EMPTY, no LP.
    """
    # compacted after the last round that removed something: the kept rows' and columns' entries
    new_row = torch.cumsum(work.row_alive.long(), 0) - 1
    new_col = torch.cumsum(work.col_alive.long(), 0) - 1
    m, n = len(row_index), len(col_index)
    rows, cols, vals = new_row[work.rows], new_col[work.cols], work.vals
    # rows stay sorted (entries come in CSR order): the row pointers are counts' prefix sums
    crow = torch.zeros(m + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=m), 0)
    A = csr_tensor(crow.cpu(), cols.cpu(), vals.cpu(), (m, n))
    cpu = lambda v: v.to("cpu", torch.float64)
    c = work.c[col_index]
    sign = -1.0 if lp.sense == "maximize" else 1.0   # back to the LP's own sense
    # no names: the reduced LP is the solver's, its result is postsolved (the name lists cost
    # 0.1-0.4 s of host time on pds-50's 270k columns)
    reduced = LinearProgram(
        c=cpu(sign * c), A=A, row_lower=cpu(work.row_lower[row_index]),
        row_upper=cpu(work.row_upper[row_index]), col_lower=cpu(work.col_lower[col_index]),
        col_upper=cpu(work.col_upper[col_index]), c0=sign * work.c0, sense=lp.sense,
        name=lp.name)
    if not math.isfinite(reduced.c0):
        raise RuntimeError("GPU presolve: the objective constant is not finite")
    return reduced
