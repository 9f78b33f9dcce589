"""The `l2o` command line: parsing, exit codes, info, solve (JSON, warm start), generate.

Commands run in-process through ``l2o.cli.main`` (the console script calls the same function);
one test runs ``python -m l2o`` in a subprocess.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import l2o
from l2o.cli import EXIT_CODES, main
from l2o.models import bundled_models

DATA = Path(__file__).resolve().parents[1] / "data" / "lp"
with open(DATA / "netlib" / "optimal_values.csv") as _handle:
    PUBLISHED = {row["name"]: float(row["optimal_objective"]) for row in csv.DictReader(_handle)}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``l2o ARGV``; argparse's SystemExit becomes the code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# ---- parsing and help -------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["solve", "--help"], ["info", "--help"],
                                  ["generate", "--help"], ["generate", "pagerank", "--help"]])
def test_help_lists_exit_codes(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "exit codes:" in out and "5  dual infeasible" in out


def test_solve_help_lists_examples_and_options(capsys):
    _, out, _ = run(capsys, "solve", "--help")
    for text in ("afiro", "blend", "--tol", "--time-limit", "--iter-limit", "--device",
                 "--dtype", "--warm-start", "--output", "--json", "--quiet"):
        assert text in out


def test_exit_code_table_is_complete():
    assert sorted(EXIT_CODES) == list(range(8))


@pytest.mark.parametrize("argv", [
    ["solve"],                                               # no input
    ["solve", DATA / "netlib" / "afiro.mps.gz", "--example", "afiro"],  # two inputs
    ["solve", "--example", "nope"],
    ["solve", "--example", "afiro", "--tol", "-1"],
    ["solve", "--example", "afiro", "--iter-limit", "0"],
    ["solve", "--example", "afiro", "--dtype", "float16"],
    ["solve", "--example", "afiro", "--output", "/no/such/dir/sol.json"],
    ["info"],
    ["frobnicate"],
    ["generate", "pagerank", "--nodes", "2", "--degree", "5", "--out", "x.mps"],
    ["generate", "pagerank", "--nodes", "ten", "--out", "x.mps"],
    ["generate", "pagerank", "--nodes", "10"],              # --out missing
])
def test_usage_errors_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert "error" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_gpu_is_a_usage_error(capsys):
    code, _, err = run(capsys, "solve", "--example", "afiro", "--device", "cuda")
    assert code == 2 and "no CUDA device" in err


def test_python_dash_m_l2o():
    proc = subprocess.run([sys.executable, "-m", "l2o", "info", "--help"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "bound types" in proc.stdout


def test_json_stdout_is_pure_json_in_a_real_process():
    """Reading an MPS file must print nothing on stdout: HiGHS >= 1.16 prints a banner from C++
    when constructed (in-process capsys does not see C-level writes, so a subprocess)."""
    path = Path(l2o.__file__).parent / "data" / "afiro.mps.gz"
    proc = subprocess.run([sys.executable, "-m", "l2o", "solve", str(path), "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "optimal"


# ---- info -------------------------------------------------------------------------------------

def test_info_example(capsys):
    code, out, _ = run(capsys, "info", "--example", "blend")
    assert code == 0
    assert "74 rows x 83 columns, 491 nonzeros" in out
    assert "43 equality, 31 <=, 0 >=, 0 ranged, 0 free" in out


def test_info_json_counts(capsys, tmp_path):
    path = tmp_path / "small.lp"
    path.write_text("Maximize\n obj: x + y + z + 4\nSubject To\n c1: x + y <= 4\n c2: x + z >= 1\n"
                    " c3: y + z = 2\n c4: x + y + z >= -10\nBounds\n -inf <= x <= 3\n"
                    " -2 <= y <= 6\n"
                    " z free\nEnd\n")
    code, out, _ = run(capsys, "info", path, "--json")
    assert code == 0
    info = json.loads(out)
    assert (info["rows"], info["columns"], info["nonzeros"]) == (4, 3, 9)
    assert info["sense"] == "maximize" and info["objective_constant"] == 4.0
    assert info["row_types"] == {"equality": 1, "<=": 1, ">=": 2, "ranged": 0, "free": 0}
    assert info["bound_types"] == {"fixed": 0, "boxed": 1, "lower_only": 0, "upper_only": 1,
                                   "free": 1}


@pytest.mark.parametrize("command", ["info", "solve"])
def test_bad_files_exit_3(capsys, tmp_path, command):
    code, _, err = run(capsys, command, DATA / "malformed" / "garbage.mps")
    assert code == 3 and "Parser error" in err
    code, _, err = run(capsys, command, tmp_path / "missing.mps")
    assert code == 3 and "not found" in err
    nan = tmp_path / "nan.lp"
    nan.write_text("Minimize\n obj: nan x + y\nSubject To\n c1: x + y >= 1\nEnd\n")
    code, _, err = run(capsys, command, nan)
    assert code == 3 and "NaN" in err and "nan.lp" in err


# ---- solve ------------------------------------------------------------------------------------

def test_solve_write_and_warm_start_round_trip(capsys, tmp_path):
    sol = tmp_path / "afiro.json"
    code, out, _ = run(capsys, "solve", "--example", "afiro", "--device", "cpu", "--output", sol)
    assert code == 0
    assert "optimal" in out and "published optimum" in out
    data = json.loads(sol.read_text())
    assert set(data) >= {"status", "objective", "dual_objective", "iterations", "solve_time",
                         "kkt", "x", "y"}
    assert data["status"] == "optimal"
    assert data["objective"] == pytest.approx(PUBLISHED["afiro"], rel=1e-3)
    assert len(data["x"]) == 32 and "X01" in data["x"] and len(data["y"]) == 27
    assert max(data["kkt"].values()) <= 1e-4
    # the x in the file is the solver's x: the objective recomputes from it
    lp = l2o.load_example("afiro")
    x = torch.tensor([data["x"][name] for name in lp.col_names], dtype=torch.float64)
    assert lp.objective(x) == pytest.approx(data["objective"], rel=1e-12)

    code, out, _ = run(capsys, "solve", "--example", "afiro", "--device", "cpu", "--warm-start",
                       sol, "--json")
    assert code == 0
    warm = json.loads(out)  # --json: stdout is exactly one JSON object
    assert warm["status"] == "optimal"
    assert warm["iterations"] < data["iterations"] and warm["iterations"] <= 64
    assert warm["objective"] == pytest.approx(PUBLISHED["afiro"], rel=1e-3)


def test_warm_start_errors_exit_3(capsys, tmp_path):
    sol = tmp_path / "sol.json"
    sol.write_text(json.dumps({"x": {"X01": 1.0}, "y": None}))
    code, _, err = run(capsys, "solve", "--example", "afiro", "--warm-start", sol, "-q")
    assert code == 3 and "31 missing" in err and "'X02'" in err
    sol.write_text("{not json")
    code, _, err = run(capsys, "solve", "--example", "afiro", "--warm-start", sol, "-q")
    assert code == 3 and "not a JSON solution file" in err
    lp = l2o.load_example("afiro")
    sol.write_text(json.dumps({"x": {name: "a" for name in lp.col_names}}))
    code, _, err = run(capsys, "solve", "--example", "afiro", "--warm-start", sol, "-q")
    assert code == 3 and "is not a finite number" in err
    code, _, err = run(capsys, "solve", "--example", "afiro", "--warm-start", tmp_path / "no.json")
    assert code == 3 and "not found" in err


def test_primal_infeasible_exit_4(capsys):
    code, out, _ = run(capsys, "solve", DATA / "infeasible" / "galenet.mps", "--device", "cpu",
                       "--json")
    assert code == 4 and json.loads(out)["status"] == "primal_infeasible"


def test_unbounded_gas11_exit_5(capsys):
    code, out, _ = run(capsys, "solve", DATA / "unbounded" / "gas11.mps", "--device", "cpu",
                       "--quiet")
    assert code == 5 and out.startswith("dual_infeasible")


@pytest.mark.parametrize("limit, status", [(["--iter-limit", "10"], "iteration_limit"),
                                           (["--time-limit", "1e-9"], "time_limit")])
def test_limits_exit_6(capsys, limit, status):
    code, out, _ = run(capsys, "solve", "--example", "sc50a", "--device", "cpu", "--json", *limit)
    assert code == 6
    data = json.loads(out)
    assert data["status"] == status and len(data["x"]) == 48


def test_solve_maximization_file_with_constant(capsys, tmp_path):
    """The CLI reports the LP's own objective (maximized, constant included)."""
    path = tmp_path / "max.lp"
    path.write_text("Maximize\n obj: 3 x + 2 y - z + 7\nSubject To\n c1: x + y <= 4\n"
                    " c2: x + z >= 1\n c3: y - z >= -1\nBounds\n x <= 3\n -2 <= y <= 6\n"
                    " z free\nEnd\n")
    code, out, _ = run(capsys, "solve", path, "--device", "cpu", "--tol", "1e-8", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["objective"] == pytest.approx(20.0, rel=1e-6)  # by hand: x=3, y=1, z=-2
    assert data["x"]["x"] == pytest.approx(3.0, abs=1e-5)


def test_quiet_prints_one_line(capsys):
    code, out, err = run(capsys, "solve", "--example", "afiro", "--device", "cpu", "-q")
    assert code == 0 and len(out.strip().splitlines()) == 1 and out.startswith("optimal")
    assert err == ""


def test_progress_hook_receives_checks(capsys, monkeypatch):
    """Without --quiet/--json the solver gets a progress callable; on a non-terminal it
    prints a line only every few seconds, so here the table alone is shown."""
    seen = []
    real = l2o.solve_lp

    def spy(lp, **kwargs):
        assert callable(kwargs["progress"])
        original = kwargs["progress"]
        kwargs["progress"] = lambda info: (seen.append(info), original(info))
        return real(lp, **kwargs)

    monkeypatch.setattr(l2o, "solve_lp", spy)
    code, out, _ = run(capsys, "solve", "--example", "afiro", "--device", "cpu")
    assert code == 0 and seen
    assert set(seen[-1]) >= {"iteration", "rel_primal_residual", "rel_dual_residual", "rel_gap",
                             "elapsed"}
    assert str(seen[-1]["iteration"]) in out  # the summary's iteration count


def test_progress_lines_when_not_a_terminal(capsys, monkeypatch):
    from l2o import cli

    monkeypatch.setattr(cli.solve._Progress, "LOG_EVERY", 0.0)
    code, _, err = run(capsys, "solve", "--example", "afiro", "--device", "cpu")
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("iteration ")]
    assert lines and "primal" in lines[-1] and "gap" in lines[-1]


