"""SemanticKITTI semantic scene completion: ``voxels/<frame>.label`` and its bit-packed masks.

Layout (the SemanticKITTI voxel release, read as the semantic-kitti-api and MonoScene/LMSCNet
read it)::

    <root>/sequences/<seq>/voxels/<frame>.label      uint16 raw label per voxel, 256*256*32 values
    <root>/sequences/<seq>/voxels/<frame>.invalid    bit-packed, 1 = never observed (not scored)
    <root>/sequences/<seq>/voxels/<frame>.bin        bit-packed input occupancy (voxelised scan)
    <root>/sequences/<seq>/voxels/<frame>.occluded   bit-packed occluded voxels
    <root>/sequences/<seq>/image_2/<frame>.png       left colour camera
    <root>/sequences/<seq>/calib.txt                 P0..P3 (3x4) and Tr (velodyne -> rectified cam0)

``<root>`` may also be the folder holding ``dataset/sequences`` (MonoScene's ``kitti_root``).
Labels exist for every fifth frame (``000000``, ``000005``, ...). All volumes are C-ordered
``[256, 256, 32]`` = (x, y, z) over [0, 51.2] x [-25.6, 25.6] x [-2, 4.4] m of the velodyne
frame; the bit packing puts voxel ``8i`` in the most significant bit of byte ``i``.

Raw label ids go through ``learning_map`` of ``semantic-kitti.yaml``; as in the completion
benchmark's evaluation, raw id 0 stays 0 (empty) and every other id whose learning class is
0 ("outlier", "other-structure", "other-object") becomes 255 (not scored), and so do voxels
marked in ``.invalid``. Splits: train 00-07, 09, 10; val 08; test 11-21 (test has no labels).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .._io import atomic_write, atomic_write_text
from ..geometry.grid import SEMANTICKITTI, VoxelGrid
from .arrays import check_label_array, check_mask_array, read_packed_bits, read_raw, read_small_text
from .files import DataFileError, safe_name, split_sequences
from .images import check_image_size, monocular_camera

__all__ = [
    "SEMANTICKITTI_LEARNING_MAP",
    "SEMANTICKITTI_LEARNING_MAP_INV",
    "SEMANTICKITTI_SPLITS",
    "SEMANTICKITTI_IMAGE_SIZE",
    "SemanticKittiCalibration",
    "semantickitti_sequence",
    "semantickitti_root",
    "semantickitti_label_lut",
    "read_semantickitti_voxels",
    "read_semantickitti_raw_labels",
    "read_semantickitti_invalid",
    "read_semantickitti_occupancy",
    "read_semantickitti_occluded",
    "read_semantickitti_calibration",
    "write_semantickitti_sample",
    "SemanticKITTI",
]

#: Raw SemanticKITTI label id -> SSC learning class (``learning_map`` of semantic-kitti.yaml).
SEMANTICKITTI_LEARNING_MAP: dict[int, int] = {
    0: 0,  # unlabeled
    1: 0,  # outlier
    10: 1,  # car
    11: 2,  # bicycle
    13: 5,  # bus -> other-vehicle
    15: 3,  # motorcycle
    16: 5,  # on-rails -> other-vehicle
    18: 4,  # truck
    20: 5,  # other-vehicle
    30: 6,  # person
    31: 7,  # bicyclist
    32: 8,  # motorcyclist
    40: 9,  # road
    44: 10,  # parking
    48: 11,  # sidewalk
    49: 12,  # other-ground
    50: 13,  # building
    51: 14,  # fence
    52: 0,  # other-structure
    60: 9,  # lane-marking -> road
    70: 15,  # vegetation
    71: 16,  # trunk
    72: 17,  # terrain
    80: 18,  # pole
    81: 19,  # traffic-sign
    99: 0,  # other-object
    252: 1,  # moving-car
    253: 7,  # moving-bicyclist
    254: 6,  # moving-person
    255: 8,  # moving-motorcyclist
    256: 5,  # moving-on-rails
    257: 5,  # moving-bus
    258: 4,  # moving-truck
    259: 5,  # moving-other-vehicle
}
#: Learning class -> raw id (``learning_map_inv``): what the writer stores.
SEMANTICKITTI_LEARNING_MAP_INV: dict[int, int] = {
    0: 0,
    1: 10,
    2: 11,
    3: 15,
    4: 18,
    5: 20,
    6: 30,
    7: 31,
    8: 32,
    9: 40,
    10: 44,
    11: 48,
    12: 49,
    13: 50,
    14: 51,
    15: 70,
    16: 71,
    17: 72,
    18: 80,
    19: 81,
}
#: Sequences per split (semantic-kitti.yaml ``split``; MonoScene calls ``valid`` ``val``).
SEMANTICKITTI_SPLITS: dict[str, tuple[int, ...]] = {
    "train": (0, 1, 2, 3, 4, 5, 6, 7, 9, 10),
    "val": (8,),
    "test": tuple(range(11, 22)),
}
#: ``image_2`` size, (H, W) pixels, of sequences 00-02 (others are 370x1226 or 375x1242: an
#: existing image's header always gives its own size).
SEMANTICKITTI_IMAGE_SIZE: tuple[int, int] = (376, 1241)
# the raw id an ignored voxel (255) is written as: "outlier", whose learning class 0 reads back as 255
_IGNORE_RAW_ID = 1
_SEQUENCE = re.compile(r"\d{2}")


def semantickitti_label_lut() -> np.ndarray:
    """``uint8 [65536]``: raw uint16 id -> learning class, 255 for ids that map to "unlabeled"
    (except raw 0, empty) or that ``semantic-kitti.yaml`` does not list."""
    lut = np.full(1 << 16, 255, dtype=np.uint8)
    for raw, cls in SEMANTICKITTI_LEARNING_MAP.items():
        lut[raw] = cls if cls != 0 else 255
    lut[0] = 0
    return lut


_LUT = semantickitti_label_lut()
_KNOWN = np.zeros(1 << 16, dtype=bool)
_KNOWN[list(SEMANTICKITTI_LEARNING_MAP)] = True


def semantickitti_sequence(sequence: int | str) -> str:
    """``8`` or ``"08"`` -> ``"08"``.

    Raises:
        ValueError: not a sequence number in [0, 99] (a name never carries a path).
    """
    if isinstance(sequence, bool) or not isinstance(sequence, (int, str)):
        raise ValueError(f"SemanticKITTI sequence must be a number or a 2-digit name, got {sequence!r}")
    if isinstance(sequence, str):
        if not _SEQUENCE.fullmatch(sequence):
            raise ValueError(f"SemanticKITTI sequence name must be 2 digits (e.g. '08'), got {sequence!r}")
        return sequence
    if not 0 <= sequence <= 99:
        raise ValueError(f"SemanticKITTI sequence number must be in [0, 99], got {sequence}")
    return f"{sequence:02d}"


def semantickitti_root(root: str | Path) -> Path:
    """The folder holding ``sequences/``: ``root`` itself, or ``root/dataset`` (MonoScene's layout).

    Raises:
        FileNotFoundError: neither holds ``sequences/``.
    """
    root = Path(root)
    for candidate in (root, root / "dataset"):
        if (candidate / "sequences").is_dir():
            return candidate
    raise FileNotFoundError(f"SemanticKITTI: no sequences/ folder in {root} or {root / 'dataset'}")


def read_semantickitti_raw_labels(path: str | Path, grid: VoxelGrid = SEMANTICKITTI) -> np.ndarray:
    """Read a ``.label`` file as its raw uint16 ids ``[256, 256, 32]`` (little-endian on disk).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: a size other than ``256 * 256 * 32 * 2`` bytes.
    """
    return read_raw(path, "SemanticKITTI voxel label file", "<u2", grid.shape).astype(np.uint16)


def read_semantickitti_invalid(path: str | Path, grid: VoxelGrid = SEMANTICKITTI) -> np.ndarray:
    """Read a bit-packed ``.invalid`` file as bool ``[256, 256, 32]`` (True = not scored).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: a size other than ``256 * 256 * 32 / 8`` bytes.
    """
    return read_packed_bits(path, "SemanticKITTI invalid mask", grid.shape)


def read_semantickitti_occupancy(path: str | Path, grid: VoxelGrid = SEMANTICKITTI) -> np.ndarray:
    """Read a bit-packed ``.bin`` file (the voxelised input scan) as bool ``[256, 256, 32]``."""
    return read_packed_bits(path, "SemanticKITTI input occupancy (.bin)", grid.shape)


def read_semantickitti_occluded(path: str | Path, grid: VoxelGrid = SEMANTICKITTI) -> np.ndarray:
    """Read a bit-packed ``.occluded`` file as bool ``[256, 256, 32]``."""
    return read_packed_bits(path, "SemanticKITTI occluded mask", grid.shape)


def read_semantickitti_voxels(
    label_path: str | Path, invalid_path: str | Path | None = None, grid: VoxelGrid = SEMANTICKITTI
) -> np.ndarray:
    """Read one SemanticKITTI SSC ground truth as uint8 ``[256, 256, 32]``.

    Args:
        label_path: ``voxels/<frame>.label`` (uint16 raw ids).
        invalid_path: ``voxels/<frame>.invalid``; its voxels become 255. None: not applied.
        grid: the grid (:data:`~gaussrender.SEMANTICKITTI`).

    Returns:
        0 empty, 1-19 the learning classes of :data:`SEMANTICKITTI_LEARNING_MAP`, 255 invalid
        (unlabeled ids other than 0, and the ``.invalid`` voxels).

    Raises:
        FileNotFoundError: a missing file.
        DataFileError: a file of the wrong size (checked before reading), or a raw id that
            ``semantic-kitti.yaml`` does not list (the message names the first few).
    """
    raw = read_semantickitti_raw_labels(label_path, grid)
    unknown = ~_KNOWN[raw]
    if unknown.any():
        values = np.unique(raw[unknown])[:10].tolist()
        raise DataFileError(
            f"{label_path}: raw label ids {values} are not in SemanticKITTI's learning_map "
            f"(known: {sorted(SEMANTICKITTI_LEARNING_MAP)})",
            Path(label_path),
        )
    labels = _LUT[raw]
    if invalid_path is not None:
        labels[read_semantickitti_invalid(invalid_path, grid)] = 255
    return labels


@dataclass(frozen=True)
class SemanticKittiCalibration:
    """One sequence's ``calib.txt``: ``p2`` ``[3, 4]`` (image_2 projection of rectified cam0
    points), ``tr`` ``[4, 4]`` (velodyne -> rectified cam0), ``intrinsics`` ``[3, 3]`` (= ``p2[:, :3]``)
    and ``cam_from_velo`` ``[4, 4]`` (velodyne -> image_2's camera: ``tr`` then the shift
    ``K^-1 p2[:, 3]``, so that ``intrinsics @ cam_from_velo[:3] == p2 @ tr``), float64."""

    p2: np.ndarray
    tr: np.ndarray
    intrinsics: np.ndarray
    cam_from_velo: np.ndarray


def read_semantickitti_calibration(path: str | Path) -> SemanticKittiCalibration:
    """Read ``calib.txt`` (lines ``KEY: 12 numbers``; uses ``P2`` and ``Tr``).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: over 1 MiB, not UTF-8, ``P2`` or ``Tr`` missing or not 12 finite
            numbers, or a singular ``P2[:, :3]``.
    """
    path = Path(path)
    text = read_small_text(path, "SemanticKITTI calib.txt")
    values: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, rest = line.split(":", 1)
        if key.strip() in ("P2", "Tr"):
            try:
                numbers = np.array([float(v) for v in rest.split()], dtype=np.float64)
            except ValueError as err:
                raise DataFileError(f"{path}: {key.strip()}: {err}", path) from err
            if numbers.size != 12 or not np.all(np.isfinite(numbers)):
                raise DataFileError(
                    f"{path}: {key.strip()} must be 12 finite numbers (3x4, row-major), got {rest.split()[:16]}", path
                )
            values[key.strip()] = numbers.reshape(3, 4)
    missing = [k for k in ("P2", "Tr") if k not in values]
    if missing:
        raise DataFileError(f"{path}: no line for {missing} (expected 'P2: ...' and 'Tr: ...')", path)
    p2 = values["P2"]
    tr = np.eye(4)
    tr[:3] = values["Tr"]
    k = p2[:, :3].copy()
    if abs(np.linalg.det(k)) < 1e-12:
        raise DataFileError(f"{path}: P2[:, :3] is singular: {k.tolist()}", path)
    shift = np.eye(4)
    shift[:3, 3] = np.linalg.solve(k, p2[:, 3])
    return SemanticKittiCalibration(p2=p2, tr=tr, intrinsics=k, cam_from_velo=shift @ tr)


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x)


def _packed(mask: np.ndarray | torch.Tensor, name: str, grid: VoxelGrid) -> bytes:
    arr = check_mask_array(_as_numpy(mask), grid.shape, name)
    return np.packbits(arr.reshape(-1), bitorder="big").tobytes()


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def write_semantickitti_sample(
    root: str | Path,
    sequence: int | str,
    frame: str,
    labels: np.ndarray | torch.Tensor,
    *,
    invalid: np.ndarray | torch.Tensor | None = None,
    occupancy: np.ndarray | torch.Tensor | None = None,
    occluded: np.ndarray | torch.Tensor | None = None,
    calibration: tuple[np.ndarray, np.ndarray] | None = None,
    grid: VoxelGrid = SEMANTICKITTI,
) -> Path:
    """Write one frame in the SemanticKITTI layout under ``<root>/sequences/<seq>/``.

    Args:
        root: the folder that will hold ``sequences/``.
        sequence: ``8`` or ``"08"``.
        frame: e.g. ``"000000"``.
        labels: ``[256, 256, 32]`` learning classes 0-19 or 255; written as raw uint16 ids
            (``learning_map_inv``; 255 as raw 1, "outlier", which reads back as 255).
        invalid: bool ``[256, 256, 32]`` for ``<frame>.invalid``; default: the voxels labelled 255.
        occupancy, occluded: bool volumes for ``<frame>.bin`` / ``<frame>.occluded`` (written when given).
        calibration: ``(P2 [3, 4], Tr [3, 4] or [4, 4])`` for ``calib.txt`` (written when given).

    Returns:
        The ``.label`` path. Every file reads back unchanged with the readers of this module.
    """
    seq = semantickitti_sequence(sequence)
    frame = safe_name(frame, "frame", "write_semantickitti_sample")
    arr = check_label_array(_as_numpy(labels), grid.shape, "labels", grid.num_classes, grid.ignore_index)
    lut = np.zeros(256, dtype=np.uint16)
    for cls, raw in SEMANTICKITTI_LEARNING_MAP_INV.items():
        lut[cls] = raw
    lut[grid.ignore_index] = _IGNORE_RAW_ID
    raw_ids = lut[arr.astype(np.int64)].astype("<u2")
    voxels = Path(root) / "sequences" / seq / "voxels"
    label_path = voxels / f"{frame}.label"
    atomic_write(label_path, lambda f: f.write(raw_ids.tobytes()))
    inv = arr == grid.ignore_index if invalid is None else invalid
    masks = {"invalid": inv, "bin": occupancy, "occluded": occluded}
    for suffix, mask in masks.items():
        if mask is not None:
            _write_bytes(voxels / f"{frame}.{suffix}", _packed(mask, suffix, grid))
    if calibration is not None:
        p2 = np.asarray(calibration[0], dtype=np.float64)
        tr = np.asarray(calibration[1], dtype=np.float64)[:3]
        if p2.shape != (3, 4) or tr.shape != (3, 4):
            raise ValueError(f"calibration must be (P2 [3, 4], Tr [3, 4]), got {p2.shape} and {tr.shape}")
        lines = [f"{k}: " + " ".join(f"{v:.12e}" for v in m.reshape(-1)) for k, m in (("P2", p2), ("Tr", tr))]
        atomic_write_text(Path(root) / "sequences" / seq / "calib.txt", "\n".join(lines) + "\n")
    return label_path


class SemanticKITTI(Dataset):
    """SemanticKITTI SSC frames of one split (grid = velodyne frame, camera ``image_2``).

    Args:
        root: the folder holding ``sequences/`` (or ``dataset/sequences/``).
        split: ``"train"``, ``"val"``, ``"test"`` or a sequence of sequence numbers/names.
        load_images: read ``image_2`` (else only its path is returned).
        image_size: ``(H, W)`` pixels to resize to; intrinsics follow.
        cameras: read each sequence's ``calib.txt`` and return the camera; False: items carry
            only ``token``, ``scene`` and ``labels`` (scoring voxels needs no calibration).

    Items: ``token`` (``"<seq>/<frame>"``), ``scene`` (sequence), ``camera_names``
    (``["image_2"]``), ``image_paths``, ``intrinsics`` ``[1, 3, 3]``, ``render_intrinsics``
    ``[1, 3, 3]`` + ``render_image_size`` ``[2]`` (the calibration at the stored image size),
    ``cam_from_grid`` ``[1, 4, 4]`` (:class:`SemanticKittiCalibration` ``cam_from_velo``),
    ``labels`` int64 ``[256, 256, 32]`` (255 = invalid, the ``.invalid`` file applied when
    present), ``images`` ``[1, 3, H, W]`` when loaded.

    Raises:
        FileNotFoundError: no ``sequences/`` folder, or a sequence's ``voxels/`` folder is missing.
        ValueError: no ``.label`` file in the split.
    """

    grid = SEMANTICKITTI

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[int | str] = "val",
        *,
        load_images: bool = False,
        image_size: tuple[int, int] | None = None,
        cameras: bool = True,
    ) -> None:
        self.root = semantickitti_root(root)
        self.cameras = bool(cameras)
        if load_images and not self.cameras:
            raise ValueError("load_images=True needs cameras=True (the images come with their calibration)")
        sequences = split_sequences(split, SEMANTICKITTI_SPLITS, semantickitti_sequence)
        self.frames: list[tuple[str, str]] = []
        for seq in sequences:
            directory = self.root / "sequences" / seq / "voxels"
            if not directory.is_dir():
                raise FileNotFoundError(f"SemanticKITTI voxel directory not found: {directory}")
            for p in sorted(directory.glob("*.label")):
                self.frames.append((seq, safe_name(p.stem, "frame", directory)))
        if not self.frames:
            raise ValueError(f"no voxels/*.label file under {self.root / 'sequences'} for sequences {sequences}")
        self._calibration: dict[str, SemanticKittiCalibration] = {}
        self.load_images = bool(load_images)
        self.image_size = check_image_size(image_size) if image_size is not None else None

    def calibration(self, sequence: str) -> SemanticKittiCalibration:
        """The sequence's ``calib.txt`` (read once)."""
        if sequence not in self._calibration:
            path = self.root / "sequences" / sequence / "calib.txt"
            self._calibration[sequence] = read_semantickitti_calibration(path)
        return self._calibration[sequence]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq, frame = self.frames[index]
        voxels = self.root / "sequences" / seq / "voxels"
        invalid = voxels / f"{frame}.invalid"
        labels = read_semantickitti_voxels(voxels / f"{frame}.label", invalid if invalid.is_file() else None, self.grid)
        if not self.cameras:
            return {"token": f"{seq}/{frame}", "scene": seq, "labels": torch.from_numpy(labels.astype(np.int64))}
        calib = self.calibration(seq)
        image_path = self.root / "sequences" / seq / "image_2" / f"{frame}.png"
        out: dict[str, Any] = {"token": f"{seq}/{frame}", "scene": seq}
        out.update(
            monocular_camera(
                "image_2",
                image_path,
                calib.intrinsics,
                calib.cam_from_velo,
                SEMANTICKITTI_IMAGE_SIZE,
                self.image_size,
                self.load_images,
            )
        )
        out["labels"] = torch.from_numpy(labels.astype(np.int64))
        return out
