"""Two-stage solving (l2o.net.warmstart): loading models by name or path, predicting warm starts
(x in the column bounds, y with the signs of the row types), and the bundled PageRank model."""

from __future__ import annotations

import math

import pytest
import torch

import l2o
import l2o.models
from l2o.datasets import pagerank
from l2o.lp.model import LinearProgram
from l2o.net import (
    ModelNotFoundError,
    PDHGNet,
    WarmStart,
    bundled_models,
    kkt_error,
    load_model,
    predict_warm_start,
    project_dual_signs,
    save_model,
)
from l2o.training.checkpoint import CheckpointError


def tiny_model(seed: int, **kw) -> PDHGNet:
    torch.manual_seed(seed)
    return PDHGNet(hidden=4, layers=2, **kw)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A bundled-models folder holding one model "mini" (l2o.models.MODELS_DIR patched)."""
    folder = tmp_path / "models"
    folder.mkdir()
    save_model(tiny_model(0), folder / "mini.pt")
    monkeypatch.setattr(l2o.models, "MODELS_DIR", folder)
    return folder


def all_row_types_lp() -> LinearProgram:
    """min x0 - x1 + x2 s.t. one row of each type (=, >=, <=, ranged, free); columns boxed,
    lower-only, upper-only and free."""
    A = torch.tensor([[1.0, 1.0, 0.0, 1.0],
                      [1.0, 0.0, 1.0, 0.0],
                      [0.0, 1.0, 1.0, 1.0],
                      [1.0, -1.0, 0.0, 2.0],
                      [0.0, 0.0, 1.0, -1.0]], dtype=torch.float64)
    inf = math.inf
    return LinearProgram.create(
        torch.tensor([1.0, -1.0, 1.0, 0.5]), A.to_sparse_csr(),
        row_lower=torch.tensor([1.0, 0.5, -inf, -1.0, -inf]),
        row_upper=torch.tensor([1.0, inf, 3.0, 2.0, inf]),
        col_lower=torch.tensor([0.0, -1.0, -inf, -inf]),
        col_upper=torch.tensor([2.0, inf, 1.0, inf]), name="row_types")


# ---- loading -----------------------------------------------------------------------------------

def test_load_by_bundled_name_and_by_path(models_dir):
    assert bundled_models() == {"mini": models_dir / "mini.pt"}
    by_name = load_model("mini")
    by_path = load_model(models_dir / "mini.pt")
    assert same_weights(by_name, tiny_model(0)) and same_weights(by_path, tiny_model(0))
    assert not by_name.training  # eval mode


def test_a_path_wins_over_a_bundled_name(models_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_model(tiny_model(1), tmp_path / "mini")  # a file named like the bundled model
    assert same_weights(load_model("mini"), tiny_model(1))
    assert not same_weights(tiny_model(0), tiny_model(1))


def test_unknown_name_lists_the_bundled_models(models_dir, tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"'nope'.*bundled models: mini"):
        load_model("nope")
    with pytest.raises(ModelNotFoundError, match="is a directory"):
        load_model(tmp_path)
    assert issubclass(ModelNotFoundError, FileNotFoundError)


def test_corrupted_or_foreign_files_raise_checkpoint_error(models_dir, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((models_dir / "mini.pt").read_bytes()[:200])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    code = tmp_path / "code.pt"
    torch.save(torch.nn.Linear(2, 2), code)  # a pickled module: weights_only refuses it
    for path in (garbage, truncated, foreign, code):
        with pytest.raises(CheckpointError, match=str(path.name)):
            load_model(path)


def test_weights_that_do_not_fit_the_config_raise_checkpoint_error(tmp_path):
    path = tmp_path / "bad.pt"
    model = tiny_model(0)
    model.config["hidden"] = 8  # the stored config no longer matches the weights
    save_model(model, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)


# ---- prediction ----------------------------------------------------------------------------------

def test_project_dual_signs_follows_the_row_types():
    lp = all_row_types_lp()
    y = torch.tensor([-2.0, -3.0, 4.0, -5.0, 6.0])
    # = free, >= needs y >= 0, <= needs y <= 0, ranged free, free row y = 0
    assert torch.equal(project_dual_signs(lp, y), torch.tensor([-2.0, 0.0, 0.0, -5.0, 0.0]))
    assert torch.equal(project_dual_signs(lp, -y), torch.tensor([2.0, 3.0, -4.0, 5.0, 0.0]))
    with pytest.raises(ValueError, match="5 rows"):
        project_dual_signs(lp, torch.zeros(4))


@pytest.mark.parametrize("scaling", [False, True])
def test_prediction_shapes_bounds_signs_and_timings(scaling):
    lp = all_row_types_lp()
    model = tiny_model(2, scaling=scaling).double()
    ws = predict_warm_start(model, lp)
    assert isinstance(ws, WarmStart)
    assert ws.x.shape == (4,) and ws.y.shape == (5,)
    assert ws.x.dtype == ws.y.dtype == torch.float64 and ws.x.device.type == "cpu"
    assert bool(((ws.x >= lp.col_lower) & (ws.x <= lp.col_upper)).all())
    assert torch.equal(ws.y, project_dual_signs(lp, ws.y))
    assert ws.y[4] == 0.0  # free row
    # the unprojected prediction is the same up to the projections
    raw_x, raw_y = model.predict(lp)
    assert torch.allclose(ws.x, raw_x) and torch.allclose(ws.y, project_dual_signs(lp, raw_y))
    assert ws.prediction_time > 0 and ws.graph_time > 0 and ws.inference_time > 0
    assert ws.prediction_time == pytest.approx(ws.graph_time + ws.inference_time)
    # a WarmStart is accepted by solve_lp as it is and as (x, y)
    a = l2o.solve_lp(lp, device="cpu", warm_start=ws, iteration_limit=50)
    b = l2o.solve_lp(lp, device="cpu", warm_start=(ws.x, ws.y), iteration_limit=50)
    assert torch.equal(a.x, b.x) and a.iterations == b.iterations


def test_kkt_error_matches_the_solver_on_afiro():
    lp = l2o.load_example("afiro")
    res = l2o.solve_lp(lp, device="cpu", tol=1e-8)
    mine = kkt_error(lp, res.x, res.y)
    # same formulas; the solver's dual residual uses the slack of its last primal step instead
    assert mine["rel_primal_residual"] == pytest.approx(res.kkt["rel_primal_residual"],
                                                        rel=1e-6, abs=1e-14)
    assert max(mine.values()) <= 1e-7
    zero = kkt_error(lp, torch.zeros(lp.num_cols), torch.zeros(lp.num_rows))
    assert zero["rel_primal_residual"] > 1e-2  # afiro: 0.052


# ---- the bundled PageRank model -----------------------------------------------------------------

@pytest.mark.skipif("pagerank" not in bundled_models(), reason="no bundled pagerank model")
def test_bundled_pagerank_model_beats_the_cold_start():
    """On a fresh PageRank LP (a seed no training or validation instance used) the prediction's
    KKT error is below the cold start's, and the warm solve ends OPTIMAL in no more iterations."""
    torch.set_num_threads(1)
    lp = pagerank(3000, seed=987_654)
    model = load_model("pagerank")
    ws = predict_warm_start(model, lp)
    zeros = (torch.zeros(lp.num_cols, dtype=torch.float64),
             torch.zeros(lp.num_rows, dtype=torch.float64))
    predicted, cold_start = kkt_error(lp, ws.x, ws.y), kkt_error(lp, *zeros)
    assert predicted["rel_primal_residual"] < 0.1 * cold_start["rel_primal_residual"]
    warm = l2o.solve_lp(lp, device="cpu", warm_start=ws)
    cold = l2o.solve_lp(lp, device="cpu")
    assert warm.status == cold.status == l2o.LPStatus.OPTIMAL
    assert warm.iterations <= cold.iterations


