"""Restarts of the Halpern iteration and the primal weight controller (host side).

Both act only at termination checks, on a few scalars of the check's statistics record.

Restart rules (:class:`RestartRule`, as OR-Tools PDLP's ``RestartStrategy``):

* ``ADAPTIVE`` (cuPDLPx, Lu & Yang 2024; the default).  With r(z) = ||z - T(z)||_P the
  fixed-point error in the PDHG metric P = [[omega/eta I, A^T], [A, 1/(eta omega) I]], the anchor
  z^{n,0} of the current epoch, the current iterate z^{n,k} and the value r_prev at the previous
  check, restart when

      sufficient:  r(z^{n,k}) <= beta_sufficient r(z^{n,0})
      necessary:   r(z^{n,k}) <= beta_necessary r(z^{n,0})  and  r(z^{n,k}) > r_prev
      artificial:  k >= beta_artificial N          (N: total iterations so far)

* ``EVERY_CHECK``: restart at every check (after the first).
* ``NEVER``: one epoch; the Halpern anchor stays the starting point.

r(z^{n,0}) of a new anchor is taken one of two ways (:class:`AnchorError`):

* ``RESTART_CHECK`` (the default): r at the check that restarted.  The new anchor is that
  check's point z^ = T(z), so r(z^{n,0}) = ||T(z^) - z^||_P <= ||T(z) - z||_P (T is nonexpansive
  in the P metric): an upper bound, read with no extra work;
* ``NEW_ANCHOR`` (cuPDLPx): r(z^{n,0}) itself, from a check one iteration into the new epoch
  (the first Halpern iteration from z^{n,0}, with weight 1/2, gives T(z^{n,0})).  That check
  costs a check's work once per restart.

The rule needs a little memory across checks, :class:`RestartMemory` (r of the anchor, r at
the previous check, where the epoch began); :func:`choose_restart` is a pure function of it.

Primal weight (cuPDLPx PID controller): omega^0 = :attr:`PrimalWeightParams.initial` (1: after
the bound and objective rescaling ||c~|| and ||b~|| are both about 1, so this is PDLP's
||c~|| / ||b~||), and at a restart, with Delta x = x^ - x^{n,0},
Delta y = y^ - y^{n,0} (displacement of the epoch),

    e^n = log(omega ||Delta x|| / ||Delta y||)
    log omega^{n+1} = log omega^n - [K_P e^n + K_I sum_i rho^{n-i} e^i + K_D (e^n - e^{n-1})].

Safeguard: if a displacement norm is outside [1e-16, 1e12] or the ratio of the relative
residuals is outside [1e-8, 1e8], omega is reset to the weight of the restart whose relative
primal and dual residuals were closest (in log scale), and the controller state is cleared.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace

__all__ = ["AnchorError", "PrimalWeightPID", "PrimalWeightParams", "RestartMemory",
           "RestartParams", "RestartRule", "choose_restart", "restart_reason"]


class RestartRule(enum.Enum):
    """When the Halpern iteration restarts (module docstring)."""

    ADAPTIVE = "adaptive"
    EVERY_CHECK = "every_check"
    NEVER = "never"


class AnchorError(enum.Enum):
    """How r of a new epoch's anchor is measured (module docstring)."""

    RESTART_CHECK = "restart_check"
    NEW_ANCHOR = "new_anchor"


@dataclass(frozen=True)
class RestartParams:
    """The restart rule and beta_sufficient, beta_necessary, beta_artificial of ``ADAPTIVE``.

    beta_necessary = 0.8 is PDLP's value.  cuPDLPx 0.3.0 uses 0.5, which took 4% more iterations
    to 1e-8 over 25 LPs here (and did not solve agg in 400k); its anchor error
    (``anchor_error=AnchorError.NEW_ANCHOR``) took 12% more (benchmarks/RESULTS.md, "Our PDHG
    and cuPDLPx 0.3.0, difference by difference").
    """

    sufficient: float = 0.2
    necessary: float = 0.8
    artificial: float = 0.36
    rule: RestartRule = RestartRule.ADAPTIVE
    anchor_error: AnchorError = AnchorError.RESTART_CHECK

    def __post_init__(self) -> None:
        if not isinstance(self.rule, RestartRule):
            raise TypeError(f"RestartParams: rule must be a RestartRule "
                             f"({', '.join(r.name for r in RestartRule)}), got {self.rule!r}")
        if not isinstance(self.anchor_error, AnchorError):
            raise TypeError(f"RestartParams: anchor_error must be an AnchorError "
                             f"({', '.join(a.name for a in AnchorError)}), "
                             f"got {self.anchor_error!r}")


