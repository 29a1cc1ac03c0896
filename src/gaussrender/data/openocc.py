"""OpenOcc v2 (OccNet, CVPR 2024 occupancy-and-flow challenge): ``openocc_v2/<scene>/<token>/labels.npz``.

Layout (OccNet ``README.md``, "OpenOcc Dataset")::

    data/nuscenes/openocc_v2/<scene name>/<sample token>/labels.npz
    data/nuscenes/nuscenes_infos_{train,val,test}_occ.pkl     (each sample's ``occ_path``)

Each ``labels.npz`` holds ``semantics`` ``[200, 200, 16]`` (class 0-15 in OccNet's order,
16 = free) and ``flow`` ``[200, 200, 16, 2]`` (x/y velocity, m/s), indexed (x, y, z) over
[-40, 40] x [-40, 40] x [-1, 5.4] m of the ego frame at the LiDAR timestamp (RayIoU's origins
are moved into that frame by OccNet's ``ego_pose_extractor.py``). There are no visibility
masks. The benchmark is scored by RayIoU (plus the flow's mAVE, not computed here).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .._io import atomic_write
from ..geometry.grid import OPENOCC_NUSCENES, VoxelGrid
from .arrays import LABEL_KINDS, check_label_array, open_npz
from .files import DataFileError, safe_name
from .infos import SampleInfo
from .nuscenes import NuScenesOccupancy

__all__ = [
    "openocc_label_path",
    "read_openocc_labels",
    "read_openocc_voxels",
    "write_openocc_sample",
    "OpenOccNuScenes",
]


def openocc_label_path(root: str | Path, scene: str, token: str) -> Path:
    """``<root>/<scene>/<token>/labels.npz`` (``root`` = the ``openocc_v2`` folder).

    Raises:
        DataFileError: ``scene`` or ``token`` is not a plain file name.
    """
    source = f"OpenOcc label path under {root}"
    return Path(root) / safe_name(scene, "scene", source) / safe_name(token, "token", source) / "labels.npz"


def read_openocc_labels(path: str | Path, grid: VoxelGrid = OPENOCC_NUSCENES) -> dict[str, np.ndarray]:
    """Read one ``labels.npz``: ``semantics`` uint8 ``[200, 200, 16]`` (16 = free) and, when the
    file has it, ``flow`` float32 ``[200, 200, 16, 2]`` (m/s).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: not a readable ``.npz``, no ``semantics``, a wrong shape or dtype (from
            the header, before reading), a label outside ``[0, 17)`` (or 255), or a non-finite flow.
    """
    path = Path(path)
    with open_npz(path, "OpenOcc labels file") as data:
        if "semantics" not in data.files:
            raise DataFileError(
                f"{path}: missing 'semantics'; expected keys ['semantics', 'flow'], has {data.files}", path
            )
        sem = data.read("semantics", grid.shape, LABEL_KINDS)
        flow = data.read("flow", (*grid.shape, 2), "f") if "flow" in data.files else None
    out = {
        "semantics": check_label_array(
            sem, grid.shape, f"{path} semantics", grid.num_classes, grid.ignore_index, path
        ).astype(np.uint8)
    }
    if flow is not None:
        if not np.all(np.isfinite(flow)):
            raise DataFileError(f"{path} flow: holds NaN or infinite values", path)
        out["flow"] = flow.astype(np.float32)
    return out


def read_openocc_voxels(path: str | Path, grid: VoxelGrid = OPENOCC_NUSCENES) -> np.ndarray:
    """The ``semantics`` of one ``labels.npz``: uint8 ``[200, 200, 16]``, 0-15 classes, 16 free."""
    return read_openocc_labels(path, grid)["semantics"]


def write_openocc_sample(
    root: str | Path,
    scene: str,
    token: str,
    semantics: np.ndarray | torch.Tensor,
    flow: np.ndarray | torch.Tensor | None = None,
    grid: VoxelGrid = OPENOCC_NUSCENES,
) -> Path:
    """Write ``<root>/<scene>/<token>/labels.npz``: ``semantics`` uint8 and ``flow`` float32
    (zeros when None). Returns the path; it reads back unchanged."""
    sem = np.asarray(semantics.cpu() if isinstance(semantics, torch.Tensor) else semantics)
    check_label_array(sem, grid.shape, "semantics", grid.num_classes, grid.ignore_index)
    if flow is None:
        fl = np.zeros((*grid.shape, 2), dtype=np.float32)
    else:
        fl = np.asarray(flow.cpu() if isinstance(flow, torch.Tensor) else flow, dtype=np.float32)
        if fl.shape != (*grid.shape, 2) or not np.all(np.isfinite(fl)):
            raise ValueError(f"flow must be finite [{', '.join(map(str, grid.shape))}, 2], got shape {list(fl.shape)}")
    path = openocc_label_path(root, scene, token)
    atomic_write(path, lambda f: np.savez_compressed(f, semantics=sem.astype(np.uint8), flow=fl))
    return path


class OpenOccNuScenes(NuScenesOccupancy):
    """OpenOcc v2 samples (grid = ego frame at the LiDAR timestamp).

    ``root`` is the ``openocc_v2`` folder; ``infos`` OccNet's ``nuscenes_infos_*_occ.pkl`` (or
    any info file / tables of the same samples); other arguments as
    :class:`~gaussrender.data.nuscenes.NuScenesOccupancy`. A sample's file is
    ``<root>/<scene>/<token>/labels.npz``, the scene taken from the info file's ``occ_path``
    (``.../openocc_v2/<scene>/<token>/labels.npz``) when it has one, else the sample's scene.
    Items carry ``labels`` int64 ``[200, 200, 16]`` (16 = free); OpenOcc has no visibility masks.
    """

    grid = OPENOCC_NUSCENES

    def label_path(self, sample: SampleInfo) -> Path:
        if sample.occ_path and sample.occ_path.endswith("labels.npz"):
            parts = PurePosixPath(sample.occ_path.replace("\\", "/")).parts
            if len(parts) >= 3:
                return openocc_label_path(self.root, parts[-3], parts[-2])
        return openocc_label_path(self.root, sample.scene, sample.token)

    def read_labels(self, sample: SampleInfo) -> dict[str, torch.Tensor]:
        data = read_openocc_labels(self.label_path(sample), self.grid)
        return {"labels": torch.from_numpy(data["semantics"].astype(np.int64))}

    def ego_from_grid(self, sample: SampleInfo) -> np.ndarray:
        return np.eye(4)
