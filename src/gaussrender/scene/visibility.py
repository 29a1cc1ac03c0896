"""What the sensors see: the visibility masks of the procedural scene, on exact voxel traversal.

* ``mask_camera``: voxels crossed by rays cast from the camera centres through a sub-sampled
  pixel grid of each camera (:func:`camera_rays`), up to and including the first occupied
  voxel (:func:`visibility_mask`);
* ``mask_lidar``: the same from a roof LiDAR (:data:`LIDAR_ORIGIN`, :data:`LIDAR_BEAMS` beams,
  1° azimuth steps, :func:`lidar_rays`).

Sub-sampled rays thin out on distant ground, so both masks also take every occupied surface
voxel with a line of sight to the sensor (:func:`seen_surfaces`, :func:`line_of_sight`).

Rays walk the grid voxel by voxel with :class:`gaussrender.geometry.raycast.VoxelWalk`, the
exact traversal RayIoU uses (:func:`gaussrender.geometry.raycast.first_hits`): a ray that
clips the corner of a voxel marks it. Inputs are metres in the grid frame.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .._checks import check_floating, check_shape
from ..geometry.grid import VoxelGrid
from ..geometry.raycast import VoxelWalk, crossed_voxels

__all__ = [
    "LIDAR_ORIGIN",
    "LIDAR_ELEVATION_DEG",
    "LIDAR_BEAMS",
    "LIDAR_AZIMUTH_STEP_DEG",
    "visibility_mask",
    "line_of_sight",
    "seen_surfaces",
    "camera_rays",
    "lidar_rays",
]

#: nuScenes roof LiDAR in the ego frame, metres (the real lidar2ego translation, rounded).
LIDAR_ORIGIN = (0.94, 0.0, 1.84)
#: HDL-32E: 32 beams evenly spaced from -30.67° to +10.67° elevation.
LIDAR_ELEVATION_DEG = (-30.67, 10.67)
LIDAR_BEAMS = 32
LIDAR_AZIMUTH_STEP_DEG = 1.0


def _check_rays(
    occupied: torch.Tensor, grid: VoxelGrid, origins: torch.Tensor, ends: torch.Tensor, ends_name: str
) -> int:
    check_shape("occupied", occupied, list(grid.shape))
    if occupied.dtype != torch.bool:
        raise TypeError(f"occupied must be a bool tensor, got dtype {occupied.dtype}")
    r = check_shape("origins", origins, ["R", 3])["R"]
    check_shape(ends_name, ends, [r, 3])
    check_floating("origins", origins)
    check_floating(ends_name, ends)
    lo = torch.tensor(grid.range_min, dtype=origins.dtype)
    hi = torch.tensor(grid.range_max, dtype=origins.dtype)
    outside = ((origins < lo) | (origins >= hi)).any(dim=1)
    if bool(outside.any()):
        raise ValueError(
            f"origins must lie inside the grid {grid.range_min}..{grid.range_max} m; {int(outside.sum())} of {r} do not"
        )
    return r


def _voxel_units(points: torch.Tensor, grid: VoxelGrid) -> torch.Tensor:
    lo = torch.tensor(grid.range_min, dtype=torch.float64)
    return (points.double() - lo) / grid.voxel_size


def visibility_mask(
    occupied: torch.Tensor, grid: VoxelGrid, origins: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """Voxels each ray crosses up to and including its first occupied voxel.

    Exact voxel traversal (:func:`gaussrender.geometry.raycast.crossed_voxels`): every voxel
    the ray passes through is marked, however short the piece of the ray inside it, until the
    ray hits an occupied voxel or leaves the grid.

    Args:
        occupied: ``[X, Y, Z]`` bool, True where a voxel stops rays.
        grid: the voxel grid (metres).
        origins: ``[R, 3]`` ray origins inside the grid, metres, grid frame.
        directions: ``[R, 3]`` ray directions (any length; normalised here).

    Returns:
        ``[X, Y, Z]`` bool mask.
    """
    _check_rays(occupied, grid, origins, directions, "directions")
    if bool((directions.double().norm(dim=1) < 1e-9).any()):
        raise ValueError("directions must be non-zero vectors")
    return crossed_voxels(occupied, _voxel_units(origins, grid), directions.double())


def line_of_sight(
    occupied: torch.Tensor, grid: VoxelGrid, origins: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Whether each target point is seen from its origin.

    The segment is walked voxel by voxel (exact traversal); it is blocked by an occupied voxel
    it enters before reaching the target that is neither the target's voxel nor one of its 26
    neighbours. Neighbours are ignored because they belong to the same surface: a ray grazing
    a flat ground towards one of its voxels always passes through the next voxel of that
    ground.

    Args:
        occupied: ``[X, Y, Z]`` bool.
        grid: the voxel grid (metres).
        origins: ``[R, 3]`` points inside the grid, metres, grid frame.
        targets: ``[R, 3]`` points inside the grid, metres, grid frame.

    Returns:
        ``[R]`` bool.
    """
    r = _check_rays(occupied, grid, origins, targets, "targets")
    lo = torch.tensor(grid.range_min, dtype=targets.dtype)
    hi = torch.tensor(grid.range_max, dtype=targets.dtype)
    if bool(((targets < lo) | (targets >= hi)).any()):
        raise ValueError(f"targets must lie inside the grid {grid.range_min}..{grid.range_max} m")
    o, t = _voxel_units(origins, grid), _voxel_units(targets, grid)
    d = t - o
    length = d.norm(dim=1)
    # a target at its origin is seen; any unit direction walks it (its length is 0)
    d = torch.where(length[:, None] > 0, d / length.clamp_min(1e-300)[:, None], torch.tensor([1.0, 0.0, 0.0]))
    goal = t.floor().long()
    code = occupied.reshape(-1)
    visible = torch.ones(r, dtype=torch.bool)
    nx, ny, nz = occupied.shape
    walk = VoxelWalk((nx, ny, nz), o, d)
    for _ in range(sum(occupied.shape)):
        if walk.size == 0:
            break
        ray = walk.ray
        reached = walk.t_enter >= length[ray]  # the segment ends before this voxel
        near_goal = (walk.voxel - goal[ray]).abs().amax(dim=1) <= 1
        blocked = walk.walking & ~reached & code[walk.flat] & ~near_goal
        visible[ray[blocked]] = False
        walk.step(blocked | reached)
    return visible


