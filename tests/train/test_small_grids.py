"""Coarse synthetic grids end to end: the presets, the dataset written and read on them, the
models and the render loss built for them; and train.max_steps driving the cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

import gaussrender as gr
from gaussrender.geometry.grid import SYNTHETIC_MEDIUM, SYNTHETIC_SMALL, VoxelGrid, get_grid

from .helpers import tiny_config, tiny_trainer


@pytest.mark.parametrize(
    "grid, shape, voxel", [(SYNTHETIC_SMALL, (50, 50, 4), 1.6), (SYNTHETIC_MEDIUM, (100, 100, 8), 0.8)]
)
def test_presets_are_occ3d_at_a_coarser_voxel(grid, shape, voxel):
    occ = gr.OCC3D_NUSCENES
    assert get_grid(grid.name) is grid and gr.PRESETS[grid.name] is grid
    assert grid.shape == shape and grid.voxel_size == pytest.approx(voxel, rel=1e-12)
    assert grid.range_min == (-40.0, -40.0, -1.0) and grid.range_max == (40.0, 40.0, 5.4)
    assert grid.class_names == occ.class_names and grid.empty_index == 17 and grid.ignore_index == 255
    # the Gaussian's standard deviation keeps Occ3D's ratio to the voxel: 0.27 m at 0.4 m
    assert grid.gaussian_scale == pytest.approx(0.27 * voxel / 0.4, rel=1e-12)
    for axis in range(3):
        assert shape[axis] * voxel == pytest.approx(grid.range_max[axis] - grid.range_min[axis], rel=1e-12)


def test_bev_camera_follows_the_extent_not_the_voxel():
    # the same 80 m extent as Occ3D: the same BEV camera at the same pixel size
    a = gr.bev_camera(SYNTHETIC_SMALL, 100)
    b = gr.bev_camera(gr.OCC3D_NUSCENES, 100)
    torch.testing.assert_close(a.cam_from_world, b.cam_from_world, rtol=0, atol=0)
    torch.testing.assert_close(a.intrinsics, b.intrinsics, rtol=0, atol=0)
    # a ground point 40 m ahead projects to the top edge at 80 m height: 100/2 - 100 * 40/80 = 0
    p = torch.tensor([40.0, 0.0, 0.0, 1.0])
    cam = a.cam_from_world[0] @ p
    uv = a.intrinsics[0] @ cam[:3] / cam[2]
    assert float(cam[2]) == pytest.approx(80.0) and float(uv[1]) == pytest.approx(0.0, abs=1e-4)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    from gaussrender.train.synthetic import make_dataset

    root = tmp_path_factory.mktemp("small")
    return make_dataset(
        root, 1, num_val_scenes=1, seed=5, image_size=(24, 44), camera_stride=64, grid="synthetic_small"
    )


def test_synthetic_dataset_on_the_small_grid(small_data):
    from gaussrender.train.builders import build_dataset
    from gaussrender.train.config import config_from_dict
    from gaussrender.train.synthetic import SyntheticOccupancy, render_views
    from gaussrender.viz import palette

    cfg = config_from_dict(
        {
            "data": {
                "grid": "synthetic_small",
                "root": str(small_data.root),
                "image_size": [24, 44],
                "synthetic": {"num_scenes": 1, "num_val_scenes": 1, "image_size": [24, 44]},
            }
        }
    )
    train_set, val_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")
    assert isinstance(train_set, SyntheticOccupancy) and train_set.grid is SYNTHETIC_SMALL
    item, val_item = train_set[0], val_set[0]
    assert item["labels"].shape == (50, 50, 4) and item["mask_camera"].shape == (50, 50, 4)
    assert item["token"] != val_item["token"]  # disjoint scenes
    labels = item["labels"]
    assert (labels == 11).any() and (labels == 17).sum() > labels.numel() // 2  # road, mostly free
    assert "origins" in item  # RayIoU has its LiDAR origins
    # the images are the small grid's Gaussians (scale 1.08 m) seen by the written cameras
    colors = torch.from_numpy(palette(SYNTHETIC_SMALL)).float() / 255
    again = render_views(labels, colors, item["intrinsics"], item["cam_from_grid"], (24, 44), SYNTHETIC_SMALL)
    torch.testing.assert_close(item["images"].permute(0, 2, 3, 1), again, atol=0.6 / 255, rtol=0)


def test_a_grid_without_occ3d_classes_is_refused(tmp_path, small_data):
    from gaussrender.train.synthetic import SyntheticOccupancy, make_dataset

    with pytest.raises(ValueError, match="Occ3D's 18 classes"):
        make_dataset(tmp_path, 1, grid=gr.SURROUNDOCC_NUSCENES)
    with pytest.raises(ValueError, match="Occ3D's 18 classes"):
        SyntheticOccupancy(small_data.root, small_data.train_infos, grid="kitti360")
    # a label file written on another grid is refused when read, naming the shape
    reader = SyntheticOccupancy(small_data.root, small_data.train_infos, grid="synthetic_medium")
    with pytest.raises(ValueError, match="100, 100, 8"):
        reader[0]


@pytest.mark.parametrize("name", ["tpvformer", "surroundocc"])
@pytest.mark.parametrize("grid", [SYNTHETIC_SMALL, SYNTHETIC_MEDIUM], ids=lambda g: g.name)
def test_tiny_models_build_for_the_coarse_grids(name, grid):
    from gaussrender.models import ModelConfig, build_model

    model = build_model(
        ModelConfig(name=name, size="tiny", grid=grid, num_cameras=2, image_size=(24, 44), learned_opacity=True)
    )
    k, pose, _ = gr.nuscenes_rig((24, 44))
    out = model(torch.rand(1, 2, 3, 24, 44), k[None, :2], pose[None, :2].float())
    assert out["logits"].shape == (1, 18, *grid.shape) and out["opacity"].shape == (1, *grid.shape)
    assert torch.isfinite(out["logits"]).all()


def test_render_loss_on_the_small_grid():
    g = torch.Generator().manual_seed(0)
    labels = torch.full((1, *SYNTHETIC_SMALL.shape), 17)
    labels[:, :, :, 0] = 11
    labels[:, 30:33, 20:22, 1] = 4
    logits = torch.randn(1, 18, *SYNTHETIC_SMALL.shape, generator=g, requires_grad=True)
    k, pose, _ = gr.nuscenes_rig((24, 44))
    loss = gr.GaussRenderLoss(SYNTHETIC_SMALL, bev_size=100)(
        logits, labels, intrinsics=k[None], cam_from_grid=pose[None].float(), image_size=(24, 44), generator=g
    )
    assert torch.isfinite(loss["loss"].detach()) and float(loss["loss"].detach()) > 0
    loss["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_max_steps_drives_the_cosine(tmp_path):
    # 10 epochs x 3 samples = 30 iterations, cut to 6 by max_steps: the cosine spans 6
    lr, min_lr, warmup = 1e-2, 1e-5, 2
    t = tiny_trainer(
        tmp_path,
        tiny_config(
            optim={"lr": lr, "min_lr": min_lr, "warmup_iters": warmup},
            train={"epochs": 10, "max_steps": 6, "log_every": 1, "device": "cpu"},
        ),
    )
    assert t.total_steps == 6
    seen = []
    for _ in range(7):
        seen.append(t.optimizer.param_groups[0]["lr"])
        t.optimizer.step()  # no gradients: a no-op that keeps the scheduler's order check quiet
        t.scheduler.step()
    for step, got in enumerate(seen):
        # independent closed form: the release's timm schedule over 6 steps, each optimiser
        # step at timm's rate of the step before (step_update after the step): warm-up from
        # lr/3, then cosine from lr to min_lr (not shifted by the warm-up)
        t = max(step - 1, 0)
        if t < warmup:
            want = lr / 3 + t * (lr - lr / 3) / warmup
        else:
            want = min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(t, 6) / 6))
        assert got == pytest.approx(want, rel=1e-9), step
    assert seen[6] == pytest.approx(min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * 5 / 6)), rel=1e-9)


def test_a_user_grid_trains_with_the_trainer(tmp_path):
    # any VoxelGrid goes through the Trainer (the helper's 16x16x4 grid is not a preset)
    from .helpers import TINY_GRID

    assert isinstance(TINY_GRID, VoxelGrid) and TINY_GRID.name not in gr.PRESETS
    t = tiny_trainer(tmp_path, tiny_config(loss={"render": True}, train={"epochs": 1, "max_steps": 2, "device": "cpu"}))
    assert t.fit()["step"] == 2
