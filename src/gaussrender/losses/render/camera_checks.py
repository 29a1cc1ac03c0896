"""Plausibility of the cameras given to :class:`~gaussrender.GaussRenderLoss`: the mistakes that
give a finite, silently wrong loss, said once per loss module with the fix.

Wrong extrinsics or a swapped image size pass every shape and value check (a camera-to-grid
pose is as rigid as a grid-to-camera one) and still give a finite loss, e.g. ``cam_depth = 0``
because the ground truth renders nothing. Three checks look at the ground truth's non-empty,
non-ignored voxel centres and at the intrinsics:

* **no camera sees the ground truth**: some sample has occupied voxels, but none of them lies
  in front of any of its cameras (beyond the near plane) and projects inside its image (one
  blind camera alone is not reported: a rear camera of a grid that lies ahead, or of a sparse
  scene, legitimately sees nothing);
* **the ground truth is behind the cameras**: more than :data:`BEHIND_FRACTION` of a sample's
  occupied voxels are behind (or at the near plane of) every one of its cameras;
* **a camera is not upright**: the image's down direction (the camera's y axis) points up or
  sideways in the grid frame: its grid-z component exceeds ``-UPRIGHT_COSINE`` (sensor cameras
  of driving datasets are upright and the grids' z axis points up; a camera-to-grid pose
  passed as grid-to-camera turns the camera on its side or upside down, while it often still
  sees some of the ground truth);
* **image_size disagrees with K**: ``2·K[:2, 2]`` (twice the principal point, about the image
  size) differs from ``(W, H)`` by more than :data:`SIZE_TOLERANCE_PX` pixels **and** either
  fits the swapped size ``(H, W)`` better or puts the principal point outside the middle half
  of the image (``|2c - size| > size / 2``). Real principal points sit tens of pixels off
  centre (nuScenes ``2cx - W`` is about 50 px, KITTI-360's ``2cy - H`` about 100 px): a strict
  pixel test alone would warn on correct cameras.

Cost: one pass over the occupied voxels (at most :data:`MAX_CHECKED_VOXELS` per sample, every
k-th beyond) per given camera and a few read-backs of small tensors to the host (device
synchronisations on a GPU). :class:`GaussRenderLoss` runs it on
its first :data:`CHECKED_CALLS` calls with cameras and 3D labels only, and never with
``gr.set_checks(False)``; each warning is given at most once per loss module.
"""

from __future__ import annotations

import torch

from ...geometry.grid import VoxelGrid

__all__ = ["CHECKED_CALLS", "BEHIND_FRACTION", "UPRIGHT_COSINE", "SIZE_TOLERANCE_PX", "camera_warnings"]

#: Calls of a loss module whose cameras are checked (the first ones with cameras and labels).
CHECKED_CALLS = 1
#: "Most" ground-truth voxels behind every camera: more than this fraction.
BEHIND_FRACTION = 0.9
#: A camera is upright when its image's down direction has a grid-z component below minus this
#: (pitched or rolled by less than about 75 degrees).
UPRIGHT_COSINE = 0.25
#: "A few pixels" of disagreement between ``image_size`` and ``2·K[:2, 2]``.
SIZE_TOLERANCE_PX = 4.0
#: At most this many occupied voxels per sample are projected (every k-th one beyond it).
MAX_CHECKED_VOXELS = 100_000
#: Near plane of the check, metres (the renderer's default).
NEAR = 0.2

_POSE_FIX = (
    "cam_from_grid must map grid (ego) coordinates to the OpenCV camera frame (x right, y down, "
    "z forward); if yours is camera -> grid (e.g. sensor2ego), pass its inverse, torch.linalg.inv(T)"
)


def _size_message(intrinsics: torch.Tensor, image_size: tuple[int, int]) -> str | None:
    h, w = float(image_size[0]), float(image_size[1])
    twice = 2.0 * intrinsics[..., :2, 2].reshape(-1, 2).double()  # [N, 2]: (2cx, 2cy)
    given = torch.stack([(twice[:, 0] - w).abs(), (twice[:, 1] - h).abs()], dim=1)
    swapped = torch.stack([(twice[:, 0] - h).abs(), (twice[:, 1] - w).abs()], dim=1)
    off = given.max(dim=1).values > SIZE_TOLERANCE_PX
    swap_fits = swapped.sum(dim=1) < given.sum(dim=1)
    outside = (given[:, 0] > w / 2) | (given[:, 1] > h / 2)
    bad = off & (swap_fits | outside)
    if not bool(bad.any()):
        return None
    i = int(bad.nonzero()[0, 0])
    cx, cy = (float(v) / 2 for v in twice[i])
    hint = (
        f"image_size looks swapped: pass (H, W) = ({image_size[1]}, {image_size[0]})"
        if bool(swap_fits[i])
        else "pass the size of the images the intrinsics are for, or scale K to your size (gr.scale_intrinsics)"
    )
    return (
        f"GaussRenderLoss: image_size (H, W) = {tuple(image_size)} disagrees with the intrinsics: the principal "
        f"point ({cx:.1f}, {cy:.1f}) px suggests an image of about {2 * cx:.0f} x {2 * cy:.0f} (W x H); {hint}"
    )


