"""Ground truth | prediction | error: the one comparison layout of every picture.

``gaussrender demo``, ``gaussrender view`` and the Lightning callback all lay a view out the
same way, left to right **ground truth, prediction, error**, semantics above depth:

* semantic error: the ground truth's colours faded to grey where both images show the same
  class (argmax of the rendered class features), :data:`ERROR_COLOR` where they differ, so
  a one-voxel shift shows as a red seam even when the two panels look alike;
* depth error: ``|prediction - ground truth|`` of the expected depths (alpha-weighted depth /
  alpha where alpha > 0.5) on a black-red-yellow-white scale up to ``max_error`` metres;
  pixels where neither image sees anything are black.

Panels smaller than :data:`MIN_PANEL_SIDE` pixels a side are enlarged by a whole factor
(nearest neighbour, every pixel stays a block of pixels), so a coarse render stays readable
and its captions do not overlap (:func:`enlarge`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .colors import _check_image, colorize_depth, colorize_semantics

__all__ = [
    "ORDER",
    "ERROR_COLOR",
    "MIN_PANEL_SIDE",
    "MAX_PANEL_SIDE",
    "enlarge",
    "class_error_image",
    "depth_error_image",
    "comparison_rows",
]

#: The order of the panels in every picture, left to right.
ORDER = ("ground truth", "prediction", "error")
#: Colour of the pixels whose classes differ.
ERROR_COLOR = (230, 25, 25)
#: A panel's shorter side is enlarged to at least this many pixels.
MIN_PANEL_SIDE = 64
#: ... unless its longer side would exceed this many.
MAX_PANEL_SIDE = 2048


def enlarge(image: np.ndarray, min_side: int = MIN_PANEL_SIDE, max_side: int = MAX_PANEL_SIDE) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``) repeated ``f x f`` per pixel, with the smallest whole
    ``f >= 1`` that makes ``min(H, W) * f >= min_side``, capped so that ``max(H, W) * f``
    stays within ``max_side`` (an image already that large is returned as it is)."""
    img = _check_image("image", image)
    short, long = min(img.shape[:2]), max(img.shape[:2])
    factor = max(1, min(math.ceil(min_side / short), max_side // long))
    if factor == 1:
        return img
    return np.ascontiguousarray(img.repeat(factor, axis=0).repeat(factor, axis=1))


def _gray(rgb: np.ndarray) -> np.ndarray:
    lum = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    faded = 150.0 + 0.4 * lum  # light grey: context, not a signal
    return np.repeat(np.clip(np.rint(faded), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def class_error_image(truth_classes: np.ndarray, pred_classes: np.ndarray, truth_rgb: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]``: ``truth_rgb`` faded to grey where the class maps ``[H, W]`` agree,
    :data:`ERROR_COLOR` where they differ."""
    if truth_classes.shape != pred_classes.shape or truth_rgb.shape[:2] != truth_classes.shape:
        raise ValueError(
            f"class maps and colours must share one size, got {truth_classes.shape}, {pred_classes.shape}, "
            f"{truth_rgb.shape[:2]}"
        )
    out = _gray(truth_rgb)
    out[truth_classes != pred_classes] = ERROR_COLOR
    return out


_HOT = np.array([[0, 0, 0], [180, 20, 20], [250, 120, 20], [255, 230, 60], [255, 255, 255]], dtype=np.float64)


def depth_error_image(truth_depth: np.ndarray, pred_depth: np.ndarray, max_error: float) -> np.ndarray:
    """``uint8 [H, W, 3]``: ``|pred - truth|`` (metres; depth ``<= 0`` = nothing seen, counted
    as 0 m) on a black-red-yellow-white scale, white at ``max_error`` and beyond; black where
    neither sees anything."""
    if not (math.isfinite(max_error) and max_error > 0):
        raise ValueError(f"max_error must be a positive number of metres, got {max_error!r}")
    t_depth, p_depth = np.asarray(truth_depth, np.float64), np.asarray(pred_depth, np.float64)
    if t_depth.shape != p_depth.shape or t_depth.ndim != 2:
        raise ValueError(f"depth images must be [H, W] of one size, got {t_depth.shape} and {p_depth.shape}")
    t_depth, p_depth = np.where(t_depth > 0, t_depth, 0.0), np.where(p_depth > 0, p_depth, 0.0)
    err = np.nan_to_num(np.abs(p_depth - t_depth), nan=max_error, posinf=max_error)
    pos = np.clip(err / max_error, 0.0, 1.0) * (len(_HOT) - 1)
    i0 = np.minimum(np.floor(pos).astype(int), len(_HOT) - 2)
    frac = (pos - i0)[..., None]
    rgb = _HOT[i0] * (1.0 - frac) + _HOT[i0 + 1] * frac
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def comparison_rows(
    truth: tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray],
    pred: tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray],
    colors: np.ndarray,
    depth_range: tuple[float, float],
    title: str,
    error: bool = True,
) -> tuple[list[list[np.ndarray]], list[list[str]]]:
    """The panels and captions of one view: ``[[truth, prediction, error] semantics,
    [truth, prediction, error] depth]`` (:data:`ORDER`), each panel enlarged by :func:`enlarge`.

    Args:
        truth, pred: ``(features [H, W, C], expected depth [H, W])`` of one view: the rendered
            class features and the expected depth in metres (0 = nothing seen).
        colors: ``uint8 [C, 3]`` palette.
        depth_range: ``(near, far)`` metres of the depth colours; the depth error's scale is
            a fifth of ``far - near``.
        title: the view's name, captioned above its first panel.
        error: add the error panels (False: ground truth | prediction only).
    """
    lo, hi = depth_range
    feats = [np.asarray(x[0].detach().cpu() if isinstance(x[0], torch.Tensor) else x[0]) for x in (truth, pred)]
    depths = [np.asarray(x[1].detach().cpu() if isinstance(x[1], torch.Tensor) else x[1]) for x in (truth, pred)]
    sem = [colorize_semantics(f.astype(np.float32), colors) for f in feats]
    dep = [colorize_depth(np.where(d > 0, np.maximum(d - lo, 1e-3), 0.0), hi - lo) for d in depths]
    captions = [[f"{title}: {ORDER[0]}", ORDER[1]], ["depth (near = yellow)", "depth"]]
    if error:
        max_error = (hi - lo) / 5.0
        sem.append(class_error_image(feats[0].argmax(-1), feats[1].argmax(-1), sem[0]))
        dep.append(depth_error_image(depths[0], depths[1], max_error))
        captions[0].append("error: classes differ (red)")
        captions[1].append(f"depth error (white >= {max_error:g} m)")
    return [[enlarge(x) for x in sem], [enlarge(x) for x in dep]], captions
