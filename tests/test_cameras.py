import pytest
import torch

import gaussrender as gr


def _k(f=100.0, cx=50.0, cy=40.0):
    return torch.tensor([[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]])


def test_pinhole_projection_of_a_known_point():
    cams = gr.Cameras(torch.eye(4)[None], _k(), 100, 80)
    uv, z = cams.project(torch.tensor([[1.0, -0.5, 4.0]]))
    torch.testing.assert_close(uv[0, 0], torch.tensor([100 * 0.25 + 50, 100 * -0.125 + 40]))
    assert float(z) == 4.0


def test_orthographic_projection_of_a_known_point():
    cams = gr.Cameras(torch.eye(4)[None], _k(f=10.0), 100, 80, model="orthographic")
    uv, z = cams.project(torch.tensor([[1.0, -0.5, 4.0]]))
    torch.testing.assert_close(uv[0, 0], torch.tensor([10 * 1.0 + 50, 10 * -0.5 + 40]))


def test_look_at_points_the_optical_axis():
    eye = torch.tensor([3.0, -2.0, 5.0])
    target = torch.tensor([10.0, 4.0, 0.0])
    pose = gr.look_at(eye, target)
    cams = gr.Cameras(pose[None], _k(), 100, 80)
    uv, z = cams.project(target[None])
    torch.testing.assert_close(uv[0, 0], torch.tensor([50.0, 40.0]))
    assert float(z) == pytest.approx(float((target - eye).norm()), rel=1e-5)
    # grid +z is image up: a point above the target projects above the centre
    uv_up, _ = cams.project((target + torch.tensor([0.0, 0.0, 1.0]))[None])
    assert uv_up[0, 0, 1] < 40.0


def test_bad_cameras():
    with pytest.raises(ValueError, match="cam_from_world"):
        gr.Cameras(torch.eye(4), _k(), 100, 80)
    with pytest.raises(ValueError, match="intrinsics"):
        gr.Cameras(torch.eye(4)[None], _k()[0], 100, 80)
    with pytest.raises(ValueError, match="singular"):
        gr.Cameras(torch.eye(4)[None], _k(f=0.0), 100, 80)
    with pytest.raises(ValueError, match="rigid"):
        gr.Cameras(torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))[None], _k(), 100, 80)
    with pytest.raises(ValueError, match="width"):
        gr.Cameras(torch.eye(4)[None], _k(), 0, 80)
    with pytest.raises(ValueError, match="height"):
        gr.Cameras(torch.eye(4)[None], _k(), 100, -3)
    with pytest.raises(ValueError, match="NaN"):
        gr.Cameras(torch.full((1, 4, 4), float("nan")), _k(), 100, 80)
    with pytest.raises(TypeError, match="intrinsics"):
        gr.Cameras(torch.eye(4)[None], _k().long(), 100, 80)
    with pytest.raises(ValueError, match="model"):
        gr.Cameras(torch.eye(4)[None], _k(), 100, 80, model="fisheye")
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))[None]
    with pytest.raises(ValueError, match="rigid"):
        gr.Cameras(mirror, _k(), 100, 80)
