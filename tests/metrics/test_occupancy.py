"""OccupancyMetrics: a dense reference confusion matrix, the benchmarks' averaging rules, traps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.metrics import (
    OCC3D_CONVENTION,
    SSCBENCH_CONVENTION,
    SURROUNDOCC_CONVENTION,
    IoUConvention,
    OccupancyMetrics,
)
from tests.metrics.reference import dense_confusion
from tests.shared_data import OCC3D_DEMO

C, EMPTY = 5, 4
# a 5-class grid that is not a preset: each metric passes its averaging rule
GRID = gr.VoxelGrid(
    name="five",
    range_min=(0, 0, 0),
    range_max=(1, 1, 1),
    voxel_size=1.0,
    shape=(1, 1, 1),
    class_names=("a", "b", "c", "d", "free"),
    empty_index=EMPTY,
)
NAN = IoUConvention(absent="nan")


def _random_batch(seed: int, shape=(2, 6, 5, 4), ignore_frac=0.1):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C, shape, generator=gen)
    target[torch.rand(shape, generator=gen) < ignore_frac] = 255
    pred = torch.randint(0, C, shape, generator=gen)
    mask = torch.rand(shape, generator=gen) < 0.8
    return pred, target, mask


def _reference_scores(cm: np.ndarray, classes, empty, absent, eps):
    ious = []
    for c in range(cm.shape[0]):
        tp = cm[c, c]
        union = cm[c, :].sum() + cm[:, c].sum() - tp
        if union == 0:
            ious.append(0.0 if absent == "zero" else math.nan)
        else:
            ious.append(tp / (union + eps))
    sel = [ious[c] for c in classes]
    if absent == "nan":
        present = [v for v in sel if not math.isnan(v)]
        miou = sum(present) / len(present) if present else math.nan
    else:
        miou = sum(sel) / len(sel)
    occ = [c for c in range(cm.shape[0]) if c != empty]
    free = [empty]
    tp = cm[np.ix_(occ, occ)].sum()
    fp = cm[np.ix_(free, occ)].sum()
    fn = cm[np.ix_(occ, free)].sum()
    iou = tp / (tp + fp + fn)
    return iou, miou, ious


@pytest.mark.parametrize("convention", [OCC3D_CONVENTION, SURROUNDOCC_CONVENTION, SSCBENCH_CONVENTION])
def test_matches_dense_reference(convention):
    metric = OccupancyMetrics(GRID, convention=convention)
    cm = np.zeros((C, C), dtype=np.int64)
    for seed in range(3):
        pred, target, mask = _random_batch(seed)
        metric.update(pred, target, mask)
        cm += dense_confusion(pred.numpy(), target.numpy(), C, 255, mask.numpy())
    assert metric.confmat.dtype == torch.int64
    np.testing.assert_array_equal(metric.confmat.numpy(), cm)
    out = metric.compute()
    iou, miou, ious = _reference_scores(cm, [0, 1, 2, 3], EMPTY, convention.absent, convention.eps)
    assert float(out["iou"]) == pytest.approx(iou, rel=1e-12)
    assert float(out["miou"]) == pytest.approx(miou, rel=1e-12)
    np.testing.assert_allclose(out["per_class_iou"].numpy(), ious, rtol=1e-12)


def test_perfect_prediction_bounds_and_symmetry():
    pred, target, _ = _random_batch(4, ignore_frac=0.0)
    perfect = OccupancyMetrics(GRID, convention=NAN)
    perfect.update(target, target)
    out = perfect.compute()
    assert float(out["iou"]) == 1.0 and float(out["miou"]) == 1.0
    forward, backward = OccupancyMetrics(GRID, convention=NAN), OccupancyMetrics(GRID, convention=NAN)
    forward.update(pred, target)
    backward.update(target, pred)
    a, b = forward.compute(), backward.compute()
    # IoU is symmetric in prediction and truth when nothing is ignored.
    torch.testing.assert_close(a["per_class_iou"], b["per_class_iou"])
    torch.testing.assert_close(a["iou"], b["iou"])
    assert ((a["per_class_iou"] >= 0) & (a["per_class_iou"] <= 1)).all()


def test_batch_additivity_and_reset():
    pred, target, mask = _random_batch(5, shape=(4, 6, 5, 4))
    whole = OccupancyMetrics(GRID, convention=NAN)
    whole.update(pred, target, mask)
    parts = OccupancyMetrics(GRID, convention=NAN)
    for i in range(4):
        parts.update(pred[i : i + 1], target[i : i + 1], mask[i : i + 1])
    torch.testing.assert_close(whole.confmat, parts.confmat)
    parts.reset()
    assert int(parts.confmat.sum()) == 0


def test_counts_are_pooled_not_averaged_per_sample():
    # Sample 1: class 0 fully right on 1 voxel; sample 2: class 0 wrong on 3 of 4 voxels.
    target = torch.full((2, 2, 2, 1), EMPTY)
    pred = target.clone()
    target[0, 0, 0, 0] = 0
    pred[0, 0, 0, 0] = 0
    target[1, :, :, 0] = 0
    pred[1, 0, 0, 0] = 0
    metric = OccupancyMetrics(GRID, convention=NAN)
    metric.update(pred, target)
    iou0 = float(metric.compute()["per_class_iou"][0])
    assert iou0 == pytest.approx(2 / 5)  # pooled: TP 2, union 5
    assert iou0 != pytest.approx((1.0 + 0.25) / 2)  # the per-sample average


def test_absent_class_rules():
    # Classes 0 and 1 occur, 2 and 3 never do (in prediction nor truth).
    target = torch.tensor([0, 0, 1, 1, EMPTY, EMPTY]).view(1, 6, 1, 1)
    pred = torch.tensor([0, 1, 1, 1, EMPTY, 0]).view(1, 6, 1, 1)
    iou0, iou1 = 1 / 3, 2 / 3
    results = {}
    for conv in (OCC3D_CONVENTION, SURROUNDOCC_CONVENTION, SSCBENCH_CONVENTION):
        m = OccupancyMetrics(GRID, convention=conv)
        m.update(pred, target)
        results[conv] = m.compute()
    occ3d = results[OCC3D_CONVENTION]
    assert float(occ3d["miou"]) == pytest.approx((iou0 + iou1) / 2)  # absent classes skipped
    assert torch.isnan(occ3d["per_class_iou"][2:4]).all()
    assert math.isnan(float(results[SURROUNDOCC_CONVENTION]["miou"]))  # plain mean propagates
    ssc = results[SSCBENCH_CONVENTION]
    assert float(ssc["miou"]) == pytest.approx((iou0 + iou1) / 4, rel=1e-5)  # absent scores 0
    assert ssc["per_class_iou"][2:4].tolist() == [0.0, 0.0]
    assert float(ssc["per_class_iou"][0]) == pytest.approx(1 / (3 + 1e-6), rel=1e-12)
    for out in results.values():  # never the "absent scores 1" trap
        assert not (out["per_class_iou"][2:4] == 1).any()


def test_ignore_and_mask_restrict_the_voxels():
    target = torch.tensor([0, 255, 1, 1]).view(1, 4, 1, 1)
    pred = torch.tensor([0, 1, 0, 1]).view(1, 4, 1, 1)
    mask = torch.tensor([True, True, False, True]).view(1, 4, 1, 1)
    m = OccupancyMetrics(GRID, convention=NAN)
    m.update(pred, target, mask)
    assert int(m.confmat.sum()) == 2
    assert m.confmat[0, 0] == 1 and m.confmat[1, 1] == 1


def test_a_preset_grid_picks_its_benchmark_convention():
    occ3d = OccupancyMetrics(gr.OCC3D_NUSCENES)
    assert occ3d.convention == OCC3D_CONVENTION
    assert occ3d.semantic_classes == tuple(range(17)) and occ3d.empty_index == 17
    surround = OccupancyMetrics("surroundocc")
    assert surround.convention == SURROUNDOCC_CONVENTION and surround.semantic_classes == tuple(range(1, 17))
    kitti = OccupancyMetrics(gr.SSCBENCH_KITTI360)
    assert kitti.convention == SSCBENCH_CONVENTION and kitti.semantic_classes == tuple(range(1, 19))
    custom = gr.VoxelGrid(
        name="toy",
        range_min=(0, 0, 0),
        range_max=(2, 2, 2),
        voxel_size=1.0,
        shape=(2, 2, 2),
        class_names=("free", "thing"),
        empty_index=0,
    )
    with pytest.raises(ValueError, match="no IoU convention"):
        OccupancyMetrics(custom)
    assert OccupancyMetrics(custom, convention=IoUConvention("zero")).convention.absent == "zero"
    # the grid gives the whole class layout
    m = OccupancyMetrics(GRID, convention=NAN)
    assert (m.num_classes, m.empty_index, m.ignore_index) == (C, EMPTY, 255)
    assert m.class_names == GRID.class_names and m.semantic_classes == (0, 1, 2, 3) and m.grid is GRID


def test_real_occ3d_sample_inside_mask_camera():
    path = str(OCC3D_DEMO / "3D_occupancy_data.npz")
    try:
        data = np.load(path)
    except FileNotFoundError:
        pytest.skip(f"real Occ3D sample not found at {path}")
    gt = torch.from_numpy(data["semantics"]).long()[None]
    mask = torch.from_numpy(data["mask_camera"]).bool()[None]
    metric = OccupancyMetrics(gr.OCC3D_NUSCENES)
    metric.update(gt, gt, mask)
    out = metric.compute()
    assert int(metric.confmat.sum()) == int(mask.sum()) == 100520  # PROVENANCE.md's count
    assert float(out["miou"]) == 1.0
    metric.reset()
    shifted = torch.roll(gt, shifts=1, dims=1)  # 0.4 m sideways
    metric.update(shifted, gt, mask)
    out = metric.compute()
    ref_cm = np.zeros((18, 18), dtype=np.int64)
    t, p = gt[mask].numpy(), shifted[mask].numpy()
    np.add.at(ref_cm, (t, p), 1)
    np.testing.assert_array_equal(metric.confmat.numpy(), ref_cm)
    assert 0.0 < float(out["miou"]) < 1.0


@pytest.mark.parametrize(
    "pred, target, mask, error, match",
    [
        (
            torch.zeros(1, 2, 2, 2),
            torch.zeros(1, 2, 2, 2, dtype=torch.long),
            None,
            TypeError,
            "pred must be an integer",
        ),
        (
            torch.zeros(1, 2, 2, 2, dtype=torch.long),
            torch.zeros(1, 2, 2, 3, dtype=torch.long),
            None,
            ValueError,
            "pred must have shape",
        ),
        (
            torch.zeros(2, 2, 2, dtype=torch.long),
            torch.zeros(2, 2, 2, dtype=torch.long),
            None,
            ValueError,
            "target must have shape",
        ),
        (
            torch.full((1, 2, 2, 2), 255),
            torch.zeros(1, 2, 2, 2, dtype=torch.long),
            None,
            ValueError,
            r"pred must hold labels in \[0, 5\), found \[255\]",
        ),
        (
            torch.zeros(1, 2, 2, 2, dtype=torch.long),
            torch.full((1, 2, 2, 2), 7),
            None,
            ValueError,
            r"target must hold labels .* or 255, found \[7\]",
        ),
        (
            torch.zeros(1, 2, 2, 2, dtype=torch.long),
            torch.zeros(1, 2, 2, 2, dtype=torch.long),
            torch.ones(1, 2, 2, 2),
            TypeError,
            "mask must be a bool",
        ),
        (
            torch.zeros(1, 2, 2, 2, dtype=torch.long),
            torch.zeros(1, 2, 2, 2, dtype=torch.long),
            torch.ones(1, 2, 2, dtype=torch.bool),
            ValueError,
            "mask must have shape",
        ),
    ],
)
def test_bad_update_input_is_named(pred, target, mask, error, match):
    with pytest.raises(error, match=match):
        OccupancyMetrics(GRID, convention=NAN).update(pred, target, mask)


def _grid(**fields):
    return gr.VoxelGrid(**{**GRID.__dict__, **fields})


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((_grid(class_names=("free",), empty_index=0),), dict(convention=NAN), ValueError, "num_classes"),
        ((_grid(semantic_classes=(9,)),), dict(convention=NAN), ValueError, "semantic_classes"),
        ((GRID,), dict(convention="nan"), TypeError, "convention must be an IoUConvention"),
        ((GRID,), dict(), ValueError, "no IoU convention"),
        (("nuscenes",), dict(), ValueError, "nuscenes"),
        ((GRID, NAN), dict(), TypeError, "positional"),  # options are keyword-only
    ],
)
def test_bad_construction_is_named(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        OccupancyMetrics(*args, **kwargs)


@pytest.mark.parametrize("name", ["absent", "eps"])
def test_bad_convention_is_named(name):
    with pytest.raises(ValueError, match=name):
        IoUConvention(**{name: "one" if name == "absent" else -1.0})