def camera_warnings(
    grid: VoxelGrid,
    labels: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: tuple[int, int],
) -> list[tuple[str, str]]:
    """The warnings the cameras of a batch deserve, as ``(kind, message)``; empty when they look
    right. Kinds: ``"image_size"``, ``"upright"``, ``"blind"``, ``"behind"``.

    Args: as :func:`~gaussrender.gauss_render_loss` (validated already): ``labels [B, X, Y, Z]``,
    ``intrinsics [B, N, 3, 3]``, ``cam_from_grid [B, N, 4, 4]``, ``image_size (H, W)``.
    """
    messages: list[tuple[str, str]] = []
    intrinsics = intrinsics.to(labels.device)
    cam_from_grid = cam_from_grid.to(labels.device)
    size_message = _size_message(intrinsics, image_size)
    if size_message is not None:
        messages.append(("image_size", size_message))
    down_z = cam_from_grid[..., 1, 2].double()  # [B, N]: the image's down axis, its grid-z component
    tilted = down_z > -UPRIGHT_COSINE
    if bool(tilted.any()):
        b, n = (int(i) for i in tilted.nonzero()[0])
        messages.append(
            (
                "upright",
                f"GaussRenderLoss: camera {n} of sample {b} is not upright: its image's down direction has grid-z "
                f"component {float(down_z[b, n]):+.2f} (an upright camera in a z-up grid: about -1; "
                f"{int(tilted.sum())} camera(s) of the batch are not upright); {_POSE_FIX}",
            )
        )
    with torch.no_grad():
        occupied = (labels != grid.empty_index) & (labels != grid.ignore_index)  # [B, X, Y, Z]
        # centres of the occupied voxels only (no full-grid tensor: 512x512x40 grids exist)
        lo = torch.tensor(grid.range_min, dtype=torch.float64, device=labels.device)
        h, w = image_size
        seen_per_cam, behind_all, counts = [], [], []
        for b in range(labels.shape[0]):
            index = occupied[b].nonzero()
            # every k-th voxel at most MAX_CHECKED_VOXELS: the fractions hold, the memory stays small
            index = index[:: max(1, -(-index.shape[0] // MAX_CHECKED_VOXELS))]
            pts = lo + (index.double() + 0.5) * grid.voxel_size  # [M, 3]
            t = cam_from_grid[b].double()
            cam = torch.einsum("nij,mj->nmi", t[:, :3, :3], pts) + t[:, None, :3, 3]  # [N, M, 3]
            z = cam[..., 2]
            uv = torch.einsum("nij,nmj->nmi", intrinsics[b].double(), cam)
            u, v = uv[..., 0] / z.clamp_min(1e-9), uv[..., 1] / z.clamp_min(1e-9)
            inside = (z > NEAR) & (u > 0) & (u < w) & (v > 0) & (v < h)
            seen_per_cam.append(inside.sum(dim=1))  # [N]
            behind_all.append((z <= NEAR).all(dim=0).sum())
            counts.append(torch.tensor(pts.shape[0], device=labels.device))
        # one read-back for the whole batch
        seen, behind, count = (torch.stack(x).tolist() for x in (seen_per_cam, behind_all, counts))
    blind = [b for b in range(len(count)) if count[b] and not any(seen[b])]
    if blind:
        b = blind[0]
        messages.append(
            (
                "blind",
                f"GaussRenderLoss: none of the {len(seen[b])} camera(s) of sample {b} sees any of the {count[b]} "
                f"ground-truth voxels checked ({len(blind)} sample(s) like it), so the camera terms compare empty "
                f"images; {_POSE_FIX}; check also that the intrinsics are in pixels of image_size (H, W)",
            )
        )
    worst = max(range(len(count)), key=lambda b: behind[b] / max(count[b], 1))
    if count[worst] and behind[worst] > BEHIND_FRACTION * count[worst]:
        messages.append(
            (
                "behind",
                f"GaussRenderLoss: {behind[worst]} of the {count[worst]} ground-truth voxels checked of sample {worst} "
                f"are behind every camera; {_POSE_FIX}",
            )
        )
    return messages
