"""Symphonies' attention blocks: multi-scale deformable attention and the release's two transformer layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..deform_attn import init_sampling_offsets, ms_deform_attn

__all__ = ["DeformableAttention"]


class DeformableAttention(nn.Module):
    """Multi-scale deformable attention with its residual (mmcv's ``MultiScaleDeformableAttention``).

    ``out = identity + dropout(W_o ms_deform_attn(W_v value, ref + offsets(q), softmax(a(q))))``
    with ``q = query + query_pos`` and ``identity = query`` (before the position is added).

    Args:
        embed_dims: channels ``C``.
        num_heads: heads ``M``.
        num_levels: feature levels ``L`` of ``value``.
        num_points: points per head and level ``P``.
        dropout: on the output before the residual (mmcv's default 0.1).
    """

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_points: int, dropout: float = 0.1):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        init_sampling_offsets(self.sampling_offsets, num_heads, num_levels, num_points)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        reference: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        query_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``query [B, Q, C]`` to ``value [B, S, C]`` (levels flattened row-major).

        Args:
            reference: ``[B, Q, L, 2]`` normalised ``(x, y)`` per level (pixel centres at
                ``+0.5``, the convention of :func:`ms_deform_attn`).
            spatial_shapes: ``L`` sizes ``(h, w)``.
            query_pos: ``[B, Q, C]`` or None, added to the query for offsets and weights.

        Returns:
            ``[B, Q, C]``, residual included.
        """
        b, q, c = query.shape
        m, lv, p = self.num_heads, self.num_levels, self.num_points
        x = query if query_pos is None else query + query_pos
        v = self.value_proj(value).view(b, value.shape[1], m, c // m)
        off = self.sampling_offsets(x).view(b, q, m, lv, p, 2)
        w = self.attention_weights(x).view(b, q, m, lv * p).softmax(-1).view(b, q, m, lv, p)
        norm = torch.tensor([[ww, hh] for hh, ww in spatial_shapes], dtype=off.dtype, device=off.device)
        loc = reference.to(off.dtype)[:, :, None, :, None, :] + off / norm.view(1, 1, 1, lv, 1, 2)
        out = ms_deform_attn(v, spatial_shapes, loc, w)
        return query + self.dropout(self.output_proj(out))


class _DeformLayer(nn.Module):
    """The release's ``DeformableTransformerLayer``: ``x + attn(LN(x))`` then ``x + MLP(LN(x))``.

    The attention adds its own residual to its (normalised) input, as mmcv's does, so the
    first step is ``x + LN(x) + attention``, exactly as in the release.
    """

    def __init__(self, dims: int, heads: int, levels: int, points: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.attn = DeformableAttention(dims, heads, levels, points, dropout)
        self.ffn = None
        if mlp_ratio:
            self.norm2 = nn.LayerNorm(dims)
            self.ffn = nn.Sequential(nn.Linear(dims, dims * mlp_ratio), nn.GELU(), nn.Linear(dims * mlp_ratio, dims))

    def forward(self, query, value, reference, shapes, query_pos=None) -> torch.Tensor:
        query = query + self.attn(self.norm1(query), value, reference, shapes, query_pos)
        if self.ffn is not None:
            query = query + self.ffn(self.norm2(query))
        return query


class _AttnLayer(nn.Module):
    """The release's ``TransformerLayer``: pre-norm multi-head attention (+ GELU MLP)."""

    def __init__(self, dims: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.attn = nn.MultiheadAttention(dims, heads, batch_first=True)
        self.ffn = None
        if mlp_ratio:
            self.norm2 = nn.LayerNorm(dims)
            self.ffn = nn.Sequential(nn.Linear(dims, dims * mlp_ratio), nn.GELU(), nn.Linear(dims * mlp_ratio, dims))

    def forward(self, query, key=None, query_pos=None, key_pos=None) -> torch.Tensor:
        if key is None:  # self-attention: keys and values are the (un-normalised) queries
            key, key_pos = query, query_pos
        value = key
        if key_pos is not None:
            key = key + key_pos
        q = self.norm1(query)
        if query_pos is not None:
            q = q + query_pos
        query = query + self.attn(q, key, value, need_weights=False)[0]
        if self.ffn is not None:
            query = query + self.ffn(self.norm2(query))
        return query
