"""Cameras of mmdet3d data samples: ``cam2img``, ``lidar2cam`` / ``ego2img``, ``img_shape`` ->
the loss's and the metric's ``intrinsics``, ``cam_from_grid``, ``image_size``.

A data sample (a dict, or an object such as mmdet3d's ``Det3DDataSample``) holds the values
directly (``intrinsics``, ``cam_from_grid``, ``image_size``: our names) or in mmdet3d's
``metainfo`` names:

* ``cam2img`` ``[Ncam, 3|4, 3|4]``: the camera matrices, pixels (its top-left ``3 x 3``);
* the grid-to-camera pose, by the grid's frame: a LiDAR-frame grid (SurroundOcc, KITTI-360)
  reads ``lidar2cam`` ``[Ncam, 4, 4]`` (else ``inv(cam2img) @ lidar2img``); an ego-frame grid
  (Occ3D) reads ``ego2cam`` (else ``inv(cam2img) @ ego2img``);
* ``img_shape`` ``(H, W)`` (or ``(H, W, C)``, or one such per camera, all equal; else
  ``ori_shape``): the size of the images ``cam2img`` is for.

Each key is looked up on the sample itself, then in its ``metainfo``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..geometry.grid import VoxelGrid, get_grid

__all__ = ["GRID_FRAMES", "default_grid_frame", "sample_value", "cameras_from_sample", "cameras_from_samples"]

#: The frames a grid can be in, with the metainfo keys that give grid -> camera.
GRID_FRAMES = ("ego", "lidar")
_DEFAULT_FRAME = {"occ3d": "ego", "surroundocc": "lidar", "kitti360": "lidar"}
_MISSING = object()


def default_grid_frame(grid: VoxelGrid | str) -> str | None:
    """``"ego"`` for Occ3D's grid, ``"lidar"`` for SurroundOcc's and KITTI-360's, None otherwise."""
    return _DEFAULT_FRAME.get(get_grid(grid).name)


def sample_value(sample: Any, key: str, default: Any = _MISSING) -> Any:
    """``sample[key]`` / ``sample.key``, else the same key of its ``metainfo``; ``default`` (or
    a ``KeyError`` naming what the sample has) when neither holds it."""
    for holder in (sample, _get(sample, "metainfo", None)):
        value = _get(holder, key, _MISSING) if holder is not None else _MISSING
        if value is not _MISSING:
            return value
    if default is not _MISSING:
        return default
    have = sorted(sample) if isinstance(sample, Mapping) else sorted(k for k in dir(sample) if not k.startswith("_"))
    meta = _get(sample, "metainfo", None)
    if isinstance(meta, Mapping):
        have += [f"metainfo.{k}" for k in sorted(meta)]
    raise KeyError(f"data sample {type(sample).__name__} has no {key!r} (nor metainfo {key!r}); it has {have}")


def _get(holder: Any, key: str, default: Any) -> Any:
    if isinstance(holder, Mapping):
        return holder.get(key, default)
    return getattr(holder, key, default)


def _matrices(name: str, value: Any, rows: Sequence[int]) -> np.ndarray:
    arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] not in rows or arr.shape[2] not in rows:
        sides = "|".join(map(str, rows))
        raise ValueError(f"{name} must be [Ncam, {sides}, {sides}] matrices, got shape {list(arr.shape)}")
    return arr


def _homogeneous(m: np.ndarray) -> np.ndarray:
    """``[N, r, c]`` (r, c in 3, 4) -> ``[N, 4, 4]`` with the identity's missing rows/columns."""
    out = np.broadcast_to(np.eye(4), (m.shape[0], 4, 4)).copy()
    out[:, : m.shape[1], : m.shape[2]] = m
    return out


def _image_size(value: Any) -> tuple[int, int]:
    """``(H, W)`` from ``(H, W)``, ``(H, W, C)`` or one of those per camera (all equal)."""
    raw = value.tolist() if isinstance(value, (np.ndarray, torch.Tensor)) else value
    nested = isinstance(raw, (list, tuple)) and len(raw) > 0 and isinstance(raw[0], (list, tuple))
    sizes = list(raw) if nested else [raw]
    found: set[tuple[int, int]] = set()
    for size in sizes:
        if not isinstance(size, (list, tuple)) or len(size) not in (2, 3):
            raise ValueError(f"img_shape must be (H, W) (or one (H, W) per camera, all equal), got {value!r}")
        found.add((int(size[0]), int(size[1])))
    if len(found) != 1:
        raise ValueError(f"img_shape differs between cameras {sorted(found)}; the loss and the metric take one size")
    return found.pop()


