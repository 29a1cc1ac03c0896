"""render(): values that pass shape/dtype checks but would give garbage are refused by name;
float16/bfloat16 are rendered in float32 and cast back; impossible image sizes are refused
from a memory estimate before anything is allocated."""

from __future__ import annotations

import math

import pytest
import torch

import gaussrender as gr
from gaussrender import _checks
from gaussrender._checks import FootprintError

from .oracle import oracle_render

K = torch.tensor([[[50.0, 0.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]]])


def _cams(width=64, height=48, near=0.2, k=K, model="pinhole"):
    return gr.Cameras(torch.eye(4)[None], k, width, height, model=model, near=near)


def _one():
    return torch.tensor([[0.0, 0.0, 5.0]]), torch.ones(1), torch.eye(3)[:1]


@pytest.fixture(autouse=True)
def _restore_global_state():
    yield
    gr.set_checks(True)
    _checks.set_memory_limit(None)


@pytest.mark.parametrize("scale", [1e19, 1e4 * 1.01, 0.0, -0.3, float("nan"), float("inf")])
def test_float_scales_out_of_range_are_refused(scale):
    m, o, f = _one()
    with pytest.raises(ValueError, match="scales"):
        gr.render(m, o, f, scale, _cams())


@pytest.mark.parametrize("scale", [True, "0.3", 0.3j])
def test_scales_of_the_wrong_type_are_refused(scale):
    m, o, f = _one()
    with pytest.raises(TypeError, match="scales"):
        gr.render(m, o, f, scale, _cams())


@pytest.mark.parametrize("scale", [1e19, 0.0, float("nan")])
def test_tensor_scales_out_of_range_are_refused(scale):
    m, o, f = _one()
    with pytest.raises(ValueError, match="scales"):
        gr.render(m, o, f, torch.tensor([scale]), _cams())


@pytest.mark.parametrize("z", [3e38, 2e6, float("nan"), float("inf")])
def test_means_beyond_the_coordinate_bound_are_refused(z):
    _, o, f = _one()
    with pytest.raises(ValueError, match="means"):
        gr.render(torch.tensor([[0.0, 0.0, z]]), o, f, 0.3, _cams())


def test_opacities_features_background_values_are_refused_by_name():
    m, o, f = _one()
    with pytest.raises(ValueError, match="opacities"):
        gr.render(m, torch.tensor([1.5]), f, 0.3, _cams())
    with pytest.raises(ValueError, match="features"):
        gr.render(m, o, torch.tensor([[float("nan"), 0.0, 0.0]]), 0.3, _cams())
    with pytest.raises(ValueError, match="background"):
        gr.render(m, o, f, 0.3, _cams(), background=torch.tensor([0.0, float("inf"), 0.0]))


def test_complex_integer_and_meta_tensors_are_refused_by_name():
    m, o, f = _one()
    with pytest.raises(TypeError, match="features"):
        gr.render(m, o, f.to(torch.complex64), 0.3, _cams())
    with pytest.raises(TypeError, match="means"):
        gr.render(m.long(), o, f, 0.3, _cams())
    with pytest.raises(ValueError, match="means.*meta"):
        gr.render(m.to("meta"), o, f, 0.3, _cams())
    with pytest.raises(ValueError, match="opacities.*meta"):
        gr.render(m, o.to("meta"), f, 0.3, _cams())


def _covariance_bound(scale, near, k, width, height):
    """Largest 2D covariance (pixels²) of a pinhole projection, float64, written from the
    Jacobian J = [[fx, s, -(fx x + s y)], [0, fy, -fy y]] / z with |x|, |y| at most 1.3x the
    half field of view (+0.15 of the image past each border) and z at the near plane."""
    fx, sk, cx, fy, cy = (float(k[0, 0, 0]), float(k[0, 0, 1]), float(k[0, 0, 2]), float(k[0, 1, 1]), float(k[0, 1, 2]))
    x_max = max(cx / fx + 0.15 * width / fx, (width - cx) / fx + 0.15 * width / fx)
    y_max = max(cy / fy + 0.15 * height / fy, (height - cy) / fy + 0.15 * height / fy)
    row0 = fx**2 + sk**2 + (fx * x_max + abs(sk) * y_max) ** 2
    row1 = fy**2 + (fy * y_max) ** 2
    return scale**2 * max(row0, row1) / near**2


