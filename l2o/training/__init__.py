"""Pieces of the training loop of :mod:`l2o.train`: the loss, checkpoints, the distributed
setup and the metrics files."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .distributed import Distributed, setup
from .loss import instance_losses

__all__ = [
           "CheckpointError",
           "Distributed",
           "instance_losses",
           "load_checkpoint",
           "save_checkpoint",
           "setup",
]
