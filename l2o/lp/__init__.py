"""LP model, file I/O, validation, bundled examples, solution files and the HiGHS reference.

* :class:`LinearProgram` (``model``), :func:`validate_lp` and its errors (``validate``);
* :func:`read_lp`, :func:`write_lp`: MPS / LP files through HiGHS (``io``);
* ``LinearProgram.from_linprog`` / ``.to_scipy`` (``linprog``);
* :func:`solve_highs`: the CPU reference solver (``reference``);
* :class:`LPResult`, :class:`LPStatus`: what every LP solve returns (``result``);
* the KKT errors, dual objective and sign bounds every part of l2o shares (``kkt``);
* :func:`lp_summary` (``summary``), :func:`load_example`, :func:`list_examples` (``examples``);
* :func:`write_solution`, :func:`read_warm_start`: solution files, JSON or HiGHS ``.sol``
  (``solution``).

The names load on first use (:mod:`l2o._lazy`), so that ``l2o.lp.examples`` is light.
"""

from l2o._lazy import make_lazy

# public name -> the module that defines it
_EXPORTS = {
    "LinearProgram": "model", "MINIMIZE": "model", "MAXIMIZE": "model",
    "read_lp": "io", "write_lp": "io",
    "validate_lp": "validate", "InvalidLPError": "validate", "LPFormatError": "validate",
    "solve_highs": "reference",
    "LPResult": "result", "LPStatus": "result",
    "lp_summary": "summary",
    "list_examples": "examples", "load_example": "examples",
    "write_solution": "solution", "read_warm_start": "solution", "SolutionFileError": "solution",
}

__all__ = list(_EXPORTS)
make_lazy(__name__, exports=_EXPORTS)
