"""Spatial cross-attention from 3D queries into multi-camera image features.

BEVFormer's idea, shared by TPVFormer (image cross-attention) and SurroundOcc (2D-3D
spatial cross-attention): every query owns ``D`` 3D anchor points (metres, grid frame);
they are projected into each camera, and the query reads deformable-attention samples
around the projections. Anchors behind a camera or outside its image get zero weight; a
query averages over the cameras that see at least one of its anchors, and only those
cameras sample for it (BEVFormer's padded "rebatching"), so work and activation memory
scale with the queries each camera sees rather than with all queries times ``V``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .deform_attn import init_sampling_offsets, ms_deform_attn

__all__ = ["project_points", "AnchorSampler", "ImageCrossAttention"]

_EPS_DEPTH = 1e-5


def project_points(
    points: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    image_size: Sequence[int],
    padded_size: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project grid-frame points into every camera.

    Args:
        points: ``[N, D, 3]`` metres, grid frame (shared by the batch).
        intrinsics: ``[B, V, 3, 3]`` pixels.
        cam_from_grid: ``[B, V, 4, 4]`` grid frame -> OpenCV camera, metres.
        image_size: ``(H, W)`` of the real image, pixels: points outside it are not visible.
        padded_size: ``(H_p, W_p)`` of the zero-padded image the feature maps cover
            (bottom/right padding); defaults to ``image_size``.

    Returns:
        ``(locations [B, V, N, D, 2], visible [B, V, N, D])``: normalised
        ``(u / W_p, v / H_p)`` image coordinates (pixel centres at ``+0.5``, see
        :func:`ms_deform_attn`) and whether the point is in front of the camera and inside
        the real image.
    """
    h, w = float(image_size[0]), float(image_size[1])
    hp, wp = (h, w) if padded_size is None else (float(padded_size[0]), float(padded_size[1]))
    # Projection in float32 at least: half precision loses whole pixels at 50 m.
    dtype = torch.promote_types(points.dtype, torch.float32)
    rot = cam_from_grid[..., :3, :3].to(dtype)
    trans = cam_from_grid[..., :3, 3].to(dtype)
    k = intrinsics.to(dtype)
    cam = torch.einsum("bvij,ndj->bvndi", rot, points.to(dtype)) + trans[:, :, None, None, :]
    pix = torch.einsum("bvij,bvndj->bvndi", k, cam)
    depth = pix[..., 2]
    uv = pix[..., :2] / depth.clamp(min=_EPS_DEPTH).unsqueeze(-1)
    loc = uv / torch.tensor([wp, hp], dtype=dtype, device=uv.device)
    visible = (cam[..., 2] > _EPS_DEPTH) & (uv[..., 0] > 0) & (uv[..., 0] < w) & (uv[..., 1] > 0) & (uv[..., 1] < h)
    return loc, visible


