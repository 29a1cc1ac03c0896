"""Free space along the 2D targets' rays, in voxels (``target_carve`` of
:class:`~gaussrender.losses.render.options.RenderLossOptions`; issue 27).

A depth image says, per pixel, that the camera ray through the pixel centre crosses free space
up to the return and meets a surface there; a label image says which class that surface is.
:func:`carve_labels` walks every such ray through the grid (the exact voxel traversal of
:class:`~gaussrender.geometry.raycast.VoxelWalk`) and turns it into voxel labels: the voxels
the ray crosses before its return are empty, the voxel it enters at the return holds the
pixel's class; with ``sky`` (dense targets) a pixel without a return marks every voxel its ray
crosses empty. :func:`carve_term` is the cross-entropy of the logits on those voxels. Only
the 2D targets and their cameras are read; no 3D label.
"""

from __future__ import annotations

import torch

from ...geometry.cameras import Cameras
from ...geometry.grid import VoxelGrid
from ...geometry.raycast import VoxelWalk
from .terms import NO_TARGET

__all__ = ["CARVE_TOLERANCE", "CARVE_HIT_OFFSET", "OCCUPIED", "carve_labels", "carve_term"]

#: Voxel units: a voxel whose exit lies at most this far beyond the return still counts as
#: crossed before it (the target depth is float32: its rounding must not turn the voxel in
#: front of a surface into the surface's).
CARVE_TOLERANCE = 1e-3
#: Voxel units: the return's voxel is the one the ray is in this far past the target depth. A
#: LiDAR return lies on the face where its beam entered the voxel; seen from the camera, the ray
#: through the pixel centre at that depth can fall just in front of the face (the pixel's width,
#: the other origin), so the voxel at the depth itself is often the free one before the surface.
CARVE_HIT_OFFSET = 0.25
#: The carved label of a voxel with a return whose pixel has no class: "some class, not empty".
OCCUPIED = -2


def _pixel_rays(cameras: Cameras, depth: torch.Tensor, grid: VoxelGrid) -> tuple[torch.Tensor, ...]:
    """Origins ``[V*H*W, 3]`` and unit directions (grid frame, voxel units, float64) of the rays
    through every pixel centre, and the distance along them to the return (voxel units; 0
    where the depth is 0)."""
    views, height, width = depth.shape
    k = cameras.intrinsics.double()
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=depth.device) + 0.5,
        torch.arange(width, dtype=torch.float64, device=depth.device) + 0.5,
        indexing="ij",
    )
    y = (v - k[:, 1, 2, None, None]) / k[:, 1, 1, None, None]
    x = (u - k[:, 0, 2, None, None] - k[:, 0, 1, None, None] * y) / k[:, 0, 0, None, None]
    ray_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [V, H, W, 3]: camera z = 1
    cam_from_grid = cameras.cam_from_world.double()
    rot_t = cam_from_grid[:, :3, :3]  # grid -> camera rotation; its transpose maps back
    direction = torch.einsum("vji,vhwj->vhwi", rot_t, ray_cam)
    centre = -torch.einsum("vji,vj->vi", rot_t, cam_from_grid[:, :3, 3])  # camera centre, grid frame
    lo = torch.tensor(grid.range_min, dtype=torch.float64, device=depth.device)
    origin = ((centre - lo) / grid.voxel_size)[:, None, None].expand(views, height, width, 3)
    length = direction.norm(dim=-1)
    distance = depth.double() * length / grid.voxel_size  # camera z -> along the unit direction
    return origin.reshape(-1, 3), (direction / length[..., None]).reshape(-1, 3), distance.reshape(-1)


