"""Input checks shared by the voxel losses (:mod:`.occupancy`, :mod:`.scal`)."""

from __future__ import annotations

import torch

from .._checks import check_floating, check_integer, check_tensor


def check_logits_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    check_tensor("logits", logits)
    check_tensor("labels", labels)
    check_floating("logits", logits)
    check_integer("labels", labels)
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape [B, C, ...], got {list(logits.shape)}")
    expected = [logits.shape[0]] + list(logits.shape[2:])
    if list(labels.shape) != expected:
        raise ValueError(
            f"labels must have shape {expected} (logits {list(logits.shape)} without C), got {list(labels.shape)}"
        )


def check_label_range(labels: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    valid = labels != ignore_index
    if valid.any():
        lo, hi = int(labels[valid].min()), int(labels[valid].max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}, "
                f"got values in [{lo}, {hi}]"
            )