@dataclass(frozen=True)
class RestartMemory:
    """What the restart rule remembers between checks.

    Attributes:
        anchor_error: r(z) at the current epoch's anchor (inf before the first check).
        previous_error: r(z) at the previous check.
        epoch_start: the iteration at which the current epoch began.
        checks: number of checks seen so far (of the current epoch with
            ``AnchorError.NEW_ANCHOR``); 0: the next check measures the anchor's error.
    """

    anchor_error: float = math.inf
    previous_error: float = math.inf
    epoch_start: int = 0
    checks: int = 0

    @property
    def measures_anchor(self) -> bool:
        """Whether the next check records the anchor's error (and restarts nothing): the
        solver runs one iteration before it, so that it measures r of the anchor."""
        return self.checks == 0


def restart_reason(params: RestartParams, error: float, anchor_error: float, previous_error: float,
                   epoch_iterations: int, total_iterations: int) -> str | None:
    """Which criterion (if any) of the rule asks for a restart: for ``ADAPTIVE``
    "sufficient", "necessary" or "artificial" (module docstring); "every_check"; or None."""
    if params.rule is RestartRule.NEVER:
        return None
    if params.rule is RestartRule.EVERY_CHECK:
        return "every_check"
    if error <= params.sufficient * anchor_error:
        return "sufficient"
    if error <= params.necessary * anchor_error and error > previous_error:
        return "necessary"
    if epoch_iterations >= params.artificial * total_iterations:
        return "artificial"
    return None


def choose_restart(params: RestartParams, memory: RestartMemory, error: float,
                   iterations: int) -> tuple[str | None, RestartMemory]:
    """(restart reason or None, the memory after this check), a pure function.

    Args:
        params: the rule and its thresholds.
        memory: the memory after the previous check.
        error: r(z) of this check's point (``CheckStatistics.fixed_point_error``).
        iterations: total iterations so far.

    The first check (after the first iteration, of T(z0)) restarts nothing: it records r(z0) as
    the anchor's error.  After a restart the new anchor is this check's point z^: with
    ``AnchorError.RESTART_CHECK`` r(z), at least r(z^) (T is nonexpansive in the P metric),
    becomes the anchor's error; with ``NEW_ANCHOR`` the memory starts afresh
    (:attr:`RestartMemory.measures_anchor`), and the next check, one iteration into the epoch,
    records r(z^) as the first check does.
    """
    if memory.measures_anchor:
        return None, RestartMemory(anchor_error=error, previous_error=error,
                                   epoch_start=memory.epoch_start, checks=1)
    reason = restart_reason(params, error, memory.anchor_error, memory.previous_error,
                            iterations - memory.epoch_start, iterations)
    if reason is None:
        return None, replace(memory, previous_error=error, checks=memory.checks + 1)
    if params.anchor_error is AnchorError.NEW_ANCHOR:
        return reason, RestartMemory(epoch_start=iterations)
    return reason, RestartMemory(anchor_error=error, previous_error=error, epoch_start=iterations,
                                 checks=memory.checks + 1)


