"""GaussRenderLoss options and arguments: bad values refused by name, low-precision logits
computed in float32, impossible image sizes refused from a memory estimate."""

from __future__ import annotations

import dataclasses
import inspect
import re
import time

import pytest
import torch

import gaussrender as gr
from gaussrender import _checks
from gaussrender._checks import FootprintError
from gaussrender.losses.render import RenderLossOptions

GRID = gr.VoxelGrid(
    "t", (-4.0, -4.0, -1.0), (4.0, 4.0, 1.0), 0.5, (16, 16, 4), ("a", "b", "free"), 2, gaussian_scale=0.3
)
K = torch.tensor([[[[50.0, 0.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]]]])
POSE = gr.look_at(torch.tensor([-6.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 0.0]))[None, None]
SIZE = (48, 64)


def _labels(batch=1):
    labels = torch.full((batch, 16, 16, 4), 2)
    labels[:, 4:12, 4:12, 1] = 0
    labels[:, 6:9, 6:9, 2] = 1
    return labels


def _logits(batch=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, 16, 16, 4, generator=g).to(dtype)


@pytest.fixture(autouse=True)
def _restore_memory_limit():
    yield
    _checks.set_memory_limit(None)


@pytest.mark.parametrize(
    "option, value, error",
    [
        ("weight", float("nan"), ValueError),
        ("weight", -1.0, ValueError),
        ("weight", float("inf"), ValueError),
        ("camera_weights", (float("nan"),), ValueError),
        ("camera_weights", (1.0, -0.5), ValueError),
        ("camera_weights", (0.0, 0.0), ValueError),
        ("camera_weights", (float("inf"), 1.0), ValueError),
        ("camera_weights", "1", TypeError),
        ("resolution_divisor", float("inf"), ValueError),
        ("resolution_divisor", 0.0, ValueError),
        ("resolution_divisor", float("nan"), ValueError),
        ("cam_depth_scale", 0.0, ValueError),
        ("cam_depth_scale", float("nan"), ValueError),
        ("bev_depth_scale", -100.0, ValueError),
        ("bev_depth_scale", float("inf"), ValueError),
        ("bev_size", 0, ValueError),
        ("bev_size", 1, ValueError),
        ("bev_size", 400.0, TypeError),
        ("bev_size", True, TypeError),
        ("scale", float("nan"), ValueError),
        ("scale", 0.0, ValueError),
        ("scale", 1e5, ValueError),
        ("cameras_per_sample", 0, ValueError),
        ("cameras_per_sample", 1.5, TypeError),
        ("cameras_per_sample", True, TypeError),
        ("bev_model", "fisheye", ValueError),
        ("views", "cam", ValueError),
        ("prefix", 3, TypeError),
    ],
)
def test_options_validate_names_the_bad_option(option, value, error):
    with pytest.raises(error, match=option):
        RenderLossOptions(**{option: value}).validate()


def test_module_refuses_a_nan_weight_even_with_on_nan_raise():
    with pytest.raises(ValueError, match="weight"):
        gr.GaussRenderLoss(GRID, weight=float("nan"), on_nan="raise")
    with pytest.raises(ValueError, match="resolution_divisor"):
        gr.GaussRenderLoss(GRID, resolution_divisor=float("inf"))
    with pytest.raises(ValueError, match="cam_depth_scale"):
        gr.GaussRenderLoss(GRID, cam_depth_scale=0)


def test_options_must_be_render_loss_options():
    with pytest.raises(TypeError, match="options"):
        gr.gauss_render_loss(GRID, _logits(), _labels(), options={"weight": 1.0})


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="logits.*B >= 1"):
        gr.gauss_render_loss(GRID, _logits(0), _labels(0))


def test_camera_arguments_are_checked_by_name():
    loss = gr.GaussRenderLoss(GRID, bev_size=16, camera_strategy="sensor")
    logits, labels = _logits(), _labels()
    with pytest.raises(TypeError, match="intrinsics"):
        loss(logits, labels, K.to(torch.complex64), POSE, SIZE)
    with pytest.raises(TypeError, match="cam_from_grid"):
        loss(logits, labels, K, POSE.to(torch.complex64), SIZE)
    with pytest.raises(ValueError, match="intrinsics.*singular"):
        loss(logits, labels, K * torch.tensor([0.0, 1.0, 1.0])[:, None], POSE, SIZE)
    nan_pose = POSE.clone()
    nan_pose[0, 0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="cam_from_grid"):
        loss(logits, labels, K, nan_pose, SIZE)
    with pytest.raises(TypeError, match="image_size"):
        loss(logits, labels, K, POSE, (True, True))
    with pytest.raises(TypeError, match="image_size"):
        loss(logits, labels, K, POSE, (48.0, 64.0))
    with pytest.raises(ValueError, match="image_size"):
        loss(logits, labels, K, POSE, (48, 0))
    with pytest.raises(ValueError, match="image_size"):
        loss(logits, labels, K, POSE, "48x64")
    with pytest.raises(ValueError, match="meta"):
        loss(logits.to("meta"), labels, K, POSE, SIZE)


