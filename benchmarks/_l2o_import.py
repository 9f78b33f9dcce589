"""``import l2o`` for the benchmarks, also on a machine without highspy (only file I/O needs it)."""

from __future__ import annotations

import sys
import types


def import_l2o():
    """``import l2o``; where highspy is missing (a bare GPU machine) a stub stands in for it,
    enough for annotations and enum lookups: reading MPS files then fails, solving does not."""
    try:
        import highspy  # noqa: F401
    except ImportError:
        stub = types.ModuleType("highspy")
        stub.__getattr__ = lambda name: type(name, (), {})
        sys.modules["highspy"] = stub
    import l2o
    return l2o
