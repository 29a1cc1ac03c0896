"""The per-view image terms of :class:`~gaussrender.GaussRenderLoss` (docs/method.md#loss).

Two families, one module:

* **rendered prediction vs rendered ground truth** (the paper's terms): :func:`semantic_term`
  and :func:`depth_term` compare two renders of the same views;
* **rendered prediction vs 2D targets** (LiDAR depth, 2D semantic maps; beyond the release):
  :func:`target_depth_term` and :func:`target_semantic_term` compare a render with sparse or
  dense images measured in those views, on their valid pixels only;
  :func:`target_alpha_term` asks the accumulated opacity to say where a ray ends on a surface
  (alpha 1) and, for dense targets, where it leaves the range through free space (alpha 0).

Every term is a mean per view, then a mean over the views (the views without a valid pixel
left out), so a view with many valid pixels weighs as much as one with few, as the
release's camera depth term does.
"""

from __future__ import annotations

import torch

from ..._checks import check_finite, check_floating, check_integer, check_shape, checks_enabled

__all__ = [
    "NO_TARGET",
    "semantic_term",
    "depth_term",
    "target_depth_term",
    "target_semantic_term",
    "target_alpha_term",
    "NORMALISE_MIN_ALPHA",
    "check_targets_2d",
]

#: The label of a 2D semantic target pixel that holds no label (as :func:`gaussrender.project_points`).
NO_TARGET = 255
#: Smallest probability a log is taken of (cross-entropy, KL).
_EPS = 1e-6
#: ``target_depth_mode="normalised"`` compares ``depth / alpha`` only on pixels whose alpha is
#: at least this (the ratio is 0/0 where nothing is rendered, and its gradient ``-depth/alpha²``
#: explodes near it); a fainter pixel is left to the alpha term.
NORMALISE_MIN_ALPHA = 1e-2


def _per_view_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``values``, ``valid`` ``[V, H, W]``: each view's mean over its valid pixels, then the
    mean over the views that have any (zero when none has)."""
    valid = valid.flatten(1)
    count = valid.sum(1)
    total = torch.where(valid, values.flatten(1), torch.zeros((), dtype=values.dtype, device=values.device)).sum(1)
    per_view = total / count.clamp_min(1)
    return per_view.sum() / (count > 0).sum().clamp_min(1)


def semantic_term(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Rendered class distributions ``[V, H, W, C]`` of prediction and ground truth: per pixel
    the L1 distance (mean over channels, the release), soft cross-entropy (``"ce"``) or KL
    (``"kl"``); mean over each view's pixels, then over the ``V`` views."""
    if kind == "l1":
        per_pixel = (pred - target).abs().mean(-1)
    else:
        log_pred = torch.log(pred.clamp_min(_EPS))
        if kind == "ce":
            per_pixel = -(target * log_pred).sum(-1)
        else:
            per_pixel = (target * (torch.log(target.clamp_min(_EPS)) - log_pred)).sum(-1)
    return per_pixel.flatten(1).mean(1).mean()


