"""bilevel: hypergradients and bilevel optimization on PyTorch."""
from . import linalg

__all__ = ["linalg"]
__version__ = "0.1.0"