def test_train_and_dataset_commands_are_wired(capsys):
    for argv in (["train", "--help"], ["dataset", "build", "--help"]):
        code, out, err = run(capsys, *argv)
        assert code == 0 and "usage: l2o" in out, err
    _, out, _ = run(capsys, "--help")
    assert "train" in out and "dataset" in out


# ---- generate ---------------------------------------------------------------------------------

def test_generate_pagerank(capsys, tmp_path):
    out_file = tmp_path / "pr.mps.gz"
    code, out, _ = run(capsys, "generate", "pagerank", "--nodes", "200", "--seed", "3",
                       "--out", out_file)
    assert code == 0 and "201 rows x 200 columns" in out
    lp = l2o.read_lp(out_file)
    direct = l2o.datasets.generate("pagerank", nodes=200, seed=3)
    assert (lp.num_rows, lp.num_cols, lp.nnz) == (direct.num_rows, direct.num_cols, direct.nnz)
    assert lp.row_names == direct.row_names and lp.col_names == direct.col_names
    # the written file is the same LP (15 significant digits)
    assert torch.allclose(lp.A.to_dense(), direct.A.to_dense(), rtol=1e-14, atol=0)
    assert torch.equal(lp.row_lower, direct.row_lower) or torch.allclose(
        lp.row_lower, direct.row_lower, rtol=1e-14, atol=0)


