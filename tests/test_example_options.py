"""The examples' options: ``--quick`` (a smoke run, explicit options still win) and output paths
under the current directory, never inside the installed package. (The runs themselves: the
task examples in tests/bilevel/test_examples.py; run times in the README.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import l2o

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))      # the examples import their shared examples/_quick.py


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, explicit", [
    ("linalg_tour", ["--samples", "123"]),
    ("hyperparameter_tuning", ["--steps", "3"]),
    ("data_cleaning", ["--steps", "3"]),
    ("train_pagerank_model", ["--epochs", "3"]),
    ("shortest_path_dfl", ["--epochs", "7"]),
])
def test_quick_sets_the_small_defaults_and_explicit_options_win(name, explicit):
    example = _load(name)
    full, quick = vars(example.parse_args([])), vars(example.parse_args(["--quick"]))
    assert set(example.QUICK) <= set(quick)
    for key, value in example.QUICK.items():
        assert quick[key] != full[key], key
        if key not in ("train_sets", "val_set"):  # parsed into (nodes, count, seed) tuples
            assert quick[key] == value, key
    option, value = explicit
    assert vars(example.parse_args(["--quick", option, value]))[option[2:]] == int(value)


def test_pagerank_example_writes_under_the_current_directory():
    example = _load("train_pagerank_model")
    package = Path(l2o.__file__).resolve().parent
    for argv, out in [([], Path("runs/pagerank_model/pagerank.pt")),
                      (["--quick"], Path("runs/pagerank_model_quick/pagerank.pt")),
                      (["--work", "w"], Path("w/pagerank.pt"))]:
        args = example.parse_args(argv)
        assert args.out == out and not args.out.is_absolute()
        assert package not in args.out.resolve().parents
    quick = example.parse_args(["--quick"])
    assert quick.train_sets == [(1000, 8, 10000)] and quick.val_set == (1000, 4, 40000)
    with pytest.raises(SystemExit):
        example.parse_args(["--val-set", "1000:4"])


@pytest.mark.parametrize("name", ["hyperparameter_tuning", "data_cleaning"])
def test_plots_go_to_the_current_directory(name):
    plot = Path(_load(name).parse_args([]).plot)
    assert not plot.is_absolute() and plot.parent == Path(".")


def test_shortest_path_plot_goes_under_runs_in_the_current_directory():
    example = _load("shortest_path_dfl")
    for argv, plot in [([], Path("runs/shortest_path_dfl/regret.png")),
                       (["--quick"], Path("runs/shortest_path_dfl_quick/regret.png")),
                       (["--plot", "p.png"], Path("p.png"))]:
        assert example.parse_args(argv).plot == plot
