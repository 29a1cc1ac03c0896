"""Voxel IoU and mIoU of semantic occupancy, pooled over a dataset through a confusion matrix.

The metric keeps one int64 ``[C, C]`` confusion matrix (rows: ground truth, columns:
prediction) summed over every voxel of every sample of every process, and turns it into
ratios only in :meth:`OccupancyMetrics.compute`. It never averages per sample.

The benchmarks disagree on how to average per-class IoU; each convention is an explicit
:class:`IoUConvention`, chosen per preset grid by :class:`OccupancyMetrics` (``convention=``
overrides it):

* Occ3D-nuScenes (the Occ3D toolkit): classes 0-16; a class absent from both prediction and
  ground truth (inside ``mask_camera`` when evaluating with it) has IoU NaN and is skipped by
  the mean (``absent="nan"``).
* SurroundOcc-nuScenes (SurroundOcc's ``evaluate``): a plain mean over its 16 semantic
  classes 1-16, NaN if a class never occurs in the whole evaluation (``absent="propagate"``).
* SSCBench-KITTI-360 (Symphonies' ``SSCMetrics``): ``TP / (TP + FP + FN + 1e-6)`` per class,
  so an absent class scores 0, plain mean over classes 1-18 (``absent="zero", eps=1e-6``).
* Occ3D-Waymo (the Occ3D/CVT-Occ ``Metric_mIoU``): the Occ3D-nuScenes rule over classes 0-14
  (NaN-mean of ``np.nanmean(mIoU[:-1])``), inside ``infov`` and the camera mask.
* OpenOcc v2: its official score is RayIoU (:class:`~gaussrender.metrics.RayIoU`, NaN-mean
  over classes 0-15); its voxel mIoU here follows the Occ3D rule (the same toolkit family).
* nuScenes-Occupancy (OpenOccupancy's ``cm_to_ious`` / ``format_SSC_results``): plain mean
  over classes 1-16, NaN as soon as one is absent (``absent="propagate"``).
* SemanticKITTI SSC (semantic-kitti-api ``evaluate_completion.py``, ``iouEval``):
  ``TP / (TP + FP + FN + 1e-15)``, plain mean over classes 1-19 (``absent="zero", eps=1e-15``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchmetrics import Metric

from .._checks import check_integer, check_shape, check_tensor, checks_enabled
from ..geometry.grid import VoxelGrid, get_grid
from ._iou import Absent, check_absent, class_iou, mean_iou

__all__ = [
    "IoUConvention",
    "OCC3D_CONVENTION",
    "SURROUNDOCC_CONVENTION",
    "SSCBENCH_CONVENTION",
    "OPENOCCUPANCY_CONVENTION",
    "SEMANTICKITTI_CONVENTION",
    "CONVENTIONS",
    "OccupancyMetrics",
]


@dataclass(frozen=True)
class IoUConvention:
    """How a benchmark averages per-class IoU.

    Attributes:
        absent: score of a class absent from both prediction and ground truth over the whole
            evaluation: ``"nan"`` (NaN, skipped by the mean), ``"propagate"`` (NaN, and the
            mean becomes NaN), ``"zero"`` (0, included in the mean).
        eps: added to every per-class denominator (not to the geometry IoU's).
    """

    absent: Absent = "nan"
    eps: float = 0.0

    def __post_init__(self) -> None:
        check_absent(self.absent)
        if not self.eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")


OCC3D_CONVENTION = IoUConvention(absent="nan")
SURROUNDOCC_CONVENTION = IoUConvention(absent="propagate")
SSCBENCH_CONVENTION = IoUConvention(absent="zero", eps=1e-6)
OPENOCCUPANCY_CONVENTION = IoUConvention(absent="propagate")
SEMANTICKITTI_CONVENTION = IoUConvention(absent="zero", eps=1e-15)

#: Convention of each preset grid, keyed by ``VoxelGrid.name``.
CONVENTIONS: dict[str, IoUConvention] = {
    "occ3d": OCC3D_CONVENTION,
    "surroundocc": SURROUNDOCC_CONVENTION,
    "kitti360": SSCBENCH_CONVENTION,
    "occ3d_waymo": OCC3D_CONVENTION,
    "openocc": OCC3D_CONVENTION,
    "nuscenes_occupancy": OPENOCCUPANCY_CONVENTION,
    "semantickitti": SEMANTICKITTI_CONVENTION,
}


def check_labels(name: str, labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    """Raise if ``labels`` holds a value outside ``[0, num_classes)`` (other than ``ignore_index``)."""
    if not checks_enabled() or labels.numel() == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:8].tolist()
        allowed = f"[0, {num_classes})" + ("" if ignore_index is None else f" or {ignore_index}")
        raise ValueError(f"{name} must hold labels in {allowed}, found {values}")


def check_label_volumes(grid: VoxelGrid, pred: torch.Tensor, target: torch.Tensor) -> int:
    """Check a metric's ``pred`` and ``target`` ``[B, X, Y, Z]`` integer labels on ``grid``
    (``pred`` in ``[0, C)``, ``target`` also ``ignore_index``); return ``B``."""
    check_integer("pred", pred)
    check_integer("target", target)
    batch = check_shape("target", target, ["B", *grid.shape])["B"]
    check_shape("pred", pred, [batch, *grid.shape])
    check_labels("pred", pred, grid.num_classes, None)
    check_labels("target", target, grid.num_classes, grid.ignore_index)
    return batch


class OccupancyMetrics(Metric):
    """Geometry IoU, semantic mIoU and per-class IoU of voxel labels, pooled over the dataset.

    ``update`` adds the voxels of a batch to a ``[C, C]`` int64 confusion matrix; ``compute``
    derives the ratios; ``reset`` clears it. Under ``torch.distributed`` the matrix is summed
    over processes by torchmetrics' sync in ``compute`` (``dist_reduce_fx="sum"``). A
    ``DistributedSampler`` that pads the last batch with repeated samples counts those twice:
    evaluate with a sampler that does not pad.

    Voxels whose ground truth is ``ignore_index`` never count, nor do voxels outside ``mask``.

    Args:
        grid: a :class:`~gaussrender.VoxelGrid` or a preset name; gives the classes: ``C =
            grid.num_classes`` (free space included), ``empty_index`` (free space: excluded
            from ``miou``; ``iou`` is occupied, any other label, versus free),
            ``ignore_index`` (ground truth without supervision, never counted),
            ``class_names`` and ``semantic_classes`` (averaged by ``miou``). Only its classes
            are used: ``update`` takes volumes of any ``[X, Y, Z]``.
        convention: the averaging rule (:class:`IoUConvention`); by default the one of the
            preset named ``grid.name`` in :data:`CONVENTIONS`. A grid that is not a preset
            must pass it.
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Raises:
        ValueError: if no convention is given and ``grid.name`` has none on record, or the
            grid has fewer than 2 classes or ``semantic_classes`` outside ``[0, C)``.

    Example:
        >>> import torch, gaussrender as gr
        >>> from gaussrender.metrics import OccupancyMetrics
        >>> m = OccupancyMetrics(gr.OCC3D_NUSCENES)  # or OccupancyMetrics("occ3d")
        >>> labels = torch.full((1, 200, 200, 16), 17)
        >>> labels[0, :, :, 0] = 11
        >>> m.update(labels, labels)
        >>> out = m.compute()
        >>> float(out["iou"]), float(out["miou"])
        (1.0, 1.0)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: torch.Tensor

    def __init__(self, grid: VoxelGrid | str, *, convention: IoUConvention | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        grid = get_grid(grid)
        if convention is None:
            if grid.name not in CONVENTIONS:
                raise ValueError(
                    f"grid {grid.name!r} has no IoU convention on record (known: "
                    f"{sorted(CONVENTIONS)}); pass convention=IoUConvention(...) explicitly"
                )
            convention = CONVENTIONS[grid.name]
        elif not isinstance(convention, IoUConvention):
            raise TypeError(f"convention must be an IoUConvention, got {type(convention).__name__}")
        num_classes = grid.num_classes
        if num_classes < 2:
            raise ValueError(f"grid {grid.name!r} must have num_classes >= 2, got {num_classes}")
        semantic_classes = [int(c) for c in grid.semantic_classes]
        if not semantic_classes or any(not 0 <= c < num_classes for c in semantic_classes):
            raise ValueError(
                f"semantic_classes must be a non-empty list of classes in [0, {num_classes}), got {semantic_classes}"
            )
        self.grid = grid
        self.convention = convention
        self.num_classes = num_classes
        self.empty_index = grid.empty_index
        self.ignore_index = grid.ignore_index
        self.class_names = grid.class_names
        self.semantic_classes = tuple(semantic_classes)
        self.add_state(
            "confmat",
            default=torch.zeros(num_classes, num_classes, dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            pred: ``[B, X, Y, Z]`` integer predicted labels in ``[0, C)``.
            target: ``[B, X, Y, Z]`` integer ground-truth labels in ``[0, C)`` or ``ignore_index``.
            mask: optional ``[B, X, Y, Z]`` bool; only voxels where it is True count
                (e.g. Occ3D's ``mask_camera``).
        """
        check_integer("pred", pred)
        check_integer("target", target)
        sizes = check_shape("target", target, ["B", "X", "Y", "Z"])
        shape = [sizes[k] for k in ("B", "X", "Y", "Z")]
        check_shape("pred", pred, shape)
        check_labels("pred", pred, self.num_classes, None)
        check_labels("target", target, self.num_classes, self.ignore_index)
        valid = target != self.ignore_index
        if mask is not None:
            check_tensor("mask", mask)
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must be a bool tensor, got dtype {mask.dtype}")
            check_shape("mask", mask, shape)
            valid = valid & mask.to(valid.device)
        device = self.confmat.device
        t = target.to(device)[valid.to(device)].long()
        p = pred.to(device)[valid.to(device)].long()
        counts = torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2)
        self.confmat += counts.view(self.num_classes, self.num_classes)

    def compute(self) -> dict[str, torch.Tensor]:
        """Ratios from the pooled confusion matrix.

        Returns:
            dict with float64 tensors: ``iou`` (scalar, occupied vs free), ``miou`` (scalar,
            mean over ``semantic_classes`` under the convention), ``per_class_iou`` (``[C]``,
            every class including free space).
        """
        cm = self.confmat
        tp = cm.diagonal()
        per_class = class_iou(tp, cm.sum(dim=1), cm.sum(dim=0), absent=self.convention.absent, eps=self.convention.eps)
        miou = mean_iou(per_class, self.semantic_classes, absent=self.convention.absent)
        occupied = torch.ones(self.num_classes, dtype=torch.bool, device=cm.device)
        occupied[self.empty_index] = False
        geo_tp = cm[occupied][:, occupied].sum()
        geo_gt = cm[occupied].sum()
        geo_pred = cm[:, occupied].sum()
        iou = class_iou(geo_tp, geo_gt, geo_pred, absent=self.convention.absent)
        return {"iou": iou, "miou": miou, "per_class_iou": per_class}
