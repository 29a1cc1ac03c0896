"""Symphonies' image encoder: a ResNet and a MaskDINO-style pixel decoder (deformable DETR encoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import ResNet
from ..image_encoder import IMAGENET_MEAN, IMAGENET_STD, ImageEncoder
from .attention import DeformableAttention
from .sizes import SymphoniesSize

__all__: list[str] = []


def _sine_positions(h: int, w: int, dims: int, device, dtype) -> torch.Tensor:
    """DETR's normalised sine encoding of an ``h x w`` map: ``[h*w, dims]`` (y half, then x half)."""
    half = dims // 2
    ys = torch.arange(1, h + 1, dtype=torch.float32, device=device) / (h + 1e-6) * 2 * torch.pi
    xs = torch.arange(1, w + 1, dtype=torch.float32, device=device) / (w + 1e-6) * 2 * torch.pi
    dim_t = 10000.0 ** (2 * (torch.arange(half, dtype=torch.float32, device=device) // 2) / half)

    def enc(t: torch.Tensor) -> torch.Tensor:
        e = t[:, None] / dim_t
        return torch.stack([e[:, 0::2].sin(), e[:, 1::2].cos()], dim=-1).flatten(1)

    py, px = enc(ys), enc(xs)
    pos = torch.cat([py[:, None, :].expand(h, w, half), px[None, :, :].expand(h, w, half)], dim=-1)
    return pos.reshape(h * w, dims).to(dtype)


class _PixelEncoderLayer(nn.Module):
    """Deformable DETR encoder layer (post-norm, ReLU FFN)."""

    def __init__(self, dims: int, heads: int, levels: int, points: int, ffn: int) -> None:
        super().__init__()
        self.attn = DeformableAttention(dims, heads, levels, points, dropout=0.0)
        self.norm1 = nn.LayerNorm(dims)
        self.ffn = nn.Sequential(nn.Linear(dims, ffn), nn.ReLU(inplace=True), nn.Linear(ffn, dims))
        self.norm2 = nn.LayerNorm(dims)

    def forward(self, src, pos, reference, shapes) -> torch.Tensor:
        src = self.norm1(self.attn(src, src, reference, shapes, pos))
        return self.norm2(src + self.ffn(src))


class _ImageEncoder(nn.Module):
    """ResNet + MaskDINO-style pixel decoder; returns the three maps the decoder reads.

    Output: ``[B, C, h, w]`` at strides 4 (ResNet), 32 and 16 (deformable encoder), each
    projected to ``embed_dims``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, size: SymphoniesSize, embed_dims: int, backbone_depth: int) -> None:
        super().__init__()
        self.backbone = ResNet(
            backbone_depth,
            size.backbone_width,
            out_indices=(0, 1, 2, 3),
            frozen_stages=size.frozen_stages,
            norm_eval=size.norm_eval,
        )
        ch = self.backbone.out_channels  # strides 4, 8, 16, 32
        d, g = size.pixel_dims, size.gn_groups
        # encoder levels, low resolution first: strides 32, 16, 8, then the extra 64
        convs = [nn.Conv2d(c, d, 1) for c in (ch[3], ch[2], ch[1])] + [nn.Conv2d(ch[3], d, 3, stride=2, padding=1)]
        for conv in convs:
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        self.input_proj = nn.ModuleList(nn.Sequential(conv, nn.GroupNorm(g, d)) for conv in convs)
        self.level_embed = nn.Parameter(torch.empty(4, d).normal_())
        self.layers = nn.ModuleList(
            _PixelEncoderLayer(d, size.pixel_heads, 4, size.pixel_points, size.pixel_ffn)
            for _ in range(size.pixel_layers)
        )
        self.out_projs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, embed_dims, 1),
                nn.BatchNorm2d(embed_dims),
                nn.ReLU(inplace=True),
                nn.Conv2d(embed_dims, embed_dims, 1),
            )
            for c in (ch[0], d, d)
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[N, 3, H, W]`` in [0, 1] -> three maps ``[N, C, h, w]`` (strides 4, 32, 16 of the padded image)."""
        n, _, h, w = images.shape
        x = (images - self.mean) / self.std
        hp, wp = ImageEncoder.padded_size((h, w))
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h))
        c2, c3, c4, c5 = self.backbone(x)
        srcs = [self.input_proj[0](c5), self.input_proj[1](c4), self.input_proj[2](c3), self.input_proj[3](c5)]
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], dim=1)  # [N, S, d]
        d = flat.shape[-1]
        pos = torch.cat(
            [
                _sine_positions(hh, ww, d, flat.device, flat.dtype) + self.level_embed[i].to(flat.dtype)
                for i, (hh, ww) in enumerate(shapes)
            ]
        ).expand(n, -1, -1)
        # every pixel attends around its own centre on every level (normalised coordinates
        # are shared by the levels: all cover the same padded image)
        refs = []
        for hh, ww in shapes:
            yy, xx = torch.meshgrid(
                (torch.arange(hh, device=flat.device, dtype=flat.dtype) + 0.5) / hh,
                (torch.arange(ww, device=flat.device, dtype=flat.dtype) + 0.5) / ww,
                indexing="ij",
            )
            refs.append(torch.stack([xx, yy], dim=-1).reshape(-1, 2))
        reference = torch.cat(refs)[None, :, None, :].expand(n, -1, len(shapes), -1)
        for layer in self.layers:
            flat = layer(flat, pos, reference, shapes)
        outs = flat.split([hh * ww for hh, ww in shapes], dim=1)
        maps = [o.transpose(1, 2).reshape(n, d, hh, ww) for o, (hh, ww) in zip(outs, shapes, strict=True)]
        return [proj(f) for proj, f in zip(self.out_projs, (c2, maps[0], maps[1]), strict=True)]
