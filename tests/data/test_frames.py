"""Adjacent frames within a scene, and their cameras against the reference grid."""

import dataclasses
import random

import numpy as np
import pytest

from gaussrender.data import CAMERA_NAMES, adjacent_cam_from_ego, adjacent_samples, cam_from_ego, load_infos
from tests.data.synthetic import synthetic_scene
from tests.shared_data import OCC3D_DEMO

PKL = OCC3D_DEMO / "world-nuscenes_mini_infos_val.pkl"


def _two_scenes():
    a = synthetic_scene("scene-0001", 5)
    b = synthetic_scene("scene-0002", 3)
    mixed = a + b
    random.Random(0).shuffle(mixed)  # any order: frames are ordered by timestamp within a scene
    return a, b, mixed


def test_adjacent_samples_orders_by_time_within_the_scene():
    a, b, mixed = _two_scenes()
    i = mixed.index(a[2])
    got = adjacent_samples(mixed, i, (-2, -1, 0, 1, 2))
    assert [s.token for s in got] == [s.token for s in a]
    assert adjacent_samples(mixed, a[0].token, (1,))[0] is a[1]
    with pytest.raises(ValueError, match="offset 3 from frame 2 of scene 'scene-0001' leaves the scene"):
        adjacent_samples(mixed, i, (3,))
    with pytest.raises(ValueError, match="leaves the scene"):
        adjacent_samples(mixed, mixed.index(b[0]), (-1,))
    with pytest.raises(ValueError, match="no sample with token"):
        adjacent_samples(mixed, "nope", (1,))
    with pytest.raises(IndexError):
        adjacent_samples(mixed, 99, (1,))
    with pytest.raises(ValueError, match="offsets must be ints"):
        adjacent_samples(mixed, i, (0.5,))
    dup = [a[0], dataclasses.replace(a[1], timestamp=a[0].timestamp)]
    with pytest.raises(ValueError, match="equal timestamps"):
        adjacent_samples(dup, 0, (1,))


def test_adjacent_cameras_see_a_static_point_where_the_other_frame_sees_it():
    a, b, _ = _two_scenes()
    ref, other = a[1], a[3]
    np.testing.assert_allclose(adjacent_cam_from_ego(ref, ref), cam_from_ego(ref), atol=1e-9)
    # a point fixed in the map, given in the reference ego frame and in the other frame's ego frame
    g = np.array([12.0, 3.0, 1.0, 1.0])
    in_ref = np.linalg.inv(ref.ego2global.matrix()) @ g
    in_other = np.linalg.inv(other.ego2global.matrix()) @ g
    np.testing.assert_allclose(adjacent_cam_from_ego(ref, other) @ in_ref, cam_from_ego(other) @ in_other, atol=1e-9)
    # the car drove 4 m along x between the frames: the point is 4 m closer to the front camera
    front = CAMERA_NAMES.index("CAM_FRONT")
    depth_ref = (cam_from_ego(ref) @ in_ref)[front, 2]
    depth_other = (adjacent_cam_from_ego(ref, other) @ in_ref)[front, 2]
    assert depth_ref - depth_other == pytest.approx(4.0, abs=1e-9)
    with pytest.raises(ValueError, match="one scene"):
        adjacent_cam_from_ego(ref, b[0])
    with pytest.raises(KeyError, match="CAM_X"):
        adjacent_cam_from_ego(ref, other, ["CAM_X"])


@pytest.mark.skipif(not PKL.is_file(), reason=f"real nuScenes-mini infos not found: {PKL}")
def test_real_next_frame_cameras_move_with_the_ego():
    samples = load_infos(PKL)
    ref = samples[10]
    (nxt,) = adjacent_samples(samples, 10, (1,))
    assert nxt.scene == ref.scene and nxt.timestamp > ref.timestamp
    rel = adjacent_cam_from_ego(ref, nxt)
    # the other frame's camera centres, in the reference grid, are where the ego moved to
    centres = np.linalg.inv(rel)[:, :3, 3]
    ego_shift = (np.linalg.inv(ref.ego2global.matrix()) @ nxt.ego2global.matrix())[:3, 3]
    own = np.linalg.inv(cam_from_ego(nxt))[:, :3, 3]  # centres in the next frame's own ego frame
    np.testing.assert_allclose(
        centres.mean(0) - own.mean(0), ego_shift, atol=0.1
    )  # 3.9 m of motion; cameras fire within ~50 ms
