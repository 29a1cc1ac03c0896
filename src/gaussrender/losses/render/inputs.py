"""Step 1 of :func:`~gaussrender.gauss_render_loss`: validate every input once, by name, and
decide what the call renders (:class:`LossPlan`).

Everything the later steps rely on is checked here, so that they run without per-render
checks: shapes, dtypes, devices and finiteness of the tensors, the cameras' intrinsics and
rigid poses, and a lower bound of the memory each render needs, refused before any work.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

import torch

from ..._checks import (
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
from ...geometry.grid import VoxelGrid
from ...render.gaussians import check_labels
from .options import MIN_IMAGE_SIDE, RenderLossOptions
from .terms import check_targets_2d

__all__ = ["LossPlan", "validate_inputs", "caller_stacklevel"]


@dataclass(frozen=True)
class LossPlan:
    """What one call of the loss renders, decided from its validated inputs.

    Attributes:
        batch: samples ``B``.
        use_cams: the sensor cameras are rendered (3D labels, ``"cam"`` in ``views``, cameras given).
        use_bev: the BEV is rendered (3D labels, ``"bev"`` in ``views``).
        image_size: ``(H, W)`` pixels of the given intrinsics, as ints; None without cameras.
        target_size: ``(H, W)`` pixels of the 2D targets; None without them.
        target_intrinsics: ``[B, Nt, 3, 3]`` cameras of the 2D targets (pixels of ``image_size``).
        target_cam_from_grid: ``[B, Nt, 4, 4]`` their grid-to-camera poses.
    """

    batch: int
    use_cams: bool
    use_bev: bool
    image_size: tuple[int, int] | None
    target_size: tuple[int, int] | None
    target_intrinsics: torch.Tensor | None
    target_cam_from_grid: torch.Tensor | None


def caller_stacklevel() -> int:
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


def _check_logits_and_labels(
    grid: VoxelGrid, logits: torch.Tensor, labels: torch.Tensor | None, has_targets: bool
) -> int:
    """Refuse logits that are not ``[B, C, X, Y, Z]`` floating and finite with ``B >= 1``, and
    labels of another grid, batch or device; return ``B``."""
    check_floating("logits", logits)
    batch = check_shape("logits", logits, ["B", grid.num_classes] + list(grid.shape))["B"]
    if batch < 1:
        # a mean over no sample is undefined (0/0); refusing beats a silent zero that hides
        # an emptied batch
        raise ValueError(f"logits must hold at least one sample (batch size B >= 1), got B = {batch}")
    check_finite("logits", logits)
    if labels is None:
        if not has_targets:
            raise ValueError(
                "labels is None and no 2D target (target_depth, target_semantics) was given; "
                "pass 3D labels [B, X, Y, Z], 2D targets, or both"
            )
        return batch
    check_labels("labels", labels, grid, batch=True)
    if labels.shape[0] != batch:
        raise ValueError(f"labels has batch size {labels.shape[0]} but logits {batch}")
    if labels.device != logits.device:
        raise ValueError(f"labels is on {labels.device} but logits on {logits.device}; expected one device")
    return batch


def _check_opacity_values(opacity: torch.Tensor | None) -> None:
    """A learned opacity (shape checked already) must be finite and in ``[0, 1]``."""
    if opacity is None:
        return
    check_finite("opacity", opacity)
    if checks_enabled() and bool(((opacity < 0) | (opacity > 1)).any()):
        raise ValueError("opacity must lie in [0, 1]")


def _warn_or_refuse_missing_cameras(options: RenderLossOptions) -> None:
    """3D labels, ``"cam"`` in ``views`` and no camera: the BEV alone is rendered (the
    documented default, said once per call site), or refused when the BEV is off too."""
    if "bev" not in options.views:
        raise ValueError(
            "views=('cam',) renders the sensor cameras, but intrinsics and cam_from_grid "
            "(and image_size) were not given; pass them, or use views=('bev',)"
        )
    # views=('bev',) says it explicitly and is silent
    warnings.warn(
        "GaussRenderLoss: no cameras given (intrinsics, cam_from_grid), so only the BEV is "
        "rendered and the 'cam' terms are 0; pass views=('bev',) to silence this",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )


def _check_image_size(image_size: object) -> tuple[int, int]:
    if isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence) or len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width) positive ints, got {image_size!r}")
    return (
        check_int("image_size[0] (height)", image_size[0], 1, unit="pixels"),
        check_int("image_size[1] (width)", image_size[1], 1, unit="pixels"),
    )


def _check_camera_count(name: str, count: int) -> None:
    """A sample with zero cameras renders nothing: refuse it rather than return a loss that
    silently supervises nothing (pass no cameras, or ``views=("bev",)``, to render the BEV only)."""
    if count < 1:
        raise ValueError(
            f"{name} holds {count} cameras per sample; expected at least 1 (to render the BEV only, "
            "pass no cameras, with views=('bev',))"
        )


def _check_cameras(
    grid: VoxelGrid,
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: object,
    options: RenderLossOptions,
    batch: int,
) -> tuple[int, tuple[int, int]]:
    """Refuse cameras of the wrong shape, singular intrinsics, non-rigid poses, a bad
    ``image_size`` and camera weights of another count; return ``(Ncam, (H, W))``."""
    ncam = check_shape("intrinsics", intrinsics, [batch, "Ncam", 3, 3])["Ncam"]
    _check_camera_count("intrinsics", ncam)
    check_shape("cam_from_grid", cam_from_grid, [batch, ncam, 4, 4])
    check_intrinsics("intrinsics", intrinsics)
    check_rigid("cam_from_grid", cam_from_grid)
    size = _check_image_size(image_size)
    if options.camera_weights is not None and len(options.camera_weights) != ncam:
        raise ValueError(f"camera_weights has {len(options.camera_weights)} entries but there are {ncam} cameras")
    return ncam, size


def _check_camera_memory(
    grid: VoxelGrid,
    ncam: int,
    image_size: tuple[int, int],
    options: RenderLossOptions,
    batch: int,
    logits: torch.Tensor,
) -> None:
    """Refuse a camera render size that degenerates or cannot fit in memory."""
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
    channels, itemsize = grid.num_classes, _itemsize(logits)
    # one render call's buffers and, kept for the backward pass, every sample's prediction
    # images (the batch is rendered together, its terms computed after)
    need = render_bytes(views, render_h, render_w, channels, itemsize) + batch * image_bytes(
        views, render_h, render_w, channels, itemsize
    )
    check_memory(
        "resolution_divisor" if div < 1 else "image_size",
        need,
        logits.device,
        f"image_size {image_size} / resolution_divisor {div:g} = {render_h}x{render_w} pixels "
        f"x {views} view(s) x {channels} classes, batch of {batch}",
    )


def _check_targets(
    grid: VoxelGrid,
    logits: torch.Tensor,
    batch: int,
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    target_depth: torch.Tensor | None,
    target_semantics: torch.Tensor | None,
    target_intrinsics: torch.Tensor | None,
    target_cam_from_grid: torch.Tensor | None,
) -> tuple[tuple[int, int], torch.Tensor, torch.Tensor]:
    """Refuse 2D targets (and their own cameras, if given) by name, and renders of them that
    cannot fit in memory; return the targets' ``(H, W)`` and their cameras."""
    if target_intrinsics is not None and target_cam_from_grid is not None:
        # the targets' own cameras (e.g. other frames'), pixels of image_size like intrinsics
        ncam = check_shape("target_intrinsics", target_intrinsics, [batch, "Nt", 3, 3])["Nt"]
        _check_camera_count("target_intrinsics", ncam)
        check_shape("target_cam_from_grid", target_cam_from_grid, [batch, ncam, 4, 4])
        check_intrinsics("target_intrinsics", target_intrinsics)
        check_rigid("target_cam_from_grid", target_cam_from_grid)
    else:
        target_intrinsics, target_cam_from_grid = intrinsics, cam_from_grid
        ncam = intrinsics.shape[1]
    channels, itemsize = grid.num_classes, _itemsize(logits)
    target_size = check_targets_2d(target_depth, target_semantics, batch, ncam, channels)
    check_memory(
        "target_depth" if target_depth is not None else "target_semantics",
        # one call's buffers and images, and the other samples' images kept for backward
        render_bytes(ncam, *target_size, channels, itemsize)
        + (batch - 1) * image_bytes(ncam, *target_size, channels, itemsize),
        logits.device,
        f"the prediction rendered into {ncam} camera(s) at {target_size[0]}x{target_size[1]} pixels, batch of {batch}",
    )
    return target_size, target_intrinsics, target_cam_from_grid


