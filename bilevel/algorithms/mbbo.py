"""MBBO: blockwise stochastic variance-reduced bilevel methods for m lower levels
(BSVRB, Hu, Qiu, Guo, Zhang, Yang, ICML 2023, arXiv:2305.18730).

For min_x F(x) = 1/m sum_i f_i(x, y_i*(x)), y_i*(x) = argmin g_i(x, y_i) (a
:class:`~bilevel.MultiBlockProblem`), with

    grad F(x) = 1/m sum_i [grad_x f_i - (d^2 g_i / dx dy) H_i^{-1} grad_y f_i](x, y_i*(x)),
    H_i = d^2 g_i / dy^2,

each outer step t samples a set I_t of I blocks and, per sampled block, batches of b rows
for g_i and for f_i, and evaluates everything below at the current iterate
(x_t, y_i^t, w_i^t) *and* at the previous one (x_{t-1}, y_i^{t-1}, w_i^{t-1}) on the same
samples (the variance-reduction corrections), for all sampled blocks together under
``torch.func.vmap``:

MSVR estimators (multi-block single-probe variance reduction, Jiang et al. 2022), for
i in I_t only (the others keep theirs), of a block quantity h_i:

    e_i <- (1 - alpha) e_i + alpha h_i(t) + gamma (h_i(t) - h_i(t-1))               (MSVR)

  * s_i tracks grad_y g_i(x, y_i)                            (both variants);
  * "hessian" (BSVRB^v1, low-dimensional y_i): H_i tracks d^2 g_i / dy^2, projected onto
    {H = H^T, lambda_min(H) >= min_eig} (eigenvalues clipped), and w_i = H_i^{-1} grad_y f_i
    with the inverse of the tracked p x p matrix;
  * "hvp" (BSVRB^v2, high-dimensional y_i): w_i = v_i, a per-block variable that minimizes
    Gamma_i(v) = 1/2 v^T H_i v - v^T grad_y f_i by stochastic gradient steps, with u_i
    tracking grad Gamma_i(v_i) = H_i v_i - grad_y f_i (one Hessian-vector product: no
    Hessian is formed or inverted).

Hypergradient, STORM momentum (Cutkosky and Orabona 2019) and the steps:

    G(t)   = 1/I sum_{i in I_t} [grad_x f_i - (d^2 g_i / dx dy) w_i](x_t, y_i^t)
    G(t-1) = the same sum at (x_{t-1}, y_i^{t-1}, w_i^{t-1}) on the same samples
    z      <- (1 - beta) (z - G(t-1)) + G(t)           (z = G(0) at the first step)
    x      <- x - eta z                                (outer_optimizer="sgd"; Adam on z
                                                        by default, as in bilevel.solve)
    y_i    <- y_i - tau s_i,  i in I_t
    v_i    <- Proj_{||v|| <= R}(v_i - tau_v u_i),  i in I_t          ("hvp" only)

The order follows the authors' code (github.com/quanqihu/BSVRB_ICML2023,
Hyperparameter_Optimization/HO/main.py): the estimators are updated first; G uses the
H_i / v_i held *before* this step's update; y_i and v_i move with the updated estimators.
gamma="auto" is the paper's theoretical choice gamma = (m - I) / (I (1 - alpha)) (0 when
I = m or alpha = 1).  Only the sampled blocks' y_i and v_i move (the paper's analysis
moves every block with its stored estimate; the authors' v2 code moves a sampled block by
tau times the number of steps it missed): a step sized to the block's own curvature is
then stable whatever I / m.  The default steps are per block, tau_i = 1 / ((1 + gamma)
lambda_i), lambda_i the largest eigenvalue of block i's Hessian on this visit's batch
(a power iteration that advances one product per visit, warm-started from the previous
visit's vector: "hvp"; the dense batch Hessian's eigenvalues: "hessian"): the correction
gamma (h(t) - h(t-1)) feeds each step's change back into the estimator, and along an
eigenvalue lambda the (estimator, variable) recursion contracts for tau lambda <=
1 / (1 + gamma) (for any alpha in (0, 1]; checked numerically for gamma <= 100), not for
tau lambda = 1.  A step estimated once for all blocks goes stale as x moves (with
exp-parametrized weights lambda_max grows with e^x) and diverges.

Preconditioned inner steps (``precondition=True``, "hessian" variant; an extension, not
in the paper): y_i <- y_i - H_i^{-1} s_i / (1 + gamma) with the tracked (projected)
H_i, a Newton step on the variance-reduced estimates, scaled like the gradient step's
tau lambda <= 1 / (1 + gamma).  The gradient step contracts y_i - y_i*(x) by only
1 - 1 / ((1 + gamma) kappa_i) per visit, kappa_i the condition number of H_i, and on
the ijcnn1 task kappa_i grows past 400 as the weights e^x of some features shrink
towards 0 (the optimum lies at x_j -> -inf for them): y_i and v_i then lag y_i*(x) and
the hypergradient is biased: in a CPU check (m = 32 blocks of ijcnn1, 600 steps, Adam
0.05) F stayed 12-15% above F* for I = 8 or 32, 32 or all rows per block, and five
gradient steps per visit instead of one did not change that.  Preconditioned ("hessian",
I = 8, all rows) F came within 1% of F* at step 200 and 0.03% at step 600.  With 32
rows per block and step the tracked Hessian is too noisy for it (F +12% at step 150,
then rising to +20%): use it with full blocks (``samples_per_block=None``).

At step 0 there is no previous iterate: the corrections vanish, and the estimators start
from one full-batch pass over all m blocks at (x_0, y_0) (s_i = grad_y g_i, H_i =
d^2 g_i / dy^2, u_i = -grad_y f_i with v_i = 0; the power-iteration vectors after
``power_iters`` products); the authors' code starts them at random.

Every quantity of a block is computed by one function of that block's y_i, w_i and
batch, mapped over the sampled blocks with ``vmap``: I blocks cost about one batched
kernel per operation, which is where the parallel speedup on a GPU comes from.
"""

