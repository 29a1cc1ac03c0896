"""Poses read from metadata: validation and the child→parent convention."""

import numpy as np
import pytest

from gaussrender.data import Pose


def test_pose_maps_child_to_parent():
    # a quarter turn about z then a shift: child x axis points along parent y
    pose = Pose.from_fields([1.0, 2.0, 3.0], [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], name="p")
    np.testing.assert_allclose(pose.matrix() @ [1, 0, 0, 1], [1, 3, 3, 1], atol=1e-12)
    assert pose.matrix().dtype == np.float64


@pytest.mark.parametrize(
    "t, q, match",
    [
        ([1.0, 2.0], [1, 0, 0, 0], "translation must be 3"),
        ([0, 0, 0], [1, 0, 0], "rotation must be 4"),
        ([0, 0, 0], [2, 0, 0, 0], "unit quaternion"),
        ([0, 0, np.nan], [1, 0, 0, 0], "finite"),
    ],
)
def test_rejects_bad_fields_naming_them(t, q, match):
    with pytest.raises(ValueError, match=f"calib.*{match}"):
        Pose.from_fields(t, q, name="calib")
