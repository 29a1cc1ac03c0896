"""nuScenes LiDAR sweeps (``.pcd.bin``) and nuScenes-lidarseg labels, read through the infos.

* :func:`read_lidar_points`: a ``.pcd.bin`` file: little-endian float32, 5 values per point
  ``(x, y, z, intensity, ring index)``, in the LiDAR frame (metres);
* :func:`read_lidarseg_labels`: a lidarseg ``<token>_lidarseg.bin``: one uint8 fine class
  (0-31, :data:`LIDARSEG_CLASSES`) per point of the key-frame scan, in the scan's order;
* :func:`lidarseg_to_occ3d`: fine classes to the Occ3D-nuScenes classes
  (:data:`LIDARSEG_TO_OCC3D`);
* :func:`load_lidar`: one sample's scan through its :class:`~gaussrender.data.SampleInfo`:
  paths resolved under the data root (never outside it), points moved to the reference ego
  frame (the Occ3D grid frame) with the sample's ``lidar2ego``, labels mapped, points of
  annotated objects optionally removed.

Every reader error is a :class:`~gaussrender.data.DataFileError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write
from ..geometry.boxes import points_in_boxes
from .files import DataFileError, require_regular_file, resolve_data_path
from .infos import SampleInfo

__all__ = [
    "LIDARSEG_CLASSES",
    "LIDARSEG_TO_OCC3D",
    "OCC3D_TO_LIDARSEG",
    "read_lidar_points",
    "write_lidar_points",
    "write_lidarseg_labels",
    "read_lidarseg_labels",
    "lidarseg_to_occ3d",
    "load_lidar",
]

#: nuScenes-lidarseg's 32 fine classes, by index (the ``category.json`` ``index`` of v1.0).
LIDARSEG_CLASSES: tuple[str, ...] = (
    "noise",  # 0
    "animal",
    "human.pedestrian.adult",
    "human.pedestrian.child",
    "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility",  # 5
    "human.pedestrian.police_officer",
    "human.pedestrian.stroller",
    "human.pedestrian.wheelchair",
    "movable_object.barrier",
    "movable_object.debris",  # 10
    "movable_object.pushable_pullable",
    "movable_object.trafficcone",
    "static_object.bicycle_rack",
    "vehicle.bicycle",
    "vehicle.bus.bendy",  # 15
    "vehicle.bus.rigid",
    "vehicle.car",
    "vehicle.construction",
    "vehicle.emergency.ambulance",
    "vehicle.emergency.police",  # 20
    "vehicle.motorcycle",
    "vehicle.trailer",
    "vehicle.truck",
    "flat.driveable_surface",
    "flat.other",  # 25
    "flat.sidewalk",
    "flat.terrain",
    "static.manmade",
    "static.other",
    "static.vegetation",  # 30
    "vehicle.ego",
)

#: Fine lidarseg class -> Occ3D-nuScenes class (0 others, 1 barrier, 2 bicycle, 3 bus, 4 car,
#: 5 construction_vehicle, 6 motorcycle, 7 pedestrian, 8 traffic_cone, 9 trailer, 10 truck,
#: 11 driveable_surface, 12 other_flat, 13 sidewalk, 14 terrain, 15 manmade, 16 vegetation;
#: 17 free is never a return). Source: the nuScenes-lidarseg challenge mapping,
#: nuscenes-devkit ``python-sdk/nuscenes/eval/lidarseg/utils.py`` ``LidarsegClassMapper``
#: (``get_fine2coarse`` + ``get_coarse2idx``), whose coarse indices 1-16 are Occ3D's classes
#: 1-16 in the same order and whose index 0 (``ignore``: noise, animal, wheelchair, stroller,
#: personal mobility, debris, pushable/pullable, bicycle rack, ambulance, police vehicle,
#: static.other, ego vehicle) is Occ3D's ``others``. mmdetection3d's ``nuscenes_seg``
#: ``labels_map`` is the same table.
LIDARSEG_TO_OCC3D = np.array(
    # fmt: off
    [
        0,
        0,
        7,
        7,
        7,
        0,
        7,
        0,  # noise animal adult child construction_worker personal_mobility police stroller
        0,
        1,
        0,
        0,
        8,
        0,
        2,
        3,  # wheelchair barrier debris pushable trafficcone bicycle_rack bicycle bus.bendy
        3,
        4,
        5,
        0,
        0,
        6,
        9,
        10,  # bus.rigid car construction ambulance police motorcycle trailer truck
        11,
        12,
        13,
        14,
        15,
        0,
        16,
        0,  # driveable other_flat sidewalk terrain manmade static.other vegetation ego
    ],
    # fmt: on
    dtype=np.uint8,
)

#: Occ3D class -> one fine lidarseg class that maps back to it (index 17, free, has none): what
#: writers of synthetic lidarseg files use. ``LIDARSEG_TO_OCC3D[OCC3D_TO_LIDARSEG] == arange(17)``.
OCC3D_TO_LIDARSEG = np.array([29, 9, 14, 16, 17, 18, 21, 2, 12, 22, 23, 24, 25, 26, 27, 28, 30], dtype=np.uint8)

#: Fine classes :func:`load_lidar` drops by default: noise (0) and the ego vehicle's own body (31).
DROP_FINE_DEFAULT = (0, 31)

_POINT_BYTES = 5 * 4
# a nuScenes key frame holds ~35k points (700 kB); refuse files far beyond any real scan
_MAX_LIDAR_BYTES = 1 << 30


def _read_bytes(path: Path, what: str) -> bytes:
    require_regular_file(path, what)
    try:
        size = path.stat().st_size
        if size > _MAX_LIDAR_BYTES:
            raise DataFileError(f"{path}: {what} of {size} bytes exceeds the {_MAX_LIDAR_BYTES} allowed", path)
        return path.read_bytes()
    except OSError as err:
        raise DataFileError(f"{path}: cannot read {what} ({err.strerror or err})", path) from err


def read_lidar_points(path: str | Path) -> np.ndarray:
    """Read a nuScenes ``.pcd.bin`` LiDAR file.

    Returns:
        ``[N, 5]`` float32 ``(x, y, z, intensity, ring index)``; x, y, z in metres in the
        LiDAR frame.

    Raises:
        FileNotFoundError: missing file.
        DataFileError: unreadable, a size that is not a multiple of 20 bytes (5 float32 per
            point: a truncated or foreign file), NaN/inf values, or over 1 GiB.
    """
    path = Path(path)
    data = _read_bytes(path, "LiDAR file")
    if len(data) % _POINT_BYTES:
        raise DataFileError(
            f"{path}: LiDAR file size {len(data)} bytes is not a multiple of {_POINT_BYTES} "
            "(5 float32 per point: x, y, z, intensity, ring); truncated or not a nuScenes .pcd.bin",
            path,
        )
    points = np.frombuffer(data, dtype="<f4").reshape(-1, 5).astype(np.float32)
    if not np.all(np.isfinite(points)):
        raise DataFileError(f"{path}: LiDAR file holds {int((~np.isfinite(points)).sum())} NaN/inf values", path)
    return points


def read_lidarseg_labels(path: str | Path, num_points: int) -> np.ndarray:
    """Read a nuScenes-lidarseg label file: one uint8 fine class per point.

    Args:
        path: the ``<token>_lidarseg.bin`` file.
        num_points: points in the scan it labels (the count must match).

    Returns:
        ``[num_points]`` uint8 fine classes in ``[0, 32)`` (:data:`LIDARSEG_CLASSES`).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: unreadable, a label count other than ``num_points``, or a class >= 32.
    """
    path = Path(path)
    data = _read_bytes(path, "lidarseg label file")
    if len(data) != num_points:
        raise DataFileError(
            f"{path}: lidarseg label file holds {len(data)} labels but the scan has {num_points} points", path
        )
    labels = np.frombuffer(data, dtype=np.uint8).copy()
    if labels.size and int(labels.max()) >= len(LIDARSEG_CLASSES):
        bad = np.unique(labels[labels >= len(LIDARSEG_CLASSES)])[:5].tolist()
        raise DataFileError(f"{path}: lidarseg labels must be in [0, 32), found {bad}", path)
    return labels


def write_lidar_points(path: str | Path, points: np.ndarray) -> Path:
    """Write ``[N, 5]`` ``(x, y, z, intensity, ring)`` (or ``[N, 3]``: intensity and ring 0) as a nuScenes ``.pcd.bin``.

    Raises:
        ValueError: not ``[N, 3]`` or ``[N, 5]`` finite numbers.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] not in (3, 5) or not np.all(np.isfinite(points)):
        raise ValueError(f"points must be [N, 3] or [N, 5] finite numbers, got shape {list(points.shape)}")
    if points.shape[1] == 3:
        points = np.concatenate([points, np.zeros((points.shape[0], 2))], axis=1)
    data = points.astype("<f4").tobytes()
    return atomic_write(path, lambda f: f.write(data))


