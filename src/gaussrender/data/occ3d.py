"""Occ3D-nuScenes: ``gts/<scene>/<token>/labels.npz`` ground truth in the ego frame.

Each ``labels.npz`` holds ``semantics`` (class 0–16, 17 = free), ``mask_lidar`` and
``mask_camera`` (1 = observed), all ``uint8 [200, 200, 16]`` indexed (x, y, z) over
[-40, 40] x [-40, 40] x [-1, 5.4] m of the ego frame at the LiDAR timestamp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write
from ..geometry.grid import OCC3D_NUSCENES, VoxelGrid
from .arrays import LABEL_KINDS, check_label_array, check_mask_array, open_npz
from .files import DataFileError, safe_name
from .infos import SampleInfo
from .nuscenes import NuScenesOccupancy

__all__ = ["read_occ3d_labels", "write_occ3d_sample", "occ3d_label_path", "Occ3DNuScenes"]

_KEYS = ("semantics", "mask_lidar", "mask_camera")


def occ3d_label_path(root: str | Path, scene: str, token: str) -> Path:
    """``<root>/gts/<scene>/<token>/labels.npz``.

    Raises:
        DataFileError: ``scene`` or ``token`` is not a plain file name (see
            :func:`~gaussrender.data.files.safe_name`).
    """
    source = f"Occ3D label path under {root}"
    return Path(root) / "gts" / safe_name(scene, "scene", source) / safe_name(token, "token", source) / "labels.npz"


def read_occ3d_labels(path: str | Path, grid: VoxelGrid = OCC3D_NUSCENES) -> dict[str, np.ndarray]:
    """Read one ``labels.npz``.

    Returns:
        ``semantics`` uint8 ``[X, Y, Z]`` and ``mask_lidar``, ``mask_camera`` bool ``[X, Y, Z]``.

    Raises:
        FileNotFoundError: missing file.
        DataFileError: not a readable ``.npz``, a key is missing (the message lists what the
            file has), wrong shape/dtype (checked from the header, before reading) or label
            values.
    """
    with open_npz(path, "Occ3D labels file") as data:
        missing = [k for k in _KEYS if k not in data.files]
        if missing:
            raise DataFileError(f"{path}: missing {missing}; expected keys {list(_KEYS)}, has {data.files}", path)
        arrays = {k: data.read(k, grid.shape, LABEL_KINDS) for k in _KEYS}
    path = Path(path)
    out = {
        "semantics": check_label_array(
            arrays["semantics"], grid.shape, f"{path} semantics", grid.num_classes, grid.ignore_index, path
        ).astype(np.uint8)
    }
    for k in ("mask_lidar", "mask_camera"):
        out[k] = check_mask_array(arrays[k], grid.shape, f"{path} {k}", path)
    return out


def write_occ3d_sample(
    root: str | Path,
    scene: str,
    token: str,
    semantics: np.ndarray | torch.Tensor,
    mask_lidar: np.ndarray | torch.Tensor,
    mask_camera: np.ndarray | torch.Tensor,
    grid: VoxelGrid = OCC3D_NUSCENES,
) -> Path:
    """Write ``<root>/gts/<scene>/<token>/labels.npz`` in the Occ3D layout (uint8 arrays).

    Inputs are checked the way :func:`read_occ3d_labels` checks them, so a written file always
    reads back. Returns the file path.
    """
    sem = np.asarray(semantics.cpu() if isinstance(semantics, torch.Tensor) else semantics)
    check_label_array(sem, grid.shape, "semantics", grid.num_classes, grid.ignore_index)
    masks = {}
    for name, m in (("mask_lidar", mask_lidar), ("mask_camera", mask_camera)):
        arr = np.asarray(m.cpu() if isinstance(m, torch.Tensor) else m)
        masks[name] = check_mask_array(arr, grid.shape, name).astype(np.uint8)
    path = occ3d_label_path(root, scene, token)
    lidar, camera = masks["mask_lidar"], masks["mask_camera"]
    atomic_write(
        path, lambda f: np.savez_compressed(f, semantics=sem.astype(np.uint8), mask_lidar=lidar, mask_camera=camera)
    )
    return path


class Occ3DNuScenes(NuScenesOccupancy):
    """Occ3D-nuScenes samples (grid = ego frame at the LiDAR timestamp).

    ``root`` holds ``gts/`` (and, for ``split="train"/"val"``, ``annotations.json``); other
    arguments as :class:`~gaussrender.data.nuscenes.NuScenesOccupancy`. Items carry ``labels``
    int64 ``[200, 200, 16]`` and ``mask_lidar``/``mask_camera`` bool ``[200, 200, 16]``.

    Example:
        >>> ds = Occ3DNuScenes("data/nuscenes", "data/nuscenes/bevdetv2-nuscenes_infos_val.pkl")  # doctest: +SKIP
        >>> item = ds[0]; item["labels"].shape  # doctest: +SKIP
        torch.Size([200, 200, 16])
    """

    grid = OCC3D_NUSCENES

    def label_path(self, sample: SampleInfo) -> Path:
        return occ3d_label_path(self.root, sample.scene, sample.token)

    def read_labels(self, sample: SampleInfo) -> dict[str, torch.Tensor]:
        data = read_occ3d_labels(self.label_path(sample), self.grid)
        return {
            "labels": torch.from_numpy(data["semantics"].astype(np.int64)),
            "mask_lidar": torch.from_numpy(data["mask_lidar"]),
            "mask_camera": torch.from_numpy(data["mask_camera"]),
        }

    def ego_from_grid(self, sample: SampleInfo) -> np.ndarray:
        return np.eye(4)
