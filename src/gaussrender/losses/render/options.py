"""The options of :class:`~gaussrender.GaussRenderLoss`: one frozen dataclass, the single
source of their names, defaults, documentation and validation (the loss's constructor
signature is generated from it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from ..._checks import MAX_SCALE, check_int, check_real
from ...geometry.camera_strategies import STRATEGIES, Strategy
from ...render import CULL_MODES
from ...render.dispatch import Backend

__all__ = ["RenderLossOptions", "OPTION_NAMES", "MIN_IMAGE_SIDE"]

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
        backend: renderer backend (``"auto"``: numba on CPU tensors when installed, triton on CUDA when
            installed, torch otherwise; ``"torch"``, ``"numba"``, ``"triton"``).
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

        opacity: (this and the options below: for training from 2D targets, beyond the
            release; docs/supervision.md, "2D-only training that learns occupancy"; their
            defaults are the release's behaviour) the predicted Gaussians' opacity when no
            ``opacity`` volume is given:
            ``"sharpened"`` (the release) ``1 - sharpen(p_empty)``, or ``"linear"``
            ``1 - p_empty``, whose gradient with respect to the empty logit is
            ``-p_empty (1 - p_empty)`` instead of ``-2 p_empty² (1 - p_empty)`` (below 0.5):
            it fades less once ``p_empty`` is small.
        classes: the rendered features: ``"joint"`` (the release) the softmax over all
            classes, or ``"conditional"`` the class distribution given "occupied" (the empty
            class removed and the rest renormalised), so that the semantic terms decide which
            class a voxel holds and only the opacity decides whether it holds one; the opacity
            still comes from the joint ``p_empty`` (or the given volume).
        target_alpha: add the term ``target_alpha``: the accumulated opacity ``alpha = 1 - T``
            of the prediction rendered into the 2D targets' cameras should be 1 on the pixels
            with a target depth (the ray ends on a surface).
        target_sky: with ``target_alpha``, the pixels without a target depth count too, with
            target alpha 0 (the ray leaves the range without a surface: free space all along).
            Only for dense targets (a camera's per-pixel depth), never for a sparse LiDAR
            image, whose empty pixels mostly had no beam.
        target_carve: add the term ``target_carve``: the 2D targets' rays walked through the
            grid (:mod:`gaussrender.losses.render.carve`): cross-entropy of the logits on the
            voxels a ray crosses before its return (empty), the voxel of the return (the
            pixel's class) and, with ``target_sky``, the voxels crossed by rays without a
            return (empty). Free space in voxels, from the targets and their cameras only.
        carve_offset: voxel units: with ``target_carve``, the voxel a ray is in this far past
            its target depth holds the return (0.25: a LiDAR return lies on a voxel face and
            the pixel-centre ray can fall just in front of it; 1e-3 suits exact per-pixel depth).
        carve_empty_weight: with ``target_carve``: None, the empty and the surface voxels
            weigh half each; a number, the cross-entropy's weight on the empty voxels (1 on
            the others), e.g. 0.5 as the release's Occ3D class weights.
        target_depth_mode: ``"rendered"`` compares the alpha-weighted depth ``Σ α T z`` with the
            target (a surface at the target depth), ``"normalised"`` the depth divided by the
            accumulated opacity (the expected depth of where the ray ends, whatever the alpha).
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
    opacity: Literal["sharpened", "linear"] = "sharpened"
    classes: Literal["joint", "conditional"] = "joint"
    target_alpha: bool = False
    target_sky: bool = False
    target_carve: bool = False
    carve_offset: float = 0.25
    carve_empty_weight: float | None = None
    target_depth_mode: Literal["rendered", "normalised"] = "rendered"

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
        if self.opacity not in ("sharpened", "linear"):
            raise ValueError(f"opacity must be 'sharpened' or 'linear', got {self.opacity!r}")
        if self.classes not in ("joint", "conditional"):
            raise ValueError(f"classes must be 'joint' or 'conditional', got {self.classes!r}")
        if self.target_depth_mode not in ("rendered", "normalised"):
            raise ValueError(f"target_depth_mode must be 'rendered' or 'normalised', got {self.target_depth_mode!r}")
        check_real("carve_offset", self.carve_offset, 0.0, 1.0)
        if self.carve_empty_weight is not None:
            check_real("carve_empty_weight", self.carve_empty_weight, 0.0, 1e3, low_open=True)
        for flag in ("target_alpha", "target_sky", "target_carve"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        if self.target_sky and not (self.target_alpha or self.target_carve):
            raise ValueError(
                "target_sky counts the pixels without a target depth in the target_alpha / target_carve "
                "terms: set one of them too"
            )
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
