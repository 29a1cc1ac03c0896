"""A small synthetic KITTI-like dataset (front camera, depth maps) in the SSCBench-KITTI360 layout.

For monocular models that read depth maps (Symphonies) on a CPU. Each sample is one
procedural scene (:func:`gaussrender.make_scene`) painted on the grid's box in the
velodyne frame (ground 1.73 m below the sensor, as on the KITTI car), its nuScenes classes
mapped to KITTI-360's (:data:`CLASS_MAP`). The front camera uses KITTI-360's published
calibration (``image_00``, scaled to ``image_size``); its RGB image and its z-depth map are
the ground-truth Gaussians rendered by :func:`gaussrender.render` (palette colours; depth =
alpha-weighted depth / alpha where the alpha exceeds 0.5, else 0 = unknown). Everything is
written so that :class:`gaussrender.data.SSCBenchKITTI360` (or
:class:`SyntheticKITTI360` for a grid other than the benchmark's) reads it::

    root/
      preprocess/labels/<seq>/<frame>_1_1.npy          labels (uint8, no invalid voxels)
      data_2d_raw/<seq>/image_00/data_rect/<frame>.png  RGB
      depth/<seq>/<frame>.npy                           float32 z-depth, metres
      calibration/perspective.txt, calib_cam_to_velo.txt
      synthetic_kitti360.json                           what was written (written last)

Training scenes go to sequence 0, validation scenes to sequence 6 (the split's only
sequence); the other training sequences get empty label folders so the split reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.kitti360 import (
    KITTI360_IMAGE_SIZE,
    KITTI360_SPLITS,
    SSCBenchKITTI360,
    kitti360_sequence,
    read_kitti360_calibration,
    write_kitti360_depth,
    write_kitti360_sample,
)
from ..geometry.grid import OCC3D_NUSCENES, SSCBENCH_KITTI360, VoxelGrid, get_grid
from .fingerprint import synthetic_description, write_manifest

__all__ = [
    "CLASS_MAP",
    "GROUND_Z",
    "MARKER",
    "SyntheticKITTI360Dataset",
    "SyntheticKITTI360",
    "make_kitti360_dataset",
    "front_camera",
]

#: Ground height in the velodyne frame, metres (the KITTI car's sensor height).
GROUND_Z = -1.73
#: File written last by :func:`make_kitti360_dataset`; its presence means the set is complete.
MARKER = "synthetic_kitti360.json"
#: nuScenes / Occ3D class painted by the scene generator -> KITTI-360 class.
CLASS_MAP: dict[str, str] = {
    "others": "other-object",
    "barrier": "fence",
    "bicycle": "bicycle",
    "bus": "other-vehicle",
    "car": "car",
    "construction_vehicle": "other-vehicle",
    "motorcycle": "motorcycle",
    "pedestrian": "person",
    "traffic_cone": "other-object",
    "trailer": "other-vehicle",
    "truck": "truck",
    "driveable_surface": "road",
    "other_flat": "other-ground",
    "sidewalk": "sidewalk",
    "terrain": "terrain",
    "manmade": "building",
    "vegetation": "vegetation",
    "free": "empty",
}


@dataclass(frozen=True)
class SyntheticKITTI360Dataset:
    """Where :func:`make_kitti360_dataset` wrote things."""

    root: Path
    depth_root: Path
    train_frames: tuple[str, ...]
    val_frames: tuple[str, ...]
    image_size: tuple[int, int]


class SyntheticKITTI360(SSCBenchKITTI360):
    """The SSCBench-KITTI360 reader for labels written on ``grid`` (KITTI-360's classes, any box).

    Args:
        root, split, **kwargs: as :class:`gaussrender.data.SSCBenchKITTI360`.
        grid: the grid the labels were written on (label files of another shape are refused).
    """

    def __init__(self, root, split="val", *, grid: VoxelGrid | str = SSCBENCH_KITTI360, **kwargs) -> None:
        grid = get_grid(grid)
        if grid.class_names != SSCBENCH_KITTI360.class_names:
            raise ValueError(f"grid {grid.name!r} must have SSCBench-KITTI360's 19 classes")
        self.grid = grid
        super().__init__(root, split, **kwargs)


def front_camera(image_size: tuple[int, int], root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """KITTI-360's ``image_00``: ``(intrinsics [3, 3] for image_size, cam_from_velo [4, 4])``, float64."""
    cal = read_kitti360_calibration(root)
    k = torch.from_numpy(cal.intrinsics).clone()
    h, w = image_size
    k[0] *= w / KITTI360_IMAGE_SIZE[1]
    k[1] *= h / KITTI360_IMAGE_SIZE[0]
    return k, torch.from_numpy(cal.cam_from_velo).clone()


def _scene_grid(grid: VoxelGrid) -> VoxelGrid:
    """``grid``'s box and voxels with the nuScenes classes the scene generator paints."""
    return VoxelGrid(
        name=f"{grid.name}_scene",
        range_min=grid.range_min,
        range_max=grid.range_max,
        voxel_size=grid.voxel_size,
        shape=grid.shape,
        class_names=OCC3D_NUSCENES.class_names,
        empty_index=OCC3D_NUSCENES.empty_index,
        gaussian_scale=grid.gaussian_scale,
    )


def _lookup(scene_grid: VoxelGrid, grid: VoxelGrid) -> torch.Tensor:
    table = torch.full((256,), grid.ignore_index, dtype=torch.uint8)
    for i, name in enumerate(scene_grid.class_names):
        table[i] = grid.class_names.index(CLASS_MAP[name])
    return table


def _render(labels: torch.Tensor, colors: torch.Tensor, k, pose, image_size, grid) -> tuple[np.ndarray, np.ndarray]:
    """RGB ``[H, W, 3]`` uint8 and z-depth ``[H, W]`` float32 (0 = nothing seen) of the labelled voxels."""
    from .. import Cameras, render, voxels_to_gaussians
    from .synthetic import SKY

    gauss = voxels_to_gaussians(grid, labels=labels.long())
    h, w = image_size
    cams = Cameras(pose[None].float(), k[None].float(), w, h)
    out = render(
        gauss.means.float(),
        gauss.opacities.float(),
        gauss.features.float() @ colors,
        gauss.scales.float(),
        cams,
        background=torch.tensor(SKY),
        backend="torch",
    )
    rgb = (out.features[0].clamp(0.0, 1.0).numpy() * 255.0 + 0.5).astype(np.uint8)
    alpha = out.alpha[0]
    depth = torch.where(alpha > 0.5, out.depth[0] / alpha.clamp(min=1e-6), torch.zeros_like(alpha))
    return rgb, depth.numpy().astype(np.float32)


def _write_calibration(root: Path, k: torch.Tensor) -> None:
    from .._io import atomic_write_text

    p = np.zeros((3, 4))
    p[:, :3] = k.numpy()
    cal = read_kitti360_calibration(None)
    cam_to_velo = np.linalg.inv(cal.cam_from_velo)[:3]
    atomic_write_text(
        root / "calibration" / "perspective.txt", "P_rect_00: " + " ".join(f"{v:.9g}" for v in p.ravel()) + "\n"
    )
    atomic_write_text(
        root / "calibration" / "calib_cam_to_velo.txt", " ".join(f"{v:.12g}" for v in cam_to_velo.ravel()) + "\n"
    )


def make_kitti360_dataset(
    root: str | Path,
    num_scenes: int,
    *,
    num_val_scenes: int = 1,
    seed: int = 0,
    image_size: tuple[int, int] = (64, 240),
    grid: VoxelGrid | str = SSCBENCH_KITTI360,
    camera_stride: int = 4,
) -> SyntheticKITTI360Dataset:
    """Write ``num_scenes`` training and ``num_val_scenes`` validation frames under ``root``.

    Args:
        root: output directory (created; frames with the same names are replaced).
        num_scenes: training frames (one scene each), ``>= 1``.
        num_val_scenes: validation frames, ``>= 0``; their seeds follow the training ones.
        seed: seed of the first scene; scene ``i`` uses ``seed + i``.
        image_size: ``(H, W)`` of the stored images and depth maps, pixels (KITTI-360's
            aspect is 376 x 1408).
        grid: the label grid, KITTI-360's classes (the benchmark grid or a coarser one).
        camera_stride: pixel spacing of the scene generator's visibility rays (unused
            masks; larger is cheaper).

    Returns:
        :class:`SyntheticKITTI360Dataset`.
    """
    from .. import make_scene
    from ..viz import palette, save_png

    for name, value, lo in (("num_scenes", num_scenes, 1), ("num_val_scenes", num_val_scenes, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    if len(image_size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in image_size):
        raise ValueError(f"image_size must be (H, W) positive ints (pixels), got {image_size!r}")
    grid = get_grid(grid)
    if grid.class_names != SSCBENCH_KITTI360.class_names:
        raise ValueError(f"grid must have SSCBench-KITTI360's classes, got {grid.name!r}")
    if not grid.range_min[2] < GROUND_Z < grid.range_max[2]:
        raise ValueError(f"grid {grid.name!r} must contain the ground at z = {GROUND_Z} m (velodyne frame)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    image_size = (int(image_size[0]), int(image_size[1]))
    k, cam_from_velo = front_camera(image_size)
    scene_grid = _scene_grid(grid)
    table = _lookup(scene_grid, grid)
    colors = torch.from_numpy(palette(grid)).float() / 255.0
    # the scene generator takes the rig relative to the ground
    ground = torch.eye(4, dtype=torch.float64)
    ground[2, 3] = GROUND_Z
    rig = (k[None].float(), (cam_from_velo @ ground)[None].float(), image_size)
    train_seq, val_seq = kitti360_sequence(KITTI360_SPLITS["train"][0]), kitti360_sequence(KITTI360_SPLITS["val"][0])
    for n in KITTI360_SPLITS["train"] + KITTI360_SPLITS["val"]:
        (root / "preprocess" / "labels" / kitti360_sequence(n)).mkdir(parents=True, exist_ok=True)
    frames: dict[str, list[str]] = {"train": [], "val": []}
    for i in range(num_scenes + num_val_scenes):
        split, seq = ("train", train_seq) if i < num_scenes else ("val", val_seq)
        scene = make_scene(seed + i, scene_grid, ground_z=GROUND_Z, frames=1, camera_stride=camera_stride, rig=rig)
        labels = table[scene.semantics.long()]
        frame = f"{seed + i:010d}"
        write_kitti360_sample(root, seq, frame, labels.numpy(), grid=grid)
        rgb, depth = _render(labels, colors, k, cam_from_velo, image_size, grid)
        save_png(root / "data_2d_raw" / seq / "image_00" / "data_rect" / f"{frame}.png", rgb)
        write_kitti360_depth(root / "depth", seq, frame, depth)
        frames[split].append(frame)
    _write_calibration(root, k)
    summary = {
        "grid": grid.name,
        "image_size": list(image_size),
        "seed": seed,
        "train": frames["train"],
        "val": frames["val"],
        "ground_z": GROUND_Z,
        "fov_deg": math.degrees(2 * math.atan(image_size[1] / 2 / float(k[0, 0]))),
    }
    from .._io import atomic_write_text

    atomic_write_text(root / MARKER, json.dumps(summary, indent=1) + "\n")
    # last: what the dataset was made from and its content hash (see prepare_synthetic)
    description = synthetic_description("kitti360", grid, num_scenes, num_val_scenes, seed, image_size, False)
    write_manifest(root, description)
    return SyntheticKITTI360Dataset(root, root / "depth", tuple(frames["train"]), tuple(frames["val"]), image_size)
