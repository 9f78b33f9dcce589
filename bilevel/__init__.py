"""bilevel: hypergradients and bilevel optimization on PyTorch.

    import bilevel
    problem = bilevel.BilevelProblem(outer=f, inner=g, x0=x0, y0=y0)
    print(bilevel.check_hypergrad(problem))          # first: engines vs finite differences
    grad_x, info = bilevel.hypergrad(problem, x, y, method="cg")
    result = bilevel.solve(problem, method="aid-cg")
"""
from . import (
           hypergrad,  # a callable module: bilevel.hypergrad(problem, x, y, ...)
           linalg,
)
from .check import HypergradCheck, check_hypergrad
from .hypergrad import HypergradInfo, InnerNotConvergedWarning
from .inner import InnerSolveError, inner_solve
from .multiblock import BlockData, MultiBlockProblem
from .problem import BilevelProblem
from .solve import BilevelResult, Status, solve

__all__ = ["BilevelProblem", "BilevelResult", "BlockData", "HypergradCheck", "HypergradInfo",
           "InnerNotConvergedWarning", "InnerSolveError", "MultiBlockProblem", "Status",
           "check_hypergrad", "hypergrad", "inner_solve", "linalg", "solve"]
__version__ = "0.1.0"
