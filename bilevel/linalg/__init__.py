"""Shared GPU linear algebra: second-order products, operators, solvers, spectra.

Used by :mod:`bilevel` (inner Hessians, implicit hypergradients) and by
:mod:`l2o` (sparse constraint matrices, ||A||_2 for PDHG step sizes).
"""

from . import tree
from .hvp import gauss_newton_closure, hvp, hvp_closure, inner_linearization, mixed_vjp
from .operators import LinearOperator, as_operator, to_torch_csr
from .solvers import SOLVERS, LinearSolver, SolveInfo, as_solver, cg, gmres, minres, neumann
from .spectral import power_iteration
from .tree import Tree

__all__ = [
           "SOLVERS",
           "LinearOperator",
           "LinearSolver",
           "SolveInfo",
           "Tree",
           "as_operator",
           "as_solver",
           "cg",
           "gauss_newton_closure",
           "gmres",
           "hvp",
           "hvp_closure",
           "inner_linearization",
           "minres",
           "mixed_vjp",
           "neumann",
           "power_iteration",
           "to_torch_csr",
           "tree",
]
