"""One render call of several sets of Gaussians, each in its own cameras (how the loss renders a
batch), gives every set exactly the images and gradients of rendering it alone."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from gaussrender.render.dispatch import GaussianSet, render_sets_unchecked, render_unchecked
from tests.render.oracle import oracle_render
from tests.render.scenes import random_cameras, random_gaussians

WIDTH, HEIGHT = 36, 28


def _sets(dtype=torch.float64, model="pinhole"):
    """Three sets of different sizes, views and dtypes of scales; set 1 has two views."""
    out = []
    for i, (n, views) in enumerate([(30, 1), (45, 2), (12, 1)]):
        means, opac, feat, scales = random_gaussians(n, 3, seed=10 + i, dtype=dtype)
        cams = random_cameras(views, WIDTH, HEIGHT, model, seed=20 + i, dtype=dtype)
        out.append(GaussianSet(means, opac, feat, scales, cams))
    return out


@pytest.mark.parametrize("model", ["pinhole", "orthographic"])
def test_each_set_renders_as_alone_and_as_the_oracle(model):
    sets = _sets(model=model)
    bg = torch.tensor([0.1, 0.0, 0.3], dtype=torch.float64)
    together = render_sets_unchecked(sets, bg, backend="torch")
    assert [r.features.shape[0] for r in together] == [1, 2, 1]
    for s, got in zip(sets, together, strict=True):
        alone = render_unchecked(s.means, s.opacities, s.features, s.scales, s.cameras, bg, backend="torch")
        for a, b in zip((got.features, got.depth, got.alpha), (alone.features, alone.depth, alone.alpha)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        c = s.cameras
        want = oracle_render(
            s.means, s.opacities, s.features, s.scales, c.cam_from_world, c.intrinsics, WIDTH, HEIGHT, model, c.near, bg
        )
        for a, b in zip((got.features, got.depth, got.alpha), want):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        assert float(got.alpha.max()) > 0.3, "each set should be visible in its views"


def test_gradients_reach_every_set_as_when_rendered_alone():
    g = torch.Generator().manual_seed(0)
    bg = torch.zeros(3, dtype=torch.float64)

    def leaves():
        return [
            GaussianSet(
                s.means.clone().requires_grad_(),
                s.opacities.clone().requires_grad_(),
                s.features.clone().requires_grad_(),
                s.scales.clone().requires_grad_(),
                s.cameras,
            )
            for s in _sets()
        ]

    weights = [torch.randn(len(s.cameras), HEIGHT, WIDTH, 3, generator=g, dtype=torch.float64) for s in _sets()]
    batched = leaves()
    images = render_sets_unchecked(batched, bg, backend="torch")
    sum(((r.features * w).sum() + r.depth.sum() / 7 for r, w in zip(images, weights, strict=True))).backward()
    for s, w in zip(leaves(), weights, strict=True):
        r = render_unchecked(s.means, s.opacities, s.features, s.scales, s.cameras, bg, backend="torch")
        ((r.features * w).sum() + r.depth.sum() / 7).backward()
        b = batched.pop(0)
        for name in ("means", "opacities", "features", "scales"):
            got, want = getattr(b, name).grad, getattr(s, name).grad
            assert want is not None and float(want.abs().max()) > 0, name
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def test_float32_sets_follow_the_first_sets_dtype():
    sets = [
        GaussianSet(s.means.float(), s.opacities.float(), s.features.float(), s.scales.float(), s.cameras)
        for s in _sets()
    ]
    out = render_sets_unchecked(sets, torch.zeros(3), backend="torch")
    assert all(r.features.dtype == torch.float32 for r in out)


def test_refuses_mixed_image_sizes_and_no_set():
    sets = _sets()
    other = random_cameras(1, WIDTH + 4, HEIGHT, seed=3)
    sets[2] = GaussianSet(sets[2].means, sets[2].opacities, sets[2].features, sets[2].scales, other)
    with pytest.raises(ValueError, match=r"sets\[2\]\.cameras are 40x28 pixels but sets\[0\]'s 36x28"):
        render_sets_unchecked(sets, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one GaussianSet"):
        render_sets_unchecked([], torch.zeros(3, dtype=torch.float64))


def test_loss_renders_a_batch_in_four_calls(monkeypatch):
    """GaussRenderLoss renders the whole batch per (view kind, prediction/truth): 4 calls for
    any batch size, and its terms equal the mean of the per-sample losses."""
    from gaussrender.render import _torch

    calls = []
    rasterize = _torch.rasterize_torch

    def counting(splats, *args, **kwargs):
        calls.append(splats.num_views)
        return rasterize(splats, *args, **kwargs)

    monkeypatch.setattr(_torch, "rasterize_torch", counting)
    grid = gr.VoxelGrid("sets_toy", (-4.0, -4.0, -1.0), (4.0, 4.0, 1.0), 0.5, (16, 16, 4), ("free", "car", "road"), 0)
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (3, *grid.shape), generator=g)
    logits = torch.randn(3, 3, *grid.shape, generator=g)
    k = torch.tensor([[20.0, 0, 16], [0, 20, 12], [0, 0, 1]]).expand(3, 2, 3, 3).contiguous()
    eye = torch.tensor([[0.0, 0, 0.5], [0.0, 0, 0.5]])
    pose = gr.look_at(eye, torch.tensor([[1.0, 0, 0.5], [-1.0, 0, 0.5]])).expand(3, 2, 4, 4).contiguous()
    loss = gr.GaussRenderLoss(grid, bev_size=24, seed=0, backend="torch", cameras_per_sample=2)
    loss.generator.manual_seed(0)
    whole = loss(logits, labels, k, pose, (24, 32))
    assert calls == [3 * 2, 3 * 2, 3, 3]  # cameras: prediction, truth; BEV: prediction, truth
    per_sample = []
    for b in range(3):
        loss.generator.manual_seed(0)  # the same camera draw
        per_sample.append(loss(logits[b : b + 1], labels[b : b + 1], k[b : b + 1], pose[b : b + 1], (24, 32)))
    for name in ("cam", "cam_depth", "bev", "bev_depth"):
        want = sum(float(o[name]) for o in per_sample) / 3
        assert abs(float(whole[name]) - want) < 1e-5 * max(1.0, abs(want)), name
    # on the CPU, calls are capped in Gaussians: with a cap of 1 every sample gets its own
    # call, and every term is the same
    import gaussrender.losses.render.renders as loss_module

    monkeypatch.setattr(loss_module, "CPU_GAUSSIANS_PER_CALL", 1)
    calls.clear()
    loss.generator.manual_seed(0)
    split = loss(logits, labels, k, pose, (24, 32))
    assert calls == [2] * 6 + [1] * 6
    for name in ("cam", "cam_depth", "bev", "bev_depth"):
        assert float(split[name]) == pytest.approx(float(whole[name]), rel=1e-6), name


def test_a_set_whose_scales_overflow_its_cameras_is_refused_in_a_batch():
    """The covariance range check reads every set's largest scale at once and still judges
    each set with its own scales and cameras."""
    sets = [
        GaussianSet(s.means.float(), s.opacities.float(), s.features.float(), s.scales.float(), s.cameras)
        for s in _sets()
    ]
    render_sets_unchecked(sets, torch.zeros(3), backend="torch")  # fine as they are
    bad = sets[1]
    sets[1] = GaussianSet(bad.means, bad.opacities, bad.features, torch.full_like(bad.scales, 1e17), bad.cameras)
    with pytest.raises(ValueError, match=r"scales up to 1e\+17 m"):
        render_sets_unchecked(sets, torch.zeros(3), backend="torch")
