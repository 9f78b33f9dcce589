"""Diagonal preconditioning of an LP for PDHG, and the map back to the original variables.

Positive diagonal matrices D1 (rows) and D2 (columns) and scalars theta_b, theta_c define

    A~ = D1 A D2,   c~ = theta_c D2 c,   [l_r~, u_r~] = theta_b D1 [l_r, u_r],
    [l_c~, u_c~] = theta_b D2^{-1} [l_c, u_c],

so that x = D2 x~ / theta_b, y = D1 y~ / theta_c map a solution of the scaled LP to one of
the original LP (the objective scales by theta_b theta_c; feasibility is preserved exactly).

D1, D2 are built as in PDLP / cuPDLPx (Applegate et al. 2021, Sec. 3.2):
  * ``ruiz_iterations`` Ruiz equilibration passes: d1_i = 1/sqrt(max_j |a_ij|),
    d2_j = 1/sqrt(max_i |a_ij|), both from the same matrix, applied together;
  * one Pock-Chambolle pass with alpha = 1: d1_i = 1/sqrt(sum_j |a_ij|),
    d2_j = 1/sqrt(sum_i |a_ij|);
  * bound and objective rescaling (HPR-LP / cuPDLPx): theta_b = 1 / (1 + ||b~||_2),
    theta_c = 1 / (1 + ||c~||_2), with b~ the finite row bounds after the diagonal scaling.
Empty rows and columns keep the factor 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bilevel.linalg import LinearOperator
from bilevel.linalg.operators import csr_tensor

__all__ = ["ScaledLP", "finite_bound_norm", "scale_lp"]


@dataclass
class ScaledLP:
    """The scaled LP on the solver's device, with the scaling to undo and the original data.

    Attributes:
        op: LinearOperator of A~ (int32 CSR and its CSR transpose).
        c, col_lower, col_upper, row_lower, row_upper: scaled data (n,), (m,).
        row_scale, col_scale: D1 (m,), D2 (n,).
        bound_scale, objective_scale: theta_b, theta_c (Python floats).
        orig_c, orig_col_lower, orig_col_upper, orig_row_lower, orig_row_upper: the original
            data in minimization form, on the device (for residuals of the unscaled LP).
        c0: objective constant (minimization form).
    """

    op: LinearOperator
    c: torch.Tensor
    col_lower: torch.Tensor
    col_upper: torch.Tensor
    row_lower: torch.Tensor
    row_upper: torch.Tensor
    row_scale: torch.Tensor
    col_scale: torch.Tensor
    bound_scale: float
    objective_scale: float
    orig_c: torch.Tensor
    orig_col_lower: torch.Tensor
    orig_col_upper: torch.Tensor
    orig_row_lower: torch.Tensor
    orig_row_upper: torch.Tensor
    c0: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.op.shape

    def to(self, device: torch.device) -> ScaledLP:
        """A copy on ``device`` (the operator is rebuilt there, with its transpose)."""
        if self.op.csr.device == torch.device(device):
            return self
        fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                  for k, v in self.__dict__.items() if k != "op"}
        return ScaledLP(op=LinearOperator.from_sparse(self.op.csr, device=device), **fields)

    # x = D2 x~ / theta_b,  y = D1 y~ / theta_c  and back.
    def unscale_primal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.col_scale / self.bound_scale

    def unscale_dual(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.row_scale / self.objective_scale

    def scale_primal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.bound_scale / self.col_scale

    def scale_dual(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.objective_scale / self.row_scale


def finite_bound_norm(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """||b||_2 with b the finite row bounds, an equality row (l = u) counted once."""
    lo = torch.where(torch.isfinite(lower), lower, torch.zeros_like(lower))
    hi = torch.where(torch.isfinite(upper) & (upper != lower), upper, torch.zeros_like(upper))
    return torch.sqrt(torch.sum(lo * lo) + torch.sum(hi * hi))


def _inv_sqrt(v: torch.Tensor) -> torch.Tensor:
    """1/sqrt(v) where v > 0, 1 elsewhere (empty rows/columns are left alone)."""
    return torch.where(v > 0, torch.rsqrt(torch.where(v > 0, v, torch.ones_like(v))),
                       torch.ones_like(v))


def _finite_or_zero(v: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(v), v, torch.zeros_like(v))


def scale_lp(lp, *, device: torch.device, dtype: torch.dtype, ruiz_iterations: int = 10,
             geometric_mean_passes: int = 0,
             pock_chambolle: bool = True, bound_objective_rescaling: bool = True) -> ScaledLP:
    """Precondition ``lp`` (an :class:`l2o.LinearProgram`) on ``device`` (see module docstring).

    The factors are computed in float64 whatever ``dtype`` is; the scaled data are then cast.

    Returns:
        A :class:`ScaledLP` (minimization form: a maximization LP is negated).
    """
    f64 = torch.float64
    c, c0 = lp.minimize_c
    A = lp.A.to(device=device, dtype=f64)
    m, n = A.shape
    crow, col = A.crow_indices(), A.col_indices()
    row = torch.repeat_interleave(torch.arange(m, device=device), crow[1:] - crow[:-1])
    col = col.long()
    vals = A.values().abs()
    if ruiz_iterations < 0 or geometric_mean_passes < 0:
        raise ValueError("scale_lp: numbers of scaling passes must be >= 0")
    d1 = torch.ones(m, dtype=f64, device=device)
    d2 = torch.ones(n, dtype=f64, device=device)

    def reduce(index: torch.Tensor, size: int, v: torch.Tensor, how: str) -> torch.Tensor:
        out = torch.zeros(size, dtype=f64, device=device)
        return out.scatter_reduce_(0, index, v, how, include_self=True)

    def reduce_min(index: torch.Tensor, size: int, v: torch.Tensor) -> torch.Tensor:
        out = torch.full((size,), float("inf"), dtype=f64, device=device)
        return out.scatter_reduce_(0, index, v, "amin", include_self=True)

    for _ in range(geometric_mean_passes):
        # rows, then columns of the row-scaled matrix: 1/sqrt(min |a| max |a|) over nonzeros
        big = torch.where(vals > 0, vals, torch.full_like(vals, float("inf")))
        r = _inv_sqrt(reduce(row, m, vals, "amax") * _finite_or_zero(reduce_min(row, m, big)))
        vals = vals * r[row]
        big = torch.where(vals > 0, vals, torch.full_like(vals, float("inf")))
        s = _inv_sqrt(reduce(col, n, vals, "amax") * _finite_or_zero(reduce_min(col, n, big)))
        vals = vals * s[col]
        d1, d2 = d1 * r, d2 * s
    for _ in range(ruiz_iterations):
        r = _inv_sqrt(reduce(row, m, vals, "amax"))
        s = _inv_sqrt(reduce(col, n, vals, "amax"))
        vals = vals * r[row] * s[col]
        d1, d2 = d1 * r, d2 * s
    if pock_chambolle:
        r = _inv_sqrt(reduce(row, m, vals, "sum"))
        s = _inv_sqrt(reduce(col, n, vals, "sum"))
        d1, d2 = d1 * r, d2 * s

    to = {"device": device, "dtype": f64}
    c, lr, ur = c.to(**to), lp.row_lower.to(**to), lp.row_upper.to(**to)
    lc, uc = lp.col_lower.to(**to), lp.col_upper.to(**to)
    c_s = d2 * c
    lr_s, ur_s = d1 * lr, d1 * ur
    lc_s, uc_s = lc / d2, uc / d2
    theta_b = theta_c = 1.0
    if bound_objective_rescaling:
        theta_b = 1.0 / (1.0 + float(finite_bound_norm(lr_s, ur_s)))
        theta_c = 1.0 / (1.0 + float(torch.linalg.vector_norm(c_s)))
    scaled_values = A.values() * d1[row] * d2[col]
    A_s = csr_tensor(crow, A.col_indices(), scaled_values, (m, n))
    op = LinearOperator.from_sparse(A_s, device=device, dtype=dtype)
    cast = lambda t: t.to(dtype)
    return ScaledLP(op=op, c=cast(theta_c * c_s), col_lower=cast(theta_b * lc_s),
                    col_upper=cast(theta_b * uc_s), row_lower=cast(theta_b * lr_s),
                    row_upper=cast(theta_b * ur_s), row_scale=cast(d1), col_scale=cast(d2),
                    bound_scale=theta_b, objective_scale=theta_c, orig_c=cast(c),
                    orig_col_lower=cast(lc), orig_col_upper=cast(uc), orig_row_lower=cast(lr),
                    orig_row_upper=cast(ur), c0=float(c0))
