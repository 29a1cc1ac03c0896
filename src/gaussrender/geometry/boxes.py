"""Oriented 3D boxes (annotated objects): which points fall inside them.

Box layout ``[M, 7]`` ``(x, y, z, l, w, h, yaw)``, all in the points' frame: ``(x, y, z)``
the geometric centre, metres; ``l`` the extent along the heading, ``w`` across it, ``h``
along z, metres; ``yaw`` the heading counter-clockwise from the frame's x axis about z,
radians. Boxes turn about z only (nuScenes annotates yaw alone). :mod:`gaussrender.data.boxes`
reads info files' boxes into this layout.
"""

from __future__ import annotations

import torch

from .._checks import MAX_COORDINATE, check_finite, check_floating, check_shape

__all__ = ["points_in_boxes"]


def points_in_boxes(points: torch.Tensor, boxes: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Which points lie inside (or on the boundary of) at least one box.

    A point ``p`` is in box ``(c, l, w, h, yaw)`` when its offset ``d = p - c``, turned by
    ``-yaw`` about z, satisfies ``|d_x'| <= l/2 + margin``, ``|d_y'| <= w/2 + margin`` and
    ``|d_z| <= h/2 + margin``; computed in float64, boxes in chunks (memory ``N x chunk``).

    Args:
        points: ``[N, 3]`` floating, metres; finite, ``|x| <= 1e6``.
        boxes: ``[M, 7]`` floating ``(x, y, z, l, w, h, yaw)`` in the points' frame; finite,
            sizes ``>= 0``.
        margin: metres added to every half-size (e.g. 0.1 to also catch returns scattered
            just outside an annotated box); finite, ``>= 0``.

    Returns:
        ``[N]`` bool on ``points``' device.

    Raises:
        TypeError, ValueError: naming the argument: shapes, dtypes, NaN/inf, negative sizes or
            margin, different devices.

    Example:
        >>> import torch
        >>> box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
        >>> points_in_boxes(torch.tensor([[1.9, 0.9, 0.7], [0.0, 1.1, 0.0]]), box).tolist()
        [True, False]
    """
    check_shape("points", points, ["N", 3])
    check_floating("points", points)
    check_finite("points", points, MAX_COORDINATE, unit="metres")
    check_shape("boxes", boxes, ["M", 7])
    check_floating("boxes", boxes)
    check_finite("boxes", boxes, MAX_COORDINATE)
    if boxes.device != points.device:
        raise ValueError(f"boxes is on {boxes.device} but points on {points.device}; expected one device")
    if bool((boxes[:, 3:6] < 0).any()):
        raise ValueError("boxes sizes (l, w, h: columns 3-5) must be >= 0 metres")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= float(margin) < float("inf"):
        raise ValueError(f"margin must be a finite number >= 0 (metres), got {margin!r}")
    p = points.to(torch.float64)
    b = boxes.to(torch.float64)
    inside = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
    chunk = max(1, (1 << 22) // max(1, p.shape[0]))
    for start in range(0, b.shape[0], chunk):
        bb = b[start : start + chunk]
        d = p[:, None, :] - bb[None, :, :3]  # [N, m, 3]
        c, s = torch.cos(bb[:, 6]), torch.sin(bb[:, 6])
        # the offset in the box's axes: rotate by -yaw
        along = c * d[..., 0] + s * d[..., 1]
        across = -s * d[..., 0] + c * d[..., 1]
        half = bb[:, 3:6] / 2 + float(margin)
        hit = (along.abs() <= half[:, 0]) & (across.abs() <= half[:, 1]) & (d[..., 2].abs() <= half[:, 2])
        inside |= hit.any(dim=1)
    return inside
