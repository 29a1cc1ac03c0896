"""Feature pyramid network (Lin et al. 2017) over backbone stages."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FPN"]


class FPN(nn.Module):
    """Top-down pyramid with lateral 1x1 and output 3x3 convolutions.

    As configured by BEVFormer, TPVFormer and SurroundOcc: the inputs are the backbone
    stages of strides 8, 16, 32; extra levels (stride 64, ...) come from a stride-2 3x3
    convolution on the previous *output*, after a ReLU.

    Args:
        in_channels: channels of each input map, finest first.
        out_channels: channels of every output level.
        num_outs: number of output levels (``>= len(in_channels)``).

    Shapes:
        ``forward([x_i [N, C_i, H_i, W_i]]) -> num_outs maps [N, out_channels, h, w]``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int) -> None:
        super().__init__()
        if num_outs < len(in_channels):
            raise ValueError(f"num_outs ({num_outs}) must be >= the number of inputs ({len(in_channels)})")
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in range(num_outs - len(in_channels))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:  # every conv here has one; the check is for the type
                    nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.lateral_convs):
            raise ValueError(f"FPN expects {len(self.lateral_convs)} maps, got {len(feats)}")
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        for conv in self.extra_convs:
            outs.append(conv(F.relu(outs[-1])))
        return outs
