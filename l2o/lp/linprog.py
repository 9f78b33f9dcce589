"""Conversions to and from ``scipy.optimize.linprog``'s problem form.

linprog solves

    min c^T x   s.t.  A_ub x <= b_ub,  A_eq x = b_eq,  l <= x <= u,

with default bounds (0, None) for every variable; ``bounds`` is one (l, u) pair for all
variables or one pair per variable, ``None`` meaning unbounded. A :class:`LinearProgram` row
``l_r <= a^T x <= u_r`` maps to an equality row when l_r == u_r and otherwise to up to two
``<=`` rows (``a^T x <= u_r`` and ``-a^T x <= -l_r``); rows with both bounds infinite are
dropped. linprog has no objective constant and only minimizes: a maximization LP is passed as
min -c^T x, so its optimum is ``-res.fun + c0`` (``lp.objective_from_scipy(res.fun)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from .model import LinearProgram

__all__ = ["linprog_arrays", "objective_from_scipy", "to_scipy"]


def _bounds_array(bounds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """linprog ``bounds`` -> (lower, upper) arrays with +-inf for None."""
    if bounds is None:
        bounds = (0, None)
    arr = np.array(bounds, dtype=object)
    if arr.ndim == 1 and arr.shape == (2,):
        arr = np.tile(arr, (n, 1))  # one (l, u) pair for every variable
    if arr.shape != (n, 2):
        raise ValueError(f"bounds must be one (lower, upper) pair or {n} pairs, got shape "
                         f"{arr.shape}")
    lower = np.array([-np.inf if v is None else float(v) for v in arr[:, 0]], dtype=np.float64)
    upper = np.array([np.inf if v is None else float(v) for v in arr[:, 1]], dtype=np.float64)
    return lower, upper


def _matrix(A: Any, n: int, what: str) -> sp.csr_matrix:
    if A is None:
        return sp.csr_matrix((0, n), dtype=np.float64)
    M = sp.csr_matrix(A, dtype=np.float64)
    if M.ndim != 2 or M.shape[1] != n:
        raise ValueError(f"{what} has shape {M.shape}, expected (rows, {n}) for {n} variables")
    return M


def _rhs(b: Any, rows: int, what: str) -> np.ndarray:
    if b is None:
        if rows:
            raise ValueError(f"{what} is required when its matrix has {rows} rows")
        return np.zeros(0)
    v = np.asarray(b, dtype=np.float64).reshape(-1)
    if v.size != rows:
        raise ValueError(f"{what} has {v.size} entries, expected {rows} (one per row)")
    return v


def linprog_arrays(c, A_ub=None, b_ub=None, A_eq=None, b_eq=None, bounds=None
                   ) -> dict[str, Any]:
    """The arguments of ``LinearProgram.create`` for linprog's problem (same conventions):
    ``c, A, row_lower, row_upper, col_lower, col_upper, row_names``.

    Rows are the ``A_ub`` rows (named ``ub0, ub1, ...``; bounds (-inf, b_ub]) followed by the
    ``A_eq`` rows (``eq0, ...``; bounds [b_eq, b_eq]).  ``LinearProgram.from_linprog`` builds
    the LP from them (this module does not import the model: no import cycle).
    """
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    n = c.size
    A_ub, A_eq = _matrix(A_ub, n, "A_ub"), _matrix(A_eq, n, "A_eq")
    b_ub, b_eq = _rhs(b_ub, A_ub.shape[0], "b_ub"), _rhs(b_eq, A_eq.shape[0], "b_eq")
    col_lower, col_upper = _bounds_array(bounds, n)
    return {"c": c, "A": sp.vstack([A_ub, A_eq], format="csr"),
            "row_lower": np.concatenate([np.full(b_ub.size, -np.inf), b_eq]),
            "row_upper": np.concatenate([b_ub, b_eq]),
            "col_lower": col_lower, "col_upper": col_upper,
            "row_names": [f"ub{i}" for i in range(b_ub.size)]
            + [f"eq{i}" for i in range(b_eq.size)]}


def to_scipy(lp: LinearProgram) -> dict[str, Any]:
    """linprog keyword arguments ``c, A_ub, b_ub, A_eq, b_eq, bounds`` for ``lp``.

    ``scipy.optimize.linprog(**to_scipy(lp), method="highs")`` solves ``lp`` (negated when it
    maximizes, without c0: see the module docstring). Matrices are ``scipy.sparse`` CSR;
    bounds an (n, 2) array with +-inf where unbounded. Empty blocks are None.
    """
    A = lp.scipy_matrix()
    lower = lp.row_lower.detach().cpu().double().numpy()
    upper = lp.row_upper.detach().cpu().double().numpy()
    c, _ = lp.minimize_c
    equal = lower == upper
    has_upper = ~equal & np.isfinite(upper)
    has_lower = ~equal & np.isfinite(lower)
    A_ub = sp.vstack([A[has_upper], -A[has_lower]], format="csr")
    b_ub = np.concatenate([upper[has_upper], -lower[has_lower]])
    bounds = np.stack([lp.col_lower.detach().cpu().double().numpy(),
                       lp.col_upper.detach().cpu().double().numpy()], axis=1)
    return {
        "c": c.detach().cpu().double().numpy().copy(),
        "A_ub": A_ub if A_ub.shape[0] else None,
        "b_ub": b_ub if b_ub.size else None,
        "A_eq": A[equal] if equal.any() else None,
        "b_eq": lower[equal].copy() if equal.any() else None,
        "bounds": bounds,
    }


def objective_from_scipy(lp: LinearProgram, fun: float) -> float:
    """The objective of ``lp`` (own sense, with c0) from linprog's ``res.fun``."""
    return (-fun if lp.sense == "maximize" else fun) + lp.c0
