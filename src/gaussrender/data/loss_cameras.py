"""The loss's camera arguments from an infos entry: :func:`loss_cameras`.

:class:`~gaussrender.GaussRenderLoss` takes ``intrinsics``, ``cam_from_grid`` and
``image_size``; an infos file holds, per sample, each camera's K, its ``sensor2ego`` and
``ego2global`` poses and the sample's ``lidar2ego`` / ``ego2global``. This module does the
chain once for every benchmark: grid frame -> reference ego frame (Occ3D: the ego itself;
SurroundOcc: through ``lidar2ego``) -> the camera's ego pose at its own timestamp -> camera
(OpenCV axes), as the dataset readers do; KITTI-360's grid is the Velodyne frame
(``cam_from_velo`` of its calibration).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..geometry.grid import VoxelGrid, get_grid
from .files import resolve_data_path
from .images import stored_image_size
from .infos import CAMERA_NAMES, SampleInfo, _parse_sample
from .kitti360 import KITTI360_IMAGE_SIZE, Kitti360Calibration
from .nuscenes import NUSCENES_IMAGE_SIZE, cam_from_ego

__all__ = ["LossCameras", "loss_cameras", "GRID_FRAMES"]

#: The frame of each preset grid: Occ3D's is the ego frame, SurroundOcc's the LiDAR frame,
#: KITTI-360's the Velodyne frame.
GRID_FRAMES = {"occ3d": "ego", "surroundocc": "lidar", "kitti360": "velodyne"}


class LossCameras(NamedTuple):
    """The camera arguments of :class:`~gaussrender.GaussRenderLoss` for one sample (or a batch).

    Attributes:
        intrinsics: float32 ``[Ncam, 3, 3]`` (``[B, Ncam, 3, 3]`` for a batch), pixels of ``image_size``.
        cam_from_grid: float32 ``[Ncam, 4, 4]`` (``[B, Ncam, 4, 4]``): grid frame -> OpenCV camera, metres.
        image_size: ``(H, W)`` pixels of the images the intrinsics are for.

    Unpack it (``k, t, size = cams``), read it by name (``cams.intrinsics``, ``cams["intrinsics"]``)
    or pass a batch's straight to the loss (``loss(logits, labels, **cams)``).
    """

    intrinsics: torch.Tensor
    cam_from_grid: torch.Tensor
    image_size: tuple[int, int]

    def kwargs(self) -> dict[str, object]:
        """``{"intrinsics": ..., "cam_from_grid": ..., "image_size": ...}``, for ``loss(..., **cams.kwargs())``."""
        return {"intrinsics": self.intrinsics, "cam_from_grid": self.cam_from_grid, "image_size": self.image_size}

    def keys(self) -> tuple[str, ...]:
        """The field names: with ``cams["intrinsics"]`` this makes ``loss(logits, labels, **cams)`` work."""
        return self._fields

    def __getitem__(self, key):
        """``cams[0]`` as a tuple, ``cams["intrinsics"]`` as a mapping."""
        if isinstance(key, str):
            if key not in self._fields:
                raise KeyError(f"{key!r}: LossCameras holds {self._fields}")
            return getattr(self, key)
        return tuple.__getitem__(self, key)


def _one(
    info: SampleInfo | Mapping | Kitti360Calibration,
    grid: VoxelGrid,
    frame: str,
    camera_names: Sequence[str],
    data_root: str | Path | None,
    image_size: tuple[int, int] | None,
) -> LossCameras:
    if isinstance(info, Kitti360Calibration):
        if frame != "velodyne":
            raise ValueError(f"a KITTI-360 calibration gives Velodyne-frame cameras; grid {grid.name!r} is {frame}")
        k, pose = info.intrinsics[None], info.cam_from_velo[None]
        size = image_size or KITTI360_IMAGE_SIZE
    else:
        sample = info if isinstance(info, SampleInfo) else _parse_sample(info, "infos entry")
        if frame not in ("ego", "lidar"):
            raise ValueError(f"grid {grid.name!r} is in the {frame} frame; an infos entry gives ego or LiDAR frames")
        ego_from_grid = np.eye(4) if frame == "ego" else sample.lidar2ego.matrix()
        pose = cam_from_ego(sample, camera_names) @ ego_from_grid
        k = np.stack([np.asarray(sample.cameras[n].intrinsics, dtype=np.float64) for n in camera_names])
        if image_size is not None:
            size = image_size
        else:
            # the calibration is for the stored images: an image file's header says their size
            paths = [sample.cameras[n].image_path for n in camera_names]
            root = data_root
            found = {
                stored_image_size(resolve_data_path(p, root), NUSCENES_IMAGE_SIZE) if root else NUSCENES_IMAGE_SIZE
                for p in paths
            }
            if len(found) != 1:
                raise ValueError(f"sample {sample.token}: the stored images differ in size {sorted(found)}")
            size = found.pop()
    h, w = (int(s) for s in size)
    return LossCameras(torch.from_numpy(np.asarray(k)).float(), torch.from_numpy(np.asarray(pose)).float(), (h, w))


def loss_cameras(
    info: SampleInfo | Mapping | Kitti360Calibration | Sequence[SampleInfo | Mapping | Kitti360Calibration],
    grid: VoxelGrid | str,
    *,
    camera_names: Sequence[str] = CAMERA_NAMES,
    data_root: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    grid_frame: str | None = None,
) -> LossCameras:
    """``intrinsics``, ``cam_from_grid`` and ``image_size`` for :class:`~gaussrender.GaussRenderLoss`.

    Args:
        info: one infos entry, a :class:`~gaussrender.data.SampleInfo` (from
            :func:`~gaussrender.data.load_infos` or :func:`~gaussrender.data.load_nuscenes_tables`)
            or a raw record of an infos file (a dict as in its ``infos`` list); for KITTI-360
            its :class:`~gaussrender.data.Kitti360Calibration`
            (:func:`~gaussrender.data.read_kitti360_calibration`). A list of entries gives a
            batch (``[B, Ncam, ...]``; one image size for all).
        grid: the labels' grid or preset name; picks the grid's frame (:data:`GRID_FRAMES`).
        camera_names: the cameras, in order (nuScenes: the six of ``CAMERA_NAMES``).
        data_root: nuScenes root holding ``samples/``: the stored images' headers give their
            size; default: nuScenes' 900 x 1600 (KITTI-360: 376 x 1408).
        image_size: ``(H, W)`` of the images the infos' K is for, overriding the above.
        grid_frame: ``"ego"`` or ``"lidar"`` for a grid that is not a preset.

    Returns:
        :class:`LossCameras` ``(intrinsics, cam_from_grid, image_size)``: ``[Ncam, 3, 3]`` and
        ``[Ncam, 4, 4]`` float32 for one entry (``[B, Ncam, ...]`` for a list).

    Raises:
        KeyError: a camera of ``camera_names`` is missing from the entry.
        ValueError: a grid of unknown frame without ``grid_frame``, a KITTI-360 calibration
            for a nuScenes grid (or the reverse), stored images of different sizes.

    Example:
        >>> import gaussrender as gr
        >>> info = gr.data.load_infos("nuscenes_infos_val.pkl")[0]       # doctest: +SKIP
        >>> k, t, size = gr.data.loss_cameras(info, "occ3d")               # doctest: +SKIP
        >>> out = gr.GaussRenderLoss("occ3d")(logits, labels, k[None], t[None], size)  # doctest: +SKIP
    """
    grid = get_grid(grid)
    frame = grid_frame if grid_frame is not None else GRID_FRAMES.get(grid.name)
    if frame is None:
        raise ValueError(
            f"grid {grid.name!r} is not a preset: pass grid_frame='ego' or 'lidar' (the frame of its voxels)"
        )
    entries = list(info) if isinstance(info, (list, tuple)) else None
    if entries is None:
        return _one(info, grid, frame, camera_names, data_root, image_size)  # type: ignore[arg-type]
    if not entries:
        raise ValueError("loss_cameras: an empty list of infos entries")
    cams = [_one(e, grid, frame, camera_names, data_root, image_size) for e in entries]
    sizes = {c.image_size for c in cams}
    if len(sizes) != 1:
        raise ValueError(f"loss_cameras: the entries' images differ in size {sorted(sizes)}; the loss takes one")
    return LossCameras(
        torch.stack([c.intrinsics for c in cams]), torch.stack([c.cam_from_grid for c in cams]), sizes.pop()
    )
