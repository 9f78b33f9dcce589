"""One unrolled PDHG iteration with channel expansion (a PDHG-Net layer).

Plain PDHG (shared convention, ``pdhg_math.md``) on min c^T x s.t. l_r <= A x <= u_r,
l_c <= x <= u_c:

    x+ = proj_[l_c, u_c]( x - tau (c - A^T y) )
    y+ = w - sigma proj_[-u_r, -l_r](w / sigma),     w = y - sigma A (2 x+ - x).

With channel expansion every variable node carries a row of X in R^{n x d} and every constraint
node a row of Y in R^{m x d}; learned d x d maps (acting on the channels, right multiplication)
replace the identities (Li et al., 2024, eq. (5)-(6)):

    X+ = proj( X U - tau_k (c 1^T - A^T Y V) )
    X_bar = 2 X+ R - X S
    W  = Y Q - sigma_k A X_bar
    Y+ = W - sigma_k proj_[-u_r, -l_r](W / sigma_k)      (row by row, channel by channel)

with learnable tau_k, sigma_k > 0 (stored as logarithms). proj is the exact projection of every
channel onto the variable's bounds (ReLU for x >= 0, as in the paper); with ``leak`` > 0 a part
leak of the step through the bounds is kept (proj(z) + leak (z - proj(z))), which keeps
gradients alive outside the box. With d = 1, U = V = Q = R = S = 1 and leak = 0 a layer is
exactly one PDHG step.

Signed messages (``signed=True``): A = A+ + A- splits into its positive and negative entries
(values max(A_ij, 0) and min(A_ij, 0)), and each part gets its own channel map:

    X+ = proj( X U - tau_k (c 1^T - A+^T Y V - A-^T Y V_neg) )
    W  = Y Q - sigma_k (A+ X_bar + A- X_bar M_neg)

With V_neg = V and M_neg = I this is the plain layer. Why: messages weighted by A_ij alone are
linear in the edge values, so a node cannot tell its edges apart by anything but their weight
times a shared map. On an LP like PageRank's, (I - d P) x >= (1 - d)/n, power iteration
x <- x - (A x - b) pairs row i with column i only (the positive diagonal entry), while the
neighbours' entries are negative: with one map per sign the layer can separate the two.
Each pair of products is one sparse product with the signed operator [A+ | A-] (M x 2N, the
nonzeros of A with the negative ones moved to columns N..2N-1,
:func:`l2o.net.graph.signed_operator`): A+ Z + A- Z' = [A+ | A-] [Z; Z'] reads A's nonzeros
once, as the plain layer does.

References:
    B. Li, L. Yang, Y. Chen, S. Wang, Q. Chen, H. Mao, Y. Ma, A. Wang, T. Ding, J. Tang, R. Sun,
    "PDHG-Unrolled Learning-to-Optimize Method for Large-Scale Linear Programming", ICML 2024.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PDHGLayer", "project_primal", "project_dual"]


def project_primal(z: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                   leak: float = 0.0) -> torch.Tensor:
    """proj_[l, u](z) channel by channel, plus ``leak`` (z - proj(z)).

    Shapes: z (n, d); lower, upper (n,) (infinite entries allowed).
    """
    p = torch.clamp(z, lower.unsqueeze(1), upper.unsqueeze(1))
    return p if leak == 0.0 else p + leak * (z - p)


def project_dual(w: torch.Tensor, sigma: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                 leak: float = 0.0) -> torch.Tensor:
    """The dual prox w - sigma proj_[-u, -l](w / sigma) channel by channel (``leak`` as above).

    Shapes: w (m, d); sigma a scalar tensor or (m, 1); lower, upper (m,) (infinities allowed:
    sigma > 0, so sigma * inf stays inf).
    """
    # sigma proj_[-u, -l](w / sigma) rather than clamp(w, -sigma u, -sigma l): the bounds stay
    # constants, so d/dsigma never forms 0 * inf = nan at infinite bounds.
    clipped = sigma * torch.clamp(w / sigma, -upper.unsqueeze(1), -lower.unsqueeze(1))
    return w - clipped if leak == 0.0 else w - (1.0 - leak) * clipped


class PDHGLayer(nn.Module):
    """One channel-expanded PDHG iteration (see the module docstring for the formulas).

    Args:
        hidden: channels d per node.
        tau, sigma: initial step sizes (positive).
        leak: leak of the projections (0 = exact projections).
        init_noise: standard deviation (times 1/sqrt(d)) of the perturbation of the identity
            initialization of U, V, Q, R, S; 0 gives exact identities.
        signed: separate channel maps for the positive and negative entries of A (see the
            module docstring); forward then takes the signed operators [A+ | A-] (M, 2N) and
            [(A^T)+ | (A^T)-] (N, 2M) as ``A`` and ``AT``.

    Shapes:
        X (N, d), Y (M, d); A (M, N) and AT (N, M) sparse ((M, 2N), (N, 2M) if signed);
        c, x_lower, x_upper (N,);
        y_lower, y_upper (M,); step_x (N, 1) or a scalar, step_y (M, 1) or a scalar: per-node
        multipliers of tau_k and sigma_k (1 / ||A|| of the node's graph, or 1).
    """

    def __init__(self, hidden: int, *, tau: float = 0.9, sigma: float = 0.9, leak: float = 0.0,
                 init_noise: float = 0.1, signed: bool = False) -> None:
        super().__init__()
        if not (tau > 0 and sigma > 0):
            raise ValueError(f"PDHGLayer: tau and sigma must be positive, got {tau}, {sigma}")
        self.hidden, self.leak, self.init_noise = hidden, float(leak), float(init_noise)
        self.signed = bool(signed)
        self._tau0, self._sigma0 = float(tau), float(sigma)
        self.U = nn.Linear(hidden, hidden, bias=False)   # primal self map
        self.V = nn.Linear(hidden, hidden, bias=False)   # dual -> primal message map
        self.Q = nn.Linear(hidden, hidden, bias=False)   # dual self map
        self.R = nn.Linear(hidden, hidden, bias=False)   # new primal in the extrapolation
        self.S = nn.Linear(hidden, hidden, bias=False)   # old primal in the extrapolation
        if self.signed:
            self.V_neg = nn.Linear(hidden, hidden, bias=False)  # dual -> primal, A_ij < 0
            self.M_neg = nn.Linear(hidden, hidden, bias=False)  # primal -> dual, A_ij < 0
        self.log_tau = nn.Parameter(torch.empty(()))
        self.log_sigma = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Identity channel maps (+ noise), steps at their initial values."""
        maps = (self.U, self.V, self.Q, self.R, self.S)
        for lin in maps + ((self.V_neg, self.M_neg) if self.signed else ()):
            with torch.no_grad():
                lin.weight.copy_(torch.eye(self.hidden))
                if self.init_noise > 0:
                    lin.weight.add_(torch.randn_like(lin.weight),
                                    alpha=self.init_noise / math.sqrt(self.hidden))
        with torch.no_grad():
            self.log_tau.fill_(math.log(self._tau0))
            self.log_sigma.fill_(math.log(self._sigma0))

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def forward(self, X: torch.Tensor, Y: torch.Tensor, A: torch.Tensor, AT: torch.Tensor,
                c: torch.Tensor, x_lower: torch.Tensor, x_upper: torch.Tensor,
                y_lower: torch.Tensor, y_upper: torch.Tensor,
                step_x: torch.Tensor | float = 1.0,
                step_y: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        if self.signed and (A.shape[1] != 2 * X.shape[0] or AT.shape[1] != 2 * Y.shape[0]):
            raise ValueError(f"PDHGLayer(signed=True): A and AT must be the signed operators "
                             f"[A+ | A-] ({Y.shape[0]}, {2 * X.shape[0]}) and [(A^T)+ | (A^T)-] "
                             f"({X.shape[0]}, {2 * Y.shape[0]}) (l2o.net.graph.signed_operator), "
                             f"got {tuple(A.shape)} and {tuple(AT.shape)}")
        tau = self.tau * step_x
        sigma = self.sigma * step_y
        # Primal: a gradient step on the Lagrangian c^T x - y^T A x, then the bound projection.
        # signed: the messages of the negative entries get their own maps, stacked under the
        # positive ones for the one product with [A+ | A-]
        VY = torch.cat([self.V(Y), self.V_neg(Y)]) if self.signed else self.V(Y)
        X_new = project_primal(self.U(X) - tau * (c.unsqueeze(1) - AT @ VY), x_lower, x_upper,
                               self.leak)
        X_bar = 2.0 * self.R(X_new) - self.S(X)          # extrapolation, 2 x+ - x for identities
        MX = torch.cat([X_bar, self.M_neg(X_bar)]) if self.signed else X_bar
        W = self.Q(Y) - sigma * (A @ MX)
        Y_new = project_dual(W, sigma, y_lower, y_upper, self.leak)
        return X_new, Y_new

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, leak={self.leak}" + (", signed" if self.signed else "")
