"""MonoScene's auxiliary SSC losses: scene-class affinity (``sem_scal``, ``geo_scal``) and frustum proportion.

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

The frustum-proportion loss splits the image into ``size x size`` tiles; the voxels whose
projection falls in a tile form a local frustum (:func:`frustum_ids`). Per frustum, the class
distribution of the supervised labels ``t`` and the normalised sum of the predicted
probabilities ``q`` are compared by ``KL(t || q) = sum_{c: t_c > 0} t_c log(t_c / q_c)``,
averaged over the frustums with labels (both pooled over the batch, as the release does).
"""

from __future__ import annotations

import torch

from ._labels import check_label_range, check_logits_labels

__all__ = ["sem_scal_loss", "geo_scal_loss", "frustum_ids", "frustum_proportion_loss"]

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


def frustum_ids(pixels: torch.Tensor, depth: torch.Tensor, image_size: tuple[int, int], size: int) -> torch.Tensor:
    """Local frustum of each point: the ``size x size`` image tile its projection falls in.

    Tile ``(i, j)`` (row ``i`` from the top, column ``j`` from the left) covers
    ``u in [j W / size, (j + 1) W / size)``, ``v in [i H / size, (i + 1) H / size)`` and has id
    ``i * size + j`` (the release's order: rows outer, columns inner).

    Args:
        pixels: ``[..., 2]`` projections ``(u, v)`` in pixels.
        depth: ``[...]`` camera z in metres; points with ``depth <= 0`` are in no frustum.
        image_size: ``(H, W)`` pixels.
        size: tiles per image side (8 in the Symphonies KITTI-360 config).

    Returns:
        ``[...]`` int64 ids in ``[0, size**2)``, -1 for points outside the image or behind it.
    """
    if pixels.shape[-1:] != (2,) or depth.shape != pixels.shape[:-1]:
        raise ValueError(
            f"pixels must have shape [..., 2] and depth [...], got {list(pixels.shape)} and {list(depth.shape)}"
        )
    if int(size) < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    h, w = (int(v) for v in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive (H, W), got {image_size!r}")
    u, v = pixels[..., 0].double(), pixels[..., 1].double()
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h) & (depth > 0)
    # the tile bounds as the release computes them, (j / size) * W, so that a point on a
    # boundary goes to the same tile (floor(u size / W) can round the other way)
    fractions = [j * 1.0 / size for j in range(int(size))]
    u_starts = torch.tensor([f * w for f in fractions], dtype=torch.float64, device=pixels.device)
    v_starts = torch.tensor([f * h for f in fractions], dtype=torch.float64, device=pixels.device)
    col = (torch.bucketize(u.contiguous(), u_starts, right=True) - 1).clamp_min(0)
    row = (torch.bucketize(v.contiguous(), v_starts, right=True) - 1).clamp_min(0)
    return torch.where(inside, row * int(size) + col, torch.full_like(col, -1))


def frustum_proportion_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    frustum: torch.Tensor,
    num_frustums: int,
    ignore_index: int = 255,
    from_logits: bool = True,
) -> torch.Tensor:
    """MonoScene's frustum-proportion loss: per local frustum, ``KL(label classes || predicted classes)``.

    For frustum ``f`` over the supervised voxels of the whole batch that lie in it:
    ``t_f = counts_f / sum(counts_f)`` (label class counts) and ``q_f = sum_v p_v / sum_v sum_c
    p_v,c`` (softmax mass per class); the loss is ``sum_f sum_{c: t_f,c > 0} t_f,c log(t_f,c /
    q_f,c)`` divided by the number of frustums with at least one supervised voxel.

    Args:
        logits: ``[B, C, X, Y, Z]`` unnormalised class scores (or probabilities with
            ``from_logits=False``).
        labels: ``[B, X, Y, Z]`` integer labels in ``[0, C)`` or ``ignore_index``.
        frustum: ``[B, X, Y, Z]`` int frustum id of each voxel in ``[0, num_frustums)``, -1 for
            none (see :func:`frustum_ids`).
        num_frustums: number of frustums ``F`` (``size**2``).
        ignore_index: label value without supervision.
        from_logits: apply a softmax over ``C`` first.

    Returns:
        Scalar tensor; zero (with a graph) when no frustum holds a supervised voxel.
    """
    check_logits_labels(logits, labels)
    if frustum.shape != labels.shape or frustum.dtype.is_floating_point or frustum.dtype == torch.bool:
        raise ValueError(
            f"frustum must be an integer tensor of the labels' shape {list(labels.shape)}, "
            f"got {frustum.dtype} {list(frustum.shape)}"
        )
    if int(num_frustums) < 1:
        raise ValueError(f"num_frustums must be a positive int, got {num_frustums!r}")
    num_classes = logits.shape[1]
    check_label_range(labels, num_classes, ignore_index)
    ids = frustum.reshape(-1).long()
    if bool(((ids < -1) | (ids >= num_frustums)).any()):
        raise ValueError(f"frustum ids must lie in [-1, {num_frustums}), got [{int(ids.min())}, {int(ids.max())}]")
    probs = logits.softmax(dim=1) if from_logits else logits
    probs = probs.movedim(1, -1).reshape(-1, num_classes)
    flat = labels.reshape(-1).long()
    keep = (flat != ignore_index) & (ids >= 0)
    probs, flat, ids = probs[keep], flat[keep], ids[keep]
    counts = torch.bincount(ids * num_classes + flat, minlength=num_frustums * num_classes)
    counts = counts.reshape(num_frustums, num_classes).to(probs.dtype)  # [F, C]
    mass = probs.new_zeros(num_frustums, num_classes).index_add(0, ids, probs)  # [F, C]
    total_count = counts.sum(dim=1, keepdim=True)
    total_mass = mass.sum(dim=1, keepdim=True)
    used = (total_count > 0) & (total_mass > 0)  # [F, 1]
    if not bool(used.any()):
        return logits.sum() * 0.0
    target = counts / torch.where(used, total_count, torch.ones_like(total_count))
    pred = mass / torch.where(used, total_mass, torch.ones_like(total_mass))
    term = used & (target > 0)  # [F, C]: the release keeps only classes present in the frustum
    safe_pred = torch.where(term, pred, torch.ones_like(pred))
    safe_target = torch.where(term, target, torch.ones_like(target))
    kl = torch.where(term, safe_target * (torch.log(safe_target) - torch.log(safe_pred)), torch.zeros_like(pred))
    return kl.sum() / used.sum()
