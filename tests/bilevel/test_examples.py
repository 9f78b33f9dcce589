"""The two task examples run end to end (tiny settings) and lower the outer objective."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))      # the examples import their shared examples/_quick.py


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_cleaning_example_runs_and_lowers_validation_loss(tmp_path):
    example = _load("data_cleaning")
    rows = example.main(["--n-train", "400", "--steps", "6", "--eval-every", "1",
                         "--inner-steps", "5", "--no-oracle", "--quiet",
                         "--methods", "aid-cg,borep", "--plot", str(tmp_path / "dc.png")])
    assert [r["method"] for r in rows] == ["aid-cg", "borep"]
    for row in rows:
        assert row["status"] == "max_steps", row["message"]
        curve = row["curve"]
        assert curve[-1]["val_loss"] < curve[0]["val_loss"]
        assert 0.0 <= row["f1"] <= 1.0 and 0.0 < row["test_acc"] <= 1.0
    assert (tmp_path / "dc.png").stat().st_size > 0


def test_data_cleaning_example_with_an_mlp_and_seeds(tmp_path):
    example = _load("data_cleaning")
    rows = example.main(["--n-train", "100", "--n-val", "60", "--hidden", "4", "--steps", "2",
                         "--inner-steps", "2", "--eval-every", "1", "--no-oracle", "--quiet",
                         "--methods", "aid-cg", "--seeds", "0,1", "--plot", ""])
    assert [(r["method"], r["seed"]) for r in rows] == [("aid-cg", 0), ("aid-cg", 1)]
    for row in rows:
        assert row["status"] == "max_steps", row["message"]
        assert 0.0 <= row["f1"] <= 1.0 and 0.0 < row["test_acc"] <= 1.0


def test_data_cleaning_retrained_model_with_the_true_mask_is_the_oracle():
    """The retrained cleaned model is the oracle's training with learned weights: given
    weights that are the clean mask (sigmoid(+-50)), it is the oracle's model."""
    import torch

    from bilevel.tasks.reference import oracle_cleaning

    example = _load("data_cleaning")
    split = example.load_mnist(n_train=120, n_val=40, corruption=0.5, seed=0)
    task64 = example.float64_task(split, "cpu", hidden=3, seed=0)
    corrupted = split.info["corrupted"]
    x = torch.where(corrupted, -50.0, 50.0)  # sigmoid: 1 and 2e-22, the mask to rounding
    # a few L-BFGS rounds keep it fast; both runs take the same ones
    ours = example.retrained(task64, x, split, max_iter=3)
    W = oracle_cleaning(task64, corrupted, normalization="clean", strict=False, max_iter=3)
    assert ours["test_acc"] == pytest.approx(
        float(task64.accuracy(W, split.X_test, split.y_test)), abs=1e-12)
    assert ours["val_acc"] == pytest.approx(
        float(task64.accuracy(W, split.X_val, split.y_val)), abs=1e-12)
    # weights of the wrong examples give another model
    flipped = example.retrained(task64, -x, split, max_iter=3)
    assert flipped["val_acc"] < ours["val_acc"]


def test_hyperparameter_tuning_example_runs_and_lowers_validation_loss(tmp_path):
    example = _load("hyperparameter_tuning")
    rows = example.main(["--steps", "8", "--eval-every", "1", "--quiet",
                         "--methods", "aid-cg", "--grid=-8,0", "--plot", str(tmp_path / "hp.png")])
    row = rows[0]
    assert row["status"] == "max_steps", row["message"]
    # h(x) = f(x, theta*(x)) at the end (exact float64) is below h(x0) = 0.29566 (x0 = -4)
    assert row["start_val_loss"] > 0.2956
    assert row["val_loss"] < row["start_val_loss"] - 0.01
    assert row["curve"][-1]["val_loss"] < row["curve"][0]["val_loss"]
    assert (tmp_path / "hp.png").stat().st_size > 0


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
