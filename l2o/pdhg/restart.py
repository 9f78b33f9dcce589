"""Adaptive restarts of the Halpern iteration and the primal weight controller (host side).

Both act only at termination checks, on a few scalars copied to the host there.

Restart (cuPDLPx, Lu & Yang 2024): with r(z) = ||z - T(z)||_P the fixed-point error in the PDHG
metric P = [[omega/eta I, A^T], [A, 1/(eta omega) I]], the anchor z^{n,0} of the current epoch,
the current iterate z^{n,k} and the value r_prev at the previous check, restart when

    sufficient:  r(z^{n,k}) <= beta_sufficient r(z^{n,0})
    necessary:   r(z^{n,k}) <= beta_necessary r(z^{n,0})  and  r(z^{n,k}) > r_prev
    artificial:  k >= beta_artificial N          (N: total iterations so far)

Primal weight (cuPDLPx PID controller): at a restart, with Delta x = x^ - x^{n,0},
Delta y = y^ - y^{n,0} (displacement of the epoch),

    e^n = log(omega ||Delta x|| / ||Delta y||)
    log omega^{n+1} = log omega^n - [K_P e^n + K_I sum_i rho^{n-i} e^i + K_D (e^n - e^{n-1})].

Safeguard: if a displacement norm is outside [1e-16, 1e12] or the ratio of the relative
residuals is outside [1e-8, 1e8], omega is reset to the weight of the restart whose relative
primal and dual residuals were closest (in log scale), and the controller state is cleared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["PrimalWeightPID", "RestartParams", "restart_reason"]


@dataclass(frozen=True)
class RestartParams:
    """beta_sufficient, beta_necessary, beta_artificial of the restart criteria.

    beta_necessary = 0.8 is PDLP's value (cuPDLPx's documentation gives 0.5; on ken-11 both
    need the same number of iterations).
    """

    sufficient: float = 0.2
    necessary: float = 0.8
    artificial: float = 0.36


def restart_reason(params: RestartParams, error: float, anchor_error: float, previous_error: float,
                   epoch_iterations: int, total_iterations: int) -> str | None:
    """Which criterion (if any) asks for a restart: "sufficient", "necessary", "artificial"."""
    if error <= params.sufficient * anchor_error:
        return "sufficient"
    if error <= params.necessary * anchor_error and error > previous_error:
        return "necessary"
    if epoch_iterations >= params.artificial * total_iterations:
        return "artificial"
    return None


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
