"""Point clouds (LiDAR returns) as supervision: sparse depth/label images and voxel labels.

* :func:`project_points`: z-buffer points into the cameras, giving per-pixel depth and the
  label of the nearest point (the 2D targets of LiDAR supervision).
* :func:`voxels_from_points`: the voxels the points fall in, labelled by their points, and
  the ignore index elsewhere (a sparse 3D target usable as ``labels`` of the loss).

Frames: points are in the grid frame (the benchmark's ego/LiDAR frame), metres; cameras are
OpenCV (x right, y down, z forward), as in :mod:`.cameras`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import (
    MAX_COORDINATE,
    check_finite,
    check_floating,
    check_int,
    check_integer,
    check_intrinsics,
    check_memory,
    check_rigid,
    check_shape,
    checks_enabled,
)
from .cameras import Cameras
from .grid import VoxelGrid, get_grid

__all__ = ["NO_LABEL", "project_points", "voxels_from_points"]

#: Label of a pixel that no labelled point reaches (and the largest label a point may carry).
NO_LABEL = 255


def _check_points(points: torch.Tensor) -> int:
    n = check_shape("points", points, ["N", 3])["N"]
    check_floating("points", points)
    check_finite("points", points, MAX_COORDINATE, unit="metres")
    return n


def _check_point_labels(labels: torch.Tensor, n: int, points: torch.Tensor, high: int, allowed: int | None) -> None:
    check_shape("labels", labels, [n])
    check_integer("labels", labels)
    if labels.device != points.device:
        raise ValueError(f"labels is on {labels.device} but points on {points.device}; expected one device")
    if checks_enabled() and labels.numel():
        # compared as int64: a uint8 tensor would wrap the bounds (256 -> 0, -1 -> 255)
        lab = labels.long()
        bad = (lab < 0) | ((lab >= high) & (lab != (allowed if allowed is not None else -1)))
        if bool(bad.any()):
            values = torch.unique(lab[bad])[:5].tolist()
            extra = f" or {allowed}" if allowed is not None else ""
            raise ValueError(f"labels must hold values in [0, {high}){extra}; found {values}")


def project_points(
    points: torch.Tensor,
    labels: torch.Tensor | None,
    cam_from_grid: torch.Tensor,
    intrinsics: torch.Tensor,
    image_size: Sequence[int],
    near: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Z-buffer a point cloud into pinhole cameras: per-pixel depth and label of the nearest point.

    Pixel convention (that of :class:`Cameras` and the renderer): pixel (row ``r``, column
    ``c``) is the square ``c <= u < c + 1``, ``r <= v < r + 1`` whose centre ``(c + 0.5,
    r + 0.5)`` the renderer samples; a point projecting to ``(u, v)`` lands in column
    ``floor(u)`` and row ``floor(v)``. Points with camera depth ``z <= near`` (behind the camera)
    or projecting outside ``[0, W) x [0, H)`` are dropped. The projection is computed in
    float64 whatever the input dtype: ``x_cam = R @ p + t`` and ``u = fx x/z + s y/z + cx``,
    ``v = fy y/z + cy`` (``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]``).

    Each pixel keeps the point of smallest depth; among points of exactly equal depth, the
    one that comes first in ``points`` (smallest index) wins, so the result is deterministic.

    Args:
        points: ``[N, 3]`` floating, grid (ego) frame, metres; finite, ``|x| <= 1e6``.
        labels: ``[N]`` integer labels in ``[0, 255]`` (255: a return without a label), or None.
        cam_from_grid: ``[V, 4, 4]`` rigid transforms from the grid frame to OpenCV cameras.
        intrinsics: ``[V, 3, 3]`` pinhole intrinsics, pixels.
        image_size: ``(H, W)`` pixels.
        near: depth below which points are dropped, metres; finite and > 0.

    Returns:
        ``depth [V, H, W]`` (``points``' dtype): camera z of the nearest point, metres, 0 where
        no point lands; ``label [V, H, W]`` uint8: that point's label, 255 where no point
        lands (None when ``labels`` is None).

    Raises:
        TypeError, ValueError: naming the argument: shapes, dtypes, devices, NaN/inf or
            coordinates beyond 1e6 m, labels out of range, a non-rigid ``cam_from_grid``,
            singular or malformed intrinsics, a bad image size or ``near``.

    Example:
        >>> import torch, gaussrender as gr
        >>> k = torch.tensor([[[10.0, 0, 2], [0, 10, 2], [0, 0, 1]]])
        >>> pts, labels = torch.tensor([[0.0, 0, 5]]), torch.tensor([3])
        >>> depth, label = gr.project_points(pts, labels, torch.eye(4)[None], k, (4, 4))
        >>> float(depth[0, 2, 2]), int(label[0, 2, 2]), int((depth > 0).sum())
        (5.0, 3, 1)
    """
    n = _check_points(points)
    if labels is not None:
        _check_point_labels(labels, n, points, NO_LABEL + 1, None)
    if isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence) or len(image_size) != 2:
        raise ValueError(f"image_size must be (H, W), got {image_size!r}")
    height = check_int("image_size[0]", image_size[0], 1, unit="pixels")
    width = check_int("image_size[1]", image_size[1], 1, unit="pixels")
    views = check_shape("cam_from_grid", cam_from_grid, ["V", 4, 4])["V"]
    check_shape("intrinsics", intrinsics, [views, 3, 3])
    # named here (Cameras would say cam_from_world); Cameras then checks devices and near
    check_rigid("cam_from_grid", cam_from_grid)
    check_intrinsics("intrinsics", intrinsics)
    cams = Cameras(cam_from_grid, intrinsics, width, height, near=near)
    if points.device != cams.device:
        raise ValueError(f"points is on {points.device} but cam_from_grid on {cams.device}; expected one device")
    device = points.device
    pixel_bytes, point_bytes = project_points_bytes(n, views, height, width)
    check_memory(
        "image_size" if pixel_bytes >= point_bytes else "points",
        pixel_bytes + point_bytes,
        device,
        f"z-buffering {n} point(s) into {views} view(s) of {width}x{height} pixels",
        "use smaller images (image_size), fewer views or fewer points",
    )
    depth = torch.zeros(views * height * width, dtype=torch.float64, device=device)
    label = torch.full((views * height * width,), NO_LABEL, dtype=torch.uint8, device=device)
    if n:
        p = points.to(torch.float64)
        w = cam_from_grid.to(torch.float64)
        k = intrinsics.to(torch.float64)
        # written out term by term (no matmul): the summation order is fixed, so a float64
        # scalar reference reproduces every value bit for bit
        px, py, pz = p[None, :, 0], p[None, :, 1], p[None, :, 2]
        cam = [
            w[:, i, 0, None] * px + w[:, i, 1, None] * py + w[:, i, 2, None] * pz + w[:, i, 3, None] for i in range(3)
        ]
        z = cam[2]
        z_safe = torch.where(z > near, z, torch.ones_like(z))
        x, y = cam[0] / z_safe, cam[1] / z_safe
        u = k[:, 0, 0, None] * x + k[:, 0, 1, None] * y + k[:, 0, 2, None]
        v = k[:, 1, 1, None] * y + k[:, 1, 2, None]
        keep = (z > near) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        view, index = keep.nonzero(as_tuple=True)
        col = torch.floor(u[view, index]).long()
        row = torch.floor(v[view, index]).long()
        pixel = (view * height + row) * width + col
        zk = z[view, index]
        # scatter-min of the depth, then among the points at that exact depth the smallest
        # point index: two deterministic reductions, no ordering left to the device
        zmin = torch.full_like(depth, float("inf")).scatter_reduce(0, pixel, zk, "amin")
        at_min = zk == zmin[pixel]
        winner = torch.full((depth.numel(),), n, dtype=torch.long, device=device)
        winner = winner.scatter_reduce(0, pixel[at_min], index[at_min], "amin")
        hit = winner < n
        depth[hit] = zmin[hit]
        if labels is not None:
            label[hit] = labels[winner[hit]].to(torch.uint8)
    shape = (views, height, width)
    return depth.to(points.dtype).view(shape), (label.view(shape) if labels is not None else None)


