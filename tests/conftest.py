import pytest
import torch

torch.set_num_threads(1)  # CI has 2 cores; small problems run fastest single-threaded

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
