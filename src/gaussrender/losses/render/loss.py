"""GaussRenderLoss: render prediction and ground truth, penalise the difference (docs/method.md#loss).

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
import warnings
from dataclasses import fields
from typing import Any

import torch
from torch import nn

from ..._checks import LOW_PRECISION, checks_enabled
from ...geometry.grid import VoxelGrid, get_grid
from ...render.gaussians import build_predictions
from .camera_checks import CHECKED_CALLS, camera_warnings
from .cameras import bev_view, sample_cameras, target_cameras
from .carve import carve_labels, carve_term
from .inputs import LossPlan, caller_stacklevel, validate_inputs
from .options import RenderLossOptions
from .predictions import prediction_inputs
from .renders import LossViews, target_term_sums, truth_term_sums

__all__ = ["GaussRenderLoss", "gauss_render_loss", "RenderLossOptions", "TERMS", "TARGET_TERMS"]

#: The four terms of the paper, always present in the output (zero when not rendered).
TERMS = ("cam", "cam_depth", "bev", "bev_depth")
#: The release's options (frozen: safe to share as a default argument).
DEFAULT_OPTIONS = RenderLossOptions()
#: The terms against 2D targets, present in the output only when such targets are given.
TARGET_TERMS = ("target_depth", "target_semantics")


def _views(
    grid: VoxelGrid,
    plan: LossPlan,
    intrinsics: torch.Tensor | None,
    cam_from_grid: torch.Tensor | None,
    options: RenderLossOptions,
    generator: torch.Generator | None,
    logits: torch.Tensor,
) -> LossViews:
    """Step 2: the sensor cameras drawn and moved by the strategy, the BEV, and the 2D
    targets' cameras, in the dtype and on the device of ``logits``."""
    dtype, device = logits.dtype, logits.device
    sampled = None
    if plan.use_cams:
        assert intrinsics is not None and cam_from_grid is not None and plan.image_size is not None
        strategy = options.camera_strategy or grid.camera_strategy
        sampled = sample_cameras(intrinsics, cam_from_grid, plan.image_size, grid, strategy, options, generator, dtype)
    bev = bev_view(grid, options.bev_size, options.bev_model, dtype, device) if plan.use_bev else None
    targets = None
    if plan.target_size is not None:
        assert plan.target_intrinsics is not None and plan.target_cam_from_grid is not None
        assert plan.image_size is not None
        targets = target_cameras(
            plan.target_intrinsics, plan.target_cam_from_grid, plan.image_size, plan.target_size, dtype
        )
    return LossViews(sampled, bev, targets)


