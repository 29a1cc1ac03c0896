"""Ray origins for RayIoU: where the LiDAR of the scene's frames was, seen from one frame.

RayIoU (SparseOcc) casts its query rays from the LiDAR positions of several frames of the same
scene, so that occluded regions of the evaluated frame are probed too. This module computes
those origins from nuScenes-style poses, following SparseOcc's ``EgoPoseDataset``.
"""

from __future__ import annotations

import torch

from .._checks import check_finite, check_floating, check_shape

__all__ = ["ray_origins"]


def _pose(name: str, value: torch.Tensor, batch: str | int | None = None) -> torch.Tensor:
    check_floating(name, value)
    check_shape(name, value, [4, 4] if batch is None else [batch, 4, 4])
    check_finite(name, value)
    return value.detach().to(torch.float64)


def ray_origins(
    ref_ego2global: torch.Tensor,
    ref_lidar2ego: torch.Tensor,
    frames_ego2global: torch.Tensor,
    frames_lidar2ego: torch.Tensor,
    limit_xy: float = 39.0,
    max_origins: int = 8,
) -> torch.Tensor:
    """LiDAR positions of a scene's frames in the reference frame's ego frame (SparseOcc's origins).

    For every frame ``t`` of the scene (the reference frame included), the LiDAR origin is
    mapped global-from-lidar(t), then into the reference LiDAR frame, then into the reference
    ego frame, which is the grid frame of Occ3D. Origins with ``|x| < limit_xy`` and
    ``|y| < limit_xy`` are kept, in frame order; if more than ``max_origins`` remain,
    ``max_origins`` of them are picked at ``round(linspace(0, K - 1, max_origins))`` (round
    half to even, as NumPy).

    Args:
        ref_ego2global: ``[4, 4]`` global-from-ego pose of the evaluated frame (metres).
        ref_lidar2ego: ``[4, 4]`` ego-from-lidar calibration of the evaluated frame.
        frames_ego2global: ``[T, 4, 4]`` global-from-ego poses of all frames of the scene, in
            time order.
        frames_lidar2ego: ``[T, 4, 4]`` ego-from-lidar calibrations of those frames.
        limit_xy: keep origins strictly inside this half-width, metres (39 for Occ3D's 40 m grid).
        max_origins: at most this many origins.

    Returns:
        ``[K, 3]`` float64 origins in metres, grid (reference ego) frame, ``K <= max_origins``;
        ``K`` may be 0 when no frame is inside the limit.

    Example:
        >>> import torch
        >>> eye = torch.eye(4, dtype=torch.float64)
        >>> lidar = eye.clone(); lidar[:3, 3] = torch.tensor([1.0, 0.0, 1.8])
        >>> poses = eye.repeat(3, 1, 1); poses[:, 0, 3] = torch.tensor([-5.0, 0.0, 5.0])
        >>> ray_origins(eye, lidar, poses, lidar.repeat(3, 1, 1))[:, 0].tolist()
        [-4.0, 1.0, 6.0]
    """
    ref_g = _pose("ref_ego2global", ref_ego2global)
    ref_l = _pose("ref_lidar2ego", ref_lidar2ego)
    frames_g = _pose("frames_ego2global", frames_ego2global, "T")
    frames_l = _pose("frames_lidar2ego", frames_lidar2ego, frames_g.shape[0])
    if not limit_xy > 0:
        raise ValueError(f"limit_xy must be > 0 metres, got {limit_xy}")
    if isinstance(max_origins, bool) or not isinstance(max_origins, int) or max_origins < 1:
        raise ValueError(f"max_origins must be an int >= 1, got {max_origins!r}")

    ref_lidar_from_global = torch.linalg.inv(ref_g @ ref_l)
    global_from_lidar = frames_g @ frames_l  # [T, 4, 4]
    lidar_in_ref_lidar = (ref_lidar_from_global @ global_from_lidar)[:, :, 3]  # [T, 4]
    origins = (ref_l @ lidar_in_ref_lidar.T).T[:, :3]
    keep = (origins[:, 0].abs() < limit_xy) & (origins[:, 1].abs() < limit_xy)
    origins = origins[keep]
    k = origins.shape[0]
    if k > max_origins:
        pick = torch.round(torch.linspace(0, k - 1, max_origins, dtype=torch.float64)).long()
        origins = origins[pick]
    return origins
