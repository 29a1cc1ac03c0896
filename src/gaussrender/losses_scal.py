"""Scene-class affinity losses of MonoScene: ``sem_scal`` and ``geo_scal``.

MonoScene (Cao & de Charette, CVPR 2022) and the models built on its code (Symphonies, CVPR
2024) add these to the class-weighted cross-entropy. Both compare, over the supervised voxels
of the whole batch (labels ``!= ignore_index``), the softmax probabilities ``p`` with the
binary target ``t`` of a class through three soft ratios

- precision ``sum(p t) / sum(p)``,
- recall ``sum(p t) / sum(t)``,
- specificity ``sum((1 - p)(1 - t)) / sum(1 - t)``,

each turned into ``-log(ratio)`` (a binary cross-entropy against 1). ``sem_scal`` does this for
every class present in the labels and averages the per-class sums over those classes;
``geo_scal`` does it once for occupied (``p = 1 - p_empty``, ``t = [y != empty]``) with
specificity on free space (``sum(p_empty (1 - t)) / sum(1 - t)``).

Where the Symphonies release (``ssc_pl/models/losses/ssc_loss.py``) would divide by zero this
module drops the ratio instead: in ``sem_scal`` the release already skips a ratio whose
denominator is zero (and classes absent from the labels), in ``geo_scal`` it returns NaN for
labels with no occupied (recall) or no free (specificity) voxel, where these functions leave
that ratio out. ``-log`` is capped at 100 as ``F.binary_cross_entropy`` does.
"""

from __future__ import annotations

import torch

from ._label_checks import check_label_range, check_logits_labels

__all__ = ["sem_scal_loss", "geo_scal_loss"]

#: ``F.binary_cross_entropy`` clamps ``log`` at ``-100``: the largest value of one ratio term.
_MAX_NEG_LOG = 100.0


def _neg_log_ratio(ratio: torch.Tensor) -> torch.Tensor:
    """``-log(ratio)`` capped at 100, i.e. ``F.binary_cross_entropy(ratio, 1)``, NaN-propagating.

    The ratio is clamped to at most 1: rounding can push a sum of a subset of probabilities a
    few ulps over the full sum, where ``F.binary_cross_entropy`` would refuse the input. The
    zero branch is selected with ``where`` so that its gradient stays finite (zero).
    """
    safe = ratio.clamp(min=torch.finfo(ratio.dtype).tiny, max=1.0)
    value = (-torch.log(safe)).clamp_max(_MAX_NEG_LOG)
    return torch.where(ratio == 0, torch.full_like(value, _MAX_NEG_LOG), value)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``keep``; 1 elsewhere (a zero term after ``-log``, no NaN gradient)."""
    return torch.where(keep, num / torch.where(keep, den, torch.ones_like(den)), torch.ones_like(num))


def _supervised_probs(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, from_logits: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([P, C] probabilities, [P] int64 labels)`` of the supervised voxels of the batch."""
    check_logits_labels(logits, labels)
    num_classes = logits.shape[1]
    check_label_range(labels, num_classes, ignore_index)
    probs = logits.softmax(dim=1) if from_logits else logits
    probs = probs.movedim(1, -1).reshape(-1, num_classes)
    flat = labels.reshape(-1).long()
    valid = flat != ignore_index
    return probs[valid], flat[valid]


