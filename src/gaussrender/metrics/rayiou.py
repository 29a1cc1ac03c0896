"""RayIoU (SparseOcc): semantic occupancy scored along LiDAR-like query rays.

Rays in the pattern of the nuScenes LiDAR are cast through the predicted and the ground-truth
grids from a few origins; each ray's first occupied voxel gives a class and a distance in
each grid, and a ray counts as a true positive for a class when both classes equal it and the
distances differ by less than a threshold. Unlike voxel mIoU it does not reward thick surfaces
(only the first hit counts) and it scores depth.

Conventions adopted from SparseOcc's ``ray_metrics.py``, ``ego_pose_dataset.py`` and its
``dvr`` extension (see :func:`~gaussrender.geometry.raycast.first_hits` for the traversal):

* ray pattern: pitch ``-(pi/2 - atan(k + 1))`` for ``k = 0..9``, then continued with the last
  step until the pitch reaches 0.21 rad (the last one added is the first >= 0.21), 39 pitches
  in all; azimuth every 1 degree from 0 to 359; 14,040 unit directions (a comment in the
  original says 15,840, its code gives 14,040), rounded to float32 as in the original, in the
  grid frame (x forward, y left, z up);
* origins: the LiDAR positions of up to 8 frames of the scene (:func:`ray_origins`), every
  ray is cast from every origin;
* a voxel is occupied when its label is not the empty class; a ray starts in the voxel of its
  origin, no maximum range other than the grid; the distance is where the ray leaves the
  first occupied voxel, in metres;
* rays whose ground truth hits nothing are dropped; a prediction that hits nothing gives the
  empty class, so it counts as a miss for the ground-truth class and towards no class;
* per class ``IoU = TP / (GT + Pred - TP)`` from counts pooled over the dataset;
  ``rayiou@d`` is the NaN-mean over the semantic classes (a class with no ray in either
  grid is skipped), ``rayiou`` the mean over all thresholds and classes.

Differences, all documented choices: the original's Occ3D ground truth holds no ignore label;
here a ground-truth voxel labelled ``ignore_index`` stops the ray and the ray is dropped
(nothing is known there). The original rounds origins to float32; here everything is float64,
which can change the outcome of a ray that grazes a voxel edge exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

from .._checks import check_finite, check_floating, check_shape
from ..geometry.grid import VoxelGrid, get_grid
from ..geometry.raycast import first_hits
from ._iou import class_iou, mean_iou
from .occupancy import check_label_volumes

__all__ = ["RayIoU", "lidar_ray_directions"]


def lidar_ray_directions() -> torch.Tensor:
    """SparseOcc's query rays: unit directions ``[14040, 3]`` (float32), pitch-major order.

    Pitches ``-(pi/2 - atan(k + 1))`` for ``k = 0..9`` (from -45 deg up to about -5.7 deg),
    continued with the last spacing until above 0.21 rad; azimuths 0..359 degrees.
    """
    pitches = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    while pitches[-1] < 0.21:
        pitches.append(pitches[-1] + (pitches[-1] - pitches[-2]))
    pitch = torch.tensor(pitches, dtype=torch.float64)[:, None]
    azimuth = torch.deg2rad(torch.arange(360, dtype=torch.float64))[None, :]
    dirs = torch.stack(
        [
            torch.cos(pitch) * torch.cos(azimuth),
            torch.cos(pitch) * torch.sin(azimuth),
            torch.sin(pitch).expand(-1, azimuth.shape[1]),
        ],
        dim=-1,
    )
    return dirs.reshape(-1, 3).to(torch.float32)


class RayIoU(Metric):
    """RayIoU of semantic occupancy (SparseOcc's definition), pooled over a dataset.

    ``update`` casts the rays of a batch and adds int64 counts per class: rays whose ground
    truth hits the class (``gt_count``), rays whose prediction hits it (``pred_count``), and per
    threshold the rays where both hit it within the distance threshold (``tp_count``). All
    states are summed over processes by torchmetrics' sync in ``compute``.

    Args:
        grid: the :class:`~gaussrender.VoxelGrid` of the labels (or a preset name); its
            ``empty_index`` is free space, its ``semantic_classes`` are averaged.
        thresholds: distance thresholds in metres; a true positive needs
            ``|d_pred - d_gt| < threshold``.
        directions: optional ``[R, 3]`` ray directions (grid frame, any length); default
            :func:`lidar_ray_directions`.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch, gaussrender as gr
        >>> from gaussrender.metrics import RayIoU
        >>> metric = RayIoU(gr.OCC3D_NUSCENES)
        >>> labels = torch.full((1, 200, 200, 16), 17)
        >>> labels[0, :, :, 0] = 11                      # flat driveable surface
        >>> metric.update(labels, labels, [torch.tensor([[1.0, 0.0, 1.8]])])
        >>> float(metric.compute()["rayiou"])
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    tp_count: torch.Tensor
    gt_count: torch.Tensor
    pred_count: torch.Tensor
    directions: torch.Tensor

    def __init__(
        self,
        grid: VoxelGrid | str,
        *,
        thresholds: Sequence[float] = (1.0, 2.0, 4.0),
        directions: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.grid = get_grid(grid)
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds or any(not (math.isfinite(t) and t > 0) for t in thresholds):
            raise ValueError(f"thresholds must be a non-empty list of positive metres, got {thresholds}")
        self.thresholds = thresholds
        if directions is None:
            directions = lidar_ray_directions()
        else:
            check_floating("directions", directions)
            check_shape("directions", directions, ["R", 3])
            check_finite("directions", directions)
            if bool((torch.linalg.vector_norm(directions, dim=1) == 0).any()):
                raise ValueError("directions must be non-zero vectors")
        self.register_buffer("directions", directions.detach().to(torch.float64), persistent=False)
        c = self.grid.num_classes
        self.add_state("tp_count", torch.zeros(len(thresholds), c, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("gt_count", torch.zeros(c, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("pred_count", torch.zeros(c, dtype=torch.int64), dist_reduce_fx="sum")

    def _keys(self) -> list[str]:
        return [f"rayiou@{t:g}" for t in self.thresholds]

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        origins: Sequence[torch.Tensor] | torch.Tensor,
    ) -> None:
        """Cast the rays of a batch and add their counts.

        Args:
            pred: ``[B, X, Y, Z]`` integer predicted labels in ``[0, C)``.
            target: ``[B, X, Y, Z]`` integer ground-truth labels in ``[0, C)`` or ``ignore_index``.
            origins: per sample a ``[T, 3]`` float tensor of ray origins in metres, grid frame
                (e.g. from :func:`ray_origins`); a list of ``B`` tensors, or one ``[B, T, 3]``
                tensor. ``T`` may be 0 (the sample then adds nothing).
        """
        grid = self.grid
        batch = check_label_volumes(grid, pred, target)
        if isinstance(origins, torch.Tensor):
            check_shape("origins", origins, [batch, "T", 3])
            origins = list(origins.unbind(0))
        elif not isinstance(origins, (list, tuple)) or len(origins) != batch:
            got = (
                f"{type(origins).__name__} of length {len(origins)}"
                if isinstance(origins, (list, tuple))
                else type(origins).__name__
            )
            raise ValueError(f"origins must be a list of {batch} tensors [T, 3] (one per sample), got {got}")
        for b, o in enumerate(origins):
            check_floating(f"origins[{b}]", o)
            check_shape(f"origins[{b}]", o, ["T", 3])
            check_finite(f"origins[{b}]", o)
        for b in range(batch):
            self._update_sample(pred[b], target[b], origins[b])

    def _update_sample(self, pred: torch.Tensor, target: torch.Tensor, origins: torch.Tensor) -> None:
        grid = self.grid
        device = self.tp_count.device
        c = grid.num_classes
        if origins.shape[0] == 0:
            return
        pred = pred.to(device).long()
        target = target.to(device).long()
        lo = torch.tensor(grid.range_min, dtype=torch.float64, device=device)
        o_vox = (origins.to(device=device, dtype=torch.float64) - lo) / grid.voxel_size
        dirs = self.directions.to(device)
        n_dirs = dirs.shape[0]
        ray_o = o_vox.repeat_interleave(n_dirs, dim=0)
        ray_d = dirs.repeat(o_vox.shape[0], 1)
        occupied = torch.stack([pred != grid.empty_index, target != grid.empty_index])
        hits = first_hits(occupied, ray_o, ray_d)

        gt_hit = hits.hit[1]
        gv = hits.voxel[1][gt_hit]
        gt_label = target[gv[:, 0], gv[:, 1], gv[:, 2]]
        known = gt_label != grid.ignore_index
        gt_label = gt_label[known]
        gt_dist = hits.distance[1][gt_hit][known] * grid.voxel_size

        pred_hit = hits.hit[0][gt_hit][known]
        pv = hits.voxel[0][gt_hit][known].clamp_min(0)
        pred_label = torch.where(pred_hit, pred[pv[:, 0], pv[:, 1], pv[:, 2]], grid.empty_index)
        pred_dist = hits.distance[0][gt_hit][known] * grid.voxel_size

        self.gt_count += torch.bincount(gt_label, minlength=c)
        self.pred_count += torch.bincount(pred_label, minlength=c)
        same = pred_label == gt_label
        error = (pred_dist - gt_dist).abs()
        for k, threshold in enumerate(self.thresholds):
            # NaN distances (prediction missed) compare False, and their class differs anyway.
            self.tp_count[k] += torch.bincount(gt_label[same & (error < threshold)], minlength=c)

    def compute(self) -> dict[str, torch.Tensor]:
        """RayIoU from the pooled counts.

        Returns:
            dict of float64 tensors: ``rayiou`` (mean over thresholds and semantic classes),
            ``rayiou@<d>`` per threshold (e.g. ``rayiou@1``, ``rayiou@2``, ``rayiou@4``), and
            ``per_class_rayiou`` ``[len(thresholds), C]`` (NaN for the empty class and for
            classes with no ray in either grid).
        """
        per_class = class_iou(self.tp_count, self.gt_count[None], self.pred_count[None], absent="nan")
        per_class[:, self.grid.empty_index] = float("nan")
        classes = self.grid.semantic_classes
        per_threshold = mean_iou(per_class, classes, absent="nan")
        idx = torch.as_tensor(classes, device=per_class.device)
        out = {"rayiou": per_class[:, idx].nanmean()}
        out.update(dict(zip(self._keys(), per_threshold.unbind(0))))
        out["per_class_rayiou"] = per_class
        return out
