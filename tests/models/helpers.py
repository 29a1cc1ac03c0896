"""Shared test fixtures for the models: reduced benchmark grids and a two-camera rig."""

from __future__ import annotations

import dataclasses

import torch

import gaussrender as gr
from gaussrender.models import ModelConfig, build_model

H, W = 64, 96

# The three benchmark grids with coarse voxels (same boxes, a few hundred voxels each).
TINY_GRIDS = {
    "occ3d": dataclasses.replace(gr.OCC3D_NUSCENES, shape=(25, 25, 2), voxel_size=3.2),
    "surroundocc": dataclasses.replace(gr.SURROUNDOCC_NUSCENES, shape=(25, 25, 2), voxel_size=4.0),
    "kitti360": dataclasses.replace(gr.SSCBENCH_KITTI360, shape=(16, 16, 2), voxel_size=3.2),
}


def rig(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two cameras 1.5 m up, looking forward (+x) and backward (-x); 60 px focal, 64x96.

    Returns ``(intrinsics [batch, 2, 3, 3], cam_from_grid [batch, 2, 4, 4])``.
    """
    k = torch.tensor([[60.0, 0.0, W / 2], [0.0, 60.0, H / 2], [0.0, 0.0, 1.0]])
    # OpenCV camera axes in grid coordinates: x_cam = -y, y_cam = -z, z_cam = +x.
    fwd = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    back = fwd @ torch.diag(torch.tensor([-1.0, -1.0, 1.0]))
    mats = []
    for rot in (fwd, back):
        t = torch.eye(4)
        t[:3, :3] = rot
        t[:3, 3] = -rot @ torch.tensor([0.0, 0.0, 1.5])
        mats.append(t)
    return k.expand(batch, 2, 3, 3).clone(), torch.stack(mats).expand(batch, 2, 4, 4).clone()


def build_tiny(name: str, grid, seed: int = 0, **kw):
    """A ``tiny`` model for the :func:`rig` cameras, initialised under ``seed``."""
    torch.manual_seed(seed)
    return build_model(ModelConfig(name, "tiny", grid, num_cameras=2, image_size=(H, W), **kw))
