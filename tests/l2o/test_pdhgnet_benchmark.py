"""benchmarks/pdhgnet.py on the CPU: its device-side graph equals ``lp_to_graph``, its PageRank
heuristic converges to networkx's PageRank, and a tiny end-to-end run writes sane JSON/CSV."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from l2o.datasets import barabasi_albert_edges, generate, pagerank
from l2o.net import CON, EDGE, VAR, PDHGNet, lp_to_graph, predict_warm_start, save_model

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("pdhgnet_bench", ROOT / "benchmarks" /
                                                  "pdhgnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()
CPU = torch.device("cpu")


@pytest.mark.parametrize("scaling", [False, True])
@pytest.mark.parametrize("family", ["setcover", "auction"])
def test_device_graph_equals_lp_to_graph(family, scaling):
    options = {"rows": 60, "cols": 120, "density": 0.1} if family == "setcover" else {
        "items": 30, "bids": 80}
    lp = generate(family, seed=3, **options)
    ref = lp_to_graph(lp, dtype=torch.float64, reverse=False, scaling=scaling)
    got = bench.device_graph(lp, device=CPU, dtype=torch.float64, scaling=scaling,
                             operator_norm=True)
    for node, keys in ((VAR, ("x", "c", "lower", "upper", "scale")),
                       (CON, ("x", "lower", "upper", "scale"))):
        for key in keys:
            torch.testing.assert_close(got[node][key], ref[node][key], rtol=1e-12, atol=0)
        assert got[node].num_nodes == ref[node].num_nodes
    assert torch.equal(got[EDGE].edge_index, ref[EDGE].edge_index)
    torch.testing.assert_close(got[EDGE].edge_attr, ref[EDGE].edge_attr, rtol=1e-12, atol=0)
    for key in ("a_norm", "c0", "maximize", "scaled"):
        torch.testing.assert_close(getattr(got, key), getattr(ref, key), rtol=1e-10, atol=0)


def test_predict_on_device_equals_the_public_api():
    torch.manual_seed(0)
    model = PDHGNet(hidden=8, layers=2, scaling=True).double().eval()
    lp = generate("auction", seed=4, items=30, bids=80)
    ours = bench.predict_on_device(model, lp, CPU)
    api = predict_warm_start(model, lp, CPU)
    torch.testing.assert_close(ours.x, api.x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.y, api.y, rtol=1e-10, atol=1e-12)
    assert ours.prediction_time > 0


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
        assert r["total_s"] >= r["solve_s"] > 0
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
    with open(out / "pdhgnet.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no model for setcover"):
        bench.main(["--device", "cpu", "--families", "setcover", "--models", str(tmp_path),
                    "--out", str(tmp_path / "out")])
