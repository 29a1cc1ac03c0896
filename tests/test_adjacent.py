"""adjacent_cam_from_grid against a pose chain written out by hand in float64."""

import math

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.geometry.adjacent import rigid_inverse


def _pose(yaw_deg: float, t) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    m = np.eye(4)
    m[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    m[:3, 3] = t
    return m


# camera -> ego: columns are the ego coordinates of the camera's x (right), y (down), z (forward)
FORWARD = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # looks along ego +x
LEFT = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # looks along ego +y


def _sensor(rot, t):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, t
    return m


def _by_hand(p, ref_yaw, ref_t, other_yaw, other_t, cam):
    """Grid point -> global -> other ego -> camera, each step with explicit cos/sin."""
    a = math.radians(ref_yaw)
    g = np.array(
        [
            math.cos(a) * p[0] - math.sin(a) * p[1] + ref_t[0],
            math.sin(a) * p[0] + math.cos(a) * p[1] + ref_t[1],
            p[2] + ref_t[2],
        ]
    )
    b = math.radians(other_yaw)
    d = g - np.asarray(other_t)
    e = np.array([math.cos(b) * d[0] + math.sin(b) * d[1], -math.sin(b) * d[0] + math.cos(b) * d[1], d[2]])
    if cam == "forward":  # at (1.5, 0, 1.6): x = -ego y, y = -ego z, z = ego x
        e = e - [1.5, 0.0, 1.6]
        return np.array([-e[1], -e[2], e[0]])
    e = e - [0.0, 0.8, 1.6]  # left camera: x = ego x, y = -ego z, z = ego y
    return np.array([e[0], -e[2], e[1]])


def test_pose_chain_matches_the_hand_computation():
    ref_yaw, ref_t = 30.0, (100.0, 200.0, 0.5)
    others = [(35.0, (103.0, 202.0, 0.6)), (36.0, (103.2, 202.1, 0.6))]  # one ego pose per camera timestamp
    sensors = np.stack([_sensor(FORWARD, (1.5, 0, 1.6)), _sensor(LEFT, (0, 0.8, 1.6))])
    cam_from_grid = gr.adjacent_cam_from_grid(
        torch.from_numpy(_pose(ref_yaw, ref_t)),
        torch.from_numpy(np.stack([_pose(y, t) for y, t in others])),
        torch.from_numpy(sensors),
    )
    assert cam_from_grid.dtype == torch.float64 and cam_from_grid.shape == (2, 4, 4)
    rng = np.random.default_rng(0)
    for p in rng.uniform(-40, 40, (20, 3)):
        for v, cam in enumerate(("forward", "left")):
            got = cam_from_grid[v].numpy() @ np.array([*p, 1.0])
            np.testing.assert_allclose(got[:3], _by_hand(p, ref_yaw, ref_t, *others[v], cam), atol=1e-9)
            assert got[3] == 1.0
    # the grid as the LiDAR frame (SurroundOcc): ego_from_grid applied first
    ego_from_grid = _pose(-90.0, (0.9, 0.0, 1.8))
    with_grid = gr.adjacent_cam_from_grid(
        torch.from_numpy(_pose(ref_yaw, ref_t)),
        torch.from_numpy(np.stack([_pose(y, t) for y, t in others])),
        torch.from_numpy(sensors),
        torch.from_numpy(ego_from_grid),
    )
    q = np.array([3.0, -2.0, 0.5, 1.0])
    np.testing.assert_allclose(with_grid[1].numpy() @ q, cam_from_grid[1].numpy() @ (ego_from_grid @ q), atol=1e-9)


def test_identity_cases():
    eye = torch.eye(4, dtype=torch.float64)
    sensors = torch.from_numpy(np.stack([_sensor(FORWARD, (1.5, 0, 1.6)), _sensor(LEFT, (0, 0.8, 1.6))]))
    # the same frame: only the calibration is left
    ref = torch.from_numpy(_pose(123.0, (1000.0, -500.0, 3.0)))
    same = gr.adjacent_cam_from_grid(ref, ref, sensors)
    np.testing.assert_allclose(same.numpy(), np.linalg.inv(sensors.numpy()), atol=1e-9)
    # identity calibration: the relative ego motion alone, inv(other) @ ref
    other = torch.from_numpy(_pose(120.0, (1001.0, -499.0, 3.0)))
    rel = gr.adjacent_cam_from_grid(ref, other, eye[None])
    np.testing.assert_allclose(rel[0].numpy(), np.linalg.inv(other.numpy()) @ ref.numpy(), atol=1e-9)
    assert torch.equal(gr.adjacent_cam_from_grid(eye, eye, eye[None].expand(3, 4, 4)), eye.expand(3, 4, 4))
    np.testing.assert_allclose(rigid_inverse(ref).numpy(), np.linalg.inv(ref.numpy()), atol=1e-12)


def test_bad_input_is_refused_by_name():
    eye = torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="ref_ego2global"):
        gr.adjacent_cam_from_grid(eye[:3], eye, eye[None])
    with pytest.raises(ValueError, match="cam_ego2global"):
        gr.adjacent_cam_from_grid(eye, eye.expand(2, 4, 4), eye[None])
    with pytest.raises(ValueError, match="cam_sensor2ego"):
        gr.adjacent_cam_from_grid(eye, eye, eye)
    scaled = eye.clone()
    scaled[0, 0] = 1.2
    with pytest.raises(ValueError, match="cam_sensor2ego must be rigid"):
        gr.adjacent_cam_from_grid(eye, eye, scaled[None])
    with pytest.raises(ValueError, match="ego_from_grid"):
        gr.adjacent_cam_from_grid(eye, eye, eye[None], torch.eye(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="ref_ego2global"):
        gr.adjacent_cam_from_grid(torch.eye(4, dtype=torch.long), eye, eye[None])
