"""ray_origins: SparseOcc's EgoPoseDataset origins, step by step, on hand-built and real poses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gaussrender.geometry import ray_origins
from gaussrender.geometry.transforms import pose_matrix
from tests.shared_data import OCC3D_DEMO

CALIB = str(OCC3D_DEMO / "nuscenes_mini_val_calib.json")


def _reference(ref_index, ego2global, lidar2ego, limit=39.0, max_origins=8):
    """EgoPoseDataset.__getitem__ written out in float64 NumPy, frame by frame."""
    ref_lidar_from_global = np.linalg.inv(ego2global[ref_index] @ lidar2ego[ref_index])
    kept = []
    for t in range(len(ego2global)):
        if t == ref_index:
            origin_lidar = np.zeros(3)
        else:
            origin_lidar = (ref_lidar_from_global @ ego2global[t] @ lidar2ego[t])[:3, 3]
        origin = lidar2ego[ref_index][:3] @ np.append(origin_lidar, 1.0)
        if abs(origin[0]) < limit and abs(origin[1]) < limit:
            kept.append(origin)
    if len(kept) > max_origins:
        kept = [kept[i] for i in np.round(np.linspace(0, len(kept) - 1, max_origins)).astype(np.int64)]
    return np.stack(kept) if kept else np.zeros((0, 3))


def _yaw_pose(x, y, yaw_deg, z=0.0):
    half = math.radians(yaw_deg) / 2
    return pose_matrix([x, y, z], [math.cos(half), 0.0, 0.0, math.sin(half)])


def test_straight_drive_keeps_frames_within_39_m_and_picks_8_evenly():
    lidar = pose_matrix([1.0, 0.0, 1.8], [1.0, 0.0, 0.0, 0.0])
    # The car drives along global y while heading +y (yaw 90 deg), 2 m per frame.
    frames = torch.stack([_yaw_pose(100.0, 2.0 * t, 90.0) for t in range(60)])
    lidars = lidar.expand(60, 4, 4)
    ref = 30
    out = ray_origins(frames[ref], lidar, frames, lidars)
    # In the reference ego frame, frame t's LiDAR is 2 (t - ref) m ahead (x), 1 m lidar offset.
    kept_x = [2.0 * (t - ref) + 1.0 for t in range(60) if abs(2.0 * (t - ref) + 1.0) < 39]
    pick = np.round(np.linspace(0, len(kept_x) - 1, 8)).astype(int)
    expected = np.array([[kept_x[i], 0.0, 1.8] for i in pick])
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(out.numpy(), _reference(ref, frames.numpy(), lidars.numpy()), atol=1e-9)


def test_few_frames_are_all_kept_and_far_ones_dropped():
    lidar = pose_matrix([0.9, 0.0, 1.84], [0.7071, 0.0, 0.0, -0.7071])  # nuScenes-like rotated lidar
    frames = torch.stack([_yaw_pose(0, 0, 0), _yaw_pose(10, 5, 20), _yaw_pose(-50, 0, 0)])
    out = ray_origins(frames[0], lidar, frames, lidar.expand(3, 4, 4))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[0].numpy(), [0.9, 0.0, 1.84], atol=1e-9)
    np.testing.assert_allclose(out.numpy(), _reference(0, frames.numpy(), lidar.expand(3, 4, 4).numpy()), atol=1e-9)
    none = ray_origins(frames[2], lidar, frames[:2], lidar.expand(2, 4, 4), limit_xy=5.0)
    assert none.shape == (0, 3)


def test_real_nuscenes_mini_scene():
    try:
        with open(CALIB) as f:
            infos = json.load(f)["infos"]
    except FileNotFoundError:
        pytest.skip(f"nuScenes calibration sample not found at {CALIB}")
    scene = [i for i in infos if i["scene_token"] == infos[0]["scene_token"]]
    scene.sort(key=lambda i: i["timestamp"])
    ego = torch.stack([pose_matrix(i["ego2global_translation"], i["ego2global_rotation"]) for i in scene])
    lid = torch.stack([pose_matrix(i["lidar2ego_translation"], i["lidar2ego_rotation"]) for i in scene])
    for ref in (0, len(scene) // 2, len(scene) - 1):
        out = ray_origins(ego[ref], lid[ref], ego, lid)
        expected = _reference(ref, ego.numpy(), lid.numpy())
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
        assert 1 <= out.shape[0] <= 8
        assert (out[:, :2].abs() < 39).all()
        # The reference frame's own LiDAR (lidar2ego translation) is among the origins when it
        # is picked; the origins lie near LiDAR height above the ego frame's ground.
        assert ((out[:, 2] - 1.84).abs() < 3).all()
    middle = ray_origins(ego[20], lid[20], ego, lid)
    assert middle.shape[0] == 8


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(ref_ego2global=torch.eye(3, dtype=torch.float64)), ValueError, "ref_ego2global must have shape"),
        (dict(frames_ego2global=torch.eye(4, dtype=torch.float64)), ValueError, "frames_ego2global must have shape"),
        (
            dict(frames_lidar2ego=torch.eye(4, dtype=torch.float64).expand(3, 4, 4)),
            ValueError,
            "frames_lidar2ego must have shape",
        ),
        (dict(ref_lidar2ego=torch.eye(4, dtype=torch.long)), TypeError, "ref_lidar2ego must be a floating"),
        (dict(limit_xy=0.0), ValueError, "limit_xy"),
        (dict(max_origins=0), ValueError, "max_origins"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    eye = torch.eye(4, dtype=torch.float64)
    args = dict(
        ref_ego2global=eye,
        ref_lidar2ego=eye,
        frames_ego2global=eye.expand(2, 4, 4),
        frames_lidar2ego=eye.expand(2, 4, 4),
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ray_origins(**args)