def _surface(occupied: torch.Tensor) -> torch.Tensor:
    """Occupied voxels with a free 6-neighbour (outside the grid counts as free): the only
    ones a sensor can see."""
    padded = F.pad(occupied[None, None].float(), (1, 1, 1, 1, 1, 1))[0, 0] > 0
    x, y, z = occupied.shape
    inner = torch.ones_like(occupied)
    for axis, size in enumerate((x, y, z)):
        for shift in (0, 2):
            sl = [slice(1, 1 + x), slice(1, 1 + y), slice(1, 1 + z)]
            sl[axis] = slice(shift, shift + size)
            inner &= padded[tuple(sl)]
    return occupied & ~inner


def seen_surfaces(
    occupied: torch.Tensor,
    grid: VoxelGrid,
    sensors: torch.Tensor,
    in_view: Callable[[int, torch.Tensor], torch.Tensor],
    candidates: torch.Tensor,
) -> torch.Tensor:
    """``[X, Y, Z]`` voxels among ``candidates`` (bool, a subset of ``occupied``) with a line
    of sight from one of ``sensors`` ``[S, 3]`` (metres) to the voxel's point nearest to it
    (pulled 5 % inside the voxel). ``in_view(s, points [N, 3]) -> bool [N]`` says which
    points sensor ``s`` can see at all (its field of view)."""
    idx = (candidates & _surface(occupied)).nonzero()
    centres = torch.tensor(grid.range_min) + (idx.float() + 0.5) * grid.voxel_size
    half = 0.45 * grid.voxel_size
    origins, targets, which = [], [], []
    for s, sensor in enumerate(sensors.float()):
        near = centres + (sensor[None] - centres).clamp(-half, half)
        ok = in_view(s, near)
        origins.append(sensor[None].expand(int(ok.sum()), 3))
        targets.append(near[ok])
        which.append(ok.nonzero()[:, 0])
    out = torch.zeros_like(occupied)
    if sum(t.shape[0] for t in targets):
        vis = line_of_sight(occupied, grid, torch.cat(origins), torch.cat(targets))
        sel = idx[torch.cat(which)[vis]]
        out[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    return out


def camera_rays(
    intrinsics: torch.Tensor, cam_from_grid: torch.Tensor, image_size: tuple[int, int], stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through every ``stride``-th pixel centre of pinhole cameras.

    Args:
        intrinsics: ``[V, 3, 3]`` pixels.
        cam_from_grid: ``[V, 4, 4]`` grid-to-OpenCV-camera transforms.
        image_size: (height, width) in pixels.
        stride: pixel spacing of the rays.

    Returns:
        origins ``[R, 3]`` (camera centres, metres) and unit directions ``[R, 3]``, grid frame.
    """
    v = check_shape("intrinsics", intrinsics, ["V", 3, 3])["V"]
    check_shape("cam_from_grid", cam_from_grid, [v, 4, 4])
    h, w = image_size
    us = torch.arange(stride / 2, w, stride, dtype=torch.float64)
    vs = torch.arange(stride / 2, h, stride, dtype=torch.float64)
    uu, vv = torch.meshgrid(us, vs, indexing="xy")
    pix = torch.stack([uu.reshape(-1), vv.reshape(-1), torch.ones(uu.numel(), dtype=torch.float64)], -1)
    d_cam = pix @ torch.linalg.inv(intrinsics.double()).transpose(1, 2)  # [V, P, 3]
    rot = cam_from_grid[:, :3, :3].double()
    d_grid = d_cam @ rot  # R^T d, row vectors
    centres = -(rot.transpose(1, 2) @ cam_from_grid[:, :3, 3:].double())[..., 0]  # [V, 3]
    origins = centres[:, None, :].expand_as(d_grid)
    d_grid = d_grid / d_grid.norm(dim=-1, keepdim=True)
    return origins.reshape(-1, 3), d_grid.reshape(-1, 3)


def lidar_rays(origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays of the spinning LiDAR (:data:`LIDAR_BEAMS` beams, 1° azimuth) from each origin.

    Args:
        origins: ``[T, 3]`` sensor positions, metres, grid frame.

    Returns:
        origins ``[R, 3]`` and unit directions ``[R, 3]``.
    """
    elev = torch.deg2rad(torch.linspace(*LIDAR_ELEVATION_DEG, LIDAR_BEAMS, dtype=torch.float64))
    azim = torch.deg2rad(torch.arange(0.0, 360.0, LIDAR_AZIMUTH_STEP_DEG, dtype=torch.float64))
    e, a = torch.meshgrid(elev, azim, indexing="ij")
    d = torch.stack([e.cos() * a.cos(), e.cos() * a.sin(), e.sin()], -1).reshape(-1, 3)
    o = origins.double()[:, None, :].expand(-1, d.shape[0], -1).reshape(-1, 3)
    return o, d.repeat(origins.shape[0], 1)