def test_a_divisor_that_leaves_under_two_pixels_is_refused():
    ok = gr.GaussRenderLoss(GRID, views=("cam",), resolution_divisor=24.0, camera_strategy="sensor")
    out = ok(_logits(), _labels(), K, POSE, SIZE)  # 2 x 3 pixels
    assert bool(torch.isfinite(out["loss"]))
    bad = gr.GaussRenderLoss(GRID, views=("cam",), resolution_divisor=33.0, camera_strategy="sensor")
    with pytest.raises(ValueError, match="resolution_divisor"):
        bad(_logits(), _labels(), K, POSE, SIZE)  # 48 / 33 rounds to 1 row


def test_memory_estimate_refuses_a_tiny_divisor_by_name_without_allocating():
    loss = gr.GaussRenderLoss(GRID, bev_size=16, resolution_divisor=1e-3, camera_strategy="sensor")
    start = time.perf_counter()
    with pytest.raises(FootprintError, match=r"resolution_divisor.*GiB") as info:
        loss(_logits(), _labels(), K, POSE, (900, 1600))
    assert isinstance(info.value, MemoryError)
    assert time.perf_counter() - start < 5.0  # refused before rendering anything


def test_memory_estimate_refuses_a_huge_bev_by_name():
    with pytest.raises(FootprintError, match=r"bev_size.*GiB"):
        gr.GaussRenderLoss(GRID, bev_size=10**6)(_logits(), _labels())


