"""Every strategy checked by geometry: where the camera ends up and where a known point projects."""

import math

import numpy as np
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
    yaws = {
        "CAM_FRONT": 0,
        "CAM_FRONT_RIGHT": -55,
        "CAM_FRONT_LEFT": 55,
        "CAM_BACK": 180,
        "CAM_BACK_LEFT": 110,
        "CAM_BACK_RIGHT": -110,
    }
    for i, name in enumerate(names):
        a = math.radians(yaws[name])
        point = _centre(p[i]) + 20 * torch.tensor([math.cos(a), math.sin(a), 0.0], dtype=torch.float64)
        uv, z = cams[i].project(point[None])
        assert z.item() == pytest.approx(20.0, abs=1e-6)
        torch.testing.assert_close(uv[0, 0], k[i, :2, 2])  # lands on the principal point


# ---- independent float64 reference of the release's camera move (docs/method.md#cameras) ----------------


def _rx(deg):
    a = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _ry(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _ref_modify(t, phi=0.0, theta=0.0, tx=0.0, ty=0.0, tz=0.0):
    """T' = Rx(phi) Ry(theta) T, then T'[0..2, 3] += (tx, ty, tz); one 4x4 numpy pose."""
    rot = np.eye(4)
    rot[:3, :3] = _rx(phi) @ _ry(theta)
    out = rot @ np.asarray(t, dtype=np.float64)
    out[:3, 3] += (tx, ty, tz)
    return out


def _np_centre(t):
    return -t[:3, :3].T @ t[:3, 3]


def _draws(seed, *shapes):
    """The uniforms [0, 1) a strategy draws from a generator seeded with ``seed``, in order."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(s, generator=g, dtype=torch.float64).numpy() for s in shapes]


def _rig():
    return gr.nuscenes_rig(dtype=torch.float64)[1]


def _assert_rigid(poses):
    p = poses.detach().double().reshape(-1, 4, 4).numpy()
    for t in p:
        np.testing.assert_allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-6)
        assert np.linalg.det(t[:3, :3]) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_array_equal(t[3], [0, 0, 0, 1])


def test_nuscenes_camera_odds_are_the_releases_normalised_weights():
    release = {
        "CAM_FRONT": 1 / 3,
        "CAM_FRONT_LEFT": 1 / 6,
        "CAM_FRONT_RIGHT": 1 / 6,
        "CAM_BACK": 1 / 3,
        "CAM_BACK_LEFT": 1 / 6,
        "CAM_BACK_RIGHT": 1 / 6,
    }
    total = sum(release.values())
    ours = dict(zip(gr.geometry.NUSCENES_CAMERA_NAMES, gr.NUSCENES_CAMERA_WEIGHTS))
    assert set(ours) == set(release)
    for name, w in release.items():
        assert ours[name] == pytest.approx(w / total, abs=1e-15)
    assert ours["CAM_FRONT"] == ours["CAM_BACK"] == pytest.approx(1 / 4)
    assert ours["CAM_FRONT_LEFT"] == ours["CAM_BACK_RIGHT"] == pytest.approx(1 / 8)
    assert sum(gr.NUSCENES_CAMERA_WEIGHTS) == pytest.approx(1.0, abs=1e-15)


def test_modify_cameras_matches_reference_and_is_differentiable():
    poses = _rig()
    rng = np.random.default_rng(0)
    phi, theta, tx, ty, tz = (rng.uniform(-30, 30, 6) for _ in range(5))
    out = cs.modify_cameras(poses, *(torch.from_numpy(v) for v in (phi, theta, ty, tz)), tx=torch.from_numpy(tx))
    for i in range(6):
        np.testing.assert_allclose(
            out[i].numpy(), _ref_modify(poses[i].numpy(), phi[i], theta[i], tx[i], ty[i], tz[i]), atol=1e-12
        )
    _assert_rigid(out)
    # batched over two leading dims, scalars broadcast
    batched = cs.modify_cameras(poses[None].expand(2, 6, 4, 4), phi=7.0, tz=-1.0)
    np.testing.assert_allclose(batched[1, 3].numpy(), _ref_modify(poses[3].numpy(), phi=7.0, tz=-1.0), atol=1e-12)
    args = tuple(torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True) for _ in range(4))
    assert torch.autograd.gradcheck(lambda *a: cs.modify_cameras(poses[:2], *a), args)


def test_positive_phi_pitches_down_and_positive_theta_turns_left():
    k, p = _front()
    t = p[0].numpy()
    pitched = cs.modify_cameras(p, phi=20.0)[0].numpy()
    axis = pitched[2, :3]  # optical axis in grid coordinates (the front camera looks along +x)
    np.testing.assert_allclose(axis, [math.cos(math.radians(20)), 0.0, -math.sin(math.radians(20))], atol=1e-12)
    np.testing.assert_allclose(_np_centre(pitched), _np_centre(t), atol=1e-12)  # turns about its centre
    ground_ahead = np.array([20.0, 0.0, 0.0, 1.0])  # on the road, 20 m ahead

    def v(pose):
        x = pose @ ground_ahead
        return k[0, 1, 1].item() * x[1] / x[2] + k[0, 1, 2].item()

    assert v(pitched) < v(t) - 100  # moves up the image by hundreds of pixels
    turned = cs.modify_cameras(p, theta=10.0)[0].numpy()
    assert turned[2, 1] == pytest.approx(math.sin(math.radians(10)))  # optical axis gains +y (left)


def test_sensor_is_identity_and_strategies_are_seeded():
    _, p = _front()
    assert torch.equal(cs.sensor(p), p)
    for name in cs.STRATEGIES:
        a = gr.apply_strategy(name, p, "occ3d", torch.Generator().manual_seed(3))
        b = gr.apply_strategy(name, p, "occ3d", torch.Generator().manual_seed(3))
        assert torch.equal(a, b)
        _assert_rigid(a)
        gr.Cameras(a, torch.eye(3, dtype=torch.float64).expand(a.shape[0], 3, 3), 10, 10)  # still rigid
        c = gr.apply_strategy(name, p.float(), "occ3d", torch.Generator().manual_seed(3))
        assert c.dtype == torch.float32
        torch.testing.assert_close(c.double(), a, atol=1e-4, rtol=0)  # same draws whatever the dtype


def test_elevated_follows_the_release():
    poses = _rig()
    out = cs.elevated(poses, torch.Generator().manual_seed(5))
    (u,) = _draws(5, (6,))
    for i in range(6):
        np.testing.assert_allclose(
            out[i].numpy(), _ref_modify(poses[i].numpy(), 20.0, -5 + 10 * u[i], ty=8.0), atol=1e-12
        )
    # a level front camera: 8 cos 20° up, 8 sin 20° forward (in its yawed direction), 20° down
    _, p = _front()
    many = cs.elevated(p.expand(400, 4, 4), torch.Generator().manual_seed(1))
    d = _centre(many) - _centre(p)
    s20, c20 = math.sin(math.radians(20)), math.cos(math.radians(20))
    torch.testing.assert_close(d[:, 2], torch.full((400,), 8 * c20, dtype=torch.float64))
    torch.testing.assert_close(d[:, :2].norm(dim=-1), torch.full((400,), 8 * s20, dtype=torch.float64))
    assert d[:, 0].mean().item() == pytest.approx(8 * s20, abs=0.01)  # ≈ 2.74 m forward
    axis = many[:, 2, :3]
    torch.testing.assert_close(torch.rad2deg(torch.asin(-axis[:, 2])), torch.full((400,), 20.0, dtype=torch.float64))
    yaw = torch.rad2deg(torch.atan2(axis[:, 1], axis[:, 0]))
    assert yaw.min() >= -5 - 1e-9 and yaw.max() <= 5 + 1e-9 and yaw.min() < -4.5 and yaw.max() > 4.5


def test_random_follows_the_release():
    poses = _rig()
    out = cs.random_view(poses, torch.Generator().manual_seed(2))
    u_phi, u_theta, u_tz = _draws(2, (6,), (6,), (6,))
    for i in range(6):
        phi = 20 * u_phi[i]
        ref = _ref_modify(poses[i].numpy(), phi, -10 + 20 * u_theta[i], ty=0.4 * phi, tz=-10 + 20 * u_tz[i])
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-12)
    _, p = _front()
    many = cs.random_view(p.expand(1000, 4, 4), torch.Generator().manual_seed(1))
    axis, up = many[:, 2, :3], -many[:, 1, :3]
    pitch = torch.rad2deg(torch.asin(-axis[:, 2]))
    assert pitch.min() >= -1e-9 and pitch.max() <= 20 + 1e-9 and pitch.min() < 1 and pitch.max() > 19
    d = _centre(many) - _centre(p)
    # the centre moves 0.4·phi along the camera's own up axis and -tz along its pitched optical axis
    torch.testing.assert_close((d * up).sum(-1), 0.4 * pitch, atol=1e-9, rtol=0)
    along = (d * axis).sum(-1)
    assert along.abs().max() <= 10 + 1e-9 and along.min() < -9 and along.max() > 9
    assert d[:, 1].abs().max() > 1.0  # the yaw U[-10°, 10°] is applied before the shift


def test_stereo_follows_the_release():
    poses = _rig()[:3]
    out = cs.stereo(poses, torch.Generator().manual_seed(0))
    assert out.shape == (6, 4, 4)
    assert torch.equal(out[0::2], poses)
    u_ty, u_tz = _draws(0, (3,), (3,))
    for i in range(3):
        np.testing.assert_allclose(
            out[2 * i + 1].numpy(), _ref_modify(poses[i].numpy(), ty=-1 + 2 * u_ty[i], tz=-1 + 2 * u_tz[i]), atol=1e-12
        )
    _, p = _front()
    many = cs.stereo(p.expand(500, 4, 4), torch.Generator().manual_seed(4))[1::2]
    torch.testing.assert_close(many[:, :3, :3], p[0, :3, :3].expand(500, 3, 3))  # same orientation
    d = _centre(many) - _centre(p)
    right, down, axis = (p[0, i, :3] for i in range(3))
    torch.testing.assert_close(d @ right, torch.zeros(500, dtype=torch.float64), atol=1e-12, rtol=0)  # not sideways
    for comp in (d @ down, d @ axis):
        assert comp.abs().max() <= 1 + 1e-12 and comp.min() < -0.9 and comp.max() > 0.9
    batched = cs.stereo(_rig()[None, :2].expand(4, 2, 4, 4), torch.Generator().manual_seed(0))
    assert batched.shape == (4, 4, 4, 4)


def test_trajectory_is_a_2m_rise_on_occ3d_and_forward_on_kitti360():
    poses = _rig()
    for grid in (gr.OCC3D_NUSCENES, gr.SURROUNDOCC_NUSCENES):
        out = cs.trajectory(poses, grid, torch.Generator().manual_seed(0))
        expected = poses.clone()
        expected[:, 1, 3] += 2.0  # exactly +2 m on camera y: each camera rises 2 m
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    # KITTI-360, x in [0, 51.2]: one r for every camera of the call
    out = cs.trajectory(poses, gr.SSCBENCH_KITTI360, torch.Generator().manual_seed(7))
    (r,) = _draws(7, ())
    for i in range(6):
        np.testing.assert_allclose(
            out[i].numpy(), _ref_modify(poses[i].numpy(), tx=0.0, ty=2.0, tz=-51.2 * 0.7 * r), atol=1e-12
        )
    along = ((_centre(out) - _centre(poses)) * poses[:, 2, :3]).sum(-1)
    torch.testing.assert_close(along, torch.full((6,), 0.7 * 51.2 * float(r), dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    _, p = _front()
    fwd = torch.stack([(_centre(cs.trajectory(p, "kitti360", g)) - _centre(p))[0] @ p[0, 2, :3] for _ in range(300)])
    assert fwd.min() >= 0 and fwd.max() <= 0.7 * 51.2 + 1e-9 and fwd.min() < 2 and fwd.max() > 0.7 * 51.2 - 2
    # an asymmetric y range also shifts along camera x: (ymax - |ymin|) / 2 · r
    odd = gr.VoxelGrid("odd", (-2.0, -2.0, -1.0), (10.0, 6.0, 1.0), 1.0, (12, 8, 2), ("empty", "car"), 0)
    out = cs.trajectory(poses[:2], odd, torch.Generator().manual_seed(9))
    (r,) = _draws(9, ())
    for i in range(2):
        np.testing.assert_allclose(
            out[i].numpy(),
            _ref_modify(poses[i].numpy(), tx=(6 - 2) / 2 * r, ty=2.0, tz=-(10 - 2) * 0.7 * r),
            atol=1e-12,
        )


def test_drive_is_the_old_grid_frame_trajectory():
    _, p = _front()
    out = cs.drive(p.expand(200, 4, 4), gr.SURROUNDOCC_NUSCENES, torch.Generator().manual_seed(0))
    c = _centre(out)
    (u,) = _draws(0, (200,))
    torch.testing.assert_close(c[:, 2], _centre(p)[0, 2].expand(200) + 2.0)  # 2 m along grid z
    fwd = c[:, 0] - _centre(p)[0, 0]
    torch.testing.assert_close(fwd, torch.from_numpy(0.7 * u * (50 - 1.72)))  # fraction of the way to the wall
    assert fwd.max() > 20
    torch.testing.assert_close(out[:, :3, :3], p[0, :3, :3].expand(200, 3, 3))  # keeps its orientation
    back = cs.drive(_rig()[3:4], "occ3d", torch.Generator().manual_seed(0))
    d = (_centre(back) - _centre(_rig()[3:4]))[0]
    assert d[0] < 0 and d[1].abs() < 1e-9 and d[0] >= -0.7 * (40 + 0.05) - 1e-9  # the back camera drives backwards


def test_yaw_turns_left_and_forward_moves_along_view():
    _, p = _front()
    turned = cs.move_cameras(p, yaw_left=90.0)
    axis = turned[0, 2, :3]
    torch.testing.assert_close(axis, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)
    shifted = cs.move_cameras(p, forward=5.0, right=1.0, lift=2.0)
    torch.testing.assert_close(
        _centre(shifted[0]) - _centre(p[0]), torch.tensor([5.0, -1.0, 2.0], dtype=torch.float64), atol=1e-6, rtol=0
    )


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
    with pytest.raises(ValueError, match="phi"):
        cs.modify_cameras(p, phi=torch.zeros(3))
    with pytest.raises(ValueError, match="size"):
        gr.bev_camera("occ3d", 0)
    with pytest.raises(ValueError, match="model"):
        gr.bev_camera("occ3d", 10, "fisheye")
