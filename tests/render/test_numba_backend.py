"""The numba backend (fused CPU kernels) against the dense float64 oracle, forward and gradients,
at the torch backend's tolerances; plus what only this backend has: thread counts, tile sizes,
the automatic choice, and its on-disk compile cache."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gaussrender as gr
from gaussrender.render import dispatch
from gaussrender.render.dispatch import GaussianSet, render_sets_unchecked, render_unchecked
from tests.render.oracle import oracle_render
from tests.render.scenes import clamped_scene, random_cameras, random_gaussians

pytest.importorskip("numba", reason="numba is not installed: the numba backend cannot run")

_numba = importlib.import_module("gaussrender.render._numba")
render_numba = _numba.render_numba
ROOT = Path(__file__).resolve().parents[2]


def _oracle(means, opac, feats, scales, cams, bg=None):
    c = cams
    return oracle_render(
        means, opac, feats, scales, c.cam_from_world, c.intrinsics, c.width, c.height, c.model, c.near, bg
    )


def _compare(out, ref, atol=1e-9, rtol=1e-7):
    for name, got, want in zip(("features", "depth", "alpha"), (out.features, out.depth, out.alpha), ref):
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol, msg=lambda m, name=name: f"{name}: {m}")


def _grads(fn, inputs, weights):
    leaves = [t.clone().requires_grad_() for t in inputs]
    outs = fn(*leaves)
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    return [t.grad for t in leaves]


def _weights(views, height, width, channels, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(views, height, width, channels, generator=g, dtype=dtype),
        torch.randn(views, height, width, generator=g, dtype=dtype),
        torch.randn(views, height, width, generator=g, dtype=dtype),
    ]


@pytest.mark.parametrize("model", ["pinhole", "orthographic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_matches_oracle(model, seed):
    cams = random_cameras(3, 37, 29, model, seed=seed)
    means, opac, feats, scales = random_gaussians(80, 5, seed=seed)
    bg = torch.rand(5, dtype=torch.float64)
    out = gr.render(means, opac, feats, scales, cams, bg, backend="numba")
    _compare(out, _oracle(means, opac, feats, scales, cams, bg))


def test_float32_close_to_oracle_and_torch():
    cams = random_cameras(2, 40, 30, seed=3)
    means, opac, feats, scales = random_gaussians(100, 4, seed=3)
    ref = _oracle(means, opac, feats, scales, cams)
    inputs = (means.float(), opac.float(), feats.float(), scales.float(), cams.to(dtype=torch.float32))
    out = gr.render(*inputs, backend="numba")
    assert out.features.dtype == torch.float32
    for a, b in zip((out.features, out.depth, out.alpha), ref):
        assert (a.double() - b).abs().max() < 1e-4 * max(1.0, float(b.abs().max()))
    other = gr.render(*inputs, backend="torch")
    for a, b in zip((out.features, out.depth, out.alpha), (other.features, other.depth, other.alpha)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("model,channels", [("pinhole", 3), ("orthographic", 3), ("pinhole", 1), ("pinhole", 19)])
def test_gradients_match_oracle(model, channels):
    cams = random_cameras(2, 31, 23, model, seed=5)
    means, opac, feats, scales = random_gaussians(60, channels, seed=5)
    bg = torch.rand(channels, dtype=torch.float64)
    weights = _weights(2, 23, 31, channels)

    def ours(m, o, f, b):
        out = gr.render(m, o, f, scales, cams, b, backend="numba")
        return out.features, out.depth, out.alpha

    got = _grads(ours, (means, opac, feats, bg), weights)
    want = _grads(lambda m, o, f, b: _oracle(m, o, f, scales, cams, b), (means, opac, feats, bg), weights)
    for name, g1, g2 in zip(("means", "opacities", "features", "background"), got, want):
        torch.testing.assert_close(g1, g2, atol=1e-8, rtol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_float32_gradients_close_to_oracle():
    """The float32 path (the loss's) against the float64 oracle, at the Triton tests' tolerance."""
    cams = random_cameras(2, 31, 23, seed=6)
    means, opac, feats, scales = random_gaussians(60, 5, seed=6)
    opac = opac.clamp(max=0.95)  # away from the T = 1e-4 boundary that two 0.99 alphas hit exactly
    bg = torch.rand(5, dtype=torch.float64)
    weights = _weights(2, 23, 31, 5)
    cams32 = cams.to(dtype=torch.float32)

    def ours(m, o, f, b):
        out = gr.render(m, o, f, scales.float(), cams32, b, backend="numba")
        return out.features, out.depth, out.alpha

    got = _grads(ours, [t.float() for t in (means, opac, feats, bg)], [w.float() for w in weights])
    want = _grads(lambda m, o, f, b: _oracle(m, o, f, scales, cams, b), (means, opac, feats, bg), weights)
    for name, g1, g2 in zip(("means", "opacities", "features", "background"), got, want):
        scale = float(g2.abs().max())
        torch.testing.assert_close(
            g1.double(), g2, rtol=1e-4, atol=2e-6 * scale, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_gradcheck_tiny_scene():
    cams = random_cameras(2, 9, 7, seed=7)
    means, opac, feats, scales = random_gaussians(6, 2, seed=7, spread=0.5)
    opac = opac.clamp(0.05, 0.9)  # keep away from the 0.99 clamp and the 1/255 threshold kinks
    bg = torch.tensor([0.2, 0.7], dtype=torch.float64)

    def fn(m, o, f, b):
        out = render_numba(m, o, f, scales, cams, b)
        return out.features, out.depth, out.alpha

    inputs = tuple(t.clone().requires_grad_() for t in (means, opac, feats, bg))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_ties_keep_input_order():
    cams = random_cameras(1, 24, 24, seed=1)
    means = torch.zeros(4, 3, dtype=torch.float64)
    opac = torch.full((4,), 0.6, dtype=torch.float64)
    feats = torch.eye(4, dtype=torch.float64)
    out = gr.render(means, opac, feats, 0.3, cams, backend="numba")
    _compare(out, _oracle(means, opac, feats, 0.3, cams))
    centre = out.features[0].reshape(-1, 4)[out.alpha[0].reshape(-1).argmax()]
    assert centre[0] > centre[1] > centre[2] > centre[3]


def test_behind_camera_offscreen_and_opaque_stacks():
    cams = random_cameras(2, 30, 20, seed=4)
    means, opac, feats, scales = random_gaussians(50, 3, seed=4)
    eye = cams.world_from_cam[:, :3, 3]
    back = cams.world_from_cam[:, :3, 2]
    stack = torch.zeros(30, 3, dtype=torch.float64) + 0.01 * torch.arange(30, dtype=torch.float64)[:, None]
    extra = torch.cat(
        [(eye[0] - 2.0 * back[0])[None], (eye[0] + 0.1 * back[0])[None], torch.tensor([[40.0, 40.0, 0.0]]), stack]
    )
    means = torch.cat([means, extra])
    opac = torch.cat([opac, torch.ones(extra.shape[0], dtype=torch.float64)])
    feats = torch.cat([feats, torch.rand(extra.shape[0], 3, dtype=torch.float64)])
    scales = torch.cat([scales, torch.full((extra.shape[0],), 0.3, dtype=torch.float64)])
    out = gr.render(means, opac, feats, scales, cams, backend="numba")
    _compare(out, _oracle(means, opac, feats, scales, cams))
    assert float(out.alpha.max()) <= 1 - 1e-4 + 1e-12


def test_opaque_stack_stops_exactly_and_nothing_behind_gets_gradient():
    # wide opaque Gaussians stacked along the axis of an orthographic view: every pixel stops
    # within the first few, the rest neither change the image nor get gradient
    k = torch.tensor([[[4.0, 0.0, 20.0], [0.0, 4.0, 15.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    cams = gr.Cameras(torch.eye(4, dtype=torch.float64)[None], k, 40, 30, model="orthographic")
    n = 12
    means = torch.zeros(n, 3, dtype=torch.float64)
    means[:, 2] = torch.arange(n, dtype=torch.float64) + 2.0
    means[:, 0] = torch.linspace(-0.3, 0.3, n, dtype=torch.float64)
    opac = torch.full((n,), 0.93, dtype=torch.float64)
    feats = torch.rand(n, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bg = torch.ones(6, dtype=torch.float64)
    scales = torch.full((n,), 30.0, dtype=torch.float64)
    leaf = feats.clone().requires_grad_()
    out = gr.render(means, opac, leaf, scales, cams, bg, backend="numba")
    _compare(out, _oracle(means, opac, feats, scales, cams, bg))
    assert float(out.alpha.min()) > 1 - 1e-3
    out.features.sum().backward()
    assert torch.equal(leaf.grad[5:], torch.zeros_like(leaf.grad[5:]))
    assert bool((leaf.grad[:3].abs() > 0).all())
    changed = feats.clone()
    changed[5:] = 100.0
    again = gr.render(means, opac, changed, scales, cams, bg, backend="numba")
    assert torch.equal(again.features, out.features.detach())


def test_large_gaussian_reaches_every_pixel_it_should():
    cams = random_cameras(1, 40, 40, seed=2)
    means = torch.zeros(1, 3, dtype=torch.float64)
    for opacity in (1.0, 0.05, 1.5 / 255):
        opac = torch.tensor([opacity], dtype=torch.float64)
        feats = torch.ones(1, 1, dtype=torch.float64)
        out = gr.render(means, opac, feats, 0.8, cams, backend="numba")
        ref = _oracle(means, opac, feats, 0.8, cams)
        _compare(out, ref)
        assert (out.alpha > 0).sum() == (ref[2] > 0).sum()


def test_empty_scene_faint_gaussians_and_nothing_visible():
    cams = random_cameras(2, 16, 12, seed=0)
    bg = torch.tensor([0.0, 1.0], dtype=torch.float64)
    z = torch.zeros(0, dtype=torch.float64)
    empty = gr.render(z.view(0, 3), z, z.view(0, 2), 0.3, cams, bg, backend="numba")
    assert torch.equal(empty.features, bg.expand(2, 12, 16, 2))
    assert empty.alpha.abs().max() == 0 and empty.depth.abs().max() == 0
    faint = gr.render(
        torch.zeros(3, 3, dtype=torch.float64),
        torch.full((3,), 0.5 / 255, dtype=torch.float64),
        torch.ones(3, 2, dtype=torch.float64),
        0.3,
        cams,
        bg,
        backend="numba",
    )
    assert faint.alpha.abs().max() == 0
    means = torch.tensor([[0.0, 0.0, -50.0]], dtype=torch.float64, requires_grad=True)
    cams1 = gr.Cameras(torch.eye(4, dtype=torch.float64)[None], cams.intrinsics[:1], 16, 12)
    out = gr.render(means, torch.ones(1, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64), 0.3, cams1, bg)
    out.features.sum().backward()
    assert torch.equal(out.features.detach(), bg.expand(1, 12, 16, 2))
    assert means.grad is not None and float(means.grad.abs().max()) == 0.0


def test_alpha_clamp_is_straight_through():
    cams, means, opac, feats, scales, clamped = clamped_scene()
    only = clamped.double()
    weights = [only[..., None].expand(-1, -1, -1, 2), 0.1 * only, only]

    def ours(m, o, f):
        out = gr.render(m, o, f, scales, cams, backend="numba")
        return out.features, out.depth, out.alpha

    got = _grads(ours, (means, opac, feats), weights)
    want = _grads(lambda m, o, f: _oracle(m, o, f, scales, cams), (means, opac, feats), weights)
    assert float(got[1][0].abs()) > 0.1
    for name, g1, g2 in zip(("means", "opacities", "features"), got, want):
        torch.testing.assert_close(g1, g2, atol=1e-9, rtol=1e-7, msg=lambda m, name=name: f"{name}: {m}")


def test_near_plane_gaussians_far_off_screen_do_not_smear():
    k = torch.tensor([[[40.0, 0.0, 20.0], [0.0, 40.0, 15.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    cams = gr.Cameras(torch.eye(4, dtype=torch.float64)[None], k, 40, 30)
    means = torch.tensor([[5.0, 0.0, 0.5], [0.0, -4.0, 0.45], [0.2, 0.1, 3.0]], dtype=torch.float64)
    opac = torch.tensor([1.0, 0.9, 0.5], dtype=torch.float64)
    feats = torch.eye(3, dtype=torch.float64)
    _compare(gr.render(means, opac, feats, 0.3, cams, backend="numba"), _oracle(means, opac, feats, 0.3, cams))


def test_many_channels_and_float64_to_rounding():
    cams = random_cameras(2, 33, 21, seed=12)
    means, opac, feats, scales = random_gaussians(70, 40, seed=12)
    bg = torch.rand(40, dtype=torch.float64)
    out = gr.render(means, opac, feats, scales, cams, bg, backend="numba")
    _compare(out, _oracle(means, opac, feats, scales, cams, bg), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("model", ["pinhole", "orthographic"])
def test_center_cull_equals_rendering_the_inside_subset(model):
    cams = random_cameras(3, 33, 27, model, seed=11)
    means, opac, feats, scales = random_gaussians(120, 4, seed=11)
    bg = torch.rand(4, dtype=torch.float64)
    out = gr.render(means, opac, feats, scales, cams, bg, backend="numba", cull="center")
    for v in range(len(cams)):
        w = cams.cam_from_world[v]
        p = means @ w[:3, :3].T + w[:3, 3]
        k = cams.intrinsics[v]
        uv = (p[:, :2] / p[:, 2:] if model == "pinhole" else p[:, :2]) @ k[:2, :2].T + k[:2, 2]
        size = torch.tensor([cams.width, cams.height], dtype=torch.float64)
        keep = ((uv > 0.5) & (uv < size - 0.5)).all(-1) & (p[:, 2] > cams.near)
        one = gr.Cameras(w[None], k[None], cams.width, cams.height, cams.model)
        ref = _oracle(means[keep], opac[keep], feats[keep], scales[keep], one, bg)
        torch.testing.assert_close(out.features[v], ref[0][0], atol=1e-9, rtol=1e-7)
        torch.testing.assert_close(out.depth[v], ref[1][0], atol=1e-9, rtol=1e-7)


def _sets(dtype=torch.float64):
    out = []
    for i, (n, views) in enumerate([(30, 1), (45, 2), (12, 1)]):
        means, opac, feat, scales = random_gaussians(n, 3, seed=10 + i, dtype=dtype)
        out.append(GaussianSet(means, opac, feat, scales, random_cameras(views, 36, 28, seed=20 + i, dtype=dtype)))
    return out


def test_sets_in_one_call_render_and_differentiate_as_each_alone():
    bg = torch.tensor([0.1, 0.0, 0.3], dtype=torch.float64)

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

    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(len(s.cameras), 28, 36, 3, generator=g, dtype=torch.float64) for s in _sets()]
    batched = leaves()
    together = render_sets_unchecked(batched, bg, backend="numba")
    sum(((r.features * w).sum() + r.depth.sum() / 7 for r, w in zip(together, weights))).backward()
    for b, got, s, w in zip(batched, together, leaves(), weights):
        alone = render_unchecked(s.means, s.opacities, s.features, s.scales, s.cameras, bg, backend="numba")
        for x, y in zip((got.features, got.depth, got.alpha), (alone.features, alone.depth, alone.alpha)):
            assert torch.equal(x, y)  # every pixel blends the same entries in the same order
        ((alone.features * w).sum() + alone.depth.sum() / 7).backward()
        for name in ("means", "opacities", "features", "scales"):
            g1, g2 = getattr(b, name).grad, getattr(s, name).grad
            assert g2 is not None and float(g2.abs().max()) > 0, name
            torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")
        c = s.cameras
        want = oracle_render(
            s.means, s.opacities, s.features, s.scales, c.cam_from_world, c.intrinsics, 36, 28, "pinhole", c.near, bg
        )
        _compare(got, want)


def _render_and_grads(tile=_numba.TILE, dtype=torch.float32):
    cams = random_cameras(2, 45, 38, seed=13, dtype=dtype)
    means, opac, feats, scales = (t.to(dtype) for t in random_gaussians(150, 6, seed=13))
    leaves = [t.clone().requires_grad_() for t in (means, opac, feats)]
    bg = torch.rand(6, generator=torch.Generator().manual_seed(1), dtype=dtype).requires_grad_()
    out = render_numba(*leaves, scales, cams, bg, tile=tile)
    w = _weights(2, 38, 45, 6, seed=2, dtype=dtype)
    ((out.features * w[0]).sum() + (out.depth * w[1]).sum() + (out.alpha * w[2]).sum()).backward()
    return [out.features.detach(), out.depth.detach(), out.alpha.detach()] + [t.grad for t in (*leaves, bg)]


def test_results_are_bitwise_the_same_whatever_the_threads():
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3, 1):
            torch.set_num_threads(threads)
            runs.append(_render_and_grads())
    finally:
        torch.set_num_threads(before)
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)


@pytest.mark.parametrize("tile", [1, 5, 8, 32])
def test_tile_size_changes_no_pixel_and_gradients_only_by_rounding(tile):
    ref = _render_and_grads(dtype=torch.float64)
    got = _render_and_grads(tile, dtype=torch.float64)
    for a, b in zip(ref[:3], got[:3]):
        assert torch.equal(a, b)  # a pixel's arithmetic does not depend on the tiles
    for a, b in zip(ref[3:], got[3:]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)  # per-tile partial sums regroup


def test_half_precision_inputs_are_blended_in_float32():
    cams = random_cameras(1, 30, 20, seed=2, dtype=torch.float32)
    means, opac, feats, scales = (t.float() for t in random_gaussians(20, 3, seed=2))
    half = gr.render(means.half(), opac.half(), feats.half(), scales.half(), cams, backend="numba")
    assert half.features.dtype == torch.float16
    ref = gr.render(means.half().float(), opac.half().float(), feats.half().float(), scales.half().float(), cams)
    torch.testing.assert_close(half.features.float(), ref.features, rtol=0, atol=1e-3)


def test_auto_picks_numba_on_the_cpu_and_torch_without_it(monkeypatch):
    assert "numba" in dispatch.available_backends()
    assert dispatch._resolve_backend("auto", torch.device("cpu")) == "numba"
    assert dispatch._resolve_backend("auto", torch.device("cuda")) in ("triton", "torch")
    cams = random_cameras(1, 20, 16, seed=0)
    means, opac, feats, scales = random_gaussians(30, 3, seed=0)
    auto = gr.render(means, opac, feats, scales, cams)
    numba_out = gr.render(means, opac, feats, scales, cams, backend="numba")
    assert torch.equal(auto.features, numba_out.features)
    monkeypatch.setattr(dispatch, "_numba_available", lambda: False)
    assert dispatch._resolve_backend("auto", torch.device("cpu")) == "torch"
    assert "numba" not in dispatch.available_backends()
    fallback = gr.render(means, opac, feats, scales, cams)
    _compare(fallback, (numba_out.features, numba_out.depth, numba_out.alpha), atol=1e-10)
    with pytest.raises(ValueError, match="needs the 'numba' package"):
        gr.render(means, opac, feats, scales, cams, backend="numba")


def test_numba_refuses_other_devices_and_dtypes_by_name():
    with pytest.raises(ValueError, match="backend='numba' renders CPU tensors"):
        dispatch._resolve_backend("numba", torch.device("cuda"))
    with pytest.raises(ValueError, match="backend must be one of"):
        dispatch._resolve_backend("numpy", torch.device("cpu"))
    cams = random_cameras(1, 8, 8, seed=0)
    means, opac, feats, scales = random_gaussians(3, 2, seed=0)
    with pytest.raises(ValueError, match="tile"):
        render_numba(means, opac, feats, scales, cams, torch.zeros(2, dtype=torch.float64), tile=0)


def test_without_a_writable_cache_the_kernels_still_compile(tmp_path):
    """A read-only install (no writable ``__pycache__``, cache folder or ``NUMBA_CACHE_DIR``):
    the kernels are compiled without the on-disk cache instead of failing at import."""
    package = tmp_path / "site" / "gaussrender"
    src = ROOT / "src" / "gaussrender"
    package.mkdir(parents=True)
    for name in ("__init__.py", "_numba_kernels.py"):
        target = package / name
        target.write_text("" if name == "__init__.py" else (src / "render" / name).read_text())
    (package / "__pycache__").write_text("a file where numba would put its cache folder")
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    env = dict(
        os.environ,
        HOME=str(blocked / "home"),
        XDG_CACHE_HOME=str(blocked / "cache"),
        NUMBA_CACHE_DIR=str(blocked / "numba"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import numpy as np; "
        "from gaussrender import _numba_kernels as k; "
        "print(type(k.reduce_rows._cache).__name__); "
        "out = np.empty((1, 2)); k.reduce_rows(np.ones((3, 2)), np.array([0, 3]), 0, 1, out); print(out.tolist())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(package.parent)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["NullCache", "[[3.0, 3.0]]"]
