"""What the sensors would measure in a labelled scene: LiDAR returns and per-pixel 2D targets.

Both cast rays against the label grid with the exact voxel traversal
(:class:`gaussrender.geometry.raycast.VoxelWalk`, the one RayIoU and the visibility masks use)
and stop at the first occupied voxel (any class but ``grid.empty_index`` and
``grid.ignore_index``):

* :func:`lidar_scan`: the spinning roof LiDAR of :mod:`.visibility` (:data:`LIDAR_BEAMS` beams,
  1° azimuth): one return per ray that hits, where the ray *enters* its first occupied voxel,
  labelled with that voxel's class;
* :func:`camera_targets`: one ray per pixel centre: the camera depth (z) of the entry point
  and the class of the voxel, i.e. dense 2D depth and semantic maps.

Frames: the grid frame, metres; cameras OpenCV. The grid's voxels must be cubes.
"""

from __future__ import annotations

import torch

from .._checks import check_shape
from ..geometry.grid import VoxelGrid, get_grid
from ..geometry.points import NO_LABEL
from ..geometry.raycast import VoxelWalk
from .visibility import LIDAR_ORIGIN, camera_rays, lidar_rays

__all__ = ["first_entries", "lidar_scan", "camera_targets"]

# A return is stored this far (voxel units) past the entry face, inside the hit voxel, so that
# the voxel holding the point is the hit voxel whatever the rounding, a float32 round trip
# included (float32 rounding at 40 m is ~3e-6 m, here 4e-4 m on Occ3D); never more than half
# the ray's chord through the voxel.
_INSIDE = 1e-3


def _occupied(semantics: torch.Tensor, grid: VoxelGrid) -> torch.Tensor:
    check_shape("semantics", semantics, list(grid.shape))
    if semantics.dtype.is_floating_point or semantics.dtype == torch.bool:
        raise TypeError(f"semantics must be an integer label tensor, got dtype {semantics.dtype}")
    return (semantics != grid.empty_index) & (semantics != grid.ignore_index)


