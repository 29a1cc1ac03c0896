"""The fused Triton backend agrees with the float64 oracle and with the torch backend.

Triton fixes interpreted-or-compiled for its own library functions when it is first
imported, so the CPU runs need ``TRITON_INTERPRET=1`` from the start of the process. In a
normal test run (``pytest tests/...``) the device tests below therefore run on CUDA where
there is one, and ``test_interpreter_run`` re-runs this file in a child process with
``TRITON_INTERPRET=1``, where the same tests run on CPU tensors in Triton's interpreter; the
parent process and the rest of the suite never see the variable. Running this file directly
with ``TRITON_INTERPRET=1`` runs the CPU tests in-process.

Scenes are tiny (a few dozen Gaussians, 40x30 images) because the interpreter is slow.
Opacities stay below 0.95: at alpha = 0.99 (the clamp) two stacked Gaussians give
T = 0.01² = 1e-4, exactly the termination threshold, where float32 and the float64 oracle
legitimately round to different sides.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed: the triton backend cannot run")

import gaussrender as gr  # noqa: E402
from gaussrender.render._triton import TritonConfig, render_triton, triton_interprets  # noqa: E402
from tests.render.oracle import oracle_render  # noqa: E402
from tests.render.scenes import clamped_scene  # noqa: E402

WIDTH, HEIGHT = 40, 30
INTERPRETED = triton_interprets()
if INTERPRETED:
    DEVICES = ["cpu"]
elif torch.cuda.is_available():
    DEVICES = ["cuda"]
else:
    DEVICES = [
        pytest.param(
            "cpu",
            marks=pytest.mark.skip(
                reason=(
                    "no CUDA here: these tests run in Triton's interpreter in the child process of test_interpreter_run"
                )
            ),
        )
    ]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """``cpu``: kernels in Triton's interpreter; ``cuda``: compiled kernels."""
    return request.param


