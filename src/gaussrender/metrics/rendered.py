"""Rendered-view metrics: prediction and ground truth splatted into images, then scored in 2D.

The GaussRender release also scores an occupancy prediction in 2D (where its gains are
clearest): both the predicted and the ground-truth voxels become Gaussians, are rendered
from every sensor camera and from a bird's-eye view, and the class images and depth images
are compared pixel by pixel. :class:`RenderedViewMetrics` does this as a
:class:`torchmetrics.Metric` whose states are pooled counts and sums.

Per sample:

* ground truth: every voxel that is neither empty nor ignore, opacity 1, one-hot feature
  (:func:`gaussrender.voxels_to_gaussians`, as in the loss);
* prediction, two rules chosen by the dtype of ``pred``:

  - **float logits** ``[B, C, X, Y, Z]`` (or probabilities, ``probabilities=True``): the
    release's eval (its ``Voxel2Gaussians`` with ``overwrite_opacity=True``,
    ``transfer_colors=True``, ``mask_elements=False``): every voxel's feature is
    ``softmax(logits)`` (the *soft* class distribution), its opacity 1 where the voxel's
    argmax is not the empty class and 0 where it is (such a voxel never reaches a pixel:
    alpha 0 < 1/255, so it is left out, exactly);
  - **integer labels** ``[B, X, Y, Z]`` (saved label volumes): every voxel whose label is
    not empty, opacity 1, one-hot of the label;

  in both, voxels whose ground truth is ignore (255) are dropped (the release's
  ``valid_gauss``);
* views: every given camera, rendered with the release's culling (``cull="center"``: only
  Gaussians whose centre lies in front of the camera and projects strictly inside the
  image), plus the bird's-eye view of :func:`gaussrender.geometry.rigs.bev_camera`
  (perspective, 400x400) which keeps every Gaussian (``cull="footprint"``);
* background: the empty class one-hot, added with the remaining transmittance ``T``, so a
  pixel that sees nothing reads "empty"; pixel class = argmax of the rendered (blended)
  features, ``sum_i alpha_i T_i f_i + T e_empty`` (ties go to the lower class index, as
  ``torch.argmax``);
* depth: the renderer's depth images, alpha-weighted and **not normalised** (a pixel half
  covered by a Gaussian at 10 m reads 5 m), compared as they are, as the release does. The
  two prediction rules give the same depth (same Gaussians, same opacities).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torchmetrics import Metric

from .._checks import check_finite, check_floating, check_integer, check_shape, check_tensor
from ..geometry.cameras import Cameras, scale_intrinsics
from ..geometry.grid import VoxelGrid, get_grid
from ..geometry.rigs import bev_camera
from ..render import render
from ..render.dispatch import BACKENDS, Backend
from ._iou import class_iou, mean_iou
from .occupancy import check_label_volumes, check_labels

__all__ = ["RenderedViewMetrics", "RENDER_CONVENTIONS", "PROBABILITY_TOLERANCE"]

RenderConvention = Literal["clean", "release"]
RENDER_CONVENTIONS: tuple[str, ...] = ("clean", "release")

#: Release's BEV image side, pixels.
BEV_SIZE = 400

#: How far each voxel's probabilities may sum from 1 (``probabilities=True``): float16 storage
#: rounds each value to a relative 2**-11, so a sum is off by at most ~5e-4.
PROBABILITY_TOLERANCE = 2e-3

#: One sample's Gaussians for a metric: ``[N, 3]`` int64 voxel indices and ``[N, C]`` float32
#: features (opacity 1, the grid's Gaussian scale).
_VoxelSet = tuple[torch.Tensor, torch.Tensor]


def _label_set(grid: VoxelGrid, labels: torch.Tensor) -> _VoxelSet:
    """Voxels that are neither empty nor ignore, with one-hot features (the ground truth's rule)."""
    keep = (labels != grid.empty_index) & (labels != grid.ignore_index)
    index = keep.nonzero()
    features = torch.nn.functional.one_hot(labels[keep], grid.num_classes).float()
    return index, features


def _release_iou(tp: torch.Tensor, gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """The release's per-class IoU: 1 for a class with no ground-truth pixel (whatever was predicted)."""
    tp, gt, pred = tp.double(), gt.double(), pred.double()
    iou = tp / (gt + pred - tp).clamp_min(1.0)
    return torch.where(gt > 0, iou, torch.ones_like(iou))


class RenderedViewMetrics(Metric):
    """Image and bird's-eye-view IoU/mIoU and depth L1 of rendered occupancy, pooled over a dataset.

    ``update`` renders prediction and ground truth of each sample (see the module docstring
    for what is rendered and how: float logits get the release's eval rule, soft features
    with opacity from the argmax; integer labels are rendered one-hot) and adds, per view
    kind (cameras, BEV), an int64 ``[C, C]`` pixel confusion matrix (rows: ground truth,
    columns: prediction) and the sum and count of absolute depth errors over pixels whose
    ground-truth depth exceeds ``depth_min``. All states are summed over processes by
    torchmetrics' sync in ``compute`` (``dist_reduce_fx="sum"``), so the result is the same
    however the samples are split.

    Conventions (``convention``), stated plainly:

    * ``"clean"`` (default): a class absent from both prediction and ground truth over the
      whole evaluation has IoU NaN and is skipped by the mean (NaN-mean, as the Occ3D
      toolkit); depth L1 = sum / count (NaN without any valid pixel).
    * ``"release"``: the GaussRender release's quirks: a class with **no ground-truth pixel**
      scores IoU 1, even if it was predicted (its ``MeanIoU``; ``image_iou`` too, with the
      non-empty pixels); depth L1 = sum / (count + 1) (its ``L1_Metric``).

    In both, ``*_miou`` averages every class but the empty one, ``*_iou`` is non-empty vs
    empty pixels.

    :attr:`prediction_rule` says which rule scored the samples (states ``soft_samples`` and
    ``label_samples`` count them).

    Deviation for speed: ``image_scale`` < 1 renders every view (cameras and BEV) at that
    fraction of its size, with the intrinsics scaled to match
    (:func:`~gaussrender.geometry.cameras.scale_intrinsics`); the release renders at full
    size (``image_scale=1``: 1600x900 nuScenes cameras, 400x400 BEV). Coarser images change
    the numbers (fewer, larger pixels; Gaussians keep their metric size).

    Args:
        grid: the labels' :class:`~gaussrender.VoxelGrid` (or a preset name).
        convention: ``"clean"`` or ``"release"``, see above.
        image_scale: factor applied to every view's size and intrinsics, in (0, 1]; sizes
            are rounded to whole pixels (at least 1).
        bev: also render the bird's-eye view (``bev_*`` results are NaN without it).
        bev_size: BEV side in pixels before ``image_scale`` (the release: 400).
        depth_min: ground-truth depth, metres, above which a pixel counts in the depth L1
            (the release: 0.1).
        backend: renderer backend, see :func:`gaussrender.render`.
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Example:
        >>> import torch, gaussrender as gr
        >>> from gaussrender.metrics import RenderedViewMetrics
        >>> grid = gr.VoxelGrid(name="toy", range_min=(-4.0, -4.0, -1.0), range_max=(4.0, 4.0, 1.0),
        ...                     voxel_size=0.5, shape=(16, 16, 4), class_names=("free", "wall"), empty_index=0)
        >>> labels = torch.zeros(1, 16, 16, 4, dtype=torch.long)
        >>> labels[0, 12, :, :] = 1                                   # a wall 2 m ahead
        >>> k = torch.tensor([[[[8.0, 0, 8], [0, 8, 6], [0, 0, 1]]]])  # one 16x12 camera
        >>> pose = gr.look_at(torch.tensor([[0.0, 0, 0]]), torch.tensor([[1.0, 0, 0]]))[None]
        >>> m = RenderedViewMetrics(grid, bev_size=32)
        >>> m.update(labels, labels, intrinsics=k, cam_from_grid=pose, image_size=(12, 16))
        >>> out = m.compute()
        >>> float(out["image_miou"]), float(out["depth_l1"]), float(out["bev_iou"])
        (1.0, 0.0, 1.0)
    """

    is_differentiable = False
    higher_is_better = None  # IoU: higher; depth L1: lower
    full_state_update = False

    image_confmat: torch.Tensor
    bev_confmat: torch.Tensor
    image_depth_sum: torch.Tensor
    image_depth_count: torch.Tensor
    bev_depth_sum: torch.Tensor
    bev_depth_count: torch.Tensor
    soft_samples: torch.Tensor
    label_samples: torch.Tensor

    def __init__(
        self,
        grid: VoxelGrid | str,
        *,
        convention: RenderConvention = "clean",
        image_scale: float = 1.0,
        bev: bool = True,
        bev_size: int = BEV_SIZE,
        depth_min: float = 0.1,
        backend: Backend = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.grid = get_grid(grid)
        if convention not in RENDER_CONVENTIONS:
            raise ValueError(f"convention must be one of {RENDER_CONVENTIONS}, got {convention!r}")
        if (
            isinstance(image_scale, bool)
            or not isinstance(image_scale, (int, float))
            or not (math.isfinite(image_scale) and 0 < image_scale <= 1)
        ):
            raise ValueError(f"image_scale must be a float in (0, 1], got {image_scale!r}")
        if isinstance(bev_size, bool) or not isinstance(bev_size, int) or bev_size <= 0:
            raise ValueError(f"bev_size must be a positive int (pixels), got {bev_size!r}")
        if not (isinstance(depth_min, (int, float)) and math.isfinite(depth_min) and depth_min >= 0):
            raise ValueError(f"depth_min must be a float >= 0 metres, got {depth_min!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.convention = convention
        self.image_scale = float(image_scale)
        self.bev = bool(bev)
        self.bev_size = bev_size
        self.depth_min = float(depth_min)
        self.backend = backend
        c = self.grid.num_classes
        for kind in ("image", "bev"):
            self.add_state(f"{kind}_confmat", torch.zeros(c, c, dtype=torch.int64), dist_reduce_fx="sum")
            self.add_state(f"{kind}_depth_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{kind}_depth_count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        # how many samples each prediction rule scored (reported by gaussrender eval)
        self.add_state("soft_samples", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("label_samples", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    @property
    def prediction_rule(self) -> str:
        """Which rule scored the predictions so far: ``"soft"`` (logits or probabilities: the
        release's eval), ``"labels"`` (one-hot), ``"mixed"`` or ``"none"`` (local states)."""
        soft, labels = int(self.soft_samples), int(self.label_samples)
        return "mixed" if soft and labels else "soft" if soft else "labels" if labels else "none"

    @property
    def rendered_bev_size(self) -> int:
        """Side of the rendered BEV image, pixels (``bev_size`` times ``image_scale``, rounded)."""
        return max(1, round(self.bev_size * self.image_scale))

    def rendered_image_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` of the rendered camera images for cameras of ``image_size`` pixels."""
        h, w = image_size
        return max(1, round(h * self.image_scale)), max(1, round(w * self.image_scale))

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_from_grid: torch.Tensor,
        image_size: tuple[int, int],
        *,
        probabilities: bool = False,
    ) -> None:
        """Render and score a batch.

        The dtype of ``pred`` decides the prediction's rule (module docstring): floating
        point is the release's soft rule (``softmax`` features, opacity 1 where the argmax is
        not empty), integer is one-hot labels.

        Args:
            pred: ``[B, C, X, Y, Z]`` float logits (C = ``grid.num_classes``), or with
                ``probabilities=True`` class probabilities (each voxel's ``C`` values in
                ``[0, 1]`` summing to 1 within ``PROBABILITY_TOLERANCE``, e.g. float16
                ones saved by ``gaussrender predict --save-probabilities``); or
                ``[B, X, Y, Z]`` integer predicted labels in ``[0, C)``.
            target: ``[B, X, Y, Z]`` integer ground-truth labels in ``[0, C)`` or ``ignore_index``.
            intrinsics: ``[B, Ncam, 3, 3]`` pinhole matrices (pixels) for images of ``image_size``.
            cam_from_grid: ``[B, Ncam, 4, 4]`` rigid transforms from the grid frame to the
                OpenCV camera frame (metres). ``Ncam`` may be 0 (BEV only).
            image_size: ``(H, W)`` pixels of the cameras' images (nuScenes: ``(900, 1600)``).
            probabilities: ``pred`` holds probabilities, not logits (float ``pred`` only).

        Raises:
            ValueError: float ``pred`` with a class count other than the grid's, with a
                non-finite value, or (``probabilities``) values outside ``[0, 1]`` or not
                summing to 1; the other shape, dtype and range errors of the inputs.
        """
        grid = self.grid
        batch = self._check_pred(pred, target, probabilities)
        check_floating("intrinsics", intrinsics)
        ncam = check_shape("intrinsics", intrinsics, [batch, "Ncam", 3, 3])["Ncam"]
        check_floating("cam_from_grid", cam_from_grid)
        check_shape("cam_from_grid", cam_from_grid, [batch, ncam, 4, 4])
        check_finite("intrinsics", intrinsics)
        check_finite("cam_from_grid", cam_from_grid)
        if (
            not isinstance(image_size, (tuple, list))
            or len(image_size) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in image_size)
        ):
            raise ValueError(f"image_size must be (H, W) positive ints (pixels), got {image_size!r}")
        h, w = self.rendered_image_size((int(image_size[0]), int(image_size[1])))
        # scale by the rounded sizes so that K matches the rendered pixel grid exactly
        intrinsics = scale_intrinsics(intrinsics, w / image_size[1], h / image_size[0])

        device = self.image_confmat.device
        (self.soft_samples if pred.is_floating_point() else self.label_samples).add_(batch)
        bev_cams = bev_camera(grid, self.rendered_bev_size, device=device) if self.bev else None
        with torch.no_grad():
            for b in range(batch):
                t = target[b].to(device).long()
                p_set = self._prediction_set(pred[b].to(device), t, probabilities)
                t_set = _label_set(grid, t)
                if ncam:
                    cams = Cameras(
                        cam_from_grid[b].to(device=device, dtype=torch.float32),
                        intrinsics[b].to(device=device, dtype=torch.float32),
                        w,
                        h,
                    )
                    self._score(p_set, t_set, cams, "center", "image")
                if bev_cams is not None:
                    self._score(p_set, t_set, bev_cams, "footprint", "bev")

    def _check_pred(self, pred: torch.Tensor, target: torch.Tensor, probabilities: bool) -> int:
        """Check ``pred`` (either rule) and ``target``; return the batch size."""
        grid = self.grid
        if not isinstance(probabilities, bool):
            raise TypeError(f"probabilities must be a bool, got {probabilities!r}")
        check_tensor("pred", pred)
        if not pred.is_floating_point():
            if probabilities:
                raise TypeError(
                    f"probabilities=True needs a floating-point pred [B, C, X, Y, Z], got dtype {pred.dtype}"
                )
            return check_label_volumes(grid, pred, target)
        check_integer("target", target)
        batch = check_shape("target", target, ["B", *grid.shape])["B"]
        check_labels("target", target, grid.num_classes, grid.ignore_index)
        what = "probabilities" if probabilities else "logits"
        if pred.dim() != 5 or pred.shape[0] != batch or tuple(pred.shape[2:]) != tuple(grid.shape):
            raise ValueError(
                f"pred ({what}) must have shape [B={batch}, C={grid.num_classes}, {', '.join(map(str, grid.shape))}], "
                f"got {list(pred.shape)}" + ("; labels must have an integer dtype" if pred.dim() == 4 else "")
            )
        if pred.shape[1] != grid.num_classes:
            raise ValueError(
                f"pred ({what}) has {pred.shape[1]} classes along dim 1 but grid {grid.name!r} has {grid.num_classes}"
            )
        if bool((~torch.isfinite(pred)).any()):
            raise ValueError(f"pred ({what}) holds non-finite values (NaN or inf)")
        if probabilities:
            if bool(((pred < 0) | (pred > 1)).any()):
                raise ValueError("pred (probabilities) must lie in [0, 1]")
            err = float((pred.sum(dim=1, dtype=torch.float64) - 1.0).abs().max()) if pred.numel() else 0.0
            if err > PROBABILITY_TOLERANCE:
                raise ValueError(
                    f"pred (probabilities) must sum to 1 over the classes (dim 1): off by up to {err:.3g} "
                    f"(tolerance {PROBABILITY_TOLERANCE}); pass logits with probabilities=False"
                )
        return batch

    def _prediction_set(self, pred: torch.Tensor, target: torch.Tensor, probabilities: bool) -> _VoxelSet:
        """The prediction's Gaussians of one sample: voxel indices and features (opacity 1)."""
        grid = self.grid
        known = target != grid.ignore_index
        if not pred.is_floating_point():
            return _label_set(grid, torch.where(known, pred.long(), target))
        # the release's overwrite_opacity: opacity 1 where argmax is not empty, else 0 (and a
        # zero-opacity Gaussian never reaches a pixel, so it is left out); features stay soft
        keep = known & (pred.argmax(dim=0) != grid.empty_index)
        index = keep.nonzero()
        values = pred[:, keep].double()  # [C, N]
        if probabilities:
            features = values.t()
        else:
            features = values.softmax(dim=0).t()
        return index, features.float()

    def _render(
        self, voxels: _VoxelSet, cameras: Cameras, cull: Literal["center", "footprint"]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class map ``[V, H, W]`` (argmax of the blended features) and depth ``[V, H, W]``."""
        grid = self.grid
        index, features = voxels
        centre = (index.double() + 0.5) * grid.voxel_size
        means = (centre + torch.tensor(grid.range_min, dtype=torch.float64, device=index.device)).float()
        opacities = torch.ones(index.shape[0], dtype=torch.float32, device=index.device)
        background = torch.zeros(grid.num_classes, dtype=torch.float32, device=index.device)
        background[grid.empty_index] = 1.0
        out = render(
            means, opacities, features, grid.gaussian_scale, cameras, background, backend=self.backend, cull=cull
        )
        return out.features.argmax(dim=-1), out.depth

    def _score(
        self,
        pred: _VoxelSet,
        target: _VoxelSet,
        cameras: Cameras,
        cull: Literal["center", "footprint"],
        kind: str,
    ) -> None:
        c = self.grid.num_classes
        p_cls, p_depth = self._render(pred, cameras, cull)
        t_cls, t_depth = self._render(target, cameras, cull)
        counts = torch.bincount((t_cls * c + p_cls).flatten(), minlength=c * c).view(c, c)
        getattr(self, f"{kind}_confmat").add_(counts)
        valid = t_depth > self.depth_min
        err = (p_depth.double() - t_depth.double()).abs()[valid]
        getattr(self, f"{kind}_depth_sum").add_(err.sum())
        getattr(self, f"{kind}_depth_count").add_(valid.sum())

    def _ious(self, cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grid = self.grid
        non_empty = [k for k in range(grid.num_classes) if k != grid.empty_index]
        occupied = torch.ones(grid.num_classes, dtype=torch.bool, device=cm.device)
        occupied[grid.empty_index] = False
        tp, gt, pr = cm.diagonal(), cm.sum(dim=1), cm.sum(dim=0)
        geo = (cm[occupied][:, occupied].sum(), cm[occupied].sum(), cm[:, occupied].sum())
        if self.convention == "release":
            per_class = _release_iou(tp, gt, pr)
            return _release_iou(*geo), per_class[non_empty].mean(), per_class
        per_class = class_iou(tp, gt, pr, absent="nan")
        return class_iou(*geo, absent="nan"), mean_iou(per_class, non_empty, absent="nan"), per_class

    def _l1(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        n = count.double() + (1.0 if self.convention == "release" else 0.0)
        return total / n if n > 0 else torch.full_like(total, float("nan"))

    def compute(self) -> dict[str, torch.Tensor]:
        """Ratios from the pooled states.

        Returns:
            dict of float64 tensors: ``image_iou``, ``image_miou``, ``depth_l1`` (metres,
            camera views), ``bev_iou``, ``bev_miou``, ``bev_depth_l1`` (metres) as scalars,
            and ``image_per_class_iou``, ``bev_per_class_iou`` ``[C]`` (every class,
            the empty one included). A kind of view never rendered gives NaN (``"clean"``).
        """
        image_iou, image_miou, image_pc = self._ious(self.image_confmat)
        bev_iou, bev_miou, bev_pc = self._ious(self.bev_confmat)
        return {
            "image_iou": image_iou,
            "image_miou": image_miou,
            "depth_l1": self._l1(self.image_depth_sum, self.image_depth_count),
            "bev_iou": bev_iou,
            "bev_miou": bev_miou,
            "bev_depth_l1": self._l1(self.bev_depth_sum, self.bev_depth_count),
            "image_per_class_iou": image_pc,
            "bev_per_class_iou": bev_pc,
        }
