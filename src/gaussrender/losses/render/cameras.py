"""The cameras :class:`~gaussrender.GaussRenderLoss` renders: sensor cameras drawn and moved
by a strategy, every given camera at the 2D targets' resolution, and the cached BEV."""

from __future__ import annotations

import functools
from typing import Literal

import torch

from ...geometry.camera_strategies import Strategy, apply_strategy
from ...geometry.cameras import Cameras, scale_intrinsics
from ...geometry.grid import VoxelGrid
from ...geometry.rigs import bev_camera
from .options import RenderLossOptions

__all__ = ["sample_cameras", "target_cameras", "bev_view"]


def sample_cameras(
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: tuple[int, int],
    grid: VoxelGrid,
    strategy: Strategy,
    options: RenderLossOptions,
    generator: torch.Generator | None,
    dtype: torch.dtype,
) -> list[Cameras]:
    """Draw ``cameras_per_sample`` cameras per sample and move them with ``strategy``.

    The strategy is applied once to the whole batch ``[B, k, 4, 4]``, so that a draw the
    release makes once per batch (``trajectory``'s r) is shared by every sample, as there.
    """
    batch, ncam = intrinsics.shape[:2]
    device = intrinsics.device
    host_weights = options.camera_weights if options.camera_weights is not None else (1.0,) * ncam
    weights = torch.tensor(host_weights, dtype=torch.float64)
    # counted on the host: the weights are Python floats, no tensor needs reading
    count = min(options.cameras_per_sample, sum(1 for w in host_weights if w > 0))
    # drawn on the host with the module's CPU generator; the upload of these B·k indices is
    # asynchronous (pageable memory is staged at once), so the device never waits on it
    chosen = torch.stack(
        [torch.multinomial(weights, count, replacement=False, generator=generator) for _ in range(batch)]
    ).to(device, non_blocking=True)  # [B, k]
    rows = torch.arange(batch, device=device)[:, None]
    poses = apply_strategy(strategy, cam_from_grid[rows, chosen].to(dtype), grid, generator)
    ks = intrinsics[rows, chosen].to(dtype)
    if poses.shape[1] != ks.shape[1]:  # stereo: each camera and its shifted copy
        ks = ks.repeat_interleave(poses.shape[1] // ks.shape[1], dim=1)
    height = max(1, round(image_size[0] / options.resolution_divisor))
    width = max(1, round(image_size[1] / options.resolution_divisor))
    if (width, height) != (image_size[1], image_size[0]):  # (its factors are an upload)
        ks = scale_intrinsics(ks, width / image_size[1], height / image_size[0])
    return [Cameras(poses[b], ks[b], width, height) for b in range(batch)]


def target_cameras(
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: tuple[int, int],
    target_size: tuple[int, int],
    dtype: torch.dtype,
) -> list[Cameras]:
    """Every given camera of each sample, at the 2D targets' resolution: ``intrinsics`` (pixels
    of ``image_size``) rescaled to ``target_size`` (H, W), no strategy (the targets were
    measured from these poses)."""
    height, width = target_size
    ks = intrinsics.to(dtype)
    if (height, width) != tuple(image_size):
        ks = scale_intrinsics(ks, width / image_size[1], height / image_size[0])
    poses = cam_from_grid.to(dtype)
    return [Cameras(poses[b], ks[b], width, height) for b in range(intrinsics.shape[0])]


@functools.lru_cache(maxsize=16)
def _bev(
    grid: VoxelGrid, size: int, model: Literal["perspective", "orthographic"], dtype: torch.dtype, device: torch.device
) -> Cameras:
    """The BEV camera, built once per (grid, size, model, dtype, device): building it uploads
    its matrices, a stream synchronisation on CUDA, which a training step should not pay.
    Only the renderer reads it (never modified)."""
    return bev_camera(grid, size, model, dtype=dtype, device=device)


def bev_view(
    grid: VoxelGrid, size: int, model: Literal["perspective", "orthographic"], dtype: torch.dtype, device: torch.device
) -> Cameras:
    """The BEV camera of ``grid``, cached per (grid, size, model, dtype, device)."""
    try:
        return _bev(grid, size, model, dtype, device)
    except TypeError:  # a VoxelGrid subclass holding unhashable fields: build it each time
        return bev_camera(grid, size, model, dtype=dtype, device=device)