def _itemsize(logits: torch.Tensor) -> int:
    """Bytes per element the loss computes in for these logits."""
    return torch.finfo(compute_dtype(logits.dtype)).bits // 8


def validate_inputs(
    grid: VoxelGrid,
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    intrinsics: torch.Tensor | None,
    cam_from_grid: torch.Tensor | None,
    image_size: tuple[int, int] | None,
    opacity: torch.Tensor | None,
    options: RenderLossOptions,
    target_depth: torch.Tensor | None,
    target_semantics: torch.Tensor | None,
    target_intrinsics: torch.Tensor | None,
    target_cam_from_grid: torch.Tensor | None,
) -> LossPlan:
    """Refuse bad input by name (arguments as :func:`~gaussrender.gauss_render_loss`) and say
    what the call renders."""
    if not isinstance(options, RenderLossOptions):
        raise TypeError(f"options must be a RenderLossOptions, got {type(options).__name__}")
    options.validate()
    has_targets = target_depth is not None or target_semantics is not None
    batch = _check_logits_and_labels(grid, logits, labels, has_targets)
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
        _warn_or_refuse_missing_cameras(options)
    use_cams = labels is not None and "cam" in options.views and intrinsics is not None
    size: tuple[int, int] | None = None
    if intrinsics is not None or cam_from_grid is not None:
        if intrinsics is None or cam_from_grid is None or image_size is None:
            raise ValueError("intrinsics, cam_from_grid and image_size must be given together")
        ncam, size = _check_cameras(grid, intrinsics, cam_from_grid, image_size, options, batch)
        if use_cams:
            _check_camera_memory(grid, ncam, size, options, batch, logits)
    if (target_intrinsics is None) != (target_cam_from_grid is None):
        raise ValueError("target_intrinsics and target_cam_from_grid must be given together")
    if target_intrinsics is not None and not has_targets:
        raise ValueError("target_intrinsics / target_cam_from_grid were given without target_depth or target_semantics")
    target_size = None
    if has_targets:
        assert intrinsics is not None and cam_from_grid is not None  # refused above otherwise
        target_size, target_intrinsics, target_cam_from_grid = _check_targets(
            grid,
            logits,
            batch,
            intrinsics,
            cam_from_grid,
            target_depth,
            target_semantics,
            target_intrinsics,
            target_cam_from_grid,
        )
    use_bev = labels is not None and "bev" in options.views
    if use_bev:
        side, channels, itemsize = options.bev_size, grid.num_classes, _itemsize(logits)
        need = render_bytes(1, side, side, channels, itemsize) + batch * image_bytes(1, side, side, channels, itemsize)
        check_memory("bev_size", need, logits.device, f"{batch} {side}x{side} BEV(s) x {channels} classes")
    _check_opacity_values(opacity)
    return LossPlan(batch, use_cams, use_bev, size, target_size, target_intrinsics, target_cam_from_grid)
