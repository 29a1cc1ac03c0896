"""Step 4 of :func:`~gaussrender.gauss_render_loss`: render the batch and sum each term over
its samples (prediction vs ground truth in the sampled cameras and the BEV; prediction vs 2D
targets in the targets' cameras)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ...geometry.cameras import Cameras
from ...geometry.grid import VoxelGrid
from ...render.dispatch import Backend, GaussianSet, render_sets_unchecked
from ...render.gaussians import Gaussians, build_gaussians
from ...render.result import RenderResult
from .options import RenderLossOptions
from .terms import depth_term, semantic_term, target_alpha_term, target_depth_term, target_semantic_term

__all__ = ["LossViews", "CPU_GAUSSIANS_PER_CALL", "render_batch", "truth_term_sums", "target_term_sums"]

#: On the CPU a render call packs samples only up to this many Gaussians: the binning's
#: per-pair gathers and its sort over tens of millions of (Gaussian, tile) pairs cost more per
#: pair than in calls a quarter of the size (out of cache), so four untrained Occ3D
#: predictions (640k Gaussians each) in one call took 1.5x the time of four calls. Trained
#: predictions (tens of thousands each) still go in one call. GPUs take the whole batch.
CPU_GAUSSIANS_PER_CALL = 1 << 19


@dataclass(frozen=True)
class LossViews:
    """The cameras one call renders (step 2), each a list with one entry per sample.

    Attributes:
        sampled: the drawn (and strategy-moved) sensor cameras; None when not rendered.
        bev: the BEV camera; None when not rendered.
        targets: every 2D target's camera at the targets' resolution; None without targets.
    """

    sampled: list[Cameras] | None
    bev: Cameras | None
    targets: list[Cameras] | None


def render_batch(
    gaussians: Sequence[Gaussians],
    cameras: Sequence[Cameras],
    background: torch.Tensor,
    backend: Backend,
    cull: Literal["center", "footprint"],
) -> list[RenderResult]:
    """Every sample's Gaussians in that sample's cameras, in as few blending passes as possible.

    Inputs validated once by :func:`~gaussrender.gauss_render_loss`: no per-render checks. One
    call for the whole batch (and all of a sample's cameras) instead of one per sample, so the
    per-round work of the rasteriser is shared by all views; on the CPU, calls hold at most
    :data:`CPU_GAUSSIANS_PER_CALL` Gaussians (a sample with more gets a call of its own). Each
    sample's images are the same whichever call renders it.
    """
    sets = [GaussianSet(g.means, g.opacities, g.features, g.scales, c) for g, c in zip(gaussians, cameras, strict=True)]
    if not sets or background.device.type != "cpu":
        return render_sets_unchecked(sets, background, backend, cull)
    out: list[RenderResult] = []
    group: list[GaussianSet] = []
    size = 0
    for s in sets:
        n = int(s.means.shape[0])
        if group and size + n > CPU_GAUSSIANS_PER_CALL:
            out += render_sets_unchecked(group, background, backend, cull)
            group, size = [], 0
        group.append(s)
        size += n
    return out + render_sets_unchecked(group, background, backend, cull)


def truth_term_sums(
    grid: VoxelGrid,
    preds: Sequence[Gaussians],
    labels: torch.Tensor,
    views: LossViews,
    background: torch.Tensor,
    scale: float,
    options: RenderLossOptions,
) -> dict[str, torch.Tensor]:
    """The paper's terms summed over the batch: the predicted Gaussians and those of the
    ``labels [B, X, Y, Z]`` rendered into the same views, compared per sample.

    Returns ``{"cam", "cam_depth", "bev", "bev_depth"}`` sums for the views rendered (absent
    keys are zero). The BEV keeps every voxel (as the release), exact footprint splatting.
    """
    dtype = background.dtype
    truths = [build_gaussians(grid, labels=labels[b], scale=scale, dtype=dtype) for b in range(len(preds))]
    # (cameras, culling, term name, depth scale)
    passes: list[tuple[Sequence[Cameras], Literal["center", "footprint"], str, float]] = []
    if views.sampled is not None:
        passes.append((views.sampled, options.cull, "cam", options.cam_depth_scale))
    if views.bev is not None:
        passes.append(([views.bev] * len(preds), "footprint", "bev", options.bev_depth_scale))
    sums: dict[str, torch.Tensor] = {}
    for cams, cull, term, depth_scale in passes:
        pred_images = render_batch(preds, cams, background, options.backend, cull)
        with torch.no_grad():
            true_images = render_batch(truths, cams, background, options.backend, cull)
        for pred, true in zip(pred_images, true_images, strict=True):
            sums[term] = sums.get(term, 0.0) + semantic_term(pred.features, true.features, options.semantic)
            if options.depth:
                depth = depth_term(pred.depth, true.depth, depth_scale)
                sums[term + "_depth"] = sums.get(term + "_depth", 0.0) + depth
    return sums


def target_term_sums(
    preds: Sequence[Gaussians],
    cameras: Sequence[Cameras],
    background: torch.Tensor,
    target_depth: torch.Tensor | None,
    target_semantics: torch.Tensor | None,
    options: RenderLossOptions,
) -> dict[str, torch.Tensor]:
    """The 2D-target terms summed over the batch: the prediction rendered into the targets'
    ``cameras`` and compared with ``target_depth`` / ``target_semantics [B, Nt, H, W]`` on
    their valid pixels. Returns ``{"target_depth", "target_semantics"}`` sums for the targets
    given, and ``"target_alpha"`` with ``options.target_alpha``."""
    sums: dict[str, torch.Tensor] = {}
    for b, seen in enumerate(render_batch(preds, cameras, background, options.backend, options.cull)):
        if target_depth is not None:
            measured = target_depth[b].to(background.dtype)
            norm = seen.alpha if options.target_depth_mode == "normalised" else None
            depth = target_depth_term(seen.depth, measured, options.cam_depth_scale, norm)
            sums["target_depth"] = sums.get("target_depth", 0.0) + depth
            if options.target_alpha:
                alpha = target_alpha_term(seen.alpha, measured, options.target_sky)
                sums["target_alpha"] = sums.get("target_alpha", 0.0) + alpha
        if target_semantics is not None:
            semantics = target_semantic_term(seen.features, target_semantics[b], options.semantic)
            sums["target_semantics"] = sums.get("target_semantics", 0.0) + semantics
    return sums
