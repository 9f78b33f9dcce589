"""Load a script of benchmarks/ as a module, for the tests of its CPU-checkable parts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark(script: str) -> ModuleType:
    """benchmarks/``script``.py as the module ``{script}_bench`` (registered in sys.modules:
    a dataclass of the script looks its module up there)."""
    spec = importlib.util.spec_from_file_location(f"{script}_bench",
                                                  ROOT / "benchmarks" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
