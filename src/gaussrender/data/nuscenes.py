"""The nuScenes camera rig and the dataset base shared by Occ3D- and SurroundOcc-nuScenes.

Frames. The *grid frame* is the benchmark's voxel frame: Occ3D uses the ego frame at the
LiDAR timestamp, SurroundOcc the LiDAR frame. A camera sees the scene at its own timestamp,
so a grid point reaches camera ``c`` through the map frame::

    cam_from_ego = inv(sensor2ego_c) · inv(ego2global_c) · ego2global_lidar
    cam_from_grid = cam_from_ego · ego_from_grid

(``ego_from_grid`` is the identity for Occ3D and ``lidar2ego`` for SurroundOcc).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..geometry.cameras import scale_intrinsics
from ..geometry.grid import VoxelGrid
from ..geometry.origins import ray_origins
from .files import DataFileError, join_under, read_json, safe_name
from .images import check_image_size, load_image, render_cameras, stored_image_size
from .infos import CAMERA_NAMES, SampleInfo, load_infos

__all__ = [
    "NUSCENES_IMAGE_SIZE",
    "cam_from_ego",
    "resolve_data_path",
    "group_scenes",
    "NuScenesOccupancy",
]

#: Stored nuScenes camera images, (H, W) pixels.
NUSCENES_IMAGE_SIZE: tuple[int, int] = (900, 1600)

# the nuScenes folders a stored path is re-rooted at (lidarseg: nuScenes-lidarseg label files)
_DATA_DIRS = ("samples", "sweeps", "lidarseg")


def cam_from_ego(sample: SampleInfo, camera_names: Sequence[str] = CAMERA_NAMES) -> np.ndarray:
    """``[V, 4, 4]`` float64 transforms from the sample's reference ego frame (LiDAR timestamp) to each camera (OpenCV).

    Raises:
        KeyError: a requested camera is missing from the sample.
    """
    ego2global_ref = sample.ego2global.matrix()
    out = []
    for name in camera_names:
        if name not in sample.cameras:
            raise KeyError(f"sample {sample.token}: camera {name!r} missing (has {sorted(sample.cameras)})")
        cam = sample.cameras[name]
        global_from_ego = cam.ego2global.matrix()
        out.append(np.linalg.inv(cam.sensor2ego.matrix()) @ np.linalg.inv(global_from_ego) @ ego2global_ref)
    return np.stack(out)


def resolve_data_path(stored: str, data_root: str | Path, what: str = "image path") -> Path:
    """Map a path stored in an info file onto a local nuScenes root, never outside it.

    Info files store paths as their authors saw them (``./data/nuscenes\\samples/CAM_FRONT/x.jpg``).
    The part from the first ``samples``/``sweeps``/``lidarseg`` component on is joined to ``data_root``
    (so an author's absolute or relative prefix does not matter); a path without such a
    component must be relative and is joined as is (a leading ``./`` dropped). Either way the
    joined part may not hold ``..`` or NUL, and a path without ``samples``/``sweeps`` may not
    be absolute: a hostile info file cannot point a reader outside ``data_root``.

    ``what`` names the path in messages (``"LiDAR path"``).

    Raises:
        DataFileError: the stored value is not a string, or would leave ``data_root``.
    """
    if not isinstance(stored, str):
        raise DataFileError(f"{what} must be a string, got {type(stored).__name__}")
    parts = PurePosixPath(stored.replace("\\", "/")).parts
    for i, part in enumerate(parts):
        if part in _DATA_DIRS:
            return join_under(data_root, "/".join(parts[i:]), what, f"info file entry {stored!r}")
    return join_under(data_root, stored, what, f"info file entry {stored!r}")


def group_scenes(samples: Sequence[SampleInfo]) -> dict[str, list[SampleInfo]]:
    """Samples per scene, each list in time order (LiDAR timestamp)."""
    scenes: dict[str, list[SampleInfo]] = {}
    for s in samples:
        scenes.setdefault(s.scene, []).append(s)
    for frames in scenes.values():
        frames.sort(key=lambda s: s.timestamp)
    return scenes


class NuScenesOccupancy(Dataset, ABC):
    """Base of the nuScenes occupancy datasets: calibration, images, RayIoU origins.

    Subclasses set :attr:`grid` and implement :meth:`read_labels` and :meth:`ego_from_grid`.

    Args:
        root: the benchmark's label directory.
        infos: info file path (``.pkl``/``.json``, see :func:`load_infos`) or loaded samples.
        split: None for every sample of ``infos``; a split name (``"train"``, ``"val"``) looked
            up in ``root/annotations.json`` (Occ3D's ``<split>_split`` scene lists); or a
            sequence of scene names.
        load_images: read the camera images (else only their paths are returned).
        image_size: ``(H, W)`` pixels to resize images to; intrinsics follow.
        data_root: nuScenes root holding ``samples/`` (default: ``root``).
        camera_names: views, in order.
        with_origins: compute RayIoU ray origins (``origins``) from the scene's frames.
        stored_image_size: ``(H, W)`` assumed for a stored image that is absent, to scale
            intrinsics to ``image_size`` when images are not loaded (an image file that
            exists gives its own size).
    """

    grid: VoxelGrid

    def __init__(
        self,
        root: str | Path,
        infos: str | Path | Sequence[SampleInfo],
        *,
        split: str | Sequence[str] | None = None,
        load_images: bool = False,
        image_size: tuple[int, int] | None = None,
        data_root: str | Path | None = None,
        camera_names: Sequence[str] = CAMERA_NAMES,
        with_origins: bool = True,
        stored_image_size: tuple[int, int] = NUSCENES_IMAGE_SIZE,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{type(self).__name__}: root directory not found: {self.root}")
        all_samples = list(infos) if not isinstance(infos, (str, Path)) else load_infos(infos)
        source = infos if isinstance(infos, (str, Path)) else "infos"
        if not all(isinstance(s, SampleInfo) for s in all_samples):
            raise TypeError("infos must be a path or a sequence of SampleInfo")
        if not all_samples:
            raise ValueError(f"{type(self).__name__}: {source} holds no samples")
        for s in all_samples:  # tokens name label and prediction files: checked whatever their origin
            safe_name(s.token, "token", source)
        scenes = self._split_scenes(split)
        self.samples = [s for s in all_samples if scenes is None or s.scene in scenes]
        if not self.samples:
            raise ValueError(
                f"{type(self).__name__}: no sample of {len(all_samples)} in infos belongs to split {split!r}"
            )
        self._scenes = group_scenes(all_samples)
        self.load_images = bool(load_images)
        self.image_size = check_image_size(image_size) if image_size is not None else None
        self.data_root = Path(data_root) if data_root is not None else self.root
        self.camera_names = tuple(camera_names)
        self.with_origins = bool(with_origins)
        self.stored_image_size = stored_image_size

    def _split_scenes(self, split: str | Sequence[str] | None) -> set[str] | None:
        if split is None:
            return None
        if not isinstance(split, str):
            return {str(s) for s in split}
        path = self.root / "annotations.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"split={split!r} needs {path} (Occ3D's '<split>_split' scene lists); without it "
                "pass split=None (the info file is the split) or a list of scene names"
            )
        meta = read_json(path, "Occ3D annotations file")
        key = f"{split}_split"
        if not isinstance(meta, dict):
            raise DataFileError(
                f"{path}: expected a JSON object with '<split>_split' lists, got {type(meta).__name__}", path
            )
        if not isinstance(meta.get(key, []), list) or not all(isinstance(n, str) for n in meta.get(key, [])):
            raise DataFileError(f"{path}: {key!r} must be a list of scene names (strings)", path)
        if key not in meta:
            raise ValueError(f"{path}: no {key!r} list (has {sorted(k for k in meta if k.endswith('_split'))})")
        return set(meta[key])

    def __len__(self) -> int:
        return len(self.samples)

    @abstractmethod
    def read_labels(self, sample: SampleInfo) -> dict[str, torch.Tensor]:
        """``labels`` int64 ``[X, Y, Z]`` (and masks) of ``sample`` in the grid frame."""

    @abstractmethod
    def ego_from_grid(self, sample: SampleInfo) -> np.ndarray:
        """``[4, 4]`` float64 transform from the grid frame to the reference ego frame."""

    #: RayIoU keeps origins this far inside the grid's x/y half-extent, metres (Occ3D: 40 - 1 = 39, SparseOcc's value).
    origin_margin: float = 1.0

    def ray_origins(self, sample: SampleInfo) -> torch.Tensor:
        """RayIoU origins ``[K, 3]`` float32 in the grid frame: the LiDAR positions of the scene's frames.

        Computed by :func:`gaussrender.geometry.origins.ray_origins` from every frame of the sample's
        scene present in the info file (time order), then moved from the ego to the grid frame.
        """
        frames = self._scenes[sample.scene]
        half = min(self.grid.range_max[0], -self.grid.range_min[0], self.grid.range_max[1], -self.grid.range_min[1])
        origins_ego = ray_origins(
            torch.from_numpy(sample.ego2global.matrix()),
            torch.from_numpy(sample.lidar2ego.matrix()),
            torch.from_numpy(np.stack([f.ego2global.matrix() for f in frames])),
            torch.from_numpy(np.stack([f.lidar2ego.matrix() for f in frames])),
            limit_xy=half - self.origin_margin,
        ).numpy()
        grid_from_ego = np.linalg.inv(self.ego_from_grid(sample))
        origins = origins_ego @ grid_from_ego[:3, :3].T + grid_from_ego[:3, 3]
        return torch.from_numpy(origins).float()

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        cams = [sample.cameras[n] for n in self.camera_names if n in sample.cameras]
        if len(cams) != len(self.camera_names):
            missing = [n for n in self.camera_names if n not in sample.cameras]
            raise KeyError(f"sample {sample.token}: cameras {missing} missing from the info file")
        intrinsics = torch.from_numpy(np.stack([c.intrinsics for c in cams])).float()
        cam_from_grid = cam_from_ego(sample, self.camera_names) @ self.ego_from_grid(sample)
        image_paths = [str(resolve_data_path(c.image_path, self.data_root)) for c in cams]
        out: dict[str, Any] = {
            "token": sample.token,
            "scene": sample.scene,
            "camera_names": list(self.camera_names),
            "image_paths": image_paths,
        }
        # GaussRender's cameras: the calibration K at the stored size, whatever image_size is
        out.update(render_cameras(intrinsics, image_paths, self.stored_image_size))
        if self.load_images:
            images, scaled = [], []
            for k, path in zip(intrinsics, image_paths):
                img, (sx, sy) = load_image(path, self.image_size)
                images.append(img)
                scaled.append(scale_intrinsics(k, sx, sy))
            sizes = {tuple(i.shape) for i in images}
            if len(sizes) != 1:
                raise ValueError(f"sample {sample.token}: images differ in size {sorted(sizes)}; pass image_size")
            out["images"] = torch.stack(images)
            intrinsics = torch.stack(scaled)
        elif self.image_size is not None:
            h, w = self.image_size
            scaled = []
            for k, path in zip(intrinsics, image_paths):
                # the calibration is for the stored image: its header says the size when present
                h0, w0 = stored_image_size(path, self.stored_image_size)
                scaled.append(scale_intrinsics(k, w / w0, h / h0))
            intrinsics = torch.stack(scaled)
        out["intrinsics"] = intrinsics
        out["cam_from_grid"] = torch.from_numpy(cam_from_grid).float()
        out.update(self.read_labels(sample))
        if self.with_origins:
            out["origins"] = self.ray_origins(sample)
        return out