def _guard_nan(terms: dict[str, torch.Tensor], options: RenderLossOptions, batch: int) -> None:
    """Step 5a: a non-finite term raises, or (``on_nan="warn"``) is replaced by zero.

    The guard reads the terms back to the host (a device sync): with ``set_checks(False)`` it
    is skipped, ``on_nan`` cannot be honoured and a NaN propagates to the returned loss (and
    to the gradients)."""
    for name, value in terms.items() if checks_enabled() else ():
        if not bool(torch.isfinite(value)):
            message = f"GaussRenderLoss term {name!r} is {float(value)} (batch of {batch})"
            if options.on_nan == "raise":
                raise FloatingPointError(message)
            warnings.warn(message + "; replaced by 0", RuntimeWarning, stacklevel=caller_stacklevel())
            terms[name] = value.new_zeros(())


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
    """Functional form of :class:`GaussRenderLoss`; arguments as in its ``forward``.

    Five named steps: validate the inputs (:func:`validate_inputs`), build the views
    (:func:`_views`), the predicted Gaussians (:func:`~gaussrender.render.gaussians.build_predictions`),
    render and compare (:func:`truth_term_sums`, :func:`target_term_sums`), then the terms'
    batch means, NaN guard and weighted total.
    """
    grid = get_grid(grid)
    plan = validate_inputs(
        grid, logits, labels, intrinsics, cam_from_grid, image_size, opacity, options,
        target_depth, target_semantics, target_intrinsics, target_cam_from_grid,
    )  # fmt: skip
    if logits.dtype in LOW_PRECISION:
        # float16/bfloat16 logits: the whole loss runs in float32 (gradients flow back in the
        # logits' dtype); the returned terms are float32, as autocast keeps losses
        logits = logits.float()
    views = _views(grid, plan, intrinsics, cam_from_grid, options, generator, logits)
    scale = grid.gaussian_scale if options.scale is None else options.scale
    # one gather for the whole batch, whose gradient is one full-grid tensor (indexing
    # logits[b] would give each sample's gradient its own zero-filled copy of the batch)
    # the options' opacity ("linear") and rendered classes ("conditional"); the release's as given
    pred_logits, pred_opacity = prediction_inputs(grid, logits, opacity, options)
    preds = build_predictions(grid, pred_logits, labels, pred_opacity, scale)
    # one-hot of the empty class, built on the device (no upload, no one_hot value check)
    background = (torch.arange(grid.num_classes, device=logits.device) == grid.empty_index).to(logits.dtype)
    sums: dict[str, torch.Tensor] = {}
    if views.targets is not None:
        sums.update(target_term_sums(preds, views.targets, background, target_depth, target_semantics, options))
        if options.target_carve:
            assert target_depth is not None  # refused by validate_inputs otherwise
            for b, cams in enumerate(views.targets):
                sem = None if target_semantics is None else target_semantics[b]
                carved = carve_labels(cams, target_depth[b], sem, grid, options.target_sky, options.carve_offset)
                term = carve_term(logits[b], carved, grid, options.carve_empty_weight)
                sums["target_carve"] = sums.get("target_carve", 0.0) + term
    if labels is not None:
        sums.update(truth_term_sums(grid, preds, labels, views, background, scale, options))
    names = TERMS + (TARGET_TERMS if plan.target_size is not None else ())
    if plan.target_size is not None:
        names += tuple(t for t in ("target_alpha", "target_carve") if getattr(options, t))
    terms = {t: sums[t] / plan.batch if t in sums else logits.new_zeros(()) for t in names}
    _guard_nan(terms, options, plan.batch)
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

    **Camera warnings**: on its first call with cameras and labels, the module checks that the
    cameras look right and warns once per kind of mistake, with the fix: a camera that is not
    upright, cameras of a sample that see none of its ground truth, most ground truth behind
    every camera (a camera-to-grid pose passed as ``cam_from_grid``), an ``image_size`` that
    disagrees with the intrinsics' principal point (``(W, H)`` passed for ``(H, W)``). Later
    calls pay nothing (:mod:`gaussrender.losses.render.camera_checks`; off with
    ``gr.set_checks(False)``; the functional :func:`gauss_render_loss` does not check).

    **2D targets** (beyond the release; :mod:`gaussrender.losses.render.terms`): ``target_depth
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
        # the camera plausibility checks (camera_checks.py): on the first calls only, each
        # warning once per module
        self._camera_checks_left = CHECKED_CALLS
        self._camera_warned: set[str] = set()

    def _check_cameras(
        self,
        labels: torch.Tensor | None,
        intrinsics: torch.Tensor | None,
        cam_from_grid: torch.Tensor | None,
        image_size: tuple[int, int] | None,
    ) -> None:
        """Warn (once per kind) about cameras that look wrong; on the first
        :data:`~gaussrender.losses.render.camera_checks.CHECKED_CALLS` calls with cameras and
        labels only, never with ``gr.set_checks(False)``. Inputs validated already."""
        if (
            self._camera_checks_left <= 0
            or not checks_enabled()
            or labels is None
            or intrinsics is None
            or cam_from_grid is None
            or image_size is None
            or "cam" not in self.options.views
        ):
            return
        self._camera_checks_left -= 1
        size = (int(image_size[0]), int(image_size[1]))
        for kind, message in camera_warnings(self.grid, labels, intrinsics, cam_from_grid, size):
            if kind not in self._camera_warned:
                self._camera_warned.add(kind)
                warnings.warn(message, UserWarning, stacklevel=caller_stacklevel())

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
        out = gauss_render_loss(
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
        # after the loss, so that its input checks have refused malformed cameras by name
        self._check_cameras(labels, intrinsics, cam_from_grid, image_size)
        return out

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
