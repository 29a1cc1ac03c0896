"""Rigid poses as nuScenes-style metadata stores them: translation + unit quaternion (w, x, y, z).

Matrices are float64 numpy: composing global poses (hundreds of metres from the map origin)
in float32 would lose centimetres. The quaternion maths is :mod:`gaussrender.geometry.transforms`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._untrusted import brief
from ..geometry.transforms import pose_matrix

__all__ = ["Pose"]


@dataclass(frozen=True)
class Pose:
    """A rigid transform as the metadata stores it: ``translation`` (metres) and ``rotation`` (w, x, y, z).

    ``matrix()`` maps points of the child frame (e.g. a sensor) into the parent frame (e.g. the ego).
    """

    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]

    @classmethod
    def from_fields(cls, translation: object, rotation: object, *, name: str) -> Pose:
        """Build from raw file fields (lists or arrays), checking they form a valid pose.

        Raises:
            ValueError: not 3 + 4 finite numbers, or a quaternion whose norm is outside
                [0.99, 1.01] (usually a matrix or a different field stored by mistake).
        """
        try:
            t = np.asarray(translation, dtype=np.float64)
            q = np.asarray(rotation, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name}: translation/rotation must be numbers, got {brief(translation)}, {brief(rotation)}"
            ) from err
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ValueError(f"{name} translation must be 3 finite numbers (metres), got {brief(translation)}")
        if q.shape != (4,) or not np.all(np.isfinite(q)):
            raise ValueError(f"{name} rotation must be 4 finite numbers (w, x, y, z), got {brief(rotation)}")
        norm = float(np.linalg.norm(q))
        if not 0.99 <= norm <= 1.01:
            raise ValueError(f"{name} rotation must be a unit quaternion (w, x, y, z), got norm {norm:.4f}")
        tx, ty, tz = (float(v) for v in t)  # shapes (3,) and (4,) checked above
        qw, qx, qy, qz = (float(v) for v in q)
        return cls((tx, ty, tz), (qw, qx, qy, qz))

    def matrix(self) -> np.ndarray:
        """``[4, 4]`` float64 child→parent transform."""
        return pose_matrix(list(self.translation), list(self.rotation)).numpy()
