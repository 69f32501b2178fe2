"""torchrun integration: process-group setup and gradient averaging.

Under `torchrun --nproc_per_node=N` the env vars RANK / WORLD_SIZE / LOCAL_RANK
are set; we init the default process group (nccl on CUDA, gloo on CPU). Gradients
are averaged with one all-reduce over a flat buffer after backward (no DDP
wrapper: simpler, deterministic, and Muon then sees identical gradients on every
rank). Only rank 0 writes files or prints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from golfpack.errors import GolfpackError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    """Read torchrun's env and init the process group if WORLD_SIZE > 1."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise GolfpackError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise GolfpackError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
    info = DistInfo(rank, world, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        info.initialized_here = True
    return info


def teardown(info: DistInfo, clean: bool = True) -> None:
    """Leave the process group. After a clean run the ranks first meet, so they shut down together:
    a gloo rank whose peer closes its connections mid-shutdown can abort in C++ ("terminate called
    without an active exception", seen once in CI). After an error there is no meeting: the other
    ranks may never arrive."""
    if info.initialized_here and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


@torch.no_grad()
def average_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """All-reduce-mean the .grad of params in one flat buffer (params without grad count as 0)."""
    if world_size <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    off = 0
    for p, g in zip(params, grads):
        n = g.numel()
        new = flat[off : off + n].view_as(g).to(g.dtype)
        if p.grad is None:
            p.grad = new.clone()
        else:
            p.grad.copy_(new)
        off += n


@torch.no_grad()
def broadcast_params(params: list[torch.Tensor]) -> None:
    """Make every rank start from rank 0's weights."""
    for p in params:
        dist.broadcast(p.data, src=0)


def all_reduce_sum(values: list[float], device) -> list[float]:
    """Sum a few float64 scalars over ranks (a no-op on one process)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_float(value: float, device) -> float:
    """Rank 0's value on every rank (for wallclock-driven decisions that must agree)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
