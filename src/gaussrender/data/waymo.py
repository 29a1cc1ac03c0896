"""Occ3D-Waymo: per-frame ``<split>/<scene>/<frame>_04.npz`` ground truth in the vehicle frame.

Layout (the Occ3D README and ``CVT-Occ/docs/dataset.md``)::

    <root>/training/<scene>/<frame>_04.npz      0.4 m voxels, 200 x 200 x 16 (read here)
    <root>/training/<scene>/<frame>.npz         0.1 m voxels, 1600 x 1600 x 64 (not read)
    <root>/validation/<scene>/<frame>_04.npz

with ``<scene>`` and ``<frame>`` three-digit numbers (``000``). Each ``_04.npz`` holds
``voxel_label`` (class 0-14, free space stored as **23**), ``origin_voxel_state`` (LiDAR
visibility mask), ``final_voxel_state`` (camera visibility mask) and ``infov`` (inside the
five cameras' field of view), all ``[200, 200, 16]`` indexed (x, y, z) over
[-40, 40] x [-40, 40] x [-1, 5.4] m of the vehicle frame (x forward, y left, z up); some
files also carry ``ego2global``, which is not needed here. The readers move free space from
23 to 15 (:data:`~gaussrender.OCC3D_WAYMO`'s ``empty_index``), as the release's data
loaders do, and read the masks as bool. The official mIoU is scored inside
``infov & final_voxel_state``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .._io import atomic_write
from ..geometry.grid import OCC3D_WAYMO, VoxelGrid
from .arrays import LABEL_KINDS, check_label_array, check_mask_array, open_npz
from .files import DataFileError

__all__ = [
    "OCC3D_WAYMO_FREE_LABEL",
    "OCC3D_WAYMO_SPLITS",
    "occ3d_waymo_label_path",
    "occ3d_waymo_split_dir",
    "read_occ3d_waymo_labels",
    "read_occ3d_waymo_voxels",
    "write_occ3d_waymo_sample",
    "Occ3DWaymo",
]

#: The label of free space inside the Occ3D-Waymo files (``FREE_LABEL = 23`` in the release configs).
OCC3D_WAYMO_FREE_LABEL = 23
#: Split name -> folder (``val``/``train`` accepted for ``validation``/``training``).
OCC3D_WAYMO_SPLITS: dict[str, str] = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "val": "validation",
    "test": "test",
}
_KEYS = {
    "semantics": "voxel_label",
    "mask_lidar": "origin_voxel_state",
    "mask_camera": "final_voxel_state",
    "mask_infov": "infov",
}
_NUMBER = re.compile(r"\d{3}")


def _number(value: object, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 999:
        return f"{value:03d}"
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return value
    raise ValueError(f"Occ3D-Waymo {what} must be a 3-digit name ('005') or an int in [0, 999], got {value!r}")


def occ3d_waymo_label_path(split_dir: str | Path, scene: int | str, frame: int | str) -> Path:
    """``<split_dir>/<scene>/<frame>_04.npz`` (``scene``, ``frame``: 3-digit names or ints).

    Raises:
        ValueError: ``scene`` or ``frame`` is not a number of at most 3 digits.
    """
    return Path(split_dir) / _number(scene, "scene") / f"{_number(frame, 'frame')}_04.npz"


def read_occ3d_waymo_labels(path: str | Path, grid: VoxelGrid = OCC3D_WAYMO) -> dict[str, np.ndarray]:
    """Read one ``<frame>_04.npz``.

    Returns:
        ``semantics`` uint8 ``[200, 200, 16]`` (0-14 classes, 15 free, 255 ignore if the file
        has it) and bool ``mask_lidar`` (``origin_voxel_state``), ``mask_camera``
        (``final_voxel_state``), ``mask_infov`` (``infov``).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: not a readable ``.npz``, a key missing (the message lists what the file
            has), a wrong shape or dtype (from the header, before reading), or a label other
            than 0-14, 23 or 255. Masks are True where nonzero (the release reads them with
            ``astype(bool)``).
    """
    path = Path(path)
    with open_npz(path, "Occ3D-Waymo labels file") as data:
        missing = [k for k in _KEYS.values() if k not in data.files]
        if missing:
            raise DataFileError(
                f"{path}: missing {missing}; expected keys {list(_KEYS.values())}, has {data.files}", path
            )
        arrays = {ours: data.read(theirs, grid.shape, LABEL_KINDS) for ours, theirs in _KEYS.items()}
    sem = arrays["semantics"].astype(np.int64)
    free = sem == OCC3D_WAYMO_FREE_LABEL
    bad = ~free & (sem != grid.ignore_index) & ((sem < 0) | (sem >= grid.empty_index))
    if bad.any():
        values = np.unique(sem[bad])[:10].tolist()
        raise DataFileError(
            f"{path} voxel_label: labels must be in [0, {grid.empty_index}), {OCC3D_WAYMO_FREE_LABEL} (free) or "
            f"{grid.ignore_index}, found {values}",
            path,
        )
    sem[free] = grid.empty_index
    out = {"semantics": sem.astype(np.uint8)}
    for ours in ("mask_lidar", "mask_camera", "mask_infov"):
        # nonzero = observed: the release's loaders read the masks with astype(bool)
        out[ours] = arrays[ours] != 0
    return out


def read_occ3d_waymo_voxels(path: str | Path, grid: VoxelGrid = OCC3D_WAYMO) -> np.ndarray:
    """The semantics of one ``<frame>_04.npz``: uint8 ``[200, 200, 16]``, 0-14 classes, 15 free
    (23 in the file). The masks: :func:`read_occ3d_waymo_labels`."""
    return read_occ3d_waymo_labels(path, grid)["semantics"]


def write_occ3d_waymo_sample(
    split_dir: str | Path,
    scene: int | str,
    frame: int | str,
    semantics: np.ndarray | torch.Tensor,
    mask_lidar: np.ndarray | torch.Tensor,
    mask_camera: np.ndarray | torch.Tensor,
    mask_infov: np.ndarray | torch.Tensor,
    grid: VoxelGrid = OCC3D_WAYMO,
) -> Path:
    """Write ``<split_dir>/<scene>/<frame>_04.npz`` in the Occ3D-Waymo layout.

    ``semantics`` uses the preset's classes (15 = free), stored with free as 23, uint8; masks
    are stored as bool. Returns the path; it reads back unchanged.
    """
    sem = np.asarray(semantics.cpu() if isinstance(semantics, torch.Tensor) else semantics)
    check_label_array(sem, grid.shape, "semantics", grid.num_classes, grid.ignore_index)
    stored = np.where(sem == grid.empty_index, OCC3D_WAYMO_FREE_LABEL, sem).astype(np.uint8)
    masks = {}
    for ours, arr in (("mask_lidar", mask_lidar), ("mask_camera", mask_camera), ("mask_infov", mask_infov)):
        a = np.asarray(arr.cpu() if isinstance(arr, torch.Tensor) else arr)
        masks[_KEYS[ours]] = check_mask_array(a, grid.shape, ours)
    path = occ3d_waymo_label_path(split_dir, scene, frame)
    lidar, camera, infov = masks["origin_voxel_state"], masks["final_voxel_state"], masks["infov"]
    atomic_write(
        path,
        lambda f: np.savez_compressed(
            f, voxel_label=stored, origin_voxel_state=lidar, final_voxel_state=camera, infov=infov
        ),
    )
    return path


def occ3d_waymo_split_dir(root: str | Path, split: str | None) -> Path:
    """The folder of one split: ``<root>/<training|validation|test>``; when ``split`` is None
    and ``root`` has no ``validation/`` folder, ``root`` itself (already a split folder).

    Raises:
        ValueError: an unknown split name.
        FileNotFoundError: the split folder does not exist.
    """
    root = Path(root)
    if split is None:
        if (root / "validation").is_dir() or not any(root.glob("[0-9][0-9][0-9]/[0-9][0-9][0-9]_04.npz")):
            split = "validation"
        else:
            return root
    if split not in OCC3D_WAYMO_SPLITS:
        raise ValueError(f"Occ3D-Waymo split must be one of {sorted(OCC3D_WAYMO_SPLITS)}, got {split!r}")
    directory = root / OCC3D_WAYMO_SPLITS[split]
    if not directory.is_dir():
        raise FileNotFoundError(f"Occ3D-Waymo split folder not found: {directory}")
    return directory


class Occ3DWaymo(Dataset):
    """Occ3D-Waymo frames of one split (grid = vehicle frame), labels and masks only.

    Camera calibration (the release's ``cam_infos.pkl``) is not read: items carry no cameras,
    so the GaussRender loss's camera views and ``--render-metrics`` need another source.

    Args:
        root: the Occ3D-Waymo root holding ``training/``, ``validation/``, or one split folder.
        split: ``"validation"`` (``"val"``), ``"training"`` (``"train"``), ``"test"``; None:
            ``validation`` under ``root``, or ``root`` itself when it is a split folder.

    Items: ``token`` (``"<scene>/<frame>"``), ``scene``, ``labels`` int64 ``[200, 200, 16]``
    (15 = free), ``mask_lidar``, ``mask_camera``, ``mask_infov`` bool ``[200, 200, 16]``.

    Raises:
        FileNotFoundError: the split folder is missing.
        ValueError: no ``<scene>/<frame>_04.npz`` in it.
    """

    grid = OCC3D_WAYMO

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        self.split_dir = occ3d_waymo_split_dir(root, split)
        self.frames: list[tuple[str, str]] = []
        for scene_dir in sorted(p for p in self.split_dir.iterdir() if p.is_dir() and _NUMBER.fullmatch(p.name)):
            for f in sorted(scene_dir.glob("[0-9][0-9][0-9]_04.npz")):
                self.frames.append((scene_dir.name, f.name[:3]))
        if not self.frames:
            raise ValueError(f"no <scene>/<frame>_04.npz file under {self.split_dir}")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene, frame = self.frames[index]
        data = read_occ3d_waymo_labels(occ3d_waymo_label_path(self.split_dir, scene, frame), self.grid)
        return {
            "token": f"{scene}/{frame}",
            "scene": scene,
            "labels": torch.from_numpy(data["semantics"].astype(np.int64)),
            "mask_lidar": torch.from_numpy(data["mask_lidar"]),
            "mask_camera": torch.from_numpy(data["mask_camera"]),
            "mask_infov": torch.from_numpy(data["mask_infov"]),
        }
