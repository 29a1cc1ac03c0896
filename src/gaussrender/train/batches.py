"""A collated batch on its way into the model: moved to the device, then the model called on it."""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch

__all__ = ["run_model", "move_batch"]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def run_model(model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
    """``model(images, intrinsics, cam_from_grid)``, plus ``depth=batch["depth"]`` for a
    model that reads depth maps (``needs_depth``: Symphonies' voxel proposals)."""
    kwargs = {}
    if getattr(_unwrap(model), "needs_depth", False):
        if "depth" not in batch:
            raise ValueError(
                f"{type(_unwrap(model)).__name__} needs depth maps but the samples carry none "
                "(KITTI-360: set data.depth_root)"
            )
        kwargs["depth"] = batch["depth"]
    return model(batch["images"], batch["intrinsics"], batch["cam_from_grid"], **kwargs)


def _dataset_len(dataset: torch.utils.data.Dataset, name: str) -> int:
    """``len(dataset)``; torch types ``Dataset`` without ``__len__``, but the samplers here need it."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{name} must be a map-style dataset with __len__, got {type(dataset).__name__}")
    return len(dataset)


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors (and lists of tensors) of a collated batch moved to ``device``."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, list) and v and all(isinstance(t, torch.Tensor) for t in v):
            out[k] = [t.to(device, non_blocking=True) for t in v]
        else:
            out[k] = v
    return out
