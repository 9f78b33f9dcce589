"""Package attributes loaded on first use (PEP 562 module ``__getattr__``).

``import l2o`` must stay light: the ``l2o`` command imports it before parsing its arguments,
and ``l2o --help`` should not wait seconds for torch. So a package names its submodules and
re-exported names here, and each is imported when first read (``l2o.datasets.generate(...)``
after a bare ``import l2o`` works; ``from l2o import *`` loads them all).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["make_lazy"]


class _LazyPackage(types.ModuleType):
    """A package module whose missing attributes come from :func:`make_lazy`'s table."""

    def __getattr__(self, name: str) -> Any:
        submodules, exports, fallback = self.__dict__["_lazy_table"]
        if name in submodules:
            value = importlib.import_module(f"{self.__name__}.{name}")
        elif name in exports:
            value = getattr(importlib.import_module(f"{self.__name__}.{exports[name]}"), name)
        elif fallback is not None:
            value = fallback(name)
        else:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        setattr(self, name, value)  # the next read is a plain attribute read
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a submodule binds it on its package. Where an exported function has the
        # submodule's name (l2o.datasets.pagerank), the function keeps the name, as it would
        # after an eager ``from .pagerank import pagerank``.
        _, exports, _ = self.__dict__["_lazy_table"]
        if (isinstance(value, types.ModuleType) and exports.get(name) == name
                and value.__name__ == f"{self.__name__}.{name}"):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        submodules, exports, _ = self.__dict__["_lazy_table"]
        return sorted(set(self.__dict__) | submodules | set(exports))


def make_lazy(package: str, *, submodules: Iterable[str] = (),
              exports: Mapping[str, str] | None = None,
              fallback: Callable[[str], Any] | None = None) -> None:
    """Make the attributes of ``package`` (a ``__name__``) load on first read.

    Args:
        submodules: names of submodules read as attributes (``l2o.datasets``).
        exports: public name -> the submodule that defines it (``{"read_lp": "io"}``).
        fallback: called with any other name; returns the value or raises AttributeError.
    """
    module = sys.modules[package]
    module.__dict__["_lazy_table"] = (frozenset(submodules), dict(exports or {}), fallback)
    module.__class__ = _LazyPackage
