"""The release's photometric distortion (mmdet3d PhotoMetricDistortionMultiViewImage, the copy in
the GaussRender release's dataset/pipeline.py; mmcv.bgr2hsv / hsv2bgr = OpenCV's float
conversions, color_hsv.simd.hpp RGB2HSV_f / HSV2RGB_native): each step against a float64
re-derivation written per pixel, the draws' order and odds, and the augmentation wiring."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch

from gaussrender.train.photometric import (
    FLT_EPSILON,
    PhotometricDraw,
    draw_photometric,
    hsv_to_rgb,
    photometric_distortion,
    rgb_to_hsv,
)

SECTORS = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))  # OpenCV's (b, g, r) rows


def _ref_rgb2hsv(r, g, b):
    v = max(r, g, b)
    vmin = min(r, g, b)
    diff = v - vmin
    s = diff / (abs(v) + FLT_EPSILON)
    k = 60.0 / (diff + FLT_EPSILON)
    if v == r:
        h = (g - b) * k
    elif v == g:
        h = (b - r) * k + 120.0
    else:
        h = (r - g) * k + 240.0
    if h < 0:
        h += 360.0
    return h, s, v


def _ref_hsv2rgb(h, s, v):
    if s == 0:
        return v, v, v
    h = math.fmod(h * 6.0 / 360.0, 6.0)
    sector = math.floor(h)
    h -= sector
    if not 0 <= sector < 6:
        sector, h = 0, 0.0
    tab = (v, v * (1 - s), v * (1 - s * h), v * (1 - s * (1 - h)))
    bi, gi, ri = SECTORS[sector]
    return tab[ri], tab[gi], tab[bi]


def _ref_distort(image: np.ndarray, d: PhotometricDraw) -> np.ndarray:
    """The release's __call__ on one image, float64, per pixel, RGB [3, H, W] on [0, 1]."""
    x = image.astype(np.float64) * 255.0
    if d.brightness is not None:
        x = x + d.brightness
    if d.contrast_first and d.contrast is not None:
        x = x * d.contrast
    out = np.empty_like(x)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            h, s, v = _ref_rgb2hsv(*x[:, i, j])
            if d.saturation is not None:
                s *= d.saturation
            if d.hue is not None:
                h += d.hue
                h = h - 360 if h > 360 else h
                h = h + 360 if h < 0 else h
            out[:, i, j] = _ref_hsv2rgb(h, s, v)
    x = out
    if not d.contrast_first and d.contrast is not None:
        x = x * d.contrast
    if d.permutation is not None:
        x = x[list(d.permutation)]
    return x / 255.0


def _image(seed: int, h: int = 6, w: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), generator=g).float() / 255.0
    img[:, 0, 0] = 0.5  # a gray pixel (S = 0)
    img[:, 0, 1] = torch.tensor([1.0, 1.0, 0.2])  # r == g, the max: OpenCV's r branch
    img[:, 0, 2] = torch.tensor([0.1, 0.9, 0.9])  # g == b, the max: the g branch
    return img


def test_rgb_to_hsv_matches_the_per_pixel_re_derivation_and_colorsys():
    x = _image(0).double() * 255.0
    x[:, 1] -= 40.0  # negative values: brightness is never clipped
    got = rgb_to_hsv(x)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            want = _ref_rgb2hsv(*x[:, i, j].tolist())
            np.testing.assert_allclose(got[:, i, j].numpy(), want, rtol=1e-12, atol=1e-9)
            r, g, b = x[:, i, j].tolist()
            if min(r, g, b) > 0 and max(r, g, b) > min(r, g, b) + 1:  # colorsys: no epsilon
                h, s, v = colorsys.rgb_to_hsv(r, g, b)
                np.testing.assert_allclose(got[:, i, j].numpy(), (360 * h, s, v), rtol=1e-6)
    # float32, as the release runs it
    torch.testing.assert_close(rgb_to_hsv(x.float()).double(), got, rtol=1e-5, atol=1e-3)


def test_hsv_to_rgb_matches_the_per_pixel_re_derivation():
    g = torch.Generator().manual_seed(1)
    hsv = torch.stack(
        [
            torch.rand(40, generator=g, dtype=torch.float64) * 360.0,
            torch.rand(40, generator=g, dtype=torch.float64) * 1.6,  # saturation may exceed 1
            torch.rand(40, generator=g, dtype=torch.float64) * 300.0 - 20.0,
        ]
    )
    hsv[:, 0] = torch.tensor([360.0, 0.5, 100.0])  # H = 360 reads as 0
    hsv[:, 1] = torch.tensor([-0.25, 0.5, 100.0])  # negative H: OpenCV's sector 0, f = 0
    hsv[:, 2] = torch.tensor([30.0, 0.0, 80.0])  # S = 0: gray
    got = hsv_to_rgb(hsv)
    for n in range(hsv.shape[1]):
        np.testing.assert_allclose(got[:, n].numpy(), _ref_hsv2rgb(*hsv[:, n].tolist()), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got[:, 0].numpy(), _ref_hsv2rgb(0.0, 0.5, 100.0), rtol=1e-12)


