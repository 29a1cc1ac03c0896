"""Process groups and data sharding for ``torchrun`` (gloo on CPU, nccl on CUDA).

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them everything runs
in a single process and no process group is created.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .seeds import epoch_seed

__all__ = [
    "DistInfo",
    "init_distributed",
    "shutdown_distributed",
    "TrainSampler",
    "ShardSampler",
    "all_reduce_sum",
    "gather_objects",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group (if any) and pick this process's device.

    Args:
        device: ``"auto"`` (``cuda:<LOCAL_RANK>`` when CUDA is available, else CPU),
            ``"cpu"`` or ``"cuda"``.
    """
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    world = _env_int("WORLD_SIZE", 1)
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"train.device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("train.device='cuda' but CUDA is not available")
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, local_rank, world, dev)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over processes (``x`` itself when not distributed); returns a new tensor."""
    x = x.clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` when not distributed); collective."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


class TrainSampler(torch.utils.data.Sampler[int]):
    """Shuffled, per-rank training indices; every rank gets the same number of samples.

    The permutation depends only on ``(seed, epoch)``, so a resumed run sees the same order.
    The list is padded by wrapping around so that it divides evenly (DDP needs every rank to
    step the same number of times); ``skip`` drops the first samples of this rank's share
    (mid-epoch resume).
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True) -> None:
        if length < 1:
            raise ValueError(f"the training set is empty (length {length})")
        self.length, self.rank, self.world, self.seed, self.shuffle = length, rank, world_size, seed, shuffle
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    @property
    def per_rank(self) -> int:
        return math.ceil(self.length / self.world)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = self.per_rank * self.world
        order = (order * math.ceil(total / self.length))[:total]
        return iter(order[self.rank :: self.world][self.skip :])

    def __len__(self) -> int:
        return self.per_rank - self.skip


class ShardSampler(torch.utils.data.Sampler[int]):
    """Evaluation shard: rank ``r`` gets indices ``r, r + W, r + 2W, ...`` with no padding,
    so no sample is counted twice when the metric states are summed over ranks."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.rank, self.world = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world))
