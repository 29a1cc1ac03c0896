"""The release's multi-view photometric distortion, seeded like the rest of the augmentation.

The GaussRender release trains every benchmark with mmdet3d's
``PhotoMetricDistortionMultiViewImage`` (its own copy in ``dataset/pipeline.py``, after
``ResizeCropFlipImage``). Per camera image, float32 pixel values on 0-255, draws in this order,
each step with probability 0.5:

1. brightness: ``x += delta``, ``delta ~ U(-32, 32)``;
2. ``mode ~ {0, 1}``; with mode 1 the contrast step comes here: ``x *= alpha``,
   ``alpha ~ U(0.5, 1.5)``;
3. ``mmcv.bgr2hsv`` (OpenCV's float conversion: H in degrees ``[0, 360)``, S = (max - min) /
   (|max| + FLT_EPSILON), V = max on the same 0-255 scale);
4. saturation: ``S *= U(0.5, 1.5)``;
5. hue: ``H += U(-18, 18)``, then ``H -= 360`` where ``H > 360`` and ``H += 360`` where
   ``H < 0`` (``H = 360`` stays and reads as 0);
6. ``mmcv.hsv2bgr`` (OpenCV's float conversion, sector ``floor(fmod(H / 60, 6))``);
7. with mode 0 the contrast step comes here;
8. channel swap: a random permutation of the three channels.

Nothing is clipped: values may leave 0-255 (a dark pixel minus 32 stays negative, a saturation
above 1 overshoots), and the network reads them as they are, as in the release. Without
clipping, OpenCV's HSV scales with the pixel (V by the factor, H and S kept, up to
FLT_EPSILON), so the contrast step gives the same image in either position; the mode still
decides the order of the draws. (The code's
comments say "mode 0: contrast first"; the code does the opposite, reproduced here.)

Conventions: the release's images are BGR (``mmcv.imread``); ours are RGB in ``[0, 1]``. The
HSV of a pixel is the same whichever order its channels are stored in, so the conversion is
done on RGB; a uniform random permutation of BGR channels and of RGB channels has the same
distribution. Draws come from a :class:`torch.Generator` (the release's use ``numpy.random``):
the distributions are the release's, the individual draws are not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "PhotometricDraw",
    "draw_photometric",
    "photometric_distortion",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "FLT_EPSILON",
]

#: OpenCV's epsilon in its float HSV conversion (C's ``FLT_EPSILON``).
FLT_EPSILON = 1.1920928955078125e-07

# OpenCV's HSV2RGB_native: for each sector, the table entries that give (b, g, r), with
# tab = [v, v (1 - s), v (1 - s f), v (1 - s (1 - f))]
_SECTOR_BGR = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))


@dataclass(frozen=True)
class PhotometricDraw:
    """One image's draws; ``None``: the step is skipped.

    Attributes:
        brightness: added to every channel, on the 0-255 scale.
        contrast_first: the release's ``mode == 1`` (contrast before the colour steps).
        contrast: channel factor.
        saturation: factor of S.
        hue: added to H, degrees.
        permutation: output channel ``c`` takes input channel ``permutation[c]``.
    """

    brightness: float | None = None
    contrast_first: bool = False
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None
    permutation: tuple[int, int, int] | None = None


def _coin(g: torch.Generator) -> bool:
    return bool(torch.randint(2, (), generator=g))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def draw_photometric(
    generator: torch.Generator,
    brightness_delta: float = 32.0,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: float = 18.0,
) -> PhotometricDraw:
    """Draw one image's distortion in the release's order (its defaults as defaults)."""
    g = generator
    brightness = _uniform(g, -brightness_delta, brightness_delta) if _coin(g) else None
    contrast_first = _coin(g)
    contrast = None
    if contrast_first and _coin(g):
        contrast = _uniform(g, *contrast_range)
    saturation = _uniform(g, *saturation_range) if _coin(g) else None
    hue = _uniform(g, -hue_delta, hue_delta) if _coin(g) else None
    if not contrast_first and _coin(g):
        contrast = _uniform(g, *contrast_range)
    permutation = None
    if _coin(g):
        p = torch.randperm(3, generator=g).tolist()
        permutation = (p[0], p[1], p[2])
    return PhotometricDraw(brightness, contrast_first, contrast, saturation, hue, permutation)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """OpenCV's float RGB -> HSV (``hrange`` 360) of ``rgb [3, ...]``; returns ``[3, ...]`` (H, S, V).

    ``V = max``, ``S = (V - min) / (|V| + eps)``, ``H = 60 (g - b) / (V - min + eps)`` where
    ``V == r``, ``120 + 60 (b - r) / (...)`` where ``V == g``, ``240 + 60 (r - g) / (...)``
    otherwise, plus 360 where negative.
    """
    r, g, b = rgb.unbind(0)
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    s = diff / (v.abs() + FLT_EPSILON)
    k = 60.0 / (diff + FLT_EPSILON)
    h = torch.where(v == r, (g - b) * k, torch.where(v == g, (b - r) * k + 120.0, (r - g) * k + 240.0))
    h = torch.where(h < 0, h + 360.0, h)
    return torch.stack([h, s, v])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """OpenCV's float HSV -> RGB (``hrange`` 360) of ``hsv [3, ...]``; returns ``[3, ...]`` RGB.

    ``h6 = fmod(H / 60, 6)``, ``sector = floor(h6)``, ``f = h6 - sector`` (a sector outside
    0..5, from a negative H, reads as sector 0 with f = 0); ``S = 0`` gives gray ``V``.
    """
    h, s, v = hsv.unbind(0)
    h6 = torch.fmod(h * (6.0 / 360.0), 6.0)
    sector = torch.floor(h6)
    f = h6 - sector
    bad = (sector < 0) | (sector >= 6)
    sector = torch.where(bad, torch.zeros_like(sector), sector).long()
    f = torch.where(bad, torch.zeros_like(f), f)
    tab = torch.stack([v, v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))])
    pick = torch.tensor(_SECTOR_BGR, device=hsv.device)[sector]  # [..., 3]: table rows of b, g, r
    bgr = [tab.gather(0, pick[..., i][None])[0] for i in range(3)]
    gray = s == 0
    return torch.stack([torch.where(gray, v, bgr[2]), torch.where(gray, v, bgr[1]), torch.where(gray, v, bgr[0])])


def photometric_distortion(image: torch.Tensor, draw: PhotometricDraw) -> torch.Tensor:
    """Apply ``draw`` to ``image [3, H, W]`` RGB on ``[0, 1]``; returns the same scale, unclipped.

    The steps run on ``255 x image`` in the image's dtype (the release: float32 on 0-255).
    """
    x = image * 255.0
    if draw.brightness is not None:
        x = x + draw.brightness
    if draw.contrast_first and draw.contrast is not None:
        x = x * draw.contrast
    # the release converts to HSV and back whatever it drew (the round trip is not exact)
    h, s, v = rgb_to_hsv(x).unbind(0)
    if draw.saturation is not None:
        s = s * draw.saturation
    if draw.hue is not None:
        h = h + draw.hue
        h = torch.where(h > 360.0, h - 360.0, h)
        h = torch.where(h < 0.0, h + 360.0, h)
    x = hsv_to_rgb(torch.stack([h, s, v]))
    if not draw.contrast_first and draw.contrast is not None:
        x = x * draw.contrast
    if draw.permutation is not None:
        x = x[list(draw.permutation)]
    return x / 255.0
