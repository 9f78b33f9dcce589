"""The check statistics: what one termination check knows about the iterate (a typed record).

Every ``check_every`` iterations the solver computes, on the device and from T(z) = z^ of the
last iteration (:func:`device_statistics`; no host sync until the one copy of the stacked
scalars):

* the relative KKT errors and both objectives of the unscaled point z^ (:mod:`l2o.lp.kkt`,
  with the dual slack recovered from the primal step);
* the fixed-point error r(z) = ||z^ - z||_P in the PDHG metric (restarts) and the norms of the
  epoch's displacement z^ - z_anchor (the primal weight);
* for each infeasibility-certificate candidate (:data:`RAY_CANDIDATES`: T(z) - z, T(z) - z_anchor
  and T(z)), the objective and residual of the primal and the dual ray it gives
  (:mod:`l2o.pdhg.termination`).

On the host these are one :class:`CheckStatistics` (termination and restart are pure functions
of it); the vectors the result may need (the unscaled point, the rays) stay on the device in
:class:`CheckVectors`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .scaling import ScaledLP
from .termination import (
    RAY_CANDIDATES,
    TerminationData,
    dual_ray_terms,
    kkt_terms,
    primal_ray_terms,
    project_dual_ray,
    project_primal_ray,
)

__all__ = ["RAY_CANDIDATES", "CheckStatistics", "CheckVectors", "RayStatistics",
           "device_statistics"]


@dataclass(frozen=True)
class RayStatistics:
    """The certificate test of one ray (normalized to ||.||_inf = 1, unscaled LP).

    Attributes:
        objective: for a dual ray its objective (certifies when > 0); for a primal ray c^T x_r
            (certifies when < 0).
        residual: for a dual ray ||A^T y_r + r_r||_inf; for a primal ray the violation of
            A x_r in the recession cone of the row bounds (inf-norm).
    """

    objective: float
    residual: float


@dataclass(frozen=True)
class CheckStatistics:
    """The scalars of one check (module docstring), all Python floats.

    Attributes:
        rel_primal_residual, rel_dual_residual, rel_gap: relative KKT errors of z^.
        primal_objective, dual_objective: c^T x + c0 and the dual objective (minimization form).
        fixed_point_error: r(z) = ||T(z) - z||_P.
        primal_move, dual_move: ||x^ - x0||_2, ||y^ - y0||_2 (the epoch's displacement, scaled).
        primal_rays, dual_rays: the :class:`RayStatistics` of each of :data:`RAY_CANDIDATES`.
    """

    rel_primal_residual: float
    rel_dual_residual: float
    rel_gap: float
    primal_objective: float
    dual_objective: float
    fixed_point_error: float
    primal_move: float
    dual_move: float
    primal_rays: dict[str, RayStatistics]
    dual_rays: dict[str, RayStatistics]

    # the order of the scalars in the device's stacked tensor
    SCALARS = ("rel_primal_residual", "rel_dual_residual", "rel_gap", "primal_objective",
               "dual_objective", "fixed_point_error", "primal_move", "dual_move")

    @classmethod
    def size(cls) -> int:
        """Number of floats of the flat layout (:meth:`from_values`)."""
        return len(cls.SCALARS) + 4 * len(RAY_CANDIDATES)

    @classmethod
    def from_values(cls, values: Sequence[float]) -> CheckStatistics:
        """The record of the flat layout: the :data:`SCALARS`, then per candidate (primal ray
        objective, residual), then per candidate (dual ray objective, residual)."""
        if len(values) != cls.size():
            raise ValueError(f"CheckStatistics: {len(values)} values, expected {cls.size()}")
        values = [float(v) for v in values]
        head = len(cls.SCALARS)
        rays = values[head:]
        k = len(RAY_CANDIDATES)
        primal = {name: RayStatistics(rays[2 * i], rays[2 * i + 1])
                  for i, name in enumerate(RAY_CANDIDATES)}
        dual = {name: RayStatistics(rays[2 * (k + i)], rays[2 * (k + i) + 1])
                for i, name in enumerate(RAY_CANDIDATES)}
        return cls(*values[:head], primal_rays=primal, dual_rays=dual)

    def values(self) -> list[float]:
        """The flat layout (inverse of :meth:`from_values`)."""
        out = [getattr(self, name) for name in self.SCALARS]
        for rays in (self.primal_rays, self.dual_rays):
            for name in RAY_CANDIDATES:
                out += [rays[name].objective, rays[name].residual]
        return out

    def is_finite(self) -> bool:
        """False when any statistic is nan/inf (the iteration broke down)."""
        return all(map(math.isfinite, self.values()))

    def progress(self, iteration: int, elapsed: float) -> dict[str, float]:
        """The dict handed to ``solve_lp(progress=...)``."""
        return {"iteration": iteration, "rel_primal_residual": self.rel_primal_residual,
                "rel_dual_residual": self.rel_dual_residual, "rel_gap": self.rel_gap,
                "elapsed": elapsed}


@dataclass
class CheckVectors:
    """Device vectors of one check (on CUDA they live in the check graph's buffers, which the
    next replay overwrites: :meth:`point` copies what a result needs).

    Attributes:
        x, y, reduced_costs: the unscaled point z^ and the dual slack of its primal step
            (n,), (m,), (n,).
        primal_rays, dual_rays: the projected scaled ray of each candidate, (n,) / (m,).
        aty_hat: A~^T y^ (n,), reused by a restart.
    """

    x: torch.Tensor
    y: torch.Tensor
    reduced_costs: torch.Tensor
    primal_rays: dict[str, torch.Tensor]
    dual_rays: dict[str, torch.Tensor]
    aty_hat: torch.Tensor

    def point(self) -> dict[str, torch.Tensor]:
        """Copies of x, y and reduced_costs (what a result reports)."""
        return {"x": self.x.clone(), "y": self.y.clone(),
                "reduced_costs": self.reduced_costs.clone()}


def device_statistics(p: ScaledLP, t: TerminationData, s) -> tuple[torch.Tensor, CheckVectors]:
    """Everything one check needs, on the device: (the stacked scalars in the flat layout of
    :meth:`CheckStatistics.from_values`, float64; the :class:`CheckVectors`).  No host sync.

    ``s`` is the :class:`~l2o.pdhg.iteration.IterationState` after the chunk.  The reductions
    are ``t.rows`` / ``t.cols``: for a stack of B LPs (:mod:`l2o.pdhg.stack`, with per-LP steps
    in ``s``) the scalars are (B, K) instead of (K,), one row per LP.  The point checked
    is z^ = T(z) of the last iteration; z^ - z = z_bar - z^, and A~ (z^ - z)_x = A~ x_bar - A~ x^,
    so the fixed-point error
    r(z)^2 = omega/eta ||dx||^2 + 1/(eta omega) ||dy||^2 + 2 dy^T A~ dx needs no extra product.
    """
    op = p.op
    # the products first (on a sharded LP each gathers a vector over the process group), then
    # the scalars, whose reductions the state's ``parallel`` gathers once (l2o.pdhg.distributed)
    ax_hat, aty_hat = op.matvec(s.x_hat), op.rmatvec(s.y_hat)
    dx, dy = s.x_bar - s.x_hat, s.y_bar - s.y_hat          # T(z) - z of the last iteration
    ex, ey = s.x_hat - s.x0, s.y_hat - s.y0                # the epoch's displacement
    primal_rays = {name: project_primal_ray(t, d)
                   for name, d in zip(RAY_CANDIDATES, (dx, ex, s.x_hat))}
    dual_rays = {name: project_dual_ray(t, d) for name, d in zip(RAY_CANDIDATES, (dy, ey, s.y_hat))}
    a_primal_rays = {name: op.matvec(xr) for name, xr in primal_rays.items()}
    # y^ already has the signs of the dual's recession cone, so A~^T y^ serves as it is
    at_dual_rays = {name: aty_hat if name == "iterate" else op.rmatvec(yr)
                    for name, yr in dual_rays.items()}

    def scalars() -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        kkt = kkt_terms(p, t, s.x_hat, s.y_hat, ax_hat, aty_hat, (s.x_hat - s.x_pre) / s.tau)
        rows, cols = t.rows, t.cols
        fp_sq = (s.metric_primal * cols.dot(dx, dx) + s.metric_dual * rows.dot(dy, dy)
                 + 2.0 * rows.dot(dy, s.ax_bar - ax_hat))
        values = [kkt["rel_primal_residual"], kkt["rel_dual_residual"], kkt["rel_gap"],
                  kkt["primal_objective"], kkt["dual_objective"],
                  torch.sqrt(torch.clamp(fp_sq, min=0)), cols.norm(ex), rows.norm(ey)]
        for name in RAY_CANDIDATES:
            values += primal_ray_terms(p, t, primal_rays[name], a_primal_rays[name])
        for name in RAY_CANDIDATES:
            values += dual_ray_terms(p, t, dual_rays[name], at_dual_rays[name])
        return values, kkt

    stacked, kkt = s.parallel.check(scalars)
    return stacked, CheckVectors(x=kkt["x"], y=kkt["y"], reduced_costs=kkt["reduced_costs"],
                                 primal_rays=primal_rays, dual_rays=dual_rays, aty_hat=aty_hat)
