"""Learned per-voxel opacity for rendering (the GaussRender release's TPVFormer head)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_int

__all__ = ["OpacityHead", "release_head_width"]


def release_head_width(num_classes: int) -> int:
    """Output width of the release's shared Gaussian head: offset 3 + classes + opacity 1 +
    scale 3 + rotation 4 (the release's ``model/head/voxel_render.py``, ``Decoder.out_dim``)."""
    return 3 + num_classes + 1 + 3 + 4


class OpacityHead(nn.Module):
    """Small MLP on voxel features, ``opacity = sigmoid(mlp(f) - 1)`` (docs/method.md#cameras).

    ``mlp`` is ``Linear(C, D) -> ReLU -> Linear(D, D) -> ReLU -> Linear(D, 1)``, as in the
    release's render config. Every bias starts at zero and every weight Xavier-uniform, with
    the release's fan-outs: in the release the opacity is one output row (index
    ``3 + num_classes``) of a head ``Linear(D, 3 + num_classes + 1 + 3 + 4)`` shared with the
    offsets, class scores, scales and rotations (its ``Decoder`` in
    the release's ``model/head/voxel_render.py``), initialised as a whole by ``xavier_uniform_``, so the
    last layer's weights are uniform on ``±sqrt(6 / (D + 11 + num_classes))``, not
    ``±sqrt(6 / (D + 1))``. The hidden layers are ``Linear(D, D)`` as there (bound
    ``sqrt(6 / (fan_in + fan_out))``). The ``- 1`` shift starts voxels mostly transparent
    (``sigmoid(-1) = 0.2689`` for a zero output), so early renders are not a wall of random
    colour.

    Args:
        in_dims: voxel feature channels ``C``.
        hidden_dims: hidden channels ``D`` of both hidden layers (the models pass ``C``).
        num_classes: the grid's class count (sets the shared head's fan-out).

    Shapes:
        ``forward(features [..., C]) -> [...]`` in (0, 1).
    """

    def __init__(self, in_dims: int, hidden_dims: int, num_classes: int) -> None:
        super().__init__()
        for name, value in (("in_dims", in_dims), ("hidden_dims", hidden_dims), ("num_classes", num_classes)):
            check_int(name, value, 1)
        last = nn.Linear(hidden_dims, 1)
        self.mlp = nn.Sequential(
            nn.Linear(in_dims, hidden_dims),
            nn.ReLU(),
            nn.Linear(hidden_dims, hidden_dims),
            nn.ReLU(),
            last,
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        #: bound of the last layer's weights: Xavier with the release's shared-head fan-out
        self.init_bound = math.sqrt(6.0 / (hidden_dims + release_head_width(num_classes)))
        nn.init.uniform_(last.weight, -self.init_bound, self.init_bound)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(features).squeeze(-1) - 1.0)
