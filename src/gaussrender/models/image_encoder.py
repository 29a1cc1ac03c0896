"""Multi-camera image encoder: normalisation, padding, ResNet and FPN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ResNet
from .fpn import FPN

__all__ = ["ImageEncoder", "IMAGENET_MEAN", "IMAGENET_STD"]

# torchvision's ImageNet statistics (RGB in [0, 1]), matching torchvision weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageEncoder(nn.Module):
    """Turn ``[B, V, 3, H, W]`` RGB images in [0, 1] into multi-level camera features.

    Images are normalised with the ImageNet statistics and zero-padded at the bottom and
    right to a multiple of :attr:`size_divisor` (32), so every feature map covers exactly
    ``stride`` pixels per cell of the *padded* image; :meth:`padded_size` gives that size,
    which the attentions use to normalise projected pixel coordinates.

    Args:
        depth: ResNet depth (18, 34, 50, 101).
        base_width: ResNet stem width (64 standard).
        out_channels: FPN channels.
        num_levels: FPN outputs (strides 8, 16, 32, then 64, ...).
        frozen_stages, norm_eval: see :class:`ResNet`.
    """

    size_divisor = 32
    mean: torch.Tensor  # [1, 3, 1, 1] buffers registered in __init__
    std: torch.Tensor

    def __init__(
        self,
        depth: int,
        base_width: int,
        out_channels: int,
        num_levels: int,
        frozen_stages: int = -1,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = ResNet(
            depth, base_width, out_indices=(1, 2, 3), frozen_stages=frozen_stages, norm_eval=norm_eval
        )
        self.neck = FPN(self.backbone.out_channels, out_channels, num_levels)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def padded_size(cls, image_size: Sequence[int]) -> tuple[int, int]:
        """``(H, W)`` rounded up to a multiple of :attr:`size_divisor`, pixels."""
        d = cls.size_divisor
        h, w = int(image_size[0]), int(image_size[1])
        return (-(-h // d) * d, -(-w // d) * d)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[B, V, 3, H, W]`` -> list of ``[B, V, C, h_l, w_l]``, finest level first."""
        b, v, _, h, w = images.shape
        x = (images.reshape(b * v, 3, h, w) - self.mean) / self.std
        hp, wp = self.padded_size((h, w))
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h))
        feats = self.neck(self.backbone(x))
        return [f.view(b, v, *f.shape[1:]) for f in feats]