def test_the_hsv_round_trip_is_the_identity_up_to_rounding():
    x = _image(2).double() * 255.0
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "draw",
    [
        PhotometricDraw(),  # only the HSV round trip
        PhotometricDraw(brightness=-31.5),
        PhotometricDraw(contrast_first=True, contrast=1.4),
        PhotometricDraw(contrast_first=False, contrast=0.6),
        PhotometricDraw(saturation=1.45),
        PhotometricDraw(hue=17.0),
        PhotometricDraw(hue=-17.0),
        PhotometricDraw(permutation=(2, 0, 1)),
        PhotometricDraw(brightness=25.0, contrast_first=True, contrast=1.3, saturation=0.55, hue=-12.0),
        PhotometricDraw(brightness=-20.0, contrast=0.7, saturation=1.5, hue=18.0, permutation=(1, 2, 0)),
    ],
)
def test_each_step_matches_the_float64_re_derivation(draw):
    img = _image(3)
    want = _ref_distort(img.numpy(), draw)
    # float64: the same formulas
    np.testing.assert_allclose(photometric_distortion(img.double(), draw).numpy(), want, rtol=1e-10, atol=1e-10)
    # float32, the release's dtype: ~1e-5 of the 0-255 scale
    np.testing.assert_allclose(photometric_distortion(img, draw).double().numpy(), want, rtol=0, atol=2e-6)


def test_contrast_position_and_no_clipping():
    img = _image(4).double()
    first = photometric_distortion(img, PhotometricDraw(brightness=-32.0, contrast_first=True, contrast=1.5, hue=9.0))
    last = photometric_distortion(img, PhotometricDraw(brightness=-32.0, contrast_first=False, contrast=1.5, hue=9.0))
    # nothing is clipped and OpenCV's HSV scales with the pixel (V by alpha, H and S kept, up
    # to FLT_EPSILON), so the contrast step gives the same image before or after the colour
    # steps; only the order of the draws depends on the mode
    torch.testing.assert_close(first, last, rtol=0, atol=1e-6)
    assert float(first.min()) < 0.0  # a dark pixel minus 32 stays negative, as in the release
    over = photometric_distortion(torch.ones(3, 2, 2), PhotometricDraw(brightness=32.0))
    assert float(over.max()) == pytest.approx(1.0 + 32 / 255, rel=1e-6)


def test_draws_follow_the_release_order_and_odds():
    g = torch.Generator().manual_seed(0)
    draws = [draw_photometric(g) for _ in range(4000)]
    share = {
        "brightness": np.mean([d.brightness is not None for d in draws]),
        "contrast": np.mean([d.contrast is not None for d in draws]),
        "saturation": np.mean([d.saturation is not None for d in draws]),
        "hue": np.mean([d.hue is not None for d in draws]),
        "swap": np.mean([d.permutation is not None for d in draws]),
        "contrast_first": np.mean([d.contrast_first for d in draws]),
    }
    for name, p in share.items():
        assert abs(p - 0.5) < 0.03, (name, p)
    assert all(-32 <= d.brightness <= 32 for d in draws if d.brightness is not None)
    assert all(0.5 <= d.contrast <= 1.5 for d in draws if d.contrast is not None)
    assert all(0.5 <= d.saturation <= 1.5 for d in draws if d.saturation is not None)
    assert all(-18 <= d.hue <= 18 for d in draws if d.hue is not None)
    assert {d.permutation for d in draws if d.permutation is not None} == {
        (0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)
    }  # fmt: skip
    # seeded: the same generator state gives the same draws
    assert draw_photometric(torch.Generator().manual_seed(5)) == draw_photometric(torch.Generator().manual_seed(5))


def test_augment_views_applies_it_per_view_and_leaves_k_alone():
    from gaussrender.train.augment import augment_views
    from gaussrender.train.config import AugmentConfig

    images = torch.stack([_image(5), _image(6)])
    k = torch.tensor([[10.0, 0, 3.5], [0, 10.0, 3.0], [0, 0, 1]]).expand(2, 3, 3).clone()
    cfg = AugmentConfig(photometric=True)
    out, k_out = augment_views(images, k, cfg, torch.Generator().manual_seed(3))
    again, _ = augment_views(images, k, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(out, again) and torch.equal(k_out, k)
    # the same draws, made here: resize / offsets / flip draws first, then the distortion
    g = torch.Generator().manual_seed(3)
    for v in range(2):
        for _ in range(3 + 3):  # resize, x0, y0 uniforms; brightness, contrast, saturation factors
            torch.rand((), generator=g, dtype=torch.float64)
        d = draw_photometric(g)
        np.testing.assert_allclose(out[v].double().numpy(), _ref_distort(images[v].numpy(), d), rtol=0, atol=2e-6)
    plain, _ = augment_views(images, k, AugmentConfig(), torch.Generator().manual_seed(3))
    assert torch.equal(plain, images)


def test_the_release_paper_configs_turn_it_on():
    from pathlib import Path

    from gaussrender.train.config import load_config

    configs = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"
    for path in sorted(configs.glob("*.yaml")):
        on = load_config(str(path), []).data.augment.photometric
        # the GaussRender release's pipelines (tpvformer_*, surroundocc_*); Symphonies follows
        # its own release, which only flips; tiny/evidence configs are CPU checks
        assert on == path.name.startswith(("tpvformer_", "surroundocc_")), path.name
