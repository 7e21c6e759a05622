"""torch.distributed helpers for the shared trainer (gloo on CPU, nccl on GPU), started by ``torchrun``.

Scheme: every rank trains on its shard of the data; gradients of the dense parameters are all-reduced
(averaged) every step; row-sparse embedding tables are averaged every ``sync_every`` steps and at the
end of each epoch (parameter averaging: ranks touch different rows, so there is no common sparse
gradient to all-reduce cheaply). Rank 0 writes checkpoints and artifacts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world`` (``local_world`` processes on this machine)."""

    rank: int = 0
    world: int = 1
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (``WORLD_SIZE`` > 1), else single.

    Uses nccl for CUDA devices and gloo otherwise. Safe to call twice (reuses an initialised group).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(dist.get_world_size()))),
    )


def all_reduce_mean_(tensors: Iterable[Tensor], info: DistInfo) -> None:
    """Average tensors in place across ranks (no-op when single-process)."""
    if not info.enabled:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(info.world)


def all_reduce_sum(value: float, info: DistInfo) -> float:
    """Sum of a scalar over ranks (the scalar itself when single-process)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group if one is active."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
