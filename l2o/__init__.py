"""l2o: learning to optimize linear programs on PyTorch and GPUs.

Public names are re-exported from the subpackages (each keeps its own ``__all__``):
``LinearProgram, read_lp, write_lp`` (:mod:`l2o.lp`), ``solve_lp, LPResult, LPStatus``
(:mod:`l2o.pdhg`).
"""

from . import lp, pdhg
from .lp import *  # noqa: F401,F403
from .pdhg import *  # noqa: F401,F403

__all__ = [*lp.__all__, *pdhg.__all__]
__version__ = "0.1.0"
