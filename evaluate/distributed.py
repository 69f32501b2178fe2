"""Rank / world discovery and the one reduction an evaluation needs.

An evaluation is distributed when a torch.distributed process group is already
initialized, or when torchrun's environment says WORLD_SIZE > 1 (then this
module initializes the group itself: gloo on CPU, nccl on CUDA).

Exactness. Every rank derives the same batch plan; rank r runs the contiguous
block of batches [nb*r//W, nb*(r+1)//W) and writes each batch's float64 loss
sum and integer counts into its slot of a zero-filled per-batch array. The
arrays are all-reduced with SUM, so each slot holds x + 0 + ... + 0 = x exactly,
and the totals are then formed from the full per-batch arrays in the same way
as in a single process. Hence a W-process result is bit-identical to the
1-process one whenever a batch's forward pass itself is reproducible (same
inputs, shapes, device type and kernels), which holds for CPU runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int

    @property
    def active(self) -> bool:
        return self.world > 1


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_if_needed(device: torch.device) -> DistInfo:
    """The process group's rank/world, initializing it from torchrun's env if needed."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)
    if env_world_size() > 1 and dist.is_available():
        backend = "gloo"
        if device.type == "cuda":
            backend = "nccl"
            torch.cuda.set_device(device.index if device.index is not None else local_rank)
        dist.init_process_group(backend=backend)
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)
    return DistInfo(0, 1, 0)


def batch_range(num_batches: int, info: DistInfo) -> range:
    """The contiguous block of batch indices this rank evaluates."""
    return range(num_batches * info.rank // info.world, num_batches * (info.rank + 1) // info.world)


def all_reduce_sum_(tensors: list[torch.Tensor], info: DistInfo) -> None:
    """In-place SUM over ranks (no-op in a single process)."""
    if not info.active:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
