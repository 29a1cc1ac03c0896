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
   ``max_elements`` alpha values; under autograd each slice is checkpointed (recomputed in
   the backward pass), so nothing of size Gaussians × pixels is ever stored.
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

from ..cameras import Cameras
from . import RenderResult
from ._project import ALPHA_MAX, ALPHA_MIN, T_MIN, bin_gaussians, project_gaussians

__all__ = ["render_torch"]

TILE = 8


def _blend_slice(
    means2d: torch.Tensor,  # [V*N, 2]
    conics: torch.Tensor,  # [V*N, 3]
    depths: torch.Tensor,  # [V*N]
    opacities: torch.Tensor,  # [N]
    features: torch.Tensor,  # [N, C]
    flat_idx: torch.Tensor,  # [A, K] index into V*N
    gauss_idx: torch.Tensor,  # [A, K] index into N
    present: torch.Tensor,  # [A, K] bool: a real entry (not padding)
    px: torch.Tensor,  # [A, P] pixel centre u
    py: torch.Tensor,  # [A, P] pixel centre v
    t_in: torch.Tensor,  # [A, P] transmittance before this round
    done_in: torch.Tensor,  # [A, P] bool: pixel already terminated
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite K depth-sorted Gaussians over P pixels of A tiles, front to back."""
    mean = means2d[flat_idx]  # [A, K, 2]
    con = conics[flat_idx]  # [A, K, 3]
    dx = px[:, None, :] - mean[..., 0:1]  # [A, K, P]
    dy = py[:, None, :] - mean[..., 1:2]
    power = -0.5 * (con[..., 0:1] * dx * dx + con[..., 2:3] * dy * dy) - con[..., 1:2] * dx * dy
    alpha = torch.clamp_max(opacities[gauss_idx][..., None] * torch.exp(power), ALPHA_MAX)
    keep = (power <= 0) & (alpha >= ALPHA_MIN) & present[..., None]
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    through = torch.cumprod(one_minus, dim=1)  # transmittance factor after k, inclusive
    t_after = t_in[:, None, :] * through
    # A pixel stops before the Gaussian that would take T below T_MIN; T only decreases, so
    # the included Gaussians form a prefix of the depth-sorted list.
    stop = keep & (t_after < T_MIN)
    included = keep & ~stop & ~done_in[:, None, :]
    included = included & (torch.cumsum(stop.to(torch.int32), dim=1) == 0)
    t_before = torch.cat([t_in[:, None, :], t_after[:, :-1]], dim=1)
    weight = torch.where(included, alpha * t_before, torch.zeros_like(alpha))  # [A, K, P]
    color = torch.bmm(weight.transpose(1, 2), features[gauss_idx])  # [A, P, C]
    depth = (weight * depths[flat_idx][..., None]).sum(dim=1)  # [A, P]
    t_out = t_in * torch.where(included, one_minus, torch.ones_like(one_minus)).prod(dim=1)
    done_out = done_in | stop.any(dim=1)
    return color, depth, t_out, done_out


def render_torch(
    means: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    scales: torch.Tensor,
    cameras: Cameras,
    background: torch.Tensor,
    depth_chunk: int = 32,
    max_elements: int = 1 << 22,
    tile: int = TILE,
) -> RenderResult:
    """Render with the vectorised PyTorch backend; see :func:`gaussrender.render`.

    ``depth_chunk`` (Gaussians per tile per round), ``max_elements`` (alpha values evaluated
    at once) and ``tile`` (tile edge, pixels) change speed and memory, never the result.
    """
    device, dtype = means.device, means.dtype
    num_views, width, height = len(cameras), cameras.width, cameras.height
    n, c = features.shape
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    tiles_per_view = tiles_x * tiles_y
    num_tiles = num_views * tiles_per_view
    pixels = tile * tile

    proj = project_gaussians(means, opacities, scales, cameras)

    bins = bin_gaussians(proj, width, height, tile)
    pair_flat, pair_gauss = bins.pair_flat, bins.pair_gauss
    tile_start, tile_count = bins.tile_start, bins.tile_count
    with torch.no_grad():
        # pixel centres of every tile: (c + 0.5, r + 0.5)
        lp = torch.arange(pixels, device=device)
        all_tiles = torch.arange(num_tiles, device=device)
        tile_in_view = all_tiles % tiles_per_view
        tile_px = ((tile_in_view % tiles_x) * tile)[:, None] + (lp % tile)[None, :]
        tile_py = (torch.div(tile_in_view, tiles_x, rounding_mode="floor") * tile)[:, None] + torch.div(
            lp, tile, rounding_mode="floor"
        )[None, :]
        inside = (tile_px < width) & (tile_py < height)

    flat_means = proj.means2d.reshape(-1, 2)
    flat_conics = proj.conics.reshape(-1, 3)
    flat_depths = proj.depths.reshape(-1)
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means, opacities, features, scales)
    )

    trans = torch.ones(num_tiles, pixels, dtype=dtype, device=device)
    done = ~inside  # pixels outside the image never need work
    color_parts: list[torch.Tensor] = []
    depth_parts: list[torch.Tensor] = []
    part_tiles: list[torch.Tensor] = []
    k_range = torch.arange(depth_chunk, device=device)
    round_index = 0
    while True:
        with torch.no_grad():
            start = round_index * depth_chunk
            active = ((tile_count > start) & ~done.all(dim=1)).nonzero(as_tuple=True)[0]
        if active.numel() == 0:
            break
        slice_tiles = max(1, max_elements // (depth_chunk * pixels))
        new_trans, new_done = [], []
        for s0 in range(0, active.numel(), slice_tiles):
            tiles_now = active[s0 : s0 + slice_tiles]
            with torch.no_grad():
                pos = tile_start[tiles_now, None] + start + k_range[None, :]
                present = (start + k_range[None, :]) < tile_count[tiles_now, None]
                pos = torch.where(present, pos, torch.zeros_like(pos))
                flat_idx = pair_flat[pos]
                gauss_idx = pair_gauss[pos]
                px = tile_px[tiles_now].to(dtype) + 0.5
                py = tile_py[tiles_now].to(dtype) + 0.5
                done_in = done[tiles_now]
            args = (
                flat_means,
                flat_conics,
                flat_depths,
                opacities,
                features,
                flat_idx,
                gauss_idx,
                present,
                px,
                py,
                trans[tiles_now],
                done_in,
            )
            if needs_grad:
                col, dep, t_out, d_out = checkpoint(
                    _blend_slice, *args, use_reentrant=False, preserve_rng_state=False
                )
            else:
                col, dep, t_out, d_out = _blend_slice(*args)
            color_parts.append(col)
            depth_parts.append(dep)
            part_tiles.append(tiles_now)
            new_trans.append(t_out)
            new_done.append(d_out)
        trans = trans.index_copy(0, active, torch.cat(new_trans))
        done = done.index_copy(0, active, torch.cat(new_done))
        round_index += 1

    if color_parts:
        idx = torch.cat(part_tiles)
        color = torch.zeros(num_tiles, pixels, c, dtype=dtype, device=device).index_add(
            0, idx, torch.cat(color_parts)
        )
        depth = torch.zeros(num_tiles, pixels, dtype=dtype, device=device).index_add(
            0, idx, torch.cat(depth_parts)
        )
    else:
        color = torch.zeros(num_tiles, pixels, c, dtype=dtype, device=device)
        depth = torch.zeros(num_tiles, pixels, dtype=dtype, device=device)
    color = color + trans[..., None] * background

    def to_image(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(num_views, tiles_y, tiles_x, tile, tile, *x.shape[2:])
        x = x.transpose(2, 3).reshape(num_views, tiles_y * tile, tiles_x * tile, *x.shape[5:])
        return x[:, :height, :width]

    return RenderResult(
        features=to_image(color), depth=to_image(depth), alpha=to_image(1.0 - trans)
    )
