"""The starting point of a solve: the warm start as given, checked, and in the scaled space.

``solve_lp(..., warm_start=...)`` takes (x, y) (either may be None: zeros), an
:class:`l2o.LPResult`, or anything that iterates to (x, y) (a PDHG-Net ``WarmStart``).  x, y
are of the unscaled LP, y in the minimization-form sign convention of LPResult.  The start is
the initial iterate and the first Halpern anchor.

A warm start is weighed against the cold start z_c = (proj(0), 0) (:func:`weigh_warm_start`),
by the restart rule's own sufficient-decrease test (:func:`keeps_warm_start`) on the fixed-point
error r(z) = ||z - T(z)||_P, twice:

1. at the first iteration: r_1(z_w) <= beta_sufficient r_1(z_c)   (beta_sufficient = 0.2,
   RestartParams.sufficient), r_1 the error after one iteration from the start;
2. if it passes, after ``SolverOptions.warm_start_trial`` (16) more iterations of each:
   r_17(z_w) <= beta_sufficient r_17(z_c).

The solve goes on from the start that wins, exactly as the plain solve from it (its checks where
the plain solve has them), the other's iterations spent: a start dropped at the first test costs
1 iteration, at the second 17, and a start kept 17 (none when it meets the tolerance at its
first check, or at the trial's, which the termination test reads).

Why the second test: r_1 measures how far the start is from a fixed point of T locally, not
how far it is from the optimum, and a learned start can have a small r_1 and a large distance.
The PDHG-Net set cover model's starts at 4x the training size (fresh seeds 9,320,001-2) have
r_1(z_w) = 0.18 r_1(z_c) with 74% relative error in x (at the training size random errors of
10% of (x*, y*) have 0.36-0.37 r_1(z_c)):
the first test keeps them, and to 1e-8 they needed 48,770 and 62,594 iterations against cold
34,753 and 48,001 (CPU).  Their lead does not last: without restarts (omega = 1) r(z_w) / r(z_c)
is 0.18 after 1 iteration, 0.47-0.49 after 17, 0.52-0.58 after 65 and 0.68 after 193, while a
start z* + d with random |d| = 3% |z*| goes from 0.13 to 0.07.  On seed 9,320,002 neither the
primal weight (the controller of a cold solve: 60,098; omega_0 = ||y~|| / ||x~|| of the start:
51,266) nor half the start (x alone: 61,826; y alone is dropped at the first test) made the kept
start pay.  The second test drops it: cold + 17 iterations.  What the trial costs elsewhere: 16
iterations on each start kept, and on the warm start grid of perturbed NETLIB optima
(benchmarks/warmstart_grid.py, 312 starts) one start that paid when kept by the first test
alone (recipe, z* + d with |d| = 1e-2 |z*|, seed 2: r_17 ratio 0.24; 642 iterations to 1e-8
against cold 2049) is dropped.

Why the cold start must win ties by that margin and not only by r(z_w) > r(z_c) (first test):

* A perturbed optimum can be nearer z* and yet farther from a fixed point of T (a random d moves
  the variables at their bounds off them): on NETLIB, starts z* + d with |d| = 1e-2 |z*| had
  r(z0) from 0.1 to 2e4 times r(z_c), and those above r(z_c) needed up to 2.8x the cold
  iterations (stocfor1 to 1e-4: 10497 against 3713).
* A start with r(z_w) > 0.2 r(z_c) is, in r, not ahead of the cold solve by more than its first
  check interval: the traced cold solves of the relaxation families (auction, set cover,
  facility at 4x) made their first restart, a sufficient one, at their first check of 64 (192)
  iterations, so dropping such a start gives up about one check interval, the allowance the
  solver promises.  Keeping it can cost far more: what it buys is decided in the endgame,
  thousands of iterations later, by the primal weight's path.  The PDHG-Net family models'
  starts on auction at 4x the training size, fresh seeds 9,320,000-2, had r(z_w) = 0.55-0.70
  r(z_c), stayed at 0.55-1.3 times the cold run's r over the first 400 iterations (random errors
  with the same r(z_w) fell to 0.2-0.3 of it: the network's systematic error does not decay),
  and to 1e-8 needed 9,666 / 8,834 / 54,082 iterations against cold 9,857 / 7,809 / 26,561 (the
  last stalled at r ~ 6e-7 for 15,000 iterations while the smoothed primal weight crept from
  0.2 to 1e-3 in halves over epochs of 0.36 N).  Iteration counts to 1e-8 there are chaotic at
  the scale of the allowance: perturbing c by a relative 1e-9 moves the cold solve of the last
  one from 26,561 to 27,073-27,137 iterations.  The price: random errors of 10% of (x*, y*) on
  auction at 4x have r(z_w) = 0.21-0.22 r(z_c) and are dropped too, though kept they saved
  1.3-4.8x to 1e-8.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from l2o.lp.result import LPResult

from .iteration import ChunkRunner, IterationState
from .prepare import PreparedLP
from .statistics import CheckStatistics, CheckVectors

__all__ = ["StartChoice", "cold_start", "is_warm", "keeps_warm_start", "scaled_start",
           "warm_start_vectors", "weigh_warm_start"]


def is_warm(warm_start: Any) -> bool:
    """Whether ``warm_start`` gives a start at all: None and (None, None) are the cold start."""
    if warm_start is None:
        return False
    if isinstance(warm_start, tuple) and len(warm_start) == 2:
        return any(v is not None for v in warm_start)
    return True


def warm_start_vectors(lp, warm_start: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (n,), y (m,)) float64 of ``warm_start`` (module docstring), where they lie.

    A start already on the solve's device needs no host round trip, so the tensors are not moved.

    Raises:
        ValueError: wrong shapes, or nan/inf entries.
    """
    n, m = lp.num_cols, lp.num_rows
    if warm_start is None:
        return torch.zeros(n, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)
    if isinstance(warm_start, LPResult):
        x, y = warm_start.x, warm_start.y
    else:
        x, y = warm_start
    x = torch.zeros(n, dtype=torch.float64) if x is None else torch.as_tensor(x).double()
    y = torch.zeros(m, dtype=torch.float64) if y is None else torch.as_tensor(y).double()
    if x.shape != (n,) or y.shape != (m,):
        raise ValueError(f"solve_lp: warm start needs x of shape ({n},) and y of shape ({m},), "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        raise ValueError("solve_lp: warm start contains nan/inf")
    return x, y


def scaled_start(prepared: PreparedLP, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x~, y~) on the prepared device: scaled, x projected onto the column bounds and y onto
    the dual signs its rows allow (a dual start with the wrong signs is projected like x)."""
    p, t = prepared.scaled, prepared.termination
    dev, dtype = prepared.device, prepared.dtype
    x0 = torch.clamp(p.scale_primal(x.to(dev, dtype)), p.col_lower, p.col_upper)
    y0 = torch.clamp(p.scale_dual(y.to(dev, dtype)), t.dual_rec_lower, t.dual_rec_upper)
    return x0, y0


def cold_start(prepared: PreparedLP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The scaled cold start (x~, y~) = (proj(0), 0) and its A~^T y~, as ``restart_epoch``
    takes them."""
    p = prepared.scaled
    x0, y0 = scaled_start(prepared, torch.zeros(p.shape[1], dtype=torch.float64),
                          torch.zeros(p.shape[0], dtype=torch.float64))
    return x0, y0, p.op.rmatvec(y0)


def keeps_warm_start(warm_error: float, cold_error: float, sufficient: float) -> bool:
    """Whether the solve goes on from the warm start: r(z_w) <= ``sufficient`` r(z_c) (module
    docstring), ``sufficient`` the restart rule's beta_sufficient.

    A nan on either side keeps the warm start (the solve then stops on it as it would have).
    """
    return not warm_error > sufficient * cold_error


@dataclass
class StartChoice:
    """What weighing the warm start against the cold start decided (:func:`weigh_warm_start`).

    Attributes:
        warm: whether the solve goes on from the warm start (else from the cold start).
        checks: the checks of the start taken that the solve's loop has not seen yet, in order:
            (statistics, vectors, whether the restart rule reads it).  A trial's check is read
            by the termination test only, so that the restart rule sees the checks where the
            plain solve from that start has them.
        iterations: the iterations the weighing ran (both starts).
        outside: those of the start not taken (the restart rule counts without them).
        ahead: the iterations the start taken ran past its first check: its next check comes
            that much sooner, where the plain solve's is.
    """

    warm: bool
    checks: list[tuple[CheckStatistics, CheckVectors, bool]]
    iterations: int
    outside: int
    ahead: int


def weigh_warm_start(state: IterationState, runner: ChunkRunner,
                     cold: tuple[torch.Tensor, torch.Tensor, torch.Tensor], warm_error: float,
                     sufficient: float, trial: int) -> StartChoice:
    """After the warm start's first check (r(z_w) = ``warm_error``), the cold start's first
    iteration and check, and, if the warm start passes :func:`keeps_warm_start` there, ``trial``
    more iterations of each and the same test on their r (module docstring).

    The state is left as the start taken has it after its own iterations: the cold start's is
    exactly the plain cold solve's, the warm start's the plain warm solve's.  Both runs use the
    initial step sizes, so the r compared are in one metric.

    Args:
        state, runner: the solve's iteration (its iterate: the warm start's after one iteration).
        cold: the scaled cold start and its A~^T y~ (:func:`cold_start`).
        warm_error: r of the warm start's first check.
        sufficient: the restart rule's beta_sufficient.
        trial: iterations of the second test (0: the first test alone).
    """
    warm_first = state.save_iterate()
    state.restart_epoch(runner.p, *cold)
    cold_stats, cold_vectors = runner.run(1)
    if not keeps_warm_start(warm_error, cold_stats.fixed_point_error, sufficient):
        return StartChoice(False, [(cold_stats, cold_vectors, True)], 1, 1, 0)
    if trial == 0:
        state.load_iterate(warm_first)
        return StartChoice(True, [], 1, 1, 0)
    # the first check's vectors outlive the trial's iterations (on CUDA they may be the check
    # graph's buffers, which the next check overwrites): copies
    cold_first = (cold_stats, _copied(cold_vectors), True)
    cold_trial_stats, cold_trial_vectors = runner.run(trial)
    cold_trial = (cold_trial_stats, _copied(cold_trial_vectors), False)
    cold_after = state.save_iterate()
    state.load_iterate(warm_first)
    warm_trial_stats, warm_trial_vectors = runner.run(trial)
    if keeps_warm_start(warm_trial_stats.fixed_point_error, cold_trial_stats.fixed_point_error,
                        sufficient):
        return StartChoice(True, [(warm_trial_stats, warm_trial_vectors, False)],
                           1 + 2 * trial, 1 + trial, trial)
    state.load_iterate(cold_after)
    return StartChoice(False, [cold_first, cold_trial], 1 + 2 * trial, 1 + trial, trial)


def _copied(vectors: CheckVectors) -> CheckVectors:
    """A copy of a check's vectors (CheckVectors' tensors, and the rays' dicts, cloned)."""
    return replace(vectors, **{
        f.name: ({k: v.clone() for k, v in value.items()} if isinstance(value, dict)
                 else value.clone())
        for f in fields(vectors) for value in [getattr(vectors, f.name)]})
