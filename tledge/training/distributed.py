"""Multi-process training under torchrun (DistributedDataParallel), one process per GPU, or gloo on CPU.

`torchrun --nproc_per_node=N -m tledge train DATA …` sets RANK/WORLD_SIZE/LOCAL_RANK; tledge then
trains one shared model: each rank takes every N-th item of one seeded permutation per epoch (the same
on every rank, a pure function of seed and epoch, so resume works as in one process), gradients are averaged by DDP, training statistics are summed across ranks,
every rank validates on the full validation split (so best-epoch and early-stopping decisions agree
without extra messages), and only rank 0 writes files or prints.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
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


SINGLE = DistInfo()


def from_environment() -> DistInfo:
    """The torchrun rank layout, or a single process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


# Collectives wait this long before the watchdog fails them. Rank 0's final test evaluation and plots run
# while the other ranks wait in the closing barrier, so the default (10 min for NCCL) is too short.
TIMEOUT_ENV = "TLEDGE_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 60


def group_timeout() -> timedelta:
    return timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_MIN)))


def init(info: DistInfo, device_type: str) -> None:
    """Join the process group: NCCL for CUDA, gloo for CPU.

    On CUDA each rank selects its own GPU (LOCAL_RANK) before the group exists: NCCL binds a communicator
    to the current device, so without it every rank would land on GPU 0 ("Duplicate GPU detected").
    """
    if info.enabled and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
            backend = "nccl"
        else:
            backend = "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, timeout=group_timeout())


def shutdown(success: bool = True) -> None:
    """Leave the group. After success all ranks meet in a barrier first; after an error no collective is
    issued (the other ranks may be inside a broadcast or an all-reduce, and a barrier would deadlock until the
    watchdog fires instead of showing the error); torchrun then stops the other ranks."""
    if dist.is_initialized():
        if success:
            dist.barrier()
        dist.destroy_process_group()


def broadcast(value, info: DistInfo):
    """Rank 0's value on every rank (a run folder name, a decision)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across_ranks(values: list[float], info: DistInfo, device) -> list[float]:
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


class ShardedSampler(Sampler[int]):
    """Every `world`-th index of the epoch's permutation, starting at `rank` (padded so that every rank
    gets the same number of batches, as DDP requires)."""

    def __init__(self, length: int, info: DistInfo, generator: torch.Generator | None):
        self.length, self.info, self.generator = length, info, generator
        self.per_rank = math.ceil(length / info.world_size) if length else 0

    def __iter__(self):
        order = (torch.randperm(self.length, generator=self.generator).tolist() if self.generator is not None
                 else list(range(self.length)))
        padded = order + order[: self.per_rank * self.info.world_size - self.length]
        return iter(padded[self.info.rank :: self.info.world_size])

    def __len__(self) -> int:
        return self.per_rank
