"""Multi-scale deformable attention (Deformable DETR) written with ``grid_sample``.

Each query reads ``P`` points per head and per feature level around its own reference
location and sums the bilinearly sampled values with learned weights. This module holds
the sampling kernel (:func:`ms_deform_attn`) and the small helpers that every attention
built on it shares (offset initialisation); the attentions themselves live with the
models that use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_floating, check_shape

__all__ = ["ms_deform_attn", "init_sampling_offsets"]


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Sample multi-level feature maps at fractional locations and sum them with weights.

    Locations are normalised image coordinates: ``(0, 0)`` is the top-left corner of the
    top-left pixel and ``(1, 1)`` the bottom-right corner of the bottom-right pixel, so
    location ``x`` hits pixel column ``x * W - 0.5`` (the ``align_corners=False``
    convention). Bilinear interpolation with zeros outside the map.

    Args:
        value: ``[B, S, M, D]`` features of all levels flattened row-major and
            concatenated, ``S = sum(h_l * w_l)``, ``M`` heads of ``D`` channels.
        spatial_shapes: ``L`` pairs ``(h_l, w_l)``, the size of each level.
        sampling_locations: ``[B, Q, M, L, P, 2]`` normalised ``(x, y)`` per query, head,
            level and point.
        attention_weights: ``[B, Q, M, L, P]`` weights (usually a softmax over ``L * P``,
            possibly masked).

    Returns:
        ``[B, Q, M * D]`` the weighted sums, heads concatenated.

    Raises:
        ValueError, TypeError: inconsistent shapes or non-floating inputs.
    """
    sizes = check_shape("value", value, ["B", "S", "M", "D"])
    check_floating("value", value)
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    if sum(h * w for h, w in shapes) != sizes["S"]:
        raise ValueError(
            f"spatial_shapes {shapes} cover {sum(h * w for h, w in shapes)} positions but value has S={sizes['S']}"
        )
    loc_sizes = check_shape(
        "sampling_locations", sampling_locations, [sizes["B"], "Q", sizes["M"], len(shapes), "P", 2]
    )
    check_floating("sampling_locations", sampling_locations)
    check_shape(
        "attention_weights",
        attention_weights,
        [sizes["B"], loc_sizes["Q"], sizes["M"], len(shapes), loc_sizes["P"]],
    )
    check_floating("attention_weights", attention_weights)

    b, _, m, d = value.shape
    q, p = loc_sizes["Q"], loc_sizes["P"]
    per_level = value.split([h * w for h, w in shapes], dim=1)
    # grid_sample wants [-1, 1] with the same corner convention as our [0, 1].
    grids = 2.0 * sampling_locations - 1.0
    out = None
    for lvl, (h, w) in enumerate(shapes):
        # [B, h*w, M, D] -> [B*M, D, h, w]
        v = per_level[lvl].permute(0, 2, 3, 1).reshape(b * m, d, h, w)
        # [B, Q, M, P, 2] -> [B*M, Q, P, 2]
        g = grids[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(b * m, q, p, 2)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        weights = attention_weights[:, :, :, lvl].permute(0, 2, 1, 3).reshape(b * m, 1, q, p)
        # Reduce level by level: only one level's samples [B*M, D, Q, P] live at a time
        # (autograd keeps them for the weights' gradient, but never a stacked copy).
        part = (sampled * weights).sum(-1)  # [B*M, D, Q]
        out = part if out is None else out + part
    if out is None:
        raise ValueError("spatial_shapes must name at least one level")
    return out.view(b, m, d, q).permute(0, 3, 1, 2).reshape(b, q, m * d)


@torch.no_grad()
def init_sampling_offsets(linear: nn.Linear, num_heads: int, groups: int, points: int) -> None:
    """Deformable-DETR start: zero weights, head ``h`` looks along angle ``2*pi*h/M``.

    The bias places point ``k`` of every group (level, anchor, ...) at ``k + 1`` pixels
    along its head's direction, so the heads start spread around the reference instead
    of collapsing on it. ``linear`` must output ``num_heads * groups * points * 2`` values
    ordered ``[head, group, point, xy]``.
    """
    expected = num_heads * groups * points * 2
    if linear.out_features != expected:
        raise ValueError(f"linear has {linear.out_features} outputs; expected heads*groups*points*2 = {expected}")
    nn.init.zeros_(linear.weight)
    theta = torch.arange(num_heads, dtype=torch.float32) * (2.0 * math.pi / num_heads)
    direction = torch.stack([theta.cos(), theta.sin()], dim=-1)
    direction = direction / direction.abs().max(dim=-1, keepdim=True).values
    scale = torch.arange(1, points + 1, dtype=torch.float32).view(1, 1, points, 1)
    bias = direction.view(num_heads, 1, 1, 2) * scale
    linear.bias.copy_(bias.expand(num_heads, groups, points, 2).reshape(-1))
