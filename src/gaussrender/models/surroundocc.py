"""SurroundOcc (Wei et al., ICCV 2023): multi-scale 3D volumes from 2D-3D spatial cross-attention.

For each of three scales ``i`` (volume = grid / 2**(i+1)), learned voxel queries read the
FPN level ``i`` of all cameras through spatial cross-attention at their voxel centres
(:mod:`.image_cross_attn`), followed in every layer by a feed-forward block and 3D
convolutions (each step with its residual). A 3D decoder then starts from the coarsest
volume and alternates 3x3x3 convolutions and stride-2 transposed convolutions, adding the
finer volumes as skip connections, and predicts logits at four resolutions: grid / 8,
/ 4, / 2 and the full grid.

Sizes (``base``) are the paper's nuScenes configuration: ResNet-101 + FPN (3 levels,
512 channels), volume channels (128, 256, 512), feed-forward (256, 512, 1024), layers
(1, 3, 6), points (2, 4, 8), 8 heads, two 3D convolutions per layer, decoder channels
(256, 256, 128, 128, 64, 64, 32) with GroupNorm(16). Volume sizes are derived from the
grid (nuScenes 200x200x16 gives the paper's 100x100x8, 50x50x4, 25x25x2). Grids whose
shape is not divisible by 8 work too: coarse sizes round up and upsampled volumes are
cropped to the next size. Differences from the release: no deformable convolutions in
the backbone, no grid-mask augmentation (a training-time choice), anchors outside an
image get zero weight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from ._common import FFN, check_model_inputs, flatten_camera_features
from .config import ModelConfig
from .image_cross_attn import ImageCrossAttention, project_points
from .image_encoder import ImageEncoder
from .opacity_head import OpacityHead

__all__ = ["SurroundOcc", "SurroundOccSize", "SURROUNDOCC_SIZES"]


@dataclass(frozen=True)
class SurroundOccSize:
    """Hyper-parameters of one SurroundOcc size (see :data:`SURROUNDOCC_SIZES`)."""

    backbone_depth: int
    backbone_width: int
    frozen_stages: int
    norm_eval: bool
    fpn_channels: int
    embed_dims: tuple[int, int, int]
    ffn_dims: tuple[int, int, int]
    num_heads: int
    num_layers: tuple[int, int, int]
    num_points: tuple[int, int, int]
    conv_num: int
    decoder_channels: tuple[int, int, int, int, int, int, int]
    gn_groups: int


SURROUNDOCC_SIZES: dict[str, SurroundOccSize] = {
    "base": SurroundOccSize(
        backbone_depth=101,
        backbone_width=64,
        frozen_stages=1,
        norm_eval=True,
        fpn_channels=512,
        embed_dims=(128, 256, 512),
        ffn_dims=(256, 512, 1024),
        num_heads=8,
        num_layers=(1, 3, 6),
        num_points=(2, 4, 8),
        conv_num=2,
        decoder_channels=(256, 256, 128, 128, 64, 64, 32),
        gn_groups=16,
    ),
    "tiny": SurroundOccSize(
        backbone_depth=18,
        backbone_width=16,
        frozen_stages=-1,
        norm_eval=False,
        fpn_channels=32,
        embed_dims=(16, 32, 64),
        ffn_dims=(32, 64, 128),
        num_heads=4,
        num_layers=(1, 1, 1),
        num_points=(2, 2, 2),
        conv_num=1,
        decoder_channels=(32, 32, 16, 16, 16, 16, 16),
        gn_groups=8,
    ),
}


def _conv_block(in_ch: int, out_ch: int, groups: int, up: bool) -> nn.Sequential:
    conv = (
        nn.ConvTranspose3d(in_ch, out_ch, 2, stride=2, bias=False)
        if up
        else nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False)
    )
    return nn.Sequential(conv, nn.GroupNorm(groups, out_ch), nn.ReLU(inplace=True))


class _OccLayer(nn.Module):
    """Spatial cross-attention, norm, FFN, norm, 3D convolutions (residual)."""

    def __init__(
        self, dims: int, ffn_dims: int, heads: int, points: int, conv_num: int, groups: int, dropout: float
    ) -> None:
        super().__init__()
        self.cross = ImageCrossAttention(dims, heads, 1, [(1, points)], dropout)
        self.norm_cross = nn.LayerNorm(dims)
        self.ffn = FFN(dims, ffn_dims, dropout)
        self.norm_ffn = nn.LayerNorm(dims)
        self.convs = nn.Sequential(*[_conv_block(dims, dims, groups, up=False) for _ in range(conv_num)])

    def forward(
        self,
        query: torch.Tensor,
        volume_shape: tuple[int, int, int],
        features: torch.Tensor,
        shapes: list[tuple[int, int]],
        locations: torch.Tensor,
        visible: torch.Tensor,
    ) -> torch.Tensor:
        """``[B, x*y*z, C]`` voxel queries (row-major over ``volume_shape``) -> same shape."""
        (query,) = self.cross([query], features, shapes, [locations], [visible])
        query = self.norm_ffn(self.ffn(self.norm_cross(query)))
        b, n, c = query.shape
        vol = query.transpose(1, 2).reshape(b, c, *volume_shape)
        return query + self.convs(vol).flatten(2).transpose(1, 2)


class SurroundOcc(nn.Module):
    """SurroundOcc occupancy network; see the module docstring for the architecture.

    Args:
        cfg: a :class:`ModelConfig` with ``name="surroundocc"``.

    Call:
        ``model(images [B, V, 3, H, W] in [0, 1], intrinsics [B, V, 3, 3] pixels,
        cam_from_grid [B, V, 4, 4] metres)`` returns a dict with ``logits``
        ``[B, C, X, Y, Z]`` (full grid), ``aux_logits`` (three coarser ``[B, C, x, y, z]``,
        finest first: grid / 2, / 4, / 8; the release weighs scale ``k`` steps coarser by
        ``0.5**k``) and ``opacity`` ``[B, X, Y, Z]`` or None.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.name != "surroundocc":
            raise ValueError(f"SurroundOcc needs cfg.name='surroundocc', got {cfg.name!r}")
        size = SURROUNDOCC_SIZES[cfg.size]
        dch = size.decoder_channels
        if dch[1] != size.embed_dims[1] or dch[3] != size.embed_dims[0]:
            raise ValueError(
                f"decoder_channels[1] and [3] must equal embed_dims[1] and [0] (skip connections), "
                f"got {dch} and {size.embed_dims}"
            )
        self.cfg, self.size = cfg, size
        grid = cfg.grid
        # sizes[k] = grid / 2**k rounded up; volume i lives at sizes[i + 1].
        self.sizes = [tuple(-(-n // 2**k) for n in grid.shape) for k in range(4)]

        self.image_encoder = ImageEncoder(
            cfg.backbone_depth or size.backbone_depth,
            size.backbone_width,
            size.fpn_channels,
            3,
            size.frozen_stages,
            size.norm_eval,
        )
        self.transfer = nn.ModuleList(
            nn.Sequential(nn.Conv2d(size.fpn_channels, d, 1), nn.ReLU(inplace=True)) for d in size.embed_dims
        )
        self.cams_embeds = nn.ParameterList(nn.Parameter(torch.randn(cfg.num_cameras, d)) for d in size.embed_dims)
        self.level_embeds = nn.ParameterList(nn.Parameter(torch.randn(1, d)) for d in size.embed_dims)
        self.volume_queries = nn.ParameterList()
        self.encoders = nn.ModuleList()
        for i, d in enumerate(size.embed_dims):
            shape = self.sizes[i + 1]
            q = nn.Parameter(torch.empty(shape[0] * shape[1] * shape[2], d))
            nn.init.xavier_uniform_(q)
            self.volume_queries.append(q)
            centres = _volume_centres(grid.range_min, grid.extent, shape)
            self.register_buffer(f"anchors_{i}", centres[:, None, :], persistent=False)
            self.encoders.append(
                nn.ModuleList(
                    _OccLayer(
                        d,
                        size.ffn_dims[i],
                        size.num_heads,
                        size.num_points[i],
                        size.conv_num,
                        size.gn_groups,
                        cfg.dropout,
                    )
                    for _ in range(size.num_layers[i])
                )
            )

        ins = (size.embed_dims[2],) + dch[:-1]
        self.deblocks = nn.ModuleList(
            _conv_block(i, o, size.gn_groups, up=(k % 2 == 1)) for k, (i, o) in enumerate(zip(ins, dch))
        )
        self.occ_heads = nn.ModuleList(nn.Conv3d(dch[k], grid.num_classes, 1) for k in (0, 2, 4, 6))
        self.opacity_head = OpacityHead(dch[-1], dch[-1], grid.num_classes) if cfg.learned_opacity else None

    def backbone_parameters(self):
        """Parameters of the ResNet (trained with a 0.1x learning rate)."""
        return self.image_encoder.backbone.parameters()

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, cam_from_grid: torch.Tensor) -> dict[str, object]:
        cfg = self.cfg
        check_model_inputs(images, intrinsics, cam_from_grid, cfg.num_cameras, cfg.image_size)
        b, v = images.shape[:2]
        feats = self.image_encoder(images)
        padded = ImageEncoder.padded_size(cfg.image_size)

        volumes = []
        # encoders holds nn.ModuleLists; iterating an nn.ModuleList types its items as bare Modules
        for i, layers in enumerate(cast(Iterable[nn.ModuleList], self.encoders)):
            f = feats[i]
            f = self.transfer[i](f.flatten(0, 1)).unflatten(0, (b, v))
            features, shapes = flatten_camera_features([f], self.cams_embeds[i], self.level_embeds[i])
            loc, vis = project_points(getattr(self, f"anchors_{i}"), intrinsics, cam_from_grid, cfg.image_size, padded)
            query = self.volume_queries[i].unsqueeze(0).expand(b, -1, -1).to(features.dtype)
            shape = self.sizes[i + 1]
            for layer in layers:
                query = layer(query, shape, features, shapes, loc, vis)
            volumes.append(query.transpose(1, 2).reshape(b, -1, *shape))

        outputs = []
        x = volumes.pop()
        for k, block in enumerate(self.deblocks):
            x = block(x)
            if k % 2 == 1:
                # Transposed convolutions double the size; crop to the next (rounded-up) size.
                target = self.sizes[3 - (k + 1) // 2]
                x = x[:, :, : target[0], : target[1], : target[2]]
                if volumes:
                    x = x + volumes.pop()
            else:
                outputs.append(x)
        logits = [head(o) for head, o in zip(self.occ_heads, outputs)]  # coarsest first
        opacity = None
        if self.opacity_head is not None:
            opacity = self.opacity_head(outputs[-1].permute(0, 2, 3, 4, 1))
        return {"logits": logits[-1], "aux_logits": logits[-2::-1], "opacity": opacity}


def _volume_centres(range_min, extent, shape) -> torch.Tensor:
    """Centres of a ``shape`` volume spanning the grid box, ``[X*Y*Z, 3]`` metres (row-major)."""
    axes = [
        lo + (torch.arange(n, dtype=torch.float64) + 0.5) * (ext / n) for lo, ext, n in zip(range_min, extent, shape)
    ]
    gx, gy, gz = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([gx, gy, gz], dim=-1).reshape(-1, 3).float()