class AnchorSampler(nn.Module):
    """Offsets and weights of one query group (``D`` anchors, ``K`` points per anchor).

    Args:
        embed_dims: query channels ``C``.
        num_heads: attention heads ``M``.
        num_levels: image feature levels ``L``.
        num_anchors: anchors per query ``D``.
        points_per_anchor: sampling points per anchor, head and level ``K``.
    """

    def __init__(
        self, embed_dims: int, num_heads: int, num_levels: int, num_anchors: int, points_per_anchor: int
    ) -> None:
        super().__init__()
        self.num_heads, self.num_levels = num_heads, num_levels
        self.num_anchors, self.points = num_anchors, points_per_anchor
        n = num_heads * num_levels * num_anchors * points_per_anchor
        self.sampling_offsets = nn.Linear(embed_dims, n * 2)
        self.attention_weights = nn.Linear(embed_dims, n)
        init_sampling_offsets(self.sampling_offsets, num_heads, num_levels * num_anchors, points_per_anchor)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        locations: torch.Tensor,
        visible: torch.Tensor,
    ) -> torch.Tensor:
        """Sample ``value`` for each query and average over the cameras that see it.

        Args:
            query: ``[B, N, C]``.
            value: ``[B * V, S, M, C / M]`` projected camera features.
            spatial_shapes: ``L`` sizes ``(h, w)`` of the levels in ``value``.
            locations: ``[B, V, N, D, 2]`` normalised anchor projections.
            visible: ``[B, V, N, D]`` anchor visibility.

        Returns:
            ``[B, N, C]``.
        """
        b, n, c = query.shape
        v = locations.shape[1]
        m, lv, d, k = self.num_heads, self.num_levels, self.num_anchors, self.points
        off = self.sampling_offsets(query).view(b, n, m, lv, d, k, 2)
        weights = self.attention_weights(query).view(b, n, m, lv * d * k).softmax(-1).view(b, n, m, lv, d, k)

        # Each camera sees a fraction of the queries: sample only those ("rebatching", as in
        # BEVFormer), padded to the longest list over (batch, camera). The padding entries
        # are queries with no visible anchor, so their weights are zero below.
        hit = visible.any(-1)  # [B, V, N]
        length = int(hit.sum(-1).max())
        if length == 0:
            return query.new_zeros(b, n, c)
        order = torch.sort((~hit).to(torch.uint8), dim=-1, stable=True).indices[..., :length]  # [B, V, L]
        batch = torch.arange(b, device=query.device).view(b, 1, 1)
        vis = torch.gather(visible, 2, order[..., None].expand(-1, -1, -1, d))  # [B, V, L, D]
        ref = torch.gather(locations, 2, order[..., None, None].expand(-1, -1, -1, d, 2))
        norm = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=off.dtype, device=off.device).view(
            1, 1, 1, 1, lv, 1, 1, 2
        )
        loc = ref.to(off.dtype).view(b, v, length, 1, 1, d, 1, 2) + off[batch, order] / norm
        w = weights[batch, order] * vis.to(weights.dtype).view(b, v, length, 1, 1, d, 1)
        out = ms_deform_attn(
            value,
            spatial_shapes,
            loc.reshape(b * v, length, m, lv, d * k, 2),
            w.reshape(b * v, length, m, lv, d * k),
        )  # [B*V, L, C]
        total = query.new_zeros(b, n, c).scatter_add_(
            1, order.reshape(b, v * length, 1).expand(-1, -1, c), out.reshape(b, v * length, c)
        )
        count = hit.sum(1).clamp(min=1).to(total.dtype)  # cameras seeing each query, [B, N]
        return total / count.unsqueeze(-1)


class ImageCrossAttention(nn.Module):
    """Queries of one or more groups read multi-camera features at their anchors.

    One value projection and one output projection are shared; each group (e.g. the three
    TPV planes, whose anchor counts differ) has its own :class:`AnchorSampler`.

    Args:
        embed_dims: channels ``C`` of queries and features.
        num_heads: attention heads.
        num_levels: image feature levels.
        anchors: per group, ``(num_anchors, points_per_anchor)``.
        dropout: dropout on the attention output before the residual.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        num_levels: int,
        anchors: Sequence[tuple[int, int]],
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.samplers = nn.ModuleList(AnchorSampler(embed_dims, num_heads, num_levels, d, k) for d, k in anchors)
        self.dropout = nn.Dropout(dropout)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self,
        queries: Sequence[torch.Tensor],
        features: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        locations: Sequence[torch.Tensor],
        visible: Sequence[torch.Tensor],
    ) -> list[torch.Tensor]:
        """Update each group's queries (residual included).

        Args:
            queries: per group ``[B, N_g, C]``.
            features: ``[B, V, S, C]`` flattened camera features of all levels.
            spatial_shapes: level sizes ``(h, w)``.
            locations, visible: per group, from :func:`project_points`.

        Returns:
            per group ``[B, N_g, C]``.
        """
        b, v, s, c = features.shape
        value = self.value_proj(features).view(b * v, s, self.num_heads, c // self.num_heads)
        outs = []
        for sampler, q, loc, vis in zip(self.samplers, queries, locations, visible):
            out = sampler(q, value, spatial_shapes, loc, vis)
            outs.append(q + self.dropout(self.output_proj(out)))
        return outs
