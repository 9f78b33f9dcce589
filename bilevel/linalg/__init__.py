"""Shared GPU linear algebra: second-order products, operators, solvers, spectra.

Used by :mod:`bilevel` (inner Hessians, implicit hypergradients) and by
:mod:`l2o` (sparse constraint matrices, ||A||_2 for PDHG step sizes).
"""

from . import tree
from .hvp import hvp, hvp_closure, mixed_vjp
from .operators import LinearOperator, as_operator, to_torch_csr
from .solvers import SolveInfo, cg, gmres, minres, neumann
from .spectral import power_iteration
from .tree import Tree

__all__ = ["hvp", "hvp_closure", "mixed_vjp", "LinearOperator", "as_operator", "to_torch_csr",
           "SolveInfo", "cg", "minres", "neumann", "gmres", "power_iteration", "Tree", "tree"]