def depth_term(pred: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    """Rendered depths ``[V, H, W]`` (metres) of prediction and ground truth: per view, the
    mean absolute difference over the pixels whose ground-truth depth exceeds 0.1 m, divided
    by ``scale``; then the mean over the views that have such pixels (zero when none has)."""
    return _per_view_mean((pred - target).abs(), target > 0.1) / scale


def target_depth_term(
    pred: torch.Tensor, target: torch.Tensor, scale: float, alpha: torch.Tensor | None = None
) -> torch.Tensor:
    """Rendered depth ``[V, H, W]`` against a measured depth image ``[V, H, W]`` (metres, camera
    z, 0 = no measurement, e.g. a LiDAR scan through :func:`gaussrender.project_points`): the
    camera depth term's L1 / ``scale`` on the measured pixels.

    Without ``alpha`` the rendered depth is alpha-weighted and not normalised (``Σ α T z``, as
    every depth term here), so it reaches the measured depth only where the prediction is
    opaque: the term asks for a surface at the measured depth, not merely for the right
    expected depth. With the rendered accumulated opacity ``alpha [V, H, W]`` the depth is
    normalised, ``pred / alpha`` (the expected depth where the ray ends), on the measured
    pixels whose alpha is at least :data:`NORMALISE_MIN_ALPHA` (the others count as invalid).
    """
    valid = target > 0
    if alpha is not None:
        bright = alpha.detach() >= NORMALISE_MIN_ALPHA
        valid = valid & bright
        pred = pred / torch.where(bright, alpha, torch.ones((), dtype=alpha.dtype, device=alpha.device))
    return _per_view_mean((pred - target).abs(), valid) / scale


def target_alpha_term(alpha: torch.Tensor, target: torch.Tensor, sky: bool) -> torch.Tensor:
    """Accumulated opacity ``alpha = 1 - T`` ``[V, H, W]`` of the prediction against a depth
    image ``[V, H, W]`` (0 = no return): ``1 - alpha`` on the pixels with a return (the ray
    ends on a surface, so it must be opaque by then), and with ``sky`` also ``alpha`` on the
    pixels without one (the ray leaves the range through free space: nothing may stop it).
    Per view the mean over those pixels, then the mean over the views that have any.

    ``sky`` is for dense targets (a depth per pixel, e.g. ray casting into labels, where 0
    means "no surface within range"), not for a sparse LiDAR image whose empty pixels mostly
    had no beam.
    """
    hit = target > 0
    value = torch.where(hit, 1.0 - alpha, alpha)
    return _per_view_mean(value, torch.ones_like(hit) if sky else hit)


def target_semantic_term(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Rendered class distribution ``[V, H, W, C]`` against a 2D label map ``[V, H, W]``
    (integers, :data:`NO_TARGET` = unlabelled) on the labelled pixels: ``"l1"`` the L1
    distance to the one-hot label (mean over channels, as :func:`semantic_term`), ``"ce"`` and
    ``"kl"`` (equal for a one-hot target) ``-log p[label]``."""
    valid = target != NO_TARGET
    index = torch.where(valid, target, torch.zeros((), dtype=target.dtype, device=target.device)).long()
    picked = pred.gather(-1, index[..., None])[..., 0]  # p[label], [V, H, W]
    if kind == "l1":
        # |p - onehot| summed over channels = (1 - p[label]) + (sum_c p_c - p[label])
        per_pixel = (pred.sum(-1) - 2.0 * picked + 1.0) / pred.shape[-1]
    else:
        per_pixel = -torch.log(picked.clamp_min(_EPS))
    return _per_view_mean(per_pixel, valid)


def check_targets_2d(
    target_depth: torch.Tensor | None,
    target_semantics: torch.Tensor | None,
    batch: int,
    num_cameras: int,
    num_classes: int,
) -> tuple[int, int]:
    """Refuse, by name, 2D targets of the wrong shape, dtype or range; return their ``(H, W)``.

    ``target_depth`` ``[B, Ncam, H, W]`` floating, finite, >= 0 metres; ``target_semantics``
    ``[B, Ncam, H, W]`` integers in ``[0, num_classes)`` or :data:`NO_TARGET`; both (when both
    are given) of one size, at least 2 pixels a side.
    """
    size: tuple[int, int] | None = None
    if target_depth is not None:
        check_floating("target_depth", target_depth)
        dims = check_shape("target_depth", target_depth, [batch, num_cameras, "H", "W"])
        size = (dims["H"], dims["W"])
        check_finite("target_depth", target_depth)
        if checks_enabled() and target_depth.numel() and bool((target_depth < 0).any()):
            raise ValueError(
                f"target_depth must be >= 0 metres (0 = no measurement), got minimum {float(target_depth.min()):.3g}"
            )
    if target_semantics is not None:
        check_integer("target_semantics", target_semantics)
        expected: list[object] = [batch, num_cameras, "H", "W"] if size is None else [batch, num_cameras, *size]
        dims = check_shape("target_semantics", target_semantics, expected)
        size = (dims["H"], dims["W"]) if size is None else size
        if checks_enabled() and target_semantics.numel():
            values = target_semantics.long()
            bad = ((values < 0) | (values >= num_classes)) & (values != NO_TARGET)
            if bool(bad.any()):
                found = torch.unique(values[bad])[:5].tolist()
                raise ValueError(
                    f"target_semantics must hold class indices in [0, {num_classes}) or {NO_TARGET} "
                    f"(no label); found {found}"
                )
    if size is None:
        raise ValueError("check_targets_2d needs target_depth or target_semantics")
    if min(size) < 2:
        raise ValueError(f"2D targets must be at least 2x2 pixels, got {size[0]}x{size[1]}")
    return size
