"""The GPU PDHG solver (PDLP family): ``solve_lp`` and the plain ``pdhg_step``.

Modules, one concern each: ``options`` (SolverOptions and their checks), ``prepare`` (validate,
[presolve], scale, ||A~||_2: a ``PreparedLP``), ``scaling`` (diagonal preconditioning), ``start``
(the warm start), ``iteration`` (the reflected-Halpern iteration, chunks as CUDA graphs),
``fused`` (its Triton kernels), ``statistics`` (the check's typed record), ``termination`` (KKT
terms of the unscaled LP, infeasibility certificates, and the stopping rule as a pure function),
``restart`` (the restart rule enum, its memory, the primal weight), ``finish`` (the LPResult),
``solver`` (the loop of named steps), ``method`` (``solve_lp(method="pdhg" | "highs" | "auto")``:
which solver runs), ``step`` (the plain PDHG step of the shared convention),
``profile`` (``solve_lp(..., profile=True)``'s time per phase; ``python -m l2o.pdhg LP...``),
``batch`` (``solve_lp_batch``: many LPs stacked block-diagonally, ``stack`` and
``batch_state``).
``prepare(lp, device)`` does a solve's setup once (a ``PreparedLP``) for ``solve_lp(prepared)`` and
for PDHG-Net's warm start (``l2o.net.solve_with_model``) to share.
"""
from l2o.lp.result import LPResult, LPStatus

from .batch import solve_lp_batch
from .options import SolverOptions
from .prepare import PreparedLP, prepare
from .restart import PrimalWeightParams, RestartParams, RestartRule
from .solver import solve_lp
from .step import pdhg_step

__all__ = ["LPResult", "LPStatus", "PreparedLP", "PrimalWeightParams", "RestartParams",
           "RestartRule", "SolverOptions", "pdhg_step", "prepare", "solve_lp", "solve_lp_batch"]