from __future__ import annotations

import math

import torch
from torch.func import grad, grad_and_value, vjp, vmap

from ..linalg import tree as T
from ..linalg.tree import Tree
from ..multiblock import BlockSampler, MultiBlockProblem
from .common import Algorithm, detach

__all__ = ["MBBOAlgorithm"]

VARIANTS = ("hvp", "hessian")


class MBBOAlgorithm(Algorithm):
    """Options: ``variant`` ("hvp": BSVRB^v2, Hessian-vector products; "hessian": BSVRB^v1,
    dense per-block Hessians, for small y_i), ``blocks_per_step`` I (default m: all
    blocks), ``samples_per_block`` b (default None: full batches), ``alpha`` (MSVR weight,
    0.9), ``gamma`` (MSVR correction, 1.0; or "auto" = (m - I) / (I (1 - alpha)), the
    theory's value, large when I << m, which shrinks the default steps with it),
    ``beta`` (STORM weight, 0.9; alpha, gamma and beta as in the authors' scripts),
    ``v_lr`` (tau_v, default the inner step tau), ``v_radius`` (R, None: no projection),
    ``min_eig`` (eigenvalue floor of the tracked Hessians, 1e-6), ``power_iters``
    (power iterations per block at the start, "hvp", 20), ``precondition`` (False: the
    paper's step y_i <- y_i - tau_i s_i; True, "hessian" only: y_i <- y_i - H_i^{-1} s_i /
    (1 + gamma) with the tracked H_i, see the module docstring).  ``inner_lr`` fixes tau
    for every block (default: per block and visit, see the module docstring);
    ``inner_steps`` and ``lr_every`` are not used (one estimator step per visit of a
    block)."""

    name = "mbbo"
    defaults = {"variant": "hvp", "blocks_per_step": None, "samples_per_block": None,
                "alpha": 0.9, "gamma": 1.0, "beta": 0.9, "v_lr": None, "v_radius": None,
                "min_eig": 1e-6, "power_iters": 20, "precondition": False}

    def __init__(self, problem, streams, **kw) -> None:
        super().__init__(problem, streams, **kw)
        if not isinstance(problem, MultiBlockProblem):
            raise TypeError("solve: method 'mbbo' needs a bilevel.MultiBlockProblem (m lower "
                            f"levels), got {type(problem).__name__}")
        opts = self.options
        if opts["variant"] not in VARIANTS:
            raise ValueError(f"solve: variant must be one of {VARIANTS}, got "
                             f"{opts['variant']!r}")
        m = problem.n_blocks
        size = m if opts["blocks_per_step"] is None else opts["blocks_per_step"]
        data = problem.block_data
        self.sampler = BlockSampler(m, data.n_inner, data.n_outer, size,
                                    opts["samples_per_block"], self.outer_stream.seed)
        if not 0.0 < opts["alpha"] <= 1.0 or not 0.0 < opts["beta"] <= 1.0:
            raise ValueError(f"solve: alpha and beta must be in (0, 1], got alpha="
                             f"{opts['alpha']!r}, beta={opts['beta']!r}")
        if opts["gamma"] == "auto":
            self.gamma = 0.0 if size == m or opts["alpha"] == 1.0 else \
                (m - size) / (size * (1.0 - opts["alpha"]))
        elif isinstance(opts["gamma"], (int, float)) and opts["gamma"] >= 0:
            self.gamma = float(opts["gamma"])
        else:
            raise ValueError(f"solve: gamma must be 'auto' or a number >= 0, got "
                             f"{opts['gamma']!r}")
        self.hessian = opts["variant"] == "hessian"
        if opts["precondition"] and not self.hessian:
            raise ValueError("solve: precondition=True needs variant='hessian' (it steps y_i "
                             "with the tracked Hessian's inverse)")
        # per-block shapes of y_i, for the flat coordinates of the "hessian" variant
        self._shapes = [t.shape[1:] for t in T.leaves(problem.y0)]

    # -- per-block flat coordinates (the "hessian" variant's dense p x p matrices) ----------
    def _flat(self, y: Tree) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in T.leaves(y)])

    def _unflat(self, vec: torch.Tensor) -> Tree:
        sizes = [math.prod(s) for s in self._shapes]
        pieces = iter([p.reshape(s) for p, s in zip(vec.split(sizes), self._shapes)])
        return T.tree_map(lambda _: next(pieces), self.problem.y0)

    # -- one block's quantities, mapped over blocks with vmap ------------------------------
    def _block(self, x: Tree, y: Tree, w: Tree | torch.Tensor, q: Tree | None, din,
               dout) -> dict:
        """Block terms at (x, y_i) on one batch pair.  ``w`` is v_i ("hvp") or the inverse of
        the tracked H_i ("hessian"; inverted outside, batched: a solve under vmap is slow).
        Returns grad_y g (gy), grad_y f (fy), f, the hypergradient term G_i = grad_x f -
        (d^2 g/dx dy) w_i (w_i = v_i or H_i^{-1} grad_y f), and H_i v_i ("hvp") or
        d^2 g/dy^2 ("hessian") as "curv"; with a unit vector q ("hvp"), also "hq" = H_i q
        (the power iteration's product) and its norm "lam"."""
        f, g = self.problem.block_outer, self.problem.block_inner
        (fx, fy), value = grad_and_value(f, argnums=(0, 1))(x, y, dout)
        # one linearization of (x, y) -> grad_y g gives grad_y g and, per cotangent w,
        # both second-order products at once: ((d^2 g / dx dy) w, H_i w) (H_i symmetric)
        gy, pullback = vjp(lambda xx, yy: grad(g, argnums=1)(xx, yy, din), x, y)
        if self.hessian:
            size = w.shape[-1]
            basis = torch.eye(size, dtype=w.dtype, device=w.device)
            curvature = vmap(lambda e: self._flat(pullback(self._unflat(e))[1]))(basis)
            w = self._unflat(w @ self._flat(fy))                     # H_i^{-1} grad_y f
            mixed = pullback(w)[0]
        else:
            mixed, curvature = pullback(w)                           # H_i v_i
        out = {"gy": gy, "fy": fy, "f": value, "G": T.axpy(-1.0, mixed, fx), "curv": curvature}
        if q is not None:
            hq = pullback(q)[1]
            out.update(hq=hq, lam=T.norm(hq))
        return out

    def _terms(self, x, y, w, din, dout, q=None) -> dict:
        """:meth:`_block` for every block of the leading dimension (vmap)."""
        return vmap(lambda yi, wi, qi, di, do: self._block(x, yi, wi, qi, di, do),
                    in_dims=(0, 0, None if q is None else 0, 0, 0))(y, w, q, din, dout)

    # -- state --------------------------------------------------------------------------
    def init_state(self) -> dict:
        """Estimators from one full-batch pass over all blocks at (x_0, y_0)."""
        p = self.problem
        x, y = detach(p.x0), detach(p.y0)
        data = p.block_data
        if self.hessian:
            size = T.numel(y) // p.n_blocks
            eye = torch.eye(size, dtype=T.like_info(y)[0], device=p.device)
            w = eye.expand(p.n_blocks, size, size)  # any SPD start: H_i is replaced below
        else:
            w = T.zeros_like(y)
        terms = self._terms(x, y, w, data.inner, data.outer)
        state = {"x": x, "x_prev": x, "y": y, "y_prev": y, "s": terms["gy"],
                 "z": T.zeros_like(x), "opt": self.outer_optimizer.init(x)}
        if self.hessian:
            hess = self._project(terms["curv"])
            state.update(H=hess, H_prev=hess)
        else:
            state.update(v=w, v_prev=w, u=T.axpy(-1.0, terms["fy"], terms["curv"]),
                         q=self._top_vectors(x, y, data.inner))
        return state

    def _top_vectors(self, x: Tree, y: Tree, din) -> Tree:
        """Unit vectors near each block's top Hessian eigenvector (full batch, at (x, y)):
        ``power_iters`` power iterations from a seeded Gaussian start, all blocks at once."""
        g = self.problem.block_inner
        gen = torch.Generator().manual_seed(self.sampler.seed % 2**62)
        q = _unit_rows(T.randn_like(y, generator=gen))

        def iterate(yi: Tree, qi: Tree, di) -> Tree:
            _, pullback = vjp(lambda yy: grad(g, argnums=1)(x, yy, di), yi)
            for _ in range(self.options["power_iters"]):
                hq = pullback(qi)[0]
                size = T.norm(hq).clamp_min(1e-30)
                qi = T.tree_map(lambda t, size=size: t / size, hq)
            return qi

        return vmap(iterate)(y, q, din)

    def _project(self, hess: torch.Tensor) -> torch.Tensor:
        """Symmetrize and clip eigenvalues below ``min_eig``: (..., p, p)."""
        sym = (hess + hess.transpose(-1, -2)) / 2
        vals, vecs = torch.linalg.eigh(sym)
        return (vecs * vals.clamp_min(self.options["min_eig"]).unsqueeze(-2)) @ \
            vecs.transpose(-1, -2)

    # -- one outer step -----------------------------------------------------------------
    def step(self, state: dict, k: int) -> tuple[dict, dict]:
        opts, p = self.options, self.problem
        alpha, beta, gamma = opts["alpha"], opts["beta"], self.gamma
        x, x_prev, y, y_prev = state["x"], state["x_prev"], state["y"], state["y_prev"]
        blocks, rows_in, rows_out = self.sampler.draw(k, p.device)
        din = p.block_data.select("inner", blocks, rows_in)
        dout = p.block_data.select("outer", blocks, rows_out)
        take = lambda tree: T.tree_map(lambda t: t[blocks], tree)
        key = "H" if self.hessian else "v"
        w, w_prev = take(state[key]), take(state[f"{key}_prev"])
        # "hessian": the tracked H_i enter as H_i^{-1} (SPD by the projection)
        pair = (torch.linalg.inv(w), torch.linalg.inv(w_prev)) if self.hessian else (w, w_prev)
        rows = take(y)
        now = self._terms(x, rows, pair[0], din, dout,
                          None if self.hessian else take(state["q"]))
        if opts["precondition"]:
            tau = None  # y_i steps with the tracked Hessian's inverse instead
        elif self.fixed_inner_lr is not None:
            tau = torch.full((len(blocks),), self.fixed_inner_lr, dtype=now["f"].dtype,
                             device=p.device)
        else:  # per block: 1 / ((1 + gamma) lambda_max of this batch's Hessian)
            lam = (torch.linalg.eigvalsh(now["curv"])[:, -1] if self.hessian else now["lam"])
            tau = 1.0 / ((1.0 + gamma) * lam.clamp_min(1e-30))
        before = self._terms(x_prev, take(y_prev), pair[1], din, dout)

        def msvr(old: Tree, fresh: Tree, stale: Tree) -> Tree:
            return T.tree_map(lambda e, h1, h0: (1 - alpha) * e + (alpha + gamma) * h1
                              - gamma * h0, old, fresh, stale)

        s = msvr(take(state["s"]), now["gy"], before["gy"])
        new = {"s": _put(state["s"], blocks, s)}
        if self.hessian:
            hess = self._project(msvr(w, now["curv"], before["curv"]))
            new.update(H=_put(state["H"], blocks, hess), H_prev=state["H"])
            residual = None
        if self.hessian and opts["precondition"]:  # y_i <- y_i - H_i^{-1} s_i / (1 + gamma)
            direction = torch.linalg.solve(hess, vmap(self._flat)(s).unsqueeze(-1))
            new["y"] = _put(y, blocks, T.axpy(-1.0 / (1.0 + gamma),
                                              vmap(self._unflat)(direction.squeeze(-1)), rows))
        else:
            new["y"] = _put(y, blocks, T.axpy(-1.0, _rows_times(tau, s), rows))
        if not self.hessian:
            grad_gamma = T.axpy(-1.0, now["fy"], now["curv"])      # H_i v_i - grad_y f_i
            u = msvr(take(state["u"]), grad_gamma,
                     T.axpy(-1.0, before["fy"], before["curv"]))
            tau_v = opts["v_lr"] if opts["v_lr"] is not None else tau
            v = T.axpy(-1.0, _rows_times(tau_v, u) if torch.is_tensor(tau_v) else
                       T.tree_map(lambda t: tau_v * t, u), w)
            if opts["v_radius"] is not None:
                scale = (opts["v_radius"] / _block_norms(v).clamp_min(1e-30)).clamp(max=1.0)
                v = _rows_times(scale, v)
            new.update(u=_put(state["u"], blocks, u), v=_put(state["v"], blocks, v),
                       v_prev=state["v"], q=_put(state["q"], blocks, _unit_rows(now["hq"])))
            residual = T.norm(grad_gamma) / T.norm(now["fy"]).clamp_min(1e-30)
        estimate = T.tree_map(lambda t: t.mean(0), now["G"])
        if k == 0:
            z = estimate
        else:
            previous = T.tree_map(lambda t: t.mean(0), before["G"])
            z = T.tree_map(lambda zi, g1, g0: (1 - beta) * (zi - g0) + g1,
                           state["z"], estimate, previous)
        x_new, opt = self.outer_optimizer.step(x, z, state["opt"], k)
        new.update(x=x_new, x_prev=x, y_prev=y, z=z, opt=opt)
        size, m = int(blocks.numel()), p.n_blocks
        products = 2 * size * (T.numel(p.y0) // m if self.hessian else 2) + \
            (0 if self.hessian else size)
        stats = {"outer_loss": now["f"].mean(), "hypergrad": z, "hypergrad_norm": T.norm(z),
                 # sqrt(m / I sum_{i in I_t} ||grad_y g_i||^2): an unbiased estimate of
                 # ||grad_Y g_stack||^2 under the square root
                 "inner_grad_norm": T.norm(now["gy"]) * math.sqrt(m / size),
                 "solve_residual": None if residual is None else float(residual),
                 "hvp_count": products, "grad_count": 4 * size}
        return new, stats


def _put(stacked: Tree, blocks: torch.Tensor, rows: Tree) -> Tree:
    """A copy of ``stacked`` (leading dimension m) with the rows ``blocks`` replaced."""
    return T.tree_map(lambda t, r: t.index_copy(0, blocks, r), stacked, rows)


def _rows_times(scale: torch.Tensor, tree: Tree) -> Tree:
    """Each block's slice of a stacked tree times its own scale[i]."""
    return T.tree_map(lambda t: t * scale.reshape(-1, *[1] * (t.ndim - 1)), tree)


def _unit_rows(tree: Tree) -> Tree:
    """Each block's slice of a stacked tree scaled to unit norm (zero slices stay zero)."""
    return _rows_times(1.0 / _block_norms(tree).clamp_min(1e-30), tree)


def _block_norms(tree: Tree) -> torch.Tensor:
    """Euclidean norm of each block's slice of a stacked tree: (I,)."""
    return sum(t.reshape(t.shape[0], -1).pow(2).sum(1) for t in T.leaves(tree)).sqrt()
