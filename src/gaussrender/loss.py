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

import functools
import inspect
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from types import FrameType
from typing import Any, Literal

import torch
from torch import nn

from ._checks import (
    LOW_PRECISION,
    MAX_SCALE,
    check_finite,
    check_floating,
    check_int,
    check_intrinsics,
    check_memory,
    check_real,
    check_rigid,
    check_shape,
    checks_enabled,
    compute_dtype,
    image_bytes,
    render_bytes,
)
from .geometry.camera_strategies import STRATEGIES, Strategy, apply_strategy
from .geometry.cameras import Cameras, scale_intrinsics
from .geometry.grid import VoxelGrid, get_grid
from .geometry.rigs import bev_camera
from .loss_terms import check_targets_2d, depth_term, semantic_term, target_depth_term, target_semantic_term
from .render import CULL_MODES
from .render.dispatch import Backend, render_unchecked
from .render.gaussians import Gaussians, build_gaussians, check_labels

__all__ = ["GaussRenderLoss", "gauss_render_loss", "RenderLossOptions"]

TERMS = ("cam", "cam_depth", "bev", "bev_depth")
#: The terms against 2D targets, present in the output only when such targets are given.
TARGET_TERMS = ("target_depth", "target_semantics")
#: Smallest rendered image side, pixels: a 1-pixel image (e.g. ``resolution_divisor=inf``)
#: averages the whole view into one value and silently trains on nothing.
MIN_IMAGE_SIDE = 2


