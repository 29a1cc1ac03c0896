"""Learned per-voxel opacity for rendering (the GaussRender release's TPVFormer head)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["OpacityHead"]


class OpacityHead(nn.Module):
    """Small MLP on voxel features, ``opacity = sigmoid(mlp(f) - 1)``.

    The ``- 1`` shift starts voxels mostly transparent (``sigmoid(-1) = 0.27`` for a zero
    output), so early renders are not a wall of random colour.

    Args:
        in_dims: voxel feature channels ``C``.
        hidden_dims: hidden channels of the MLP.

    Shapes:
        ``forward(features [..., C]) -> [...]`` in (0, 1).
    """

    def __init__(self, in_dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dims, hidden_dims), nn.Softplus(), nn.Linear(hidden_dims, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(features).squeeze(-1) - 1.0)
