"""The starting point of a solve: the warm start as given, checked, and in the scaled space.

``solve_lp(..., warm_start=...)`` takes (x, y) (either may be None: zeros), an
:class:`l2o.LPResult`, or anything that iterates to (x, y) (a PDHG-Net ``WarmStart``).  x, y
are of the unscaled LP, y in the minimization-form sign convention of LPResult.  The start is
the initial iterate and the first Halpern anchor.

A warm start is weighed against the cold start z_c = (proj(0), 0) at its first check
(:func:`probe_cold_start`): one iteration from z_c gives the fixed-point error r(z_c) =
||z_c - T(z_c)||_P, and the solve goes on from the warm start only when it passes the restart
rule's own sufficient-decrease test against the cold start (:func:`keeps_warm_start`),

    r(z_w) <= beta_sufficient r(z_c)          (beta_sufficient = 0.2, RestartParams.sufficient),

else from the cold start, exactly as the plain solve from it, one iteration later.

Why the cold start must win ties by that margin and not only by r(z_w) > r(z_c):

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

from typing import Any

import torch

from l2o.lp.result import LPResult

from .iteration import ChunkRunner, IterationState
from .prepare import PreparedLP
from .statistics import CheckStatistics, CheckVectors

__all__ = ["cold_start", "is_warm", "keeps_warm_start", "probe_cold_start", "scaled_start",
           "warm_start_vectors"]


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


def probe_cold_start(state: IterationState, runner: ChunkRunner,
                     cold: tuple[torch.Tensor, torch.Tensor, torch.Tensor], warm_error: float,
                     sufficient: float) -> tuple[CheckStatistics, CheckVectors] | None:
    """After the warm start's first check (r(z_w) = ``warm_error``), one iteration and check
    from the cold start (module docstring).

    Returns the cold start's check unless :func:`keeps_warm_start` (with ``sufficient``): the
    state is then the cold solve's after its first iteration.  Otherwise None, with the state of
    the warm solve after its first iteration restored.  Both runs use the initial step sizes, so
    the two r are in one metric.
    """
    saved = state.save_iterate()
    state.restart_epoch(runner.p, *cold)
    stats, vectors = runner.run(1)
    if not keeps_warm_start(warm_error, stats.fixed_point_error, sufficient):
        return stats, vectors
    state.load_iterate(saved)
    return None
