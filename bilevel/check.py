"""``bilevel.check_hypergrad``: finite differences of h(x) = f(x, y*(x)) next to the
hypergradient engines, the check to run first on a new problem.

Along unit directions d_1..d_k (seeded Gaussian, normalized), the directional derivative
of the value function is estimated by central differences,

    D_i = (h(x + s d_i) - h(x - s d_i)) / (2 s),     s = 1e-4 max(1, ||x||),

with h evaluated exactly: each y*(x +- s d_i) is re-solved by :func:`bilevel.inner_solve`
(warm-started from y*(x)) to ||grad_y g|| <= ``tol``.  Each engine's hypergradient G at
(x, y*(x)) gives <G, d_i>; its relative error is ||<G, d> - D|| / ||D|| over the k
directions.  The differences' own error is O(s^2) (truncation) plus O(eps h / s)
(round-off): about 1e-8 relative in float64, so the check passes at rel_error <= 1e-3
with a wide margin; in float32 the round-off term alone is ~1e-3 and the check says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .inner import inner_solve
from .linalg import tree as T
from .linalg.tree import Tree

__all__ = ["DEFAULT_ENGINES", "HypergradCheck", "check_hypergrad"]

# each engine: options for bilevel.hypergrad, or a callable (problem, x, y) -> grad_x
DEFAULT_ENGINES: dict[str, dict] = {"cg": {"method": "cg", "tol": 1e-8},
                                    "minres": {"method": "minres", "tol": 1e-8}}
Engine = Mapping[str, Any] | Callable[[Any, Tree, Tree], Tree]


@dataclass
class HypergradCheck:
    """Result of :func:`check_hypergrad`.

    Attributes:
        fd: the central differences D_i, one per direction.
        engines: engine name -> its directional derivatives <G, d_i>.
        rel_error: engine name -> ||<G, d> - D|| / ||D||.
        ok: every relative error <= ``rtol``.
        step: the difference step s.
        inner_grad_norm: ||grad_y g|| at the y*(x) used.
        notes: engine name -> anything its hypergradient reported (a missed solve
            tolerance, a fallback, a damping), or an error it raised.
    """

    fd: list[float]
    engines: dict[str, list[float]]
    rel_error: dict[str, float]
    ok: bool
    step: float
    inner_grad_norm: float
    notes: dict[str, str]

    def __str__(self) -> str:
        lines = [(f"check_hypergrad: {'OK' if self.ok else 'FAILED'} "
                  f"({len(self.fd)} directions, step {self.step:.1e}, "
                  f"|grad_y g| at y* {self.inner_grad_norm:.1e})"),
                 f"  {'finite differences':20s} " + " ".join(f"{v:+.6e}" for v in self.fd)]
        for name, values in self.engines.items():
            lines.append(f"  {name:20s} " + " ".join(f"{v:+.6e}" for v in values)
                         + f"   rel. error {self.rel_error[name]:.1e}"
                         + (f"  ({self.notes[name]})" if name in self.notes else ""))
        return "\n".join(lines)


def check_hypergrad(problem: Any, x: Tree | None = None, y: Tree | None = None,
                    directions: int = 3, *, engines: Mapping[str, Engine] | None = None,
                    tol: float = 1e-10, rtol: float = 1e-3, seed: int = 0) -> HypergradCheck:
    """Check the hypergradient engines against central differences of h (module docstring).

    Args:
        problem: the :class:`~bilevel.BilevelProblem` (its first batches are used, as by
            :func:`bilevel.hypergrad`); build it in float64.
        x: where to check (default ``problem.x0``).
        y: a start for the inner solve (default ``problem.y0``).
        directions: number of random directions.
        engines: name -> options for :func:`bilevel.hypergrad` (e.g. ``{"method": "cg",
            "tol": 1e-8}``) or a callable ``(problem, x, y) -> grad_x`` (your own
            hypergradient); default CG and MINRES.
        tol: the gradient norm every inner solve reaches.
        rtol: the relative error under which an engine passes.
        seed: seed of the directions.

    Returns:
        :class:`HypergradCheck` (print it for a table).
    """
    from . import hypergrad as hypergrad_fn

    if directions < 1:
        raise ValueError(f"check_hypergrad: directions must be >= 1, got {directions}")
    x = T.tree_map(lambda t: t.detach(), problem.x0 if x is None else x)
    dtype = T.like_info(x)[0]
    if dtype != torch.float64:
        warnings.warn(f"check_hypergrad: the problem is in {dtype}; finite differences need "
                      "float64 (their round-off alone is ~1e-3 relative in float32)",
                      RuntimeWarning, stacklevel=2)
    y_star = inner_solve(problem, x, problem.y0 if y is None else y, tol=tol)
    outer_batch = problem.first_outer_batch
    gen = torch.Generator().manual_seed(seed)
    dirs = []
    for _ in range(directions):
        d = T.randn_like(x, gen)
        dirs.append(T.tree_map(lambda t, norm=T.norm(d): t / norm, d))
    step = 1e-4 * max(1.0, float(T.norm(x)))

    def h(point: Tree) -> float:
        y_point = inner_solve(problem, point, y_star, tol=tol)
        return float(problem.outer(point, y_point, outer_batch))

    fd = [(h(T.axpy(step, d, x)) - h(T.axpy(-step, d, x))) / (2 * step) for d in dirs]
    fd_norm = math.sqrt(sum(v * v for v in fd))
    results: dict[str, list[float]] = {}
    errors: dict[str, float] = {}
    notes: dict[str, str] = {}
    for name, engine in (DEFAULT_ENGINES if engines is None else engines).items():
        try:
            if callable(engine):
                grad_x = engine(problem, x, y_star)
            else:
                grad_x, info = hypergrad_fn(problem, x, y_star, **dict(engine))
                note = _note(info)
                if note:
                    notes[name] = note
        except Exception as err:  # noqa: BLE001 - reported in the check, not raised
            notes[name] = f"raised {type(err).__name__}: {err}"
            results[name], errors[name] = [math.nan] * directions, math.inf
            continue
        values = [float(T.dot(grad_x, d)) for d in dirs]
        diff = math.sqrt(sum((a - b) ** 2 for a, b in zip(values, fd)))
        results[name] = values
        errors[name] = diff / fd_norm if fd_norm > 0 else (0.0 if diff == 0 else math.inf)
    inner_norm = float(T.norm(torch.func.grad(
        lambda yy: problem.inner(x, yy, problem.first_inner_batch))(y_star)))
    ok = bool(errors) and all(e <= rtol for e in errors.values())
    return HypergradCheck(fd, results, errors, ok, step, inner_norm, notes)


def _note(info: Any) -> str:
    parts = []
    if not info.converged:
        parts.append(f"solve: {info.solve.reason if info.solve else 'not converged'}")
    if info.fallback:
        parts.append(info.fallback)
    return "; ".join(parts)
