"""l2o.datasets.build / store: labelled dataset build (vs HiGHS), resume, exclusions, reload."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch

from l2o.cli.dataset import add_parser, run
from l2o.datasets import generate
from l2o.datasets.build import build_dataset
from l2o.datasets.store import LPDataset, load_record, read_manifest, record_path
from l2o.lp.reference import solve_highs
from l2o.net.graph import lp_to_graph

FAMILY = "setcover"
SIZES = {"rows": 12, "cols": 24, "density": 0.25}
COUNT = 4


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "setcover"
    report = build_dataset(FAMILY, COUNT, root, seed=10, progress=False, device="cpu", **SIZES)
    assert (report.built, report.kept, report.stored, report.excluded) == (COUNT, 0, COUNT, [])
    return root


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_labels_are_optimal_against_highs(dataset_dir):
    for i in range(COUNT):
        record = torch.load(record_path(dataset_dir, i), weights_only=True)  # plain data only
        lp = generate(FAMILY, seed=10 + i, **SIZES)
        reference = solve_highs(lp)
        assert reference.status.name == "OPTIMAL"
        assert record["status"] == "optimal" and record["seed"] == 10 + i
        assert record["objective"] == pytest.approx(reference.objective, rel=1e-6)
        x = record["x_star"]
        assert lp.objective(x) == pytest.approx(reference.objective, rel=1e-6)
        ax = lp.A @ x
        assert bool((ax >= lp.row_lower - 1e-6).all() and (ax <= lp.row_upper + 1e-6).all())
        assert bool((x >= lp.col_lower - 1e-6).all() and (x <= lp.col_upper + 1e-6).all())
        # strong duality with the stored duals: set cover rows A x >= 1 (y >= 0), 0 <= x <= 1,
        # reduced costs r = c - A^T y; dual objective 1^T y - sum_j u_j max(-r_j, 0)
        y = record["y_star"]
        r = lp.c - lp.A.t() @ y
        assert bool((y >= -1e-6).all()) and bool(torch.isinf(lp.row_upper).all())
        dual = float(lp.row_lower @ y) - float((lp.col_upper * (-r).clamp_min(0)).sum())
        assert bool((lp.col_lower == 0).all())
        assert dual == pytest.approx(reference.objective, rel=1e-6)


def test_manifest_records_the_build(dataset_dir):
    manifest = read_manifest(dataset_dir)
    assert manifest["family"] == FAMILY and manifest["count"] == COUNT
    assert manifest["options"] == dict(SIZES, max_cost=100)  # defaults filled in
    assert manifest["seeds"]["first"] == 10 and manifest["seeds"]["last"] == 13
    assert manifest["tol"] == 1e-8 and manifest["complete"] and manifest["excluded"] == []
    assert "torch" in manifest["versions"]


def test_resume_redoes_missing_truncated_and_foreign_files(dataset_dir, tmp_path):
    root = _copy(dataset_dir, tmp_path)
    record_path(root, 0).unlink()                                      # killed before writing
    data = record_path(root, 1).read_bytes()
    record_path(root, 1).write_bytes(data[: len(data) // 2])           # truncated
    torch.save({"weights": torch.zeros(3)}, record_path(root, 2))      # foreign file
    (root / ".lp_000003.pt.123.tmp").write_bytes(b"partial")           # stale temporary
    report = build_dataset(FAMILY, COUNT, root, seed=10, progress=False, device="cpu", **SIZES)
    assert (report.built, report.kept, report.redone, report.stored) == (3, 1, 2, COUNT)
    assert not list(root.glob(".*.tmp"))
    for i in range(COUNT):
        again, original = load_record(record_path(root, i)), load_record(
            record_path(dataset_dir, i))
        assert torch.equal(again["x_star"], original["x_star"])       # deterministic labels
        assert torch.equal(again["y_star"], original["y_star"])


def test_extend_and_settings_mismatch(dataset_dir, tmp_path):
    root = _copy(dataset_dir, tmp_path)
    report = build_dataset(FAMILY, COUNT + 1, root, seed=10, progress=False, device="cpu",
                           **SIZES)
    assert (report.built, report.kept, report.stored) == (1, COUNT, COUNT + 1)
    with pytest.raises(ValueError, match="other settings.*options"):
        build_dataset(FAMILY, COUNT, root, seed=10, progress=False, rows=13, cols=24,
                      density=0.25)
    with pytest.raises(ValueError, match="at least that"):
        build_dataset(FAMILY, 2, root, seed=10, progress=False, **SIZES)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        build_dataset(FAMILY, 1, foreign, progress=False, **SIZES)
    with pytest.raises(ValueError, match="unknown size option.*nodes"):
        build_dataset(FAMILY, 1, tmp_path / "x", progress=False, nodes=3)
    with pytest.raises(ValueError, match="unknown LP family"):
        build_dataset("nope", 1, tmp_path / "y", progress=False)


def test_unconverged_instances_are_excluded_not_labelled(tmp_path):
    root = tmp_path / "limited"
    with pytest.warns(UserWarning, match="excluded"):
        report = build_dataset(FAMILY, 2, root, progress=False, device="cpu",
                               iteration_limit=2, **SIZES)
    assert report.stored == 0 and [e["status"] for e in report.excluded] == ["iteration_limit"] * 2
    manifest = read_manifest(root)
    assert manifest["complete"] and [e["index"] for e in manifest["excluded"]] == [0, 1]
    assert not list(root.glob("lp_*.pt"))
    assert len(LPDataset(root)) == 0
    # a resume keeps the exclusions without solving again
    report = build_dataset(FAMILY, 2, root, progress=False, device="cpu", iteration_limit=2,
                           **SIZES)
    assert report.built == 0 and len(report.excluded) == 2


def test_batch_labels_equal_sequential_ones(dataset_dir, tmp_path):
    """--batch 3 over 4 instances (a batch of 3, then of 1): the labels meet the tolerance and
    equal the sequential build's (same optimum; x, y within the tolerance's reach)."""
    root = tmp_path / "batched"
    report = build_dataset(FAMILY, COUNT, root, seed=10, progress=False, device="cpu", batch=3,
                           **SIZES)
    assert (report.built, report.stored, report.excluded) == (COUNT, COUNT, [])
    labels = read_manifest(root)["labels"]
    assert labels["solver"] == "l2o.solve_lp_batch" and labels["batch"] == 3
    for i in range(COUNT):
        batched, sequential = (load_record(record_path(d, i)) for d in (root, dataset_dir))
        assert batched["status"] == "optimal" and max(batched["kkt"].values()) <= 1e-8
        assert batched["objective"] == pytest.approx(sequential["objective"], rel=1e-7)
        torch.testing.assert_close(batched["x_star"], sequential["x_star"], rtol=0, atol=1e-5)
        torch.testing.assert_close(batched["y_star"], sequential["y_star"], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        build_dataset(FAMILY, 1, tmp_path / "zero", progress=False, batch=0, **SIZES)


def test_lpdataset_reload(dataset_dir):
    data = LPDataset(dataset_dir, dtype=torch.float64)
    assert len(data) == COUNT and data.family == FAMILY
    for i in range(COUNT):
        graph, record = data[i], data.record(i)
        assert torch.equal(graph["var"].x_star, record["x_star"])
        assert torch.equal(graph["con"].y_star, record["y_star"])
        assert graph["var"].num_nodes == SIZES["cols"] and graph["con"].num_nodes == SIZES["rows"]
        lp, original = data.load_lp(i), generate(FAMILY, seed=10 + i, **SIZES)
        assert torch.equal(lp.A.to_dense(), original.A.to_dense())
        for key in ("c", "row_lower", "row_upper", "col_lower", "col_upper"):
            assert torch.equal(getattr(lp, key), getattr(original, key))
        assert lp.sense == original.sense and lp.c0 == original.c0
    assert data[-1]["var"].x_star.shape == (SIZES["cols"],)
    # the cached ||A|| equals the one lp_to_graph computes
    assert data[0].a_norm.item() == lp_to_graph(data.load_lp(0)).a_norm.item()
    with pytest.raises(IndexError):
        data[COUNT]
    # float32 graphs by default, PyG batching keeps the labels per node type
    from torch_geometric.loader import DataLoader
    batch = next(iter(DataLoader(LPDataset(dataset_dir), batch_size=COUNT)))
    assert batch["var"].x_star.dtype == torch.float32
    assert batch["var"].x_star.shape == (COUNT * SIZES["cols"],)
    assert batch["var"].batch.max() == COUNT - 1


def test_lpdataset_scaled_graphs(dataset_dir):
    from l2o.net import unscale_solution

    data = LPDataset(dataset_dir, dtype=torch.float64, scaling=True)
    assert not LPDataset(dataset_dir).scaling  # the default, like lp_to_graph and PDHGNet
    for i in range(COUNT):
        graph, (x_star, y_star) = data[i], data.labels(i)
        x, y = unscale_solution(graph, graph["var"].x_star, graph["con"].y_star)
        assert torch.allclose(x, x_star, rtol=1e-12, atol=1e-12)
        assert torch.allclose(y, y_star, rtol=1e-12, atol=1e-12)
        fresh = lp_to_graph(data.load_lp(i), scaling=True)
        assert graph.a_norm.item() == fresh.a_norm.item()
        assert torch.equal(graph["var"].c, fresh["var"].c)


def test_lpdataset_errors(dataset_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset directory"):
        LPDataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        LPDataset(tmp_path)
    root = _copy(dataset_dir, tmp_path)
    path = record_path(root, 2)
    path.write_bytes(path.read_bytes()[:100])
    data = LPDataset(root)
    with pytest.raises(ValueError, match="lp_000002.pt: not a readable l2o LP record"):
        data[2]
    # a pickle that would run code is refused by weights_only, never executed
    import pickle
    path.write_bytes(pickle.dumps(print, protocol=2))
    with pytest.raises(ValueError, match="lp_000002.pt"):
        data.load_lp(2)
    torch.save({"format": "l2o.lp-record", "version": 1, "shape": [2, 2]}, path)
    with pytest.raises(ValueError, match="corrupted LP record"):
        data[2]
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps(manifest | {"complete": False}))
    with pytest.raises(ValueError, match="has not finished"):
        LPDataset(root)
    assert len(LPDataset(root, partial=True)) == COUNT
    (root / "manifest.json").write_text("{ not json")
    with pytest.raises(ValueError, match="corrupted manifest"):
        LPDataset(root)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="l2o")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = _parse(["dataset", "build", "--family", "setcover", "--count", "1", "--rows", "8",
                   "--cols", "16", "--density", "0.3", "--out", str(out), "--seed", "3",
                   "--device", "cpu", "--quiet", "--batch", "2"])
    assert args.handler(args) == 0
    assert "1 of 1 instances stored" in capsys.readouterr().out
    assert read_manifest(out)["labels"]["batch"] == 2
    manifest = read_manifest(out)
    assert manifest["options"]["rows"] == 8 and manifest["options"]["density"] == 0.3
    assert manifest["seed"] == 3
    args = _parse(["dataset", "build", "--family", "setcover", "--count", "1", "--nodes", "8",
                   "--out", str(tmp_path / "bad"), "--quiet"])
    assert run(args) == 2
    assert "--nodes is not an option of family 'setcover'" in capsys.readouterr().err
    args = _parse(["dataset", "build", "--family", "setcover", "--count", "1", "--rows", "x",
                   "--out", str(tmp_path / "bad"), "--quiet"])
    assert run(args) == 2
    assert "--rows: expected a int" in capsys.readouterr().err


def test_l2o_command_line_runs_dataset_build(tmp_path):
    from l2o.cli import main

    out = tmp_path / "pagerank"
    assert main(["dataset", "build", "--family", "pagerank", "--count", "1", "--nodes", "12",
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    data = LPDataset(out)
    x_star, _ = data.labels(0)
    lp = data.load_lp(0)
    # PageRank LP: the feasible set is the PageRank vector itself (sum 1, x >= 0, rows >=)
    assert lp.num_cols == 12 and float(x_star.sum()) == pytest.approx(1.0, abs=1e-7)
    ax = lp.A @ x_star
    assert bool((ax >= lp.row_lower - 1e-7).all() and (ax <= lp.row_upper + 1e-7).all())
    assert bool((x_star >= -1e-9).all())


def _same_records(root, other, count):
    for i in range(count):
        a, b = load_record(record_path(root, i)), load_record(record_path(other, i))
        assert a.keys() == b.keys()
        for key in a.keys() - {"solve_time"}:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="the check below reaches the workers by fork")
def test_workers_generate_off_the_main_process_and_change_no_record(tmp_path, monkeypatch):
    """With workers the instances are generated (and their norms estimated) in worker
    processes, and the records are those of a build without them, bit for bit."""
    import os

    from l2o.datasets import build

    plain = tmp_path / "plain"
    build_dataset(FAMILY, 5, plain, seed=10, progress=False, device="cpu", batch=2, workers=0,
                  **SIZES)
    main_pid, generate_here = os.getpid(), build.generate

    def generate_off_main(*args, **kwargs):  # forked workers inherit this patch
        assert os.getpid() != main_pid, "an instance was generated on the main process"
        return generate_here(*args, **kwargs)

    monkeypatch.setattr(build, "generate", generate_off_main)
    pooled = tmp_path / "pooled"
    report = build_dataset(FAMILY, 5, pooled, seed=10, progress=False, device="cpu", batch=2,
                           workers=2, **SIZES)
    assert (report.built, report.stored) == (5, 5) and report.solving > 0
    _same_records(plain, pooled, 5)
    with pytest.raises(ValueError, match="workers must be a non-negative integer"):
        build_dataset(FAMILY, 1, tmp_path / "bad", progress=False, workers=-1, **SIZES)
    # a generator's error comes back from the worker, naming what is wrong
    with pytest.raises(ValueError, match="set_cover: density"):
        build_dataset(FAMILY, 1, tmp_path / "dense", progress=False, device="cpu", workers=1,
                      rows=12, cols=24, density=1.5)


def test_stopped_build_keeps_its_records_and_resumes_to_the_same_labels(tmp_path, monkeypatch):
    """A build stopped by an error in its second batch keeps the first batch's records (the
    background writes finish); the same command then redoes a corrupted one and builds the
    rest, and every record equals an uninterrupted build's."""
    from l2o.datasets import build

    whole = tmp_path / "whole"
    build_dataset(FAMILY, 5, whole, seed=10, progress=False, device="cpu", batch=2, **SIZES)
    labeller = build._labeller

    def failing_labeller(*args):
        label, batches = labeller(*args), []

        def run(lps):
            batches.append(len(lps))
            if len(batches) == 2:
                raise RuntimeError("stopped in the second batch")
            return label(lps)
        return run

    monkeypatch.setattr(build, "_labeller", failing_labeller)
    stopped = tmp_path / "stopped"
    with pytest.raises(RuntimeError, match="second batch"):
        build_dataset(FAMILY, 5, stopped, seed=10, progress=False, device="cpu", batch=2,
                      workers=1, **SIZES)
    assert sorted(p.name for p in stopped.glob("lp_*.pt")) == ["lp_000000.pt", "lp_000001.pt"]
    assert not read_manifest(stopped)["complete"]
    monkeypatch.setattr(build, "_labeller", labeller)
    data = record_path(stopped, 1).read_bytes()
    record_path(stopped, 1).write_bytes(data[: len(data) // 2])  # and one record truncated
    report = build_dataset(FAMILY, 5, stopped, seed=10, progress=False, device="cpu", batch=2,
                           workers=2, **SIZES)  # the records on disk checked by the workers
    assert (report.kept, report.redone, report.built, report.stored) == (1, 1, 4, 5)
    _same_records(whole, stopped, 5)


def test_record_writer_writes_in_order_and_raises_a_failed_write(tmp_path):
    from l2o.datasets.pipeline import RecordWriter

    with RecordWriter() as writer:
        for i in range(3):
            writer.write({"i": torch.tensor([i])}, tmp_path / f"r{i}.pt")
    assert [int(torch.load(tmp_path / f"r{i}.pt")["i"]) for i in range(3)] == [0, 1, 2]
    with pytest.raises(FileNotFoundError), RecordWriter() as writer:
        writer.write({"i": torch.tensor([0])}, tmp_path / "missing" / "r.pt")


def test_manifest_is_written_once_a_batch_not_once_an_excluded_instance(tmp_path, monkeypatch):
    """6 instances in batches of 3, all excluded (iteration limit): the manifest is written at
    the start, after each batch (listing its exclusions, so a resume skips them) and at the
    end: 4 times, not once per excluded instance (8)."""
    from l2o.datasets import build

    writes = []
    write = build.write_manifest
    monkeypatch.setattr(build, "write_manifest", lambda root, manifest: (
        writes.append(len(manifest["excluded"])), write(root, manifest)))
    with pytest.warns(UserWarning, match="excluded"):
        report = build_dataset(FAMILY, 6, tmp_path / "limited", progress=False, device="cpu",
                               iteration_limit=2, batch=3, **SIZES)
    assert len(report.excluded) == 6 and writes == [0, 3, 6, 6]