# ---- commands of other modules ----------------------------------------------------------------

def test_plugin_commands(capsys, monkeypatch):
    """A module in PLUGINS adds its own subcommand; absent modules are skipped."""
    import types

    from l2o import cli

    plugin = types.ModuleType("fake_l2o_plugin")

    def add_cli_commands(commands):
        hello = commands.add_parser("hello", help="say hello")
        hello.add_argument("--code", type=int, default=0)
        hello.set_defaults(handler=lambda args: print("hello") or args.code)

    plugin.add_cli_commands = add_cli_commands
    monkeypatch.setitem(sys.modules, "fake_l2o_plugin", plugin)
    monkeypatch.setattr(cli, "PLUGINS", ("fake_l2o_plugin", "no_such_l2o_plugin:f",
                                         "l2o.no_such_module"))
    code, out, err = run(capsys, "hello", "--code", "4")
    assert (code, out.strip(), err) == (4, "hello", "")
    code, out, _ = run(capsys, "info", "--example", "afiro", "--json")
    assert code == 0 and json.loads(out)["rows"] == 27


def test_broken_plugin_warns_and_other_commands_work(capsys, monkeypatch):
    import types

    from l2o import cli

    broken = types.ModuleType("l2o.tests_broken_plugin")

    def add_cli_commands(commands):
        raise RuntimeError("bug in the plugin")

    broken.add_cli_commands = add_cli_commands
    monkeypatch.setitem(sys.modules, "l2o.tests_broken_plugin", broken)
    monkeypatch.setattr(cli, "PLUGINS", ("l2o.tests_broken_plugin:add_cli_commands",))
    code, out, err = run(capsys, "info", "--example", "afiro", "--json")
    assert code == 0 and json.loads(out)["columns"] == 32
    assert "commands of l2o.tests_broken_plugin unavailable: RuntimeError: bug" in err


