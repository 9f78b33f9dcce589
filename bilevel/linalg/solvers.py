"""Matrix-free Krylov and series solvers for A x = b.

All solvers share one signature, ``solver(A, b, *, x0=None, tol=..., maxiter=...)
-> (x, SolveInfo)``, where A is a :class:`LinearOperator`, a callable ``v -> A v``
or a matrix, and b, x are tensors or dicts of tensors.

A solver is also a *value* that other code takes as an argument (``solve=cg``, as
jaxopt's ``solve=`` and TorchOpt's ``solve_cg(**kw)``): :func:`as_solver` turns a name,
one of these functions, a ``functools.partial`` of one, or any callable with the
signature above into a :class:`LinearSolver`, which also knows the solver's
:class:`Iteration` form (for engines that record whole solves into CUDA graphs) where
it has one.  A new solver is one function (plus, optionally, its Iteration form) and
one entry in ``SOLVERS``.

``tol`` bounds the relative residual ||b - A x|| / ||b||.  The loops keep every
scalar on the device and only look at it (one host synchronization) every
``check_every`` iterations (default: 8 on a GPU, every iteration on the CPU,
where looking is free).  On CUDA the ``check_every`` iterations between checks
are captured once as a CUDA graph and replayed (``cuda_graph="auto"``), which
removes the kernel-launch overhead that dominates small and medium solves.
Between checks, an iteration that has already met the tolerance, or hit a
breakdown, is frozen with ``torch.where`` so extra iterations do not change the
answer (which is also what lets :mod:`bilevel.hypergrad.graph` record a whole
solve, as an :class:`Iteration`, into a CUDA graph).  The reported ``residual`` is recomputed
from the returned x with one more product, so it is never a stale recurrence.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from . import fused as F
from . import tree as T
from ._loop import iterate
from .operators import LinearOperator, as_operator
from .tree import Tree

__all__ = ["SOLVERS", "LinearSolver", "SolveInfo", "as_solver", "cg", "gmres", "minres",
           "neumann"]

Operator = LinearOperator | Callable[[Tree], Tree] | torch.Tensor


@dataclass
class SolveInfo:
    """Outcome of a linear solve.

    Attributes:
        iterations: iterations performed (products with A, not counting the final
            residual check).
        residual: final relative residual ||b - A x|| / ||b|| of the returned x.
        converged: residual <= tol and no breakdown.
        reason: a human-readable account ("converged", "maxiter reached", "non-positive
            curvature ...", ...).
        negative_curvature: the solve stopped at p^T A p <= 0 (CG): A is not positive
            definite on the Krylov space.
    """

    iterations: int
    residual: float
    converged: bool
    reason: str
    negative_curvature: bool = False


def _default_check_every(b: Tree) -> int:
    return 1 if T.like_info(b)[1].type == "cpu" else 8


def _limits(b: Tree, maxiter: int | None, check_every: int | None) -> tuple[int, int]:
    """Default iteration cap (2 n) and check interval of the Krylov solvers."""
    return (2 * T.numel(b) if maxiter is None else maxiter,
            check_every or _default_check_every(b))


def _start(op: LinearOperator, b: Tree, x0: Tree | None) -> tuple[Tree, Tree]:
    """Initial iterate and residual r = b - A x0."""
    if x0 is None:
        return T.zeros_like(b), b
    return x0, T.axpy(-1.0, op(x0), b)


def _finish(name: str, op: LinearOperator, b: Tree, x: Tree, bnorm: torch.Tensor, tol: float,
            iterations: int, breakdown: str | None, maxiter: int) -> tuple[Tree, SolveInfo]:
    residual = float(T.norm(T.axpy(-1.0, op(x), b)) / bnorm)
    return x, report(name, residual, tol, iterations, breakdown, maxiter)


def report(name: str, residual: float, tol: float, iterations: int, breakdown: str | None,
           maxiter: int, negative_curvature: bool = False) -> SolveInfo:
    """The :class:`SolveInfo` of a solve that returned an x of true relative residual
    ``residual`` (also used by the captured hypergradients, which compute it on the device).

    Raises:
        FloatingPointError: the residual is nan/inf.
    """
    if residual != residual or residual == float("inf"):
        raise FloatingPointError(f"{name}: non-finite residual after {iterations} iterations")
    converged = breakdown is None and residual <= tol
    if breakdown is not None:
        reason = breakdown
    elif converged:
        reason = f"converged: relative residual {residual:.3e} <= tol {tol:.1e}"
    elif iterations >= maxiter:
        reason = f"maxiter ({maxiter}) reached: relative residual {residual:.3e} > tol {tol:.1e}"
    else:
        reason = (f"stopped at recurrence residual <= tol, but the true relative residual "
                  f"{residual:.3e} > tol {tol:.1e} (rounding; tighten tol or use float64)")
    return SolveInfo(iterations, residual, converged, reason, negative_curvature)


def curvature_breakdown(iterations: int) -> str:
    """CG's reason when p^T A p <= 0 stopped it."""
    return (f"non-positive curvature p^T A p <= 0 at iteration {iterations + 1}: "
            "A is not positive definite; damp it (ridge) or use minres")


@dataclass
class Iteration:
    """A solver as data, with no host synchronization: the initial ``state`` (a dict of
    tensors with a 0-dim bool "active" and an int64 "done" = iterations that did work),
    one iteration ``body(op, state) -> state`` that freezes once inactive (it may update
    the state's tensors in place and return the same dict: the initial state owns its
    buffers), the key of a scalar that turns nan/inf on breakdown (``monitor``),
    ``solution(state) -> x`` and, for solvers that can stop at a breakdown,
    ``breakdown(state)``: a 0-dim bool (CG: non-positive curvature met).
    The public solvers drive it with :func:`bilevel.linalg._loop.iterate`; the captured
    hypergradients (:mod:`bilevel.hypergrad.graph`) record it into a CUDA graph."""

    state: dict
    body: Callable[[LinearOperator, dict], dict]
    monitor: str
    solution: Callable[[dict], Tree]
    breakdown: Callable[[dict], torch.Tensor] | None = None


def _trivial(b: Tree) -> tuple[Tree, SolveInfo]:
    return T.zeros_like(b), SolveInfo(0, 0.0, True, "b = 0, so x = 0")


def cg(A: Operator, b: Tree, *, x0: Tree | None = None, tol: float = 1e-6,
       maxiter: int | None = None, check_every: int | None = None,
       cuda_graph: bool | str = "auto") -> tuple[Tree, SolveInfo]:
    """Conjugate gradient for symmetric positive definite A.

    Iteration (Hestenes-Stiefel): alpha = r^T r / p^T A p; x += alpha p; r -= alpha A p;
    p = r + (r_new^T r_new / r^T r) p.

    If p^T A p <= 0 the operator is not positive definite on the Krylov space: the
    solve stops there, returns the last iterate and says so (``converged=False``,
    ``reason`` starts with "non-positive curvature"); use :func:`minres` then.

    Args:
        A: SPD operator (LinearOperator, callable or matrix), shape (n, n).
        b: right-hand side, n entries (tensor or dict).
        x0: initial guess (warm start), default zero.
        tol: relative residual target.
        maxiter: iteration cap, default 2 n.
        check_every: iterations between host-side convergence checks.
        cuda_graph: capture the iterations between checks as a CUDA graph
            (True / False / "auto").

    Returns:
        (x, SolveInfo).
    """
    op, bnorm = as_operator(A), T.norm(b)
    if float(bnorm) == 0.0:
        return _trivial(b)
    maxiter, check_every = _limits(b, maxiter, check_every)
    it = cg_iteration(op, b, x0, tol, bnorm)
    state = iterate("cg", it.body, op, it.state, maxiter=maxiter, check_every=check_every,
                    cuda_graph=cuda_graph, monitor=it.monitor)
    # one host transfer for both flags
    iterations, failed = torch.stack([state["done"],
                                      it.breakdown(state).to(torch.int64)]).tolist()
    breakdown = curvature_breakdown(iterations) if failed else None
    x, info = _finish("cg", op, b, it.solution(state), bnorm, tol, iterations, breakdown, maxiter)
    info.negative_curvature = bool(failed)
    return x, info


def cg_iteration(op: LinearOperator, b: Tree, x0: Tree | None, tol: float,
                 bnorm: torch.Tensor, *, fused: bool | None = None) -> Iteration:
    """CG as an :class:`Iteration` (``bnorm`` = ||b||, a device scalar), updating its
    state in place; ``breakdown`` says whether p^T A p <= 0 stopped it.

    Small solves are bound by kernel launches, so one iteration is the product A p and
    the vector work in as few kernels as possible: on CUDA (with Triton, float32 or
    float64) one or three fused kernels (:mod:`bilevel.linalg.fused`; ``fused=None`` picks
    them by device, True / False forces them / the torch form), elsewhere 14 small torch
    kernels: two dot products, the fused updates x += alpha p, r -= alpha A p,
    p = r + beta p (one kernel each per leaf, in place: no copies back into the state),
    and the scalar bookkeeping.  The torch form is the reference; both have these
    semantics.  Once inactive (converged, or p^T A p <= 0) alpha = 0 freezes x and r, so
    extra iterations change nothing.  beta needs no mask: with r frozen, r^T r over the
    stored rs is 1 (p = r + p, finite; p is not part of the answer), and the stored rs is
    kept >= the dtype's smallest normal number (it takes the place of the copy of the new
    r^T r), so an exact r = 0 gives beta = 0, not 0 / 0.  A nan p^T A p keeps the
    iteration active, so the nan reaches rs (the monitor) and is reported as such, not as
    a curvature breakdown.  The curvature breakdown is not tracked per iteration: the
    iteration stopped while the residual was still above the threshold exactly when it met
    p^T A p <= 0 (``breakdown``).
    """
    if x0 is None:
        x, r = T.zeros_like(b), T.clone(b)
    else:  # the state owns its buffers: the caller's x0 is not updated in place
        x, r = T.clone(x0), T.axpy(-1.0, op(x0), b)
    tiny = torch.finfo(bnorm.dtype).tiny
    rs = T.dot(r, r).clamp_min(tiny)
    # >= tiny as rs is: an exactly converged solve (r^T r = 0, stored as tiny) is no breakdown
    threshold = ((tol * bnorm) ** 2).clamp_min(tiny)
    if fused is None:
        fused = F.supports(b)
    state, body, solution = (F.cg_parts(x, r, rs, threshold) if fused
                             else _torch_cg_parts(x, r, rs, threshold))

    def breakdown(s: dict) -> torch.Tensor:
        return ~s["active"] & (s["rs"] > threshold)

    return Iteration(state, body, "rs", solution, breakdown)


def _torch_cg_parts(x: Tree, r: Tree, rs: torch.Tensor, threshold: torch.Tensor
                    ) -> tuple[dict, Callable[[LinearOperator, dict], dict],
                               Callable[[dict], Tree]]:
    """The torch form of :func:`cg_iteration`: (state, body, solution)."""
    tiny = torch.finfo(rs.dtype).tiny
    zero = torch.zeros_like(rs)  # one device zero for every torch.where below
    state = {"x": x, "r": r, "p": T.clone(r), "rs": rs, "active": rs > threshold,
             "done": torch.zeros((), dtype=torch.int64, device=rs.device)}

    def body(op: LinearOperator, s: dict) -> dict:
        p, rs = s["p"], s["rs"]
        Ap = op(p)
        pAp = T.dot(p, Ap)
        # active and not (pAp <= 0), on bools; a nan pAp keeps it active
        active = s["active"] > (pAp <= 0)
        alpha = torch.where(active, rs / pAp, zero)
        T.axpy_(alpha, p, s["x"])
        T.axpy_(alpha, Ap, s["r"], negate=True)
        rs_new = T.dot(s["r"], s["r"])
        T.xpby_(s["r"], rs_new / rs, p)  # p = r + beta p
        torch.clamp(rs_new, min=tiny, out=rs)  # (nan stays nan)
        torch.logical_and(active, rs_new > threshold, out=s["active"])
        s["done"].add_(active)
        return s

    return state, body, lambda s: s["x"]


def minres(A: Operator, b: Tree, *, x0: Tree | None = None, tol: float = 1e-6,
           maxiter: int | None = None, check_every: int | None = None,
           cuda_graph: bool | str = "auto") -> tuple[Tree, SolveInfo]:
    """MINRES (Paige and Saunders, 1975) for symmetric, possibly indefinite A.

    Minimizes ||b - A x|| over the Krylov space via the Lanczos process and Givens
    rotations; the residual norm is available every step from the recurrence
    (phibar), so checks cost no extra product.

    Args and returns as :func:`cg`.  A must be symmetric (A = A^T); it may be
    singular if b is in its range.
    """
    op, bnorm = as_operator(A), T.norm(b)
    if float(bnorm) == 0.0:
        return _trivial(b)
    maxiter, check_every = _limits(b, maxiter, check_every)
    it = minres_iteration(op, b, x0, tol, bnorm)
    state = iterate("minres", it.body, op, it.state, maxiter=maxiter, check_every=check_every,
                    cuda_graph=cuda_graph, monitor=it.monitor)
    return _finish("minres", op, b, state["x"], bnorm, tol, int(state["done"]), None, maxiter)


def minres_iteration(op: LinearOperator, b: Tree, x0: Tree | None, tol: float,
                     bnorm: torch.Tensor) -> Iteration:
    """MINRES as an :class:`Iteration` (``bnorm`` = ||b||, a device scalar)."""
    x, r1 = _start(op, b, x0)
    beta1 = T.norm(r1)
    zero = torch.zeros_like(beta1)
    eps = torch.finfo(beta1.dtype).tiny
    threshold = tol * bnorm
    state = {"x": x, "r1": r1, "r2": r1, "y": r1, "w": T.zeros_like(b), "w2": T.zeros_like(b),
             "oldb": zero, "beta": beta1, "dbar": zero, "epsln": zero, "phibar": beta1,
             "cs": zero - 1.0, "sn": zero, "active": beta1 > threshold,
             "done": torch.zeros((), dtype=torch.int64, device=beta1.device)}

    def body(op: LinearOperator, s: dict) -> dict:
        active, beta, oldb = s["active"], s["beta"], s["oldb"]
        # Lanczos step: v = y / beta, y = A v - (beta/oldb) r1 - (alfa/beta) r2
        inv_beta = torch.where(beta > 0, 1.0 / beta, zero)
        v = T.tree_map(lambda t: inv_beta * t, s["y"])
        y = T.axpy(-torch.where(oldb > 0, beta / oldb, zero), s["r1"], op(v))
        alfa = T.dot(v, y)
        y = T.axpy(-(alfa * inv_beta), s["r2"], y)
        beta_new = T.norm(y)
        # Apply the previous Givens rotation, then form and apply the new one.
        cs, sn, dbar = s["cs"], s["sn"], s["dbar"]
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        gamma = torch.sqrt(gbar * gbar + beta_new * beta_new).clamp_min(eps)
        cs_new, sn_new = gbar / gamma, beta_new / gamma
        phi = cs_new * s["phibar"]
        # Search direction w = (v - epsln w1 - delta w2) / gamma, then x += phi w.
        oldeps = s["epsln"]
        w = T.tree_map(lambda vi, a, c: (vi - oldeps * a - delta * c) / gamma, v, s["w2"], s["w"])
        phibar = torch.where(active, sn_new * s["phibar"], s["phibar"])
        return {"x": T.where(active, T.axpy(phi, w, s["x"]), s["x"]), "r1": s["r2"], "r2": y,
                "y": y, "w": w, "w2": s["w"], "oldb": beta, "beta": beta_new,
                # the next step's dbar and epsln use this step's (old) rotation
                "dbar": -cs * beta_new, "epsln": sn * beta_new, "phibar": phibar,
                "cs": cs_new, "sn": sn_new,
                "active": active & (phibar > threshold) & (beta_new > 0),
                "done": s["done"] + active.to(torch.int64)}

    return Iteration(state, body, "phibar", lambda s: s["x"])


def neumann(A: Operator, b: Tree, *, x0: Tree | None = None, alpha: float | None = None,
            tol: float = 1e-6, maxiter: int = 100, check_every: int | None = None,
            cuda_graph: bool | str = "auto") -> tuple[Tree, SolveInfo]:
    """Truncated Neumann series x_K = alpha * sum_{k=0}^{K} (I - alpha A)^k b.

    It converges to A^{-1} b when the spectral radius of I - alpha A is < 1, i.e.
    for SPD A with 0 < alpha < 2 / lambda_max.  With ``alpha=None`` it is set to
    1 / lambda_max, from :func:`power_iteration` (an under-estimate of lambda_max,
    so alpha stays inside the safe range).  The residual of x_K is exactly the next
    series term, b - A x_K = (I - alpha A)^{K+1} b, so it is tracked for free and
    the series stops early at ``tol``.

    With a warm start x0 the series solves for the correction: x = x0 + N(b - A x0).

    Args:
        A: SPD operator; b: right-hand side; alpha: step; maxiter: number of terms K
        (products with A); tol, check_every, cuda_graph: as in :func:`cg`.

    Returns:
        (x, SolveInfo).  A diverging series (alpha too large, or A indefinite) is
        reported with converged=False.
    """
    op = as_operator(A)
    bnorm = T.norm(b)
    if float(bnorm) == 0.0:
        return _trivial(b)
    if alpha is None:
        from .spectral import power_iteration
        like = op.like if op.like is not None else b
        alpha = 1.0 / power_iteration(op, iters=50, tol=1e-3, x0=T.randn_like(like))
    if not alpha > 0:
        raise ValueError(f"neumann: alpha must be positive, got {alpha}")
    check_every = check_every or _default_check_every(b)
    it = neumann_iteration(op, b, x0, tol, bnorm, alpha=alpha)
    state = iterate("neumann", it.body, op, it.state, maxiter=maxiter, check_every=check_every,
                    cuda_graph=cuda_graph, monitor=it.monitor)
    x = it.solution(state)
    x, info = _finish("neumann", op, b, x, bnorm, tol, int(state["done"]), None, maxiter)
    return x, explain_divergence(info, alpha)


def explain_divergence(info: SolveInfo, alpha: float) -> SolveInfo:
    """A Neumann series whose residual grew past 1 says why (alpha too large)."""
    if not info.converged and info.residual > 1.0:
        info.reason = (f"diverging: relative residual {info.residual:.3e} > 1 after "
                       f"{info.iterations} terms; alpha={alpha:.3e} is too large for A "
                       "(need 0 < alpha < 2/lambda_max and A positive definite)")
    return info


def neumann_iteration(op: LinearOperator, b: Tree, x0: Tree | None, tol: float,
                      bnorm: torch.Tensor, *, alpha: float) -> Iteration:
    """The Neumann series as an :class:`Iteration` (``alpha`` > 0 fixed)."""
    x_base, term = _start(op, b, x0)
    threshold = tol * bnorm
    term_norm = T.norm(term)
    state = {"term": term, "total": term, "term_norm": term_norm,
             "active": term_norm > threshold,
             "done": torch.zeros((), dtype=torch.int64, device=term_norm.device)}

    def body(op: LinearOperator, s: dict) -> dict:
        active = s["active"]
        term = T.where(active, T.axpy(-alpha, op(s["term"]), s["term"]), s["term"])
        term_norm = T.norm(term)  # = ||b - A x|| of the partial sum including this term
        return {"term": term, "total": T.where(active, T.axpy(1.0, term, s["total"]), s["total"]),
                "term_norm": term_norm, "active": active & (term_norm > threshold),
                "done": s["done"] + active.to(torch.int64)}

    return Iteration(state, body, "term_norm",
                     lambda s: T.axpy(alpha, s["total"], x_base))


def gmres(A: Operator, b: Tree, *, x0: Tree | None = None, tol: float = 1e-6,
          maxiter: int | None = None, restart: int = 30) -> tuple[Tree, SolveInfo]:
    """Restarted GMRES(m) (Saad and Schultz, 1986) for general (non-symmetric) A.

    Each cycle builds an orthonormal Krylov basis V (m+1 vectors) with classical
    Gram-Schmidt and one re-orthogonalization (CGS2: as stable as modified
    Gram-Schmidt, but two matrix products instead of j dot products), the
    Hessenberg matrix H with A V_m = V_{m+1} H, and then minimizes
    ||beta e1 - H y|| (a tiny least-squares problem, solved on the host in float64)
    to update x <- x + V_m y.  The host looks at the residual once per cycle.

    Args:
        A: square operator (LinearOperator, callable or matrix).
        b: right-hand side (tensor or dict).
        x0: initial guess.
        tol: relative residual target.
        maxiter: cap on products with A (default 2 n).
        restart: Krylov dimension m per cycle.

    Returns:
        (x, SolveInfo) as :func:`cg`.
    """
    op = as_operator(A)
    bnorm = T.norm(b)
    if float(bnorm) == 0.0:
        return _trivial(b)
    flat_b, unflatten = T.flatten(b)
    n = flat_b.numel()
    maxiter = 2 * n if maxiter is None else maxiter
    m = max(1, min(restart, n))
    x = T.flatten(x0)[0].clone() if x0 is not None else torch.zeros_like(flat_b)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return T.flatten(op(unflatten(v)))[0]

    done = 0
    while done < maxiter:
        r = flat_b - matvec(x) if done or x0 is not None else flat_b
        beta = torch.linalg.norm(r)
        beta_host = float(beta)
        if beta_host != beta_host or beta_host == float("inf"):
            raise FloatingPointError(f"gmres: non-finite residual after {done} iterations")
        if beta_host <= tol * float(bnorm):
            break
        steps = min(m, maxiter - done)
        V = torch.zeros(steps + 1, n, dtype=flat_b.dtype, device=flat_b.device)
        H = torch.zeros(steps + 1, steps, dtype=flat_b.dtype, device=flat_b.device)
        V[0] = r / beta
        for j in range(steps):
            w = matvec(V[j])
            h = V[: j + 1] @ w
            w = w - V[: j + 1].T @ h
            correction = V[: j + 1] @ w  # second Gram-Schmidt pass
            w = w - V[: j + 1].T @ correction
            h = h + correction
            h_next = torch.linalg.norm(w)
            H[: j + 1, j] = h
            H[j + 1, j] = h_next
            # a happy breakdown (h_next = 0) leaves a zero basis vector, harmless below
            V[j + 1] = torch.where(h_next > 0, w / h_next, torch.zeros_like(w))
        done += steps
        rhs = torch.zeros(steps + 1, dtype=torch.float64)
        rhs[0] = beta_host
        y = torch.linalg.lstsq(H.double().cpu(), rhs.unsqueeze(1), driver="gelsd").solution
        x = x + V[:steps].T @ y.squeeze(1).to(dtype=x.dtype, device=x.device)
    return _finish("gmres", op, b, unflatten(x), bnorm, tol, done, None, maxiter)


# ---------------------------------------------------------------------------------------
# solvers as values

# options of the solve loop, not of the iteration itself
_LOOP_OPTIONS = ("maxiter", "check_every", "cuda_graph")
# passed by engines only to solvers that take them (x0, tol and maxiter are required)
_OPTIONAL_KNOBS = ("check_every", "cuda_graph")


def _keywords(function: Callable) -> frozenset | None:
    """The keyword names a solver function takes, None when it takes **kwargs."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


@dataclass(frozen=True)
class LinearSolver:
    """A linear solver as a value: ``solver(A, b, x0=..., tol=...) -> (x, SolveInfo)``.

    Attributes:
        name: for reports ("cg", "minres", ..., or the callable's name).
        function: the solver, with the module's common signature.
        options: keyword arguments fixed on this value (a configured solver); they win
            over the ones a caller passes.
        iteration: ``iteration(op, b, x0, tol, bnorm, **options) -> Iteration`` (the
            solve as data, see :class:`Iteration`), or None when the solver has none
            (it then runs only eagerly: it is never replaced by another solver).
        capture_needs: options the Iteration form cannot do without (Neumann: a fixed
            ``alpha``; its default comes from a host-side power iteration).
        default_maxiter: n -> the iteration cap when none is given (n = len(b)).
        prepare: ``prepare(op) -> (options, products)``: options computed from the
            operator when not fixed (Neumann: alpha = 1 / lambda_max by power iteration)
            and the operator products that took; engines call it to count those products.
    """

    name: str
    function: Callable[..., tuple[Tree, SolveInfo]]
    options: dict = field(default_factory=dict)
    iteration: Callable[..., Iteration] | None = None
    capture_needs: tuple[str, ...] = ()
    default_maxiter: Callable[[int], int] = lambda n: 2 * n
    prepare: Callable[[LinearOperator], tuple[dict, int]] | None = None

    def prepared(self, op: LinearOperator) -> tuple[LinearSolver, int]:
        """This solver with its operator-dependent options filled in (see ``prepare``),
        and the products that took."""
        if self.prepare is None or all(self.options.get(k) is not None
                                       for k in self.capture_needs):
            return self, 0
        options, products = self.prepare(op)
        return self.configure(**options), products

    def __call__(self, A: Operator, b: Tree, **options: Any) -> tuple[Tree, SolveInfo]:
        options = {**options, **self.options}
        accepted = _keywords(self.function)
        if accepted is not None:  # tuning knobs a solver does not have are not forced on it
            options = {k: v for k, v in options.items()
                       if k in accepted or k not in _OPTIONAL_KNOBS}
        return self.function(A, b, **options)

    def configure(self, **options: Any) -> LinearSolver:
        """The same solver with more options fixed (``cg.configure(maxiter=50)``)."""
        return replace(self, options={**self.options, **options})

    def capture_issue(self) -> str | None:
        """Why this solver cannot be recorded as a whole (None when it can)."""
        if self.iteration is None:
            return f"the linear solver {self.name!r} has no Iteration form to record"
        missing = [k for k in self.capture_needs if self.options.get(k) is None]
        if missing:
            return (f"{self.name} needs {', '.join(missing)} fixed to be recorded (e.g. "
                    f"{self.name}.configure({missing[0]}=...)); its default is computed "
                    "on the host")
        return None

    def record(self, op: LinearOperator, b: Tree, x0: Tree | None, tol: float,
               bnorm: torch.Tensor) -> Iteration:
        """The solve as an :class:`Iteration` with this value's options."""
        if self.iteration is None:
            raise TypeError(self.capture_issue())
        options = {k: v for k, v in self.options.items() if k not in _LOOP_OPTIONS}
        return self.iteration(op, b, x0, tol, bnorm, **options)


def _neumann_step(op: LinearOperator) -> tuple[dict, int]:
    """alpha = 1 / lambda_max(A) by power iteration (seeded), and the products it took."""
    from .spectral import power_iteration
    count = 0

    def counted(v: Tree) -> Tree:
        nonlocal count
        count += 1
        return op.matvec(v)

    estimate = power_iteration(LinearOperator(counted, like=op.like), iters=50, tol=1e-3)
    if not estimate > 0.0:
        raise ValueError("neumann: the operator is zero along the power-iteration direction; "
                         "pass alpha explicitly")
    return {"alpha": 1.0 / estimate}, count


SOLVERS: dict[str, LinearSolver] = {
    "cg": LinearSolver("cg", cg, iteration=cg_iteration),
    "minres": LinearSolver("minres", minres, iteration=minres_iteration),
    "neumann": LinearSolver("neumann", neumann, iteration=neumann_iteration,
                            capture_needs=("alpha",), default_maxiter=lambda n: 100,
                            prepare=_neumann_step),
    "gmres": LinearSolver("gmres", gmres),
}


def as_solver(solve: str | Callable | LinearSolver, **options: Any) -> LinearSolver:
    """A :class:`LinearSolver` from a name ("cg", "minres", "neumann", "gmres"), one of
    this module's solver functions, a ``functools.partial`` of one (its keywords become
    fixed options), a :class:`LinearSolver`, or any callable
    ``solve(A, b, *, x0, tol, maxiter, ...) -> (x, SolveInfo)``; ``options`` are fixed on
    the result.

    Raises:
        ValueError: an unknown name (the known ones are listed).
        TypeError: not a name nor a callable, or a partial with positional arguments.
    """
    if isinstance(solve, LinearSolver):
        solver = solve
    elif isinstance(solve, str):
        if solve not in SOLVERS:
            raise ValueError(f"unknown linear solver {solve!r}; known: {sorted(SOLVERS)}, "
                             "or pass a callable solve(A, b, *, x0, tol, ...)")
        solver = SOLVERS[solve]
    elif isinstance(solve, functools.partial):
        if solve.args:
            raise TypeError("a partial linear solver may fix keyword arguments only, got "
                            f"positional {solve.args!r}")
        solver = as_solver(solve.func).configure(**solve.keywords)
    elif callable(solve):
        known = [s for s in SOLVERS.values() if s.function is solve]
        solver = known[0] if known else LinearSolver(
            getattr(solve, "__name__", type(solve).__name__), solve)
    else:
        raise TypeError("a linear solver must be a name, a LinearSolver or a callable "
                        f"solve(A, b, *, x0, tol, ...), got {type(solve).__name__}")
    return solver.configure(**options) if options else solver