@dataclass(frozen=True)
class RenderLossOptions:
    """The options of :class:`GaussRenderLoss` and :func:`gauss_render_loss`, documented here only.

    ``GaussRenderLoss(grid, weight=5.0, views=("bev",))`` takes each field as a keyword
    argument (on top of an optional ``options=RenderLossOptions(...)``); a keyword that is not
    a field is refused by name.

    Attributes:
        weight: multiplies the sum of the terms (10 in the paper).
        views: which renders to compare: ``("cam", "bev")``, ``("bev",)`` or ``("cam",)``.
        depth: add the depth terms.
        camera_strategy: how to move the sampled sensor cameras (``sensor``, ``elevated``,
            ``random``, ``stereo``, ``trajectory`` as the release, or our grid-frame
            ``drive``; see :mod:`gaussrender.geometry.camera_strategies`); default (None): the grid's.
            The strategy is applied once per batch, so ``trajectory``'s draw is shared by the
            batch's samples, as in the release.
        cameras_per_sample: how many of the sample's cameras to render (1 in the release).
        camera_weights: sampling weight of each camera (e.g. ``NUSCENES_CAMERA_WEIGHTS``);
            default (None) uniform.
        resolution_divisor: render cameras at ``image_size / divisor`` (the BEV keeps its size).
        semantic: ``"l1"`` (the release), ``"ce"`` or ``"kl"`` (soft cross-entropy / KL of the
            rendered class distributions, target = rendered ground truth).
        bev_model: ``"perspective"`` (the release) or ``"orthographic"``.
        bev_size: BEV image size in pixels.
        cam_depth_scale: camera depth normaliser, metres (50).
        bev_depth_scale: BEV depth normaliser, metres (100).
        scale: Gaussian standard deviation, metres (default (None): ``grid.gaussian_scale``).
        backend: renderer backend (``"auto"``, ``"torch"``, ``"triton"``).
        cull: which voxels a camera view renders, prediction and ground truth alike.
            ``"center"`` (the release): only those whose centre is in front of the camera
            and projects strictly inside the image, ``0.5 < u < W - 0.5`` and
            ``0.5 < v < H - 0.5``. ``"footprint"`` (our alternative, exact splatting): every
            voxel whose footprint (alpha >= 1/255) reaches a pixel, so a voxel just outside
            the border still shades the pixels it overlaps and an object cut by the border
            keeps its visible part; the camera terms then differ from the release's. The BEV
            always renders every voxel (``"footprint"``).
        prefix: prepended to the term names in the output (e.g. ``"render_"``); the total is
            always under ``"loss"`` and the terms keep their gradients, so a runner that sums
            every key containing ``"loss"`` (mmengine's ``parse_losses``) would count a
            prefix such as ``"loss_render_"`` twice: use
            :mod:`gaussrender.integrations.mmengine` there.
        on_nan: ``"raise"`` a ``FloatingPointError`` naming the term, or ``"warn"`` and zero it.
            The check reads the terms back to the host; under ``gr.set_checks(False)`` it is
            skipped and a NaN propagates to the loss.
    """

    weight: float = 10.0
    views: tuple[str, ...] = ("cam", "bev")
    depth: bool = True
    camera_strategy: Strategy | None = None
    cameras_per_sample: int = 1
    camera_weights: tuple[float, ...] | None = None
    resolution_divisor: float = 1.0
    semantic: Literal["l1", "ce", "kl"] = "l1"
    bev_model: Literal["perspective", "orthographic"] = "perspective"
    bev_size: int = 400
    cam_depth_scale: float = 50.0
    bev_depth_scale: float = 100.0
    scale: float | None = None
    backend: Backend = "auto"
    cull: Literal["center", "footprint"] = "center"
    prefix: str = ""
    on_nan: Literal["raise", "warn"] = "raise"

    def validate(self) -> None:
        """Refuse, by name, options that would give a wrong or non-finite loss.

        Ranges: ``weight`` finite >= 0; ``camera_weights`` finite >= 0 with a positive sum;
        ``resolution_divisor`` finite > 0 (that the image keeps >= 2 pixels a side is
        checked when ``image_size`` is known); ``cam_depth_scale``, ``bev_depth_scale``
        finite > 0 metres; ``bev_size`` an int >= 2 pixels; ``scale`` None or in
        ``(0, 1e4]`` metres; ``cameras_per_sample`` an int >= 1.
        """
        if isinstance(self.views, str) or not all(v in ("cam", "bev") for v in self.views) or not self.views:
            raise ValueError(f"views must be a non-empty subset of ('cam', 'bev'), got {self.views!r}")
        if self.camera_strategy is not None and self.camera_strategy not in STRATEGIES:
            raise ValueError(f"camera_strategy must be one of {STRATEGIES}, got {self.camera_strategy!r}")
        check_real("weight", self.weight, 0.0)
        check_int("cameras_per_sample", self.cameras_per_sample, 1)
        check_real("resolution_divisor", self.resolution_divisor, 0.0, low_open=True)
        check_int("bev_size", self.bev_size, MIN_IMAGE_SIDE, unit="pixels")
        check_real("cam_depth_scale", self.cam_depth_scale, 0.0, low_open=True, unit="metres")
        check_real("bev_depth_scale", self.bev_depth_scale, 0.0, low_open=True, unit="metres")
        if self.scale is not None:
            check_real("scale", self.scale, 0.0, MAX_SCALE, low_open=True, unit="metres")
        if self.semantic not in ("l1", "ce", "kl"):
            raise ValueError(f"semantic must be 'l1', 'ce' or 'kl', got {self.semantic!r}")
        if self.bev_model not in ("perspective", "orthographic"):
            raise ValueError(f"bev_model must be 'perspective' or 'orthographic', got {self.bev_model!r}")
        if self.camera_weights is not None:
            if isinstance(self.camera_weights, (str, bytes)) or not isinstance(self.camera_weights, Sequence):
                raise TypeError(f"camera_weights must be a sequence of floats, got {self.camera_weights!r}")
            for i, w in enumerate(self.camera_weights):
                check_real(f"camera_weights[{i}]", w, 0.0)
            if not sum(self.camera_weights) > 0:
                raise ValueError(f"camera_weights must be >= 0 with a positive sum, got {self.camera_weights}")
        if self.cull not in CULL_MODES:
            raise ValueError(f"cull must be one of {CULL_MODES}, got {self.cull!r}")
        if self.on_nan not in ("raise", "warn"):
            raise ValueError(f"on_nan must be 'raise' or 'warn', got {self.on_nan!r}")
        if not isinstance(self.prefix, str):
            raise TypeError(f"prefix must be a str, got {type(self.prefix).__name__}")

    def with_overrides(self, **overrides: Any) -> RenderLossOptions:
        """A validated copy with ``overrides`` (field name -> value) applied, holding plain types.

        The values are validated as given (a 1.5 camera count or a bool weight is refused, not
        silently converted), then stored as floats, ints and tuples.

        Raises:
            TypeError: naming a keyword that is not a field of this class.
        """
        unknown = sorted(set(overrides) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(
                f"unknown GaussRenderLoss option(s) {unknown}; the options are the fields of "
                f"RenderLossOptions: {list(OPTION_NAMES)}"
            )
        given = replace(self, **overrides)
        views, weights = given.views, given.camera_weights
        given = replace(
            given,
            views=views if isinstance(views, str) else tuple(views),
            depth=bool(given.depth),
            camera_weights=None if weights is None or isinstance(weights, (str, bytes)) else tuple(weights),
        )
        given.validate()
        return replace(
            given,
            weight=float(given.weight),
            cameras_per_sample=int(given.cameras_per_sample),
            camera_weights=None if given.camera_weights is None else tuple(float(w) for w in given.camera_weights),
            resolution_divisor=float(given.resolution_divisor),
            bev_size=int(given.bev_size),
            cam_depth_scale=float(given.cam_depth_scale),
            bev_depth_scale=float(given.bev_depth_scale),
            scale=None if given.scale is None else float(given.scale),
        )


#: The option names, in declaration order: the keyword arguments of :class:`GaussRenderLoss`.
OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RenderLossOptions))


