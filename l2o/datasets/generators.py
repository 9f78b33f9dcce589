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

import importlib
from collections.abc import Callable
from typing import Any

from l2o.lp.model import LinearProgram

from .families import GENERATORS, family_option_help, family_options

__all__ = ["FAMILIES", "family_option_help", "family_options", "generate"]

# family -> its generator function (the table of l2o.datasets.families)
FAMILIES: dict[str, Callable[..., LinearProgram]] = {
    name: getattr(importlib.import_module(f"l2o.datasets.{module}"), function)
    for name, (module, function) in GENERATORS.items()
}


def generate(family: str, **options: Any) -> LinearProgram:
    """One LP instance of ``family`` built with ``options`` (unset options take defaults).

    Raises:
        ValueError: unknown family, unknown option (the message lists the valid ones), or an
            option value the generator rejects.
    """
    valid = family_options(family)  # raises on an unknown family
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for LP family {family!r}; "
                         f"valid options: {', '.join(valid)}")
    return FAMILIES[family](**options)
