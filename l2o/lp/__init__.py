"""LP model, file I/O and validation."""
from .io import read_lp, write_lp
from .model import MAXIMIZE, MINIMIZE, LinearProgram
from .validate import InvalidLPError, LPFormatError, validate_lp

__all__ = ["LinearProgram", "MINIMIZE", "MAXIMIZE", "read_lp", "write_lp", "validate_lp",
           "InvalidLPError", "LPFormatError"]
