"""Rendered-view metrics: prediction and ground truth splatted into images, then scored in 2D.

The GaussRender release also scores an occupancy prediction in 2D (where its gains are
clearest): both the predicted and the ground-truth voxels become Gaussians, are rendered
from every sensor camera and from a bird's-eye view, and the class images and depth images
are compared pixel by pixel. :class:`RenderedViewMetrics` does this as a
:class:`torchmetrics.Metric` whose states are pooled counts and sums.

Per sample:

* ground truth: every voxel that is neither empty nor ignore, opacity 1, one-hot feature
  (:func:`gaussrender.voxels_to_gaussians`, as in the loss);
* prediction: every voxel whose *predicted* label is not empty, opacity 1, one-hot of the
  predicted label; voxels whose ground truth is ignore (255) are dropped;
* views: every given camera, rendered with the release's culling (``cull="center"``: only
  Gaussians whose centre lies in front of the camera and projects strictly inside the
  image), plus the bird's-eye view of :func:`gaussrender.geometry.rigs.bev_camera`
  (perspective, 400x400) which keeps every Gaussian (``cull="footprint"``);
* background: the empty class one-hot, so a pixel that sees nothing reads "empty"; pixel
  class = argmax of the rendered features (ties go to the lower class index, as
  ``torch.argmax``);
* depth: the renderer's depth images, alpha-weighted and **not normalised** (a pixel half
  covered by a Gaussian at 10 m reads 5 m), compared as they are, as the release does.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torchmetrics import Metric

from .._checks import check_finite, check_floating, check_shape
from ..geometry.cameras import Cameras, scale_intrinsics
from ..geometry.grid import VoxelGrid, get_grid
from ..geometry.rigs import bev_camera
from ..render import render
from ..render.dispatch import BACKENDS, Backend
from ..render.gaussians import voxels_to_gaussians
from ._iou import class_iou, mean_iou
from .occupancy import check_label_volumes

__all__ = ["RenderedViewMetrics", "RENDER_CONVENTIONS"]

RenderConvention = Literal["clean", "release"]
RENDER_CONVENTIONS: tuple[str, ...] = ("clean", "release")

#: Release's BEV image side, pixels.
BEV_SIZE = 400


def _release_iou(tp: torch.Tensor, gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """The release's per-class IoU: 1 for a class with no ground-truth pixel (whatever was predicted)."""
    tp, gt, pred = tp.double(), gt.double(), pred.double()
    iou = tp / (gt + pred - tp).clamp_min(1.0)
    return torch.where(gt > 0, iou, torch.ones_like(iou))


class RenderedViewMetrics(Metric):
    """Image and bird's-eye-view IoU/mIoU and depth L1 of rendered occupancy, pooled over a dataset.

    ``update`` renders prediction and ground truth of each sample (see the module docstring
    for what is rendered and how) and adds, per view kind (cameras, BEV), an int64 ``[C, C]``
    pixel confusion matrix (rows: ground truth, columns: prediction) and the sum and count
    of absolute depth errors over pixels whose ground-truth depth exceeds ``depth_min``. All
    states are summed over processes by torchmetrics' sync in ``compute``
    (``dist_reduce_fx="sum"``), so the result is the same however the samples are split.

    Conventions (``convention``), stated plainly:

    * ``"clean"`` (default): a class absent from both prediction and ground truth over the
      whole evaluation has IoU NaN and is skipped by the mean (NaN-mean, as the Occ3D
      toolkit); depth L1 = sum / count (NaN without any valid pixel).
    * ``"release"``: the GaussRender release's quirks: a class with **no ground-truth pixel**
      scores IoU 1, even if it was predicted (its ``MeanIoU``; ``image_iou`` too, with the
      non-empty pixels); depth L1 = sum / (count + 1) (its ``L1_Metric``).

    In both, ``*_miou`` averages every class but the empty one, ``*_iou`` is non-empty vs
    empty pixels.

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
    ) -> None:
        """Render and score a batch.

        Args:
            pred: ``[B, X, Y, Z]`` integer predicted labels in ``[0, C)``.
            target: ``[B, X, Y, Z]`` integer ground-truth labels in ``[0, C)`` or ``ignore_index``.
            intrinsics: ``[B, Ncam, 3, 3]`` pinhole matrices (pixels) for images of ``image_size``.
            cam_from_grid: ``[B, Ncam, 4, 4]`` rigid transforms from the grid frame to the
                OpenCV camera frame (metres). ``Ncam`` may be 0 (BEV only).
            image_size: ``(H, W)`` pixels of the cameras' images (nuScenes: ``(900, 1600)``).
        """
        grid = self.grid
        batch = check_label_volumes(grid, pred, target)
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
        bev_cams = bev_camera(grid, self.rendered_bev_size, device=device) if self.bev else None
        with torch.no_grad():
            for b in range(batch):
                t = target[b].to(device).long()
                # the prediction is scored only where the ground truth is known
                p = torch.where(t == grid.ignore_index, t, pred[b].to(device).long())
                if ncam:
                    cams = Cameras(
                        cam_from_grid[b].to(device=device, dtype=torch.float32),
                        intrinsics[b].to(device=device, dtype=torch.float32),
                        w,
                        h,
                    )
                    self._score(p, t, cams, "center", "image")
                if bev_cams is not None:
                    self._score(p, t, bev_cams, "footprint", "bev")

    def _render(
        self, labels: torch.Tensor, cameras: Cameras, cull: Literal["center", "footprint"]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class map ``[V, H, W]`` (argmax) and depth ``[V, H, W]`` of the non-empty voxels of ``labels``."""
        grid = self.grid
        g = voxels_to_gaussians(grid, labels=labels)
        background = torch.zeros(grid.num_classes, dtype=g.features.dtype, device=labels.device)
        background[grid.empty_index] = 1.0
        out = render(g.means, g.opacities, g.features, g.scales, cameras, background, backend=self.backend, cull=cull)
        return out.features.argmax(dim=-1), out.depth

    def _score(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
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