@torch.no_grad()
def carve_labels(
    cameras: Cameras,
    target_depth: torch.Tensor,
    target_semantics: torch.Tensor | None,
    grid: VoxelGrid,
    sky: bool,
    hit_offset: float = CARVE_HIT_OFFSET,
) -> torch.Tensor:
    """Voxel labels ``[X, Y, Z]`` int64 from one sample's 2D targets ``[V, H, W]`` in ``cameras``
    (at the targets' resolution): ``grid.empty_index`` where a ray crosses the voxel before its
    return (or, with ``sky``, a ray without a return crosses it), the pixel's class in the voxel
    the ray enters at its return (:data:`OCCUPIED` when the pixel has no class), and
    ``grid.ignore_index`` elsewhere.

    Along a ray with a return at distance ``t`` (voxel units): a voxel it leaves by ``t`` (+
    :data:`CARVE_TOLERANCE`) is crossed (empty), the voxel it is in at ``t + hit_offset`` holds
    the return, and a voxel it leaves between the two is left out (neither).

    A voxel that one ray crosses and another ends in holds a surface (the returns win over free
    space); several returns in one voxel vote, ties to the smaller class index, a class beating
    :data:`OCCUPIED`.
    """
    origin, direction, distance = _pixel_rays(cameras, target_depth, grid)
    hit = distance > 0
    classes = None
    if target_semantics is not None:
        classes = target_semantics.reshape(-1).long()
    walking = hit | sky if sky else hit
    ids = walking.nonzero().squeeze(1)
    shape = (int(grid.shape[0]), int(grid.shape[1]), int(grid.shape[2]))
    numel = shape[0] * shape[1] * shape[2]
    free = torch.zeros(numel, dtype=torch.bool, device=target_depth.device)
    votes = torch.zeros(numel, grid.num_classes + 1, dtype=torch.int64, device=target_depth.device)
    walk = VoxelWalk(shape, origin[ids], direction[ids])
    ray_hit, ray_distance = hit[ids], distance[ids]
    for _ in range(sum(shape) + 1):
        if walk.size == 0:
            break
        ray, flat, walking_now = walk.ray, walk.flat, walk.walking
        t_exit, t_enter = walk.t_exit, walk.t_enter
        t_ray = ray_distance[ray]
        crossed = walking_now & ~(ray_hit[ray] & (t_exit > t_ray + CARVE_TOLERANCE))
        free[flat[crossed]] = True
        ends = ray_hit[ray] & (t_exit > t_ray + hit_offset)  # the voxel of the return
        stop = walking_now & ends & (t_enter <= t_ray + hit_offset)
        if bool(stop.any()):
            label = torch.full_like(ray[stop], grid.num_classes)  # column C: no class
            if classes is not None:
                pixel = classes[ids[ray[stop]]]
                label = torch.where(pixel == NO_TARGET, label, pixel)
            votes.index_put_((flat[stop], label), torch.ones_like(label), accumulate=True)
        walk.step(ends)
    labels = torch.full((numel,), grid.ignore_index, dtype=torch.int64, device=target_depth.device)
    labels[free] = grid.empty_index
    counts = votes[:, : grid.num_classes]
    has_class = counts.sum(1) > 0
    labels = torch.where(has_class, counts.argmax(1), labels)  # argmax: ties to the smaller index
    labels = torch.where(~has_class & (votes[:, grid.num_classes] > 0), torch.full_like(labels, OCCUPIED), labels)
    return labels.reshape(shape)


def carve_term(
    logits: torch.Tensor, carved: torch.Tensor, grid: VoxelGrid, empty_weight: float | None = None
) -> torch.Tensor:
    """Cross-entropy of ``logits [C, X, Y, Z]`` on the carved voxels ``[X, Y, Z]`` of
    :func:`carve_labels`: ``-log p[label]``, and for :data:`OCCUPIED` ``-log(1 - p_empty)``.

    ``empty_weight`` None: the empty voxels and the surface voxels weigh half each (the mean
    over each group, then their mean; a group that is absent leaves the other's mean alone): a
    ray crosses several free voxels for its one return, and a plain mean taught a model to
    leave half the ground empty (docs/supervision.md). A number: the weighted mean with that
    weight on the empty voxels and 1 on the others (0.5: the release's Occ3D ratio of the empty
    class's cross-entropy weight to the others'). Zero when nothing is carved.
    """
    flat = carved.reshape(-1)
    scores = logits.reshape(logits.shape[0], -1)
    keep = (flat != grid.ignore_index).nonzero().squeeze(1)
    if keep.numel() == 0:
        return logits.sum() * 0.0
    log_p = torch.log_softmax(scores[:, keep], dim=0)  # [C, N]
    label = flat[keep]
    occupied = label == OCCUPIED
    picked = log_p.gather(0, label.clamp_min(0)[None])[0]
    not_empty = torch.log1p(-log_p[grid.empty_index].exp().clamp_max(1.0 - 1e-7))
    nll = -torch.where(occupied, not_empty, picked)
    empty = label == grid.empty_index
    if empty_weight is not None:
        weight = torch.where(empty, torch.full_like(nll, float(empty_weight)), torch.ones_like(nll))
        return (weight * nll).sum() / weight.sum().clamp_min(1e-12)
    groups = [nll[m].mean() for m in (empty, ~empty) if bool(m.any())]
    return sum(groups[1:], groups[0]) / len(groups)
