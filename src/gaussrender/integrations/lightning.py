"""Lightning integration: rendered prediction vs ground truth, logged during validation.

:class:`RenderedViewsCallback` scores **every** validation batch and draws pictures of every
``every_n_steps``-th one:

* every batch (on every process) updates :class:`gaussrender.metrics.RenderedViewMetrics`; at
  the end of the validation epoch the pooled metrics (``image_miou``, ``bev_iou``,
  ``depth_l1``, ...) are logged with ``pl_module.log`` as ``<tag>/<name>`` (pooled across
  processes by the metric itself; a value that is NaN, e.g. image metrics without cameras,
  is not logged), so they equal the metric over the whole validation set;
* batches ``0, N, 2N, ...`` (``N = every_n_steps``; rank zero only) also get pictures: the
  first sample's prediction and ground truth rendered from its first camera and from the
  bird's-eye view, one picture per view (ground truth | prediction | error, semantics above
  depth; the error panel marks the pixels whose classes differ and colours the absolute
  depth error), logged to every logger that takes images: TensorBoard's
  ``SummaryWriter.add_image`` (``logger.experiment``), or a logger with
  ``log_image(key, images, step)`` (W&B). ``save_dir`` also writes them as PNGs. With no such
  logger and no ``save_dir`` nothing would keep the pictures: the callback says so once
  (a ``UserWarning`` naming both fixes) and does not draw them.

What the callback needs from the batch: your ``validation_step`` returns a dict with

* ``logits`` ``[B, C, X, Y, Z]`` (the model's voxel logits) and ``labels`` ``[B, X, Y, Z]``
  (ground truth, ``grid.ignore_index`` allowed);
* optionally ``intrinsics`` ``[B, Ncam, 3, 3]`` (pixels), ``cam_from_grid``
  ``[B, Ncam, 4, 4]`` (grid to OpenCV camera) and ``image_size`` ``(H, W)``: the same
  arguments as :class:`gaussrender.GaussRenderLoss`; without them only the BEV is drawn
  and scored;
* optionally ``opacity`` ``[B, X, Y, Z]`` (a learned opacity, drawn instead of
  ``1 - sharpen(p_empty)``).

The pictures show the prediction as the loss sees it (soft class colours, opacity from the
model); the metrics score the logits with the release's eval rule (soft features, opacity 1
where the argmax is not empty: :class:`~gaussrender.metrics.RenderedViewMetrics`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gaussrender.integrations.lightning needs lightning: pip install 'gaussrender[lightning]'"
    ) from err

from .._checks import check_int, check_real
from ..geometry.cameras import Cameras, scale_intrinsics
from ..geometry.grid import VoxelGrid, get_grid
from ..geometry.rigs import bev_camera
from ..metrics.rendered import RenderedViewMetrics
from ..render.dispatch import Backend
from ..render.gaussians import Gaussians, voxels_to_gaussians
from ..viz import comparison_rows, palette, render_views, save_png, tile_images

__all__ = ["RenderedViewsCallback", "comparison_pictures"]

#: Far end of the camera depth colours, metres (what the loss divides camera depths by).
CAMERA_MAX_DEPTH = 50.0


def _draw(grid: VoxelGrid, g: Gaussians, cams: Cameras, backend: Backend) -> tuple[torch.Tensor, torch.Tensor]:
    """Class features ``[H, W, C]`` and expected depth ``[H, W]`` of the first view of ``cams``."""
    background = (torch.arange(grid.num_classes, device=g.means.device) == grid.empty_index).to(g.means.dtype)
    features, depth = render_views(g, cams[0:1], background, backend)
    return features[0], depth[0]


@torch.no_grad()
def comparison_pictures(
    grid: VoxelGrid | str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    intrinsics: torch.Tensor | None = None,
    cam_from_grid: torch.Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    opacity: torch.Tensor | None = None,
    image_scale: float = 1.0,
    bev_size: int = 200,
    backend: Backend = "auto",
) -> dict[str, np.ndarray]:
    """Ground truth | prediction | error pictures of one sample, semantics above depth
    (:func:`gaussrender.viz.comparison_rows`: the layout of ``gaussrender demo`` and ``view``).

    Args:
        grid: the grid (or preset name).
        logits: ``[C, X, Y, Z]``; labels: ``[X, Y, Z]``; opacity: ``[X, Y, Z]`` or None.
        intrinsics: ``[Ncam, 3, 3]`` pixels for ``image_size`` ``(H, W)``; cam_from_grid:
            ``[Ncam, 4, 4]``. The first camera is drawn, at ``image_scale`` of its size.
        bev_size: side of the bird's-eye view, pixels.

    Returns:
        ``{"camera": uint8 [H, W, 3], "bev": ...}`` (``"camera"`` only with cameras).
    """
    grid = get_grid(grid)
    gt = voxels_to_gaussians(grid, labels=labels)
    pred = voxels_to_gaussians(grid, logits=logits, labels=labels, opacity=opacity)
    gt = Gaussians(
        gt.means.to(pred.means.dtype),
        gt.opacities.to(pred.means.dtype),
        gt.features.to(pred.means.dtype),
        gt.scales.to(pred.means.dtype),
        gt.voxel_index,
    )
    views: dict[str, tuple[Cameras, tuple[float, float]]] = {}
    if intrinsics is not None and cam_from_grid is not None and image_size is not None:
        h, w = (max(2, round(s * image_scale)) for s in image_size)
        k = scale_intrinsics(intrinsics[:1].to(pred.means.dtype), w / image_size[1], h / image_size[0])
        # depth colours span 0-50 m, the camera depth normaliser of the loss
        views["camera"] = (Cameras(cam_from_grid[:1].to(pred.means.dtype), k, w, h), (0.0, CAMERA_MAX_DEPTH))
    bev_height = grid.extent[0]  # bev_camera's height above the grid, metres
    views["bev"] = (
        bev_camera(grid, bev_size, dtype=pred.means.dtype, device=pred.means.device),
        (bev_height - grid.range_max[2], bev_height - grid.range_min[2]),
    )
    pictures = {}
    colors = palette(grid)
    for name, (cams, depth_range) in views.items():
        rows, captions = comparison_rows(
            _draw(grid, gt, cams, backend), _draw(grid, pred, cams, backend), colors, depth_range, name
        )
        pictures[name] = tile_images(rows, captions, font_size=10)
    return pictures


class RenderedViewsCallback(Callback):
    """Log rendered prediction vs ground truth and the rendered-view metrics (see the module).

    Args:
        grid: the voxel grid of the logits and labels (or a preset name).
        every_n_steps: draw pictures of validation batches ``0, N, 2N, ...`` of each epoch
            (>= 1); the metrics score every batch whatever ``N``.
        image_scale: size of the drawn and scored camera images relative to ``image_size``,
            in (0, 1] (the metric's ``image_scale``).
        bev_size: BEV side, pixels, for the pictures and the metrics.
        tag: prefix of the logged names (``<tag>/camera``, ``<tag>/image_miou``, ...).
        log_metrics: score every batch with :class:`~gaussrender.metrics.RenderedViewMetrics`.
        save_dir: also write the pictures there as ``<view>_step<global step>_batch<i>.png``
            (without it and without an image logger the pictures are dropped, with a warning).
        backend: renderer backend.
        **metric_kwargs: passed to :class:`~gaussrender.metrics.RenderedViewMetrics`
            (``convention``, ``depth_min``).
    """

    def __init__(
        self,
        grid: VoxelGrid | str,
        every_n_steps: int = 50,
        image_scale: float = 0.5,
        bev_size: int = 200,
        tag: str = "gaussrender",
        log_metrics: bool = True,
        save_dir: str | Path | None = None,
        backend: Backend = "auto",
        **metric_kwargs: Any,
    ) -> None:
        super().__init__()
        self.grid = get_grid(grid)
        self.every_n_steps = check_int("every_n_steps", every_n_steps, 1)
        self.image_scale = check_real("image_scale", image_scale, 0.0, 1.0, low_open=True)
        self.bev_size = check_int("bev_size", bev_size, 2, unit="pixels")
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty str, got {tag!r}")
        self.tag = tag
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.backend = backend
        self.metric = (
            RenderedViewMetrics(
                self.grid, image_scale=self.image_scale, bev_size=self.bev_size, backend=backend, **metric_kwargs
            )
            if log_metrics
            else None
        )
        self._scored = 0
        self._warned_dropped = False

    # -- what the validation step returned ---------------------------------------------
    def _unpack(self, outputs: Any) -> dict[str, Any]:
        if not isinstance(outputs, Mapping) or "logits" not in outputs or "labels" not in outputs:
            got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise ValueError(
                "RenderedViewsCallback needs validation_step to return a dict with 'logits' "
                f"[B, C, X, Y, Z] and 'labels' [B, X, Y, Z] (optionally 'intrinsics', "
                f"'cam_from_grid', 'image_size', 'opacity'); got {got}"
            )
        out = {k: outputs.get(k) for k in ("logits", "labels", "intrinsics", "cam_from_grid", "image_size", "opacity")}
        given = [k for k in ("intrinsics", "cam_from_grid", "image_size") if out[k] is not None]
        if given and len(given) != 3:
            raise ValueError(f"intrinsics, cam_from_grid and image_size must be returned together, got only {given}")
        if out["image_size"] is not None:
            out["image_size"] = tuple(int(s) for s in out["image_size"])
        return out

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.metric is not None:
            self.metric = self.metric.to(pl_module.device)
            self.metric.reset()
        self._scored = 0

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking:
            return
        out = self._unpack(outputs)
        logits, labels = out["logits"].detach(), out["labels"]
        cams = out["intrinsics"] is not None
        if self.metric is not None:  # every batch: the epoch's metrics cover the whole set
            b = logits.shape[0]
            k = out["intrinsics"] if cams else logits.new_zeros(b, 0, 3, 3)
            t = out["cam_from_grid"] if cams else logits.new_zeros(b, 0, 4, 4)
            self.metric.update(logits.float(), labels, k, t, out["image_size"] if cams else (1, 1))
            self._scored += 1
        if batch_idx % self.every_n_steps or not trainer.is_global_zero or not self._pictures_kept(trainer):
            return
        pictures = comparison_pictures(
            self.grid,
            logits[0],
            labels[0],
            out["intrinsics"][0] if cams else None,
            out["cam_from_grid"][0] if cams else None,
            out["image_size"],
            None if out["opacity"] is None else out["opacity"][0].detach(),
            image_scale=self.image_scale,
            bev_size=self.bev_size,
            backend=self.backend,
        )
        step = trainer.global_step
        for view, image in pictures.items():
            name = f"{self.tag}/{view}"
            for logger in trainer.loggers:
                experiment: Any = getattr(logger, "experiment", None)
                if hasattr(experiment, "add_image"):  # TensorBoard's SummaryWriter
                    experiment.add_image(name, image, global_step=step, dataformats="HWC")
                elif hasattr(logger, "log_image"):  # W&B and alike
                    logger.log_image(key=name, images=[image], step=step)
            if self.save_dir is not None:
                save_png(self.save_dir / f"{view}_step{step}_batch{batch_idx}.png", image)

    def _pictures_kept(self, trainer: Any) -> bool:
        """Whether a logger or ``save_dir`` keeps the pictures; if neither does, say so once
        (the pictures are then not drawn: nothing would keep them)."""
        takes_images = any(
            hasattr(getattr(logger, "experiment", None), "add_image") or hasattr(logger, "log_image")
            for logger in trainer.loggers
        )
        if takes_images or self.save_dir is not None:
            return True
        if not self._warned_dropped:
            self._warned_dropped = True
            names = [type(logger).__name__ for logger in trainer.loggers] or ["no logger"]
            warnings.warn(
                f"RenderedViewsCallback: the pictures are dropped: no logger takes images ({', '.join(names)}) "
                "and save_dir is not set; pass save_dir='DIR' to write them as PNGs, or add a TensorBoardLogger "
                "(pip install tensorboard) or a logger with log_image. The metrics are logged all the same.",
                UserWarning,
                stacklevel=2,
            )
        return False

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.metric is None or trainer.sanity_checking or not self._scored:
            return
        values = self.metric.compute()
        for name, value in values.items():
            if value.dim() == 0 and bool(torch.isfinite(value)):
                pl_module.log(f"{self.tag}/{name}", value.float(), on_epoch=True)
        self.metric.reset()
