"""Symphonies' geometry: depth maps lifted to the grid frame, and the volume squeezed to a 2D map."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["lift_depth", "squeeze_volume", "squeeze_points"]


def squeeze_volume(volume: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Fold z into x: ``[B, C, X, Y, Z]`` -> ``([B, X*Z*Y, C], (X*Z, Y))``.

    The 2D map has rows ``x * Z + z`` and columns ``y`` (row-major flattening), so voxel
    ``(x, y, z)`` is pixel ``(row, col) = (x * Z + z, y)`` (the release's squeeze
    attention layout).
    """
    b, c, x, y, z = volume.shape
    return volume.permute(0, 2, 4, 3, 1).reshape(b, x * z * y, c), (x * z, y)


def squeeze_points(points: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Continuous voxel coordinates -> normalised ``(x, y)`` on the :func:`squeeze_volume` map.

    Args:
        points: ``[..., 3]`` voxel units (voxel ``i`` spans ``[i, i + 1)``; its centre is
            ``i + 0.5``) of a ``shape = (X, Y, Z)`` volume.

    Returns:
        ``[..., 2]``: ``(y / Y, (floor(x) * Z + z) / (X * Z))`` with ``x`` clamped to a voxel
        column and ``y``, ``z`` to the volume, so a voxel centre lands on its pixel centre.
    """
    sx, sy, sz = (int(s) for s in shape)
    ix = points[..., 0].floor().clamp(0, sx - 1)
    y = points[..., 1].clamp(0, sy)
    z = points[..., 2].clamp(0, sz)
    return torch.stack([y / sy, (ix * sz + z) / (sx * sz)], dim=-1)


def lift_depth(
    depth: torch.Tensor, intrinsics: torch.Tensor, cam_from_grid: torch.Tensor, image_size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project every pixel of a depth map into the grid frame.

    Args:
        depth: ``[B, H_d, W_d]`` z-depth, metres; ``<= 0`` or non-finite = unknown.
        intrinsics: ``[B, 3, 3]`` pixels, for ``image_size``; rescaled to ``(H_d, W_d)``.
        cam_from_grid: ``[B, 4, 4]`` grid -> OpenCV camera, metres.
        image_size: ``(H, W)`` the intrinsics refer to, pixels.

    Returns:
        ``(points [B, H_d * W_d, 3], valid [B, H_d * W_d])``: the pixel centres
        ``(u + 0.5, v + 0.5)`` at their depth, grid frame, metres (row-major pixels), and
        whether the depth was usable. Computed in float64 at least float32's range: a
        metre of error at 50 m would change the voxel.
    """
    b, hd, wd = depth.shape
    dtype = torch.promote_types(depth.dtype, torch.float64)
    scale = torch.tensor([wd / image_size[1], hd / image_size[0], 1.0], dtype=dtype, device=depth.device)
    k = scale.view(1, 3, 1) * intrinsics.to(dtype)
    v, u = torch.meshgrid(
        torch.arange(hd, dtype=dtype, device=depth.device) + 0.5,
        torch.arange(wd, dtype=dtype, device=depth.device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(1, -1, 3)
    d = depth.to(dtype).reshape(b, -1)
    valid = torch.isfinite(d) & (d > 0)
    d = torch.where(valid, d, torch.zeros_like(d))
    rays = torch.einsum("bij,bnj->bni", torch.linalg.inv(k), pix.expand(b, -1, -1))
    cam = rays * d.unsqueeze(-1)
    grid_from_cam = torch.linalg.inv(cam_from_grid.to(dtype))
    pts = torch.einsum("bij,bnj->bni", grid_from_cam[:, :3, :3], cam) + grid_from_cam[:, None, :3, 3]
    return pts, valid
