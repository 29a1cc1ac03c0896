"""Where the cameras are: a nuScenes-like six-camera rig, its camera names and odds, and the
bird's-eye view camera.

Poses are ``cam_from_ego`` / ``cam_from_grid`` ``[..., 4, 4]`` rigid transforms into the OpenCV
camera frame (x right, y down, z forward); the grid/ego frame is metres, x forward, y left,
z up. How cameras are then moved for rendering is :mod:`.camera_strategies`.
"""

from __future__ import annotations

from typing import Literal

import torch

from .cameras import Cameras, scale_intrinsics
from .grid import VoxelGrid, get_grid
from .transforms import rotation_z

__all__ = ["NUSCENES_CAMERA_NAMES", "NUSCENES_CAMERA_WEIGHTS", "bev_camera", "nuscenes_rig"]

NUSCENES_CAMERA_NAMES = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
#: Odds of each camera in :data:`NUSCENES_CAMERA_NAMES` order. The release draws the rendered
#: camera with ``random.choices`` and weights 1/3 front, 1/3 back, 1/6 each side, which
#: ``choices`` normalises (their sum is 1.33): front 1/4, back 1/4, each side camera 1/8.
NUSCENES_CAMERA_WEIGHTS = (1 / 4, 1 / 8, 1 / 8, 1 / 4, 1 / 8, 1 / 8)


def bev_camera(
    grid: VoxelGrid | str,
    size: int = 400,
    model: Literal["perspective", "orthographic"] = "perspective",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Cameras:
    """One bird's-eye-view camera looking straight down at ``grid``.

    Image "up" is grid +x (forward) and image "right" is grid -y, so the picture reads like a
    map with the car driving up.

    * ``"perspective"`` (the release): the camera is above the ego origin at a height equal to
      the grid's x extent (80 m Occ3D, 100 m SurroundOcc, 51.2 m KITTI-360), focal ``size``
      pixels (53.13° field of view); the principal point is placed so that the grid's centre
      lands at the image centre (Occ3D: the centre; KITTI-360, whose grid lies ahead of the
      car: the bottom edge).
    * ``"orthographic"``: parallel projection framing the grid's xy extent exactly, from the
      same height above the grid centre.

    Returns:
        :class:`Cameras` with one ``size`` x ``size`` view.
    """
    grid = get_grid(grid)
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int (pixels), got {size!r}")
    height = grid.extent[0]
    xc, yc, _ = grid.center
    rot = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    if model == "perspective":
        eye = torch.tensor([0.0, 0.0, height], dtype=torch.float64)
        f = float(size)
        k = [[f, 0.0, size / 2 + f * yc / height], [0.0, f, size / 2 + f * xc / height], [0.0, 0.0, 1.0]]
        cam_model: Literal["pinhole", "orthographic"] = "pinhole"
    elif model == "orthographic":
        eye = torch.tensor([xc, yc, height], dtype=torch.float64)
        k = [[size / grid.extent[1], 0.0, size / 2], [0.0, size / grid.extent[0], size / 2], [0.0, 0.0, 1.0]]
        cam_model = "orthographic"
    else:
        raise ValueError(f"model must be 'perspective' or 'orthographic', got {model!r}")
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = rot
    pose[:3, 3] = -(rot @ eye)
    return Cameras(
        pose[None].to(device=device, dtype=dtype),
        torch.tensor([k], dtype=dtype, device=device),
        size,
        size,
        cam_model,
    )


# Approximate nuScenes rig (vehicle n008, rounded from its calibration tables): camera
# position in the ego frame (m), yaw (deg, left positive), focal and principal point at
# 1600x900.
_NUSCENES_RIG = (
    # name, (x, y, z), yaw, focal, cx, cy
    ("CAM_FRONT", (1.72, 0.0, 1.49), 0.0, 1252.8, 826.6, 470.0),
    ("CAM_FRONT_RIGHT", (1.58, -0.50, 1.52), -55.0, 1256.7, 817.8, 452.0),
    ("CAM_FRONT_LEFT", (1.58, 0.50, 1.51), 55.0, 1257.9, 827.2, 450.9),
    ("CAM_BACK", (0.05, 0.01, 1.57), 180.0, 796.9, 857.8, 476.9),
    ("CAM_BACK_LEFT", (1.05, 0.48, 1.56), 110.0, 1255.0, 829.6, 467.2),
    ("CAM_BACK_RIGHT", (1.06, -0.47, 1.55), -110.0, 1250.0, 825.4, 462.5),
)


def nuscenes_rig(
    image_size: tuple[int, int] = (900, 1600),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """A nuScenes-like six-camera rig for synthetic scenes and demos.

    Args:
        image_size: (height, width) in pixels; intrinsics are scaled from 1600x900.

    Returns:
        intrinsics ``[6, 3, 3]``, cam_from_ego ``[6, 4, 4]`` and the camera names in the usual
        order (front, front right, front left, back, back left, back right).
    """
    h, w = image_size
    level = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    poses, ks = [], []
    for _, pos, yaw, f, cx, cy in _NUSCENES_RIG:
        rot = level @ rotation_z(torch.tensor(yaw, dtype=torch.float64)).T
        pose = torch.eye(4, dtype=torch.float64)
        pose[:3, :3] = rot
        pose[:3, 3] = -(rot @ torch.tensor(pos, dtype=torch.float64))
        poses.append(pose)
        ks.append(torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=torch.float64))
    k = scale_intrinsics(torch.stack(ks), w / 1600.0, h / 900.0)
    return (
        k.to(device=device, dtype=dtype),
        torch.stack(poses).to(device=device, dtype=dtype),
        NUSCENES_CAMERA_NAMES,
    )
