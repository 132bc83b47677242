"""Data-parallel training under `torchrun` (PyTorch's own launcher), one process per device.

`torchrun --nproc-per-node N --no-python ebjdat run RECIPE` sets WORLD_SIZE, RANK and
LOCAL_RANK; every rank builds the same model and takes its slice of each global batch
(`train.batch_size` stays the global batch, so the losses match a single-process run with the
same batch), wraps the model in DistributedDataParallel for the update, and keeps its own slice
of the replay buffer. Rank 0 alone writes events and the main checkpoint; each rank writes its
own method state (its buffer) beside it. Ranks agree on collapse actions and stop requests
through small collectives at the existing check cadences, never per step.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import torch
import torch.distributed as dist


@attrs.frozen
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """The process's place in a torchrun job (a single process when not launched by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPUs); returns this rank's device."""
    if not info.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(info: DistInfo, t: torch.Tensor) -> torch.Tensor:
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t)
        t /= info.world_size
    return t


def all_max(info: DistInfo, value: int, device: torch.device) -> int:
    """The largest of every rank's `value` (one tiny collective)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def rank_slice(info: DistInfo, x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of a global batch."""
    if not info.enabled:
        return x
    share = x.shape[0] // info.world_size
    return x[info.rank * share:(info.rank + 1) * share]