def sem_scal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = 255,
    from_logits: bool = True,
) -> torch.Tensor:
    """Semantic scene-class affinity loss (MonoScene's ``sem_scal``).

    For each class ``c`` present among the supervised labels, with ``p = p_c`` and
    ``t = [y = c]`` over the supervised voxels of the whole batch:
    ``L_c = -log(precision) - log(recall) - log(specificity)`` (a ratio whose denominator is
    zero is left out, as in the release); the loss is ``sum_c L_c / #present classes``.
    Classes absent from the labels contribute nothing and are not counted.

    Args:
        logits: ``[B, C, X, Y, Z]`` unnormalised class scores (or probabilities with
            ``from_logits=False``).
        labels: ``[B, X, Y, Z]`` integer labels in ``[0, C)`` or ``ignore_index``.
        ignore_index: label value without supervision.
        from_logits: apply a softmax over ``C`` first.

    Returns:
        Scalar tensor (dtype of ``logits``); zero (with a graph) when no voxel is supervised.
    """
    probs, flat = _supervised_probs(logits, labels, ignore_index, from_logits)
    if flat.numel() == 0:
        return logits.sum() * 0.0
    num_classes = probs.shape[1]
    # per-class sums without a [P, C] one-hot target (2.1 M voxels x 19 classes on KITTI-360):
    # sum(p t) gathers each voxel's own-class probability, and
    # sum((1 - p)(1 - t)) = sum(1 - p) - sum((1 - p) t) = (P - sum p) - (#positives - sum(p t))
    positives = torch.bincount(flat, minlength=num_classes).to(probs.dtype)  # [C]
    present = positives > 0
    own = probs.gather(1, flat[:, None]).squeeze(1)  # [P] probability of the labelled class
    hit = torch.zeros_like(positives).index_add(0, flat, own)
    predicted = probs.sum(dim=0)
    total = float(flat.numel())
    negatives = total - positives
    true_neg = (total - predicted) - (positives - hit)
    precision = _safe_ratio(hit, predicted, present & (predicted > 0))
    recall = _safe_ratio(hit, positives, present)
    specificity = _safe_ratio(true_neg, negatives, present & (negatives > 0))
    per_class = _neg_log_ratio(precision) + _neg_log_ratio(recall) + _neg_log_ratio(specificity)  # [C]
    return (per_class * present).sum() / present.sum()


def geo_scal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    empty_index: int,
    ignore_index: int = 255,
    from_logits: bool = True,
) -> torch.Tensor:
    """Geometric scene-class affinity loss (MonoScene's ``geo_scal``): occupied vs free.

    With ``q = 1 - p_empty`` and ``t = [y != empty_index]`` over the supervised voxels of the
    whole batch: ``-log(sum(q t) / sum(q)) - log(sum(q t) / sum(t))
    - log(sum(p_empty (1 - t)) / sum(1 - t))``. A ratio whose denominator is zero (no
    occupied or no free voxel supervised) is left out; the release returns NaN there.

    Args:
        logits: ``[B, C, X, Y, Z]`` unnormalised class scores (or probabilities with
            ``from_logits=False``).
        labels: ``[B, X, Y, Z]`` integer labels in ``[0, C)`` or ``ignore_index``.
        empty_index: class index of free space (0 on SemanticKITTI / KITTI-360).
        ignore_index: label value without supervision.
        from_logits: apply a softmax over ``C`` first.

    Returns:
        Scalar tensor (dtype of ``logits``); zero (with a graph) when no voxel is supervised.
    """
    if logits.dim() >= 2 and not 0 <= empty_index < logits.shape[1]:
        raise ValueError(f"empty_index must be in [0, {logits.shape[1]}), got {empty_index}")
    probs, flat = _supervised_probs(logits, labels, ignore_index, from_logits)
    if flat.numel() == 0:
        return logits.sum() * 0.0
    empty = probs[:, empty_index]
    occupied = 1.0 - empty
    target = (flat != empty_index).to(probs.dtype)
    hit = (occupied * target).sum()
    predicted = occupied.sum()
    positives = target.sum()
    negatives = flat.numel() - positives
    precision = _safe_ratio(hit, predicted, predicted > 0)
    recall = _safe_ratio(hit, positives, positives > 0)
    specificity = _safe_ratio((empty * (1.0 - target)).sum(), negatives, negatives > 0)
    return _neg_log_ratio(precision) + _neg_log_ratio(recall) + _neg_log_ratio(specificity)