# ---- solve --model (two-stage solving) ---------------------------------------------------------

@pytest.fixture
def pagerank_file(tmp_path):
    """A small PageRank LP file and a tiny untrained PDHG-Net checkpoint."""
    from l2o.datasets import pagerank
    from l2o.net import PDHGNet, save_model

    path = tmp_path / "pr.mps.gz"
    l2o.write_lp(pagerank(300, seed=11), path)
    torch.manual_seed(0)
    save_model(PDHGNet(hidden=4, layers=2, scaling=True), tmp_path / "tiny.pt")
    return path


def test_solve_model_json_keys(capsys, pagerank_file):
    model = pagerank_file.parent / "tiny.pt"
    code, out, err = run(capsys, "solve", pagerank_file, "--model", model, "--device", "cpu",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "optimal"
    warm = data["warm_start"]
    assert warm["model"] == str(model) and warm["path"] == str(model)
    assert set(warm["initial_kkt"]) == {"rel_primal_residual", "rel_dual_residual", "rel_gap"}
    assert warm["prediction_time"] == pytest.approx(warm["graph_time"] + warm["inference_time"])
    assert data["total_time"] == pytest.approx(warm["prediction_time"] + data["solve_time"])
    assert "cold" not in data and "speedup" not in data


def test_solve_model_is_the_two_stage_solve_of_the_api(capsys, pagerank_file):
    """`l2o solve --model` = predict_warm_start + solve_lp(warm_start=...) (it runs them with one
    shared setup, l2o.net.solve_with_model): the same iterations, objective and solution."""
    from l2o.net import kkt_error, load_model, predict_warm_start

    model_path = pagerank_file.parent / "tiny.pt"
    code, out, err = run(capsys, "solve", pagerank_file, "--model", model_path, "--device",
                         "cpu", "--json", "--tol", "1e-6")
    assert code == 0, err
    data = json.loads(out)
    lp = l2o.read_lp(pagerank_file)
    model = load_model(model_path)
    ws = predict_warm_start(model, lp, "cpu")
    reference = l2o.solve_lp(lp, tol=1e-6, device="cpu", warm_start=ws)
    assert data["iterations"] == reference.iterations
    assert data["objective"] == pytest.approx(reference.objective, rel=1e-12)
    x = torch.tensor([data["x"][name] for name in lp.col_names], dtype=torch.float64)
    torch.testing.assert_close(x, reference.x, rtol=1e-12, atol=1e-15)
    start = data["warm_start"]["initial_kkt"]
    for key, value in kkt_error(lp, ws.x, ws.y).items():
        assert start[key] == pytest.approx(value, rel=1e-12)


def test_solve_model_compare_cold(capsys, pagerank_file):
    model = pagerank_file.parent / "tiny.pt"
    code, out, _ = run(capsys, "solve", pagerank_file, "--model", model, "--device", "cpu",
                       "--json", "--compare-cold")
    assert code == 0
    data = json.loads(out)
    cold = data["cold"]
    assert cold["status"] == "optimal" and cold["iterations"] >= 1
    # the cold solve is the plain solve of the same LP with the same options
    code, out, _ = run(capsys, "solve", pagerank_file, "--device", "cpu", "--json")
    assert json.loads(out)["iterations"] == cold["iterations"]
    assert data["speedup"] == pytest.approx(cold["solve_time"] / data["total_time"])
    code, out, _ = run(capsys, "solve", pagerank_file, "--model", model, "--device", "cpu",
                       "--compare-cold")
    assert code == 0
    for text in ("warm start", "prediction", "total time", "cold start", "speedup"):
        assert text in out
    code, out, _ = run(capsys, "solve", pagerank_file, "--model", model, "--device", "cpu",
                       "--compare-cold", "-q")
    assert code == 0 and len(out.strip().splitlines()) == 1 and "cold start: optimal" in out


def test_solve_model_errors(capsys, pagerank_file, tmp_path):
    code, _, err = run(capsys, "solve", pagerank_file, "--model", "no_such_model", "-q")
    assert code == 2 and "'no_such_model'" in err and "bundled models:" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    code, _, err = run(capsys, "solve", pagerank_file, "--model", bad, "-q")
    assert code == 3 and "bad.pt" in err and "not a readable l2o checkpoint" in err
    from l2o.net import PDHGNet, save_model

    model = PDHGNet(hidden=4, layers=2)  # a model whose training diverged: a nan weight
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    save_model(model, tmp_path / "nan.pt")
    code, out, err = run(capsys, "solve", pagerank_file, "--model", tmp_path / "nan.pt", "-q")
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "nan.pt" in err and "non-finite" in err and "Traceback" not in err
    code, _, err = run(capsys, "solve", pagerank_file, "--model", tmp_path / "tiny.pt",
                       "--warm-start", tmp_path / "sol.json", "-q")
    assert code == 2 and "exclude each other" in err
    code, _, err = run(capsys, "solve", pagerank_file, "--compare-cold", "-q")
    assert code == 2 and "--compare-cold needs --model" in err


def test_solve_help_documents_model(capsys):
    _, out, _ = run(capsys, "solve", "--help")
    assert "--model" in out and "--compare-cold" in out
    for name in bundled_models():
        assert name in out


@pytest.mark.skipif("pagerank" not in bundled_models(), reason="no bundled pagerank model")
def test_solve_bundled_pagerank_model(capsys, tmp_path):
    """`l2o solve FILE --model pagerank` on a fresh PageRank LP (a seed training never used)."""
    from l2o.datasets import pagerank

    path = tmp_path / "pr.mps.gz"
    l2o.write_lp(pagerank(2000, seed=424_242), path)
    code, out, err = run(capsys, "solve", path, "--model", "pagerank", "--device", "cpu",
                         "--json", "--compare-cold")
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == data["cold"]["status"] == "optimal"
    assert data["iterations"] <= data["cold"]["iterations"]
    assert data["warm_start"]["path"].endswith("pagerank.pt")


# ---- input honesty: files read as another LP, bad output paths, a closed stdout -------------------

_SMALL_MPS = ("NAME SMALL\nROWS\n N  COST\n G  R1\nCOLUMNS\n    X1  COST  1.0  R1  1.0\n"
              "    X2  COST  2.0  R1  1.0\nRHS\n    RHS  R1  1.0\nENDATA\n")


@pytest.mark.parametrize("name, text, message", [
    ("dup.mps", _SMALL_MPS.replace("RHS\n", "    X1  COST  3.0  R1  1.0\nRHS\n"),
     'names repeat.*"X1"'),
    ("qp.mps", _SMALL_MPS.replace("ENDATA", "QUADOBJ\n    X1  X1  2.0\nENDATA"),
     "quadratic objective"),
    ("cut.mps.gz", None, "damaged gzip file"),
])
def test_files_read_as_another_lp_exit_3(capsys, tmp_path, name, text, message):
    import re

    path = tmp_path / name
    if text is None:  # a truncated download
        data = (DATA / "netlib" / "afiro.mps.gz").read_bytes()
        path.write_bytes(data[:len(data) // 2])
    else:
        path.write_text(text)
    code, out, err = run(capsys, "solve", path, "--device", "cpu", "-q")
    assert code == 3 and re.search(message, err) and "Traceback" not in err and out == ""


def test_output_path_checked_before_the_solve(capsys, tmp_path):
    code, out, err = run(capsys, "solve", "--example", "afiro", "--output", tmp_path)
    assert code == 2 and "is a directory" in err and out == ""
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "solve", "--example", "afiro", "--output", blocker / "sol.json")
    assert code == 2 and "does not exist" in err


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root may write anywhere")
def test_unwritable_output_is_a_usage_error(capsys, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = run(capsys, "solve", "--example", "afiro", "--output", folder / "s.json")
    finally:
        folder.chmod(0o700)
    assert code == 2 and "not writable" in err


def test_closed_stdout_exits_quietly():
    """`l2o solve --json | head`: the reader is gone before the JSON is written."""
    proc = subprocess.Popen([sys.executable, "-m", "l2o", "solve", "--example", "afiro",
                             "--device", "cpu", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141 and err == b"", err.decode()


def test_solve_writes_and_warm_starts_from_highs_solution_files(capsys, tmp_path):
    import highspy

    sol = tmp_path / "afiro.sol"
    code, out, _ = run(capsys, "solve", "--example", "afiro", "--device", "cpu", "--output", sol)
    assert code == 0 and f"solution written to {sol}" in out
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.readModel(str(Path(l2o.__file__).parent / "data" / "afiro.mps.gz"))
    assert highs.readSolution(str(sol), 0) == highspy.HighsStatus.kOk
    x = torch.tensor(list(highs.getSolution().col_value), dtype=torch.float64)
    assert l2o.load_example("afiro").objective(x) == pytest.approx(PUBLISHED["afiro"], rel=1e-3)

    run(capsys, "solve", "--example", "afiro", "--device", "cpu", "--output", tmp_path / "a.json")
    starts = {}
    for start in (sol, tmp_path / "a.json"):
        code, out, _ = run(capsys, "solve", "--example", "afiro", "--device", "cpu",
                           "--warm-start", start, "--json")
        starts[start.suffix] = json.loads(out)
        assert code == 0
    assert starts[".sol"]["iterations"] == starts[".json"]["iterations"] <= 64

    code, _, err = run(capsys, "solve", "--example", "sc50a", "--warm-start", sol, "-q")
    assert code == 3 and "not a HiGHS solution file of this LP" in err


# ---- --reproducible -------------------------------------------------------------------------

def _captured_solve(monkeypatch) -> list[dict]:
    """solve_lp's keyword arguments per call; the solve itself runs on the CPU."""
    calls, real = [], l2o.solve_lp

    def spy(lp, **kwargs):
        calls.append(dict(kwargs))
        return real(lp, **{**kwargs, "device": "cpu"})

    monkeypatch.setattr(l2o, "solve_lp", spy)
    return calls


def test_reproducible_is_passed_to_solve_lp(capsys, monkeypatch):
    calls = _captured_solve(monkeypatch)
    code, _, _ = run(capsys, "solve", "--example", "afiro", "--device", "cpu", "--reproducible",
                     "--presolve", "gpu", "-q")
    assert code == 0 and calls[0]["reproducible"] is True and calls[0]["presolve"] == "gpu"
    code, _, _ = run(capsys, "solve", "--example", "afiro", "--device", "cpu", "-q")
    assert code == 0 and "reproducible" not in calls[1]


def test_reproducible_with_a_model_on_a_gpu_is_a_usage_error(capsys, monkeypatch):
    from l2o.cli import solve as solve_command

    monkeypatch.setattr(solve_command, "device", lambda name: torch.device("cuda"))
    calls = _captured_solve(monkeypatch)
    code, _, err = run(capsys, "solve", "--example", "afiro", "--reproducible", "--model",
                       "pagerank")
    assert code == 2 and "--reproducible" in err and "--model" in err and not calls