def test_a_near_plane_that_overflows_the_projected_covariance_is_refused():
    m, o, f = _one()
    with pytest.raises(ValueError, match="scales.*near"):
        gr.render(m, o, f, 1.0, _cams(near=1e-30))
    # the refusal threshold sits where the (overestimated) covariance leaves float32's range
    # with the documented margin; just inside it, images and gradients are finite
    limit = torch.finfo(torch.float32).max * 1e-8
    exact = _covariance_bound(1.0, 1.0, K, 64, 48)  # scales as 1/near²
    near_ok = math.sqrt(exact / (0.5 * limit))
    near_bad = math.sqrt(exact / (2.0 * limit))
    with pytest.raises(ValueError, match="near"):
        gr.render(m, o, f, 1.0, _cams(near=near_bad))
    means = torch.tensor([[0.0, 0.0, 2.0 * near_ok], [0.3, -0.2, 5.0]], requires_grad=True)
    out = gr.render(means, torch.tensor([0.9, 0.8]), torch.eye(3)[:2], 1.0, _cams(near=near_ok), backend="torch")
    (out.features.sum() + out.depth.sum()).backward()
    assert all(bool(t.isfinite().all()) for t in (out.features, out.depth, out.alpha, means.grad))


def test_largest_accepted_scale_renders_finite_images_and_gradients():
    means = torch.tensor([[0.0, 0.0, 5.0], [1e6, -1e6, 1e6]], requires_grad=True)
    out = gr.render(means, torch.tensor([0.9, 1.0]), torch.eye(3)[:2], 1e4, _cams(), backend="torch")
    (out.features.sum() + out.depth.sum()).backward()
    assert all(bool(t.isfinite().all()) for t in (out.features, out.depth, out.alpha, means.grad))
    assert float(out.alpha.detach().min()) > 0.5  # a 10 km Gaussian 5 m away covers the image


def _scene(z):
    """Gaussians around depth z (0.3 m: 0.1 m in front of the near plane) seen head-on."""
    g = torch.Generator().manual_seed(3)
    means = torch.cat([0.3 * z * torch.randn(12, 2, generator=g), z + 0.5 * z * torch.rand(12, 1, generator=g)], 1)
    opacities = 0.05 + 0.95 * torch.rand(12, generator=g)
    features = torch.softmax(torch.randn(12, 4, generator=g), -1)
    return means, opacities, features


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("z", [0.3, 1.0])
def test_low_precision_renders_in_float32_and_returns_its_dtype(dtype, z):
    means, opacities, features = _scene(z)
    scale = 0.05
    low = [t.to(dtype) for t in (means, opacities, features)]
    out = gr.render(*low, scale, _cams(), backend="torch")
    assert out.features.dtype == out.depth.dtype == out.alpha.dtype == dtype
    for img in (out.features, out.depth, out.alpha):
        assert not bool(img.isnan().any())
    # against the float64 oracle of the same (rounded) inputs, up to the output rounding
    ref = oracle_render(*[t.double() for t in low], scale, torch.eye(4, dtype=torch.float64)[None], K.double(), 64, 48)
    eps = torch.finfo(dtype).eps
    for got, want in zip((out.features, out.depth, out.alpha), ref):
        torch.testing.assert_close(got.double(), want.detach(), atol=2 * eps, rtol=eps)
    # the float32 render of the unrounded inputs differs only by the inputs' rounding
    ref32 = gr.render(means, opacities, features, scale, _cams(), backend="torch")
    tol = 0.02 if dtype == torch.float16 else 0.1
    assert float((out.features.float() - ref32.features).abs().max()) < tol


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_gradients_flow_back_in_the_input_dtype(dtype):
    means, opacities, features = (t.to(dtype).requires_grad_() for t in _scene(1.0))
    out = gr.render(means, opacities, features, 0.05, _cams(), backend="torch")
    (out.features.float().square().sum() + out.depth.float().sum()).backward()
    for t in (means, opacities, features):
        assert t.grad is not None and t.grad.dtype == dtype and bool(t.grad.isfinite().all())


