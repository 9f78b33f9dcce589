"""l2o: learning to optimize linear programs on PyTorch and GPUs."""

__all__: list[str] = []
__version__ = "0.1.0"
