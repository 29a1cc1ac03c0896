"""GaussRenderLoss: render prediction and ground truth, penalise the difference (DESIGN §5).

``L_render = weight · (L_cam + L_cam_depth + L_bev + L_bev_depth)``:

* ``L_cam``, ``L_bev``: mean absolute difference of the rendered semantic images (all
  pixels, all channels; or a soft cross-entropy / KL per pixel), per view, then averaged
  over the views;
* depth terms: per view, L1 on pixels where the ground-truth depth exceeds 0.1 m, divided by
  their count and by 50 (cameras) or 100 (BEV), then averaged over the views (the mean of
  per-view means, as the release; not one mean over all views' pixels);
* each term is averaged over the samples of the batch.

Both renders use the empty class as background, so an unobserved pixel reads "free". As in
the release, a camera view renders (prediction and ground truth alike) only the voxels whose
centre lies in front of it and projects strictly inside the image (``cull="center"``); the
BEV renders every voxel.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Sequence
from dataclasses import fields
from types import FrameType
from typing import Any, Literal

import torch
from torch import nn

from ._checks import (
    LOW_PRECISION,
    check_finite,
    check_floating,
    check_int,
    check_intrinsics,
    check_memory,
    check_rigid,
    check_shape,
    checks_enabled,
    compute_dtype,
    image_bytes,
    render_bytes,
)
from .geometry.cameras import Cameras
from .geometry.grid import VoxelGrid, get_grid
from .loss_cameras import bev_view, sample_cameras, target_cameras
from .loss_options import MIN_IMAGE_SIDE, RenderLossOptions
from .loss_terms import check_targets_2d, depth_term, semantic_term, target_depth_term, target_semantic_term
from .render.dispatch import Backend, GaussianSet, render_sets_unchecked
from .render.gaussians import Gaussians, build_gaussians, build_predictions, check_labels
from .render.result import RenderResult

__all__ = ["GaussRenderLoss", "gauss_render_loss", "RenderLossOptions"]

TERMS = ("cam", "cam_depth", "bev", "bev_depth")
#: The release's options (frozen: safe to share as a default argument).
DEFAULT_OPTIONS = RenderLossOptions()
#: The terms against 2D targets, present in the output only when such targets are given.
TARGET_TERMS = ("target_depth", "target_semantics")


#: On the CPU a render call packs samples only up to this many Gaussians: the binning's
#: per-pair gathers and its sort over tens of millions of (Gaussian, tile) pairs cost more per
#: pair than in calls a quarter of the size (out of cache), so four untrained Occ3D
#: predictions (640k Gaussians each) in one call took 1.5x the time of four calls. Trained
#: predictions (tens of thousands each) still go in one call. GPUs take the whole batch.
CPU_GAUSSIANS_PER_CALL = 1 << 19


def _render_batch(
    gaussians: Sequence[Gaussians],
    cameras: Sequence[Cameras],
    background: torch.Tensor,
    backend: Backend,
    cull: Literal["center", "footprint"],
) -> list[RenderResult]:
    """Every sample's Gaussians in that sample's cameras, in as few blending passes as possible.

    Inputs validated once by :func:`gauss_render_loss`, Gaussians built by it: no per-render
    checks. One call for the whole batch (and all of a sample's cameras) instead of one per
    sample, so the per-round work of the rasteriser is shared by all views; on the CPU, calls
    hold at most :data:`CPU_GAUSSIANS_PER_CALL` Gaussians (a sample with more gets a call of
    its own). Each sample's images are the same whichever call renders it.
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


def _caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside this package and ``torch.nn`` (the user's
    line, whether it called the function or the module), for warnings."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (name.startswith("gaussrender.") or name.startswith("torch.nn")):
            return level
        frame, level = frame.f_back, level + 1
    return 2


def gauss_render_loss(
    grid: VoxelGrid | str,
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    intrinsics: torch.Tensor | None = None,
    cam_from_grid: torch.Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    opacity: torch.Tensor | None = None,
    options: RenderLossOptions = DEFAULT_OPTIONS,
    generator: torch.Generator | None = None,
    *,
    target_depth: torch.Tensor | None = None,
    target_semantics: torch.Tensor | None = None,
    target_intrinsics: torch.Tensor | None = None,
    target_cam_from_grid: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Functional form of :class:`GaussRenderLoss`; arguments as in its ``forward``."""
    grid = get_grid(grid)
    if not isinstance(options, RenderLossOptions):
        raise TypeError(f"options must be a RenderLossOptions, got {type(options).__name__}")
    options.validate()
    check_floating("logits", logits)
    sizes = check_shape("logits", logits, ["B", grid.num_classes] + list(grid.shape))
    batch = sizes["B"]
    if batch < 1:
        # a mean over no sample is undefined (0/0); refusing beats a silent zero that hides
        # an emptied batch
        raise ValueError(f"logits must hold at least one sample (batch size B >= 1), got B = {batch}")
    check_finite("logits", logits)
    has_targets = target_depth is not None or target_semantics is not None
    if labels is None:
        if not has_targets:
            raise ValueError(
                "labels is None and no 2D target (target_depth, target_semantics) was given; "
                "pass 3D labels [B, X, Y, Z], 2D targets, or both"
            )
    else:
        check_labels("labels", labels, grid, batch=True)
        if labels.shape[0] != batch:
            raise ValueError(f"labels has batch size {labels.shape[0]} but logits {batch}")
        if labels.device != logits.device:
            raise ValueError(f"labels is on {labels.device} but logits on {logits.device}; expected one device")
    for name, image in (("target_depth", target_depth), ("target_semantics", target_semantics)):
        if image is not None and image.device != logits.device:
            raise ValueError(f"{name} is on {image.device} but logits on {logits.device}; expected one device")
    if has_targets and (intrinsics is None or cam_from_grid is None or image_size is None):
        raise ValueError(
            "2D targets (target_depth, target_semantics) are images of the given cameras: pass "
            "intrinsics, cam_from_grid and image_size with them"
        )
    if opacity is not None:
        check_floating("opacity", opacity)
        check_shape("opacity", opacity, [batch] + list(grid.shape))
    if labels is not None and "cam" in options.views and intrinsics is None and cam_from_grid is None:
        if "bev" not in options.views:
            raise ValueError(
                "views=('cam',) renders the sensor cameras, but intrinsics and cam_from_grid "
                "(and image_size) were not given; pass them, or use views=('bev',)"
            )
        # the documented default: without cameras the BEV alone is rendered (said once per
        # call site, as Python's warnings do; views=('bev',) says it explicitly and is silent)
        warnings.warn(
            "GaussRenderLoss: no cameras given (intrinsics, cam_from_grid), so only the BEV is "
            "rendered and the 'cam' terms are 0; pass views=('bev',) to silence this",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    use_cams = labels is not None and "cam" in options.views and intrinsics is not None
    channels = grid.num_classes
    itemsize = torch.finfo(compute_dtype(logits.dtype)).bits // 8
    if intrinsics is not None or cam_from_grid is not None:
        if intrinsics is None or cam_from_grid is None or image_size is None:
            raise ValueError("intrinsics, cam_from_grid and image_size must be given together")
        ncam = check_shape("intrinsics", intrinsics, [batch, "Ncam", 3, 3])["Ncam"]
        check_shape("cam_from_grid", cam_from_grid, [batch, ncam, 4, 4])
        check_intrinsics("intrinsics", intrinsics)
        check_rigid("cam_from_grid", cam_from_grid)
        if isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence) or len(image_size) != 2:
            raise ValueError(f"image_size must be (height, width) positive ints, got {image_size!r}")
        image_size = (
            check_int("image_size[0] (height)", image_size[0], 1, unit="pixels"),
            check_int("image_size[1] (width)", image_size[1], 1, unit="pixels"),
        )
        if options.camera_weights is not None and len(options.camera_weights) != ncam:
            raise ValueError(f"camera_weights has {len(options.camera_weights)} entries but there are {ncam} cameras")
        if use_cams:
            # the size the cameras are rendered at (as computed below), refused when it
            # degenerates or cannot fit in memory
            div = options.resolution_divisor
            render_h, render_w = round(image_size[0] / div), round(image_size[1] / div)
            if min(render_h, render_w) < MIN_IMAGE_SIDE:
                raise ValueError(
                    f"resolution_divisor {div!r} turns image_size {image_size} into "
                    f"{render_h}x{render_w} pixels; expected at least {MIN_IMAGE_SIDE} a side"
                )
            views = min(options.cameras_per_sample, ncam) * (
                2 if (options.camera_strategy or grid.camera_strategy) == "stereo" else 1
            )
            # one render call's buffers and, kept for the backward pass, every sample's
            # prediction images (the batch is rendered together, its terms computed after)
            need = render_bytes(views, render_h, render_w, channels, itemsize) + batch * image_bytes(
                views, render_h, render_w, channels, itemsize
            )
            name = "resolution_divisor" if div < 1 else "image_size"
            check_memory(
                name,
                need,
                logits.device,
                f"image_size {image_size} / resolution_divisor {div:g} = {render_h}x{render_w} pixels "
                f"x {views} view(s) x {channels} classes, batch of {batch}",
            )
    target_size = None
    if (target_intrinsics is None) != (target_cam_from_grid is None):
        raise ValueError("target_intrinsics and target_cam_from_grid must be given together")
    if target_intrinsics is not None and not has_targets:
        raise ValueError("target_intrinsics / target_cam_from_grid were given without target_depth or target_semantics")
    if has_targets:
        assert intrinsics is not None and cam_from_grid is not None  # refused above otherwise
        if target_intrinsics is not None and target_cam_from_grid is not None:
            # the targets' own cameras (e.g. other frames'), pixels of image_size like intrinsics
            ncam = check_shape("target_intrinsics", target_intrinsics, [batch, "Nt", 3, 3])["Nt"]
            check_shape("target_cam_from_grid", target_cam_from_grid, [batch, ncam, 4, 4])
            check_intrinsics("target_intrinsics", target_intrinsics)
            check_rigid("target_cam_from_grid", target_cam_from_grid)
        else:
            target_intrinsics, target_cam_from_grid = intrinsics, cam_from_grid
            ncam = intrinsics.shape[1]
        target_size = check_targets_2d(target_depth, target_semantics, batch, ncam, channels)
        check_memory(
            "target_depth" if target_depth is not None else "target_semantics",
            # one call's buffers and images, and the other samples' images kept for backward
            render_bytes(ncam, *target_size, channels, itemsize)
            + (batch - 1) * image_bytes(ncam, *target_size, channels, itemsize),
            logits.device,
            f"the prediction rendered into {ncam} camera(s) at {target_size[0]}x{target_size[1]} pixels, "
            f"batch of {batch}",
        )
    use_bev = labels is not None and "bev" in options.views
    if use_bev:
        size = options.bev_size
        need = render_bytes(1, size, size, channels, itemsize) + batch * image_bytes(1, size, size, channels, itemsize)
        check_memory("bev_size", need, logits.device, f"{batch} {size}x{size} BEV(s) x {channels} classes")
    if logits.dtype in LOW_PRECISION:
        # float16/bfloat16 logits: the whole loss runs in float32 (gradients flow back in the
        # logits' dtype); the returned terms are float32, as autocast keeps losses
        logits = logits.float()
    device, dtype = logits.device, logits.dtype
    # one-hot of the empty class, built on the device (no upload, no one_hot value check)
    background = (torch.arange(grid.num_classes, device=device) == grid.empty_index).to(dtype)
    strategy = options.camera_strategy or grid.camera_strategy
    sums = {t: logits.new_zeros(()) for t in TERMS + (TARGET_TERMS if has_targets else ())}
    bev = None
    if use_bev:
        bev = bev_view(grid, options.bev_size, options.bev_model, dtype, device)
    target_scale = grid.gaussian_scale if options.scale is None else options.scale
    sample_cams = None
    if use_cams:
        if intrinsics is None or cam_from_grid is None or image_size is None:  # refused above already
            raise ValueError("intrinsics, cam_from_grid and image_size must be given together")
        sample_cams = sample_cameras(intrinsics, cam_from_grid, image_size, grid, strategy, options, generator, dtype)
    if opacity is not None:
        check_finite("opacity", opacity)
        if checks_enabled() and bool(((opacity < 0) | (opacity > 1)).any()):
            raise ValueError("opacity must lie in [0, 1]")
    target_cams = None
    if target_size is not None:
        assert target_intrinsics is not None and target_cam_from_grid is not None and image_size is not None
        target_cams = target_cameras(target_intrinsics, target_cam_from_grid, image_size, target_size, dtype)
    # one gather for the whole batch, whose gradient is one full-grid tensor (indexing
    # logits[b] would give each sample's gradient its own zero-filled copy of the batch)
    preds = build_predictions(grid, logits, labels, opacity, target_scale)
    if target_cams is not None:
        rendered = _render_batch(preds, target_cams, background, options.backend, options.cull)
        for b, seen in enumerate(rendered):
            if target_depth is not None:
                sums["target_depth"] = sums["target_depth"] + target_depth_term(
                    seen.depth, target_depth[b].to(dtype), options.cam_depth_scale
                )
            if target_semantics is not None:
                sums["target_semantics"] = sums["target_semantics"] + target_semantic_term(
                    seen.features, target_semantics[b], options.semantic
                )
    if labels is not None:
        truths = [build_gaussians(grid, labels=labels[b], scale=target_scale, dtype=dtype) for b in range(batch)]
        # (cameras, culling, term names, depth scale): the BEV keeps every voxel (as the
        # release), exact footprint splatting
        passes: list[tuple[Sequence[Cameras], Literal["center", "footprint"], str, float]] = []
        if sample_cams is not None:
            passes.append((sample_cams, options.cull, "cam", options.cam_depth_scale))
        if bev is not None:
            passes.append(([bev] * batch, "footprint", "bev", options.bev_depth_scale))
        for cams, cull, term, depth_scale in passes:
            pred_images = _render_batch(preds, cams, background, options.backend, cull)
            with torch.no_grad():
                true_images = _render_batch(truths, cams, background, options.backend, cull)
            for pred, true in zip(pred_images, true_images, strict=True):
                sums[term] = sums[term] + semantic_term(pred.features, true.features, options.semantic)
                if options.depth:
                    sums[term + "_depth"] = sums[term + "_depth"] + depth_term(pred.depth, true.depth, depth_scale)
    terms = {t: v / batch for t, v in sums.items()}
    # The NaN guard reads the terms back to the host (a device sync): with
    # set_checks(False) it is skipped, on_nan cannot be honoured and a NaN propagates to the
    # returned loss (and to the gradients).
    for name, value in terms.items() if checks_enabled() else ():
        if not bool(torch.isfinite(value)):
            message = f"GaussRenderLoss term {name!r} is {float(value)} (batch of {batch})"
            if options.on_nan == "raise":
                raise FloatingPointError(message)
            warnings.warn(message + "; replaced by 0", RuntimeWarning, stacklevel=3)
            terms[name] = logits.new_zeros(())
    # keep the total attached to the logits (and opacity) so that backward() works on empty
    # scenes too: through the predicted Gaussians, not through 0 * logits.sum(), whose
    # gradient is a second full-grid tensor to allocate and add to the logits' gradient. The
    # detached sums (one read each) carry a NaN of the inputs into the loss when the checks
    # are off, as documented above.
    attach = sum(p.features.sum() + p.opacities.sum() for p in preds)
    inputs = logits.detach().sum() + (0.0 if opacity is None else opacity.detach().sum())
    total = options.weight * sum(terms.values()) + 0.0 * (attach + inputs)
    out = {"loss": total}
    out.update({options.prefix + t: v for t, v in terms.items()})
    return out


class GaussRenderLoss(nn.Module):
    """The GaussRender plug-in loss: add ``out["loss"]`` to your model's 3D loss.

    Args:
        grid: a :class:`VoxelGrid` or preset name (``"occ3d"``, ``"surroundocc"``, ``"kitti360"``).
        options: a :class:`RenderLossOptions` (default: its defaults, the release's).
        seed: seeds the module's own camera-sampling generator (reproducible runs).
        **overrides: any field of :class:`RenderLossOptions` by name (``weight``, ``views``,
            ``bev_size``, ...; documented there), applied on top of ``options``. A keyword
            that is not an option raises ``TypeError`` naming it. The result, validated, is
            ``self.options``.

    Call with ``logits [B, C, X, Y, Z]``, ``labels [B, X, Y, Z]`` and optionally
    ``intrinsics [B, Ncam, 3, 3]`` (pixels, for ``image_size``), ``cam_from_grid
    [B, Ncam, 4, 4]``, ``image_size (H, W)``, ``opacity [B, X, Y, Z]``. Without cameras only
    the BEV is rendered, with a warning unless ``views=("bev",)``; ``views=("cam",)``
    without cameras raises ``ValueError``. Returns a dict with ``loss`` (weighted total) and the unweighted terms
    ``cam``, ``cam_depth``, ``bev``, ``bev_depth`` (zero when not rendered).

    **2D targets** (beyond the release; :mod:`gaussrender.loss_terms`): ``target_depth
    [B, Ncam, H, W]`` (metres, camera z, 0 = none; e.g. LiDAR through
    :func:`gaussrender.project_points`) and/or ``target_semantics [B, Ncam, H, W]`` (class
    indices, 255 = none) are images of the ``Ncam`` given cameras (any resolution: the
    intrinsics, in pixels of ``image_size``, are rescaled to ``(H, W)``). The prediction is
    rendered into every one of those cameras, with no camera strategy, and compared on the
    valid pixels: ``target_depth`` (L1 / ``cam_depth_scale``, as the camera depth term) and
    ``target_semantics`` (``semantic="l1"``: L1 to the one-hot label; ``"ce"``/``"kl"``:
    ``-log p[label]``); both join the weighted total. ``labels`` may then be None (2D
    supervision only: no ground-truth render, the four 3D terms are 0). The targets may
    instead be images of their own cameras, ``target_intrinsics [B, Nt, 3, 3]`` (pixels of
    ``image_size``) and ``target_cam_from_grid [B, Nt, 4, 4]``, e.g. the cameras of adjacent
    frames (:func:`gaussrender.adjacent_cam_from_grid`) with those frames' targets, while the
    3D terms keep sampling the sample's own cameras.

    Example:
        >>> import torch, gaussrender as gr
        >>> grid = gr.OCC3D_NUSCENES
        >>> labels = torch.full((1, *grid.shape), grid.empty_index)
        >>> labels[0, 90:110, 90:110, 2] = 11  # a patch of road
        >>> logits = torch.randn(1, grid.num_classes, *grid.shape, requires_grad=True)
        >>> out = gr.GaussRenderLoss(grid, views=("bev",), bev_size=64)(logits, labels)
        >>> out["loss"].backward()
        >>> sorted(out)
        ['bev', 'bev_depth', 'cam', 'cam_depth', 'loss']
    """

    def __init__(
        self,
        grid: VoxelGrid | str,
        options: RenderLossOptions | None = None,
        *,
        seed: int | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        self.grid = get_grid(grid)
        if options is None:
            options = RenderLossOptions()
        elif not isinstance(options, RenderLossOptions):
            raise TypeError(f"options must be a RenderLossOptions, got {type(options).__name__}")
        self.options = options.with_overrides(**overrides)
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor | None,
        intrinsics: torch.Tensor | None = None,
        cam_from_grid: torch.Tensor | None = None,
        image_size: tuple[int, int] | None = None,
        opacity: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        target_depth: torch.Tensor | None = None,
        target_semantics: torch.Tensor | None = None,
        target_intrinsics: torch.Tensor | None = None,
        target_cam_from_grid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        return gauss_render_loss(
            self.grid,
            logits,
            labels,
            intrinsics=intrinsics,
            cam_from_grid=cam_from_grid,
            image_size=image_size,
            opacity=opacity,
            options=self.options,
            generator=generator if generator is not None else self.generator,
            target_depth=target_depth,
            target_semantics=target_semantics,
            target_intrinsics=target_intrinsics,
            target_cam_from_grid=target_cam_from_grid,
        )

    def extra_repr(self) -> str:
        return f"grid={self.grid.name!r}, weight={self.options.weight}, views={self.options.views}"


def _constructor_signature() -> inspect.Signature:
    """``GaussRenderLoss.__init__``'s signature with each option as a keyword-only parameter,
    generated from :class:`RenderLossOptions` (so help() and IDEs list them, and they cannot
    drift from the dataclass)."""
    declared = inspect.signature(GaussRenderLoss.__init__)
    params = [p for p in declared.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in fields(RenderLossOptions)
    ]
    return declared.replace(parameters=params)


# inspect reads __signature__ off any callable; typeshed does not declare it on functions
GaussRenderLoss.__init__.__signature__ = _constructor_signature()  # type: ignore[attr-defined]
