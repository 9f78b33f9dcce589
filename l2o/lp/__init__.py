"""LP model, file I/O, validation and the HiGHS reference solver."""
from .io import read_lp, write_lp
from .model import MAXIMIZE, MINIMIZE, LinearProgram
from .reference import solve_highs
from .validate import InvalidLPError, LPFormatError, validate_lp

__all__ = ["LinearProgram", "MINIMIZE", "MAXIMIZE", "read_lp", "write_lp", "validate_lp",
           "InvalidLPError", "LPFormatError", "solve_highs"]
