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
    d2_j = 1/sqrt(sum_i |a_ij|), each sum over a contiguous run of entries (rows in CSR
    order, columns in A^T's), so the factors are the same bits in every run on a GPU too
    (sums by atomic adds are not);
  * bound and objective rescaling (HPR-LP / cuPDLPx): theta_b = 1 / (1 + ||b~||_2),
    theta_c = 1 / (1 + ||c~||_2), with b~ the finite row bounds after the diagonal scaling.
Empty rows and columns keep the factor 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bilevel.linalg import LinearOperator
from bilevel.linalg.operators import csr_row_indices, csr_tensor, transpose_csr, transpose_order
from l2o.lp.kkt import finite_bound_norm, finite_or_zero
from l2o.lp.validate import invalid_bounds

from .profile import PhaseTimer

__all__ = ["Equilibrated", "LPArrays", "ScaledLP", "equilibrate", "lp_arrays", "scale_lp"]

_INT32_MAX = 2**31 - 1


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
        """A copy on ``device`` (the matrix and its transpose copied as they are), or self."""
        if same_device(self.op.csr.device, device):
            return self
        move = lambda t: t.to(device)
        fields = {k: (move(v) if isinstance(v, torch.Tensor) else v)
                  for k, v in self.__dict__.items() if k != "op"}
        csr, csr_t = self.op.csr, self.op.csr_t
        moved = [csr_tensor(move(a.crow_indices()), move(a.col_indices()), move(a.values()),
                            tuple(a.shape)) for a in (csr, csr_t)]
        return ScaledLP(op=LinearOperator.from_csr(*moved), **fields)

    # x = D2 x~ / theta_b,  y = D1 y~ / theta_c  and back.
    def unscale_primal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.col_scale / self.bound_scale

    def unscale_dual(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.row_scale / self.objective_scale

    def scale_primal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.bound_scale / self.col_scale

    def scale_dual(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.objective_scale / self.row_scale

    # A x = (A~ x~) / (D1 theta_b),  A^T y = (A~^T y~) / (D2 theta_c)  from the scaled products.
    def unscale_row_product(self, ax: torch.Tensor) -> torch.Tensor:
        return ax / (self.row_scale * self.bound_scale)

    def unscale_col_product(self, aty: torch.Tensor) -> torch.Tensor:
        return aty / (self.col_scale * self.objective_scale)


def same_device(a: torch.device, b: torch.device | str) -> bool:
    """True when ``a`` (a tensor's device) is ``b``; "cuda" means the current CUDA device."""
    b = torch.device(b)
    if b.type == "cuda" and b.index is None and torch.cuda.is_available():
        b = torch.device("cuda", torch.cuda.current_device())
    return a == b


@dataclass
class LPArrays:
    """An LP's data on one device, minimization form (what :func:`scale_lp` reads).

    Attributes:
        crow (m+1,), col (nnz,): CSR indices of A (int32 when m, n, nnz allow, else int64).
        values (nnz,): A's entries (float64).
        c (n,), col_lower, col_upper (n,), row_lower, row_upper (m,): float64.
        c0: the objective constant.  shape: (m, n).
    """

    crow: torch.Tensor
    col: torch.Tensor
    values: torch.Tensor
    c: torch.Tensor
    col_lower: torch.Tensor
    col_upper: torch.Tensor
    row_lower: torch.Tensor
    row_upper: torch.Tensor
    c0: float
    shape: tuple[int, int]

    def invalid(self) -> torch.Tensor:
        """0-d bool on the device: some c or A entry is nan/inf, or some bound pair is invalid
        (:data:`l2o.lp.validate.BOUND_PROBLEMS`).  One reduction, read with one sync;
        :func:`l2o.lp.validate_lp` names the culprit."""
        flags = [invalid_bounds(self.col_lower, self.col_upper).any(),
                 invalid_bounds(self.row_lower, self.row_upper).any()]
        flags += [(~torch.isfinite(v)).any() for v in (self.c, self.values) if v.numel()]
        return torch.stack(flags).any()


def lp_arrays(lp, device: torch.device) -> LPArrays:
    """``lp``'s arrays on ``device``.  The indices are narrowed to int32 on the host before
    the copy (a third fewer bytes through PCIe for a float64 matrix)."""
    A = lp.A if lp.A.layout == torch.sparse_csr else lp.A.to_sparse_csr()
    m, n = A.shape
    nnz = A.values().numel()
    index = torch.int32 if max(m, n, nnz) < _INT32_MAX else torch.int64
    f64 = {"device": device, "dtype": torch.float64}
    c, c0 = lp.minimize_c
    return LPArrays(crow=A.crow_indices().to(index).to(device),
                    col=A.col_indices().to(index).to(device), values=A.values().to(**f64),
                    c=c.to(**f64), col_lower=lp.col_lower.to(**f64),
                    col_upper=lp.col_upper.to(**f64), row_lower=lp.row_lower.to(**f64),
                    row_upper=lp.row_upper.to(**f64), c0=float(c0), shape=(m, n))


def _inv_sqrt(v: torch.Tensor) -> torch.Tensor:
    """1/sqrt(v) where v > 0, 1 elsewhere (empty rows/columns are left alone)."""
    return torch.where(v > 0, torch.rsqrt(torch.where(v > 0, v, torch.ones_like(v))),
                       torch.ones_like(v))


@dataclass
class Equilibrated:
    """An LP after the diagonal scaling D1, D2 (before theta_b, theta_c), float64.

    Attributes:
        d1, d2: (m,), (n,) the row and column factors.
        row: (nnz,) int64 row of every entry of A.
        values: (nnz,) the entries of D1 A D2.
        c, col_lower, col_upper: (n,) D2 c and D2^{-1} [l_c, u_c].
        row_lower, row_upper: (m,) D1 [l_r, u_r].
        transpose: (order, crow_t) of :func:`bilevel.linalg.operators.transpose_order`, the
            column order of A's entries (A~^T is built from it).
    """

    d1: torch.Tensor
    d2: torch.Tensor
    row: torch.Tensor
    values: torch.Tensor
    c: torch.Tensor
    col_lower: torch.Tensor
    col_upper: torch.Tensor
    row_lower: torch.Tensor
    row_upper: torch.Tensor
    transpose: tuple[torch.Tensor, torch.Tensor]

    def operator(self, a: LPArrays, dtype: torch.dtype) -> LinearOperator:
        """A~ = D1 A D2 of ``a`` (the arrays this was equilibrated from) in ``dtype``, with A~^T
        built from ``transpose`` (no second sort)."""
        csr = csr_tensor(a.crow, a.col, self.values.to(dtype), a.shape)
        return LinearOperator.from_csr(csr, transpose_csr(csr, self.row, self.transpose),
                                       row=self.row)


def equilibrate(a: LPArrays, ruiz_iterations: int = 10, geometric_mean_passes: int = 0,
                pock_chambolle: bool = True) -> Equilibrated:
    """D1, D2 of the module docstring (geometric-mean, Ruiz and Pock-Chambolle passes) and the
    LP they scale, on the arrays' device, with no host sync.

    Every factor is a maximum or a sum over one row or one column of A, so for B LPs stacked
    block-diagonally (:mod:`l2o.pdhg.stack`) they are each LP's own.
    """
    if ruiz_iterations < 0 or geometric_mean_passes < 0:
        raise ValueError("scale_lp: numbers of scaling passes must be >= 0")
    f64 = torch.float64
    device = a.values.device
    m, n = a.shape
    row = csr_row_indices(a.crow, a.values.numel())
    col = a.col.long()
    vals = a.values.abs()
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
        r = _inv_sqrt(reduce(row, m, vals, "amax") * finite_or_zero(reduce_min(row, m, big)))
        vals = vals * r[row]
        big = torch.where(vals > 0, vals, torch.full_like(vals, float("inf")))
        s = _inv_sqrt(reduce(col, n, vals, "amax") * finite_or_zero(reduce_min(col, n, big)))
        vals = vals * s[col]
        d1, d2 = d1 * r, d2 * s
    for _ in range(ruiz_iterations):
        r = _inv_sqrt(reduce(row, m, vals, "amax"))
        s = _inv_sqrt(reduce(col, n, vals, "amax"))
        vals = vals * r[row] * s[col]
        d1, d2 = d1 * r, d2 * s
    transpose = transpose_order(a.col, n)
    if pock_chambolle:
        order, crow_t = transpose
        r = _inv_sqrt(torch.segment_reduce(vals, "sum", offsets=a.crow, unsafe=True))
        s = _inv_sqrt(torch.segment_reduce(vals[order], "sum", offsets=crow_t, unsafe=True))
        d1, d2 = d1 * r, d2 * s
    return Equilibrated(d1=d1, d2=d2, row=row, values=a.values * d1[row] * d2[col],
                        c=d2 * a.c, col_lower=a.col_lower / d2, col_upper=a.col_upper / d2,
                        row_lower=d1 * a.row_lower, row_upper=d1 * a.row_upper,
                        transpose=transpose)


def scale_lp(lp, *, device: torch.device, dtype: torch.dtype, ruiz_iterations: int = 10,
             geometric_mean_passes: int = 0,
             pock_chambolle: bool = True, bound_objective_rescaling: bool = True,
             timer: PhaseTimer | None = None, arrays: LPArrays | None = None) -> ScaledLP:
    """Precondition ``lp`` (an :class:`l2o.LinearProgram`) on ``device`` (see module docstring).

    The factors are computed in float64 whatever ``dtype`` is; the scaled data are then cast.
    Everything runs on ``device`` with one host sync (theta_b, theta_c).

    Args:
        arrays: ``lp_arrays(lp, device)`` when the caller already has them (else copied here).
        timer: charged the phases "to_device", "scaling" and "operator" (l2o.pdhg.profile).

    Returns:
        A :class:`ScaledLP` (minimization form: a maximization LP is negated).
    """
    timer = timer if timer is not None else PhaseTimer(False)
    a = arrays if arrays is not None else lp_arrays(lp, device)
    timer.mark("to_device")
    e = equilibrate(a, ruiz_iterations, geometric_mean_passes, pock_chambolle)
    theta_b = theta_c = 1.0
    if bound_objective_rescaling:
        norms = torch.stack([finite_bound_norm(e.row_lower, e.row_upper),
                             torch.linalg.vector_norm(e.c)])
        norm_b, norm_c = norms.tolist()                     # the setup's one host sync
        theta_b, theta_c = 1.0 / (1.0 + norm_b), 1.0 / (1.0 + norm_c)
    timer.mark("scaling")
    op = e.operator(a, dtype)
    timer.mark("operator")
    cast = lambda t: t.to(dtype)
    return ScaledLP(op=op, c=cast(theta_c * e.c), col_lower=cast(theta_b * e.col_lower),
                    col_upper=cast(theta_b * e.col_upper), row_lower=cast(theta_b * e.row_lower),
                    row_upper=cast(theta_b * e.row_upper), row_scale=cast(e.d1),
                    col_scale=cast(e.d2), bound_scale=theta_b, objective_scale=theta_c,
                    orig_c=cast(a.c), orig_col_lower=cast(a.col_lower),
                    orig_col_upper=cast(a.col_upper), orig_row_lower=cast(a.row_lower),
                    orig_row_upper=cast(a.row_upper), c0=a.c0)