def project_points_bytes(points: int, views: int, height: int, width: int) -> tuple[int, int]:
    """A lower bound on the bytes :func:`project_points` holds at once: ``(per-pixel, per-point)``.

    Per pixel and view: the float64 depth and depth minimum, the int64 winner, the uint8
    label, the hit mask and the returned depth (34 bytes). Per point and view: the float64
    camera coordinates, safe depth, normalised and pixel coordinates (8 values) and the keep
    mask (65 bytes). Python ints: a huge ``image_size`` never overflows.
    """
    return views * height * width * 34, views * points * 65


def voxels_from_points(grid: VoxelGrid | str, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Voxel labels ``[X, Y, Z]`` from labelled points: each voxel a point falls in takes a point label.

    A point falls in voxel ``floor((p - range_min) / voxel_size)`` (:meth:`VoxelGrid.voxel_index`);
    points outside the grid are dropped, and so are points labelled ``grid.ignore_index``
    (they vote for nothing). A voxel holding several points takes the majority label, ties going
    to the smaller class index; a voxel no point reaches gets ``grid.ignore_index``.

    As ``labels`` of :class:`~gaussrender.GaussRenderLoss` this is a sparse target: the loss
    renders the ground truth from voxels that are neither empty nor ignore, and the prediction
    only from voxels that are not ignore, so both images show the hit voxels alone (no free
    space is supervised along the LiDAR rays).

    Args:
        grid: the voxel grid (or a preset name).
        points: ``[N, 3]`` floating, grid frame, metres; finite, ``|x| <= 1e6``.
        labels: ``[N]`` integer class indices in ``[0, num_classes)`` or ``grid.ignore_index``.

    Returns:
        ``[X, Y, Z]`` labels on ``points``' device: uint8 when ``grid.ignore_index`` and every
        class index fit in it (every preset), int64 otherwise.

    Raises:
        TypeError, ValueError: naming the argument: shapes, dtypes, devices, NaN/inf or
            coordinates beyond 1e6 m, labels out of range.

    Example:
        >>> import torch, gaussrender as gr
        >>> pts = torch.tensor([[0.1, 0.1, 0.1], [0.2, 0.3, 0.1], [0.3, 0.2, 0.1], [99.0, 0, 0]])
        >>> vox = gr.voxels_from_points("occ3d", pts, torch.tensor([4, 11, 11, 4]))
        >>> int(vox[100, 100, 2]), int((vox != 255).sum())
        (11, 1)
    """
    grid = get_grid(grid)
    n = _check_points(points)
    _check_point_labels(labels, n, points, grid.num_classes, grid.ignore_index)
    small = 0 <= grid.ignore_index <= 255 and grid.num_classes <= 256
    dtype = torch.uint8 if small else torch.long
    num_voxels = grid.shape[0] * grid.shape[1] * grid.shape[2]
    # the output, the int64 best score per voxel and its hit mask, before any allocation
    check_memory(
        "grid",
        num_voxels * (10 if small else 17) + n * 64,
        points.device,
        f"labelling the {num_voxels} voxels of grid {grid.name!r} from {n} point(s)",
        "use a coarser grid",
    )
    out = torch.full((num_voxels,), grid.ignore_index, dtype=dtype, device=points.device)
    idx, inside = grid.voxel_index(points.to(torch.float64))
    inside = inside & (labels != grid.ignore_index)
    if n and bool(inside.any()):
        ix = idx[inside]
        voxel = (ix[:, 0] * grid.shape[1] + ix[:, 1]) * grid.shape[2] + ix[:, 2]
        c = grid.num_classes
        keys, counts = torch.unique(voxel * c + labels[inside].long(), return_counts=True)
        vox, cls = torch.div(keys, c, rounding_mode="floor"), keys % c
        # one score per (voxel, class): more points first, then the smaller class index
        score = counts * c + (c - 1 - cls)
        best = torch.full((num_voxels,), -1, dtype=torch.long, device=points.device)
        best = best.scatter_reduce(0, vox, score, "amax")
        hit = best >= 0
        out[hit] = (c - 1 - best[hit] % c).to(dtype)
    return out.view(grid.shape)