# ---- the inference graph -----------------------------------------------------------------------

def assert_same_graph(a, b):
    assert a.node_types == b.node_types and a.edge_types == b.edge_types
    for key in a.node_types + a.edge_types:
        sa, sb = a[key], b[key]
        assert set(sa.keys()) == set(sb.keys()), key
        for name in sa.keys():
            va, vb = sa[name], sb[name]
            if isinstance(va, torch.Tensor):
                assert va.dtype == vb.dtype and torch.equal(va.cpu(), vb.cpu()), (key, name)
            else:
                assert va == vb, (key, name)
    for name in ("a_norm", "c0", "maximize", "scaled", "name"):
        va, vb = a[name], b[name]
        assert torch.equal(va.cpu(), vb.cpu()) if isinstance(va, torch.Tensor) else va == vb


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scaling", [False, True])
def test_inference_graph_equals_lp_to_graph(device, scaling):
    from l2o.net import lp_to_graph
    from l2o.net.warmstart import inference_graph

    for lp in (all_row_types_lp(), l2o.load_example("afiro"), pagerank(200, seed=3)):
        mine = inference_graph(lp, scaling=scaling, dtype=torch.float64, device=device)
        reference = lp_to_graph(lp, dtype=torch.float64, reverse=False, scaling=scaling)
        if device == "cpu":
            assert_same_graph(mine, reference)
        else:  # other kernels: equal up to rounding
            for store in ("var", "con"):
                for name in ("x", "lower", "upper", "scale"):
                    torch.testing.assert_close(mine[store][name].cpu(), reference[store][name],
                                               rtol=1e-12, atol=0)
            torch.testing.assert_close(mine.a_norm.cpu(), reference.a_norm, rtol=1e-3, atol=0)


