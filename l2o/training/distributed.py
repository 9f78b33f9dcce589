"""One process of a (possibly) distributed training run.

``torchrun --nproc_per_node N ...`` starts N processes and gives each the environment variables
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``). With
``WORLD_SIZE > 1``, :func:`setup` joins the process group (NCCL when the process trains on a
GPU, gloo on the CPU) and places process ``LOCAL_RANK`` on GPU ``LOCAL_RANK``; without them it
is a single process on the requested device, and the same training code runs unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from l2o.device import resolve_device

__all__ = ["Distributed", "process_device", "setup"]


def process_device(device: Any, local_rank: int = 0) -> torch.device:
    """Where process ``local_rank`` trains: :func:`l2o.device.resolve_device`, with a GPU
    given without index ("auto" on a CUDA machine, "cuda") taken as GPU ``local_rank``.

    Raises:
        ValueError: CUDA requested but not available (naming device="cpu" / "auto").
    """
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return resolved


@dataclass
class Distributed:
    """This process's place in the run.

    Attributes:
        rank, world_size, local_rank: from torchrun's environment (0, 1, 0 when alone).
        device: where this process trains.
        owns_group: this object initialized the process group (and destroys it in close()).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all processes (in place; a no-op when alone)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def close(self, barrier: bool = True) -> None:
        """Leave the process group this object joined. After a normal end, first a barrier, so
        that no process tears the group down while another is still reducing; after an error
        no barrier (the other processes may never reach it)."""
        if self.owns_group and dist.is_initialized():
            if barrier:
                dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"distributed training: environment variable {name}={value!r} is not an "
                         f"integer (launch with torchrun, which sets RANK, WORLD_SIZE and "
                         f"LOCAL_RANK)") from None


def setup(device: Any = "auto") -> Distributed:
    """Join the run described by the environment (see the module docstring)."""
    world_size = _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1
    if world_size <= 1:
        return Distributed(device=process_device(device))
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world_size:
        raise ValueError(f"distributed training: RANK={rank} outside 0..{world_size - 1}")
    where = process_device(device, local_rank)
    owns = False
    if not dist.is_initialized():
        if where.type == "cuda":
            torch.cuda.set_device(where)
        dist.init_process_group(backend="nccl" if where.type == "cuda" else "gloo",
                                rank=rank, world_size=world_size)
        owns = True
    elif dist.get_world_size() != world_size:
        raise ValueError(f"distributed training: the process group has "
                         f"{dist.get_world_size()} processes, WORLD_SIZE says {world_size}")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=where,
                       owns_group=owns)
