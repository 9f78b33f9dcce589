"""bilevel.persist: atomic writes, safe loads with our own messages, exact RNG resume."""

import random

import numpy as np
import pytest
import torch

from bilevel.persist import UnreadableFileError, atomic_save, rng_state, safe_load, set_rng_state


def test_atomic_save_round_trip_and_no_leftovers(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save({"a": torch.arange(3), "b": [1, "x"]}, path)
    atomic_save({"a": torch.arange(4)}, path)  # replaces
    loaded = safe_load(path, "test file")
    assert torch.equal(loaded["a"], torch.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Unpicklable()}, path)
    assert safe_load(path, "test file") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


@pytest.mark.parametrize("content, words", [
    (b"", "truncated or empty"),
    (b"this is not a torch file at all", "not a file written by torch.save"),
])
def test_unreadable_files_get_our_words(tmp_path, content, words):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError, match=words) as info:
        safe_load(path, "test file")
    assert "weights_only=False" not in str(info.value)
    assert "bad.pt" in str(info.value)


def test_truncated_torch_file(tmp_path):
    path = tmp_path / "cut.pt"
    atomic_save({"a": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UnreadableFileError) as info:
        safe_load(path, "test file")
    assert "weights_only" not in str(info.value)


def test_code_carrying_pickle_is_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "code.pt"
    torch.save({"obj": np.dtype("float64").type}, path)  # a global torch refuses to unpickle
    with pytest.raises(UnreadableFileError) as info:
        safe_load(path, "test file")
    assert "weights_only" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such test file"):
        safe_load(tmp_path / "nope.pt", "test file")


def test_rng_state_round_trip(tmp_path):
    state = rng_state()
    atomic_save(state, tmp_path / "rng.pt")
    first = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(safe_load(tmp_path / "rng.pt", "rng"))
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_rng_state_restores_from_tensors_off_the_cpu():
    """A state loaded onto a GPU (map_location) holds device tensors, which .numpy() refuses:
    set_rng_state moves them to the CPU first (here a stand-in that refuses like a CUDA tensor)."""

    class DeviceTensor:
        def __init__(self, tensor):
            self.tensor = tensor

        def cpu(self):
            return self.tensor

        def numpy(self):
            raise TypeError("can't convert cuda:0 device type tensor to numpy")

    state = rng_state()
    state["numpy"]["keys"] = DeviceTensor(state["numpy"]["keys"])
    expected = np.random.rand()
    np.random.rand(5)                      # move on, then come back
    set_rng_state(state)
    assert np.random.rand() == expected
