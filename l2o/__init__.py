"""l2o: learning to optimize linear programs on PyTorch and GPUs.

Public names are re-exported from the subpackages (each keeps its own ``__all__``):
``LinearProgram, read_lp, write_lp`` (:mod:`l2o.lp`), ``solve_lp, LPResult, LPStatus``
(:mod:`l2o.pdhg`), ``LPLayer, fenchel_young_loss`` (:mod:`l2o.diff`). Subpackages and names load on first use (``import l2o`` does not import
torch; ``l2o.datasets.generate(...)`` after it works).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._lazy import make_lazy

__version__ = "0.1.0"

# The subpackages whose ``__all__`` is re-exported here, in this order.
_REEXPORTED = ("lp", "pdhg", "diff")
_SUBMODULES = ("cli", "datasets", "device", "diff", "lp", "models", "net", "pdhg", "training")


def _reexported(name: str) -> Any:
    if name == "__all__":
        return [n for sub in _REEXPORTED for n in _module(sub).__all__]
    if not name.startswith("_"):  # probes of dunders (copy, pickle, ...) must not load torch
        for sub in _REEXPORTED:
            module = _module(sub)
            if name in module.__all__:
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _module(sub: str):
    return importlib.import_module(f"{__name__}.{sub}")


make_lazy(__name__, submodules=_SUBMODULES, fallback=_reexported)
