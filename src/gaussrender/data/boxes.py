"""3D object boxes of nuScenes info files, in one layout whatever converter wrote them.

gaussrender's layout (that of :func:`gaussrender.geometry.points_in_boxes`): ``[M, 7]`` float64
``(x, y, z, l, w, h, yaw)`` in the LiDAR frame of the sample: ``(x, y, z)`` the box's
geometric centre, metres; ``l`` its extent along its heading, ``w`` across, ``h`` vertical,
metres; ``yaw`` the heading (the length axis) counter-clockwise from the LiDAR x axis about
z, radians in ``[-pi, pi)``.

Info files store ``gt_boxes`` in the LiDAR frame with the centre of the nuScenes box
(``Box.center``, the geometric centre) but in one of two layouts, which the numbers alone
cannot tell apart, so the caller names it (``box_format``):

* ``"mmdet3d-v1"``: ``(x, y, z, l, w, h, yaw)``: mmdetection3d >= 1.0 and BEVDet
  (``tools/data_converter/nuscenes_converter.py``: ``dims[:, [1, 0, 2]], rots``); our layout;
* ``"mmdet3d-v0"``: ``(x, y, z, w, l, h, -yaw - pi/2)``: mmdetection3d 0.x converters (and
  info files derived from them, e.g. VAD's and the shared nuScenes-mini demo infos).

``gt_velocity`` ``[M, 2]`` (m/s, LiDAR frame x/y) is the same in both; nuScenes leaves it NaN
where it cannot be estimated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["BOX_FORMATS", "parse_info_boxes", "boxes_to_format"]

#: Accepted ``box_format`` names (see the module docstring).
BOX_FORMATS = ("mmdet3d-v1", "mmdet3d-v0")

# nuScenes annotates at most a few hundred boxes per sample; a bound keeps hostile files small
_MAX_BOXES = 100_000


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles in radians wrapped to ``[-pi, pi)``."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _check_format(box_format: object) -> str:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    return str(box_format)


def _from_format(raw: np.ndarray, box_format: str) -> np.ndarray:
    out = np.array(raw[:, :7], dtype=np.float64)
    if box_format == "mmdet3d-v0":
        out[:, 3], out[:, 4] = raw[:, 4], raw[:, 3]
        out[:, 6] = -raw[:, 6] - math.pi / 2
    out[:, 6] = _wrap(out[:, 6])
    return out


def boxes_to_format(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """Our ``[M, 7]`` boxes written in ``box_format``'s layout (the inverse of the parsing).

    Raises:
        ValueError: unknown ``box_format`` or ``boxes`` not ``[M, 7]``.
    """
    box_format = _check_format(box_format)
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 7:
        raise ValueError(f"boxes must have shape [M, 7], got {list(boxes.shape)}")
    out = boxes.copy()
    if box_format == "mmdet3d-v0":
        out[:, 3], out[:, 4] = boxes[:, 4], boxes[:, 3]
        out[:, 6] = _wrap(-boxes[:, 6] - math.pi / 2)
    return out


def parse_info_boxes(
    record: Mapping[str, Any], box_format: str | None, where: str
) -> tuple[np.ndarray | None, tuple[str, ...] | None, np.ndarray | None]:
    """``(boxes [M, 7], names, velocity [M, 2])`` of one info record, or ``(None, None, None)``.

    Boxes are parsed only when ``box_format`` is given and the record has ``gt_boxes``;
    ``gt_names`` and ``gt_velocity`` are optional (None when absent).

    Raises:
        ValueError: (naming ``where`` and the field) ``gt_boxes`` not ``[M, >= 7]`` finite
            numbers with positive sizes, ``gt_names`` not ``M`` strings, ``gt_velocity`` not
            ``[M, 2]`` numbers (NaN allowed, inf not), more than 100000 boxes.
    """
    if box_format is None or record.get("gt_boxes") is None:
        return None, None, None
    box_format = _check_format(box_format)
    try:
        raw = np.asarray(record["gt_boxes"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: gt_boxes must be an [M, 7] array of numbers ({err})") from err
    if raw.ndim == 1 and raw.size == 0:
        raw = raw.reshape(0, 7)
    if raw.ndim != 2 or raw.shape[1] < 7 or raw.shape[0] > _MAX_BOXES:
        raise ValueError(f"{where}: gt_boxes must have shape [M, >=7] (M <= {_MAX_BOXES}), got {list(raw.shape)}")
    if not np.all(np.isfinite(raw[:, :7])):
        raise ValueError(f"{where}: gt_boxes holds NaN or inf")
    if np.any(raw[:, 3:6] <= 0):
        raise ValueError(f"{where}: gt_boxes sizes (columns 3-5) must be > 0 metres")
    boxes = _from_format(raw, box_format)
    m = boxes.shape[0]
    names = None
    if record.get("gt_names") is not None:
        values = record["gt_names"]
        values = values.tolist() if isinstance(values, np.ndarray) else values
        if not isinstance(values, (list, tuple)) or len(values) != m or not all(isinstance(n, str) for n in values):
            raise ValueError(f"{where}: gt_names must be {m} strings (one per box)")
        names = tuple(values)
    velocity = None
    if record.get("gt_velocity") is not None:
        try:
            velocity = np.asarray(record["gt_velocity"], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: gt_velocity must be an [M, 2] array of numbers ({err})") from err
        if velocity.size == 0 and m == 0:
            velocity = velocity.reshape(0, 2)
        if velocity.shape != (m, 2) or np.any(np.isinf(velocity)):
            raise ValueError(f"{where}: gt_velocity must be [{m}, 2] numbers (m/s; NaN allowed, inf not)")
    return boxes, names, velocity
