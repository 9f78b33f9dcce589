"""bilevel: hypergradients and bilevel optimization on PyTorch.

    import bilevel
    problem = bilevel.BilevelProblem(outer=f, inner=g, x0=x0, y0=y0)
    grad_x, info = bilevel.hypergrad(problem, x, y, method="cg")
    result = bilevel.solve(problem, method="aid-cg")
"""
from . import linalg
from . import hypergrad  # a callable module: bilevel.hypergrad(problem, x, y, ...)
from .hypergrad import HypergradInfo
from .problem import BilevelProblem
from .solve import BilevelResult, Status, solve

__all__ = ["BilevelProblem", "BilevelResult", "HypergradInfo", "Status", "hypergrad", "linalg",
           "solve"]
__version__ = "0.1.0"
