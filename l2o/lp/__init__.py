"""LP model, file I/O, validation, bundled examples, solution files and the HiGHS reference.

* :class:`LinearProgram` (``model``), :func:`validate_lp` and its errors (``validate``);
* :func:`read_lp`, :func:`write_lp`: MPS / LP files through HiGHS (``io``);
* ``LinearProgram.from_linprog`` / ``.to_scipy`` (``linprog``);
* :func:`solve_highs`: the CPU reference solver (``reference``);
* :func:`lp_summary` (``summary``), :func:`load_example`, :func:`list_examples` (``examples``);
* :func:`write_solution`, :func:`read_warm_start`: solution files, JSON or HiGHS ``.sol``
  (``solution``).
"""
from .examples import list_examples, load_example
from .io import read_lp, write_lp
from .model import MAXIMIZE, MINIMIZE, LinearProgram
from .reference import solve_highs
from .solution import SolutionFileError, read_warm_start, write_solution
from .summary import lp_summary
from .validate import InvalidLPError, LPFormatError, validate_lp

__all__ = ["LinearProgram", "MINIMIZE", "MAXIMIZE", "read_lp", "write_lp", "validate_lp",
           "InvalidLPError", "LPFormatError", "solve_highs", "lp_summary", "list_examples",
           "load_example", "write_solution", "read_warm_start", "SolutionFileError"]
