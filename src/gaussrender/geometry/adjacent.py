"""Cameras of another frame (t ± k) expressed against the reference frame's grid.

Rendering frame t's prediction into the cameras of frame t + k needs those cameras' poses
relative to frame t's grid. A grid point reaches camera ``c`` of frame t + k through the
map (global) frame::

    cam_from_grid = inv(sensor2ego_c) · inv(ego2global_c) · ego2global_ref · ego_from_grid

``ego2global_ref`` is the reference sample's ego pose (nuScenes: at its LiDAR timestamp);
``ego2global_c`` the ego pose at camera c's own timestamp in frame t + k (nuScenes cameras
fire at their own times, so every camera has its own); ``sensor2ego_c`` the camera's
calibration; ``ego_from_grid`` the grid frame in the reference ego frame (identity for
Occ3D, ``lidar2ego`` for SurroundOcc). With frame t + k = t this is the usual
``cam_from_grid`` of the sample itself.

Global poses sit hundreds of metres from the map origin: everything is composed in
float64, and rigid inverses are taken as ``(Rᵀ, -Rᵀ t)``.
"""

from __future__ import annotations

import torch

from .._checks import check_rigid, check_shape

__all__ = ["adjacent_cam_from_grid", "rigid_inverse"]


def rigid_inverse(pose: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]`` as ``[[Rᵀ, -Rᵀ t], [0, 1]]``, in the input dtype."""
    rot = pose[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(pose)
    out[..., :3, :3] = rot
    out[..., :3, 3] = -(rot @ pose[..., :3, 3:])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def adjacent_cam_from_grid(
    ref_ego2global: torch.Tensor,
    cam_ego2global: torch.Tensor,
    cam_sensor2ego: torch.Tensor,
    ego_from_grid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[V, 4, 4]`` float64 transforms from the reference grid to the OpenCV cameras of another frame.

    Args:
        ref_ego2global: ``[4, 4]`` reference sample's ego → global (map) frame, metres.
        cam_ego2global: ``[V, 4, 4]`` ego → global at each camera's timestamp in the other
            frame, or ``[4, 4]``: one ego pose for all its cameras.
        cam_sensor2ego: ``[V, 4, 4]`` camera (OpenCV: x right, y down, z forward) → ego.
        ego_from_grid: ``[4, 4]`` grid → reference ego frame; None: identity (the grid is the
            reference ego frame, as in Occ3D).

    Returns:
        ``cam_from_grid [V, 4, 4]`` float64 on ``ref_ego2global``'s device (see the module
        docstring for the composition), usable as the ``cam_from_grid`` of the renderer and
        of :func:`gaussrender.project_points`.

    Raises:
        TypeError, ValueError: naming the argument: shapes, a non-floating dtype, NaN/inf,
            poses that are not rigid, different devices.

    Example:
        >>> import torch
        >>> same = adjacent_cam_from_grid(torch.eye(4), torch.eye(4), torch.eye(4)[None])
        >>> torch.equal(same, torch.eye(4, dtype=torch.float64)[None])
        True
    """
    check_shape("ref_ego2global", ref_ego2global, [4, 4])
    views = check_shape("cam_sensor2ego", cam_sensor2ego, ["V", 4, 4])["V"]
    if cam_ego2global.dim() == 2:
        check_shape("cam_ego2global", cam_ego2global, [4, 4])
        cam_ego2global = cam_ego2global[None].expand(views, 4, 4)
    else:
        check_shape("cam_ego2global", cam_ego2global, [views, 4, 4])
    named = [("ref_ego2global", ref_ego2global), ("cam_ego2global", cam_ego2global), ("cam_sensor2ego", cam_sensor2ego)]
    if ego_from_grid is not None:
        check_shape("ego_from_grid", ego_from_grid, [4, 4])
        named.append(("ego_from_grid", ego_from_grid))
    device = ref_ego2global.device
    for name, pose in named:
        check_rigid(name, pose)
        if pose.device != device:
            raise ValueError(f"{name} is on {pose.device} but ref_ego2global on {device}; expected one device")
    ref = ref_ego2global.to(torch.float64)
    # global -> other ego -> camera, then reference ego -> global
    cam_from_global = rigid_inverse(cam_sensor2ego.to(torch.float64)) @ rigid_inverse(cam_ego2global.to(torch.float64))
    out = cam_from_global @ ref
    if ego_from_grid is not None:
        out = out @ ego_from_grid.to(torch.float64)
    return out
