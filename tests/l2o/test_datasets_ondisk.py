"""LPDataset / build_dataset: labelled graphs on disk, resumable builds, safe loading."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch_geometric.loader import DataLoader

from l2o.datasets import LPDataset, build_dataset, generate
from l2o.net import CON, EDGE, REVERSE_EDGE, VAR


def dual_objective(graph) -> torch.Tensor:
    """c0 + sum(l_r y+ - u_r y-) + sum(l_c r+ - u_c r-), r = c - A^T y (pdhg_math.md);
    infinite bounds meet zero parts of y / r at an optimum."""
    var, con = graph[VAR], graph[CON]
    y = con.solution.double()
    row, col = graph[EDGE].edge_index
    r = var.c.double().clone()
    r.index_add_(0, col, -graph[EDGE].edge_attr[:, 0].double() * y[row])

    def support(lower, upper, v):
        lo = torch.where(v > 0, lower.double() * v, torch.zeros_like(v))
        up = torch.where(v < 0, upper.double() * v, torch.zeros_like(v))
        return (lo.nan_to_num(0.0) + up.nan_to_num(0.0)).sum()
    return graph.c0.double() + support(con.lower, con.upper, y) + support(var.lower, var.upper, r)


def test_build_reload_labels_are_optimal_pairs(tmp_path):
    calls = []
    ds = build_dataset(tmp_path, "setcover", 3, seed=10, rows=30, cols=60, density=0.1,
                       dtype="float64", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert len(ds) == 3 and ds.family == "setcover"
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["options"] == dict(rows=30, cols=60, density=0.1, max_cost=100) and meta["seed"] == 10
    for i in range(3):
        g = ds[i]
        lp = generate("setcover", seed=10 + i, rows=30, cols=60, density=0.1)
        assert g.name == lp.name and int(g.instance) == i
        x = g[VAR].solution
        assert torch.all(x >= -1e-9) and torch.all(x <= 1 + 1e-9)
        primal = float(g[VAR].c @ x + g.c0)
        assert abs(primal - float(g.objective)) < 1e-8 * (1 + abs(primal))
        # Strong duality with the stored y: the labels are an optimal pair in the shared convention.
        assert abs(float(dual_objective(g)) - primal) < 1e-6 * (1 + abs(primal))
        assert torch.all(g[CON].solution >= -1e-9)            # A x >= 1 rows: y >= 0
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch.num_graphs == 3 and batch[VAR].solution.shape == (180,)
    assert REVERSE_EDGE not in ds[0].edge_types
    assert REVERSE_EDGE in LPDataset(tmp_path, reverse=True)[0].edge_types


def test_interrupted_build_resumes_and_settings_are_checked(tmp_path):
    build_dataset(tmp_path, "auction", 3, items=10, bids=20)
    first = (tmp_path / "graph_000001.pt").read_bytes()
    os.remove(tmp_path / "graph_000001.pt")                    # as if killed before instance 1
    with pytest.raises(ValueError, match="2 of 3 graphs built"):
        LPDataset(tmp_path)
    assert len(LPDataset(tmp_path, partial=True)) == 2
    calls = []
    ds = build_dataset(tmp_path, "auction", 3, items=10, bids=20,
                       progress=lambda done, total: calls.append(done))
    assert calls == [2, 3]                                     # only the missing one was built
    assert len(ds) == 3
    a = torch.load(tmp_path / "graph_000001.pt", weights_only=True)
    b = torch.load(__import__("io").BytesIO(first), weights_only=True)
    for store in (VAR, CON):
        for key in ("x", "solution"):
            assert torch.equal(a[store][key], b[store][key])  # same instance, same labels
    assert len(build_dataset(tmp_path, "auction", 4, items=10, bids=20)) == 4   # extends
    with pytest.raises(ValueError, match="items: 10 != 12"):
        build_dataset(tmp_path, "auction", 4, items=12, bids=20)
    with pytest.raises(ValueError, match="valid options"):
        build_dataset(tmp_path / "other", "auction", 2, size=3)
    with pytest.raises(ValueError, match="valid families"):
        build_dataset(tmp_path / "other", "tsp", 2)


def test_corrupted_and_foreign_files_give_clear_errors(tmp_path):
    build_dataset(tmp_path, "facility", 2, customers=3, facilities=2)
    (tmp_path / "graph_000000.pt").write_bytes(b"not a torch file")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "graph_000001.pt")
    ds = LPDataset(tmp_path)
    with pytest.raises(ValueError, match="graph_000000.pt: not a readable LP graph file"):
        ds[0]
    with pytest.raises(ValueError, match="graph_000001.pt: not an LP graph file"):
        ds[1]
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        LPDataset(tmp_path / "missing")
