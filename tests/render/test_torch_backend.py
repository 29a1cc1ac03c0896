"""The vectorised torch backend against the dense float64 oracle: forward and gradients."""

from __future__ import annotations

import importlib

import pytest
import torch

import gaussrender as gr
from tests.render.oracle import oracle_render
from tests.render.scenes import clamped_scene, random_cameras, random_gaussians

render_torch = importlib.import_module("gaussrender.render._torch").render_torch
project_gaussians = importlib.import_module("gaussrender.render._project").project_gaussians


def _oracle(means, opac, feats, scales, cams, bg=None):
    return oracle_render(
        means,
        opac,
        feats,
        scales,
        cams.cam_from_world,
        cams.intrinsics,
        cams.width,
        cams.height,
        cams.model,
        cams.near,
        bg,
    )


def _compare(out, ref, atol=1e-9):
    torch.testing.assert_close(out.features, ref[0], atol=atol, rtol=1e-7)
    torch.testing.assert_close(out.depth, ref[1], atol=atol, rtol=1e-7)
    torch.testing.assert_close(out.alpha, ref[2], atol=atol, rtol=1e-7)


@pytest.mark.parametrize("model", ["pinhole", "orthographic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_matches_oracle(model, seed):
    cams = random_cameras(3, 37, 29, model, seed=seed)
    means, opac, feats, scales = random_gaussians(80, 5, seed=seed)
    bg = torch.rand(5, dtype=torch.float64)
    out = gr.render(means, opac, feats, scales, cams, bg, backend="torch")
    _compare(out, _oracle(means, opac, feats, scales, cams, bg))


def test_float32_close_to_oracle():
    cams = random_cameras(2, 40, 30, seed=3)
    means, opac, feats, scales = random_gaussians(100, 4, seed=3)
    ref = _oracle(means, opac, feats, scales, cams)
    out = gr.render(
        means.float(), opac.float(), feats.float(), scales.float(), cams.to(dtype=torch.float32), backend="torch"
    )
    for a, b in zip((out.features, out.depth, out.alpha), ref):
        assert (a.double() - b).abs().max() < 1e-4 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("model", ["pinhole", "orthographic"])
def test_gradients_match_oracle(model):
    cams = random_cameras(2, 31, 23, model, seed=5)
    means, opac, feats, scales = random_gaussians(60, 3, seed=5)
    bg = torch.rand(3, dtype=torch.float64)
    wf = torch.randn(2, 23, 31, 3, dtype=torch.float64)
    wd = torch.randn(2, 23, 31, dtype=torch.float64)
    wa = torch.randn(2, 23, 31, dtype=torch.float64)

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (means, opac, feats, bg)]
        f, d, a = fn(*leaves)
        ((f * wf).sum() + (d * wd).sum() + (a * wa).sum()).backward()
        return [t.grad for t in leaves]

    def ours(m, o, f, b):
        out = gr.render(m, o, f, scales, cams, b, backend="torch")
        return out.features, out.depth, out.alpha

    got = grads(ours)
    want = grads(lambda m, o, f, b: _oracle(m, o, f, scales, cams, b))
    for name, g1, g2 in zip(("means", "opacities", "features", "background"), got, want):
        torch.testing.assert_close(g1, g2, atol=1e-8, rtol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_gradcheck_tiny_scene():
    cams = random_cameras(2, 9, 7, seed=7)
    means, opac, feats, scales = random_gaussians(6, 2, seed=7, spread=0.5)
    opac = opac.clamp(0.05, 0.9)  # keep away from the 0.99 clamp and the 1/255 threshold kinks

    def fn(m, o, f):
        out = render_torch(m, o, f, scales, cams, torch.zeros(2, dtype=torch.float64))
        return out.features, out.depth, out.alpha

    inputs = tuple(t.clone().requires_grad_() for t in (means, opac, feats))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_ties_keep_input_order_and_coincident_gaussians():
    cams = random_cameras(1, 24, 24, seed=1)
    # four Gaussians at the same place: the first listed is in front
    means = torch.zeros(4, 3, dtype=torch.float64)
    opac = torch.tensor([0.6, 0.6, 0.6, 0.6], dtype=torch.float64)
    feats = torch.eye(4, dtype=torch.float64)
    out = gr.render(means, opac, feats, 0.3, cams, backend="torch")
    ref = _oracle(means, opac, feats, 0.3, cams)
    _compare(out, ref)
    centre = out.features[0].reshape(-1, 4)[out.alpha[0].reshape(-1).argmax()]
    assert centre[0] > centre[1] > centre[2] > centre[3]


def test_behind_camera_offscreen_and_opaque_stacks():
    cams = random_cameras(2, 30, 20, seed=4)
    means, opac, feats, scales = random_gaussians(50, 3, seed=4)
    eye = cams.world_from_cam[:, :3, 3]
    back = cams.world_from_cam[:, :3, 2]
    behind = eye[0] - 2.0 * back[0]  # behind view 0
    near = eye[0] + 0.1 * back[0]  # inside the near plane of view 0
    stack = torch.zeros(30, 3, dtype=torch.float64) + 0.01 * torch.arange(30, dtype=torch.float64)[:, None]
    extra = torch.cat([behind[None], near[None], torch.tensor([[40.0, 40.0, 0.0]], dtype=torch.float64), stack])
    means = torch.cat([means, extra])
    opac = torch.cat([opac, torch.ones(extra.shape[0], dtype=torch.float64)])
    feats = torch.cat([feats, torch.rand(extra.shape[0], 3, dtype=torch.float64)])
    scales = torch.cat([scales, torch.full((extra.shape[0],), 0.3, dtype=torch.float64)])
    out = gr.render(means, opac, feats, scales, cams, backend="torch")
    _compare(out, _oracle(means, opac, feats, scales, cams))
    # the opaque stack terminates pixels: transmittance never drops below 1e-4
    assert float(out.alpha.max()) <= 1 - 1e-4 + 1e-12


@pytest.mark.parametrize("tile,depth_chunk,max_elements", [(4, 3, 500), (16, 64, 1 << 20), (8, 1, 64)])
def test_result_independent_of_tiles_and_chunks(tile, depth_chunk, max_elements):
    cams = random_cameras(2, 33, 21, seed=8)
    means, opac, feats, scales = random_gaussians(70, 4, seed=8)
    bg = torch.zeros(4, dtype=torch.float64)
    ref = _oracle(means, opac, feats, scales, cams)
    out = render_torch(
        means, opac, feats, scales, cams, bg, depth_chunk=depth_chunk, max_elements=max_elements, tile=tile
    )
    _compare(out, ref)


@pytest.mark.parametrize("keep_elements", [0, 3000, 1 << 24])
def test_gradients_independent_of_what_the_forward_pass_keeps(keep_elements):
    # nothing kept (all recomputed), a prefix of the slices kept, everything kept: the
    # backward pass must give the same gradients, equal to the oracle's
    cams = random_cameras(2, 33, 21, seed=9)
    means, opac, feats, scales = random_gaussians(60, 3, seed=9)
    bg = torch.zeros(3, dtype=torch.float64)

    def grads(keep):
        inputs = [t.clone().requires_grad_() for t in (means, opac, feats)]
        out = render_torch(*inputs, scales, cams, bg, depth_chunk=4, max_elements=800, keep_elements=keep)
        (out.features.square().sum() + out.depth.sum() + out.alpha.sum()).backward()
        return [t.grad for t in inputs]

    for got, want in zip(grads(keep_elements), grads(0), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_large_gaussian_reaches_every_pixel_it_should():
    # one huge faint Gaussian: its alpha >= 1/255 footprint extends far beyond 3 sigma
    cams = random_cameras(1, 40, 40, seed=2)
    means = torch.zeros(1, 3, dtype=torch.float64)
    for opacity in (1.0, 0.05, 1.5 / 255):
        opac = torch.tensor([opacity], dtype=torch.float64)
        feats = torch.ones(1, 1, dtype=torch.float64)
        out = gr.render(means, opac, feats, 0.8, cams, backend="torch")
        ref = _oracle(means, opac, feats, 0.8, cams)
        _compare(out, ref)
        assert (out.alpha > 0).sum() == (ref[2] > 0).sum()


def test_empty_scene_and_culled_gaussians():
    cams = random_cameras(2, 16, 12, seed=0)
    bg = torch.tensor([0.0, 1.0], dtype=torch.float64)
    empty = gr.render(
        torch.zeros(0, 3, dtype=torch.float64),
        torch.zeros(0, dtype=torch.float64),
        torch.zeros(0, 2, dtype=torch.float64),
        0.3,
        cams,
        bg,
        backend="torch",
    )
    assert torch.equal(empty.features, bg.expand(2, 12, 16, 2))
    assert empty.alpha.abs().max() == 0 and empty.depth.abs().max() == 0
    faint = gr.render(
        torch.zeros(3, 3, dtype=torch.float64),
        torch.full((3,), 0.5 / 255, dtype=torch.float64),
        torch.ones(3, 2, dtype=torch.float64),
        0.3,
        cams,
        bg,
        backend="torch",
    )
    assert faint.alpha.abs().max() == 0


def test_bad_input_names_the_argument():
    cams = random_cameras(1, 8, 8, dtype=torch.float32)
    m, o, f = torch.zeros(2, 3), torch.ones(2), torch.ones(2, 3)
    with pytest.raises(ValueError, match="means"):
        gr.render(torch.zeros(2, 2), o, f, 0.3, cams)
    with pytest.raises(ValueError, match="opacities"):
        gr.render(m, torch.ones(3), f, 0.3, cams)
    with pytest.raises(ValueError, match="features"):
        gr.render(m, o, torch.ones(3, 3), 0.3, cams)
    with pytest.raises(TypeError, match="means"):
        gr.render(m.long(), o, f, 0.3, cams)
    with pytest.raises(ValueError, match="NaN"):
        gr.render(torch.tensor([[0.0, 0.0, float("nan")]] * 2), o, f, 0.3, cams)
    with pytest.raises(ValueError, match="opacities"):
        gr.render(m, torch.tensor([0.5, 1.5]), f, 0.3, cams)
    with pytest.raises(ValueError, match="scales"):
        gr.render(m, o, f, -1.0, cams)
    with pytest.raises(ValueError, match="background"):
        gr.render(m, o, f, 0.3, cams, background=torch.zeros(2))
    with pytest.raises(TypeError, match="cameras"):
        gr.render(m, o, f, 0.3, "camera")
    with pytest.raises(ValueError, match="backend"):
        gr.render(m, o, f, 0.3, cams, backend="cuda")


def test_near_plane_gaussians_far_off_screen_do_not_smear():
    # 3DGS clamps the Jacobian's direction to 1.3x the field of view; without it this
    # Gaussian, 0.5 m ahead and 5 m to the side, would cover the whole image.
    k = torch.tensor([[[40.0, 0.0, 20.0], [0.0, 40.0, 15.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    cams = gr.Cameras(torch.eye(4, dtype=torch.float64)[None], k, 40, 30)
    means = torch.tensor([[5.0, 0.0, 0.5], [0.0, -4.0, 0.45], [0.2, 0.1, 3.0]], dtype=torch.float64)
    opac = torch.tensor([1.0, 0.9, 0.5], dtype=torch.float64)
    feats = torch.eye(3, dtype=torch.float64)
    out = gr.render(means, opac, feats, 0.3, cams, backend="torch")
    _compare(out, _oracle(means, opac, feats, 0.3, cams))
    side_only = gr.render(means[:2], opac[:2], feats[:2], 0.3, cams, backend="torch")
    assert float(side_only.alpha.max()) == 0.0  # unclamped, they would reach alpha ~0.2 here


def test_alpha_clamp_is_straight_through():
    # o · G > 0.99 at the pixels of `clamped`: alpha is 0.99 there, yet (3DGS rasteriser,
    # GaussRender release) its gradient passes the clamp, d alpha / d (o G) = 1
    cams, means, opac, feats, scales, clamped = clamped_scene()
    assert int(clamped.sum()) >= 5

    def grads(fn, weight):
        leaves = [t.clone().requires_grad_() for t in (means, opac, feats)]
        f, d, a = fn(*leaves)
        ((a * weight).sum() + (f * weight[..., None]).sum() + 0.1 * (d * weight).sum()).backward()
        return [t.grad for t in leaves]

    def ours(m, o, f):
        out = gr.render(m, o, f, scales, cams, backend="torch")
        return out.features, out.depth, out.alpha

    def oracle(m, o, f):
        return _oracle(m, o, f, scales, cams)

    # only the clamped pixels: the opaque Gaussian's opacity gradient is not zero
    only = clamped.double()
    got, want = grads(ours, only), grads(oracle, only)
    assert float(got[1][0].abs()) > 0.1
    for name, g1, g2 in zip(("means", "opacities", "features"), got, want):
        torch.testing.assert_close(g1, g2, atol=1e-9, rtol=1e-7, msg=lambda m, name=name: f"{name}: {m}")
    # a single opaque Gaussian alone: alpha = min(0.99, o G) with o = 1, so the
    # straight-through d(sum of clamped alphas)/do is the sum of G there, each above 0.99
    alone = gr.render(means[:1], opac[:1].clone().requires_grad_(), feats[:1], scales[:1], cams, backend="torch")
    assert torch.all(alone.alpha[clamped] == 0.99)
    leaf = opac[:1].clone().requires_grad_()
    alone = gr.render(means[:1], leaf, feats[:1], scales[:1], cams, backend="torch")
    (alone.alpha * only).sum().backward()
    count = int(clamped.sum())
    assert 0.99 * count < float(leaf.grad[0]) <= count
    # everywhere (random weights), still the oracle's gradients
    wgt = torch.randn(1, 30, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, g1, g2 in zip(("means", "opacities", "features"), grads(ours, wgt), grads(oracle, wgt)):
        torch.testing.assert_close(g1, g2, atol=1e-9, rtol=1e-7, msg=lambda m, name=name: f"{name}: {m}")


def test_jacobian_clamp_is_symmetric_whatever_the_principal_point():
    # cx = 0 (as the KITTI-360 BEV): the 3DGS rasteriser clamps x/z to +-1.3 W / (2 fx) = 0.65,
    # not to [-0.15, 1.15] (the image borders + 15 %, which depend on cx)
    fx, width, height, z, s = 40.0, 40, 30, 2.0, 0.3
    k = torch.tensor([[[fx, 0.0, 0.0], [0.0, fx, 15.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    cams = gr.Cameras(torch.eye(4, dtype=torch.float64)[None], k, width, height)
    means = torch.tensor([[0.9 * z, 0.0, z], [-0.1 * z, 0.0, z]], dtype=torch.float64)
    proj = project_gaussians(means, torch.ones(2, dtype=torch.float64), torch.full((2,), s, dtype=torch.float64), cams)
    for i, xz in enumerate((0.65, -0.1)):  # clamped, then inside the limits
        # J = [[fx/z, 0, -fx xz / z], [0, fx/z, 0]] at y = 0
        cov_xx = s * s * (fx / z) ** 2 * (1 + xz * xz) + 0.3
        cov_yy = s * s * (fx / z) ** 2 + 0.3
        want = torch.tensor([1 / cov_xx, 0.0, 1 / cov_yy], dtype=torch.float64)
        torch.testing.assert_close(proj.conics[0, i], want, atol=1e-12, rtol=1e-10)
    feats = torch.eye(2, dtype=torch.float64)
    out = gr.render(means, torch.ones(2, dtype=torch.float64), feats, s, cams, backend="torch")
    _compare(out, _oracle(means, torch.ones(2, dtype=torch.float64), feats, s, cams))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CPU-vs-GPU check runs on a GPU machine")
def test_cuda_matches_cpu():
    cams = random_cameras(2, 40, 30, seed=11, dtype=torch.float32)
    means, opac, feats, scales = (t.float() for t in random_gaussians(120, 6, seed=11))
    opac = opac.clamp(max=0.95)  # away from the T = 1e-4 boundary that two 0.99 alphas hit exactly
    outs = []
    for device in ("cpu", "cuda"):
        leaves = [t.to(device).requires_grad_() for t in (means, opac, feats)]
        out = gr.render(*leaves, scales.to(device), cams.to(device), backend="torch")
        (out.features.square().sum() + out.depth.sum()).backward()
        outs.append([out.features, out.depth, out.alpha] + [t.grad for t in leaves])
    for a, b in zip(*outs):
        torch.testing.assert_close(a.cpu(), b.cpu(), atol=1e-4, rtol=1e-4)
