"""Which solver runs ``solve_lp(lp, method=...)``: the PDHG solver or HiGHS.

    "pdhg"   the GPU PDHG solver of this package (the default)
    "highs"  HiGHS's dual simplex on the CPU (:func:`l2o.lp.solve_highs`)
    "auto"   HiGHS for LPs with fewer than :data:`AUTO_HIGHS_MAX_NNZ` nonzeros and no warm
             start, PDHG otherwise

Both return the same :class:`l2o.LPResult`.  The method is checked and resolved once, here, into
a :class:`Method`; the solver dispatches on that value.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["AUTO_HIGHS_MAX_NNZ", "Method", "choose_method"]

# method="auto" sends LPs with fewer nonzeros than this to HiGHS.  Measured on the project's
# 2-core CPU machine (shared, loaded; float64, one thread, tol 1e-4, 2026-12-03) with
#     python benchmarks/lp_method_threshold.py --device cpu --tols 1e-4 --reps 1 \
#         ../shared/data/lp/netlib/*.mps.gz ../shared/data/lp/large/{ken-11,osa-07}.mps.gz
# HiGHS was faster than CPU PDHG on every LP measured: 0.02-0.14 s against 0.13-72 s on the 20
# NETLIB LPs (83 to 3,182 nonzeros), 3.0 s against 12.1 s on ken-11 (49,058), 2.3 s against
# 10.2 s on osa-07 (143,694), so the constant is one above the largest LP measured
# (benchmarks/RESULTS.md).  On a GPU the crossover is lower: to be measured the same way with
# --device cuda.
AUTO_HIGHS_MAX_NNZ = 143_695


class Method(enum.Enum):
    """The solver of one ``solve_lp`` call."""

    PDHG = "pdhg"
    HIGHS = "highs"


def choose_method(method: Any, lp, warm_start: Any = None) -> Method:
    """The :class:`Method` for ``method`` ("pdhg", "highs", "auto" or a Method) and ``lp``.

    Raises:
        ValueError: an unknown method, or a warm start with method="highs" (HiGHS's simplex
            starts from a basis, not from a primal-dual point).
    """
    if isinstance(method, Method):
        chosen = method
    elif method == "auto":
        small = lp.nnz < AUTO_HIGHS_MAX_NNZ
        chosen = Method.HIGHS if small and warm_start is None else Method.PDHG
    else:
        try:
            chosen = Method(method)
        except ValueError:
            raise ValueError(f"solve_lp: method must be 'pdhg', 'highs' or 'auto', got "
                             f"{method!r}") from None
    if chosen is Method.HIGHS and warm_start is not None:
        raise ValueError("solve_lp: method='highs' takes no warm_start (HiGHS's simplex starts "
                         "from a basis); use method='pdhg'")
    return chosen
