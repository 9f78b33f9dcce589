"""Validation of a LinearProgram (placeholder filled in by the LP I/O work)."""

from __future__ import annotations


def validate_lp(lp) -> None:
    """Raise ValueError naming the row/column for malformed data."""
    return None