def write_lidarseg_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write ``[N]`` fine lidarseg classes (0-31) as a nuScenes-lidarseg ``.bin`` (uint8 per point).

    Raises:
        ValueError: ``labels`` not integers in ``[0, 32)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} shape {list(labels.shape)}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= len(LIDARSEG_CLASSES)):
        raise ValueError(f"labels must be lidarseg fine classes in [0, 32), got range [{labels.min()}, {labels.max()}]")
    data = labels.astype(np.uint8).tobytes()
    return atomic_write(path, lambda f: f.write(data))


def lidarseg_to_occ3d(labels: np.ndarray) -> np.ndarray:
    """Fine lidarseg classes ``[N]`` (0-31) to Occ3D-nuScenes classes ``[N]`` uint8 (0-16).

    The table is :data:`LIDARSEG_TO_OCC3D`.

    Raises:
        ValueError: ``labels`` not integers in ``[0, 32)``.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (lidarseg fine classes), got dtype {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= len(LIDARSEG_CLASSES)):
        raise ValueError(f"labels must be lidarseg fine classes in [0, 32), got range [{labels.min()}, {labels.max()}]")
    return LIDARSEG_TO_OCC3D[labels]


def load_lidar(
    sample: SampleInfo,
    data_root: str | Path,
    *,
    labels: str | None = "occ3d",
    frame: str = "ego",
    drop_fine: tuple[int, ...] = DROP_FINE_DEFAULT,
    drop_boxes: str | None = None,
    min_speed: float = 0.5,
    box_margin: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One sample's key-frame LiDAR scan, in the reference ego frame, with its labels.

    The paths come from ``sample.lidar_path`` / ``sample.lidarseg_path`` and are re-rooted
    under ``data_root`` by :func:`~gaussrender.data.resolve_data_path` (from their ``samples``
    or ``lidarseg`` component on; never outside ``data_root``).

    Args:
        sample: the sample (its ``lidar_path``, ``lidar2ego`` and, for labels,
            ``lidarseg_path``; for ``drop_boxes``, ``gt_boxes``).
        data_root: the nuScenes root holding ``samples/`` (and ``lidarseg/``).
        labels: ``"occ3d"`` (fine classes mapped by :data:`LIDARSEG_TO_OCC3D`),
            ``"lidarseg"`` (the 32 fine classes) or None (points only, no label file read).
        frame: ``"ego"``: the reference ego frame at the LiDAR timestamp, the Occ3D grid frame
            (``p_ego = lidar2ego @ p_lidar``, float64); ``"lidar"``: as stored.
        drop_fine: fine classes whose points are removed (needs labels); default noise (0)
            and the ego vehicle's own body (31), returns that say nothing about the scene.
            ``()`` keeps every point (the devkit's table maps both to ``others``).
        drop_boxes: remove the points inside annotated boxes (``sample.gt_boxes``, tested in
            the LiDAR frame where the boxes are given): ``"all"``, ``"moving"`` (boxes whose
            ``gt_velocity`` speed is ``>= min_speed`` m/s or unknown (NaN): such points do not
            stay put across frames), or None.
        min_speed: m/s, see ``drop_boxes``.
        box_margin: metres added to the boxes' half-sizes for ``drop_boxes``.

    Returns:
        ``points [N, 3]`` float64, metres, in ``frame``; ``labels [N]`` uint8 (None when
        ``labels`` is None).

    Raises:
        ValueError: a bad argument (named), a sample without ``lidar_path``, labels asked of
            a sample without ``lidarseg_path``, ``drop_boxes`` on a sample without boxes (or
            without velocities for ``"moving"``), ``drop_fine`` without labels.
        FileNotFoundError, DataFileError: see :func:`read_lidar_points` and
            :func:`read_lidarseg_labels`; a stored path that would leave ``data_root``.
    """
    if not isinstance(sample, SampleInfo):
        raise TypeError(f"sample must be a SampleInfo, got {type(sample).__name__}")
    if labels not in ("occ3d", "lidarseg", None):
        raise ValueError(f"labels must be 'occ3d', 'lidarseg' or None, got {labels!r}")
    if frame not in ("ego", "lidar"):
        raise ValueError(f"frame must be 'ego' or 'lidar', got {frame!r}")
    if drop_boxes not in ("all", "moving", None):
        raise ValueError(f"drop_boxes must be 'all', 'moving' or None, got {drop_boxes!r}")
    if not isinstance(drop_fine, (tuple, list)) or not all(
        isinstance(c, int) and 0 <= c < len(LIDARSEG_CLASSES) for c in drop_fine
    ):
        raise ValueError(f"drop_fine must be a tuple of lidarseg classes in [0, 32), got {drop_fine!r}")
    if isinstance(min_speed, bool) or not isinstance(min_speed, (int, float)) or not min_speed >= 0:
        raise ValueError(f"min_speed must be a number >= 0 (m/s), got {min_speed!r}")
    if labels is None and drop_fine:
        raise ValueError("drop_fine needs labels (the fine classes); pass drop_fine=() with labels=None")
    if not sample.lidar_path:
        raise ValueError(f"sample {sample.token}: the infos give no lidar_path")
    raw = read_lidar_points(resolve_data_path(sample.lidar_path, data_root, "LiDAR path"))
    points = raw[:, :3].astype(np.float64)
    keep = np.ones(points.shape[0], dtype=bool)
    out_labels = None
    if labels is not None:
        if not sample.lidarseg_path:
            raise ValueError(f"sample {sample.token}: the infos give no lidarseg_path (nuScenes-lidarseg labels)")
        fine = read_lidarseg_labels(
            resolve_data_path(sample.lidarseg_path, data_root, "lidarseg path"), points.shape[0]
        )
        if drop_fine:
            keep &= ~np.isin(fine, np.asarray(drop_fine))
        out_labels = lidarseg_to_occ3d(fine) if labels == "occ3d" else fine
    if drop_boxes is not None:
        if sample.gt_boxes is None:
            raise ValueError(
                f"sample {sample.token}: drop_boxes needs gt_boxes; read the infos with load_infos(..., box_format=...)"
            )
        boxes = sample.gt_boxes
        if drop_boxes == "moving":
            if sample.gt_velocity is None:
                raise ValueError(f"sample {sample.token}: drop_boxes='moving' needs gt_velocity in the infos")
            speed = np.linalg.norm(sample.gt_velocity, axis=1)
            boxes = boxes[~(speed < float(min_speed))]  # NaN (unknown) counts as moving
        if boxes.shape[0]:
            inside = points_in_boxes(torch.from_numpy(points), torch.from_numpy(boxes), margin=box_margin).numpy()
            keep &= ~inside
    if frame == "ego":
        m = sample.lidar2ego.matrix()
        points = points @ m[:3, :3].T + m[:3, 3]
    points = points[keep]
    return points, (out_labels[keep] if out_labels is not None else None)
