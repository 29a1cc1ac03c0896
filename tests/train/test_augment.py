"""Augmentation keeps images and camera matrices consistent."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from gaussrender.train.augment import AugmentedDataset, PixelAffine, augment_views, photometric_jitter, warp_image
from gaussrender.train.config import AugmentConfig

H, W = 60, 96


def _blob_image(uv: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """[3, H, W] image with a bright Gaussian spot centred on pixel coordinates uv."""
    v = torch.arange(H, dtype=torch.float64)[:, None] + 0.5
    u = torch.arange(W, dtype=torch.float64)[None, :] + 0.5
    spot = torch.exp(-((u - uv[0]) ** 2 + (v - uv[1]) ** 2) / (2 * sigma**2))
    return spot.expand(3, H, W).float().contiguous()


def _peak(image: torch.Tensor) -> torch.Tensor:
    """Sub-pixel centroid of the spot (pixel coordinates)."""
    m = image[0].double()
    m = torch.where(m > 0.2 * m.max(), m, torch.zeros_like(m))
    v = torch.arange(H, dtype=torch.float64)[:, None] + 0.5
    u = torch.arange(W, dtype=torch.float64)[None, :] + 0.5
    return torch.stack([(m * u).sum() / m.sum(), (m * v).sum() / m.sum()])


def _camera():
    k = torch.tensor([[[80.0, 0, 48], [0, 80, 30], [0, 0, 1]]])
    pose = gr.look_at(torch.tensor([[0.0, 0, 1.5]]), torch.tensor([[10.0, 0, 1.0]]))
    return k, pose


@pytest.mark.parametrize("seed", range(8))
def test_point_projects_onto_same_content(seed):
    k, pose = _camera()
    g = torch.Generator().manual_seed(seed)
    # a 3D point inside the view, away from the borders
    point = torch.tensor(
        [
            [
                10.0,
                float(torch.empty(()).uniform_(-2, 2, generator=g)),
                float(torch.empty(()).uniform_(0.5, 1.8, generator=g)),
            ]
        ]
    )
    uv, _ = gr.Cameras(pose, k, W, H).project(point)
    image = _blob_image(uv[0, 0])
    cfg = AugmentConfig(flip=True, resize_scale=(0.8, 1.25))
    out, k2 = augment_views(image[None], k, cfg, g)
    uv2, _ = gr.Cameras(pose, k2.float(), W, H).project(point)
    if not (4 < uv2[0, 0, 0] < W - 4 and 4 < uv2[0, 0, 1] < H - 4):
        pytest.skip("this draw cropped the point out of view")
    assert torch.allclose(_peak(out[0]), uv2[0, 0].double(), atol=0.15), (_peak(out[0]), uv2[0, 0])


def test_flip_negates_u_axis_in_k():
    k, _ = _camera()
    g = torch.Generator().manual_seed(0)
    flips = 0
    for _ in range(10):
        img = torch.rand(1, 3, H, W)
        out, k2 = augment_views(img, k, AugmentConfig(flip=True), g)
        if k2[0, 0, 0] < 0:
            flips += 1
            torch.testing.assert_close(k2[0, 0], torch.tensor([-80.0, 0, W - 48]))
            torch.testing.assert_close(out, img.flip(-1))
        else:
            torch.testing.assert_close(out, img)
    assert 0 < flips < 10


def test_identity_config_changes_nothing():
    k, _ = _camera()
    img = torch.rand(2, 3, H, W)
    out, k2 = augment_views(img, k.expand(2, 3, 3), AugmentConfig(), torch.Generator().manual_seed(0))
    assert torch.equal(out, img) and torch.equal(k2, k.expand(2, 3, 3))


def test_pixel_affine_composition():
    a = PixelAffine(2.0, 0.5, 3.0, -1.0)
    b = PixelAffine(-1.0, 1.0, 10.0, 2.0)
    m = b.matrix(torch.float64) @ a.matrix(torch.float64)
    torch.testing.assert_close(a.then(b).matrix(torch.float64), m)


def test_warp_downscale_keeps_mean_colour():
    img = torch.rand(3, H, W)
    out = warp_image(img, PixelAffine(0.5, 0.5), (H // 2, W // 2))
    torch.testing.assert_close(out.mean((1, 2)), img.mean((1, 2)), atol=0.01, rtol=0)


def test_photometric_jitter():
    img = torch.rand(3, H, W) * 0.5
    torch.testing.assert_close(photometric_jitter(img, 1.0, 1.0, 1.0), img)
    torch.testing.assert_close(photometric_jitter(img, 1.5, 1.0, 1.0), img * 1.5)
    gray = photometric_jitter(img, 1.0, 1.0, 0.0)
    assert torch.allclose(gray[0], gray[1], atol=1e-6) and torch.allclose(gray[1], gray[2], atol=1e-6)
    flat = photometric_jitter(img, 1.0, 0.0, 1.0)
    assert flat.std() < 1e-6


def test_augmented_dataset_is_reproducible_per_epoch_and_index():
    k, _ = _camera()
    base = [
        {"images": torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(i)), "intrinsics": k.expand(2, 3, 3)}
        for i in range(3)
    ]
    cfg = AugmentConfig(flip=True, resize_scale=(0.9, 1.1), brightness=0.2)
    a = AugmentedDataset(base, cfg, seed=1)
    b = AugmentedDataset(base, cfg, seed=1)
    b.set_epoch(0)
    assert torch.equal(a[2]["images"], b[2]["images"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["images"], b[2]["images"])


def test_bad_input():
    k, _ = _camera()
    with pytest.raises(ValueError, match="images must have shape"):
        augment_views(torch.rand(3, H, W), k, AugmentConfig(), torch.Generator())
    with pytest.raises(ValueError, match="intrinsics must have shape"):
        augment_views(torch.rand(2, 3, H, W), k, AugmentConfig(), torch.Generator())
