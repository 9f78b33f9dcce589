"""benchmarks/pdhgnet_ortools.py: starts reach OR-Tools PDLP (in its own process) with the signs
of the minimization form, and a tiny PageRank run writes sane rows. Skipped where OR-Tools does
not import (CI): point $ORTOOLS_PATH at a folder holding it (pip install --target DIR ortools)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
from _benchmarks import load_benchmark  # tests/l2o/_benchmarks.py

from l2o.datasets import generate
from l2o.lp.reference import solve_highs

ROOT = Path(__file__).resolve().parents[2]


bench = load_benchmark("pdhgnet_ortools")
ORTOOLS_PATH = os.environ.get("ORTOOLS_PATH", "/tmp/ortools_site")
needs_ortools = pytest.mark.skipif(bench.ortools_missing(ORTOOLS_PATH) is not None,
                                   reason="OR-Tools PDLP does not import (set $ORTOOLS_PATH)")


@needs_ortools
def test_optimum_as_start_needs_no_iteration_and_signs_matter():
    lp = generate("auction", items=30, bids=120, seed=9_200_000)   # a maximization
    ref = solve_highs(lp)
    results = bench.solve_pdlp(lp, {"optimum": (ref.x, ref.y), "flipped": (ref.x, -ref.y)},
                               [1e-8], ortools_path=ORTOOLS_PATH)
    by_start = {r["start"]: r for r in results}
    assert by_start["optimum"]["status"] == "OPTIMAL"
    assert by_start["optimum"]["iterations"] == 0
    # objective in minimization form: -(HiGHS's maximum)
    assert math.isclose(by_start["optimum"]["objective"], -ref.objective, rel_tol=1e-9)
    # the dual with the wrong signs is far from optimal: PDLP must iterate
    assert by_start["flipped"]["iterations"] > 0


@needs_ortools
def test_tiny_pagerank_run_writes_rows(tmp_path):
    out = tmp_path / "out"
    result = bench.main(["--families", "pagerank", "--pagerank-nodes", "300", "--tols", "1e-4",
                         "--ortools-path", ORTOOLS_PATH, "--out", str(out)])
    rows = result["rows"]
    assert {r["start"] for r in rows} == {"cold", "model", "power5"}
    for r in rows:
        assert r["status"] == "OPTIMAL" and r["seed"] >= bench.SEED_BASE
        assert r["iterations"] >= 0 and r["solve_s"] > 0
        assert math.isclose(r["total_s"], r["predict_s"] + r["solve_s"])
        assert abs(r["objective"]) < 1e-12                    # PageRank: zero objective
    cold = next(r for r in rows if r["start"] == "cold")
    assert cold["speedup"] == 1.0 and cold["predict_s"] == 0.0
    model = next(r for r in rows if r["start"] == "model")
    assert 0 < model["graph_s"] + model["inference_s"] <= model["predict_s"]
    saved = json.loads((out / "pdhgnet_ortools.json").read_text())
    assert len(saved["rows"]) == len(rows) and len(saved["summary"]) == 3
    with open(out / "pdhgnet_ortools.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_seeds_seen_in_training_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="seed-base"):
        bench.main(["--seed-base", "100", "--out", str(tmp_path)])


def test_missing_ortools_is_a_clear_error(tmp_path):
    if bench.ortools_missing(str(tmp_path)) is None:
        pytest.skip("OR-Tools imports without a path here")
    with pytest.raises(SystemExit, match="OR-Tools PDLP does not import"):
        bench.main(["--ortools-path", str(tmp_path), "--out", str(tmp_path / "out")])
