"""Synthetic KITTI-like data (front camera, depth maps) and a tiny Symphonies trained on it end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.models import ModelConfig, build_model
from gaussrender.models.symphonies import lift_depth
from gaussrender.train.synthetic_kitti360 import (
    MARKER,
    SyntheticKITTI360,
    front_camera,
    make_kitti360_dataset,
)

# SSCBench-KITTI360's box and classes at 1.6 m voxels: a CPU-sized KITTI-like grid
# (Gaussians scaled with the voxel, as the synthetic_* presets do, so that surfaces stay closed)
GRID = dataclasses.replace(
    gr.SSCBENCH_KITTI360, name="kitti360_coarse", shape=(32, 32, 4), voxel_size=1.6, gaussian_scale=0.8
)
STORED = (40, 150)  # (H, W) of the written images and depth maps
NET = (32, 128)  # network input


@pytest.fixture(scope="module")
def kitti_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_kitti360")
    return make_kitti360_dataset(root, 1, num_val_scenes=1, seed=3, image_size=STORED, grid=GRID, camera_stride=8)


def test_written_like_sscbench_with_depth_from_the_scene(kitti_like):
    root = kitti_like.root
    assert (root / MARKER).is_file() and kitti_like.train_frames == ("0000000003",)
    ds = SyntheticKITTI360(root, "train", grid=GRID, load_images=True, image_size=NET, depth_root=kitti_like.depth_root)
    assert len(ds) == 1 and len(SyntheticKITTI360(root, "val", grid=GRID)) == 1
    item = ds[0]
    assert item["images"].shape == (1, 3, *NET) and item["depth"].shape == (1, *STORED)
    assert item["labels"].shape == GRID.shape
    # the reader's calibration is the written one: KITTI-360's image_00 at the stored size
    k, pose = front_camera(STORED)
    torch.testing.assert_close(item["render_intrinsics"][0].double(), k, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(item["cam_from_grid"][0].double(), pose, rtol=1e-6, atol=1e-6)
    # every known depth lifts onto labelled geometry: the voxel it falls in, or a neighbour
    # (a voxel's Gaussian spreads beyond its cube), is occupied
    pts, valid = lift_depth(item["depth"], item["intrinsics"], item["cam_from_grid"], NET)
    assert float(valid.float().mean()) > 0.4  # the ground and the scene fill most of the view
    vox = ((pts[0][valid[0]] - torch.tensor(GRID.range_min, dtype=pts.dtype)) / GRID.voxel_size).floor().long()
    occupied = (item["labels"] != GRID.empty_index) & (item["labels"] != GRID.ignore_index)
    padded = torch.nn.functional.max_pool3d(occupied[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    inside = ((vox >= 0) & (vox < torch.tensor(GRID.shape))).all(-1)
    hits = padded[tuple(vox[inside].T)]
    assert float(hits.float().mean()) > 0.95


def test_kitti_like_data_is_refused_with_a_wrong_grid(tmp_path, kitti_like):
    with pytest.raises(ValueError, match="19 classes"):
        SyntheticKITTI360(kitti_like.root, "train", grid=gr.OCC3D_NUSCENES)
    with pytest.raises(ValueError, match="classes"):
        make_kitti360_dataset(tmp_path, 1, grid="occ3d")
    with pytest.raises(ValueError, match="num_scenes"):
        make_kitti360_dataset(tmp_path, 0, grid=GRID)


@pytest.mark.slow  # about a minute on a busy two-core CPU (rendering dominates)
def test_tiny_symphonies_trains_evaluates_and_predicts(tmp_path, kitti_like):
    """train (CE + Lovasz + GaussRender, 2 steps) -> validation metrics -> checkpoint -> predictions."""
    from gaussrender.data import collate
    from gaussrender.metrics import CONVENTIONS
    from gaussrender.train.checkpoint import load_checkpoint
    from gaussrender.train.config import config_from_dict
    from gaussrender.train.loop import Trainer, move_batch, run_model

    # small render cameras: the coarse grid's large Gaussians near the camera cover many pixels
    cfg = config_from_dict(
        {
            "model": {"name": "symphonies", "size": "tiny", "learned_opacity": True},
            "data": {
                "grid": "kitti360",
                "format": "kitti360",
                "image_size": list(NET),
                "num_cameras": 1,
                "num_workers": 0,
            },
            "loss": {
                "render": True,
                "class_weighting": "none",
                "render_image_size": [10, 38],
                "render_kwargs": {"bev_size": 8},
            },
            "optim": {"warmup_iters": 1},
            "train": {"epochs": 2, "max_steps": 2, "log_every": 1, "device": "cpu", "val_every_epochs": 2},
        }
    )
    torch.manual_seed(0)
    model = build_model(ModelConfig("symphonies", "tiny", GRID, num_cameras=1, image_size=NET, learned_opacity=True))
    read = dict(grid=GRID, load_images=True, image_size=NET, depth_root=kitti_like.depth_root)
    train_set = SyntheticKITTI360(kitti_like.root, "train", **read)
    val_set = SyntheticKITTI360(kitti_like.root, "val", **read)
    trainer = Trainer(
        cfg,
        tmp_path,
        model,
        train_set,
        val_set,
        grid=GRID,
        collate=collate,
        progress=False,
        metric_convention=CONVENTIONS["kitti360"],
    )
    result = trainer.fit()
    assert result["step"] == 2
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert any('"loss_render"' in line for line in lines)
    # one validation, at the end (val_every_epochs=2)
    assert 0.0 <= result["iou"] <= 1.0 and np.isfinite(result["miou"])

    # predict from the saved checkpoint: same weights, same logits
    state = load_checkpoint(tmp_path / "last.pt", map_location="cpu")
    again = build_model(ModelConfig("symphonies", "tiny", GRID, num_cameras=1, image_size=NET, learned_opacity=True))
    again.load_state_dict(state["model"])
    batch = move_batch(collate([val_set[0]]), torch.device("cpu"))
    with torch.no_grad():
        pred = run_model(again.eval(), batch)["logits"].argmax(1)
        ref = run_model(model.eval(), batch)["logits"].argmax(1)
    assert pred.shape == (1, *GRID.shape) and torch.equal(pred, ref)

    without = {k: v for k, v in batch.items() if k != "depth"}
    with pytest.raises(ValueError, match="depth_root"):
        run_model(again, without)


def test_config_checks_and_builders(tmp_path, kitti_like):
    """Symphonies configs need one camera and the KITTI-360 reader; the builders read the
    synthetic KITTI-like set (depth maps from <root>/depth) or a real one's data.depth_root."""
    from gaussrender.train.builders import build_dataset
    from gaussrender.train.config import ConfigError, config_from_dict, load_config

    with pytest.raises(ConfigError, match="data.num_cameras"):
        config_from_dict({"model": {"name": "symphonies"}, "data": {"grid": "kitti360", "format": "kitti360"}})
    with pytest.raises(ConfigError, match="data.format"):
        config_from_dict({"model": {"name": "symphonies"}, "data": {"num_cameras": 1}})
    for arm in ("std", "render"):
        cfg = load_config(f"symphonies_kitti360_{arm}")
        assert cfg.model.name == "symphonies" and cfg.data.depth_root and cfg.data.num_cameras == 1
        # the release's criterions: ce_ssc, sem_scal, geo_scal, frustum (8 x 8), weight 1 each
        loss = cfg.loss
        assert (loss.ce_weight, loss.sem_scal_weight, loss.geo_scal_weight, loss.frustum_weight) == (1, 1, 1, 1)
        assert loss.frustum_size == 8
    cfg = config_from_dict(
        {
            "model": {"name": "symphonies", "size": "tiny"},
            "data": {
                "grid": "kitti360",
                "format": "kitti360",
                "num_cameras": 1,
                "image_size": list(NET),
                "root": str(kitti_like.root),
                "synthetic": {"num_scenes": 1, "num_val_scenes": 1, "image_size": list(STORED)},
            },
        }
    )
    # the set exists (its marker): the builder reads it on the grid the config names
    with pytest.raises(ValueError, match=r"expected shape \(256, 256, 32\)"):
        build_dataset(cfg.data, "val")[0]
    data = dataclasses.replace(cfg.data, synthetic=None, depth_root=str(kitti_like.depth_root))
    with pytest.raises(ValueError, match="does not match"):
        build_dataset(dataclasses.replace(data, grid="occ3d"), "val")
    with pytest.raises(ValueError, match=r"expected shape \(256, 256, 32\)"):
        build_dataset(data, "val")[0]


def test_geometric_augmentation_is_refused_with_depth_maps():
    from gaussrender.train.augment import AugmentedDataset
    from gaussrender.train.config import AugmentConfig

    sample = {"images": torch.rand(1, 3, 8, 12), "intrinsics": torch.eye(3)[None], "depth": torch.ones(1, 8, 12)}
    with pytest.raises(ValueError, match="depth map"):
        AugmentedDataset([sample], AugmentConfig(flip=True))[0]
    with pytest.raises(ValueError, match="depth map"):
        AugmentedDataset([sample], AugmentConfig(resize_scale=(0.9, 1.1)))[0]
    out = AugmentedDataset([sample], AugmentConfig(brightness=0.2))[0]  # photometric only: fine
    assert torch.equal(out["depth"], sample["depth"])