def _render_pair(
    pred: Gaussians,
    target: Gaussians,
    cameras: Cameras,
    background: torch.Tensor,
    backend: Backend,
    cull: Literal["center", "footprint"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # inputs validated once by gauss_render_loss, Gaussians built by it: no per-render checks
    out_p = render_unchecked(
        pred.means,
        pred.opacities,
        pred.features,
        pred.scales,
        cameras,
        background,
        backend,
        cull,
    )
    with torch.no_grad():
        out_t = render_unchecked(
            target.means,
            target.opacities,
            target.features,
            target.scales,
            cameras,
            background,
            backend,
            cull,
        )
    return out_p.features, out_t.features, out_p.depth, out_t.depth


def _sample_cameras(
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: tuple[int, int],
    grid: VoxelGrid,
    strategy: Strategy,
    options: RenderLossOptions,
    generator: torch.Generator | None,
    dtype: torch.dtype,
) -> list[Cameras]:
    """Draw ``cameras_per_sample`` cameras per sample and move them with ``strategy``.

    The strategy is applied once to the whole batch ``[B, k, 4, 4]``, so that a draw the
    release makes once per batch (``trajectory``'s r) is shared by every sample, as there.
    """
    batch, ncam = intrinsics.shape[:2]
    device = intrinsics.device
    host_weights = options.camera_weights if options.camera_weights is not None else (1.0,) * ncam
    weights = torch.tensor(host_weights, dtype=torch.float64)
    # counted on the host: the weights are Python floats, no tensor needs reading
    count = min(options.cameras_per_sample, sum(1 for w in host_weights if w > 0))
    # drawn on the host with the module's CPU generator; the upload of these B·k indices is
    # asynchronous (pageable memory is staged at once), so the device never waits on it
    chosen = torch.stack(
        [torch.multinomial(weights, count, replacement=False, generator=generator) for _ in range(batch)]
    ).to(device, non_blocking=True)  # [B, k]
    rows = torch.arange(batch, device=device)[:, None]
    poses = apply_strategy(strategy, cam_from_grid[rows, chosen].to(dtype), grid, generator)
    ks = intrinsics[rows, chosen].to(dtype)
    if poses.shape[1] != ks.shape[1]:  # stereo: each camera and its shifted copy
        ks = ks.repeat_interleave(poses.shape[1] // ks.shape[1], dim=1)
    height = max(1, round(image_size[0] / options.resolution_divisor))
    width = max(1, round(image_size[1] / options.resolution_divisor))
    if (width, height) != (image_size[1], image_size[0]):  # (its factors are an upload)
        ks = scale_intrinsics(ks, width / image_size[1], height / image_size[0])
    return [Cameras(poses[b], ks[b], width, height) for b in range(batch)]


def _target_cameras(
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: tuple[int, int],
    target_size: tuple[int, int],
    dtype: torch.dtype,
) -> list[Cameras]:
    """Every given camera of each sample, at the 2D targets' resolution: ``intrinsics`` (pixels
    of ``image_size``) rescaled to ``target_size`` (H, W), no strategy (the targets were
    measured from these poses)."""
    height, width = target_size
    ks = intrinsics.to(dtype)
    if (height, width) != tuple(image_size):
        ks = scale_intrinsics(ks, width / image_size[1], height / image_size[0])
    poses = cam_from_grid.to(dtype)
    return [Cameras(poses[b], ks[b], width, height) for b in range(intrinsics.shape[0])]


@functools.lru_cache(maxsize=16)
def _bev(
    grid: VoxelGrid, size: int, model: Literal["perspective", "orthographic"], dtype: torch.dtype, device: torch.device
) -> Cameras:
    """The BEV camera, built once per (grid, size, model, dtype, device): building it uploads
    its matrices, a stream synchronisation on CUDA, which a training step should not pay.
    Only the renderer reads it (never modified)."""
    return bev_camera(grid, size, model, dtype=dtype, device=device)


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
    options: RenderLossOptions = RenderLossOptions(),
    generator: torch.Generator | None = None,
    *,
    target_depth: torch.Tensor | None = None,
    target_semantics: torch.Tensor | None = None,
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
            # prediction (render + kept images) and ground truth images live together
            need = render_bytes(views, render_h, render_w, channels, itemsize) + image_bytes(
                views, render_h, render_w, channels, itemsize
            )
            name = "resolution_divisor" if div < 1 else "image_size"
            check_memory(
                name,
                need,
                logits.device,
                f"image_size {image_size} / resolution_divisor {div:g} = {render_h}x{render_w} pixels "
                f"x {views} view(s) x {channels} classes",
            )
    target_size = None
    if has_targets:
        assert intrinsics is not None  # refused above otherwise
        target_size = check_targets_2d(target_depth, target_semantics, batch, intrinsics.shape[1], channels)
        ncam = intrinsics.shape[1]
        check_memory(
            "target_depth" if target_depth is not None else "target_semantics",
            render_bytes(ncam, *target_size, channels, itemsize),
            logits.device,
            f"the prediction rendered into {ncam} camera(s) at {target_size[0]}x{target_size[1]} pixels",
        )
    use_bev = labels is not None and "bev" in options.views
    if use_bev:
        size = options.bev_size
        need = render_bytes(1, size, size, channels, itemsize) + image_bytes(1, size, size, channels, itemsize)
        check_memory("bev_size", need, logits.device, f"a {size}x{size} BEV x {channels} classes")
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
        try:
            bev = _bev(grid, options.bev_size, options.bev_model, dtype, device)
        except TypeError:  # a VoxelGrid subclass holding unhashable fields: build it each time
            bev = bev_camera(grid, options.bev_size, options.bev_model, dtype=dtype, device=device)
    target_scale = grid.gaussian_scale if options.scale is None else options.scale
    sample_cams = None
    if use_cams:
        if intrinsics is None or cam_from_grid is None or image_size is None:  # refused above already
            raise ValueError("intrinsics, cam_from_grid and image_size must be given together")
        sample_cams = _sample_cameras(intrinsics, cam_from_grid, image_size, grid, strategy, options, generator, dtype)
    if opacity is not None:
        check_finite("opacity", opacity)
        if checks_enabled() and bool(((opacity < 0) | (opacity > 1)).any()):
            raise ValueError("opacity must lie in [0, 1]")
    target_cams = None
    if target_size is not None:
        assert intrinsics is not None and cam_from_grid is not None and image_size is not None
        target_cams = _target_cameras(intrinsics, cam_from_grid, image_size, target_size, dtype)
    for b in range(batch):
        pred = build_gaussians(
            grid,
            logits=logits[b],
            labels=None if labels is None else labels[b],
            opacity=None if opacity is None else opacity[b],
            scale=target_scale,
        )
        if target_cams is not None:
            rendered = render_unchecked(
                pred.means,
                pred.opacities,
                pred.features,
                pred.scales,
                target_cams[b],
                background,
                options.backend,
                options.cull,
            )
            if target_depth is not None:
                sums["target_depth"] = sums["target_depth"] + target_depth_term(
                    rendered.depth, target_depth[b].to(dtype), options.cam_depth_scale
                )
            if target_semantics is not None:
                sums["target_semantics"] = sums["target_semantics"] + target_semantic_term(
                    rendered.features, target_semantics[b], options.semantic
                )
        if labels is None:
            continue
        target = build_gaussians(grid, labels=labels[b], scale=target_scale, dtype=dtype)
        if sample_cams is not None:
            cams = sample_cams[b]
            pf, tf, pd, td = _render_pair(pred, target, cams, background, options.backend, options.cull)
            sums["cam"] = sums["cam"] + semantic_term(pf, tf, options.semantic)
            if options.depth:
                sums["cam_depth"] = sums["cam_depth"] + depth_term(pd, td, options.cam_depth_scale)
        if bev is not None:
            # the BEV keeps every voxel (as the release): exact footprint splatting
            pf, tf, pd, td = _render_pair(pred, target, bev, background, options.backend, "footprint")
            sums["bev"] = sums["bev"] + semantic_term(pf, tf, options.semantic)
            if options.depth:
                sums["bev_depth"] = sums["bev_depth"] + depth_term(pd, td, options.bev_depth_scale)
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
    # keep the total attached to the logits so that backward() works on empty scenes too
    total = options.weight * sum(terms.values()) + 0.0 * logits.sum()
    if opacity is not None:
        total = total + 0.0 * opacity.sum()
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
    supervision only: no ground-truth render, the four 3D terms are 0). Cameras of other
    frames (:func:`gaussrender.adjacent_cam_from_grid`) supervise with their frames' targets.

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
