"""LP model, file I/O and validation."""
from .model import MAXIMIZE, MINIMIZE, LinearProgram

__all__ = ["LinearProgram", "MINIMIZE", "MAXIMIZE"]
