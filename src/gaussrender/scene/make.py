"""The labelled procedural scene: :func:`make_scene` paints it (:mod:`.paint`) and computes its
visibility masks (:mod:`.visibility`); :class:`Scene` holds the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..geometry.cameras import Cameras
from ..geometry.grid import NUSCENES_CLASSES, OCC3D_NUSCENES, VoxelGrid, get_grid
from ..geometry.rigs import nuscenes_rig
from .canvas import Canvas
from .paint import paint_street
from .visibility import LIDAR_ELEVATION_DEG, LIDAR_ORIGIN, camera_rays, lidar_rays, seen_surfaces, visibility_mask

__all__ = ["Scene", "make_scene", "SCENE_CLASSES", "FRAME_DT"]

#: Classes the scene paints; a grid must name all of them.
SCENE_CLASSES = NUSCENES_CLASSES

#: Time between the trajectory's frames, seconds (nuScenes key frames are 2 Hz).
FRAME_DT = 0.5


@dataclass
class Scene:
    """A labelled occupancy scene in the Occ3D ``labels.npz`` layout.

    Attributes:
        semantics: ``[X, Y, Z]`` uint8 class per voxel (``grid.empty_index`` = free).
        mask_camera: ``[X, Y, Z]`` bool, voxels seen by the cameras (see module docstring).
        mask_lidar: ``[X, Y, Z]`` bool, voxels seen by the LiDAR over the trajectory.
        ego_poses: ``[T, 4, 4]`` float64 ego-to-global transforms of a short drive along the
            road, one per frame, 0.5 s apart.
        key_frame: index into ``ego_poses`` of the labelled frame (the grid is its ego frame).
        grid: the voxel grid.
        seed: the seed the scene was made from.
    """

    semantics: torch.Tensor
    mask_camera: torch.Tensor
    mask_lidar: torch.Tensor
    ego_poses: torch.Tensor
    key_frame: int
    grid: VoxelGrid
    seed: int

    def ego_origins(self) -> torch.Tensor:
        """``[T, 3]`` position of every frame's ego origin in the key frame (grid), metres."""
        key_inv = torch.linalg.inv(self.ego_poses[self.key_frame])
        return (key_inv @ self.ego_poses)[:, :3, 3]


def _ego_poses(rng: np.random.Generator, frames: int, key: int) -> torch.Tensor:
    """``[T, 4, 4]`` ego2global of a drive along +x at a constant speed; the global frame is an
    arbitrary map frame (yaw and offset drawn from the seed), as in nuScenes."""
    speed = rng.uniform(3.0, 9.0)  # m/s
    yaw = rng.uniform(-math.pi, math.pi)
    offset = np.array([rng.uniform(300, 2000), rng.uniform(300, 2000), 0.0])
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    poses = np.tile(np.eye(4), (frames, 1, 1))
    for i in range(frames):
        local = np.array([speed * FRAME_DT * (i - key), 0.0, 0.0])
        poses[i, :3, :3] = rot
        poses[i, :3, 3] = offset + rot @ local
    return torch.from_numpy(poses)


