"""Symphonies' decoder blocks: the scene's learned position, the Symphonies layer and the ASPP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import _AttnLayer, _DeformLayer
from .geometry import squeeze_volume

__all__: list[str] = []


class _ScenePosition(nn.Module):
    """Factorised learned position of the scene voxels: ``Linear(cat(e_x, e_y, e_z))``, ``[N, C]``."""

    def __init__(self, shape: Sequence[int], dims: int) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.embeds = nn.ModuleList(nn.Embedding(n, dims // 2) for n in self.shape)
        self.proj = nn.Linear(dims // 2 * 3, dims)

    def forward(self) -> torch.Tensor:
        sx, sy, sz = self.shape
        ex, ey, ez = (e.weight for e in self.embeds if isinstance(e, nn.Embedding))
        h = ex.shape[1]
        full = torch.cat(
            [
                ex[:, None, None].expand(sx, sy, sz, h),
                ey[None, :, None].expand(sx, sy, sz, h),
                ez[None, None, :].expand(sx, sy, sz, h),
            ],
            dim=-1,
        )
        return self.proj(full.reshape(sx * sy * sz, 3 * h))


class _SymphoniesLayer(nn.Module):
    def __init__(self, dims: int, heads: int, points: int, query_update: bool, dropout: float) -> None:
        super().__init__()
        self.query_image = _DeformLayer(dims, heads, 3, points, 4, dropout)
        self.scene_query = _AttnLayer(dims, heads, 0)
        self.scene_self = _DeformLayer(dims, heads, 1, points * 2, 4, dropout)
        self.query_scene = self.query_self = None
        if query_update:
            self.query_scene = _DeformLayer(dims, heads, 1, points * 2, 0, dropout)
            self.query_self = _AttnLayer(dims, heads, 4)

    def forward(
        self,
        scene: torch.Tensor,
        queries: torch.Tensor,
        feats: torch.Tensor,
        feat_shapes: list[tuple[int, int]],
        scene_shape: tuple[int, int, int],
        scene_pos: torch.Tensor,
        fov: torch.Tensor,
        fov_ref: torch.Tensor,
        ref_2d: torch.Tensor,
        ref_3d: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``scene [B, N, C]`` (row-major voxels), ``queries [B, K, C]`` -> both updated."""
        b, n, c = scene.shape
        queries = self.query_image(queries, feats, ref_2d, feat_shapes)
        vol = scene.transpose(1, 2).reshape(b, c, *scene_shape)
        value, sq_shape = squeeze_volume(vol)
        fov_scene = scene[:, fov]
        fov_pos = scene_pos[:, fov]
        fov_scene = self.scene_query(fov_scene, queries, fov_pos)
        fov_scene = self.scene_self(fov_scene, value, fov_ref, [sq_shape], fov_pos)
        scene = scene.index_copy(1, fov, fov_scene)
        if self.query_scene is None or self.query_self is None:
            return scene, queries
        value, sq_shape = squeeze_volume(scene.transpose(1, 2).reshape(b, c, *scene_shape))
        queries = self.query_scene(queries, value, ref_3d, [sq_shape])
        queries = self.query_self(queries)
        return scene, queries


class _ASPP(nn.Module):
    """``relu(x + sum_d block_d(x))`` with two dilated 3x3x3 convolutions per dilation."""

    def __init__(self, dims: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv3d(dims, dims, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm3d(dims),
                nn.ReLU(inplace=True),
                nn.Conv3d(dims, dims, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm3d(dims),
            )
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for block in self.blocks:
            out = out + block(x)
        return F.relu(out)
