"""The ``torch`` backend: vectorised tile rasterisation in plain PyTorch (CPU and CUDA).

Algorithm (no Python loop over Gaussians, pixels or tiles):

1. project every Gaussian into every view (:func:`project_gaussians`) and keep those whose
   exact alpha ≥ 1/255 footprint box holds a pixel centre;
2. list (Gaussian, tile) pairs from the footprint boxes and sort them by (view, tile,
   depth, input index) with one integer key;
3. blend in *rounds*: each round takes the next ``depth_chunk`` Gaussians of every tile that
   still has work and whose pixels are not all terminated, evaluates alphas for
   ``[tiles, depth_chunk, pixels]`` at once and composites with cumulative products; the
   transmittance is carried from round to round, so early termination is exact and tiles
   drop out as soon as every pixel is done;
4. memory is bounded by splitting each round's tiles into slices of at most
   ``max_elements`` alpha values. The backward pass (hand-derived, in
   :class:`_Rasterize`) re-walks the same slices in reverse order, recomputing their alphas
   and carrying the transmittance gradient from round to round, so nothing of size
   Gaussians × pixels is ever stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from ..geometry.cameras import Cameras
from ._project import ALPHA_MAX, ALPHA_MIN, T_MIN, bin_gaussians, project_gaussians
from .result import RenderResult

__all__ = ["render_torch"]

TILE = 4


@dataclass
class _Plan:
    """Everything about one rasterisation that is not a differentiable tensor."""

    pair_flat: torch.Tensor  # [M] index into V*N
    pair_gauss: torch.Tensor  # [M] index into N
    tile_start: torch.Tensor  # [T]
    tile_count: torch.Tensor  # [T]
    tile_px: torch.Tensor  # [T, P] pixel column of every tile pixel
    tile_py: torch.Tensor  # [T, P] pixel row
    inside: torch.Tensor  # [T, P] bool: the pixel lies inside the image
    depth_chunk: int
    max_elements: int


@dataclass
class _Slice:
    """One round's work on a set of tiles: the next ``depth_chunk`` Gaussians of each."""

    tiles: torch.Tensor  # [A]
    flat_idx: torch.Tensor  # [A, K]
    gauss_idx: torch.Tensor  # [A, K]
    present: torch.Tensor  # [A, K] bool: a real entry, not padding
    px: torch.Tensor  # [A, P] pixel centre u
    py: torch.Tensor  # [A, P] pixel centre v
    t_in: torch.Tensor  # [A, P] transmittance before this round
    done_in: torch.Tensor  # [A, P] bool: pixel already terminated


def _make_slice(plan: _Plan, tiles: torch.Tensor, start: int, t_in: torch.Tensor, done_in: torch.Tensor) -> _Slice:
    k_range = torch.arange(plan.depth_chunk, device=tiles.device)
    present = (start + k_range[None, :]) < plan.tile_count[tiles, None]
    pos = plan.tile_start[tiles, None] + start + k_range[None, :]
    pos = torch.where(present, pos, torch.zeros_like(pos))
    return _Slice(
        tiles=tiles,
        flat_idx=plan.pair_flat[pos],
        gauss_idx=plan.pair_gauss[pos],
        present=present,
        px=plan.tile_px[tiles].to(t_in.dtype) + 0.5,
        py=plan.tile_py[tiles].to(t_in.dtype) + 0.5,
        t_in=t_in,
        done_in=done_in,
    )


def _alphas(means2d, conics, opacities, sl: _Slice):
    """Alphas ``[A, K, P]`` of a slice and what the backward pass needs to differentiate them."""
    mean = means2d[sl.flat_idx]  # [A, K, 2]
    con = conics[sl.flat_idx]  # [A, K, 3]
    dx = sl.px[:, None, :] - mean[..., 0:1]  # [A, K, P]
    dy = sl.py[:, None, :] - mean[..., 1:2]
    power = (-0.5 * con[..., 0:1]) * dx * dx + (-0.5 * con[..., 2:3]) * dy * dy - con[..., 1:2] * dx * dy
    gauss = torch.exp(power)
    # padding entries get opacity 0, so the alpha >= 1/255 test drops them
    opacity = torch.where(sl.present, opacities[sl.gauss_idx], torch.zeros_like(sl.t_in[:, :1]))
    raw = opacity[..., None] * gauss
    alpha = raw.clamp_max(ALPHA_MAX)
    keep = (alpha >= ALPHA_MIN) & (power <= 0)
    alpha = alpha * keep
    return alpha, keep, dx, dy, gauss, raw, con


def _values(features: torch.Tensor, depths: torch.Tensor, sl: _Slice) -> torch.Tensor:
    """Per-entry features with the camera depth appended, ``[A, K, C + 1]``: one batched
    matrix product then blends colours and depth together."""
    return torch.cat([features[sl.gauss_idx], depths[sl.flat_idx][..., None]], dim=-1)


