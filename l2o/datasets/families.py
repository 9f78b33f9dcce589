"""The LP families by name, with their options and help, known without importing them.

The generators need numpy, scipy, networkx and torch (seconds to import); the command line needs
only what their signatures and docstrings say (``l2o generate --help`` and ``l2o dataset build
--help`` list the families and their options, and must answer at once). So this module reads
each generator's signature and docstring from its source with :mod:`ast`, without running it.
Every option must therefore have a literal default (a number, a string, a bool); the generator
functions themselves stay the one place where the options and defaults are written.

    family      generator function
    pagerank    l2o.datasets.pagerank.pagerank
    setcover    l2o.datasets.setcover.set_cover
    auction     l2o.datasets.auction.combinatorial_auction
    facility    l2o.datasets.facility.facility_location
"""

from __future__ import annotations

import ast
import functools
import inspect
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["GENERATORS", "Family", "family", "family_names", "family_option_help",
           "family_options"]

# family -> (module of l2o.datasets, generator function)
GENERATORS = {
    "pagerank": ("pagerank", "pagerank"),
    "setcover": ("setcover", "set_cover"),
    "auction": ("auction", "combinatorial_auction"),
    "facility": ("facility", "facility_location"),
}


@dataclass(frozen=True)
class Family:
    """What a family's generator declares.

    Attributes:
        name: the family ("pagerank").
        module, function: where its generator is (``l2o.datasets.<module>.<function>``).
        options: option -> default, in signature order.
        doc: the generator's docstring (dedented, as ``inspect.getdoc`` gives it).
    """

    name: str
    module: str
    function: str
    options: dict[str, Any]
    doc: str

    @property
    def summary(self) -> str:
        """The docstring's first line."""
        return self.doc.splitlines()[0] if self.doc else self.name


def family_names() -> list[str]:
    """The families, in the order of :data:`GENERATORS`."""
    return list(GENERATORS)


@functools.cache
def family(name: str) -> Family:
    """The :class:`Family` of ``name``, read from its generator's source.

    Raises:
        ValueError: an unknown family (the message lists the valid ones).
    """
    try:
        module, function = GENERATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown LP family {name!r}; valid families: "
                         f"{', '.join(sorted(GENERATORS))}") from None
    source = (resources.files(__package__) / f"{module}.py").read_text(encoding="utf-8")
    node = next(n for n in ast.parse(source).body
                if isinstance(n, ast.FunctionDef) and n.name == function)
    arguments = node.args
    positional = arguments.posonlyargs + arguments.args
    defaults = dict(zip([a.arg for a in positional[len(positional) - len(arguments.defaults):]],
                        arguments.defaults, strict=True))
    defaults |= {a.arg: d for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults,
                                          strict=True) if d is not None}
    names = [a.arg for a in positional + arguments.kwonlyargs]
    missing = [n for n in names if n not in defaults]
    if missing:
        raise TypeError(f"{module}.{function}: option(s) {', '.join(missing)} have no default")
    options = {n: ast.literal_eval(defaults[n]) for n in names}
    return Family(name, module, function, options, inspect.cleandoc(ast.get_docstring(node) or ""))


def family_options(name: str) -> dict[str, Any]:
    """The options of a family with their defaults, in signature order.

    Example: ``family_options("pagerank") == {"nodes": 1000, "seed": 0, "degree": 3,
    "damping": 0.85, "method": "auto"}``.
    """
    return dict(family(name).options)


def family_option_help(name: str) -> dict[str, str]:
    """One-line help per option, from the ``Args:`` section of the generator's docstring.

    Example: ``family_option_help("pagerank")["damping"] == "damping factor d in (0, 1)."``
    """
    helps: dict[str, str] = {}
    current = None
    in_args = False
    for line in family(name).doc.splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        if in_args and line and not line.startswith(" "):
            break                                    # next section (Returns:, ...)
        if not in_args or not line.strip():
            continue
        head = line.strip().split(":", 1)
        if line.startswith("    ") and not line.startswith("     ") and len(head) == 2:
            names = [n.strip() for n in head[0].split(",")]
            current = names
            for option in names:
                helps[option] = head[1].strip()
        elif current:                                # continuation line
            for option in current:
                helps[option] += " " + line.strip()
    return {option: helps.get(option, "") for option in family_options(name)}
