"""A structural summary of an LP (what ``l2o info`` prints): sizes, row and bound types.

Row types, for l_r <= a^T x <= u_r:   equality (l = u), ``<=`` (only u finite), ``>=`` (only l
finite), ranged (both finite, l < u), free (neither finite).
Column bound types, for l_c <= x <= u_c: fixed (l = u), boxed (both finite, l < u), lower-only,
upper-only, free.
"""

from __future__ import annotations

from typing import Any

import torch

from .model import LinearProgram

__all__ = ["lp_summary"]


def _interval_types(lower: torch.Tensor, upper: torch.Tensor, names: tuple[str, ...]
                    ) -> dict[str, int]:
    has_lower, has_upper = torch.isfinite(lower), torch.isfinite(upper)
    equal = has_lower & has_upper & (lower == upper)
    masks = (equal, has_upper & ~has_lower, has_lower & ~has_upper,
             has_lower & has_upper & ~equal, ~has_lower & ~has_upper)
    return {name: int(mask.sum()) for name, mask in zip(names, masks)}


def lp_summary(lp: LinearProgram) -> dict[str, Any]:
    """Sizes and type counts of ``lp`` as a JSON-ready dict.

    Returns:
        ``{"name", "rows", "columns", "nonzeros", "density", "sense", "objective_constant",
        "objective_nonzeros", "row_types": {"equality", "<=", ">=", "ranged", "free"},
        "bound_types": {"fixed", "upper_only", "lower_only", "boxed", "free"}}``.
    """
    rows = _interval_types(lp.row_lower.cpu(), lp.row_upper.cpu(),
                           ("equality", "<=", ">=", "ranged", "free"))
    bounds = _interval_types(lp.col_lower.cpu(), lp.col_upper.cpu(),
                             ("fixed", "upper_only", "lower_only", "boxed", "free"))
    cells = lp.num_rows * lp.num_cols
    return {
        "name": lp.name,
        "rows": lp.num_rows,
        "columns": lp.num_cols,
        "nonzeros": lp.nnz,
        "density": lp.nnz / cells if cells else 0.0,
        "sense": lp.sense,
        "objective_constant": float(lp.c0),
        "objective_nonzeros": int(torch.count_nonzero(lp.c)),
        "row_types": rows,
        "bound_types": {key: bounds[key] for key in
                        ("fixed", "boxed", "lower_only", "upper_only", "free")},
    }
