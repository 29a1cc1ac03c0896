"""Every strategy checked by geometry: where the camera ends up and where a known point projects."""

import math

import pytest
import torch

import gaussrender as gr
from gaussrender import camera_strategies as cs


def _centre(pose):
    return -(pose[..., :3, :3].transpose(-1, -2) @ pose[..., :3, 3:])[..., 0]


def _front():
    k, p, names = gr.nuscenes_rig((900, 1600), dtype=torch.float64)
    return k[:1], p[:1]


def test_nuscenes_rig_cameras_look_where_they_are_named():
    k, p, names = gr.nuscenes_rig((450, 800), dtype=torch.float64)
    assert names[0] == "CAM_FRONT" and k.shape == (6, 3, 3) and p.shape == (6, 4, 4)
    cams = gr.Cameras(p, k, 800, 450)
    yaws = {"CAM_FRONT": 0, "CAM_FRONT_RIGHT": -55, "CAM_FRONT_LEFT": 55, "CAM_BACK": 180, "CAM_BACK_LEFT": 110, "CAM_BACK_RIGHT": -110}
    for i, name in enumerate(names):
        a = math.radians(yaws[name])
        point = _centre(p[i]) + 20 * torch.tensor([math.cos(a), math.sin(a), 0.0], dtype=torch.float64)
        uv, z = cams[i].project(point[None])
        assert z.item() == pytest.approx(20.0, abs=1e-6)
        torch.testing.assert_close(uv[0, 0], k[i, :2, 2])  # lands on the principal point


def test_sensor_is_identity_and_strategies_are_seeded():
    _, p = _front()
    assert torch.equal(cs.sensor(p), p)
    for name in cs.STRATEGIES:
        a = gr.apply_strategy(name, p, "occ3d", torch.Generator().manual_seed(3))
        b = gr.apply_strategy(name, p, "occ3d", torch.Generator().manual_seed(3))
        assert torch.equal(a, b)
        gr.Cameras(a, torch.eye(3, dtype=torch.float64).expand(a.shape[0], 3, 3), 10, 10)  # still rigid


def test_elevated_lifts_8m_and_pitches_down_20_degrees():
    k, p = _front()
    moved = cs.elevated(p, torch.Generator().manual_seed(0), max_yaw=0.0)
    c0, c1 = _centre(p[0]), _centre(moved[0])
    torch.testing.assert_close(c1 - c0, torch.tensor([0.0, 0.0, 8.0], dtype=torch.float64))
    axis = moved[0, 2, :3]  # optical axis in grid coordinates
    assert math.degrees(math.asin(-axis[2])) == pytest.approx(20.0 + math.degrees(math.asin(-p[0, 2, 2])), abs=1e-6)


def test_yaw_turns_left_and_forward_moves_along_view():
    _, p = _front()
    turned = cs.move_cameras(p, yaw_left=90.0)
    axis = turned[0, 2, :3]
    torch.testing.assert_close(axis, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)
    shifted = cs.move_cameras(p, forward=5.0, right=1.0, lift=2.0)
    torch.testing.assert_close(_centre(shifted[0]) - _centre(p[0]), torch.tensor([5.0, -1.0, 2.0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_random_strategy_ranges():
    _, p = _front()
    poses = cs.random(p.expand(500, 4, 4), torch.Generator().manual_seed(1))
    lift = _centre(poses)[:, 2] - _centre(p)[0, 2]
    pitch = torch.rad2deg(torch.asin(-poses[:, 2, 2]))
    assert lift.min() >= 0 and lift.max() <= 8.0 + 1e-9
    assert pitch.min() >= -1e-9 and pitch.max() <= 20.0 + 1e-6
    torch.testing.assert_close(lift, 0.4 * pitch, atol=1e-6, rtol=0)
    shift = _centre(poses)[:, 0] - _centre(p)[0, 0]
    assert shift.min() < -5 and shift.max() > 5 and shift.abs().max() <= 10 + 1e-6


def test_stereo_adds_shifted_copies():
    k, poses, _ = gr.nuscenes_rig(dtype=torch.float64)
    out = cs.stereo(poses[:3], torch.Generator().manual_seed(0))
    assert out.shape == (6, 4, 4)
    assert torch.equal(out[0::2], poses[:3])
    delta = _centre(out[1::2]) - _centre(poses[:3])
    assert (delta.norm(dim=-1) > 0).all() and (delta.abs() <= math.sqrt(2) + 1e-9).all()
    torch.testing.assert_close(out[1::2, :3, :3], poses[:3, :3, :3])  # same orientation
    batched = cs.stereo(poses[None, :2].expand(4, 2, 4, 4), torch.Generator().manual_seed(0))
    assert batched.shape == (4, 4, 4, 4)


def test_trajectory_stays_inside_grid_and_lifts_2m():
    _, p = _front()
    out = cs.trajectory(p.expand(200, 4, 4), gr.SURROUNDOCC_NUSCENES, torch.Generator().manual_seed(0))
    c = _centre(out)
    torch.testing.assert_close(c[:, 2], _centre(p)[0, 2].expand(200) + 2.0)
    fwd = c[:, 0] - _centre(p)[0, 0]
    assert fwd.min() >= 0 and fwd.max() <= 0.7 * (50 - 1.72) + 1e-6 and fwd.max() > 20


@pytest.mark.parametrize("grid", [gr.OCC3D_NUSCENES, gr.SURROUNDOCC_NUSCENES, gr.SSCBENCH_KITTI360])
@pytest.mark.parametrize("model", ["perspective", "orthographic"])
def test_bev_frames_the_grid(grid, model):
    cam = gr.bev_camera(grid, 400, model, dtype=torch.float64)
    assert cam.width == cam.height == 400
    lo, hi = grid.range_min, grid.range_max
    corners = torch.tensor([[lo[0], lo[1], 0.0], [hi[0], hi[1], 0.0], [hi[0], lo[1], 0.0]], dtype=torch.float64)
    uv, z = cam.project(corners)
    assert (z > 0).all()
    if model == "orthographic":
        torch.testing.assert_close(uv[0], torch.tensor([[400.0, 400.0], [0.0, 0.0], [400.0, 0.0]], dtype=torch.float64))
    # forward (+x) is image up, left (+y) is image left
    assert uv[0, 1, 1] < uv[0, 0, 1] and uv[0, 1, 0] < uv[0, 0, 0]
    if model == "perspective":
        assert cam.cam_from_world[0, 2, 3] == pytest.approx(grid.extent[0])  # height = x extent
        centre_uv, _ = cam.project(torch.tensor([grid.center[:2] + (0.0,)], dtype=torch.float64))
        torch.testing.assert_close(centre_uv[0, 0], torch.tensor([200.0, 200.0], dtype=torch.float64))


def test_kitti_bev_principal_point_on_edge():
    cam = gr.bev_camera(gr.SSCBENCH_KITTI360, 400)
    assert cam.intrinsics[0, 1, 2] == pytest.approx(400.0)  # the ego origin sits on the image edge
    assert cam.intrinsics[0, 0, 0] == pytest.approx(400.0)


def test_bad_strategy_arguments():
    _, p = _front()
    with pytest.raises(ValueError, match="strategy"):
        gr.apply_strategy("drone", p, "occ3d")
    with pytest.raises(ValueError, match="cam_from_grid"):
        cs.elevated(torch.eye(3)[None])
    with pytest.raises(ValueError, match="size"):
        gr.bev_camera("occ3d", 0)
    with pytest.raises(ValueError, match="model"):
        gr.bev_camera("occ3d", 10, "fisheye")