def cameras_from_sample(sample: Any, grid_frame: str | None) -> dict[str, Any]:
    """``{"intrinsics": [Ncam, 3, 3], "cam_from_grid": [Ncam, 4, 4], "image_size": (H, W)}``
    (float32 tensors) of one data sample, from our keys or mmdet3d's metainfo (module doc).

    Args:
        grid_frame: ``"ego"`` or ``"lidar"``: the frame the voxel grid is in; needed only
            when the pose comes from mmdet3d's keys (None: refused then, naming it).
    """
    if grid_frame is not None and grid_frame not in GRID_FRAMES:
        raise ValueError(f"grid_frame must be one of {GRID_FRAMES}, got {grid_frame!r}")
    direct_k = sample_value(sample, "intrinsics", None)
    cam2img = sample_value(sample, "cam2img", None) if direct_k is None else None
    if direct_k is None and cam2img is None:
        sample_value(sample, "intrinsics")  # raises, naming what the sample has
    if direct_k is not None:
        k = _matrices("intrinsics", direct_k, (3, 4))
    else:
        k = _matrices("cam2img", cam2img, (3, 4))
    pose = sample_value(sample, "cam_from_grid", None)
    if pose is None and grid_frame is None:
        raise ValueError(
            "data sample has no cam_from_grid; to read mmdet3d's lidar2cam / ego2img, give grid_frame "
            "('ego' or 'lidar', the frame of the voxel grid)"
        )
    if pose is None:
        direct = "lidar2cam" if grid_frame == "lidar" else "ego2cam"
        projection = "lidar2img" if grid_frame == "lidar" else "ego2img"
        pose = sample_value(sample, direct, None)
        if pose is None:
            proj = sample_value(sample, projection, None)
            if proj is None or cam2img is None:
                raise KeyError(
                    f"data sample has no cam_from_grid, {direct!r} nor {projection!r} with 'cam2img' "
                    f"(grid_frame={grid_frame!r}); pass the grid-to-camera poses under one of them"
                )
            pose = np.linalg.inv(_homogeneous(k)) @ _homogeneous(_matrices(projection, proj, (3, 4)))
    t = _homogeneous(_matrices("cam_from_grid", pose, (4,)))
    size = sample_value(sample, "image_size", None)
    if size is None:
        size = sample_value(sample, "img_shape", None)
        if size is None:
            size = sample_value(sample, "ori_shape")
    if k.shape[0] != t.shape[0]:
        raise ValueError(f"data sample has {k.shape[0]} camera matrices but {t.shape[0]} poses")
    return {
        "intrinsics": torch.from_numpy(k[:, :3, :3]).float(),
        "cam_from_grid": torch.from_numpy(t).float(),
        "image_size": _image_size(size),
    }


def cameras_from_samples(
    samples: Sequence[Any], grid: VoxelGrid | str, grid_frame: str | None = None
) -> dict[str, Any]:
    """The loss's camera arguments for a batch of data samples: ``intrinsics [B, Ncam, 3, 3]``,
    ``cam_from_grid [B, Ncam, 4, 4]`` (float32, CPU) and ``image_size (H, W)`` (one for the batch).

    ``grid_frame`` defaults to the grid's (``"ego"`` for Occ3D, ``"lidar"`` for SurroundOcc and
    KITTI-360); another grid needs it given when the poses come from mmdet3d's keys.
    """
    frame = grid_frame if grid_frame is not None else default_grid_frame(grid)
    cams = [cameras_from_sample(s, frame) for s in samples]
    if not cams:
        raise ValueError("no data sample given")
    sizes = {c["image_size"] for c in cams}
    if len(sizes) != 1:
        raise ValueError(f"the batch's samples have different image sizes {sorted(sizes)}; the loss takes one")
    return {
        "intrinsics": torch.stack([c["intrinsics"] for c in cams]),
        "cam_from_grid": torch.stack([c["cam_from_grid"] for c in cams]),
        "image_size": sizes.pop(),
    }
