"""3D occupancy losses: class-weighted cross-entropy, Lovasz-softmax, multi-scale weighting.

These are the models' own losses (docs/method.md#loss, ``L_3D``), computed on voxel logits
``[B, C, X, Y, Z]`` against integer labels ``[B, X, Y, Z]`` whose value ``ignore_index``
(255 on every benchmark) carries no supervision. GaussRender adds its rendering loss on top
(:class:`gaussrender.GaussRenderLoss`). :class:`Occupancy3DLoss` can add MonoScene's
scene-class affinity terms (:mod:`gaussrender.losses.scal`), which the Symphonies recipe uses.

The Lovasz-softmax loss follows Berman et al., "The Lovász-Softmax loss" (CVPR 2018): for
each class present in the labels, the per-voxel errors ``|[y = c] - p_c|`` are sorted in
decreasing order and weighted by the discrete gradient of the Jaccard loss along that order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .._checks import check_finite, check_floating, check_integer, check_shape
from ._labels import check_label_range as _check_label_range
from ._labels import check_logits_labels as _check_logits_labels
from .class_weights import RELEASE_CLASS_WEIGHTS, inverse_log_frequency_weights, release_class_weights
from .scal import frustum_proportion_loss, geo_scal_loss, sem_scal_loss

__all__ = [
    "cross_entropy_3d",
    "lovasz_softmax",
    "downsample_labels",
    "COARSE_LABEL_RULES",
    "inverse_log_frequency_weights",
    "RELEASE_CLASS_WEIGHTS",
    "release_class_weights",
    "Occupancy3DLoss",
]


def cross_entropy_3d(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Class-weighted cross-entropy over voxels, ignoring ``ignore_index``.

    The weighted mean ``sum_i w[y_i] * -log p_i[y_i] / sum_i w[y_i]`` over supervised voxels
    of the whole batch (PyTorch's ``cross_entropy`` convention). Zero (with a graph) when no
    voxel is supervised.

    Args:
        logits: ``[B, C, X, Y, Z]`` unnormalised class scores.
        labels: ``[B, X, Y, Z]`` integer labels in ``[0, C)`` or ``ignore_index``.
        class_weights: ``[C]`` non-negative weights, or None for uniform.
        ignore_index: label value without supervision.

    Returns:
        Scalar tensor.
    """
    _check_logits_labels(logits, labels)
    num_classes = logits.shape[1]
    _check_label_range(labels, num_classes, ignore_index)
    if class_weights is not None:
        check_shape("class_weights", class_weights, [num_classes])
        check_floating("class_weights", class_weights)
        class_weights = class_weights.to(device=logits.device, dtype=logits.dtype)
    labels = labels.long()
    valid = labels != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    if class_weights is not None and float(class_weights[labels[valid]].sum()) == 0.0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=class_weights, ignore_index=ignore_index)


