"""Training PDHG-Net: the loop (:func:`train`, single device and torchrun/DDP), the loss,
checkpoints, the distributed setup and the metrics files."""

from .checkpoint import CheckpointError, NonFiniteWeightsError, load_checkpoint, save_checkpoint
from .distributed import Distributed, setup
from .loop import TrainingDiverged, TrainOptions, TrainResult, train
from .loss import instance_losses

__all__ = [
    "CheckpointError",
    "Distributed",
    "NonFiniteWeightsError",
    "TrainOptions",
    "TrainResult",
    "TrainingDiverged",
    "instance_losses",
    "load_checkpoint",
    "save_checkpoint",
    "setup",
    "train",
]
