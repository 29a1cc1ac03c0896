"""Learned per-voxel opacity for rendering (the GaussRender release's TPVFormer head)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["OpacityHead"]


class OpacityHead(nn.Module):
    """Small MLP on voxel features, ``opacity = sigmoid(mlp(f) - 1)`` (docs/method.md#cameras).

    ``mlp`` is ``Linear(C, D) -> ReLU -> Linear(D, D) -> ReLU -> Linear(D, 1)``, as in the
    release's render config. Every Linear weight starts Xavier-uniform (bound
    ``sqrt(6 / (fan_in + fan_out))``) and every bias at zero, so the head's first output
    depends on the features only through well-scaled random projections. The ``- 1`` shift
    starts voxels mostly transparent (``sigmoid(-1) = 0.2689`` for a zero output), so early
    renders are not a wall of random colour.

    Args:
        in_dims: voxel feature channels ``C``.
        hidden_dims: hidden channels ``D`` of both hidden layers (the models pass ``C``).

    Shapes:
        ``forward(features [..., C]) -> [...]`` in (0, 1).
    """

    def __init__(self, in_dims: int, hidden_dims: int) -> None:
        super().__init__()
        for name, value in (("in_dims", in_dims), ("hidden_dims", hidden_dims)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.mlp = nn.Sequential(
            nn.Linear(in_dims, hidden_dims),
            nn.ReLU(),
            nn.Linear(hidden_dims, hidden_dims),
            nn.ReLU(),
            nn.Linear(hidden_dims, 1),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(features).squeeze(-1) - 1.0)
