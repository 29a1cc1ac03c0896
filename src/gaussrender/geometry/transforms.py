"""Rotations and rigid transforms: quaternions <-> matrices, axis rotations, poses.

nuScenes (and the BEVDet/mmdet3d info files built from it) store a pose as a translation in
metres and a rotation quaternion in ``(w, x, y, z)`` order; ``pose_matrix`` turns one into the
``[4, 4]`` homogeneous matrix that maps points of the child frame into the parent frame
(e.g. ``lidar2ego_*`` gives ego-from-lidar). :func:`matrix_to_quaternion` goes back, to
write such files. :func:`rotation_x`, :func:`rotation_y`, :func:`rotation_z` are batched axis
rotations in degrees (the camera strategies' ``Rx``, ``Ry``, ``Rz``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .._checks import check_finite, check_shape

__all__ = ["pose_matrix", "quaternion_to_matrix", "matrix_to_quaternion", "rotation_x", "rotation_y", "rotation_z"]


def _as_float64(name: str, value: torch.Tensor | Sequence[float], size: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real-valued tensor, got dtype {value.dtype}")
        t = value.detach().to(dtype=torch.float64)
    else:
        try:
            t = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a tensor or a sequence of {size} numbers, got {value!r}") from err
    check_shape(name, t, [size])
    check_finite(name, t)
    return t


def quaternion_to_matrix(rotation_wxyz: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Rotation matrix of a quaternion given as ``(w, x, y, z)``.

    The quaternion is normalised first (info files store unit quaternions rounded to a few
    digits), so ``q`` and ``-q`` and any positive multiple give the same matrix.

    Args:
        rotation_wxyz: ``[4]`` quaternion, scalar part first.

    Returns:
        ``[3, 3]`` float64 rotation matrix.

    Raises:
        ValueError: if the quaternion has the wrong shape, is not finite or has zero norm.
    """
    q = _as_float64("rotation_wxyz", rotation_wxyz, 4)
    norm = torch.linalg.vector_norm(q)
    if float(norm) < 1e-12:
        raise ValueError(f"rotation_wxyz must be a non-zero quaternion (w, x, y, z), got {q.tolist()}")
    w, x, y, z = (q / norm).unbind()
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
        ]
    )


def pose_matrix(
    translation: torch.Tensor | Sequence[float], rotation_wxyz: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """Homogeneous transform ``[[R, t], [0, 1]]`` from a translation and a ``(w, x, y, z)`` quaternion.

    Args:
        translation: ``[3]`` translation in metres (the child frame's origin in the parent frame).
        rotation_wxyz: ``[4]`` rotation quaternion, scalar part first (normalised here).

    Returns:
        ``[4, 4]`` float64 matrix mapping child-frame points to the parent frame.

    Example:
        >>> T = pose_matrix([1.0, 2.0, 3.0], [1.0, 0.0, 0.0, 0.0])
        >>> T[:3, 3].tolist()
        [1.0, 2.0, 3.0]
    """
    t = _as_float64("translation", translation, 3)
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = quaternion_to_matrix(rotation_wxyz)
    out[:3, 3] = t
    return out


def matrix_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion (w, x, y, z) of a ``[3, 3]`` rotation matrix, with ``w >= 0``.

    Picks the largest of ``w, x, y, z`` to divide by (numerically stable for all rotations).
    """
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"rotation must be a [3, 3] matrix, got shape {list(r.shape)}")
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    candidates = [
        1 + trace,
        1 + r[0, 0] - r[1, 1] - r[2, 2],
        1 - r[0, 0] + r[1, 1] - r[2, 2],
        1 - r[0, 0] - r[1, 1] + r[2, 2],
    ]
    k = int(np.argmax(candidates))
    s = 2.0 * math.sqrt(max(candidates[k], 1e-300))
    if k == 0:
        q = (s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
    elif k == 1:
        q = ((r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s)
    elif k == 2:
        q = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s)
    else:
        q = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4)
    qa = np.asarray(q) / np.linalg.norm(q)
    if qa[0] < 0:
        qa = -qa
    w, x, y, z = (float(v) for v in qa)
    return (w, x, y, z)


def rotation_x(deg: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` right-handed rotations about the x axis by ``deg [...]`` degrees."""
    a = torch.deg2rad(deg)
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).reshape(*a.shape, 3, 3)


def rotation_y(deg: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` right-handed rotations about the y axis by ``deg [...]`` degrees."""
    a = torch.deg2rad(deg)
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(*a.shape, 3, 3)


def rotation_z(deg: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` right-handed rotations about the z axis by ``deg [...]`` degrees."""
    a = torch.deg2rad(deg)
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*a.shape, 3, 3)
