"""A tiny grid, model and in-memory dataset for fast training tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import gaussrender as gr
from gaussrender.geometry.grid import VoxelGrid

TINY_GRID = VoxelGrid(
    name="tiny",
    range_min=(-6.4, -6.4, -1.0),
    range_max=(6.4, 6.4, 2.2),
    voxel_size=0.8,
    shape=(16, 16, 4),
    class_names=("others", "car", "road", "building", "free"),
    empty_index=4,
    gaussian_scale=0.54,
)
H, W = 24, 32


class TinyOccModel(torch.nn.Module):
    """Per-voxel learned logits shifted by a pooled image feature; one coarser aux output.

    Has a 'backbone' (for the backbone learning-rate group) and dropout (so that the global
    RNG matters for exact resume).
    """

    def __init__(self, grid: VoxelGrid = TINY_GRID, feat: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        c = grid.num_classes
        self.backbone = torch.nn.Conv2d(3, feat, 3, padding=1)
        with torch.no_grad():
            self.backbone.weight.copy_(torch.randn(self.backbone.weight.shape, generator=g) * 0.3)
            self.backbone.bias.zero_()
        self.voxel = torch.nn.Parameter(torch.randn(c, *grid.shape, generator=g) * 0.1)
        self.mix = torch.nn.Linear(feat, c)
        with torch.no_grad():
            self.mix.weight.copy_(torch.randn(self.mix.weight.shape, generator=g) * 0.3)
            self.mix.bias.zero_()
        self.dropout = torch.nn.Dropout(0.25)
        self.make_nan = False

    def backbone_parameters(self):
        return self.backbone.parameters()

    def forward(self, images, intrinsics, cam_from_grid):
        b, v = images.shape[:2]
        f = self.backbone(images.flatten(0, 1)).relu().mean((2, 3)).view(b, v, -1).mean(1)
        logits = self.voxel[None] + self.mix(self.dropout(f))[:, :, None, None, None]
        if self.make_nan:
            logits = logits * float("nan")
        return {"logits": logits, "aux_logits": [F.avg_pool3d(logits, 2)], "opacity": None}


def tiny_rig(views: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Intrinsics [V,3,3] and cam_from_grid [V,4,4] of cameras at the grid centre looking out."""
    k = torch.tensor([[20.0, 0, W / 2], [0, 20.0, H / 2], [0, 0, 1]]).expand(views, 3, 3).clone()
    eyes = torch.tensor([[0.0, 0.0, 0.5]]).expand(views, 3)
    angles = torch.arange(views) * (2 * torch.pi / views)
    targets = torch.stack([torch.cos(angles) * 5, torch.sin(angles) * 5, torch.full((views,), 0.3)], -1)
    return k, gr.look_at(eyes, targets)


def tiny_sample(index: int, grid: VoxelGrid = TINY_GRID, views: int = 2) -> dict:
    g = torch.Generator().manual_seed(1000 + index)
    labels = torch.full(grid.shape, grid.empty_index, dtype=torch.int64)
    labels[:, :, 0] = 2  # road
    x0, y0 = torch.randint(0, 12, (2,), generator=g).tolist()
    labels[x0 : x0 + 3, y0 : y0 + 2, 1] = 1  # a car
    labels[0:2, :, 1:3] = 3  # a wall
    labels[torch.rand(grid.shape, generator=g) < 0.02] = grid.ignore_index
    k, pose = tiny_rig(views)
    return {
        "token": f"tok{index:03d}",
        "images": torch.rand(views, 3, H, W, generator=g),
        "intrinsics": k,
        # GaussRender's cameras (the readers give the native calibration and size)
        "render_intrinsics": k.clone(),
        "render_image_size": torch.tensor([H, W]),
        "cam_from_grid": pose,
        "labels": labels,
        "mask_camera": torch.rand(grid.shape, generator=g) < 0.8,
    }


def tiny_dataset(n: int, offset: int = 0) -> list[dict]:
    return [tiny_sample(offset + i) for i in range(n)]


def tiny_config(**sections):
    """A Config for the tiny problem; keyword = section name, value = dict of overrides."""
    from gaussrender.train.config import config_from_dict

    values = {
        "data": {"grid": "occ3d", "image_size": [H, W], "num_workers": 0},
        "loss": {"render": False, "render_kwargs": {"bev_size": 16, "camera_weights": [1.0, 0.0]}},
        "optim": {"warmup_iters": 2, "lr": 1e-2},
        "train": {"epochs": 2, "log_every": 1, "checkpoint_every": 100, "device": "cpu"},
    }
    for name, update in sections.items():
        values.setdefault(name, {}).update(update)
    return config_from_dict(values)


def tiny_trainer(tmp_path, cfg=None, n_train: int = 3, n_val: int = 0, model_seed: int = 0, info=None):
    from gaussrender.data import collate
    from gaussrender.metrics.occupancy import IoUConvention
    from gaussrender.train.loop import Trainer

    cfg = cfg if cfg is not None else tiny_config()
    return Trainer(
        cfg,
        tmp_path,
        TinyOccModel(seed=model_seed),
        tiny_dataset(n_train),
        tiny_dataset(n_val, offset=100) if n_val else None,
        grid=TINY_GRID,
        collate=collate,
        info=info,
        progress=False,
        metric_convention=IoUConvention(absent="nan"),
    )
