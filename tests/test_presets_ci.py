"""The four benchmark presets of issue 28: geometry as published, and the loss and metrics running on each.

Metrics run on each preset's full grid. The loss runs at CI size: the preset's range, classes,
empty class, camera strategy and name (so its metric convention) on a grid with fewer, larger
voxels (``benchmarks/preset_cost.py`` measures the full 512 x 512 x 40 grid; see
docs/data_and_eval.md), with small camera images and BEV.
"""

import dataclasses

import pytest
import torch

import gaussrender as gr
from gaussrender.metrics import OccupancyMetrics, RayIoU

# name: (range, voxel, shape, classes, empty, default camera strategy, Gaussian scale)
GEOMETRY = {
    "occ3d_waymo": ((-40, -40, -1, 40, 40, 5.4), 0.4, (200, 200, 16), 16, 15, "sensor", 0.27),
    "openocc": ((-40, -40, -1, 40, 40, 5.4), 0.4, (200, 200, 16), 17, 16, "sensor", 0.27),
    "nuscenes_occupancy": ((-51.2, -51.2, -5, 51.2, 51.2, 3), 0.2, (512, 512, 40), 17, 0, "trajectory", 0.10),
    "semantickitti": ((0, -25.6, -2, 51.2, 25.6, 4.4), 0.2, (256, 256, 32), 20, 0, "sensor", 0.10),
}
# CI size: the shape divided by this factor
COARSEN = {"occ3d_waymo": 4, "openocc": 4, "nuscenes_occupancy": 8, "semantickitti": 8}


def _labels(grid, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((1, *grid.shape), grid.empty_index, dtype=torch.int64)
    occupied = torch.rand((1, *grid.shape), generator=g) < 0.05
    classes = torch.tensor(grid.semantic_classes)
    labels[occupied] = classes[torch.randint(len(classes), (int(occupied.sum()),), generator=g)]
    return labels


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_preset_geometry(name):
    rng, voxel, shape, classes, empty, strategy, scale = GEOMETRY[name]
    g = gr.get_grid(name)
    assert g is gr.PRESETS[name] and g.name == name
    assert g.range_min == pytest.approx(rng[:3]) and g.range_max == pytest.approx(rng[3:])
    assert g.voxel_size == pytest.approx(voxel) and g.shape == shape
    assert g.num_classes == classes and g.empty_index == empty and g.ignore_index == 255
    assert g.camera_strategy == strategy and g.gaussian_scale == pytest.approx(scale)
    assert len(g.semantic_classes) == classes - 1 and empty not in g.semantic_classes
    assert gr.viz.palette(g).shape == (classes, 3)


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_metrics_on_the_full_grid(name):
    g = gr.get_grid(name)
    labels = _labels(g)
    pred = labels.clone()
    pred[labels == g.semantic_classes[0]] = g.semantic_classes[1]
    m = OccupancyMetrics(name)
    m.update(pred, labels)
    out = m.compute()
    assert float(out["iou"]) == pytest.approx(1.0)
    assert float(out["per_class_iou"][g.semantic_classes[0]]) == 0.0
    assert 0.8 < float(out["miou"]) < 1.0


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_loss_and_rayiou_at_ci_size(name):
    full = gr.get_grid(name)
    f = COARSEN[name]
    grid = dataclasses.replace(
        full,
        shape=tuple(n // f for n in full.shape),
        voxel_size=full.voxel_size * f,
        gaussian_scale=full.gaussian_scale * f,
    )
    labels = _labels(grid, seed=1)
    logits = torch.randn((1, grid.num_classes, *grid.shape), generator=torch.Generator().manual_seed(2))
    logits.scatter_add_(1, labels[:, None], torch.full((1, 1, *grid.shape), 3.0))
    logits.requires_grad_(True)
    k, cam_from_ego, _ = gr.nuscenes_rig((90, 160))
    if grid.range_min[0] >= 0:  # the KITTI grids lie in front of the car: the front camera
        k, cam_from_ego = k[:1], cam_from_ego[:1]
    loss_fn = gr.GaussRenderLoss(grid, bev_size=48, backend="torch", seed=0)  # the preset's camera strategy
    out = loss_fn(logits, labels, k[None], cam_from_ego[None], (90, 160))
    assert torch.isfinite(out["loss"].detach()) and float(out["bev"].detach()) > 0
    out["loss"].backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0

    ray = RayIoU(grid)
    ray.update(labels, labels, [torch.zeros(1, 3, dtype=torch.float64)])
    assert float(ray.compute()["rayiou"]) == pytest.approx(1.0)