def _composite(alpha, keep, sl: _Slice):
    """Front-to-back compositing of a slice; returns weights, transmittances, inclusion."""
    one_minus = 1.0 - alpha
    t_after = sl.t_in[:, None, :] * torch.cumprod(one_minus, dim=1)
    # T only decreases along the depth-sorted list, so "stop before the Gaussian that would
    # take T below T_MIN" includes exactly the kept Gaussians with t_after >= T_MIN.
    included = keep & (t_after >= T_MIN) & ~sl.done_in[:, None, :]
    t_before = torch.cat([sl.t_in[:, None, :], t_after[:, :-1]], dim=1)
    weight = alpha * t_before * included
    through = torch.where(included, one_minus, torch.ones_like(one_minus)).prod(dim=1)  # [A, P]
    done_out = sl.done_in | (t_after[:, -1] < T_MIN)
    return weight, t_before, one_minus, included, through, done_out


class _Rasterize(torch.autograd.Function):
    """Blend projected Gaussians into tile-layout images ``[T, P, C]``, ``[T, P]``, ``[T, P]``."""

    @staticmethod
    def forward(ctx, means2d, conics, depths, opacities, features, plan: _Plan):
        num_tiles, pixels = plan.tile_px.shape
        dtype, device = means2d.dtype, means2d.device
        color = torch.zeros(num_tiles, pixels, features.shape[1], dtype=dtype, device=device)
        depth = torch.zeros(num_tiles, pixels, dtype=dtype, device=device)
        trans = torch.ones(num_tiles, pixels, dtype=dtype, device=device)
        done = ~plan.inside  # pixels outside the image never need work
        slice_tiles = max(1, plan.max_elements // (plan.depth_chunk * pixels))
        walked: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []
        start = 0
        while True:
            active = ((plan.tile_count > start) & ~done.all(dim=1)).nonzero(as_tuple=True)[0]
            if active.numel() == 0:
                break
            updates = []
            for s0 in range(0, active.numel(), slice_tiles):
                tiles = active[s0 : s0 + slice_tiles]
                sl = _make_slice(plan, tiles, start, trans[tiles], done[tiles])
                alpha, keep, *_ = _alphas(means2d, conics, opacities, sl)
                weight, _, _, _, through, done_out = _composite(alpha, keep, sl)
                blended = torch.bmm(weight.transpose(1, 2), _values(features, depths, sl))  # [A, P, C + 1]
                color.index_add_(0, sl.tiles, blended[..., :-1].contiguous())
                depth.index_add_(0, sl.tiles, blended[..., -1].contiguous())
                walked.append((sl.tiles, start, sl.t_in, sl.done_in))
                updates.append((sl.tiles, sl.t_in * through, done_out))
            for tiles, t_out, done_out in updates:
                trans[tiles] = t_out
                done[tiles] = done_out
            start += plan.depth_chunk
        ctx.save_for_backward(means2d, conics, depths, opacities, features)
        ctx.plan = plan
        ctx.walked = walked
        return color, depth, trans

    @staticmethod
    @once_differentiable
    def backward(ctx, g_color, g_depth, g_trans):
        means2d, conics, depths, opacities, features = ctx.saved_tensors
        plan: _Plan = ctx.plan
        num_tiles, pixels = plan.tile_px.shape
        if g_color is None:
            g_color = torch.zeros(num_tiles, pixels, features.shape[1], dtype=means2d.dtype, device=means2d.device)
        if g_depth is None:
            g_depth = torch.zeros(num_tiles, pixels, dtype=means2d.dtype, device=means2d.device)
        g_trans = torch.zeros_like(g_depth) if g_trans is None else g_trans.clone()
        g_means2d = torch.zeros_like(means2d)
        g_conics = torch.zeros_like(conics)
        g_depths = torch.zeros_like(depths)
        g_opacities = torch.zeros_like(opacities)
        g_features = torch.zeros_like(features)
        # Rounds in reverse: the gradient w.r.t. a tile's transmittance after round r is the
        # gradient w.r.t. its transmittance before round r + 1.
        for tiles, start, t_in, done_in in reversed(ctx.walked):
            sl = _make_slice(plan, tiles, start, t_in, done_in)
            alpha, keep, dx, dy, gauss, raw, con = _alphas(means2d, conics, opacities, sl)
            weight, t_before, one_minus, included, through, _ = _composite(alpha, keep, sl)
            g_t = g_trans[tiles]  # [A, P]
            g_values = torch.cat([g_color[tiles], g_depth[tiles][..., None]], dim=-1)  # [A, P, C + 1]
            # d loss / d (weight_k) for every entry and pixel
            per_weight = torch.bmm(_values(features, depths, sl), g_values.transpose(1, 2))
            contrib = weight * per_weight
            t_out = t_in * through
            # everything behind entry k (later entries and the final transmittance) scales with (1 - alpha_k)
            behind = torch.flip(torch.cumsum(torch.flip(contrib, [1]), dim=1), [1]) - contrib
            behind = behind + (t_out * g_t)[:, None, :]
            g_alpha = torch.where(included, t_before * per_weight - behind / one_minus, torch.zeros_like(alpha))
            # As in the 3DGS rasteriser (and the GaussRender release), the 0.99 clamp is
            # straight-through: d alpha / d (o G) = 1 even where o G > 0.99, so opaque
            # Gaussians still learn from the pixels at their centre.
            g_raw = g_alpha
            g_power = g_raw * raw
            gx, gy = g_power * dx, g_power * dy
            sx, sy = gx.sum(-1), gy.sum(-1)
            a, b, c = con[..., 0], con[..., 1], con[..., 2]
            g_mean = torch.stack([a * sx + b * sy, c * sy + b * sx], dim=-1)  # d power / d mean
            g_con = torch.stack([-0.5 * (gx * dx).sum(-1), -(gx * dy).sum(-1), -0.5 * (gy * dy).sum(-1)], dim=-1)
            flat = sl.flat_idx.reshape(-1)
            g_means2d.index_add_(0, flat, g_mean.reshape(-1, 2))
            g_conics.index_add_(0, flat, g_con.reshape(-1, 3))
            g_entry = torch.bmm(weight, g_values)  # [A, K, C + 1]: features, then depth
            g_depths.index_add_(0, flat, g_entry[..., -1].reshape(-1))
            gauss_flat = sl.gauss_idx.reshape(-1)
            g_opacities.index_add_(0, gauss_flat, (g_raw * gauss).sum(-1).reshape(-1))
            g_features.index_add_(0, gauss_flat, g_entry[..., :-1].reshape(-1, features.shape[1]))
            # color, depth and t_out of this round are all proportional to t_in
            g_tin = (contrib.sum(dim=1) + t_out * g_t) / t_in
            g_trans[tiles] = g_tin
        return g_means2d, g_conics, g_depths, g_opacities, g_features, None


def render_torch(
    means: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    scales: torch.Tensor,
    cameras: Cameras,
    background: torch.Tensor,
    depth_chunk: int = 16,
    max_elements: int = 1 << 22,
    tile: int = TILE,
    cull: str = "footprint",
) -> RenderResult:
    """Render with the vectorised PyTorch backend; see :func:`gaussrender.render`.

    ``depth_chunk`` (Gaussians per tile per round), ``max_elements`` (alpha values evaluated
    at once) and ``tile`` (tile edge, pixels) change speed and memory, never the result.
    """
    device = means.device
    num_views, width, height = len(cameras), cameras.width, cameras.height
    proj = project_gaussians(means, opacities, scales, cameras, cull)
    bins = bin_gaussians(proj, width, height, tile)
    tiles_x, tiles_y = bins.tiles_x, bins.tiles_y
    with torch.no_grad():
        # pixel centres of every tile are (column + 0.5, row + 0.5)
        pixel = torch.arange(tile * tile, device=device)
        tile_in_view = torch.arange(num_views * tiles_x * tiles_y, device=device) % (tiles_x * tiles_y)
        tile_px = ((tile_in_view % tiles_x) * tile)[:, None] + (pixel % tile)[None, :]
        tile_py = (torch.div(tile_in_view, tiles_x, rounding_mode="floor") * tile)[:, None] + torch.div(
            pixel, tile, rounding_mode="floor"
        )[None, :]
    plan = _Plan(
        pair_flat=bins.pair_flat,
        pair_gauss=bins.pair_gauss,
        tile_start=bins.tile_start,
        tile_count=bins.tile_count,
        tile_px=tile_px,
        tile_py=tile_py,
        inside=(tile_px < width) & (tile_py < height),
        depth_chunk=depth_chunk,
        max_elements=max_elements,
    )
    color, depth, trans = _Rasterize.apply(
        proj.means2d.reshape(-1, 2),
        proj.conics.reshape(-1, 3),
        proj.depths.reshape(-1),
        opacities,
        features,
        plan,
    )
    color = color + trans[..., None] * background

    def to_image(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(num_views, tiles_y, tiles_x, tile, tile, *x.shape[2:])
        x = x.transpose(2, 3).reshape(num_views, tiles_y * tile, tiles_x * tile, *x.shape[5:])
        return x[:, :height, :width]

    return RenderResult(features=to_image(color), depth=to_image(depth), alpha=to_image(1.0 - trans))
