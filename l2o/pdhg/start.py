"""The starting point of a solve: the warm start as given, checked, and in the scaled space.

``solve_lp(..., warm_start=...)`` takes (x, y) (either may be None: zeros), an
:class:`l2o.LPResult`, or anything that iterates to (x, y) (a PDHG-Net ``WarmStart``).  x, y
are of the unscaled LP, y in the minimization-form sign convention of LPResult.  The start is
the initial iterate and the first Halpern anchor.
"""

from __future__ import annotations

from typing import Any

import torch

from l2o.lp.result import LPResult

from .prepare import PreparedLP

__all__ = ["scaled_start", "warm_start_vectors"]


def warm_start_vectors(lp, warm_start: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (n,), y (m,)) float64 of ``warm_start`` (module docstring), where they lie.

    A start already on the solve's device needs no host round trip, so the tensors are not moved.

    Raises:
        ValueError: wrong shapes, or nan/inf entries.
    """
    n, m = lp.num_cols, lp.num_rows
    if warm_start is None:
        return torch.zeros(n, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)
    if isinstance(warm_start, LPResult):
        x, y = warm_start.x, warm_start.y
    else:
        x, y = warm_start
    x = torch.zeros(n, dtype=torch.float64) if x is None else torch.as_tensor(x).double()
    y = torch.zeros(m, dtype=torch.float64) if y is None else torch.as_tensor(y).double()
    if x.shape != (n,) or y.shape != (m,):
        raise ValueError(f"solve_lp: warm start needs x of shape ({n},) and y of shape ({m},), "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        raise ValueError("solve_lp: warm start contains nan/inf")
    return x, y


def scaled_start(prepared: PreparedLP, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x~, y~) on the prepared device: scaled, x projected onto the column bounds and y onto
    the dual signs its rows allow (a dual start with the wrong signs is projected like x)."""
    p, t = prepared.scaled, prepared.termination
    dev, dtype = prepared.device, prepared.dtype
    x0 = torch.clamp(p.scale_primal(x.to(dev, dtype)), p.col_lower, p.col_upper)
    y0 = torch.clamp(p.scale_dual(y.to(dev, dtype)), t.dual_rec_lower, t.dual_rec_upper)
    return x0, y0