def test_loss_memory_estimate_matches_its_formula():
    # cameras: one 48x64 view, 3 classes, float32; padded to 48x64 (whole 16-pixel tiles):
    # prediction render >= 2 x 3072 px x 5 values x 4 B + 3072 px x 16 B, ground-truth
    # images 3072 px x 5 x 4 B
    px = 48 * 64
    need = 2 * px * 5 * 4 + px * 16 + px * 5 * 4
    loss = gr.GaussRenderLoss(GRID, views=("cam",), camera_strategy="sensor")
    _checks.set_memory_limit(need - 1)
    with pytest.raises(FootprintError, match="image_size"):
        loss(_logits(), _labels(), K, POSE, SIZE)
    _checks.set_memory_limit(need)
    assert bool(torch.isfinite(loss(_logits(), _labels(), K, POSE, SIZE)["loss"]))
    # a batch is rendered in one call and every sample's prediction images are kept for the
    # backward pass: each further sample adds its images (3072 px x 5 x 4 B)
    k3, pose3 = K.expand(3, -1, -1, -1), POSE.expand(3, -1, -1, -1)
    need3 = need + 2 * px * 5 * 4
    _checks.set_memory_limit(need3 - 1)
    with pytest.raises(FootprintError, match="batch of 3"):
        loss(_logits(3), _labels(3), k3, pose3, SIZE)
    _checks.set_memory_limit(need3)
    assert bool(torch.isfinite(loss(_logits(3), _labels(3), k3, pose3, SIZE)["loss"]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_give_the_float32_loss(dtype):
    loss = gr.GaussRenderLoss(GRID, bev_size=16, resolution_divisor=2, seed=0, camera_strategy="sensor")
    low = _logits(dtype=dtype).requires_grad_()
    out = loss(low, _labels(), K, POSE, SIZE)
    out["loss"].backward()
    assert out["loss"].dtype == torch.float32
    assert low.grad is not None and low.grad.dtype == dtype and bool(low.grad.isfinite().all())
    # same as the float32 loss of the same (rounded) logits, up to float32 rounding
    ref32 = low.detach().float().requires_grad_()
    ref = gr.GaussRenderLoss(GRID, bev_size=16, resolution_divisor=2, seed=0, camera_strategy="sensor")(
        ref32, _labels(), K, POSE, SIZE
    )
    ref["loss"].backward()
    for key in ("loss", "cam", "cam_depth", "bev", "bev_depth"):
        torch.testing.assert_close(out[key].detach(), ref[key].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(low.grad, ref32.grad.to(dtype))


def test_constructor_refuses_values_it_would_have_converted():
    grid = gr.OCC3D_NUSCENES
    with pytest.raises((TypeError, ValueError), match="cameras_per_sample"):
        gr.GaussRenderLoss(grid, cameras_per_sample=1.5)
    with pytest.raises(TypeError, match="weight"):
        gr.GaussRenderLoss(grid, weight=True)
    with pytest.raises((TypeError, ValueError), match="bev_size"):
        gr.GaussRenderLoss(grid, bev_size=64.5)
    options = gr.GaussRenderLoss(grid, weight=3, camera_weights=[1, 2], bev_size=64).options
    assert isinstance(options.weight, float) and options.camera_weights == (1.0, 2.0)


# ------------------------------------------------- one source of truth for the options
def _doc_entries(doc: str, section: str) -> list[str]:
    """Names documented in a Google-style ``section`` (``Attributes:``/``Args:``) of ``doc``."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == section)
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    names = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break  # the section ended
        match = re.match(" " * indent + r"(\**\w+):", line)
        if match:
            names.append(match.group(1))
    return names


def test_every_option_is_documented_once_on_the_dataclass():
    names = [f.name for f in dataclasses.fields(RenderLossOptions)]
    assert _doc_entries(RenderLossOptions.__doc__, "Attributes:") == names
    # the class documents its own arguments and points to the dataclass for the options
    args = _doc_entries(gr.GaussRenderLoss.__doc__, "Args:")
    assert args == ["grid", "options", "seed", "**overrides"]
    assert "RenderLossOptions" in gr.GaussRenderLoss.__doc__


def test_constructor_signature_is_generated_from_the_dataclass():
    params = inspect.signature(gr.GaussRenderLoss).parameters
    fields = dataclasses.fields(RenderLossOptions)
    assert list(params)[:3] == ["grid", "options", "seed"]
    assert list(params)[3:] == [f.name for f in fields]
    for f in fields:
        assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY and params[f.name].default == f.default
    # the defaults of the module are the dataclass's
    assert gr.GaussRenderLoss(GRID).options == RenderLossOptions()


def test_each_option_reaches_the_module_by_keyword():
    values = {
        "weight": 2.0,
        "views": ("bev",),
        "depth": False,
        "camera_strategy": "random",
        "cameras_per_sample": 2,
        "camera_weights": (1.0, 3.0),
        "resolution_divisor": 2.0,
        "semantic": "kl",
        "bev_model": "orthographic",
        "bev_size": 32,
        "cam_depth_scale": 20.0,
        "bev_depth_scale": 30.0,
        "scale": 0.4,
        "backend": "torch",
        "cull": "footprint",
        "prefix": "r_",
        "on_nan": "warn",
        "opacity": "linear",
        "classes": "conditional",
        "target_alpha": True,
        "target_sky": True,
        "target_carve": True,
        "carve_offset": 0.5,
        "carve_empty_weight": 0.5,
        "target_depth_mode": "normalised",
    }
    assert sorted(values) == sorted(f.name for f in dataclasses.fields(RenderLossOptions))
    for name, value in values.items():
        needs = {"target_alpha": True} if name == "target_sky" else {}  # sky counts in the alpha term
        assert getattr(gr.GaussRenderLoss(GRID, **{name: value}, **needs).options, name) == value, name
    assert gr.GaussRenderLoss(GRID, **values).options == RenderLossOptions(**values)


def test_options_and_keyword_overrides_combine():
    base = RenderLossOptions(weight=3.0, bev_size=32)
    loss = gr.GaussRenderLoss(GRID, base, bev_size=16, views=["bev"])
    assert loss.options == RenderLossOptions(weight=3.0, bev_size=16, views=("bev",))
    assert gr.GaussRenderLoss(GRID, options=base).options == base
    with pytest.raises(ValueError, match="bev_size"):
        gr.GaussRenderLoss(GRID, RenderLossOptions(bev_size=1))  # an options object is validated too
    with pytest.raises(TypeError, match="options must be a RenderLossOptions"):
        gr.GaussRenderLoss(GRID, 5.0)  # the old positional weight is refused, not misread


def test_unknown_keyword_is_refused_by_name():
    with pytest.raises(TypeError, match=r"unknown GaussRenderLoss option.*'wieght'"):
        gr.GaussRenderLoss(GRID, wieght=3.0)
    with pytest.raises(TypeError, match="'bev_siez', 'grd'"):
        gr.GaussRenderLoss(GRID, bev_siez=16, grd=1)
