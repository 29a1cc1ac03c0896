"""pose_matrix / quaternion_to_matrix against Rodrigues' formula and hand-checked rotations."""

from __future__ import annotations

import math

import pytest
import torch

from gaussrender.geometry.transforms import pose_matrix, quaternion_to_matrix


def _rodrigues(axis: torch.Tensor, angle: float) -> torch.Tensor:
    k = axis / axis.norm()
    K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_random_quaternions_match_rodrigues():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        axis = torch.randn(3, generator=gen, dtype=torch.float64)
        angle = float(torch.rand(1, generator=gen)) * 2 * math.pi
        q = torch.cat(
            [torch.tensor([math.cos(angle / 2)], dtype=torch.float64), math.sin(angle / 2) * axis / axis.norm()]
        )
        scale = 0.5 + float(torch.rand(1, generator=gen))  # unnormalised input is normalised
        R = quaternion_to_matrix(q * scale)
        torch.testing.assert_close(R, _rodrigues(axis, angle), atol=1e-12, rtol=0)
        torch.testing.assert_close(quaternion_to_matrix(-q), R, atol=1e-12, rtol=0)


def test_pose_matrix_maps_child_points_to_parent():
    half = math.pi / 4  # 90 deg about z: x -> y
    T = pose_matrix([1.0, 2.0, 3.0], [math.cos(half), 0.0, 0.0, math.sin(half)])
    p = T @ torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(p, torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64), atol=1e-12, rtol=0)
    assert T.dtype == torch.float64 and T[3].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert torch.det(T[:3, :3]).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "translation, rotation, error, match",
    [
        ([1.0, 2.0], [1.0, 0, 0, 0], ValueError, "translation must have shape"),
        ([1.0, 2.0, 3.0], [1.0, 0, 0], ValueError, "rotation_wxyz must have shape"),
        ([1.0, 2.0, 3.0], [0.0, 0, 0, 0], ValueError, "non-zero quaternion"),
        ([float("nan"), 0, 0], [1.0, 0, 0, 0], ValueError, "NaN"),
        ("abc", [1.0, 0, 0, 0], TypeError, "translation must be"),
    ],
)
def test_bad_input_is_named(translation, rotation, error, match):
    with pytest.raises(error, match=match):
        pose_matrix(translation, rotation)
