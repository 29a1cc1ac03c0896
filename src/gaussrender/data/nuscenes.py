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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..geometry.cameras import scale_intrinsics
from ..geometry.grid import VoxelGrid
from ..geometry.origins import ray_origins
from .files import DataFileError, optional_regular_file, read_json, resolve_data_path, safe_name
from .images import IMAGE_FITS, check_image_size, fit_intrinsics, load_image, render_cameras, stored_image_size
from .infos import CAMERA_NAMES, SampleInfo, check_unique_tokens, load_infos

__all__ = [
    "NUSCENES_IMAGE_SIZE",
    "cam_from_ego",
    "resolve_data_path",
    "group_scenes",
    "NuScenesOccupancy",
]

#: Stored nuScenes camera images, (H, W) pixels.
NUSCENES_IMAGE_SIZE: tuple[int, int] = (900, 1600)


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
        image_size: ``(H, W)`` pixels of the network input; intrinsics follow.
        image_fit: how a stored image becomes ``image_size``: ``"resize"`` (bilinear, K
            scaled) or ``"crop"`` (the release's: 1600x900 -> 1600x896 drops the top 4 rows,
            ``cy - 4``; :func:`~gaussrender.data.images.crop_origin`). The render cameras
            (``render_intrinsics``) are the stored images' either way.
        data_root: nuScenes root holding ``samples/`` (default: ``root``).
        camera_names: views, in order.
        with_origins: compute RayIoU ray origins (``origins``) from the scene's frames.
        stored_image_size: ``(H, W)`` assumed for a stored image that is absent, to scale
            intrinsics to ``image_size`` when images are not loaded (an image file that
            exists gives its own size).
        lidar_targets: add the sample's key-frame LiDAR scan (``lidar_path``, nuScenes-lidarseg
            ``lidarseg_path``, read under ``data_root`` by :func:`~gaussrender.data.load_lidar`,
            noise and ego returns dropped) z-buffered into the render cameras by
            :func:`~gaussrender.project_points`: ``target_depth`` float32 ``[V, H, W]`` (camera
            z, metres, 0 = no return) and ``target_semantics`` uint8 ``[V, H, W]`` (Occ3D
            class, 255 = none), ``(H, W) = render_image_size``: the 2D targets of
            :class:`~gaussrender.GaussRenderLoss`. Every sample must have both files.
        adjacent_frames: with ``lidar_targets``, frame offsets within the scene (e.g.
            ``(-1, 1)``) whose LiDAR targets are added after the sample's own: each adjacent
            frame's scan (in its own ego frame) z-buffered into its own cameras, and those
            cameras against this sample's grid (:func:`~gaussrender.data.adjacent_cam_from_ego`)
            as ``target_cam_from_grid`` ``[V (1 + K), 4, 4]`` with ``target_intrinsics``
            ``[V (1 + K), 3, 3]`` (pixels of ``render_image_size``), so the prediction of frame
            t is supervised in the views of frames t ± k. A frame beyond the scene's ends gives
            empty targets (depth 0, label 255: they weigh nothing) in the sample's own cameras.
        drop_moving: with ``adjacent_frames``, drop the adjacent scans' points inside boxes of
            moving objects (``load_lidar(..., drop_boxes="moving")``: needs the infos' boxes
            and velocities); they were elsewhere at frame t.
    """

    #: lidarseg fine classes whose points the LiDAR targets drop (see ``load_lidar``)
    lidar_drop_fine: tuple[int, ...] | None = None

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
        lidar_targets: bool = False,
        adjacent_frames: Sequence[int] = (),
        drop_moving: bool = False,
        image_fit: str = "resize",
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
        check_unique_tokens(all_samples, source, Path(source) if isinstance(source, (str, Path)) else None)
        scenes = self._split_scenes(split)
        self.samples = [s for s in all_samples if scenes is None or s.scene in scenes]
        if not self.samples:
            raise ValueError(
                f"{type(self).__name__}: no sample of {len(all_samples)} in infos belongs to split {split!r}"
            )
        self._scenes = group_scenes(all_samples)
        self.load_images = bool(load_images)
        self.image_size = check_image_size(image_size) if image_size is not None else None
        if image_fit not in IMAGE_FITS:
            raise ValueError(f"image_fit must be one of {IMAGE_FITS}, got {image_fit!r}")
        self.image_fit = image_fit
        self.data_root = Path(data_root) if data_root is not None else self.root
        self.camera_names = tuple(camera_names)
        self.with_origins = bool(with_origins)
        self.stored_image_size = stored_image_size
        if not isinstance(lidar_targets, bool):
            raise TypeError(f"lidar_targets must be a bool, got {lidar_targets!r}")
        self.lidar_targets = lidar_targets
        if lidar_targets:
            self.require_lidar("lidar_targets")
        offsets = tuple(adjacent_frames)
        if not all(isinstance(k, int) and not isinstance(k, bool) and k != 0 for k in offsets):
            raise ValueError(f"adjacent_frames must be non-zero int offsets, got {adjacent_frames!r}")
        if offsets and not lidar_targets:
            raise ValueError("adjacent_frames adds LiDAR targets of other frames: it needs lidar_targets=True")
        if offsets:
            # the neighbours come from every sample of the infos, whatever the split
            for scene in {s.scene for s in self.samples}:
                missing = [f.token for f in self._scenes[scene] if not f.lidar_path or not f.lidarseg_path]
                if missing:
                    raise ValueError(
                        f"adjacent_frames needs lidar_path and lidarseg_path for every frame of scene {scene!r}; "
                        f"{missing[0]} lacks them"
                    )
        self.adjacent_frames = offsets
        self.drop_moving = bool(drop_moving)

    def require_lidar(self, what: str) -> None:
        """Refuse, naming ``what``, samples without a LiDAR scan and its lidarseg labels."""
        missing = [s.token for s in self.samples if not s.lidar_path or not s.lidarseg_path]
        if missing:
            raise ValueError(
                f"{what} needs every sample's lidar_path and lidarseg_path (nuScenes-lidarseg) in the infos; "
                f"{len(missing)} of {len(self.samples)} samples lack them (e.g. {missing[0]})"
            )

    def lidar_points(self, sample: SampleInfo, drop_moving: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample's LiDAR scan in its grid frame, ``points [N, 3]`` float64 metres and
        ``labels [N]`` uint8 Occ3D classes (``drop_moving``: without points in moving boxes)."""
        from .lidar import DROP_FINE_DEFAULT, load_lidar

        drop = DROP_FINE_DEFAULT if self.lidar_drop_fine is None else self.lidar_drop_fine
        points, labels = load_lidar(
            sample, self.data_root, labels="occ3d", drop_fine=drop, drop_boxes="moving" if drop_moving else None
        )
        assert labels is not None
        grid_from_ego = np.linalg.inv(self.ego_from_grid(sample))
        points = points @ grid_from_ego[:3, :3].T + grid_from_ego[:3, 3]
        return torch.from_numpy(points), torch.from_numpy(labels)

    def adjacent_targets(self, sample: SampleInfo, item: dict[str, Any]) -> None:
        """Append the adjacent frames' LiDAR targets and their cameras to ``item`` (see
        ``adjacent_frames``)."""
        from .frames import adjacent_cam_from_ego

        size = (int(item["render_image_size"][0]), int(item["render_image_size"][1]))
        frames = self._scenes[sample.scene]
        position = next(i for i, f in enumerate(frames) if f.token == sample.token)
        poses = [item["cam_from_grid"].double()]
        ks = [item["render_intrinsics"]]
        depths, labels = [item["target_depth"]], [item["target_semantics"]]
        for k in self.adjacent_frames:
            if not 0 <= position + k < len(frames):  # beyond the scene: empty targets, own cameras
                poses.append(poses[0])
                ks.append(ks[0])
                depths.append(torch.zeros_like(depths[0]))
                labels.append(torch.full_like(labels[0], 255))
                continue
            other = frames[position + k]
            cams = [other.cameras[n] for n in self.camera_names]
            image_paths = [str(resolve_data_path(c.image_path, self.data_root)) for c in cams]
            other_k = torch.from_numpy(np.stack([c.intrinsics for c in cams])).float()
            rendered = render_cameras(other_k, image_paths, self.stored_image_size)
            if tuple(int(v) for v in rendered["render_image_size"]) != size:
                raise ValueError(
                    f"sample {other.token} (adjacent to {sample.token}) has images of another size "
                    f"{tuple(rendered['render_image_size'].tolist())}; expected {size}"
                )
            points, point_labels = self.lidar_points(other, self.drop_moving)  # in the other frame's grid
            depth, semantics = self.lidar_images(other, points, point_labels, rendered)
            poses.append(
                torch.from_numpy(adjacent_cam_from_ego(sample, other, self.camera_names))
                @ torch.from_numpy(self.ego_from_grid(sample))
            )
            ks.append(rendered["render_intrinsics"])
            depths.append(depth)
            labels.append(semantics)
        item["target_cam_from_grid"] = torch.cat(poses).float()
        item["target_intrinsics"] = torch.cat(ks).float()
        item["target_depth"] = torch.cat(depths)
        item["target_semantics"] = torch.cat(labels)

    def lidar_images(
        self, sample: SampleInfo, points: torch.Tensor, labels: torch.Tensor, item: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``points`` (grid frame) z-buffered into the item's render cameras: ``target_depth``
        float32 and ``target_semantics`` uint8, ``[V, H, W]``."""
        from ..geometry.points import project_points

        size = (int(item["render_image_size"][0]), int(item["render_image_size"][1]))
        # from the float64 calibration, not the float32 copy in the item
        cam_from_grid = torch.from_numpy(cam_from_ego(sample, self.camera_names) @ self.ego_from_grid(sample))
        depth, semantics = project_points(points, labels, cam_from_grid, item["render_intrinsics"].double(), size)
        assert semantics is not None
        return depth.float(), semantics

    def _split_scenes(self, split: str | Sequence[str] | None) -> set[str] | None:
        if split is None:
            return None
        if not isinstance(split, str):
            return {str(s) for s in split}
        path = self.root / "annotations.json"
        if not optional_regular_file(path, "Occ3D annotations file"):
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
                img, (sx, sy) = load_image(path, self.image_size, self.image_fit)
                images.append(img)
                if self.image_fit == "crop" and self.image_size is not None:
                    stored = stored_image_size(path, self.stored_image_size)
                    scaled.append(fit_intrinsics(k, stored, self.image_size, "crop"))
                else:
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
                scaled.append(fit_intrinsics(k, (h0, w0), (h, w), self.image_fit))
            intrinsics = torch.stack(scaled)
        out["intrinsics"] = intrinsics
        out["cam_from_grid"] = torch.from_numpy(cam_from_grid).float()
        out.update(self.read_labels(sample))
        if self.with_origins:
            out["origins"] = self.ray_origins(sample)
        if self.lidar_targets:
            points, labels = self.lidar_points(sample)
            out["target_depth"], out["target_semantics"] = self.lidar_images(sample, points, labels, out)
            if self.adjacent_frames:
                self.adjacent_targets(sample, out)
        return out
