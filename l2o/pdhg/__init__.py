"""The GPU PDHG solver (PDLP family): ``solve_lp`` and the plain ``pdhg_step``.

Modules, one concern each: ``scaling`` (diagonal preconditioning), ``step`` (the plain PDHG step of
the shared convention), ``restart`` (restart criteria, primal weight), ``termination`` (residuals
of the unscaled LP, infeasibility certificates), ``solver`` (the loop), ``result``, ``profile``
(``solve_lp(..., profile=True)``'s time per phase; ``python -m l2o.pdhg LP... --device cuda``).
``prepare(lp, device)`` does a solve's setup once (a ``PreparedLP``) for ``solve_lp(prepared)`` and
for PDHG-Net's warm start (``l2o.net.solve_with_model``) to share.
"""
from l2o.lp.result import LPResult, LPStatus

from .solver import PreparedLP, SolverOptions, prepare, solve_lp
from .step import pdhg_step

__all__ = ["LPResult", "LPStatus", "PreparedLP", "SolverOptions", "pdhg_step", "prepare",
           "solve_lp"]
