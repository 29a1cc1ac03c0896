"""Adjacent frames of a sample (t ± k in its scene) and their cameras against the sample's grid.

* :func:`adjacent_samples`: the frames at given offsets from a sample, within its scene, in
  time order (LiDAR timestamp);
* :func:`adjacent_cam_from_ego`: the cameras of another frame of the same scene, as
  ``cam_from_grid`` of the reference sample's ego frame (the Occ3D grid), through
  :func:`gaussrender.geometry.adjacent.adjacent_cam_from_grid`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..geometry.adjacent import adjacent_cam_from_grid
from .infos import CAMERA_NAMES, SampleInfo

__all__ = ["adjacent_samples", "adjacent_cam_from_ego"]


def adjacent_samples(samples: Sequence[SampleInfo], index: int | str, offsets: Sequence[int]) -> list[SampleInfo]:
    """The frames ``offsets`` away from ``samples[index]`` (or the sample of that token) in its scene.

    Frames of the sample's scene (same ``scene``) are ordered by timestamp; offset ``k`` is the
    frame ``k`` positions later (negative: earlier); 0 is the sample itself.

    Args:
        samples: the samples (any order; other scenes are ignored).
        index: position in ``samples`` or a sample token.
        offsets: ints, e.g. ``(-1, 1)``.

    Returns:
        One :class:`SampleInfo` per offset, in the order of ``offsets``.

    Raises:
        ValueError: an offset that would leave the scene (its frames are named), a token not
            found, two frames of the scene with the same timestamp (no order), a non-int offset.
        IndexError: ``index`` out of range.
    """
    if isinstance(index, str):
        found = [i for i, s in enumerate(samples) if s.token == index]
        if not found:
            raise ValueError(f"no sample with token {index!r}")
        index = found[0]
    elif isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"index must be an int or a token, got {type(index).__name__}")
    if not -len(samples) <= index < len(samples):
        raise IndexError(f"index {index} out of range for {len(samples)} samples")
    sample = samples[index]
    frames = sorted((s for s in samples if s.scene == sample.scene), key=lambda s: s.timestamp)
    stamps = [s.timestamp for s in frames]
    if len(set(stamps)) != len(stamps):
        raise ValueError(f"scene {sample.scene!r} has frames with equal timestamps; their order is unknown")
    here = next(i for i, s in enumerate(frames) if s is sample)
    out = []
    for k in offsets:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"offsets must be ints, got {k!r}")
        j = here + int(k)
        if not 0 <= j < len(frames):
            raise ValueError(
                f"offset {int(k)} from frame {here} of scene {sample.scene!r} leaves the scene "
                f"({len(frames)} frames); frames of other scenes are never used"
            )
        out.append(frames[j])
    return out


def adjacent_cam_from_ego(
    reference: SampleInfo,
    other: SampleInfo,
    camera_names: Sequence[str] = CAMERA_NAMES,
    ego_from_grid: np.ndarray | None = None,
) -> np.ndarray:
    """``[V, 4, 4]`` float64: ``other``'s cameras (OpenCV) from ``reference``'s grid frame.

    ``cam_from_grid = inv(sensor2ego_c) · inv(ego2global_c) · ego2global_ref · ego_from_grid``
    with ``other``'s camera calibration and per-camera ego poses and ``reference``'s
    (LiDAR-timestamp) ego pose. ``other = reference`` gives
    :func:`gaussrender.data.cam_from_ego` (times ``ego_from_grid``).

    Args:
        reference: the sample whose grid the prediction lives in (frame t).
        other: a frame of the same scene (t + k), e.g. from :func:`adjacent_samples`.
        camera_names: views, in order.
        ego_from_grid: ``[4, 4]`` grid → reference ego (None: identity, Occ3D).

    Raises:
        ValueError: the two samples belong to different scenes.
        KeyError: a camera missing from ``other``.
    """
    if other.scene != reference.scene:
        raise ValueError(
            f"other (scene {other.scene!r}) and reference (scene {reference.scene!r}) must belong to one scene"
        )
    missing = [n for n in camera_names if n not in other.cameras]
    if missing:
        raise KeyError(f"sample {other.token}: cameras {missing} missing (has {sorted(other.cameras)})")
    cams = [other.cameras[n] for n in camera_names]
    out = adjacent_cam_from_grid(
        torch.from_numpy(reference.ego2global.matrix()),
        torch.from_numpy(np.stack([c.ego2global.matrix() for c in cams])),
        torch.from_numpy(np.stack([c.sensor2ego.matrix() for c in cams])),
        None if ego_from_grid is None else torch.as_tensor(ego_from_grid, dtype=torch.float64),
    )
    return out.numpy()
