"""Where the benchmarks write by default: ``benchmarks/out/`` (git-ignored), one entry per script.

Measurements worth keeping go into ``benchmarks/RESULTS.md`` with their command, machine and
date; the raw outputs stay out of git.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"


def default_out(name: str) -> Path:
    """``benchmarks/out/<name>``: the default output folder (or file) of one benchmark script."""
    return OUT / name


def write_rows(out: str | Path, stem: str, rows: list[dict[str, Any]], **record: Any) -> None:
    """``out/<stem>.json`` ({"rows": rows, **record}) and ``out/<stem>.csv`` (one line per row,
    the columns of the first row), creating ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"rows": rows, **record}, indent=1))
    if rows:
        with open(out / f"{stem}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def append_row(out: str | Path, row: dict[str, Any]) -> None:
    """Print ``row`` as one JSON line and append it to the JSON-lines file ``out`` (its
    folder created): a run cut short keeps every row it printed."""
    line = json.dumps(row)
    print(line, flush=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as handle:
        handle.write(line + "\n")
