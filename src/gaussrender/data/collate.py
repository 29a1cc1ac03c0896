"""Batching dataset items (dicts) for ``torch.utils.data.DataLoader``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["collate", "RAGGED_KEYS"]

#: Keys whose tensors are per-sample point sets (``[N_i, ...]``, ``N_i`` varies): always kept as a
#: list, even when a batch's ``N_i`` happen to agree, so that consumers see one type.
RAGGED_KEYS = frozenset({"points", "point_labels"})


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors of ``items`` along a new batch dimension; keep everything else as lists.

    Tensors whose shapes differ between items (``origins`` ``[K, 3]``: K varies per sample)
    stay a list of tensors, and so do the point sets of :data:`RAGGED_KEYS` (``points``,
    ``point_labels``) whatever their shapes. All items must have the same keys.

    Raises:
        ValueError: empty batch or items with different keys.
    """
    if not items:
        raise ValueError("collate needs at least one item, got an empty batch")
    keys = list(items[0])
    for i, item in enumerate(items):
        if set(item) != set(keys):
            raise ValueError(f"item {i} has keys {sorted(item)}, item 0 has {sorted(keys)}")
    out: dict[str, Any] = {}
    for k in keys:
        values = [item[k] for item in items]
        if (
            k not in RAGGED_KEYS
            and all(isinstance(v, torch.Tensor) for v in values)
            and len({tuple(v.shape) for v in values}) == 1
        ):
            out[k] = torch.stack(values)
        else:
            out[k] = values
    return out
