"""A small synthetic multi-camera dataset in the nuScenes / Occ3D layout, for CPU runs.

Each sample is one procedural scene (:func:`gaussrender.scene.make_scene`) on the Occ3D
grid or any grid with its classes (e.g. the coarser ``synthetic_small`` / ``synthetic_medium``
presets, read back with :class:`SyntheticOccupancy`). Its six camera images are the ground-truth Gaussians rendered by
:func:`gaussrender.render` with palette colours as features (cameras of
:func:`gaussrender.nuscenes_rig` at a small resolution, a sky colour as background), so the
images show exactly the labelled geometry. Everything is written through the data package's
writers, so that :class:`gaussrender.data.Occ3DNuScenes` reads it like the real benchmark::

    root/
      gts/<scene>/<token>/labels.npz       semantics, mask_lidar, mask_camera (uint8)
      samples/<CAM_NAME>/<token>.png        RGB images
      samples/LIDAR_TOP/<token>.pcd.bin     LiDAR scan (make_dataset(lidar=True) only)
      lidarseg/synthetic/<token>_lidarseg.bin   its per-point classes (nuScenes-lidarseg)
      synthetic_infos_train.json            BEVDet-style infos (calibration, poses)
      synthetic_infos_val.json

The grid is the key frame's ego frame; the LiDAR sits at the scene's roof position with the
ego's orientation. Generation is deterministic in ``seed``. The stored images are the
dataset's native size: the reader's ``render_intrinsics``/``render_image_size`` (GaussRender's
cameras) are the written calibration at that size, whatever ``data.image_size`` the network
reads.

LiDAR and 2D targets (issue 14). ``make_dataset(..., lidar=True)`` also writes one simulated
sweep per sample (:func:`gaussrender.scene.lidar_scan`: first-hit returns of the roof LiDAR
against the labels, in nuScenes' ``.pcd.bin`` and lidarseg layouts, read back by
:func:`gaussrender.data.load_lidar`). :class:`SyntheticOccupancy` can add to its items
``points``/``point_labels`` (that scan, grid frame) and ``target_depth``/``target_semantics``
(per-camera 2D targets at the render cameras: dense per-pixel ray casting, or the scan
z-buffered by :func:`gaussrender.project_points`). All of this is off by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Occ3DNuScenes, cam_from_ego
from ..geometry.grid import OCC3D_NUSCENES, VoxelGrid, get_grid
from ..geometry.transforms import matrix_to_quaternion
from .fingerprint import synthetic_description, write_manifest

__all__ = ["SyntheticDataset", "SyntheticOccupancy", "make_dataset", "render_views", "SKY", "TARGETS_2D"]

#: Kinds of 2D targets :class:`SyntheticOccupancy` can add (``targets_2d``).
TARGETS_2D = ("camera", "lidar")

#: RGB in [0, 1] of pixels where no Gaussian is seen
SKY = (0.62, 0.75, 0.90)


@dataclass(frozen=True)
class SyntheticDataset:
    """Where :func:`make_dataset` wrote things."""

    root: Path
    train_infos: Path
    val_infos: Path
    image_size: tuple[int, int]


class SyntheticOccupancy(Occ3DNuScenes):
    """The Occ3D reader for a dataset :func:`make_dataset` wrote on ``grid``.

    Args:
        root, infos, **kwargs: as :class:`gaussrender.data.Occ3DNuScenes`.
        grid: the grid the labels were written on (a :class:`VoxelGrid` or preset name);
            label files of another shape are refused when read.
        with_lidar: add ``points`` float32 ``[N, 3]`` (the sample's LiDAR scan, metres, grid
            frame) and ``point_labels`` uint8 ``[N]`` (Occ3D classes), read from the files
            ``make_dataset(lidar=True)`` wrote; ``N`` varies per sample, so
            :func:`gaussrender.data.collate` keeps them as lists.
        targets_2d: add ``target_depth`` float32 ``[V, H, W]`` (camera z, metres, 0 = none)
            and ``target_semantics`` uint8 ``[V, H, W]`` (class, 255 = none) for the render
            cameras (``render_intrinsics``, ``cam_from_grid``, ``(H, W) =
            render_image_size``): ``"camera"``: one ray per pixel centre cast into the
            sample's labels (:func:`gaussrender.scene.camera_targets`, dense; about
            ``V x H x W`` rays per item); ``"lidar"``: the LiDAR scan z-buffered into the
            cameras (:func:`gaussrender.project_points`, sparse; needs the LiDAR files).
            None (default): neither.
    """

    # the synthetic scan has neither noise nor ego returns: nothing to drop
    lidar_drop_fine: tuple[int, ...] | None = ()

    def __init__(
        self,
        root: str | Path,
        infos,
        *,
        grid: VoxelGrid | str = OCC3D_NUSCENES,
        with_lidar: bool = False,
        targets_2d: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root, infos, **kwargs)
        grid = get_grid(grid)
        if grid.class_names != OCC3D_NUSCENES.class_names:
            raise ValueError(f"grid {grid.name!r} must have Occ3D's 18 classes (the synthetic scenes' labels)")
        if targets_2d is not None and targets_2d not in TARGETS_2D:
            raise ValueError(f"targets_2d must be None or one of {TARGETS_2D}, got {targets_2d!r}")
        if not isinstance(with_lidar, bool):
            raise ValueError(f"with_lidar must be a bool, got {with_lidar!r}")
        if with_lidar or targets_2d == "lidar":
            self.require_lidar("with_lidar / targets_2d='lidar' (the LiDAR files of make_dataset(lidar=True))")
        self.grid = grid
        self.with_lidar = with_lidar
        self.targets_2d = targets_2d

    def __getitem__(self, index: int) -> dict[str, Any]:
        from ..scene import camera_targets

        out = super().__getitem__(index)
        if not self.with_lidar and self.targets_2d is None:
            return out
        sample = self.samples[index]
        if self.with_lidar or self.targets_2d == "lidar":
            points, labels = self.lidar_points(sample)
            if self.with_lidar:
                out["points"], out["point_labels"] = points.float(), labels
            if self.targets_2d == "lidar":
                out["target_depth"], out["target_semantics"] = self.lidar_images(sample, points, labels, out)
        if self.targets_2d == "camera":
            size = (int(out["render_image_size"][0]), int(out["render_image_size"][1]))
            # from the float64 calibration, not the float32 copy in the item
            cam_from_grid = torch.from_numpy(cam_from_ego(sample, self.camera_names) @ self.ego_from_grid(sample))
            depth, sem = camera_targets(
                out["labels"], self.grid, out["render_intrinsics"].double(), cam_from_grid, size
            )
            out["target_depth"], out["target_semantics"] = depth.float(), sem
        return out


def _pose(matrix: np.ndarray):
    from ..data import Pose

    x, y, z = (float(v) for v in matrix[:3, 3])
    return Pose((x, y, z), matrix_to_quaternion(matrix[:3, :3]))


def render_views(
    labels: torch.Tensor,
    colors: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: tuple[int, int],
    grid: VoxelGrid = OCC3D_NUSCENES,
) -> torch.Tensor:
    """RGB images ``[V, H, W, 3]`` in ``[0, 1]`` of the labelled voxels seen by the cameras.

    Args:
        labels: ``[X, Y, Z]`` integer labels.
        colors: ``[C, 3]`` RGB in ``[0, 1]`` per class.
        intrinsics: ``[V, 3, 3]`` pixels (for ``image_size``).
        cam_from_grid: ``[V, 4, 4]`` grid → OpenCV camera.
        image_size: ``(H, W)`` pixels.
    """
    from ..geometry.cameras import Cameras
    from ..render import render
    from ..render.gaussians import voxels_to_gaussians

    gauss = voxels_to_gaussians(grid, labels=labels.long())
    features = gauss.features.float() @ colors.float()  # one-hot x palette
    means = gauss.means.float()
    h, w = int(image_size[0]), int(image_size[1])
    cams = Cameras(cam_from_grid.float(), intrinsics.float(), w, h)
    out = render(
        means,
        gauss.opacities.float(),
        features,
        gauss.scales.float(),
        cams,
        background=torch.tensor(SKY),
        backend="torch",
    )
    return out.features.clamp(0.0, 1.0)


def make_dataset(
    root: str | Path,
    num_scenes: int,
    *,
    num_val_scenes: int = 1,
    seed: int = 0,
    image_size: tuple[int, int] = (48, 88),
    colors: torch.Tensor | None = None,
    camera_stride: int = 16,
    grid: VoxelGrid | str = OCC3D_NUSCENES,
    lidar: bool = False,
) -> SyntheticDataset:
    """Write ``num_scenes`` training and ``num_val_scenes`` validation samples under ``root``.

    Args:
        root: output directory (created; existing samples with the same tokens are replaced).
        num_scenes: training samples (one per scene), ``>= 1``.
        num_val_scenes: validation samples, ``>= 0``; their seeds follow the training ones.
        seed: seed of the first scene; scene ``i`` uses ``seed + i``.
        image_size: ``(H, W)`` of the rendered images, pixels.
        colors: ``[18, 3]`` RGB in ``[0, 1]`` per Occ3D class; default the package palette
            (:func:`gaussrender.viz.palette`).
        camera_stride: pixel spacing (at 1600x900) of the rays that build ``mask_camera``;
            the scene generator's default is 8, 16 is 4x cheaper and still dense at 0.4 m.
        grid: the voxel grid of the labels (Occ3D's range and classes, any voxel size: the
            ``synthetic_small`` / ``synthetic_medium`` presets); the images render its
            Gaussians at its ``gaussian_scale``. Read it back with :class:`SyntheticOccupancy`.
        lidar: also write each sample's simulated LiDAR sweep (:func:`gaussrender.scene.lidar_scan`
            from the roof LiDAR, in the LiDAR frame: ``samples/LIDAR_TOP/<token>.pcd.bin``) and
            its per-point classes as nuScenes-lidarseg fine classes
            (:data:`gaussrender.data.OCC3D_TO_LIDARSEG`: ``lidarseg/synthetic/<token>_lidarseg.bin``),
            with ``lidar_path``/``lidarseg_path`` in the infos.

    Returns:
        :class:`SyntheticDataset` with the info file paths.
    """
    from ..data import (
        OCC3D_TO_LIDARSEG,
        CameraInfo,
        SampleInfo,
        write_infos_json,
        write_lidar_points,
        write_lidarseg_labels,
        write_occ3d_sample,
    )
    from ..geometry.rigs import nuscenes_rig
    from ..scene import LIDAR_ORIGIN, lidar_scan, make_scene
    from ..viz import palette, save_png

    for name, value, lo in (("num_scenes", num_scenes, 1), ("num_val_scenes", num_val_scenes, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    if not isinstance(lidar, bool):
        raise ValueError(f"lidar must be a bool, got {lidar!r}")
    if len(image_size) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size):
        raise ValueError(f"image_size must be (H, W) positive ints (pixels), got {image_size!r}")
    grid = get_grid(grid)
    if grid.class_names != OCC3D_NUSCENES.class_names:
        raise ValueError(f"grid must have Occ3D's 18 classes (the scenes paint them), got {grid.name!r}")
    if colors is None:
        colors = torch.from_numpy(palette(grid)).float() / 255.0
    colors = torch.as_tensor(colors, dtype=torch.float32)
    if colors.shape != (grid.num_classes, 3):
        raise ValueError(f"colors must have shape [{grid.num_classes}, 3], got {list(colors.shape)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    h, w = image_size
    intrinsics, cam_from_ego, names = nuscenes_rig(image_size, dtype=torch.float64)
    lidar2ego = np.eye(4)
    lidar2ego[:3, 3] = LIDAR_ORIGIN
    samples: list = []
    for i in range(num_scenes + num_val_scenes):
        scene_seed = seed + i
        # one frame: the synthetic set has one labelled sample per scene, no sweeps to accumulate
        scene = make_scene(scene_seed, grid, frames=1, camera_stride=camera_stride)
        scene_name = f"scene-synthetic-{scene_seed:04d}"
        token = f"synthetic{scene_seed:06d}"
        write_occ3d_sample(root, scene_name, token, scene.semantics, scene.mask_lidar, scene.mask_camera, grid)
        images = render_views(scene.semantics, colors, intrinsics, cam_from_ego, image_size, grid)
        ego2global = _pose(scene.ego_poses[scene.key_frame].numpy())
        cameras = {}
        for v, name in enumerate(names):
            rel = f"samples/{name}/{token}.png"
            save_png(root / rel, (images[v].numpy() * 255.0 + 0.5).astype(np.uint8))
            cameras[name] = CameraInfo(
                name=name,
                image_path=rel,
                intrinsics=intrinsics[v].numpy(),
                sensor2ego=_pose(np.linalg.inv(cam_from_ego[v].numpy())),
                ego2global=ego2global,
            )
        lidar_path, lidarseg_path = "", None
        if lidar:
            # the sensor sits at LIDAR_ORIGIN with the ego's orientation (lidar2ego below)
            points, labels = lidar_scan(scene.semantics, grid, LIDAR_ORIGIN)
            lidar_path = f"samples/LIDAR_TOP/{token}.pcd.bin"
            lidarseg_path = f"lidarseg/synthetic/{token}_lidarseg.bin"
            write_lidar_points(root / lidar_path, points.numpy() - np.asarray(LIDAR_ORIGIN))
            write_lidarseg_labels(root / lidarseg_path, OCC3D_TO_LIDARSEG[labels.numpy()])
        samples.append(
            SampleInfo(
                token=token,
                scene=scene_name,
                scene_token=scene_name,
                timestamp=1_000_000 * scene_seed,
                lidarseg_path=lidarseg_path,
                lidar_path=lidar_path,
                lidar2ego=_pose(lidar2ego),
                ego2global=ego2global,
                cameras=cameras,
                occ_path=f"gts/{scene_name}/{token}",
            )
        )
    train = write_infos_json(root / "synthetic_infos_train.json", samples[:num_scenes], version="synthetic")
    val = write_infos_json(root / "synthetic_infos_val.json", samples[num_scenes:], version="synthetic")
    # last: what the dataset was made from and its content hash (prepare_synthetic reuses a
    # dataset only when both match; camera_stride and colors are not config settings)
    write_manifest(root, synthetic_description("occ3d", grid, num_scenes, num_val_scenes, seed, (h, w), lidar))
    return SyntheticDataset(root, train, val, (h, w))
