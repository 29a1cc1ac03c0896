"""points_in_boxes against a per-point, per-box float64 loop through each box's inverse pose."""

import math

import numpy as np
import pytest
import torch

import gaussrender as gr


def _brute(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    out = np.zeros(len(points), dtype=bool)
    for b in boxes:
        c, s = math.cos(b[6]), math.sin(b[6])
        world_from_box = np.array([[c, -s, 0, b[0]], [s, c, 0, b[1]], [0, 0, 1, b[2]], [0, 0, 0, 1.0]])
        box_from_world = np.linalg.inv(world_from_box)
        for i, p in enumerate(points):
            q = box_from_world @ np.array([*p, 1.0])
            if all(abs(q[k]) <= b[3 + k] / 2 + margin for k in range(3)):
                out[i] = True
    return out


def test_points_in_boxes_matches_a_brute_force_loop():
    rng = np.random.default_rng(0)
    boxes = np.concatenate(
        [
            rng.uniform(-4, 4, (6, 3)) * np.array([1.0, 1.0, 0.2]),
            rng.uniform(0.5, 4, (6, 3)),
            rng.uniform(-math.pi, math.pi, (6, 1)),
        ],
        1,
    )
    points = rng.uniform(-6, 6, (600, 3)) * np.array([1.0, 1.0, 0.4])
    want = _brute(points, boxes)
    assert 30 < want.sum() < 570
    got = gr.points_in_boxes(torch.from_numpy(points), torch.from_numpy(boxes))
    assert got.dtype == torch.bool and got.shape == (600,)
    np.testing.assert_array_equal(got.numpy(), want)
    # float32 input: computed in float64 from the same (rounded) values
    p32, b32 = points.astype(np.float32), boxes.astype(np.float32)
    got32 = gr.points_in_boxes(torch.from_numpy(p32), torch.from_numpy(b32))
    np.testing.assert_array_equal(got32.numpy(), _brute(p32.astype(np.float64), b32.astype(np.float64)))
    with_margin = gr.points_in_boxes(torch.from_numpy(points), torch.from_numpy(boxes), margin=0.3)
    np.testing.assert_array_equal(with_margin.numpy(), _brute(points, boxes, 0.3))
    assert with_margin.sum() > got.sum()


def test_heading_turns_the_long_side():
    # a 4 x 1 box turned 90 degrees: long along y
    box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 1.0, 1.0, math.pi / 2]], dtype=torch.float64)
    pts = torch.tensor([[0.0, 1.9, 0.0], [1.9, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, 0.51]], dtype=torch.float64)
    assert gr.points_in_boxes(pts, box).tolist() == [True, False, True, False]
    assert gr.points_in_boxes(pts, box[:0]).tolist() == [False] * 4
    assert gr.points_in_boxes(pts[:0], box).shape == (0,)


def test_bad_input_is_refused_by_name():
    p = torch.zeros(2, 3)
    b = torch.tensor([[0.0, 0, 0, 1, 1, 1, 0]])
    with pytest.raises(ValueError, match="points"):
        gr.points_in_boxes(torch.zeros(2, 2), b)
    with pytest.raises(ValueError, match="boxes"):
        gr.points_in_boxes(p, torch.zeros(1, 6))
    with pytest.raises(ValueError, match="boxes sizes"):
        gr.points_in_boxes(p, torch.tensor([[0.0, 0, 0, -1, 1, 1, 0]]))
    with pytest.raises(ValueError, match="boxes contains"):
        gr.points_in_boxes(p, torch.tensor([[0.0, 0, 0, 1, float("nan"), 1, 0]]))
    with pytest.raises(TypeError, match="points"):
        gr.points_in_boxes(torch.zeros(2, 3, dtype=torch.long), b)
    with pytest.raises(ValueError, match="margin"):
        gr.points_in_boxes(p, b, margin=-0.1)