def make_scene(
    seed: int,
    grid: VoxelGrid | str = OCC3D_NUSCENES,
    *,
    ground_z: float = 0.0,
    frames: int = 5,
    camera_stride: int = 8,
    rig: tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None = None,
) -> Scene:
    """Generate a labelled driving scene from ``seed`` (deterministic, well under 2 s on CPU).

    Args:
        seed: any non-negative int.
        grid: a grid whose ``class_names`` include the nuScenes classes (Occ3D, SurroundOcc).
        ground_z: height of the ground plane in the grid frame, metres (0 for Occ3D's ego
            frame).
        frames: number of ego poses of the trajectory; the key frame is the middle one.
        camera_stride: pixel spacing (at 1600x900) of the rays that build ``mask_camera``.
        rig: ``(intrinsics [V, 3, 3], cam_from_grid [V, 4, 4], (height, width))`` of the
            cameras for ``mask_camera``; default :func:`gaussrender.geometry.rigs.nuscenes_rig`
            at full resolution.

    Returns:
        A :class:`Scene`.

    Raises:
        ValueError: the grid lacks a class the scene paints, or ``ground_z`` is outside it.

    Example:
        >>> from gaussrender.scene import make_scene
        >>> scene = make_scene(0)
        >>> scene.semantics.shape, scene.semantics.dtype
        (torch.Size([200, 200, 16]), torch.uint8)
    """
    grid = get_grid(grid)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    missing = [n for n in SCENE_CLASSES if n not in grid.class_names]
    if missing:
        raise ValueError(f"grid {grid.name!r} lacks the scene's classes {missing}; expected nuScenes class names")
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be an int >= 1, got {frames!r}")
    rng = np.random.default_rng(int(seed))
    canvas = Canvas(grid, ground_z)
    paint_street(canvas, rng)

    semantics = torch.from_numpy(canvas.sem)
    occupied = semantics != grid.empty_index

    key = frames // 2
    poses = _ego_poses(rng, frames, key)
    if rig is None:
        intrinsics, cam_from_grid, _ = nuscenes_rig((900, 1600))
        image_size = (900, 1600)
    else:
        intrinsics, cam_from_grid, image_size = rig
    # the rig is given relative to the ground; shift it with the grid's ground height
    lift = torch.eye(4, dtype=cam_from_grid.dtype)
    lift[2, 3] = -ground_z
    cam_from_grid = (cam_from_grid @ lift).float()
    o, d = camera_rays(intrinsics, cam_from_grid, image_size, camera_stride)
    mask_camera = visibility_mask(occupied, grid, o, d)
    # pixel rays thin out on the ground far away; test the line of sight of every occupied
    # surface voxel they missed, so that the visible surfaces are complete
    cams = Cameras(cam_from_grid, intrinsics.float(), image_size[1], image_size[0])

    def in_image(v: int, points: torch.Tensor) -> torch.Tensor:
        uv, z = cams[v].project(points)
        u, w = uv[0, :, 0], uv[0, :, 1]
        return (z[0] > cams.near) & (u >= 0) & (u < image_size[1]) & (w >= 0) & (w < image_size[0])

    mask_camera |= seen_surfaces(occupied, grid, cams.world_from_cam[:, :3, 3], in_image, occupied & ~mask_camera)

    key_inv = torch.linalg.inv(poses[key])
    lidar_local = torch.tensor([*LIDAR_ORIGIN[:2], LIDAR_ORIGIN[2] + ground_z, 1.0], dtype=torch.float64)
    lidar_origins = ((key_inv @ poses) @ lidar_local)[:, :3]
    lo = torch.tensor(grid.range_min, dtype=torch.float64)
    hi = torch.tensor(grid.range_max, dtype=torch.float64)
    lidar_origins = lidar_origins[((lidar_origins > lo) & (lidar_origins < hi)).all(dim=1)]
    o, d = lidar_rays(lidar_origins)
    mask_lidar = visibility_mask(occupied, grid, o, d)
    lo_el, hi_el = (math.radians(a) for a in LIDAR_ELEVATION_DEG)

    def in_beams(s: int, points: torch.Tensor) -> torch.Tensor:
        rel = points.double() - key_origin[s]
        elevation = torch.atan2(rel[:, 2], rel[:, :2].norm(dim=1))
        return (elevation >= lo_el) & (elevation <= hi_el)

    # surfaces by line of sight from the key frame only (the costly part); the beams of the
    # other frames still add what they hit
    key_origin = lidar_origins[(lidar_origins[:, :2] ** 2).sum(dim=1).argmin()][None]
    mask_lidar |= seen_surfaces(occupied, grid, key_origin, in_beams, occupied & ~mask_lidar)
    return Scene(semantics, mask_camera, mask_lidar, poses, key, grid, int(seed))
