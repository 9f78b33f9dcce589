"""l2o.device.resolve_device: one reading of ``device`` for the package, with a clear error
when CUDA is asked for without CUDA (torch would raise a bare AssertionError later)."""

import pytest
import torch

from l2o.device import DeviceUnavailableError, resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA, also where the tests run on a GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_takes_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device(None) == torch.device(expected)
    assert resolve_device("AUTO") == torch.device(expected)


def test_auto_without_cuda_is_cpu(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")


def test_explicit_devices_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1), 0])
def test_cuda_without_cuda_names_the_alternatives(no_cuda, device):
    with pytest.raises(DeviceUnavailableError) as caught:
        resolve_device(device)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert 'device="cpu"' in message and 'device="auto"' in message
    assert "CUDA is not available" in message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_out_of_range():
    with pytest.raises(DeviceUnavailableError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_not_a_device():
    with pytest.raises(ValueError, match="is not a device"):
        resolve_device("gpu")
    with pytest.raises(TypeError, match="torch.device"):
        resolve_device(1.5)
    with pytest.raises(TypeError):
        resolve_device(True)


# ---- every entry point that takes device= reads it the same way -----------------------------

def _assert_names_alternatives(error: BaseException, where: str) -> None:
    assert isinstance(error, ValueError), where
    assert 'device="cpu"' in str(error) and 'device="auto"' in str(error), where


def test_entry_points_reject_cuda_without_cuda(no_cuda, tmp_path):
    from l2o.datasets import build_dataset, generate
    from l2o.net import PDHGNet, load_model, predict_warm_start, solve_with_model
    from l2o.training import train

    lp = generate("setcover", rows=8, cols=16, density=0.3, seed=0)
    model = PDHGNet(hidden=4, layers=1)
    calls = {
        "load_model": lambda: load_model("pagerank", device="cuda"),
        "predict_warm_start": lambda: predict_warm_start(model, lp, device="cuda"),
        "solve_with_model": lambda: solve_with_model(model, lp, device="cuda"),
        "build_dataset": lambda: build_dataset("setcover", 1, tmp_path / "data", device="cuda",
                                               progress=False, rows=8, cols=16, density=0.3),
        "train": lambda: train(model, [object()], epochs=1, out_dir=tmp_path / "run",
                               device="cuda", verbose=False),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError) as caught:
            call()
        _assert_names_alternatives(caught.value, name)
    assert not (tmp_path / "data").exists()  # refused before touching the directory