def test_bfloat16_cameras_are_accepted_and_rendered_in_float32():
    pose = gr.look_at(torch.tensor([0.3, -0.2, -1.0]), torch.tensor([0.0, 0.0, 5.0]), torch.tensor([0.0, -1.0, 0.0]))
    cams16 = gr.Cameras(pose[None].bfloat16(), K.bfloat16(), 64, 48)  # rigid to bf16 precision
    means, opacities, features = _scene(5.0)
    out = gr.render(means, opacities, features, 0.3, cams16, backend="torch")
    assert out.features.dtype == torch.float32
    # the float64 oracle with the same bf16-rounded pose
    ref = oracle_render(means, opacities, features, 0.3, cams16.cam_from_world.double(), K.double(), 64, 48)
    for got, want in zip((out.features, out.depth, out.alpha), ref):
        torch.testing.assert_close(got.double(), want.detach(), atol=1e-4, rtol=1e-4)


def test_mirrored_intrinsics_render_the_flipped_image():
    k = K.clone()
    k[0, 0, 0], k[0, 0, 2] = -50.0, 64 - 32.0 + 7.0
    k_ref = K.clone()
    k_ref[0, 0, 2] = 32.0 - 7.0
    means, opacities, features = _scene(3.0)
    means = means * torch.tensor([3.0, 3.0, 1.0])  # some Gaussians outside the field of view
    a = gr.render(means, opacities, features, 0.3, _cams(k=k_ref), backend="torch")
    b = gr.render(means, opacities, features, 0.3, _cams(k=k), backend="torch")
    torch.testing.assert_close(b.features, a.features.flip(2), atol=1e-5, rtol=1e-5)


def test_memory_estimate_refuses_an_impossible_image_by_name_before_allocating():
    m, o, f = _one()
    with pytest.raises(FootprintError, match=r"cameras.*GiB") as info:
        gr.render(m, o, f, 0.3, _cams(width=10**6, height=10**6))
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)
    assert "width" in str(info.value)


def test_memory_estimate_is_the_documented_lower_bound():
    # 1 view, 16x16 pixels (already whole 16-pixel tiles), 3 channels, float32:
    # 2 sets of images x 256 px x (3 + 2) values x 4 bytes + 256 px x 16 bytes of pixel maps
    expected = 2 * 256 * 5 * 4 + 256 * 16
    m, o, f = _one()
    k = torch.tensor([[[10.0, 0.0, 8.0], [0.0, 10.0, 8.0], [0.0, 0.0, 1.0]]])
    _checks.set_memory_limit(expected - 1)
    with pytest.raises(FootprintError, match="cameras"):
        gr.render(m, o, f, 0.3, _cams(16, 16, k=k))
    _checks.set_memory_limit(expected)
    assert gr.render(m, o, f, 0.3, _cams(16, 16, k=k)).features.shape == (1, 16, 16, 3)
    _checks.set_memory_limit(math.inf)
    assert gr.render(m, o, f, 0.3, _cams(16, 16, k=k)).features.shape == (1, 16, 16, 3)


def test_set_checks_false_skips_value_checks_but_not_python_scalar_checks():
    m, o, f = _one()
    gr.set_checks(False)
    # a tensor value check needs a device read-back: skipped
    out = gr.render(m, torch.tensor([0.5]), f, torch.tensor([0.3]), _cams())
    assert out.features.shape == (1, 48, 64, 3)
    gr.render(torch.tensor([[0.0, 0.0, float("nan")]]), o, f, 0.3, _cams())  # not refused
    # Python scalars cost nothing to check: still refused
    with pytest.raises(ValueError, match="scales"):
        gr.render(m, o, f, 1e19, _cams())
    with pytest.raises(ValueError, match="near"):
        _cams(near=0.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_finite_check_exact_whatever_the_sum(dtype):
    """check_finite reads a sum first (one pass): large finite values whose sum overflows are
    still accepted, and one NaN or inf anywhere is still refused with its count."""
    from gaussrender._checks import check_finite

    big = torch.full((64,), torch.finfo(dtype).max / 2, dtype=dtype)
    assert not torch.isfinite(big.sum())  # the sum overflows, the values do not
    assert check_finite("big", big) is big
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.randn(1000, dtype=torch.float64).to(dtype)
        x[[3, 997]] = bad
        with pytest.raises(ValueError, match=r"x contains 2 NaN/inf value\(s\)"):
            check_finite("x", x)
    with pytest.raises(ValueError, match=r"mixed contains 2 NaN/inf"):
        check_finite("mixed", torch.tensor([float("inf"), -float("inf"), 1.0], dtype=dtype))
