"""RayIoU: hand-built scenes with known answers, agreement with a per-ray reference, real data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.metrics import RayIoU, lidar_ray_directions
from tests.metrics.reference import reference_ray_counts
from tests.shared_data import OCC3D_DEMO

FREE, WALL, CAR, ROAD = 0, 1, 2, 3
TOY = gr.VoxelGrid(
    name="toy",
    range_min=(-10.0, -10.0, -2.0),
    range_max=(10.0, 10.0, 2.0),
    voxel_size=0.5,
    shape=(40, 40, 8),
    class_names=("free", "wall", "car", "road"),
    empty_index=FREE,
)
FORWARD = torch.tensor([[1.0, 0.0, 0.0]])
# Origins in voxel interiors (no ray grazes a voxel edge), all looking along +x.
ORIGINS = [torch.tensor([[0.25, 0.25, 0.25], [0.1, -3.3, -0.8], [-2.2, 4.1, 1.1]])]


def _scene(wall_x_index: int | None, label: int = WALL) -> torch.Tensor:
    labels = torch.full((1, *TOY.shape), FREE)
    if wall_x_index is not None:
        labels[0, wall_x_index] = label  # a wall filling the plane x in [-10 + 0.5 i, -10 + 0.5 (i + 1))
    return labels


def _metric(**kwargs) -> RayIoU:
    return RayIoU(TOY, directions=FORWARD, **kwargs)


def test_wall_at_known_distance_is_a_perfect_match():
    # The wall occupies x in [5, 5.5): each ray leaves the first wall voxel 5.5 - x0 metres away.
    metric = _metric()
    metric.update(_scene(30), _scene(30), ORIGINS)
    assert metric.gt_count.tolist() == [0, 3, 0, 0]
    assert metric.tp_count.tolist() == [[0, 3, 0, 0]] * 3
    out = metric.compute()
    assert float(out["rayiou"]) == 1.0
    assert [float(out[k]) for k in ("rayiou@1", "rayiou@2", "rayiou@4")] == [1.0, 1.0, 1.0]


def test_wall_shifted_by_1_5_m_is_right_at_2_and_4_m_only():
    metric = _metric()
    metric.update(_scene(33), _scene(30), ORIGINS)  # predicted 3 voxels = 1.5 m too far
    out = metric.compute()
    assert float(out["rayiou@1"]) == 0.0
    assert float(out["rayiou@2"]) == 1.0
    assert float(out["rayiou@4"]) == 1.0
    assert float(out["rayiou"]) == pytest.approx(2 / 3)


def test_mislabelled_wall_scores_zero_for_both_classes():
    metric = _metric()
    metric.update(_scene(30, CAR), _scene(30, WALL), ORIGINS)
    out = metric.compute()
    per_class = out["per_class_rayiou"]
    assert per_class[:, WALL].tolist() == [0.0] * 3
    assert per_class[:, CAR].tolist() == [0.0] * 3
    assert torch.isnan(per_class[:, ROAD]).all() and torch.isnan(per_class[:, FREE]).all()
    assert float(out["rayiou"]) == 0.0


def test_object_in_front_hides_the_wall_from_the_prediction():
    pred = _scene(30)
    pred[0, 25, :, :] = CAR  # a predicted car at 2.5 m, in front of the true wall
    metric = _metric()
    metric.update(pred, _scene(30), ORIGINS)
    assert metric.pred_count.tolist() == [0, 0, 3, 0]
    assert float(metric.compute()["rayiou"]) == 0.0


def test_rays_whose_truth_hits_nothing_are_dropped():
    metric = _metric()
    metric.update(_scene(30), _scene(None), ORIGINS)
    assert metric.gt_count.sum() == 0 and metric.pred_count.sum() == 0
    assert math.isnan(float(metric.compute()["rayiou"]))


def test_prediction_that_hits_nothing_is_a_miss():
    metric = _metric()
    metric.update(_scene(None), _scene(30), ORIGINS)
    assert metric.gt_count.tolist() == [0, 3, 0, 0]
    assert metric.pred_count.tolist() == [3, 0, 0, 0]  # counted as free space, excluded
    assert float(metric.compute()["rayiou"]) == 0.0


def test_ground_truth_ignore_voxel_drops_the_ray():
    metric = _metric()
    metric.update(_scene(30), _scene(30, 255), ORIGINS)
    assert metric.gt_count.sum() == 0 and metric.pred_count.sum() == 0


def _random_scene(gen: torch.Generator, p: float) -> torch.Tensor:
    labels = torch.randint(1, 4, (1, *TOY.shape), generator=gen)
    labels[torch.rand(1, *TOY.shape, generator=gen) > p] = FREE
    return labels


def test_random_scenes_match_the_per_ray_reference():
    gen = torch.Generator().manual_seed(0)
    directions = torch.randn(120, 3, generator=gen, dtype=torch.float64)
    origins = [torch.rand(2, 3, generator=gen, dtype=torch.float64) * 8 - 4 for _ in range(2)]
    target = torch.cat([_random_scene(gen, 0.08) for _ in range(2)])
    pred = target.clone()
    pred[torch.rand(pred.shape, generator=gen) < 0.3] = FREE  # missed voxels
    noise = torch.rand(pred.shape, generator=gen) < 0.01
    pred[noise] = torch.randint(1, 4, (int(noise.sum()),), generator=gen)  # extra or relabelled
    metric = RayIoU(TOY, thresholds=(0.5, 1.0, 3.0), directions=directions)
    metric.update(pred, target, origins)
    tp = np.zeros((3, 4), dtype=np.int64)
    gt_cnt = np.zeros(4, dtype=np.int64)
    pred_cnt = np.zeros(4, dtype=np.int64)
    for b in range(2):
        t, g, p = reference_ray_counts(
            pred[b].numpy(), target[b].numpy(), origins[b].numpy(), directions.numpy(), TOY, (0.5, 1.0, 3.0)
        )
        tp, gt_cnt, pred_cnt = tp + t, gt_cnt + g, pred_cnt + p
    assert gt_cnt.sum() > 200  # not vacuous
    assert 0 < tp[0].sum() < tp[2].sum() < gt_cnt.sum()
    np.testing.assert_array_equal(metric.tp_count.numpy(), tp)
    np.testing.assert_array_equal(metric.gt_count.numpy(), gt_cnt)
    np.testing.assert_array_equal(metric.pred_count.numpy(), pred_cnt)
    assert set(metric.compute()) == {"rayiou", "rayiou@0.5", "rayiou@1", "rayiou@3", "per_class_rayiou"}


def test_closed_room_is_symmetric_and_bounded():
    # Walls on every face: every ray hits in both grids, so swapping them swaps GT and Pred counts.
    gen = torch.Generator().manual_seed(1)
    a = _random_scene(gen, 0.02)
    b = _random_scene(gen, 0.02)
    for labels in (a, b):
        shell = torch.ones(TOY.shape, dtype=torch.bool)
        shell[1:-1, 1:-1, 1:-1] = False
        labels[0][shell] = torch.randint(1, 4, (int(shell.sum()),), generator=gen)
    directions = lidar_ray_directions()[::7]
    origin = [torch.tensor([[0.3, 0.1, 0.2]])]
    ab, ba = RayIoU(TOY, directions=directions), RayIoU(TOY, directions=directions)
    ab.update(a, b, origin)
    ba.update(b, a, origin)
    assert int(ab.gt_count.sum()) == directions.shape[0]  # nothing dropped
    out_ab, out_ba = ab.compute(), ba.compute()
    torch.testing.assert_close(out_ab["per_class_rayiou"], out_ba["per_class_rayiou"], equal_nan=True)
    values = out_ab["per_class_rayiou"][:, 1:]
    assert ((values >= 0) & (values <= 1)).all()
    assert 0 < float(out_ab["rayiou"]) < 1


def test_batch_additivity_origin_formats_and_reset():
    gen = torch.Generator().manual_seed(2)
    target = torch.cat([_random_scene(gen, 0.03) for _ in range(2)])
    pred = torch.roll(target, 1, dims=1)
    origins = torch.rand(2, 3, 3, generator=gen) * 6 - 3
    directions = lidar_ray_directions()[::11]
    whole = RayIoU(TOY, directions=directions)
    whole.update(pred, target, origins)  # one [B, T, 3] tensor
    parts = RayIoU(TOY, directions=directions)
    for b in range(2):
        parts.update(pred[b : b + 1], target[b : b + 1], [origins[b]])
    for name in ("tp_count", "gt_count", "pred_count"):
        torch.testing.assert_close(getattr(whole, name), getattr(parts, name))
        assert getattr(whole, name).dtype == torch.int64
    parts.reset()
    assert int(parts.gt_count.sum()) == 0 and int(parts.tp_count.sum()) == 0
    parts.update(pred[:1], target[:1], [torch.zeros(0, 3)])  # no origin: nothing added
    assert int(parts.gt_count.sum()) == 0


def test_lidar_ray_pattern():
    dirs = lidar_ray_directions().double()
    assert dirs.shape == (39 * 360, 3)
    torch.testing.assert_close(dirs.norm(dim=1), torch.ones(len(dirs), dtype=torch.float64), atol=1e-6, rtol=0)
    pitch = torch.asin(dirs[::360, 2])
    assert float(pitch[0]) == pytest.approx(-math.pi / 4, abs=1e-6)
    assert float(pitch[9]) == pytest.approx(-(math.pi / 2 - math.atan(10)), abs=1e-6)
    assert float(pitch[-2]) < 0.21 <= float(pitch[-1])
    step = pitch[10:] - pitch[9:-1]
    torch.testing.assert_close(step, torch.full_like(step, float(pitch[9] - pitch[8])), atol=1e-6, rtol=0)
    azimuth = torch.atan2(dirs[:360, 1], dirs[:360, 0])
    assert torch.rad2deg(azimuth[1]).item() == pytest.approx(1.0, abs=1e-4)


REAL = str(OCC3D_DEMO / "3D_occupancy_data.npz")


def _real_gt() -> torch.Tensor:
    try:
        return torch.from_numpy(np.load(REAL)["semantics"]).long()[None]
    except FileNotFoundError:
        pytest.skip(f"real Occ3D sample not found at {REAL}")


def test_real_occ3d_sample():
    gt = _real_gt()
    # LiDAR origin of nuScenes (lidar2ego translation) and a few positions along the road.
    origins = [torch.tensor([[0.986, 0.0, 1.84], [-8.0, 0.3, 1.8], [9.0, -0.2, 1.9]])]
    metric = RayIoU(gr.OCC3D_NUSCENES)
    metric.update(gt, gt, origins)
    assert float(metric.compute()["rayiou"]) == 1.0
    assert int(metric.gt_count.sum()) > 10_000

    pred = torch.roll(gt, shifts=2, dims=0 + 1)  # 0.8 m along x
    directions = lidar_ray_directions()[::97]
    fast = RayIoU(gr.OCC3D_NUSCENES, directions=directions)
    fast.update(pred, gt, origins)
    tp, g, p = reference_ray_counts(
        pred[0].numpy(), gt[0].numpy(), origins[0].numpy(), directions.numpy(), gr.OCC3D_NUSCENES, (1, 2, 4)
    )
    np.testing.assert_array_equal(fast.tp_count.numpy(), tp)
    np.testing.assert_array_equal(fast.gt_count.numpy(), g)
    np.testing.assert_array_equal(fast.pred_count.numpy(), p)
    out = fast.compute()
    assert 0 < float(out["rayiou@1"]) < float(out["rayiou@4"]) <= 1


@pytest.mark.parametrize(
    "pred_shape, target_shape, origins, error, match",
    [
        ((1, 40, 40, 8), (1, 40, 40, 4), [torch.zeros(1, 3)], ValueError, "target must have shape"),
        ((2, 40, 40, 8), (1, 40, 40, 8), [torch.zeros(1, 3)], ValueError, "pred must have shape"),
        ((1, 40, 40, 8), (1, 40, 40, 8), [torch.zeros(1, 3)] * 2, ValueError, "list of 1 tensors"),
        ((1, 40, 40, 8), (1, 40, 40, 8), torch.zeros(1, 3), ValueError, "origins must have shape"),
        ((1, 40, 40, 8), (1, 40, 40, 8), [torch.zeros(1, 2)], ValueError, r"origins\[0\] must have shape"),
        (
            (1, 40, 40, 8),
            (1, 40, 40, 8),
            [torch.zeros(1, 3, dtype=torch.long)],
            TypeError,
            r"origins\[0\] must be a floating",
        ),
    ],
)
def test_bad_update_input_is_named(pred_shape, target_shape, origins, error, match):
    with pytest.raises(error, match=match):
        _metric().update(
            torch.zeros(pred_shape, dtype=torch.long), torch.zeros(target_shape, dtype=torch.long), origins
        )


def test_bad_labels_and_construction_are_named():
    with pytest.raises(ValueError, match=r"pred must hold labels in \[0, 4\)"):
        _metric().update(_scene(30, 9), _scene(30), ORIGINS)
    with pytest.raises(ValueError, match="target must hold labels"):
        _metric().update(_scene(30), _scene(30, -1), ORIGINS)
    with pytest.raises(TypeError, match="pred must be an integer"):
        _metric().update(_scene(30).float(), _scene(30), ORIGINS)
    with pytest.raises(ValueError, match="thresholds"):
        RayIoU(TOY, thresholds=(1.0, -2.0))
    with pytest.raises(ValueError, match="thresholds"):
        RayIoU(TOY, thresholds=())
    with pytest.raises(ValueError, match="non-zero"):
        RayIoU(TOY, directions=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="grid must be"):
        RayIoU("nuscenes")
