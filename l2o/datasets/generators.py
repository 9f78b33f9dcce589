"""The registry of LP instance families: ``FAMILIES`` and ``generate(family, **options)``.

Every generator is a plain function of keyword options, all with defaults (so the default's type
is the option's type, which the CLI uses to parse ``--option VALUE``), deterministic for a given
``seed``; it returns a named :class:`~l2o.lp.model.LinearProgram` with named rows and columns and
``metadata = {"family": ..., "options": {...}}``.

======================  ====================================================================
family                  options (defaults)
======================  ====================================================================
``pagerank``            nodes=1000, seed=0, degree=3, damping=0.85, method="auto"
``setcover``            rows=500, cols=1000, density=0.05, max_cost=100, seed=0
``auction``             items=100, bids=500, seed=0, add_item_prob=0.65, min_value=1.0,
                        max_value=100.0, value_deviation=0.5, additivity=0.2
``facility``            customers=100, facilities=50, ratio=5.0, seed=0
======================  ====================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from l2o.lp.model import LinearProgram

from .auction import combinatorial_auction
from .facility import facility_location
from .pagerank import pagerank
from .setcover import set_cover

__all__ = ["FAMILIES", "generate", "family_options", "family_option_help"]

FAMILIES: dict[str, Callable[..., LinearProgram]] = {
    "pagerank": pagerank,
    "setcover": set_cover,
    "auction": combinatorial_auction,
    "facility": facility_location,
}


def _family(family: str) -> Callable[..., LinearProgram]:
    try:
        return FAMILIES[family]
    except (KeyError, TypeError):
        raise ValueError(f"unknown LP family {family!r}; valid families: "
                         f"{', '.join(sorted(FAMILIES))}") from None


def family_options(family: str) -> dict[str, Any]:
    """The options of a family with their defaults, in signature order.

    Example: ``family_options("pagerank") == {"nodes": 1000, "seed": 0, "degree": 3,
    "damping": 0.85, "method": "auto"}``.
    """
    params = inspect.signature(_family(family)).parameters
    return {name: p.default for name, p in params.items()}


def family_option_help(family: str) -> dict[str, str]:
    """One-line help per option, from the ``Args:`` section of the generator's docstring.

    Example: ``family_option_help("pagerank")["damping"] == "damping factor d in (0, 1)."``
    """
    doc = inspect.getdoc(_family(family)) or ""
    helps: dict[str, str] = {}
    current = None
    in_args = False
    for line in doc.splitlines():
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
            for name in names:
                helps[name] = head[1].strip()
        elif current:                                # continuation line
            for name in current:
                helps[name] += " " + line.strip()
    return {name: helps.get(name, "") for name in family_options(family)}


def generate(family: str, **options: Any) -> LinearProgram:
    """One LP instance of ``family`` built with ``options`` (unset options take defaults).

    Raises:
        ValueError: unknown family, unknown option (the message lists the valid ones), or an
            option value the generator rejects.
    """
    generator = _family(family)
    valid = family_options(family)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for LP family {family!r}; "
                         f"valid options: {', '.join(valid)}")
    return generator(**options)
