"""Cross-entropy class weights of the 3D loss: counted from data, or the release's fixed tables."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .._checks import check_tensor

if TYPE_CHECKING:
    from ..geometry.grid import VoxelGrid

__all__ = ["inverse_log_frequency_weights", "RELEASE_CLASS_WEIGHTS", "release_class_weights"]


def inverse_log_frequency_weights(counts: torch.Tensor, eps: float = 0.001) -> torch.Tensor:
    """Class weights ``1 / log(count + eps)`` from per-class voxel counts ``[C]``.

    Rare classes get larger weights. This is the weighting of the SurroundOcc/TPVFormer
    occupancy code, which feeds it raw dataset-wide voxel counts (``eps = 0.001``). Counts
    below ``e`` are raised to ``e`` (weight 1) so that absent classes get a finite, positive
    weight. A global factor does not change the weighted-mean cross-entropy.

    Args:
        counts: ``[C]`` non-negative voxel counts.

    Returns:
        ``[C]`` float64 positive weights.
    """
    check_tensor("counts", counts)
    if counts.dim() != 1 or bool((counts < 0).any()):
        raise ValueError(f"counts must be a non-negative [C] tensor, got shape {list(counts.shape)}")
    return 1.0 / torch.log(counts.double().clamp_min(math.e) + eps)


# Cross-entropy class weights of the release's logged configs (docs/method.md#loss): fixed per
# benchmark, not counted from data. Keyed by grid preset name, in the preset's class order.
_OCC3D_WEIGHTS = (
    1.0155,
    1.0690,
    1.3001,
    1.0725,
    0.9464,
    1.1009,
    1.2696,
    1.0626,
    1.1890,
    1.0622,
    1.0060,
    0.8571,
    1.0392,
    0.9087,
    0.8936,
    0.8549,
    0.8528,
    0.5000,
)
#: ``{grid preset name: [C] weights}`` of the release (docs/method.md#loss). Occ3D: 18 values, free
#: (index 17) last; SurroundOcc: 17 values, the Occ3D ones with empty (0.5) first and
#: vegetation 0.8528 last (Occ3D's class 0 "others" has no SurroundOcc counterpart);
#: KITTI-360: 19 values, empty first.
RELEASE_CLASS_WEIGHTS: dict[str, tuple[float, ...]] = {
    "occ3d": _OCC3D_WEIGHTS,
    "surroundocc": (0.5000,) + _OCC3D_WEIGHTS[1:-1],
    "kitti360": (
        0.0464,
        0.0595,
        0.0865,
        0.0871,
        0.0717,
        0.0657,
        0.0852,
        0.0541,
        0.0602,
        0.0567,
        0.0607,
        0.0540,
        0.0636,
        0.0513,
        0.0564,
        0.0701,
        0.0774,
        0.0580,
        0.0690,
    ),
}


def release_class_weights(grid: VoxelGrid) -> torch.Tensor:
    """``[C]`` float32 cross-entropy weights of the release for ``grid`` (by preset name).

    Raises:
        ValueError: the grid's name has no table in :data:`RELEASE_CLASS_WEIGHTS`, or its
            class count differs from the table's.
    """
    name = getattr(grid, "name", None)
    table = RELEASE_CLASS_WEIGHTS.get(name) if isinstance(name, str) else None
    if table is None:
        raise ValueError(
            f"no release class-weight table for grid {getattr(grid, 'name', grid)!r}; tables exist for "
            f"{sorted(RELEASE_CLASS_WEIGHTS)} (docs/method.md#loss). Use loss.class_weighting "
            "'inverse_log_frequency' or 'none', or give loss.class_weights"
        )
    if len(table) != grid.num_classes:
        raise ValueError(
            f"grid {grid.name!r} has {grid.num_classes} classes but the release table for "
            f"{grid.name!r} has {len(table)} weights"
        )
    return torch.tensor(table, dtype=torch.float32)
