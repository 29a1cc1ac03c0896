"""Cameras and pose strategies: bad values refused by name; low-precision poses accepted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.geometry.camera_strategies import apply_strategy, move_cameras


def _k(f=100.0, cx=50.0, cy=40.0, dtype=torch.float32):
    return torch.tensor([[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]], dtype=dtype)


def _pose(dtype=torch.float32):
    return gr.look_at(torch.tensor([3.0, -2.0, 5.0]), torch.tensor([10.0, 4.0, 0.0]))[None].to(dtype)


@pytest.fixture(autouse=True)
def _restore_checks():
    yield
    gr.set_checks(True)


@pytest.mark.parametrize("near", [0.0, -0.2, float("inf"), float("nan")])
def test_near_must_be_finite_and_positive(near):
    with pytest.raises(ValueError, match="near"):
        gr.Cameras(_pose(), _k(), 100, 80, near=near)


@pytest.mark.parametrize("near", [True, "0.2", None, torch.tensor(0.2)])
def test_near_must_be_a_real_number(near):
    with pytest.raises(TypeError, match="near"):
        gr.Cameras(_pose(), _k(), 100, 80, near=near)


@pytest.mark.parametrize("name", ["width", "height"])
@pytest.mark.parametrize(
    "value, error", [(True, TypeError), (64.0, TypeError), ("64", TypeError), (0, ValueError), (-1, ValueError)]
)
def test_image_size_must_be_a_positive_int(name, value, error):
    size = {"width": 100, "height": 80, name: value}
    with pytest.raises(error, match=name):
        gr.Cameras(_pose(), _k(), size["width"], size["height"])


def test_numpy_integer_sizes_and_near_are_stored_as_python_numbers():
    cams = gr.Cameras(_pose(), _k(), np.int64(100), np.int32(80), near=np.float32(0.5))
    assert type(cams.width) is int and type(cams.height) is int and type(cams.near) is float
    assert (cams.width, cams.height, cams.near) == (100, 80, 0.5)


def test_complex_integer_and_meta_matrices_are_refused_by_name():
    with pytest.raises(TypeError, match="intrinsics"):
        gr.Cameras(_pose(), _k().to(torch.complex64), 100, 80)
    with pytest.raises(TypeError, match="cam_from_world"):
        gr.Cameras(_pose().to(torch.complex128), _k(), 100, 80)
    with pytest.raises(TypeError, match="cam_from_world"):
        gr.Cameras(_pose().long(), _k(), 100, 80)
    with pytest.raises(ValueError, match="cam_from_world.*meta"):
        gr.Cameras(_pose().to("meta"), _k(), 100, 80)
    with pytest.raises(ValueError, match="intrinsics.*meta"):
        gr.Cameras(_pose(), _k().to("meta"), 100, 80)


@pytest.mark.parametrize("f", [0.0, 1e-9, -1e-9])
def test_zero_focal_lengths_are_refused(f):
    with pytest.raises(ValueError, match="intrinsics.*singular"):
        gr.Cameras(_pose(), _k(f=f), 100, 80)
    k = _k()
    k[0, 1, 1] = f
    with pytest.raises(ValueError, match="intrinsics.*singular"):
        gr.Cameras(_pose(), k, 100, 80)


def test_negative_focal_lengths_are_mirrored_images_and_accepted():
    # horizontal-flip augmentation maps u -> W - u: fx -> -fx, cx -> W - cx
    k = _k()
    k[0, 0, 0], k[0, 0, 2] = -100.0, 100 - 50.0
    cams = gr.Cameras(_pose(), k, 100, 80)
    point = torch.tensor([[10.0, 4.0, 0.5]])
    uv, _ = cams.project(point)
    uv_ref, _ = gr.Cameras(_pose(), _k(), 100, 80).project(point)
    torch.testing.assert_close(uv[0, 0, 0], 100 - uv_ref[0, 0, 0])


def test_non_finite_intrinsics_and_far_translations_are_refused():
    with pytest.raises(ValueError, match="intrinsics.*NaN"):
        gr.Cameras(_pose(), _k(cx=float("nan")), 100, 80)
    far = _pose()
    far[0, 2, 3] = 2e6
    with pytest.raises(ValueError, match="cam_from_world.*1e\\+06"):
        gr.Cameras(far, _k(), 100, 80)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_poses_rounded_to_any_float_dtype_are_rigid(dtype):
    cams = gr.Cameras(_pose(dtype), _k(dtype=dtype), 100, 80)
    assert cams.cam_from_world.dtype == dtype
    # rounding error of the rotation in that dtype is within the tolerance, a 5% scale is not
    scaled = _pose(torch.float64)
    scaled[:, :3, :3] *= 1.05
    with pytest.raises(ValueError, match="rigid"):
        gr.Cameras(scaled.to(dtype), _k(dtype=dtype), 100, 80)


def test_set_checks_false_skips_matrix_value_checks_only():
    gr.set_checks(False)
    cams = gr.Cameras(torch.full((1, 4, 4), float("nan")), _k(), 100, 80)  # value check skipped
    assert len(cams) == 1
    with pytest.raises(TypeError, match="width"):
        gr.Cameras(_pose(), _k(), True, 80)
    with pytest.raises(ValueError, match="near"):
        gr.Cameras(_pose(), _k(), 100, 80, near=0.0)
    with pytest.raises(TypeError, match="intrinsics"):
        gr.Cameras(_pose(), _k().to(torch.complex64), 100, 80)


@pytest.mark.parametrize("strategy", ["sensor", "elevated", "random", "stereo", "trajectory"])
def test_nan_or_non_rigid_poses_into_strategies_are_refused(strategy):
    bad = _pose().clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="cam_from_grid"):
        apply_strategy(strategy, bad, "occ3d", torch.Generator().manual_seed(0))
    squashed = _pose().clone()
    squashed[0, :3, :3] *= 0.5
    with pytest.raises(ValueError, match="cam_from_grid.*rigid"):
        apply_strategy(strategy, squashed, "occ3d", torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="cam_from_grid"):
        apply_strategy(strategy, _pose().to(torch.complex64), "occ3d")


def test_move_cameras_accepts_bfloat16_poses():
    out = move_cameras(_pose(torch.bfloat16), pitch_down=10.0, lift=1.0)
    assert out.dtype == torch.bfloat16
    gr.Cameras(out, _k(dtype=torch.bfloat16), 100, 80)  # still rigid to bf16 precision
