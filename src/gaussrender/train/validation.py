"""Validation of a training run: voxel, ray and rendered-view metrics, sharded over ranks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from ..geometry.grid import VoxelGrid
from .batches import _dataset_len, move_batch, run_model
from .config import Config
from .distributed import DistInfo, ShardSampler, all_reduce_sum

__all__ = ["validate"]


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    *,
    cfg: Config,
    grid: VoxelGrid,
    info: DistInfo,
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
    render_cameras: Callable[[dict[str, Any]], tuple[torch.Tensor, tuple[int, int]]],
    metric_convention: Any = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float]:
    """mIoU / IoU (:class:`~gaussrender.metrics.OccupancyMetrics`), RayIoU and the
    rendered-view metrics of ``model`` on ``dataset``, sharded over ranks without padding;
    metric states are summed. This is :meth:`gaussrender.train.loop.Trainer.evaluate`.

    Args:
        model: the occupancy model (not DDP-wrapped); put in eval mode, then back in train mode.
        dataset: samples with ``labels``; ``mask_camera`` is used with ``train.val_mask_camera``,
            ``origins`` enable RayIoU.
        cfg: the run's config (``train.val_render_scale``, ``train.val_mask_camera``,
            ``data.num_workers``, ``loss.render_kwargs.bev_size``).
        grid: the labels' voxel grid.
        info: this process's place in the job (device, rank, world size).
        collate: the data loader's batch function.
        render_cameras: a batch's render intrinsics ``[B, Ncam, 3, 3]`` and ``(H, W)``
            (:meth:`gaussrender.train.training_loss.TrainingLoss.render_cameras`).
        metric_convention: IoU averaging rule (None: the grid preset's own).
        autocast: the training step's autocast context (a fresh one per call).

    RayIoU needs ``origins`` in the samples. The rendered-view metrics
    (:class:`~gaussrender.metrics.RenderedViewMetrics`: ``image_iou``, ``image_miou``,
    ``depth_l1``, ``bev_iou``, ``bev_miou``, ``bev_depth_l1``) score the model's logits with
    the release's eval rule, rendering every camera of the sample and the BEV with
    ``render_cameras`` scaled by ``train.val_render_scale``; they are off by default (0), as
    they cost more than the rest of the validation on a CPU; the paper configs set 1.
    """
    from ..metrics import OccupancyMetrics, RayIoU, RenderedViewMetrics

    device = info.device
    occ = OccupancyMetrics(grid, convention=metric_convention).to(device)
    ray = RayIoU(grid).to(device)
    render_scale = cfg.train.val_render_scale
    rendered = None
    if render_scale > 0:
        # the BEV the render loss is configured with (the release's 400 px by default)
        bev_size = int(cfg.loss.render_kwargs.get("bev_size", 400))
        rendered = RenderedViewMetrics(grid, image_scale=render_scale, bev_size=bev_size).to(device)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=1,
        sampler=ShardSampler(_dataset_len(dataset, "dataset"), info.rank, info.world_size),
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),  # leave the global RNG untouched
    )
    model.eval()
    rays_seen = views_seen = 0
    for batch in loader:
        batch = move_batch(batch, device)
        with autocast():
            outputs = run_model(model, batch)
        pred = outputs["logits"].float().argmax(dim=1)
        mask = batch.get("mask_camera") if cfg.train.val_mask_camera else None
        occ.update(pred, batch["labels"], None if mask is None else mask.bool())
        if "origins" in batch:  # RayIoU needs the LiDAR origins (nuScenes readers)
            ray.update(pred, batch["labels"], batch["origins"])
            rays_seen += 1
        if rendered is not None and batch["intrinsics"].shape[1] > 0:
            # the cameras the render loss uses: native size and uncropped K when the
            # samples carry them, the network's input otherwise
            ks, size = render_cameras(batch)
            # the logits: the release's eval rule (soft features, opacity from the argmax)
            rendered.update(outputs["logits"].float(), batch["labels"], ks, batch["cam_from_grid"], size)
            views_seen += 1
    model.train()
    out = {k: v for k, v in occ.compute().items() if v.dim() == 0}
    # every rank must join RayIoU's sync, so decide together whether any rank has rays
    if all_reduce_sum(torch.tensor([float(rays_seen)], device=device)).item() > 0:
        out.update({k: v for k, v in ray.compute().items() if v.dim() == 0})
    if rendered is not None and all_reduce_sum(torch.tensor([float(views_seen)], device=device)).item() > 0:
        out.update({k: v for k, v in rendered.compute().items() if v.dim() == 0})
    return {k: float(v) for k, v in out.items()}
