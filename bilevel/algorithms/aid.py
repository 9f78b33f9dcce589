"""AID bilevel loop ("aid" with a linear solver value ``solve=``; "aid-cg", "aid-minres",
"aid-neumann" name it).

Per outer step k (Ghadimi and Wang 2018; Ji, Yang, Liang 2021, "stocBiO"/"AID-BiO"):

    y <- y - beta grad_y g(x, y; B_t)        inner_steps times, warm-started from step k-1
                                             (or damped Newton steps: inner_method="newton")
    solve H_yy(x, y) v = grad_y f(x, y)      warm-started from v of step k-1
    x <- OuterOptimizer(x, grad_x f - (d^2 g / dx dy)^T v)

Warm starts make the per-step solve short (``maxiter`` caps it; a solve that misses
``tol`` is recorded in the history, not hidden).  With data, every gradient and product
is taken on a fresh minibatch (stochastic AID).
"""

from __future__ import annotations

from ..hypergrad.graph import captured_hypergrad
from ..linalg import as_solver
from ..linalg import tree as T
from .common import Algorithm, detach, gradient_steps, newton_steps

__all__ = ["AIDAlgorithm"]


class AIDAlgorithm(Algorithm):
    """Options: ``tol`` (``solve_tol`` in :func:`bilevel.solve`; 1e-4: warm starts carry
    accuracy over, so each step's solve needs only moderate accuracy), ``maxiter`` (50 per
    outer step), ``warm_start`` (True), ``alpha`` (Neumann step; default the inner step
    1/lambda_max), ``check_every``, ``cuda_graph`` ("auto": the solver's own chunk graphs;
    True: each step's whole hypergradient call replayed from a CUDA graph, see
    :mod:`bilevel.hypergrad.graph`; False: none), ``inner_tol`` (None; else
    keep taking chunks of ``inner_steps`` inner steps until ||grad_y g|| <= inner_tol, one
    host check per chunk, at most ``max_inner_steps``, default 20 * inner_steps),
    ``inner_method`` ("gd": gradient steps of size 1/lambda_max; "newton": damped Newton
    steps with CG directions, see :func:`~bilevel.algorithms.common.newton_steps`:
    for ill-conditioned inner problems, where ``inner_steps`` gradient steps leave
    y far from y*(x) and the hypergradient biased; with ``inner_tol`` Newton stops as
    soon as ||grad_y g|| <= inner_tol, within ``inner_steps`` steps), ``ridge`` (0.0),
    ``fallback`` ("ridge"), ``hessian`` ("exact" or "gauss-newton"), as in
    :func:`bilevel.hypergrad`; "aid" also takes ``solve`` (a linear solver value, default
    cg)."""

    defaults = {"tol": 1e-4, "maxiter": 50, "warm_start": True, "alpha": None,
                "check_every": None, "cuda_graph": "auto", "inner_tol": None,
                "max_inner_steps": None, "inner_method": "gd", "ridge": 0.0,
                "fallback": "ridge", "hessian": "exact", "solve": None}

    def __init__(self, problem, streams, *, solver: str | None = None, **kw) -> None:
        self.name = "aid" if solver is None else f"aid-{solver}"
        super().__init__(problem, streams, **kw)
        if solver is not None and self.options["solve"] is not None:
            raise TypeError(f"solve: method {self.name!r} names the linear solver; pass "
                            "solve= with method='aid'")
        self.solver = as_solver(solver or self.options["solve"] or "cg")
        if self.options["inner_method"] not in ("gd", "newton"):
            raise ValueError(f"solve: inner_method must be 'gd' or 'newton', got "
                             f"{self.options['inner_method']!r}")

    def init_state(self) -> dict:
        return {"x": detach(self.problem.x0), "y": detach(self.problem.y0), "v": None,
                "opt": self.outer_optimizer.init(self.problem.x0), "inner_lr": None}

    def step(self, state: dict, k: int) -> tuple[dict, dict]:
        x, y = state["x"], state["y"]
        opts = self.options
        newton = opts["inner_method"] == "newton"
        lr, power_products, extra_grads = None, 0, 0
        # a solver with a step (Neumann's alpha) takes the inner step 1/lambda_max
        needs_step = "alpha" in self.solver.capture_needs and \
            self.solver.options.get("alpha") is None
        if newton:
            if needs_step and opts["alpha"] is None:
                lr, power_products = self.inner_lr(state, k, x, y)
            y, inner_norm, inner_taken, newton_products = newton_steps(
                [self.g() for _ in range(self.inner_steps)], x, y, tol=opts["inner_tol"],
                cg_maxiter=opts["maxiter"])
            power_products += newton_products
        else:
            y, inner_norm, lr, power_products, extra_grads = self.guarded_descent(
                state, k, x, y, [self.g() for _ in range(self.inner_steps)])
            inner_taken = self.inner_steps
            y, inner_norm, inner_taken = self._until_inner_tol(x, y, lr, inner_norm,
                                                               inner_taken)
        inner_batch = self.inner_stream.next()
        f, g = self.f(), self.problem.inner_at(inner_batch)
        solver = self.solver
        if needs_step:
            solver = solver.configure(alpha=opts["alpha"] if opts["alpha"] is not None else lr)
        warm = state["v"] if opts["warm_start"] else None

        def hypergrad(v0):
            # the whole call captured and replayed from the second step on where possible
            # (bilevel.hypergrad.graph; eager, saying why, for minibatches or on a CPU)
            return captured_hypergrad(
                self.problem, f, g, x, y, v0=v0, full_batch=not self.problem.stochastic,
                cuda_graph=opts["cuda_graph"], solve=solver, tol=opts["tol"],
                maxiter=opts["maxiter"], check_every=opts["check_every"], ridge=opts["ridge"],
                fallback=opts["fallback"], hessian=opts["hessian"],
                split=self.problem.inner_split_at(inner_batch),
                warn_inner=False)  # y is approximate by design; recorded in the history
        grad_x, info = hypergrad(warm)
        extra_products, note = 0, None
        if warm is not None and info.residual is not None and info.residual > 1.0:
            # The previous v is a worse start than zero here (x or the batch moved a lot):
            # solve again from zero rather than use it.
            extra_products = info.hvp_count
            grad_x, info = hypergrad(None)
            note = "warm start worse than v = 0; re-solved from zero"
        x_new, opt = self.outer_optimizer.step(x, grad_x, state["opt"], k)
        new_state = {"x": x_new, "y": y, "v": info.v, "opt": opt, "inner_lr": state["inner_lr"]}
        stats = {"outer_loss": info.outer_loss, "hypergrad": grad_x,
                 "hypergrad_norm": T.norm(grad_x),
                 "inner_grad_norm": inner_norm, "solve_residual": info.residual,
                 "solve_converged": info.converged, "solve_iterations": info.iterations,
                 "fallback": "; ".join(filter(None, [note, info.fallback])) or None,
                 "hvp_count": info.hvp_count + power_products + extra_products,
                 "grad_count": inner_taken + extra_grads + info.grad_count,
                 "inner_steps": inner_taken}
        if info.residual is not None and info.residual > 1.0:
            stats["failure"] = (f"the linear solve made things worse than v = 0 (relative "
                                f"residual {info.residual:.3e}): {info.solve.reason}")
        return new_state, stats

    def _until_inner_tol(self, x, y, lr, norm, taken):
        """More chunks of inner steps while ||grad_y g|| > inner_tol (checked per chunk)."""
        tol = self.options["inner_tol"]
        if tol is None:
            return y, norm, taken
        cap = self.options["max_inner_steps"] or 20 * self.inner_steps
        while taken < cap and float(norm) > tol:
            chunk = min(self.inner_steps, cap - taken)
            y, norm = gradient_steps([self.g() for _ in range(chunk)], x, y, lr)
            taken += chunk
        return y, norm, taken