def first_entries(
    occupied: torch.Tensor, grid: VoxelGrid, origins: torch.Tensor, directions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each ray enters its first occupied voxel (exact traversal).

    Args:
        occupied: ``[X, Y, Z]`` bool.
        grid: the voxel grid (cubic voxels).
        origins: ``[R, 3]`` ray origins, metres, grid frame (inside or outside the grid).
        directions: ``[R, 3]`` non-zero directions (normalised here).

    Returns:
        ``hit [R]`` bool, ``voxel [R, 3]`` int64 (-1 where no hit), ``distance [R]`` float64:
        metres from the origin along the unit direction to the entry into that voxel (0 when
        the origin lies in it; NaN where no hit).
    """
    check_shape("occupied", occupied, list(grid.shape))
    n = check_shape("origins", origins, ["R", 3])["R"]
    check_shape("directions", directions, [n, 3])
    d = directions.to(torch.float64)
    length = d.norm(dim=1, keepdim=True)
    if n and bool((length == 0).any()):
        raise ValueError("directions must be non-zero vectors")
    d = d / length
    lo = torch.tensor(grid.range_min, dtype=torch.float64)
    o = (origins.to(torch.float64) - lo) / grid.voxel_size
    hit = torch.zeros(n, dtype=torch.bool)
    voxel = torch.full((n, 3), -1, dtype=torch.int64)
    t_in = torch.full((n,), float("nan"), dtype=torch.float64)
    nx, ny, nz = grid.shape
    walk = VoxelWalk((nx, ny, nz), o, d)
    code = occupied.reshape(-1)
    for _ in range(sum(grid.shape)):
        if walk.size == 0:
            break
        now = code[walk.flat] & walk.walking
        if bool(now.any()):
            rays = walk.ray[now]
            hit[rays] = True
            voxel[rays] = walk.voxel[now]
            t_in[rays] = walk.t_enter[now]
        walk.step(now)
    return hit, voxel, t_in * grid.voxel_size


def _returns(
    semantics: torch.Tensor, grid: VoxelGrid, origins: torch.Tensor, directions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``hit [R]``, entry distance ``[R]`` (metres), point inside the hit voxel ``[R, 3]``, class ``[R]`` uint8."""
    occupied = _occupied(semantics, grid)
    hit, voxel, dist = first_entries(occupied, grid, origins, directions)
    d = directions.to(torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    o = origins.to(torch.float64)
    # the point stored is nudged past the entry face so that it lies inside the hit voxel
    lo = torch.tensor(grid.range_min, dtype=torch.float64)
    far = (lo + (voxel.clamp_min(0) + (d > 0).to(torch.float64)) * grid.voxel_size - o) / torch.where(
        d == 0, torch.ones_like(d), d
    )
    t_exit = torch.where(d == 0, torch.full_like(far, float("inf")), far).amin(dim=1)
    nudge = torch.minimum(torch.full_like(dist, _INSIDE * grid.voxel_size), (t_exit - dist) / 2)
    points = o + (dist + nudge)[:, None] * d
    labels = torch.full((hit.shape[0],), NO_LABEL, dtype=torch.uint8)
    v = voxel[hit]
    labels[hit] = semantics[v[:, 0], v[:, 1], v[:, 2]].to(torch.uint8)
    return hit, dist, points, labels


def lidar_scan(
    semantics: torch.Tensor, grid: VoxelGrid | str, origin: tuple[float, float, float] = LIDAR_ORIGIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """A simulated LiDAR sweep of a label grid: first-hit returns with their classes.

    Rays: :func:`gaussrender.scene.lidar_rays` from ``origin`` (32 beams from -30.67° to
    +10.67°, 1° azimuth steps: 11520 rays). Rays that leave the grid without hitting give no
    return.

    Args:
        semantics: ``[X, Y, Z]`` integer labels (``grid.empty_index`` free).
        grid: the grid of ``semantics`` (or a preset name); cubic voxels.
        origin: the sensor position, metres, grid frame (default the nuScenes roof LiDAR on
            a ground at z = 0).

    Returns:
        ``points [N, 3]`` float64, metres, grid frame: where each ray enters its first occupied
        voxel, moved ``min(1e-3 voxel, half the ray's chord through it)`` further along the
        ray so that the point lies in that voxel;
        ``labels [N]`` uint8: that voxel's class.
    """
    grid = get_grid(grid)
    o, d = lidar_rays(torch.tensor([origin], dtype=torch.float64))
    hit, _, points, labels = _returns(semantics, grid, o, d)
    return points[hit], labels[hit]


def camera_targets(
    semantics: torch.Tensor,
    grid: VoxelGrid | str,
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense 2D targets by casting one ray per pixel centre into the label grid.

    Pixel ``(r, c)`` casts the ray from the camera centre through ``(c + 0.5, r + 0.5)`` (the
    renderer's pixel centres); it returns the first occupied voxel it enters.

    Args:
        semantics: ``[X, Y, Z]`` integer labels.
        grid: the grid of ``semantics`` (or a preset name); cubic voxels.
        intrinsics: ``[V, 3, 3]`` pinhole intrinsics, pixels.
        cam_from_grid: ``[V, 4, 4]`` grid → OpenCV camera.
        image_size: ``(H, W)`` pixels.

    Returns:
        ``depth [V, H, W]`` float64: camera z of the entry point, metres, 0 where the ray
        hits nothing inside the grid; ``labels [V, H, W]`` uint8: the hit voxel's class, 255
        where none.
    """
    grid = get_grid(grid)
    v = check_shape("intrinsics", intrinsics, ["V", 3, 3])["V"]
    check_shape("cam_from_grid", cam_from_grid, [v, 4, 4])
    h, w = (int(s) for s in image_size)
    o, d = camera_rays(intrinsics.to(torch.float64), cam_from_grid.to(torch.float64), (h, w), 1)
    hit, dist, _, labels = _returns(semantics, grid, o, d)
    # camera z of the entry point: the ray's unit direction has z = dot(row 2 of R, d)
    rot_z = cam_from_grid.to(torch.float64)[:, 2, :3]  # [V, 3]
    dz = (d.view(v, h * w, 3) * rot_z[:, None, :]).sum(dim=-1).reshape(-1)
    depth = torch.where(hit, dist * dz, torch.zeros_like(dist))
    return depth.view(v, h, w), labels.view(v, h, w)
