"""The GPU PDHG solver (PDLP family)."""
from .result import LPResult, LPStatus

__all__ = ["LPResult", "LPStatus"]