def test_interpreter_run():
    """Run this file again with ``TRITON_INTERPRET=1`` set before anything imports triton."""
    if INTERPRETED:
        pytest.skip("already running under the interpreter")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).resolve())]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    summary = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    print("interpreter run:", *summary)
    assert proc.returncode == 0, f"interpreter run failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def make_cameras(num_views: int, model: str, device: str = "cpu") -> gr.Cameras:
    """Views around a scene centred at (0, 0, 6) in an OpenCV-like world frame."""
    target = torch.tensor([0.0, 0.0, 6.0], dtype=torch.float64)
    eyes = [torch.tensor(e, dtype=torch.float64) for e in ([0.3, -0.2, 0.0], [4.0, -1.0, 3.0], [-3.0, 1.5, 1.0])]
    w = torch.stack(
        [gr.look_at(e, target, torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)) for e in eyes[:num_views]]
    )
    if model == "pinhole":
        k = torch.tensor([[36.0, 0.4, 20.5], [0.0, 34.0, 14.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    else:  # pixels per metre
        k = torch.tensor([[7.0, 0.0, 19.0], [0.0, 6.5, 16.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    k = k.expand(num_views, 3, 3).clone()
    return gr.Cameras(w.float().to(device), k.float().to(device), WIDTH, HEIGHT, model=model)


def make_scene(n: int, c: int, seed: int, device: str = "cpu"):
    """``n`` Gaussians around (0, 0, 6), dense enough that tile lists span several batches."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([1.6, 1.2, 1.2]) + torch.tensor([0.0, 0.0, 6.0])
    opacities = torch.rand(n, generator=g) * 0.9 + 0.04
    features = torch.rand(n, c, generator=g)
    scales = torch.rand(n, generator=g) * 0.3 + 0.15
    background = torch.rand(c, generator=g)
    return [t.to(device) for t in (means, opacities, features, scales, background)]


def oracle(means, opacities, features, scales, cameras, background):
    return oracle_render(
        means.cpu(),
        opacities.cpu(),
        features.cpu(),
        scales.cpu(),
        cameras.cam_from_world.cpu(),
        cameras.intrinsics.cpu(),
        cameras.width,
        cameras.height,
        model=cameras.model,
        near=cameras.near,
        background=background.cpu(),
    )


def as_tuple(result: gr.RenderResult):
    return result.features, result.depth, result.alpha


def assert_images_close(got, want, rtol=1e-5, atol=1e-5):
    for name, g, w in zip(("features", "depth", "alpha"), got, want):
        torch.testing.assert_close(
            g.detach().cpu().double(),
            w.detach().cpu().double(),
            rtol=rtol,
            atol=atol,
            msg=lambda m, name=name: f"{name}: {m}",
        )


def gradients(render_fn, inputs, weights, dtype, outputs=None):
    """Gradients of a fixed random linear function of all three outputs (appended to
    ``outputs`` when given)."""
    leaves = [t.detach().to(dtype).clone().requires_grad_() for t in inputs]
    out = render_fn(*leaves)
    loss = sum((o * w.to(o)).sum() for o, w in zip(out, weights))
    loss.backward()
    if outputs is not None:
        outputs.append(out)
    return [t.grad for t in leaves]


def assert_grads_close(got, want, names):
    for name, g, w in zip(names, got, want):
        assert g is not None, f"no gradient for {name}"
        scale = float(w.abs().max()) + 1e-12
        torch.testing.assert_close(
            g.cpu().double(),
            w.cpu().double(),
            rtol=1e-4,
            atol=2e-6 * scale,
            msg=lambda m, name=name: f"grad {name}: {m}",
        )


@pytest.mark.parametrize("model,channels,views", [("pinhole", 1, 1), ("orthographic", 5, 2), ("orthographic", 40, 1)])
def test_forward_matches_oracle_and_torch(device, model, channels, views):
    cams = make_cameras(views, model, device)
    means, opac, feat, scales, bg = make_scene(48, channels, seed=channels + views, device=device)
    got = as_tuple(gr.render(means, opac, feat, scales, cams, bg, backend="triton"))
    assert got[0].shape == (views, HEIGHT, WIDTH, channels)
    assert got[0].device.type == device
    assert float(got[2].max()) > 0.5, "scene should cover the image substantially"
    assert_images_close(got, oracle(means, opac, feat, scales, cams, bg))
    assert_images_close(got, as_tuple(gr.render(means, opac, feat, scales, cams, bg, backend="torch")), atol=2e-6)


@pytest.mark.parametrize("model,channels,views", [("pinhole", 5, 3), ("orthographic", 5, 1), ("pinhole", 40, 1)])
def test_gradients_match_oracle_and_torch(device, model, channels, views):
    """Gradients of means, opacities, features and background (and the forward pass too)."""
    cams = make_cameras(views, model, device)
    means, opac, feat, scales, bg = make_scene(32, channels, seed=10 + channels, device=device)
    g = torch.Generator().manual_seed(3)
    weights = [
        torch.randn(views, HEIGHT, WIDTH, channels, generator=g),
        torch.randn(views, HEIGHT, WIDTH, generator=g) / 6.0,
        torch.randn(views, HEIGHT, WIDTH, generator=g),
    ]
    names = ["means", "opacities", "features", "background"]
    inputs = [means, opac, feat, bg]

    def with_backend(backend):
        return lambda m, o, f, b: as_tuple(gr.render(m, o, f, scales, cams, b, backend=backend))

    outs = []
    got = gradients(with_backend("triton"), inputs, weights, torch.float32, outs)
    want = gradients(lambda m, o, f, b: oracle(m, o, f, scales, cams, b), inputs, weights, torch.float64, outs)
    assert_images_close(*outs)
    assert_grads_close(got, want, names)
    if channels <= 5:  # the torch backend is slow on CPU with many channels
        assert_grads_close(got, gradients(with_backend("torch"), inputs, weights, torch.float32), names)


def test_sets_in_one_launch_match_each_set_alone(device):
    """A batch of sets (each in its own cameras, as the loss renders a batch) blended by one
    kernel launch: every set's images and gradients are those of rendering it alone."""
    from gaussrender.render.dispatch import GaussianSet, render_sets_unchecked

    scenes = [make_scene(n, 5, seed=40 + n, device=device) for n in (24, 36)]
    cams = [make_cameras(1, "pinhole", device), make_cameras(2, "pinhole", device)]
    bg = scenes[0][4]

    def leaves():
        return [
            GaussianSet(m.clone().requires_grad_(), o.clone().requires_grad_(), f.clone().requires_grad_(), s, c)
            for (m, o, f, s, _), c in zip(scenes, cams)
        ]

    batched = leaves()
    together = render_sets_unchecked(batched, bg, backend="triton")
    sum((r.features.sum() + r.depth.sum() / 5 + r.alpha.sum()) for r in together).backward()
    for b, got, alone_set in zip(batched, together, leaves()):
        alone = render_sets_unchecked([alone_set], bg, backend="triton")[0]
        (alone.features.sum() + alone.depth.sum() / 5 + alone.alpha.sum()).backward()
        assert_images_close(as_tuple(got), as_tuple(alone), rtol=1e-6, atol=1e-6)
        assert_grads_close(
            [b.means.grad, b.opacities.grad, b.features.grad],
            [alone_set.means.grad, alone_set.opacities.grad, alone_set.features.grad],
            ["means", "opacities", "features"],
        )


def test_alpha_clamp_is_straight_through(device):
    """Where o · G > 0.99 alpha is clamped, yet its gradient passes (3DGS rasteriser, the
    GaussRender release): the opacity gradient from those pixels alone is the oracle's."""
    cams, means, opac, feat, scales, clamped = clamped_scene(torch.float32, device)
    only = clamped.float()
    weights = [only[..., None].expand(-1, -1, -1, 2), 0.1 * only, only]
    names = ["means", "opacities", "features"]
    outs = []
    got = gradients(
        lambda m, o, f: as_tuple(gr.render(m, o, f, scales, cams, backend="triton")),
        [means, opac, feat],
        weights,
        torch.float32,
        outs,
    )
    want = gradients(
        lambda m, o, f: oracle(m, o, f, scales, cams, torch.zeros(2)), [means, opac, feat], weights, torch.float64, outs
    )
    assert_images_close(*outs)
    assert float(got[1][0].abs()) > 0.1
    assert_grads_close(got, want, names)


def test_float64_matches_oracle_to_rounding(device):
    cams = make_cameras(2, "pinhole", device).to(dtype=torch.float64)
    means, opac, feat, scales, bg = (t.double() for t in make_scene(30, 5, seed=7, device=device))
    got = gr.render(means, opac, feat, scales, cams, bg, backend="triton")
    assert got.features.dtype == torch.float64
    assert_images_close(as_tuple(got), oracle(means, opac, feat, scales, cams, bg), rtol=1e-10, atol=1e-10)


def test_launch_config_does_not_change_the_result(device):
    # tiles hold more entries than one batch, so the carry of T and of the backward suffix
    # between batches is exercised; bands of rows split a tile over several programs and
    # small channel blocks split the 40 channels; all must agree to rounding
    cams = make_cameras(1, "pinhole", device)
    means, opac, feat, scales, bg = make_scene(60, 40, seed=5, device=device)
    configs = (
        TritonConfig(rows=16, forward_batch=16, backward_batch=16),
        TritonConfig(rows=2, forward_batch=64, backward_batch=32, max_channel_block=16),
    )
    outs = []
    for config in configs:
        m, f = means.clone().requires_grad_(), feat.clone().requires_grad_()
        res = render_triton(m, opac, f, scales, cams, bg, config=config)
        (res.features.sum() + res.depth.sum()).backward()
        outs.append(((res.features.detach(), res.depth.detach(), res.alpha.detach()), (m.grad, f.grad)))
    assert_images_close(outs[0][0], outs[1][0])
    # gradients sum many terms in a launch-dependent order: compare at their own scale
    assert_grads_close(outs[0][1], outs[1][1], ["means", "features"])


def test_coincident_depths_keep_input_order(device):
    # three overlapping Gaussians at exactly the same camera depth: the first listed is in front
    cams = make_cameras(1, "pinhole", device)
    cams = gr.Cameras(torch.eye(4, device=device)[None], cams.intrinsics, WIDTH, HEIGHT)
    means = torch.tensor([[0.0, 0.0, 5.0], [0.15, 0.05, 5.0], [-0.1, 0.1, 5.0]], device=device)
    opac = torch.tensor([0.8, 0.9, 0.7], device=device)
    feat = torch.eye(3, device=device)
    bg = torch.zeros(3, device=device)
    images = []
    for order in ([0, 1, 2], [2, 1, 0]):
        out = gr.render(means[order], opac[order], feat[order], 0.4, cams, bg, backend="triton")
        assert_images_close(
            as_tuple(out), oracle(means[order], opac[order], feat[order], torch.full((3,), 0.4), cams, bg)
        )
        images.append(out.features)
    # the centre pixel is dominated by whichever Gaussian comes first in the input
    centre = images[0][0, 14, 20], images[1][0, 14, 20]
    assert int(centre[0].argmax()) == 0 and int(centre[1].argmax()) == 2


def test_behind_camera_and_off_screen_gaussians_are_dropped(device):
    cams = make_cameras(2, "pinhole", device)
    means, opac, feat, scales, bg = make_scene(20, 4, seed=11, device=device)
    centre = cams.world_from_cam[0, :3, 3]
    axis = cams.world_from_cam[0, :3, 2]  # first camera's optical axis, world frame
    right = cams.world_from_cam[0, :3, 0]
    extra = torch.stack(
        [
            centre - 2.0 * axis,  # behind the camera
            centre + 0.1 * axis,  # in front, but closer than near = 0.2
            centre - 0.05 * axis + 0.2 * right,  # just behind the camera plane
            centre + 5.0 * axis + 60.0 * right,  # far off-screen to the right
        ]
    )
    all_means = torch.cat([means, extra])
    all_opac = torch.cat([opac, torch.full((4,), 0.9, device=device)])
    all_feat = torch.cat([feat, torch.ones(4, 4, device=device) * 7.0])
    all_scales = torch.cat([scales, torch.full((4,), 0.3, device=device)])
    got = as_tuple(gr.render(all_means, all_opac, all_feat, all_scales, cams, bg, backend="triton"))
    assert_images_close(got, oracle(all_means, all_opac, all_feat, all_scales, cams, bg))
    # in the first view the extra Gaussians change nothing
    alone = as_tuple(gr.render(means, opac, feat, scales, cams[0], bg, backend="triton"))
    for a, b in zip(got, alone):
        torch.testing.assert_close(a[:1], b, rtol=1e-6, atol=1e-6)


def test_opaque_stack_terminates_early(device):
    # twelve wide, opaque Gaussians stacked along the optical axis of an orthographic view:
    # every pixel reaches T < 1e-4 within the first few, so the rest never contribute
    cams = gr.Cameras(
        torch.eye(4, device=device)[None],
        torch.tensor([[[4.0, 0.0, 20.0], [0.0, 4.0, 15.0], [0.0, 0.0, 1.0]]], device=device),
        WIDTH,
        HEIGHT,
        model="orthographic",
    )
    n = 12
    means = torch.zeros(n, 3, device=device)
    means[:, 2] = torch.arange(n, device=device, dtype=torch.float32) + 2.0
    means[:, 0] = torch.linspace(-0.3, 0.3, n, device=device)
    opac = torch.full((n,), 0.93, device=device)
    feat = torch.rand(n, 6, generator=torch.Generator().manual_seed(0)).to(device)
    bg = torch.ones(6, device=device)
    scales = torch.full((n,), 30.0, device=device)  # about 120 px: alpha > 0.9 everywhere
    leaf = feat.clone().requires_grad_()
    out = gr.render(means, opac, leaf, scales, cams, bg, backend="triton")
    assert_images_close(as_tuple(out), oracle(means, opac, feat, scales, cams, bg))
    # alpha > 0.9 per Gaussian: T < 1e-3 after 3 Gaussians, termination at the 4th or 5th
    assert float(out.alpha.min()) > 1 - 1e-3, "every pixel should be (nearly) opaque"
    out.features.sum().backward()
    back = leaf.grad[5:]
    assert torch.equal(back, torch.zeros_like(back)), "Gaussians behind the termination point got gradient"
    assert bool((leaf.grad[:3].abs() > 0).all())
    changed = feat.clone()
    changed[5:] = 100.0
    again = gr.render(means, opac, changed, scales, cams, bg, backend="triton")
    torch.testing.assert_close(again.features, out.features.detach(), rtol=0, atol=0)


def test_nothing_visible_gives_background_and_zero_gradients(device):
    cams = make_cameras(1, "pinhole", device)
    means = torch.tensor([[0.0, 0.0, -50.0]], device=device).requires_grad_()
    bg = torch.tensor([0.25, 0.5], device=device)
    out = gr.render(
        means, torch.ones(1, device=device), torch.ones(1, 2, device=device), 0.3, cams, bg, backend="triton"
    )
    torch.testing.assert_close(out.features, bg.expand(1, HEIGHT, WIDTH, 2))
    assert float(out.depth.abs().max()) == 0.0 and float(out.alpha.abs().max()) == 0.0
    out.features.sum().backward()
    assert means.grad is not None and float(means.grad.abs().max()) == 0.0


def test_half_precision_inputs_are_blended_in_float32(device):
    cams = make_cameras(1, "pinhole", device)
    means, opac, feat, scales, bg = make_scene(20, 3, seed=2, device=device)
    half = gr.render(means.half(), opac.half(), feat.half(), scales.half(), cams, bg.half(), backend="triton")
    assert half.features.dtype == torch.float16
    ref = gr.render(
        means.half().float(),
        opac.half().float(),
        feat.half().float(),
        scales.half().float(),
        cams,
        bg.half().float(),
        backend="triton",
    )
    torch.testing.assert_close(half.features.float(), ref.features, rtol=0, atol=1e-3)


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    cams = make_cameras(1, "pinhole")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        gr.render(torch.zeros(1, 3), torch.ones(1), torch.ones(1, 2), 0.3, cams, backend="triton")


def test_config_rejects_bad_launch_parameters():
    with pytest.raises(ValueError, match="forward_batch"):
        TritonConfig(forward_batch=24)
    with pytest.raises(ValueError, match="max_channel_block"):
        TritonConfig(max_channel_block=8)
    with pytest.raises(ValueError, match="rows"):
        TritonConfig(rows=3)


@pytest.mark.parametrize("dtype", ["fp32"])
def test_kernels_compile_for_a_cuda_gpu(dtype):
    """Without a GPU, the interpreter checks the arithmetic but not Triton's compiler: build
    both kernels for sm_90 ahead of time (no device needed) so compile errors show here."""
    if INTERPRETED or torch.cuda.is_available():
        pytest.skip("compiled natively by the CUDA tests" if torch.cuda.is_available() else "interpreter process")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from gaussrender.render._project import ALPHA_MAX, ALPHA_MIN, T_MIN
    from gaussrender.render._triton import _kernels

    def signature(fn) -> dict:
        types = {}
        for name in fn.arg_names:
            if name.isupper():
                types[name] = "constexpr"
            elif name in ("pair_row_ptr", "tile_start_ptr", "tile_count_ptr"):
                types[name] = "*i64"
            elif name in ("out_last_ptr", "last_ptr"):
                types[name] = "*i32"
            else:
                types[name] = f"*{dtype}" if name.endswith("_ptr") else "i32"
        return types

    config = TritonConfig()
    kernels = _kernels(False)
    common = {"TILE": 16, "ROWS": config.rows, "ALPHA_MIN": ALPHA_MIN, "ALPHA_MAX": ALPHA_MAX}
    builds = [
        (kernels.forward, {**common, "BATCH": config.forward_batch, "CHANNEL_BLOCK": 32, "T_MIN": T_MIN}),
        (kernels.backward, {**common, "BATCH": config.backward_batch, "CHANNEL_BLOCK": 32, "NUM_CHANNEL_BLOCKS": 2}),
    ]
    for fn, constants in builds:
        try:
            src = ASTSource(fn, signature(fn), {(fn.arg_names.index(k),): v for k, v in constants.items()})
            compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": config.num_warps})
        except (ImportError, FileNotFoundError, RuntimeError) as exc:
            if "ptxas" in str(exc).lower() or "backend" in str(exc).lower():
                pytest.skip(f"Triton's CUDA toolchain is unavailable here: {exc}")
            raise
        assert len(compiled.asm["cubin"]) > 0


def test_each_mode_binds_its_own_device_functions():
    """The kernels call device functions (band_pixels, batch_entries) that must be wrapped in
    the kernels' own mode; both modes can be bound in one process without interfering, and
    the kernel module itself stays undecorated."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    from gaussrender.render import _triton_kernels as k
    from gaussrender.render._triton import _kernels

    for interpret, wrapper in ((False, JITFunction), (True, InterpretedFunction)):
        kernels = _kernels(interpret)
        for kernel in (kernels.forward, kernels.backward):
            assert isinstance(kernel, wrapper)
            for name in k.DEVICE_FUNCTIONS:
                assert isinstance(kernel.fn.__globals__[name], wrapper), (interpret, name)
                assert kernel.fn.__globals__[name].fn.__globals__ is kernel.fn.__globals__
    assert all(inspect.isfunction(getattr(k, name)) for name in k.DEVICE_FUNCTIONS)
    assert inspect.isfunction(k.blend_forward_kernel) and inspect.isfunction(k.blend_backward_kernel)
