"""``LinearProgram``: the one LP representation every part of l2o uses.

    minimize (or maximize)  c^T x + c0
    subject to              row_lower <= A x <= row_upper
                            col_lower <= x  <= col_upper

Bounds may be infinite (-inf / +inf); an equality row has row_lower == row_upper.
Vectors are float64 CPU tensors; A is a float64 torch sparse CSR matrix (m, n).
Move to a device with :meth:`LinearProgram.to`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from bilevel.linalg.operators import csr_tensor

from .validate import validate_lp

__all__ = ["LinearProgram", "MINIMIZE", "MAXIMIZE"]

MINIMIZE = "minimize"
MAXIMIZE = "maximize"


def _vector(value: Any, n: int, what: str, fill: float | None = None) -> torch.Tensor:
    if value is None:
        if fill is None:
            raise ValueError(f"{what} is required")
        return torch.full((n,), fill, dtype=torch.float64)
    t = torch.as_tensor(np.asarray(value, dtype=np.float64) if not isinstance(value, torch.Tensor)
                        else value, dtype=torch.float64).reshape(-1).cpu()
    if t.numel() == 1 and n != 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"{what} has {t.numel()} entries, expected {n}")
    return t


def _csr(A: Any) -> torch.Tensor:
    """float64 torch CSR from torch sparse/dense or scipy sparse/numpy."""
    if isinstance(A, torch.Tensor):
        if A.layout == torch.strided:
            A = A.to_sparse_csr()
        elif A.layout != torch.sparse_csr:
            A = A.to_sparse_csr() if A.layout != torch.sparse_coo else A.coalesce().to_sparse_csr()
        return A.to(torch.float64).cpu()
    import scipy.sparse as sp
    M = sp.csr_matrix(A, dtype=np.float64)
    M.sum_duplicates()
    M.sort_indices()
    return csr_tensor(torch.from_numpy(M.indptr.astype(np.int64)),
                      torch.from_numpy(M.indices.astype(np.int64)), torch.from_numpy(M.data),
                      M.shape)


@dataclass
class LinearProgram:
    """A linear program min/max c^T x + c0 s.t. row_lower <= A x <= row_upper, col bounds.

    Attributes:
        c: (n,) objective.
        A: (m, n) constraint matrix, torch sparse CSR (float64).
        row_lower, row_upper: (m,) row activity bounds (+-inf allowed).
        col_lower, col_upper: (n,) variable bounds (+-inf allowed).
        c0: objective constant.
        sense: "minimize" or "maximize".
        row_names, col_names: names from the file (or generated r0.., x0..).
        name: instance name.
    """

    c: torch.Tensor
    A: torch.Tensor
    row_lower: torch.Tensor
    row_upper: torch.Tensor
    col_lower: torch.Tensor
    col_upper: torch.Tensor
    c0: float = 0.0
    sense: str = MINIMIZE
    row_names: list[str] | None = None
    col_names: list[str] | None = None
    name: str = ""
    metadata: dict = field(default_factory=dict)

    @classmethod
    def create(cls, c, A, row_lower=None, row_upper=None, col_lower=None, col_upper=None, *,
               c0: float = 0.0, sense: str = MINIMIZE, row_names=None, col_names=None,
               name: str = "", validate: bool = True) -> LinearProgram:
        """Build from array-likes (numpy, lists, torch, scipy sparse), with defaults
        row bounds (-inf, +inf) and column bounds [0, +inf), then validate."""
        A = _csr(A)
        m, n = A.shape
        lp = cls(c=_vector(c, n, "c"), A=A,
                 row_lower=_vector(row_lower, m, "row_lower", -np.inf),
                 row_upper=_vector(row_upper, m, "row_upper", np.inf),
                 col_lower=_vector(col_lower, n, "col_lower", 0.0),
                 col_upper=_vector(col_upper, n, "col_upper", np.inf),
                 c0=float(c0), sense=sense, row_names=row_names, col_names=col_names, name=name)
        if validate:
            validate_lp(lp)
        return lp

    @classmethod
    def from_linprog(cls, c, A_ub=None, b_ub=None, A_eq=None, b_eq=None, bounds=None, *,
                     name: str = "") -> LinearProgram:
        """From ``scipy.optimize.linprog`` arguments: min c^T x s.t. A_ub x <= b_ub,
        A_eq x = b_eq, bounds (default (0, None) per variable, None = unbounded).
        See :mod:`l2o.lp.linprog`."""
        from . import linprog  # here: scipy is imported only when needed

        return cls.create(**linprog.linprog_arrays(c, A_ub, b_ub, A_eq, b_eq, bounds), name=name)

    def to_scipy(self) -> dict:
        """Keyword arguments for ``scipy.optimize.linprog`` (``c, A_ub, b_ub, A_eq, b_eq,
        bounds``). linprog minimizes and has no constant: a maximization is passed negated;
        recover this LP's objective with :meth:`objective_from_scipy`."""
        from . import linprog

        return linprog.to_scipy(self)

    def objective_from_scipy(self, fun: float) -> float:
        """This LP's objective (own sense, with c0) from linprog's ``res.fun`` on
        :meth:`to_scipy`'s problem: ``fun + c0``, or ``-fun + c0`` for a maximization."""
        from . import linprog

        return linprog.objective_from_scipy(self, fun)

    # -- sizes ------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def num_cols(self) -> int:
        return int(self.A.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.A.values().numel())

    @property
    def minimize_c(self) -> tuple[torch.Tensor, float]:
        """(c, c0) of the equivalent minimization: negated for a maximization."""
        if self.sense == MAXIMIZE:
            return -self.c, -self.c0
        return self.c, self.c0

    def scipy_matrix(self):
        """A as a ``scipy.sparse.csr_matrix`` (float64, on the host)."""
        import scipy.sparse as sp
        A = self.A.detach().to("cpu")
        if A.layout != torch.sparse_csr:
            A = A.to_sparse_csr()
        return sp.csr_matrix((A.values().double().numpy(), A.col_indices().numpy(),
                              A.crow_indices().numpy()), shape=tuple(A.shape))

    def row_label(self, i: int) -> str:
        """Name of row i from the file, or the generated ``r{i}``."""
        return self.row_names[i] if self.row_names is not None else f"r{i}"

    def col_label(self, j: int) -> str:
        """Name of column j from the file, or the generated ``x{j}``."""
        return self.col_names[j] if self.col_names is not None else f"x{j}"

    def row_labels(self) -> list[str]:
        """All row names (generated ``r0, r1, ...`` when the LP has none)."""
        return list(self.row_names) if self.row_names is not None else [
            f"r{i}" for i in range(self.num_rows)]

    def col_labels(self) -> list[str]:
        """All column names (generated ``x0, x1, ...`` when the LP has none)."""
        return list(self.col_names) if self.col_names is not None else [
            f"x{j}" for j in range(self.num_cols)]

    def objective(self, x: torch.Tensor) -> float:
        """c^T x + c0 in the LP's own sense."""
        return float(self.c.to(x) @ x) + self.c0

    def to(self, device=None, dtype=None) -> LinearProgram:
        """A copy with every tensor moved (vectors and A); names shared."""
        move = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return replace(self, c=move(self.c), A=move(self.A), row_lower=move(self.row_lower),
                       row_upper=move(self.row_upper), col_lower=move(self.col_lower),
                       col_upper=move(self.col_upper))

    def __repr__(self) -> str:
        return (f"LinearProgram(name={self.name!r}, rows={self.num_rows}, cols={self.num_cols}, "
                f"nnz={self.nnz}, sense={self.sense})")