@dataclass(frozen=True)
class PrimalWeightParams:
    """The primal weight controller's start and gains (module docstring); cuPDLPx's values.

    Attributes:
        initial: omega^0 of a cold start on the scaled LP (OR-Tools PDLP's
            ``initial_primal_weight``).  Scaling the bounds by theta_b and the costs by theta_c
            is the same as starting from omega^0 theta_b / theta_c on the unscaled LP, so this
            moves the start as theta_b does (benchmarks/RESULTS.md, "Why nemsemm2 takes 5x the
            iterations after presolve").
        kp, ki, kd: proportional, integral and derivative gains of the PID on log omega.
        rho: decay of the integral term per restart.
    """

    initial: float = 1.0
    kp: float = 0.99
    ki: float = 0.01
    kd: float = 0.0
    rho: float = 0.3

    def __post_init__(self) -> None:
        if isinstance(self.initial, bool) or not isinstance(self.initial, (int, float)) \
                or not 0 < self.initial < math.inf:
            raise ValueError(f"PrimalWeightParams: initial must be a positive finite number, "
                             f"got {self.initial!r}")


@dataclass
class PrimalWeightPID:
    """The PID controller of log(omega) (see the module docstring), with its safeguard."""

    weight: float = 1.0
    kp: float = 0.99
    ki: float = 0.01
    kd: float = 0.0
    rho: float = 0.3
    integral: float = 0.0
    last_error: float | None = None
    best_weight: float = field(default=1.0)
    best_balance: float = math.inf

    @classmethod
    def start(cls, params: PrimalWeightParams | None = None) -> PrimalWeightPID:
        """The controller of a cold start: omega^0 and the gains of ``params``."""
        params = PrimalWeightParams() if params is None else params
        return cls(weight=params.initial, kp=params.kp, ki=params.ki, kd=params.kd,
                   rho=params.rho, best_weight=params.initial)

    @classmethod
    def after_warm_start(cls, params: PrimalWeightParams | None = None) -> PrimalWeightPID:
        """The controller of a warm-started solve: half a step towards each measured ratio,
        from ``params.initial``.

        With K_P = 1/2 and K_I = K_D = 0 the update is PDLP's smoothing with theta = 1/2
        (Applegate et al. 2021, Sec. 3.3; OR-Tools PDLP's primal_weight_update_smoothing):

            log omega^{n+1} = (1 - theta) log omega^n + theta log(||Delta y|| / ||Delta x||).

        From a cold start the first epochs' displacements measure the solution's own scale, and
        K_P = 0.99 follows them.  From a warm start they measure the start's error instead, which
        changes from one epoch to the next, and the cold controller swung omega over decades on
        NETLIB starts z* + d with random d (afiro, |d| = 1e-6 |z*|: omega 1, 12.4, 0.70, 21.8,
        0.20); sc50a from |d| = 1e-4 |z*| to 1e-8 took 1665 iterations with it, 513 with this
        one (cold: 1281).
        """
        initial = (PrimalWeightParams() if params is None else params).initial
        return cls(weight=initial, kp=0.5, ki=0.0, best_weight=initial)

    def update(self, primal_move: float, dual_move: float, rel_primal: float,
               rel_dual: float) -> float:
        """New omega from the epoch's displacement norms and the relative residuals."""
        balance = (abs(math.log10(rel_dual / rel_primal))
                   if rel_primal > 0 and rel_dual > 0 else math.inf)
        if balance < self.best_balance:
            # the weight that produced these residuals is the current one
            self.best_balance, self.best_weight = balance, self.weight
        moves_ok = all(1e-16 <= v <= 1e12 for v in (primal_move, dual_move))
        ratio_ok = rel_primal > 0 and 1e-8 <= rel_dual / rel_primal <= 1e8
        if not (moves_ok and ratio_ok and math.isfinite(primal_move + dual_move)):
            self.weight, self.integral, self.last_error = self.best_weight, 0.0, None
            return self.weight
        error = math.log(self.weight * primal_move / dual_move)
        self.integral = self.rho * self.integral + error
        derivative = 0.0 if self.last_error is None else error - self.last_error
        self.last_error = error
        log_weight = math.log(self.weight) - (self.kp * error + self.ki * self.integral
                                              + self.kd * derivative)
        self.weight = math.exp(min(max(log_weight, -50.0), 50.0))
        return self.weight
