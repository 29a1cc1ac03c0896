"""nuScenes-Occupancy (OpenOccupancy): sparse ``scene_<scene token>/occupancy/<lidar token>.npy`` labels.

Layout (``OpenOccupancy/docs/prepare_data.md``; read as its ``LoadOccupancy`` reads it)::

    <root>/scene_<scene token>/occupancy/<LIDAR_TOP sample_data token>.npy

Each file is an array ``[N, 4]`` whose rows are voxel index **z, y, x** and label of the
occupied voxels of the ``512 x 512 x 40`` grid over [-51.2, 51.2] x [-51.2, 51.2] x [-5, 3] m
of the LiDAR frame (0.2 m voxels); label 1-16 are the nuScenes classes, label 0 ("noise")
becomes 255 (ignored). Voxels without a row are empty (0). Rows ``[N, 7]`` (z, y, x,
velocity x, y, z, label: the velocity variant ``LoadOccupancy`` also reads) take the label
from the last column. A voxel listed more than once takes its most frequent label (the
smallest on a tie), as OpenOccupancy's ``nb_process_label`` does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write
from ..geometry.grid import NUSCENES_OCCUPANCY, VoxelGrid
from .arrays import check_label_array, read_npy, require_file
from .files import DataFileError, safe_name
from .infos import SampleInfo
from .nuscenes import NuScenesOccupancy

__all__ = [
    "nuscenes_occupancy_label_path",
    "read_nuscenes_occupancy_voxels",
    "write_nuscenes_occupancy_sample",
    "OpenOccupancyNuScenes",
]


def nuscenes_occupancy_label_path(root: str | Path, scene_token: str, lidar_token: str) -> Path:
    """``<root>/scene_<scene_token>/occupancy/<lidar_token>.npy``.

    Raises:
        DataFileError: a token is not a plain file name.
    """
    source = f"nuScenes-Occupancy label path under {root}"
    scene = safe_name(scene_token, "scene token", source)
    lidar = safe_name(lidar_token, "lidar token", source)
    return Path(root) / f"scene_{scene}" / "occupancy" / f"{lidar}.npy"


def _rows(path: Path, grid: VoxelGrid) -> np.ndarray:
    require_file(path, "nuScenes-Occupancy label file")
    try:
        return read_npy(path, "nuScenes-Occupancy label file", (None, 4), "iuf", max_rows=math.prod(grid.shape))
    except DataFileError as err:
        if "expected shape" not in str(err):
            raise
        # the velocity variant: z, y, x, vx, vy, vz, label
        try:
            rows = read_npy(path, "nuScenes-Occupancy label file", (None, 7), "iuf", max_rows=math.prod(grid.shape))
        except DataFileError:
            raise err from None
        return rows[:, [0, 1, 2, 6]]


def read_nuscenes_occupancy_voxels(path: str | Path, grid: VoxelGrid = NUSCENES_OCCUPANCY) -> np.ndarray:
    """Densify one sparse label file into uint8 ``[512, 512, 40]`` (0 empty, 1-16, 255 noise).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: not a plain ``.npy`` array, not ``[N, 4]`` (or ``[N, 7]``) integers or
            integral floats (checked from the header, before reading), more rows than voxels,
            an index outside the grid, or a label outside ``[0, 17)``.
    """
    path = Path(path)
    rows = _rows(path, grid)
    if rows.dtype.kind == "f" and not np.all(rows == np.round(rows)):
        raise DataFileError(
            f"{path}: expected integer rows (z, y, x, label), got dtype {rows.dtype} with fractional values", path
        )
    rows = rows.astype(np.int64)
    idx = rows[:, [2, 1, 0]]  # the file's z, y, x -> x, y, z
    label = rows[:, 3]
    bad = ((idx < 0) | (idx >= np.asarray(grid.shape))).any(axis=1)
    if bad.any():
        first = rows[bad][0, :3].tolist()
        raise DataFileError(
            f"{path}: {int(bad.sum())} row(s) index outside the grid (z, y, x) < "
            f"{grid.shape[::-1]}, e.g. (z, y, x) = {first}",
            path,
        )
    if label.size and (label.min() < 0 or label.max() >= grid.num_classes):
        raise DataFileError(
            f"{path}: labels must be in [0, {grid.num_classes}), found range [{label.min()}, {label.max()}]", path
        )
    label = np.where(label == grid.empty_index, grid.ignore_index, label)
    flat = np.ravel_multi_index((idx[:, 0], idx[:, 1], idx[:, 2]), grid.shape)
    dense = np.full(math.prod(grid.shape), grid.empty_index, dtype=np.uint8)
    if np.unique(flat).size == flat.size:
        dense[flat] = label
    else:  # majority vote per voxel, smallest label on a tie
        pairs, counts = np.unique(flat * 256 + label, return_counts=True)
        voxel, value = pairs // 256, pairs % 256
        order = np.lexsort((value, -counts, voxel))  # by voxel, most votes first, then smallest label
        voxel, value = voxel[order], value[order]
        first = np.ones(voxel.size, dtype=bool)
        first[1:] = voxel[1:] != voxel[:-1]
        dense[voxel[first]] = value[first]
    return dense.reshape(grid.shape)


def write_nuscenes_occupancy_sample(
    root: str | Path,
    scene_token: str,
    lidar_token: str,
    labels: np.ndarray | torch.Tensor,
    grid: VoxelGrid = NUSCENES_OCCUPANCY,
) -> Path:
    """Write dense labels ``[512, 512, 40]`` (0 empty, 255 ignore) as an OpenOccupancy sparse
    file: one int64 row (z, y, x, label) per non-empty voxel, ignore stored as label 0 (noise).
    Returns the path (:func:`nuscenes_occupancy_label_path`); it reads back unchanged."""
    dense = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    check_label_array(dense, grid.shape, "labels", grid.num_classes, grid.ignore_index)
    idx = np.argwhere(dense != grid.empty_index)
    values = dense[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.int64)
    values[values == grid.ignore_index] = grid.empty_index
    rows = np.concatenate([idx[:, ::-1].astype(np.int64), values[:, None]], axis=1)
    path = nuscenes_occupancy_label_path(root, scene_token, lidar_token)
    atomic_write(path, lambda f: np.save(f, rows))
    return path


class OpenOccupancyNuScenes(NuScenesOccupancy):
    """nuScenes-Occupancy samples (grid = LiDAR frame, 512 x 512 x 40).

    ``root`` is the ``nuScenes-Occupancy`` folder (holding ``scene_<token>/``); ``infos`` an
    info file whose samples carry ``scene_token`` and ``lidar_token`` (OpenOccupancy's
    ``nuscenes_occ_infos_*.pkl`` do) or the nuScenes tables; other arguments as
    :class:`~gaussrender.data.nuscenes.NuScenesOccupancy`. Items carry ``labels`` int64
    ``[512, 512, 40]`` (0 empty, 255 noise); there are no visibility masks.
    """

    grid = NUSCENES_OCCUPANCY

    def label_path(self, sample: SampleInfo) -> Path:
        if not sample.scene_token or not sample.lidar_token:
            raise DataFileError(
                f"sample {sample.token}: nuScenes-Occupancy files are named by scene_token and lidar_token, and the "
                "info file gives "
                f"{'no scene_token' if not sample.scene_token else 'no lidar_token'} (OpenOccupancy's "
                "nuscenes_occ_infos_*.pkl and the nuScenes tables have both)"
            )
        return nuscenes_occupancy_label_path(self.root, sample.scene_token, sample.lidar_token)

    def read_labels(self, sample: SampleInfo) -> dict[str, torch.Tensor]:
        return {
            "labels": torch.from_numpy(
                read_nuscenes_occupancy_voxels(self.label_path(sample), self.grid).astype(np.int64)
            )
        }

    def ego_from_grid(self, sample: SampleInfo) -> np.ndarray:
        return sample.lidar2ego.matrix()