def _lovasz_gradient(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Discrete gradient of the Jaccard loss along sorted errors; ``fg_sorted [P, K]``."""
    gts = fg_sorted.sum(dim=0, keepdim=True)
    intersection = gts - fg_sorted.cumsum(dim=0)
    union = gts + (1.0 - fg_sorted).cumsum(dim=0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)


def lovasz_softmax(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = 255,
    from_logits: bool = True,
) -> torch.Tensor:
    """Lovasz-softmax loss averaged over the classes present in the supervised labels.

    Voxels of the whole batch are pooled (one Jaccard per class over the batch), as in the
    reference models' training code.

    Args:
        logits: ``[B, C, X, Y, Z]`` scores (or probabilities with ``from_logits=False``).
        labels: ``[B, X, Y, Z]`` integer labels in ``[0, C)`` or ``ignore_index``.
        ignore_index: label value without supervision.
        from_logits: apply a softmax over ``C`` first.

    Returns:
        Scalar tensor; zero (with a graph) when no voxel is supervised.
    """
    _check_logits_labels(logits, labels)
    num_classes = logits.shape[1]
    _check_label_range(labels, num_classes, ignore_index)
    probs = logits.softmax(dim=1) if from_logits else logits
    probs = probs.movedim(1, -1).reshape(-1, num_classes)  # [P, C]
    flat = labels.reshape(-1).long()
    valid = flat != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    probs = probs[valid]
    flat = flat[valid]
    present = torch.bincount(flat, minlength=num_classes) > 0
    classes = torch.nonzero(present).squeeze(1)  # [K]
    fg = (flat[:, None] == classes[None, :]).to(probs.dtype)  # [P, K]
    errors = (fg - probs[:, classes]).abs()
    errors_sorted, order = torch.sort(errors, dim=0, descending=True)
    fg_sorted = torch.gather(fg, 0, order)
    per_class = (errors_sorted * _lovasz_gradient(fg_sorted)).sum(dim=0)  # [K]
    return per_class.mean()


#: How :func:`downsample_labels` picks a coarse voxel's label from its children.
COARSE_LABEL_RULES = ("last", "majority")


def downsample_labels(
    labels: torch.Tensor,
    factor: Sequence[int],
    num_classes: int,
    empty_index: int,
    ignore_index: int = 255,
    rule: Literal["last", "majority"] = "last",
) -> torch.Tensor:
    """Labels of a grid coarser by integer ``factor`` along (X, Y, Z).

    Two rules:

    - ``"last"`` (default, the release's SurroundOcc rule, docs/method.md#loss): the coarse grid starts
      empty and every non-empty fine voxel (ignored ones included) writes its label into
      its coarse voxel, in row-major (x, y, z) order of the fine grid; the value written last
      wins, i.e. the non-empty child with the largest row-major fine index. The release
      writes the rows of SurroundOcc's sparse ``(n, 4)`` label list in file order
      (``coarse[index // ratio] = label``); from a dense volume we take the row-major order,
      which is the order of a sorted list (and the order :func:`gaussrender.data.
      write_surroundocc_sample` writes). An ignored fine voxel therefore writes
      ``ignore_index``, as the release writes the 255 it maps file label 0 to.
    - ``"majority"``: the most frequent occupied (non-empty, non-ignore) label among the
      children (ties: the lowest class index); with no occupied child the coarse voxel is
      empty if any child is empty, and ``ignore_index`` when every child is ignored.

    Both keep occupancy at coarse scales (one occupied child makes the coarse voxel
    occupied), so thin structures do not vanish.

    Args:
        labels: ``[B, X, Y, Z]`` integer labels.
        factor: ``(fx, fy, fz)`` positive ints dividing ``X, Y, Z``.
        num_classes: number of classes ``C``.
        empty_index: class index of free space.
        ignore_index: label value without supervision.
        rule: ``"last"`` or ``"majority"`` (see above).

    Returns:
        ``[B, X/fx, Y/fy, Z/fz]`` int64 labels.
    """
    check_shape("labels", labels, ["B", "X", "Y", "Z"])
    check_integer("labels", labels)
    if rule not in COARSE_LABEL_RULES:
        raise ValueError(f"rule must be one of {COARSE_LABEL_RULES}, got {rule!r}")
    fx, fy, fz = (int(f) for f in factor)
    b, x, y, z = labels.shape
    if min(fx, fy, fz) < 1 or x % fx or y % fy or z % fz:
        raise ValueError(f"factor must be positive ints dividing the label grid {[x, y, z]}, got {list(factor)}")
    if (fx, fy, fz) == (1, 1, 1):
        return labels.long()
    blocks = labels.long().reshape(b, x // fx, fx, y // fy, fy, z // fz, fz)
    # children of a coarse voxel along the last axis, in lexicographic (dx, dy, dz) order,
    # which is their row-major order in the fine grid
    blocks = blocks.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, x // fx, y // fy, z // fz, -1)
    if rule == "last":
        written = blocks != empty_index
        position = torch.arange(blocks.shape[-1], device=blocks.device)
        last = torch.where(written, position, torch.full_like(position, -1)).amax(dim=-1)
        value = torch.gather(blocks, -1, last.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        return torch.where(last >= 0, value, torch.full_like(value, empty_index))
    # one extra bin collects ignored voxels so that the counts below never index out of range
    binned = torch.where(blocks == ignore_index, torch.full_like(blocks, num_classes), blocks)
    counts = F.one_hot(binned, num_classes + 1).sum(dim=-2)  # [B, x, y, z, C + 1]
    occupied = counts[..., :num_classes].clone()
    occupied[..., empty_index] = 0
    best = occupied.argmax(dim=-1)
    has_occupied = occupied.amax(dim=-1) > 0
    has_empty = counts[..., empty_index] > 0
    out = torch.full_like(best, ignore_index)
    out = torch.where(has_empty, torch.full_like(best, empty_index), out)
    return torch.where(has_occupied, best, out)


@dataclass(frozen=True)
class _Scale:
    factor: tuple[int, int, int]
    weight: float


class Occupancy3DLoss(torch.nn.Module):
    """``L_3D``: ``ce_weight × CE + lovasz_weight × Lovasz`` [+ scene-class affinity], summed over scales.

    The full-resolution logits get weight 1 and the ``i``-th coarser auxiliary output (finest
    first) gets ``scale_decay ** (i + 1)``; their labels come from :func:`downsample_labels`
    with the rule ``coarse_labels``.

    Args:
        num_classes: number of classes ``C``.
        empty_index: class index of free space (for label downsampling).
        ignore_index: label value without supervision.
        ce_weight: weight of the cross-entropy (10 in the reference recipes).
        lovasz_weight: weight of the Lovasz-softmax term (1 in the reference recipes).
        scale_decay: weight factor per coarser scale (0.5).
        class_weights: ``[C]`` cross-entropy class weights or None.
        coarse_labels: label rule of the coarser scales, ``"last"`` (the release's
            SurroundOcc, default) or ``"majority"`` (see :func:`downsample_labels`).
        sem_scal_weight: weight of MonoScene's semantic scene-class affinity loss
            (:func:`gaussrender.losses.scal.sem_scal_loss`; 1 in the Symphonies release), 0: off.
        geo_scal_weight: weight of its geometric counterpart
            (:func:`gaussrender.losses.scal.geo_scal_loss`), 0: off.
        frustum_weight: weight of MonoScene's frustum-proportion loss
            (:func:`gaussrender.losses.scal.frustum_proportion_loss`), 0: off; it needs the
            call's ``frustum`` ids and is applied to the outputs at the full grid only.
        num_frustums: number of frustum ids (``frustum_size ** 2``).

    Call:
        ``loss(logits [B, C, X, Y, Z], labels [B, X, Y, Z], aux_logits=[[B, C, x, y, z], ...])``
        returns ``{"loss_ce": ..., "loss_lovasz": ...}`` plus ``"loss_sem_scal"`` /
        ``"loss_geo_scal"`` / ``"loss_frustum"`` when their weight is > 0 (each already
        weighted and summed over scales); the 3D loss is their sum. The frustum term needs
        ``frustum=[B, X, Y, Z]`` int ids (:func:`gaussrender.losses.scal.frustum_ids`).
    """

    def __init__(
        self,
        num_classes: int,
        empty_index: int,
        ignore_index: int = 255,
        ce_weight: float = 10.0,
        lovasz_weight: float = 1.0,
        scale_decay: float = 0.5,
        class_weights: torch.Tensor | None = None,
        coarse_labels: Literal["last", "majority"] = "last",
        sem_scal_weight: float = 0.0,
        geo_scal_weight: float = 0.0,
        frustum_weight: float = 0.0,
        num_frustums: int = 64,
    ) -> None:
        super().__init__()
        if coarse_labels not in COARSE_LABEL_RULES:
            raise ValueError(f"coarse_labels must be one of {COARSE_LABEL_RULES}, got {coarse_labels!r}")
        self.coarse_labels = coarse_labels
        if not 0 <= empty_index < num_classes:
            raise ValueError(f"empty_index must be in [0, {num_classes}), got {empty_index}")
        for name, value in (
            ("ce_weight", ce_weight),
            ("lovasz_weight", lovasz_weight),
            ("scale_decay", scale_decay),
            ("sem_scal_weight", sem_scal_weight),
            ("geo_scal_weight", geo_scal_weight),
            ("frustum_weight", frustum_weight),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.num_classes = num_classes
        self.empty_index = empty_index
        self.ignore_index = ignore_index
        self.ce_weight = float(ce_weight)
        self.lovasz_weight = float(lovasz_weight)
        self.scale_decay = float(scale_decay)
        self.sem_scal_weight = float(sem_scal_weight)
        self.geo_scal_weight = float(geo_scal_weight)
        self.frustum_weight = float(frustum_weight)
        if int(num_frustums) < 1:
            raise ValueError(f"num_frustums must be a positive int, got {num_frustums!r}")
        self.num_frustums = int(num_frustums)
        if class_weights is not None:
            check_shape("class_weights", class_weights, [num_classes])
            check_floating("class_weights", class_weights)
            check_finite("class_weights", class_weights)
            if (class_weights < 0).any():
                raise ValueError("class_weights must be >= 0")
            self.register_buffer("class_weights", class_weights.float().clone(), persistent=False)
        else:
            self.class_weights = None

    def _scales(self, full: torch.Size, aux: Sequence[torch.Tensor]) -> list[_Scale]:
        scales = []
        prev = tuple(full)
        for i, a in enumerate(aux):
            if a.dim() != 5 or a.shape[1] != self.num_classes:
                raise ValueError(
                    f"aux_logits[{i}] must have shape [B, {self.num_classes}, x, y, z], got {list(a.shape)}"
                )
            size = tuple(a.shape[2:])
            if any(f % s for f, s in zip(full, size)) or any(s > p for s, p in zip(size, prev)):
                raise ValueError(
                    f"aux_logits[{i}] grid {list(size)} must divide the full grid {list(full)} "
                    f"and be no finer than the previous scale {list(prev)} (order: finest first)"
                )
            # full and size are (x, y, z): the shapes were checked above
            factor = (full[0] // size[0], full[1] // size[1], full[2] // size[2])
            scales.append(_Scale(factor, self.scale_decay ** (i + 1)))
            prev = size
        return scales

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        aux_logits: Sequence[torch.Tensor] = (),
        frustum: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        _check_logits_labels(logits, labels)
        if self.frustum_weight > 0 and frustum is None:
            raise ValueError("frustum_weight > 0 needs frustum=[B, X, Y, Z] ids (gaussrender.losses.scal.frustum_ids)")
        check_shape("logits", logits, ["B", self.num_classes, "X", "Y", "Z"])
        outputs = [(logits, labels.long(), 1.0)]
        for scale, a in zip(self._scales(logits.shape[2:], aux_logits), aux_logits):
            if a.shape[0] != logits.shape[0]:
                raise ValueError(f"aux_logits batch {a.shape[0]} differs from logits batch {logits.shape[0]}")
            coarse = downsample_labels(
                labels, scale.factor, self.num_classes, self.empty_index, self.ignore_index, self.coarse_labels
            )
            outputs.append((a, coarse, scale.weight))
        ce = logits.new_zeros(())
        lov = logits.new_zeros(())
        sem = logits.new_zeros(())
        geo = logits.new_zeros(())
        fru = logits.new_zeros(())
        for out, lab, w in outputs:
            out = out.float()  # the 3D loss runs in float32 even under autocast
            if self.ce_weight:
                ce = ce + w * cross_entropy_3d(out, lab, self.class_weights, self.ignore_index)
            if self.lovasz_weight:
                lov = lov + w * lovasz_softmax(out, lab, self.ignore_index)
            if self.sem_scal_weight:
                sem = sem + w * sem_scal_loss(out, lab, self.ignore_index)
            if self.geo_scal_weight:
                geo = geo + w * geo_scal_loss(out, lab, self.empty_index, self.ignore_index)
            # frustum ids exist at the full grid (Symphonies' auxiliary outputs all are)
            if self.frustum_weight and frustum is not None and out.shape[2:] == logits.shape[2:]:
                fru = fru + w * frustum_proportion_loss(out, lab, frustum, self.num_frustums, self.ignore_index)
        terms = {"loss_ce": self.ce_weight * ce, "loss_lovasz": self.lovasz_weight * lov}
        if self.sem_scal_weight > 0:
            terms["loss_sem_scal"] = self.sem_scal_weight * sem
        if self.geo_scal_weight > 0:
            terms["loss_geo_scal"] = self.geo_scal_weight * geo
        if self.frustum_weight > 0:
            terms["loss_frustum"] = self.frustum_weight * fru
        return terms
