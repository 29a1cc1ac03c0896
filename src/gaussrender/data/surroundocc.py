"""SurroundOcc-nuScenes: sparse ``samples/<lidar file>.npy`` ground truth in the LiDAR frame.

Each file is an integer array ``[N, 4]`` whose rows are voxel index (x, y, z) and label of the
non-empty voxels of the ``200 x 200 x 16`` grid over [-50, 50] x [-50, 50] x [-5, 3] m. Dense
labels start at 0 (empty); a label 0 *inside the file* marks a voxel without a valid class
and becomes the ignore index 255. Files are named after the sample's LiDAR file
(``n015-..._LIDAR_TOP__<timestamp>.pcd.bin.npy``).
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .._io import atomic_write
from ..geometry.grid import SURROUNDOCC_NUSCENES, VoxelGrid
from .arrays import check_label_array, read_npy
from .files import DataFileError, safe_name
from .infos import SampleInfo
from .nuscenes import NuScenesOccupancy

__all__ = [
    "read_surroundocc_labels",
    "write_surroundocc_sample",
    "surroundocc_label_path",
    "SurroundOccNuScenes",
]


def surroundocc_label_path(root: str | Path, lidar_path: str) -> Path:
    """``<root>/samples/<basename of lidar_path>.npy``.

    Raises:
        DataFileError: ``lidar_path`` has no usable base name.
    """
    if not isinstance(lidar_path, str):
        raise DataFileError(f"lidar_path must be a string, got {type(lidar_path).__name__}")
    name = PurePosixPath(lidar_path.replace("\\", "/")).name
    return Path(root) / "samples" / f"{safe_name(name, 'lidar_path base name', repr(lidar_path))}.npy"


def read_surroundocc_labels(path: str | Path, grid: VoxelGrid = SURROUNDOCC_NUSCENES) -> np.ndarray:
    """Densify one sparse label file into uint8 ``[X, Y, Z]`` (0 empty, 255 ignore).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: not a plain ``.npy`` array, not ``[N, 4]`` integers (or integral
            floats), more rows than voxels, an index outside the grid or a label outside
            ``[0, num_classes)``.
    """
    path = Path(path)
    # at most one row per voxel; the header is checked before anything is read
    rows = read_npy(path, "SurroundOcc label file", (None, 4), "iuf", max_rows=math.prod(grid.shape))
    if rows.dtype.kind == "f" and not np.all(rows == np.round(rows)):
        raise DataFileError(
            f"{path}: expected integer rows (x, y, z, label), got dtype {rows.dtype} with fractional values", path
        )
    rows = rows.astype(np.int64)
    idx, label = rows[:, :3], rows[:, 3]
    bad = ((idx < 0) | (idx >= np.asarray(grid.shape))).any(axis=1)
    if bad.any():
        raise DataFileError(
            f"{path}: {int(bad.sum())} row(s) index outside the grid {grid.shape}, e.g. {idx[bad][0].tolist()}", path
        )
    if label.size and (label.min() < 0 or label.max() >= grid.num_classes):
        raise DataFileError(
            f"{path}: labels must be in [0, {grid.num_classes}), found range [{label.min()}, {label.max()}]", path
        )
    dense = np.full(grid.shape, grid.empty_index, dtype=np.uint8)
    dense[idx[:, 0], idx[:, 1], idx[:, 2]] = np.where(label == grid.empty_index, grid.ignore_index, label)
    return dense


def write_surroundocc_sample(
    root: str | Path, lidar_path: str, labels: np.ndarray | torch.Tensor, grid: VoxelGrid = SURROUNDOCC_NUSCENES
) -> Path:
    """Write dense labels ``[X, Y, Z]`` (0 empty, 255 ignore) as a SurroundOcc sparse file.

    Every non-empty voxel becomes a row; ignore voxels are stored with label 0, so the file
    reads back to the same dense volume. Returns the path
    (:func:`surroundocc_label_path`).
    """
    dense = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    check_label_array(dense, grid.shape, "labels", grid.num_classes, grid.ignore_index)
    idx = np.argwhere(dense != grid.empty_index)
    values = dense[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.int64)
    values[values == grid.ignore_index] = grid.empty_index
    rows = np.concatenate([idx.astype(np.int64), values[:, None]], axis=1)
    path = surroundocc_label_path(root, lidar_path)
    atomic_write(path, lambda f: np.save(f, rows))
    return path


class SurroundOccNuScenes(NuScenesOccupancy):
    """SurroundOcc-nuScenes samples (grid = LiDAR frame).

    ``root`` is the ``nuscenes_occ`` directory holding ``samples/``; other arguments as
    :class:`~gaussrender.data.nuscenes.NuScenesOccupancy`. Items carry ``labels`` int64
    ``[200, 200, 16]``; SurroundOcc has no visibility masks.
    """

    grid = SURROUNDOCC_NUSCENES

    def label_path(self, sample: SampleInfo) -> Path:
        # SurroundOcc's own infos carry occ_path = .../samples/<lidar file>.npy; others only lidar_path.
        if sample.occ_path and sample.occ_path.endswith(".npy"):
            name = PurePosixPath(sample.occ_path.replace("\\", "/")).name
            return self.root / "samples" / safe_name(name, "occ_path base name", f"sample {sample.token}")
        return surroundocc_label_path(self.root, sample.lidar_path)

    def read_labels(self, sample: SampleInfo) -> dict[str, torch.Tensor]:
        return {
            "labels": torch.from_numpy(read_surroundocc_labels(self.label_path(sample), self.grid).astype(np.int64))
        }

    def ego_from_grid(self, sample: SampleInfo) -> np.ndarray:
        return sample.lidar2ego.matrix()
