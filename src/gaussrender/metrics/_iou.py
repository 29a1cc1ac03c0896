"""IoU arithmetic shared by the voxel and ray metrics: from pooled counts to per-class IoU and means.

Both metrics accumulate integer counts over the whole dataset (never per sample) and turn them
into ratios only here, so that the benchmark conventions (what an absent class scores, an
epsilon in the denominator) are implemented once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["Absent", "ABSENT_RULES", "class_iou", "mean_iou"]

Absent = Literal["nan", "propagate", "zero"]
ABSENT_RULES: tuple[str, ...] = ("nan", "propagate", "zero")


def check_absent(absent: str) -> str:
    if absent not in ABSENT_RULES:
        raise ValueError(f"absent must be one of {ABSENT_RULES}, got {absent!r}")
    return absent


def class_iou(
    tp: torch.Tensor, gt: torch.Tensor, pred: torch.Tensor, *, absent: str = "nan", eps: float = 0.0
) -> torch.Tensor:
    """Per-class IoU ``TP / (GT + Pred - TP + eps)`` from pooled counts.

    Args:
        tp: ``[..., C]`` true positives per class.
        gt: ``[..., C]`` ground-truth count per class (TP + FN).
        pred: ``[..., C]`` predicted count per class (TP + FP).
        absent: what a class with ``GT + Pred = 0`` (absent from both) scores: ``"nan"`` or
            ``"propagate"`` give NaN (the two differ only in :func:`mean_iou`), ``"zero"`` gives 0.
        eps: added to every denominator (SSCBench adds 1e-6).

    Returns:
        ``[..., C]`` float64 IoU in [0, 1] (NaN for absent classes under ``"nan"``/``"propagate"``).
    """
    tp = tp.to(torch.float64)
    union = gt.to(torch.float64) + pred.to(torch.float64) - tp
    iou = tp / (union + eps).clamp_min(torch.finfo(torch.float64).tiny)
    fill = 0.0 if check_absent(absent) == "zero" else float("nan")
    return torch.where(union > 0, iou, torch.full_like(iou, fill))


def mean_iou(per_class: torch.Tensor, classes: Sequence[int], *, absent: str = "nan") -> torch.Tensor:
    """Mean of ``per_class[..., classes]`` under an absent-class rule.

    ``"nan"`` skips NaN entries (a NaN-mean, NaN only when every class is absent);
    ``"propagate"`` is a plain mean, NaN as soon as one class is absent; ``"zero"`` is a plain
    mean of values that are never NaN.
    """
    idx = torch.as_tensor(list(classes), dtype=torch.long, device=per_class.device)
    values = per_class.index_select(-1, idx)
    if check_absent(absent) == "nan":
        return values.nanmean(dim=-1)
    return values.mean(dim=-1)
