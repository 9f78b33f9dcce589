"""Small LPs bundled with the package (``l2o/data``), so examples run with no data around.

``l2o solve --example afiro`` and ``l2o.lp.load_example("afiro")`` use them. Each comes with
its published optimal objective (NETLIB's readme) in ``l2o/data/examples.csv``. Listing them
imports neither torch nor HiGHS (the command line's help shows the names).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import LinearProgram

__all__ = ["Example", "list_examples", "example_path", "load_example"]


@dataclass(frozen=True)
class Example:
    name: str
    optimal_objective: float
    description: str
    path: Path


def _data_dir() -> Path:
    return Path(str(resources.files("l2o") / "data"))


def list_examples() -> dict[str, Example]:
    """The bundled LPs, by name, in the order of ``examples.csv`` (smallest first)."""
    folder = _data_dir()
    with open(folder / "examples.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {row["name"]: Example(row["name"], float(row["optimal_objective"]),
                                 row["description"], folder / f"{row['name']}.mps.gz")
            for row in rows}


def example_path(name: str) -> Path:
    """File of the bundled LP ``name``; ValueError listing the choices for an unknown name."""
    examples = list_examples()
    if name not in examples:
        raise ValueError(f"unknown example {name!r}; bundled examples: {', '.join(examples)}")
    return examples[name].path


def load_example(name: str) -> LinearProgram:
    """The bundled LP ``name`` as a :class:`LinearProgram`."""
    from .io import read_lp  # here, not above: listing the examples (l2o solve --help) is light

    return read_lp(example_path(name))
