"""Where the benchmarks write by default: ``benchmarks/out/`` (git-ignored), one entry per script.

Measurements worth keeping go into ``benchmarks/RESULTS.md`` with their command, machine and
date; the raw outputs stay out of git.
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def default_out(name: str) -> Path:
    """``benchmarks/out/<name>``: the default output folder (or file) of one benchmark script."""
    return OUT / name