# ---- one shared setup: l2o.pdhg.prepare, predict_warm_start(prepared), solve_with_model ---------

@pytest.mark.parametrize("scaling", [False, True])
def test_inference_graph_from_a_prepared_lp_equals_the_plain_one(scaling):
    """On the CPU in float64 the prepared LP's graph is the plain one (same scaling code; the
    power iteration on the prepared operator A~ with its stored transpose)."""
    from l2o.net import graph_operator
    from l2o.net.warmstart import inference_graph

    for lp in (all_row_types_lp(), l2o.load_example("afiro"), pagerank(200, seed=3)):
        prepared = l2o.pdhg.prepare(lp, "cpu")
        mine = inference_graph(prepared, scaling=scaling, dtype=torch.float64)
        plain = inference_graph(lp, scaling=scaling, dtype=torch.float64, device="cpu")
        assert_same_graph(mine, plain)
        # with scaling it carries the prepared A~, A~^T: the matrices graph_operator builds
        assert hasattr(mine, "operator_csr") == scaling
        for a, b in zip(graph_operator(mine), graph_operator(plain)):
            for part in ("crow_indices", "col_indices", "values"):
                assert torch.equal(getattr(a, part)(), getattr(b, part)()), (lp.name, part)


@pytest.mark.parametrize("model_dtype", [torch.float64, torch.float32])
def test_solve_with_model_equals_predict_then_solve(model_dtype):
    """solve_with_model = predict_warm_start + solve_lp(warm_start=...) on the CPU: the same
    start, the same iterates (bitwise: the same scaling and the same start values)."""
    torch.set_num_threads(1)
    cases = [(tiny_model(3, scaling=True), all_row_types_lp()),
             (tiny_model(4, scaling=True), l2o.load_example("afiro")),
             (tiny_model(5, scaling=False), pagerank(300, seed=11))]
    if "pagerank" in bundled_models():
        cases.append((load_model("pagerank"), pagerank(1500, seed=987_655)))
    for model, lp in cases:
        model = model.to(model_dtype)
        ws = predict_warm_start(model, lp, "cpu")
        reference = l2o.solve_lp(lp, tol=1e-6, device="cpu", warm_start=ws,
                                 iteration_limit=3000)
        result, shared = l2o.net.solve_with_model(model, lp, tol=1e-6, device="cpu",
                                                   iteration_limit=3000)
        assert torch.equal(shared.x, ws.x) and torch.equal(shared.y, ws.y), lp.name
        assert torch.equal(shared.x_device, ws.x) and shared.x.dtype == torch.float64
        assert result.status == reference.status and result.iterations == reference.iterations
        for name in ("x", "y", "reduced_costs"):
            assert torch.equal(getattr(result, name), getattr(reference, name)), (lp.name, name)
        assert result.objective == reference.objective
        # the shared setup is counted in solve_time, not in the prediction
        assert result.solve_time > 0 and shared.prediction_time > 0


