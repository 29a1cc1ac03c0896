"""Cross-entropy class weights of the 3D loss: counted from data, or the release's fixed tables."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .._checks import check_tensor

if TYPE_CHECKING:
    from ..geometry.grid import VoxelGrid

__all__ = [
    "inverse_log_frequency_weights",
    "RELEASE_CLASS_WEIGHTS",
    "KITTI360_CLASS_FREQUENCIES",
    "release_class_weights",
]


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


# Cross-entropy class weights of the release (docs/method.md#loss): fixed per benchmark, not counted
# from data, at the precision the release writes them (its the release's model/utils/utils.py,
# get_frequencies). Keyed by grid preset name, in the preset's class order.

#: Occ3D's 18 weights as the release writes them ("From GaussianFormer"), free (17) last.
_OCC3D_WEIGHTS = (
    1.01552756,
    1.06897009,
    1.30013094,
    1.07253735,
    0.94637502,
    1.10087012,
    1.26960524,
    1.06258364,
    1.189019,
    1.06217292,
    1.00595144,
    0.85706115,
    1.03923299,
    0.90867526,
    0.8936431,
    0.85486129,
    0.8527829,
    0.5,
)

#: SSCBench-KITTI-360 voxel counts per class (empty first), as the release lists them (after
#: SSCBench's MonoScene ``kitti_360/params.py``); its weights are ``1 / log(count + 0.001)``
#: (SSCBench's ``train_monoscene.py``), computed here in float64.
KITTI360_CLASS_FREQUENCIES: tuple[int, ...] = (
    2264087502,
    20098728,
    104972,
    96297,
    1149426,
    4051087,
    125103,
    105540713,
    16292249,
    45297267,
    14454132,
    110397082,
    6766219,
    295883213,
    50037503,
    1561069,
    406330,
    30516166,
    1950115,
)

#: ``{grid preset name: [C] weights}`` of the release (docs/method.md#loss; earlier notes printed them
#: rounded to 4 decimals). Occ3D: 18 values, free (index 17) last; SurroundOcc: 17 values, the Occ3D ones
#: with empty (0.5) first and vegetation 0.8527829 last (Occ3D's class 0 "others" has no
#: SurroundOcc counterpart; the release's list for SurroundOcc is exactly this); KITTI-360: 19
#: values ``1 / log(count + 0.001)`` of :data:`KITTI360_CLASS_FREQUENCIES`, empty first.
RELEASE_CLASS_WEIGHTS: dict[str, tuple[float, ...]] = {
    "occ3d": _OCC3D_WEIGHTS,
    "surroundocc": (0.5,) + _OCC3D_WEIGHTS[1:-1],
    "kitti360": tuple(1.0 / math.log(count + 0.001) for count in KITTI360_CLASS_FREQUENCIES),
}


def release_class_weights(grid: VoxelGrid, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[C]`` cross-entropy weights of the release for ``grid`` (by preset name), in ``dtype``
    (float32, the loss's, by default; float64 keeps the tables' full precision).

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
    return torch.tensor(table, dtype=dtype)
