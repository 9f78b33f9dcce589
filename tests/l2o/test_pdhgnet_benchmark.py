"""benchmarks/pdhgnet.py on the CPU: its PageRank heuristic converges to networkx's PageRank, a
tiny end-to-end run writes sane rows, JSON and CSV, and a missing model is a clear error."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from _benchmarks import load_benchmark  # tests/l2o/_benchmarks.py

from l2o.datasets import barabasi_albert_edges, pagerank
from l2o.net import PDHGNet, PowerIterationNet, save_model

ROOT = Path(__file__).resolve().parents[2]


bench = load_benchmark("pdhgnet")
CPU = torch.device("cpu")


def test_power_start_converges_to_networkx_pagerank():
    nodes = 300
    lp = pagerank(nodes, seed=5)
    u, v = barabasi_albert_edges(nodes, 3, seed=5)
    graph = nx.Graph()
    graph.add_nodes_from(range(nodes))
    graph.add_edges_from(zip(u.tolist(), v.tolist()))
    exact = nx.pagerank(graph, alpha=0.85, tol=1e-14, max_iter=1000)
    exact = torch.tensor([exact[i] for i in range(nodes)], dtype=torch.float64)
    x, y = bench.power_start(lp, 200, CPU)
    torch.testing.assert_close(x, exact, rtol=1e-8, atol=1e-12)
    assert torch.count_nonzero(y) == 0 and y.shape == (nodes + 1,)
    # a few iterations already sit much closer to it than the uniform vector does
    uniform, _ = bench.power_start(lp, 0, CPU)
    few, _ = bench.power_start(lp, 5, CPU)
    assert (few - exact).norm() < 0.5 * (uniform - exact).norm()


def test_tiny_run_writes_rows_json_and_csv(tmp_path):
    torch.manual_seed(0)
    models = tmp_path / "models"
    models.mkdir()
    save_model(PDHGNet(hidden=4, layers=1, scaling=True, start="zero"), tmp_path / "pr.pt")
    save_model(PDHGNet(hidden=4, layers=1, scaling=True), models / "auction.pt")
    out = tmp_path / "out"
    result = bench.main(["--device", "cpu", "--families", "pagerank", "auction",
                         "--pagerank-nodes", "200", "--sizes", "train", "--tols", "1e-4",
                         "--reps", "1", "--pagerank-model", str(tmp_path / "pr.pt"),
                         "--models", str(models), "--out", str(out)])
    rows = result["rows"]
    starts = {(r["family"], r["start"]) for r in rows}
    assert starts == {("pagerank", "cold"), ("pagerank", "model"), ("pagerank", "power5"),
                      ("auction", "cold"), ("auction", "model")}
    for r in rows:
        assert r["status"] == "OPTIMAL" and r["seed"] >= bench.BENCH_SEED
        assert r["total_s"] >= r["solve_s"] > 0 and r["floor_s"] > 0
        if r["start"] == "model":   # predict_warm_start's own split of its time
            assert 0 < r["graph_s"] + r["inference_s"] <= r["predict_s"] + 1e-3
        assert np.isclose(r["total_s"], r["predict_s"] + r["solve_s"], rtol=0.05, atol=1e-3)
        if r["start"] == "cold":
            assert r["speedup_total"] == 1.0 and r["predict_s"] < 0.01
        if r["start"] == "cold" and r["family"] == "pagerank":
            # x = 0 violates sum x = 1; with c = 0 and y = 0 there is no gap
            assert r["kkt0_rel_primal_residual"] > 0.1 and r["kkt0_rel_gap"] == 0.0
        if r["start"] == "cold" and r["family"] == "auction":
            # x = 0 is feasible for the packing rows A x <= 1; y = 0 has dual objective 0
            assert r["kkt0_rel_primal_residual"] == 0.0 and r["kkt0_rel_gap"] > 0.5
    power = next(r for r in rows if r["start"] == "power5")
    assert power["kkt0_rel_dual_residual"] == 0.0 and power["kkt0_rel_gap"] == 0.0
    assert power["kkt0_rel_primal_residual"] < 0.01
    saved = json.loads((out / "pdhgnet.json").read_text())
    assert len(saved["rows"]) == len(rows) and saved["summary"]
    assert saved["settings"]["gpu"] == "cpu" and saved["settings"]["args"]["reps"] == 1
    cold = next(s for s in saved["summary"] if s["start"] == "cold" and s["family"] == "pagerank")
    assert cold["speedup_total"] == 1.0 and cold["kkt0_rel_gap"] == 0.0
    with open(out / "pdhgnet.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_seed_base_and_several_power_starts(tmp_path):
    # the PageRank model is the unrolled power iteration (Chebyshev steps, untrained here):
    # 12 steps start much closer than 5 power iterations; seeds count from --seed-base
    save_model(PowerIterationNet(steps=12).double(), tmp_path / "pr.pt")
    result = bench.main(["--device", "cpu", "--families", "pagerank", "--pagerank-nodes", "300",
                         "--seeds", "2", "--seed-base", "9300000", "--tols", "1e-8",
                         "--reps", "1", "--power-iterations", "5", "12",
                         "--pagerank-model", str(tmp_path / "pr.pt"),
                         "--out", str(tmp_path / "out")])
    rows = result["rows"]
    assert {r["start"] for r in rows} == {"cold", "model", "power5", "power12"}
    assert {r["seed"] for r in rows} == {9_300_000, 9_300_001}
    assert result["settings"]["bench_seed"] == 9_300_000
    assert all(r["status"] == "OPTIMAL" for r in rows)
    for seed in (9_300_000, 9_300_001):
        kkt0 = {r["start"]: r["kkt0_rel_primal_residual"] for r in rows if r["seed"] == seed}
        assert kkt0["model"] < 0.1 * kkt0["power12"] < 0.1 * kkt0["power5"]
    with pytest.raises(SystemExit):
        bench.main(["--device", "cpu", "--seed-base", "4999999", "--out", str(tmp_path / "o")])


def test_reduced_start_rows(tmp_path):
    """--reduce KEEP adds the reduced-LP start: its prediction holds the reduced solves (their
    iterations and columns in the row), and the solve from it ends optimal."""
    torch.manual_seed(0)
    models = tmp_path / "models"
    models.mkdir()
    save_model(PDHGNet(hidden=4, layers=1, scaling=True), models / "auction.pt")
    result = bench.main(["--device", "cpu", "--families", "auction", "--sizes", "train",
                         "--tols", "1e-4", "--reps", "0", "--reduce", "0.5",
                         "--reduce-rounds", "1", "--reduce-screen-tol", "1e-3", "--profile",
                         "--models", str(models),
                         "--out", str(tmp_path / "out")])
    rows = {r["start"]: r for r in result["rows"]}
    assert set(rows) == {"cold", "model", "reduced0.5"}
    reduced = rows["reduced0.5"]
    assert reduced["status"] == "OPTIMAL" and reduced["reduced_status"] in ("OPTIMAL", "FALLBACK")
    assert reduced["reduced_iterations"] > 0 and reduced["reduced_columns"] <= reduced["cols"]
    assert reduced["predict_s"] > 0 and reduced["model"] == str(models / "auction.pt")
    history = json.loads(reduced["reduced_history"])
    assert reduced["reduced_solves"] == len(history) >= 1
    assert sum(h["iterations"] for h in history) == reduced["reduced_iterations"]
    assert history[0]["tol"] == 1e-3 and result["settings"]["args"]["reduce_screen_tol"] == 1e-3
    assert all(h["timings"]["total"] == pytest.approx(h["seconds"], rel=0.05) for h in history)
    assert 0 < reduced["reduced_solve_s"] < reduced["predict_s"]
    assert rows["cold"]["reduced_iterations"] is None
    assert all(r["reps"] == 1 for r in rows.values())      # --reps 0: one run, no warm-up
    assert abs(reduced["objective"] - rows["cold"]["objective"]) <= 1e-3 * abs(
        rows["cold"]["objective"])


def test_reduce_specs_per_family():
    """--reduce items: KEEP for every family, FAMILY:KEEP[:SCREEN] for one; bad ones refused."""
    assert bench.reduce_spec("0.3") == (None, 0.3, None)
    assert bench.reduce_spec("facility:0.3:1e-3") == ("facility", 0.3, 1e-3)
    assert bench.reduce_spec("setcover:0.2") == ("setcover", 0.2, None)
    for bad in ("pagerank:0.3", "0", "1.5", "auction:x", "auction:0.3:0", "a:0.3:1e-3:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.reduce_spec(bad)
    args = bench.build_parser().parse_args(["--reduce", "auction:0.3:1e-3", "setcover:0.2"])
    starts = bench.make_starts(None, "auction", object(), args, torch.device("cpu"))
    assert set(starts) == {"cold", "model", "reduced0.3"}


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no model for setcover"):
        bench.main(["--device", "cpu", "--families", "setcover", "--models", str(tmp_path),
                    "--out", str(tmp_path / "out")])


def test_default_output_is_the_git_ignored_benchmarks_out():
    out = Path(bench.build_parser().parse_args([]).out)
    assert out.parent == ROOT / "benchmarks" / "out"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "pdhgnet.json")],
                             cwd=ROOT, check=False)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, f"{out} is not git-ignored"