def test_a_prepared_lp_reused_for_two_solves_gives_fresh_results():
    torch.set_num_threads(1)
    lp = l2o.load_example("afiro")
    prepared = l2o.pdhg.prepare(lp, "cpu")
    first = l2o.solve_lp(lp, tol=1e-8, device="cpu")
    for warm, tol in ((None, 1e-8), (first, 1e-9), (None, 1e-8)):
        fresh = l2o.solve_lp(lp, tol=tol, device="cpu", warm_start=warm)
        again = l2o.solve_lp(prepared, tol=tol, warm_start=warm)
        assert again.status == fresh.status == l2o.LPStatus.OPTIMAL
        assert again.iterations == fresh.iterations
        assert torch.equal(again.x, fresh.x) and torch.equal(again.y, fresh.y)
        assert again.solve_time >= prepared.setup_time > 0
    # profiled: the preparation's phases are reported, and the phases sum to solve_time
    profiled = l2o.solve_lp(l2o.pdhg.prepare(lp, "cpu", profile=True), profile=True)
    assert {"scaling", "termination", "iterations"} <= set(profiled.timings)
    phases = sum(v for k, v in profiled.timings.items() if k != "total")
    assert phases == pytest.approx(profiled.timings["total"], rel=1e-6)


def test_prepared_lp_errors():
    lp = l2o.load_example("afiro")
    prepared = l2o.pdhg.prepare(lp, "cpu")
    with pytest.raises(ValueError, match="lives on cpu"):
        l2o.solve_lp(prepared, device="cuda")
    with pytest.raises(ValueError, match="float64, not torch.float32"):
        l2o.solve_lp(prepared, dtype=torch.float32)
    with pytest.raises(ValueError, match="ruiz_iterations=3 differs"):
        l2o.solve_lp(prepared, ruiz_iterations=3)
    with pytest.raises(TypeError, match="options of the solve"):
        l2o.pdhg.prepare(lp, "cpu", check_every=32)
    with pytest.raises(TypeError, match="unknown option"):
        l2o.pdhg.prepare(lp, "cpu", bogus=1)
    with pytest.raises(ValueError, match="preconditioned with"):
        predict_warm_start(tiny_model(0, scaling=True), l2o.pdhg.prepare(lp, "cpu",
                                                                          ruiz_iterations=2))
    with pytest.raises(ValueError, match="lives on cpu"):
        predict_warm_start(tiny_model(0, scaling=True), prepared, device="cuda")
    with pytest.raises(TypeError, match="predicts the warm start"):
        l2o.net.solve_with_model(tiny_model(0), lp, device="cpu", warm_start=None)
    bad = l2o.load_example("afiro")
    bad.c[0] = float("nan")
    with pytest.raises(ValueError, match="objective coefficient"):
        l2o.pdhg.prepare(bad, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif("pagerank" not in bundled_models(), reason="no bundled pagerank model")
def test_solve_with_model_on_cuda_matches_the_two_calls():
    """On CUDA the graph's scaling may round differently (the solver scales small LPs on the
    CPU, atomics reorder sums): the same start up to float32 rounding, the same solution."""
    lp = pagerank(20_000, seed=987_656)
    model = load_model("pagerank", "cuda")
    ws = predict_warm_start(model, lp, "cuda")
    reference = l2o.solve_lp(lp, tol=1e-6, device="cuda", warm_start=ws)
    for _ in range(2):
        result, shared = l2o.net.solve_with_model(model, lp, tol=1e-6, device="cuda")
        assert shared.x_device.device.type == "cuda" and shared.x.device.type == "cpu"
        torch.testing.assert_close(shared.x, ws.x, rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(shared.y, ws.y, rtol=1e-4, atol=1e-9)
        assert result.status == reference.status == l2o.LPStatus.OPTIMAL
        assert abs(result.iterations - reference.iterations) <= 0.1 * reference.iterations + 64
        torch.testing.assert_close(result.x, reference.x, rtol=0, atol=1e-5)


# ---- operator_norm: checkpoints from before the option, and the bound's no-estimate path --------

def test_a_checkpoint_without_operator_norm_loads_as_estimate_and_predicts_the_same(tmp_path):
    """Checkpoints saved before ``operator_norm`` existed (no key in ``model_config``) rebuild
    the estimating model: the same weights, the same prediction bit for bit."""
    from l2o.training.checkpoint import load_checkpoint, save_checkpoint

    torch.set_num_threads(1)
    model = tiny_model(6, scaling=True)
    path = tmp_path / "old.pt"
    save_model(model, path)
    checkpoint = load_checkpoint(path)
    del checkpoint["model_config"]["operator_norm"]
    save_checkpoint(checkpoint, path)
    old = load_model(path)
    assert old.operator_norm == "estimate" and old.needs_operator_norm and same_weights(old, model)
    lp = pagerank(300, seed=5)
    a, b = predict_warm_start(old, lp, "cpu"), predict_warm_start(model, lp, "cpu")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_a_bound_model_predicts_without_a_power_iteration(monkeypatch):
    """operator_norm="bound": neither the plain nor the PreparedLP path estimates ||A~||
    (power_iteration patched to fail), and both give the prediction of a graph with a_norm 1."""
    import l2o.net.graph
    from l2o.net import unscale_solution
    from l2o.net.warmstart import inference_graph

    torch.set_num_threads(1)
    lp = l2o.load_example("afiro")
    model = tiny_model(7, scaling=True, operator_norm="bound").double()
    estimate = tiny_model(7, scaling=True).double()        # the same weights, a_norm estimated
    reference = predict_warm_start(estimate, lp, "cpu")
    graph = inference_graph(lp, scaling=True, dtype=torch.float64)
    assert float(graph.a_norm) < 0.999                      # the estimate is not the bound

    def forbidden(*args, **kwargs):
        raise AssertionError("power_iteration called")

    monkeypatch.setattr(l2o.net.graph, "power_iteration", forbidden)  # where the builder looks
    plain = predict_warm_start(model, lp, "cpu")
    shared = predict_warm_start(model, l2o.pdhg.prepare(lp, device="cpu"))
    for name in ("x", "y"):
        torch.testing.assert_close(getattr(shared, name), getattr(plain, name), rtol=1e-10,
                                   atol=1e-12)
    assert not torch.allclose(plain.y, reference.y)         # steps not divided by the estimate
    graph.a_norm = torch.ones(1, dtype=torch.float64)
    x, y = unscale_solution(graph, *estimate(graph))        # estimate model fed a_norm = 1
    torch.testing.assert_close(plain.x, torch.clamp(x, lp.col_lower, lp.col_upper))
    torch.testing.assert_close(plain.y, project_dual_signs(lp, y))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_a_bad_checkpoint(tmp_path, bad):
    """A model whose weights hold nan/inf is refused where it is loaded, naming the file and
    the parameter (it would predict nan for every LP)."""
    from l2o.net import NonFiniteWeightsError

    model = tiny_model(0)
    name, weight = next(iter(model.state_dict().items()))
    with torch.no_grad():
        weight.view(-1)[0] = bad
    path = tmp_path / "diverged.pt"
    save_model(model, path)
    with pytest.raises(NonFiniteWeightsError) as caught:
        load_model(path)
    assert isinstance(caught.value, CheckpointError) and isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "diverged.pt" in message and repr(name) in message and "1 non-finite" in message
    assert "weights_only" not in message
