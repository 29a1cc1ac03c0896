"""SSCBench-KITTI360: ``preprocess/labels/<seq>/<frame>_1_1.npy`` in the velodyne frame.

Layout adopted (SSCBench ``dataset/KITTI-360/README.md``)::

    <root>/data_2d_raw/<seq>/image_00/data_rect/<frame>.png   left camera, 1408 x 376
    <root>/data_2d_raw/<seq>/voxels/<frame>.invalid           bit-packed invalid mask (optional)
    <root>/preprocess/labels/<seq>/<frame>_1_1.npy            labels [256, 256, 32], 255 invalid
    <root>/calibration/calib_cam_to_velo.txt, perspective.txt (optional)

with ``<seq> = 2013_05_28_drive_00NN_sync``. Models that read depth (Symphonies) also take
``<depth_root>/<seq>/<frame>.npy``: a float ``[H, W]`` z-depth map in metres of ``image_00``
(at least the stored image size; cropped to it from the top-left, as the Symphonies release
does; ``<= 0`` or non-finite = unknown, returned as 0). The Symphonies release computes them with
MobileStereoNet on the rectified stereo pair (``image_00``, ``image_01``), as VoxFormer's
``preprocess`` does for SemanticKITTI, then ``depth = f_x * baseline / disparity`` with
KITTI-360's rectified focal length and baseline (``P_rect_01`` of ``perspective.txt``:
``baseline = -P_rect_01[0, 3] / f_x``, about 0.59 m; the KITTI baseline of VoxFormer's script
must be replaced, SSCBench issue 8). Splits: train 00, 02, 03, 04, 05, 07, 10;
val 06; test 09. Labels index (x, y, z) over [0, 51.2] x [-25.6, 25.6] x [-2, 4.4] m.
Without calibration files the published values are used: P_rect_00 with
fx = fy = 552.554261, cx = 682.049453, cy = 238.769549 and KITTI-360's cam0→velodyne
transform; like SSCBench's loaders we take that transform as camera→velodyne for the
rectified image (the rectifying rotation is left out).
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

from .._io import atomic_write
from ..geometry.grid import SSCBENCH_KITTI360, VoxelGrid
from .arrays import check_label_array, read_npy, require_file
from .files import DataFileError, optional_regular_file, safe_name, split_sequences
from .images import check_image_size, monocular_camera, stored_image_size

__all__ = [
    "KITTI360_SPLITS",
    "KITTI360_IMAGE_SIZE",
    "kitti360_sequence",
    "Kitti360Calibration",
    "read_kitti360_calibration",
    "read_kitti360_labels",
    "read_kitti360_invalid",
    "write_kitti360_sample",
    "read_kitti360_depth",
    "write_kitti360_depth",
    "SSCBenchKITTI360",
]

#: SSCBench-KITTI360 sequence numbers per split.
KITTI360_SPLITS: dict[str, tuple[int, ...]] = {
    "train": (0, 2, 3, 4, 5, 7, 10),
    "val": (6,),
    "test": (9,),
}
#: Largest depth map side accepted, pixels (the header is checked before reading).
MAX_DEPTH_SIDE = 8192
#: Rectified image_00 size, (H, W) pixels.
KITTI360_IMAGE_SIZE: tuple[int, int] = (376, 1408)

_SEQUENCE_NAME = re.compile(r"2013_05_28_drive_\d{4}_sync")
_DEFAULT_P_RECT_00 = np.array([[552.554261, 0.0, 682.049453], [0.0, 552.554261, 238.769549], [0.0, 0.0, 1.0]])
_DEFAULT_CAM_TO_VELO = np.array(
    [
        [0.04307104361, -0.08829286498, 0.995162929, 0.8043914418],
        [-0.999004371, 0.007784614041, 0.04392796942, 0.2993489574],
        [-0.01162548558, -0.9960641394, -0.08786966659, -0.1770225824],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def kitti360_sequence(number: int | str) -> str:
    """``6`` or ``"06"`` → ``"2013_05_28_drive_0006_sync"``; a full name is returned as is.

    Raises:
        ValueError: anything else (a full name must match ``2013_05_28_drive_<4 digits>_sync``,
            so a sequence name never carries a path).
    """
    if isinstance(number, str) and number.startswith("2013_"):
        if not _SEQUENCE_NAME.fullmatch(number):
            raise ValueError(f"KITTI-360 sequence name must look like 2013_05_28_drive_0006_sync, got {number!r}")
        return number
    if isinstance(number, bool) or not isinstance(number, (int, str)):
        raise ValueError(f"KITTI-360 sequence must be a number or a 2013_05_28_drive_*_sync name, got {number!r}")
    try:
        n = int(number)
    except (TypeError, ValueError):
        raise ValueError(
            f"KITTI-360 sequence must be a number or a 2013_05_28_drive_*_sync name, got {number!r}"
        ) from None
    if not 0 <= n <= 9999:
        raise ValueError(f"KITTI-360 sequence number must be in [0, 9999], got {number!r}")
    return f"2013_05_28_drive_{n:04d}_sync"


@dataclass(frozen=True)
class Kitti360Calibration:
    """``intrinsics`` ``[3, 3]`` (pixels, 1408 x 376 image) and ``cam_from_velo`` ``[4, 4]`` (metres), float64."""

    intrinsics: np.ndarray
    cam_from_velo: np.ndarray


#: Largest calibration text file read, bytes (KITTI-360's are under 2 kB); read line by line,
#: so one endless line could otherwise fill memory.
_MAX_CALIBRATION_BYTES = 1 << 20


def _read_numbers(path: Path, key: str | None, count: int) -> np.ndarray:
    try:
        size = path.stat().st_size
        if size > _MAX_CALIBRATION_BYTES:
            raise DataFileError(
                f"{path}: {size} bytes is not a calibration file (limit {_MAX_CALIBRATION_BYTES})", path
            )
        with path.open(encoding="utf-8") as f:
            for line in f:
                if key is None or line.startswith(key + ":"):
                    values = line.split(":", 1)[1] if key is not None else line
                    try:
                        numbers = np.array([float(v) for v in values.split()])
                    except ValueError as err:
                        raise DataFileError(f"{path}: {err}", path) from err
                    if numbers.size != count or not np.all(np.isfinite(numbers)):
                        raise DataFileError(
                            f"{path}: expected {count} finite numbers{f' after {key}:' if key else ''}, got "
                            f"{values.split()[:20]}",
                            path,
                        )
                    return numbers
    except (OSError, UnicodeDecodeError) as err:
        raise DataFileError(f"{path}: cannot read the calibration ({err})", path) from err
    raise DataFileError(f"{path}: no line starting with {key}:", path)


def read_kitti360_calibration(root: str | Path | None = None) -> Kitti360Calibration:
    """Camera 00 calibration from ``<root>/calibration`` when present, else the published values.

    Reads ``perspective.txt`` (``P_rect_00``, 12 numbers) and ``calib_cam_to_velo.txt`` (first
    line, 12 numbers, 3 x 4 row-major) independently; each missing file falls back to its
    published default.
    """
    k, cam_to_velo = _DEFAULT_P_RECT_00.copy(), _DEFAULT_CAM_TO_VELO.copy()
    if root is not None:
        calib = Path(root) / "calibration"
        persp = calib / "perspective.txt"
        if optional_regular_file(persp, "KITTI-360 calibration"):
            k = _read_numbers(persp, "P_rect_00", 12).reshape(3, 4)[:, :3]
        c2v = calib / "calib_cam_to_velo.txt"
        if optional_regular_file(c2v, "KITTI-360 calibration"):
            cam_to_velo = np.eye(4)
            cam_to_velo[:3] = _read_numbers(c2v, None, 12).reshape(3, 4)
    return Kitti360Calibration(intrinsics=k, cam_from_velo=np.linalg.inv(cam_to_velo))


def read_kitti360_labels(path: str | Path, grid: VoxelGrid = SSCBENCH_KITTI360) -> np.ndarray:
    """Read one ``<frame>_1_1.npy`` as uint8 ``[256, 256, 32]`` (0 empty, 255 invalid).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: not a plain ``.npy`` array, wrong shape/dtype (from the header, before
            reading) or label values.
    """
    path = Path(path)
    labels = read_npy(path, "SSCBench-KITTI360 label file", grid.shape, "iuf")
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)  # some preprocessing scripts save float32 labels
    check_label_array(labels, grid.shape, str(path), grid.num_classes, grid.ignore_index, path)
    return labels.astype(np.uint8)


def read_kitti360_invalid(path: str | Path, grid: VoxelGrid = SSCBENCH_KITTI360) -> np.ndarray:
    """Read a bit-packed SemanticKITTI-style ``.invalid`` file as bool ``[256, 256, 32]``."""
    path = require_file(Path(path), "KITTI-360 invalid mask")
    n = int(np.prod(grid.shape))
    try:
        size = path.stat().st_size  # checked before reading: the file may be huge
        if size * 8 != n:
            raise DataFileError(f"{path}: expected {n // 8} bytes (bit-packed {grid.shape}), got {size}", path)
        packed = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror or err})", path) from err
    if packed.size * 8 != n:
        raise DataFileError(f"{path}: expected {n // 8} bytes (bit-packed {grid.shape}), got {packed.size}", path)
    return np.unpackbits(packed).reshape(grid.shape).astype(bool)


def write_kitti360_sample(
    root: str | Path,
    sequence: int | str,
    frame: str,
    labels: np.ndarray | torch.Tensor,
    invalid: np.ndarray | torch.Tensor | None = None,
    grid: VoxelGrid = SSCBENCH_KITTI360,
) -> Path:
    """Write ``preprocess/labels/<seq>/<frame>_1_1.npy`` (uint8) and, if given, ``voxels/<frame>.invalid``.

    Returns the label path.
    """
    seq = kitti360_sequence(sequence)
    arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    check_label_array(arr, grid.shape, "labels", grid.num_classes, grid.ignore_index)
    frame = safe_name(frame, "frame", "write_kitti360_sample")
    path = Path(root) / "preprocess" / "labels" / seq / f"{frame}_1_1.npy"
    atomic_write(path, lambda f: np.save(f, arr.astype(np.uint8)))
    if invalid is not None:
        inv = np.asarray(invalid.cpu() if isinstance(invalid, torch.Tensor) else invalid).astype(bool)
        if inv.shape != grid.shape:
            raise ValueError(f"invalid must have shape {grid.shape}, got {inv.shape}")
        inv_path = Path(root) / "data_2d_raw" / seq / "voxels" / f"{frame}.invalid"
        atomic_write(inv_path, lambda f: f.write(np.packbits(inv.reshape(-1)).tobytes()))
    return path


def read_kitti360_depth(path: str | Path, image_size: tuple[int, int]) -> np.ndarray:
    """Read one ``<frame>.npy`` depth map as float32 ``[H, W]`` metres, cropped to ``image_size``.

    Every depth that is not a finite number >= 0 (NaN, inf, negative) is returned as 0, the
    value that marks a pixel without depth, so no NaN or inf reaches a model.

    Args:
        path: the file.
        image_size: ``(H, W)`` of the image it belongs to (stored size), pixels; the map
            must be at least that large and is cropped from the top-left corner.

    Raises:
        FileNotFoundError: missing file.
        DataFileError: not a plain 2D floating ``.npy`` array, or smaller than ``image_size``.
        ValueError: ``image_size`` is not two positive ints.
    """
    path = Path(path)
    h, w = check_image_size(image_size)
    depth = read_npy(path, "KITTI-360 depth map", (None, None), "f", max_rows=MAX_DEPTH_SIDE)
    if depth.shape[0] < h or depth.shape[1] < w:
        raise DataFileError(f"{path}: depth map is {list(depth.shape)}, smaller than the image ({h}, {w})", path)
    depth = np.ascontiguousarray(depth[:h, :w], dtype=np.float32)
    # depth feeds the model (Symphonies lifts image features along it). A NaN, an inf or a
    # negative depth is not a distance: each becomes 0, the one value that marks "no depth"
    # (float64 maps beyond the float32 range become inf first, and so 0 too)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def write_kitti360_depth(depth_root: str | Path, sequence: int | str, frame: str, depth: np.ndarray) -> Path:
    """Write ``<depth_root>/<seq>/<frame>.npy`` (float32 ``[H, W]`` metres); returns the path."""
    seq = kitti360_sequence(sequence)
    frame = safe_name(frame, "frame", "write_kitti360_depth")
    arr = np.asarray(depth.cpu() if isinstance(depth, torch.Tensor) else depth, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"depth must be a 2D [H, W] map, got shape {list(arr.shape)}")
    path = Path(depth_root) / seq / f"{frame}.npy"
    atomic_write(path, lambda f: np.save(f, arr))
    return path


class SSCBenchKITTI360(Dataset):
    """SSCBench-KITTI360 frames of one split (grid = velodyne frame, one camera).

    Args:
        root: dataset root (see the module docstring for the layout).
        split: ``"train"``, ``"val"``, ``"test"`` or a sequence of sequence numbers/names.
        load_images: read ``image_00`` (else only its path is returned).
        image_size: ``(H, W)`` pixels to resize to; intrinsics follow.
        depth_root: folder of depth maps ``<seq>/<frame>.npy`` (see the module docstring);
            None: no ``depth`` item.

    Items: ``token`` (``"<seq>/<frame>"``), ``scene`` (sequence), ``camera_names``
    (``["image_00"]``), ``image_paths``, ``intrinsics`` ``[1, 3, 3]`` (for the network input),
    ``render_intrinsics`` ``[1, 3, 3]`` + ``render_image_size`` ``[2]`` (the uncropped
    calibration at the stored 376x1408, for GaussRender), ``cam_from_grid``
    ``[1, 4, 4]``, ``labels`` int64 ``[256, 256, 32]`` (invalid voxels 255, including those of
    the ``.invalid`` file when present), ``images`` ``[1, 3, H, W]`` when loaded, ``depth``
    float32 ``[1, H_s, W_s]`` metres at the stored image size when ``depth_root`` is given
    (whatever ``image_size`` is: the model rescales the intrinsics to it).

    Raises:
        FileNotFoundError: a sequence's label directory is missing.
    """

    grid = SSCBENCH_KITTI360

    def __init__(
        self,
        root: str | Path,
        split: str | Sequence[int | str] = "val",
        *,
        load_images: bool = False,
        image_size: tuple[int, int] | None = None,
        depth_root: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.depth_root = Path(depth_root) if depth_root is not None else None
        if self.depth_root is not None and not self.depth_root.is_dir():
            raise FileNotFoundError(f"KITTI-360 depth_root is not a directory: {self.depth_root}")
        sequences = split_sequences(split, KITTI360_SPLITS, kitti360_sequence)
        self.frames: list[tuple[str, str]] = []
        for seq in sequences:
            directory = self.root / "preprocess" / "labels" / seq
            if not directory.is_dir():
                raise FileNotFoundError(f"SSCBench-KITTI360 label directory not found: {directory}")
            for p in sorted(directory.glob("*_1_1.npy")):
                self.frames.append((seq, p.name[: -len("_1_1.npy")]))
        if not self.frames:
            raise ValueError(f"no *_1_1.npy label file under {self.root / 'preprocess' / 'labels'} for {sequences}")
        self.calibration = read_kitti360_calibration(self.root)
        self.load_images = bool(load_images)
        self.image_size = check_image_size(image_size) if image_size is not None else None

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq, frame = self.frames[index]
        labels = read_kitti360_labels(self.root / "preprocess" / "labels" / seq / f"{frame}_1_1.npy", self.grid)
        invalid_path = self.root / "data_2d_raw" / seq / "voxels" / f"{frame}.invalid"
        if optional_regular_file(invalid_path, "KITTI-360 invalid mask"):
            labels = labels.copy()
            labels[read_kitti360_invalid(invalid_path, self.grid)] = self.grid.ignore_index
        image_path = self.root / "data_2d_raw" / seq / "image_00" / "data_rect" / f"{frame}.png"
        out: dict[str, Any] = {"token": f"{seq}/{frame}", "scene": seq}
        # GaussRender's camera: the calibration K at the stored size (1408x376), whatever image_size is
        cal = self.calibration
        out.update(
            monocular_camera(
                "image_00",
                image_path,
                cal.intrinsics,
                cal.cam_from_velo,
                KITTI360_IMAGE_SIZE,
                self.image_size,
                self.load_images,
            )
        )
        out["labels"] = torch.from_numpy(labels.astype(np.int64))
        if self.depth_root is not None:
            # frame names come from a directory listing: validated before joining them
            name = safe_name(frame, "frame", self.root / "preprocess" / "labels" / seq)
            size = stored_image_size(image_path, KITTI360_IMAGE_SIZE)
            depth = read_kitti360_depth(self.depth_root / seq / f"{name}.npy", size)
            out["depth"] = torch.from_numpy(depth)[None]
        return out
