"""The ``torch`` backend: vectorised tile rasterisation in plain PyTorch (CPU and CUDA).

Algorithm (no Python loop over Gaussians, pixels or tiles):

1. project every set of Gaussians into its own views (:func:`splat`: one call can hold a
   whole batch, each sample in its own cameras), keep the pairs whose exact alpha ≥ 1/255
   footprint box holds a pixel centre and pack their u, v, conic, opacity, depth and
   features, in depth order, into one table ``[Mv, 7 + C]``;
2. list (row, tile) pairs from the footprint boxes and sort them stably by tile
   (:func:`bin_splats`), so that a slice reads its entries with one gather;
3. blend in *rounds*: each round takes the next ``depth_chunk`` Gaussians of every tile that
   still has work and whose pixels are not all terminated. The exponent of every (entry,
   pixel) pair is one matrix product (the quadratic form expanded around the tile's corner,
   ``[A, K, 6] @ [6, P]``, log-opacity folded in), and the compositing uses cumulative
   products; the transmittance is carried from round to round, so early termination is
   exact and tiles drop out as soon as every pixel is done;
4. memory is bounded by splitting each round's tiles into slices of at most
   ``max_elements`` alpha values. The backward pass (hand-derived, in
   :class:`_Rasterize`) re-walks the same slices in reverse order, recomputing their alphas
   and carrying the transmittance gradient from round to round, so nothing of size
   Gaussians × pixels is ever stored; the exponent's gradient is one matrix product back,
   and each slice's gradients reach the table with one ``index_add_``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from ..geometry.cameras import Cameras
from ._project import (
    ALPHA_MAX,
    ALPHA_MIN,
    COL_A,
    COL_B,
    COL_C,
    COL_DEPTH,
    COL_OPACITY,
    COL_U,
    COL_V,
    FEATURE_COLUMN,
    T_MIN,
    GaussianSet,
    Splats,
    bin_splats,
    splat,
)
from .result import RenderResult

__all__ = ["render_torch", "rasterize_torch"]

TILE = 4


#: Columns of the packed table (:class:`Splats`): u, v (pixels), conic a, b, c, opacity, camera
#: depth z (metres), then the C features. One gather per slice reads them all.
_U, _V, _A, _B, _C, _O, _Z = COL_U, COL_V, COL_A, COL_B, COL_C, COL_OPACITY, COL_DEPTH
_FEATURES = FEATURE_COLUMN


@dataclass
class _Plan:
    """Everything about one rasterisation that is not a differentiable tensor."""

    pair_visible: torch.Tensor  # [M] row of the packed table of each (Gaussian, tile) pair
    tile_start: torch.Tensor  # [T]
    tile_count: torch.Tensor  # [T]
    tile_origin: torch.Tensor  # [T, 2] (u, v) of every tile's top-left pixel corner
    basis: torch.Tensor  # [6, P] (1, x, y, x², y², x y) of the pixel centres, tile-local
    inside: torch.Tensor  # [T, P] bool: the pixel lies inside the image
    depth_chunk: int
    max_elements: int
    keep_elements: int  # alpha values whose compositing the forward pass keeps for backward


@dataclass
class _Slice:
    """One round's work on a set of tiles: the next ``depth_chunk`` Gaussians of each."""

    tiles: torch.Tensor  # [A]
    rows: torch.Tensor  # [A, K] row of the packed table of each entry
    present: torch.Tensor  # [A, K] bool: a real entry, not padding
    t_in: torch.Tensor  # [A, P] transmittance before this round
    done_in: torch.Tensor  # [A, P] bool: pixel already terminated


#: log-opacity given to padding entries: exp() of it is exactly 0 in every float dtype, and
#: unlike -inf it cannot meet a 0 in a matrix product and make a NaN.
_NO_ENTRY = -1.0e4


def _make_slice(plan: _Plan, tiles: torch.Tensor, start: int, t_in: torch.Tensor, done_in: torch.Tensor) -> _Slice:
    k_range = torch.arange(plan.depth_chunk, device=tiles.device)
    present = (start + k_range[None, :]) < plan.tile_count[tiles, None]
    pos = plan.tile_start[tiles, None] + start + k_range[None, :]
    pos = torch.where(present, pos, torch.zeros_like(pos))
    return _Slice(tiles=tiles, rows=plan.pair_visible[pos], present=present, t_in=t_in, done_in=done_in)


@dataclass
class _Entries:
    """Per-entry quantities ``[A, K]`` of a slice, tile-local (pixels from the tile's corner)."""

    mx: torch.Tensor  # mean u - tile u
    my: torch.Tensor  # mean v - tile v
    a: torch.Tensor  # conic [[a, b], [b, c]]
    b: torch.Tensor
    c: torch.Tensor
    opacity: torch.Tensor  # 0 for padding
    values: torch.Tensor  # [A, K, 1 + C]: camera depth, then the features


def _entries(plan: _Plan, table: torch.Tensor, sl: _Slice) -> tuple[_Entries, torch.Tensor]:
    """The slice's entries (one gather from the packed table) and their exponent
    coefficients ``[A, K, 6]``.

    The exponent of entry k at tile pixel p is ``power + log o = coef[k] · basis[:, p]``: the
    quadratic form ``-½ a dx² - ½ c dy² - b dx dy`` (dx = x_p - mx) expanded in the tile-local
    pixel coordinates, with ``log o`` folded into the constant. One matrix product then
    evaluates every (entry, pixel) exponent; the expansion is around the tile's corner, so its
    terms stay of the size of the result (no cancellation of image-sized coordinates).
    """
    origin = plan.tile_origin[sl.tiles].to(table.dtype)  # [A, 2]
    rows = table[sl.rows]  # [A, K, 7 + C]
    e = _Entries(
        mx=rows[..., _U] - origin[:, None, 0],
        my=rows[..., _V] - origin[:, None, 1],
        a=rows[..., _A],
        b=rows[..., _B],
        c=rows[..., _C],
        opacity=torch.where(sl.present, rows[..., _O], torch.zeros((), dtype=table.dtype, device=table.device)),
        values=rows[..., _Z:],
    )
    log_o = torch.where(sl.present, torch.log(e.opacity.clamp_min(ALPHA_MIN)), torch.full_like(e.opacity, _NO_ENTRY))
    am, bm, cm = e.a * e.mx, e.b * e.mx, e.c * e.my
    bmy = e.b * e.my
    coef = torch.stack(
        [
            log_o - 0.5 * am * e.mx - 0.5 * cm * e.my - bm * e.my,
            am + bmy,
            cm + bm,
            -0.5 * e.a,
            -0.5 * e.c,
            -e.b,
        ],
        dim=-1,
    )
    return e, coef


def _alphas(plan: _Plan, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``raw = o · exp(power)`` and ``alpha = min(0.99, raw)`` zeroed below 1/255, ``[A, K, P]``.

    The conic is positive definite by construction (``Σ' = s² J Jᵀ + 0.3 I``), so
    ``power <= 0`` up to rounding and needs no test.
    """
    raw = torch.matmul(coef, plan.basis.to(coef.dtype)).exp_()
    alpha = torch.where(raw >= ALPHA_MIN, raw.clamp_max(ALPHA_MAX), torch.zeros((), dtype=raw.dtype, device=raw.device))
    return raw, alpha


def _composite(alpha: torch.Tensor, sl: _Slice):
    """Front-to-back compositing of a slice.

    Returns ``weight [A, K, P]`` (alpha · T before, 0 for excluded entries), ``t_before``,
    ``one_minus`` (1 - alpha), ``included`` (the pixel has not terminated at this entry),
    the transmittance after the round ``t_out [A, P]`` and ``done_out [A, P]``.
    """
    one_minus = 1.0 - alpha
    # a terminated pixel starts the round at T = 0, so none of its entries is included
    t_eff = torch.where(sl.done_in, torch.zeros_like(sl.t_in), sl.t_in)
    t_after = torch.cumprod(one_minus, dim=1).mul_(t_eff[:, None, :])
    # T only decreases along the depth-sorted list, so "stop before the Gaussian that would
    # take T below T_MIN" includes exactly the entries with t_after >= T_MIN (an entry with
    # alpha = 0 changes nothing, whether included or not).
    included = t_after >= T_MIN
    t_before = torch.cat([t_eff[:, None, :], t_after[:, :-1]], dim=1)
    weight = torch.where(included, alpha * t_before, torch.zeros((), dtype=alpha.dtype, device=alpha.device))
    # T after the round: the last included t_after (non-increasing, so the smallest one)
    last = torch.where(included, t_after, torch.full((), float("inf"), dtype=alpha.dtype, device=alpha.device))
    t_out = torch.minimum(last.amin(dim=1), sl.t_in)
    t_out = torch.where(sl.done_in, sl.t_in, t_out)
    done_out = sl.done_in | (t_after[:, -1] < T_MIN)
    return weight, t_before, one_minus, included, t_out, done_out


class _Rasterize(torch.autograd.Function):
    """Blend the packed table ``[Mv, 7 + C]`` into tile-layout images ``[T, P, C]``, ``[T, P]``, ``[T, P]``."""

    @staticmethod
    def forward(ctx, table, plan: _Plan):
        num_tiles, pixels = plan.inside.shape
        dtype, device = table.dtype, table.device
        channels = table.shape[1] - _FEATURES
        # colour and depth accumulate together: column 0 is depth, then the features
        image = torch.zeros(num_tiles, pixels, 1 + channels, dtype=dtype, device=device)
        trans = torch.ones(num_tiles, pixels, dtype=dtype, device=device)
        done = ~plan.inside  # pixels outside the image never need work
        slice_tiles = max(1, plan.max_elements // (plan.depth_chunk * pixels))
        walked: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []
        # the compositing of each slice, kept for the backward pass while it fits in
        # plan.keep_elements values (beyond, the backward pass recomputes it)
        kept: list[tuple[torch.Tensor, ...] | None] = []
        budget = plan.keep_elements if ctx.needs_input_grad[0] else 0
        start = 0
        while True:
            active = ((plan.tile_count > start) & ~done.all(dim=1)).nonzero(as_tuple=True)[0]
            if active.numel() == 0:
                break
            updates = []
            for s0 in range(0, active.numel(), slice_tiles):
                tiles = active[s0 : s0 + slice_tiles]
                sl = _make_slice(plan, tiles, start, trans[tiles], done[tiles])
                e, coef = _entries(plan, table, sl)
                raw, alpha = _alphas(plan, coef)
                weight, t_before, one_minus, included, t_out, done_out = _composite(alpha, sl)
                image.index_add_(0, sl.tiles, torch.bmm(weight.transpose(1, 2), e.values))  # [A, P, 1 + C]
                walked.append((sl.tiles, start, sl.t_in, sl.done_in))
                if alpha.numel() <= budget:
                    budget -= alpha.numel()
                    kept.append((raw, alpha, weight, t_before, one_minus, included, t_out))
                else:
                    budget = 0  # keep a prefix only: the backward pass walks the slices in reverse
                    kept.append(None)
                updates.append((sl.tiles, t_out, done_out))
            for tiles, t_out, done_out in updates:
                trans[tiles] = t_out
                done[tiles] = done_out
            start += plan.depth_chunk
        ctx.save_for_backward(table)
        ctx.plan = plan
        ctx.walked = walked
        ctx.kept = kept
        return image[..., 1:], image[..., 0], trans

    @staticmethod
    @once_differentiable
    def backward(ctx, g_color, g_depth, g_trans):
        (table,) = ctx.saved_tensors
        plan: _Plan = ctx.plan
        num_tiles, pixels = plan.inside.shape
        dtype, device = table.dtype, table.device
        g_image = torch.zeros(num_tiles, pixels, table.shape[1] - _Z, dtype=dtype, device=device)
        if g_color is not None:
            g_image[..., 1:] = g_color
        if g_depth is not None:
            g_image[..., 0] = g_depth
        g_trans = torch.zeros(num_tiles, pixels, dtype=dtype, device=device) if g_trans is None else g_trans.clone()
        g_table = torch.zeros_like(table)
        zero = torch.zeros((), dtype=dtype, device=device)
        # Rounds in reverse: the gradient w.r.t. a tile's transmittance after round r is the
        # gradient w.r.t. its transmittance before round r + 1.
        for (tiles, start, t_in, done_in), kept in zip(reversed(ctx.walked), reversed(ctx.kept), strict=True):
            sl = _make_slice(plan, tiles, start, t_in, done_in)
            e, coef = _entries(plan, table, sl)
            if kept is None:
                raw, alpha = _alphas(plan, coef)
                weight, t_before, one_minus, included, t_out, _ = _composite(alpha, sl)
            else:
                raw, alpha, weight, t_before, one_minus, included, t_out = kept
            g_t = torch.where(done_in, zero, g_trans[tiles])  # [A, P]: a done pixel's T passes through
            g_values = g_image[tiles]  # [A, P, 1 + C]
            # d loss / d (weight_k) for every entry and pixel
            per_weight = torch.bmm(e.values, g_values.transpose(1, 2))
            contrib = weight * per_weight
            running = torch.cumsum(contrib, dim=1)
            total = running[:, -1].clone()  # [A, P] (running is negated in place below)
            t_g = t_out * g_t
            # everything behind entry k (later entries and the final transmittance) scales
            # with (1 - alpha_k): sum_{j > k} contrib_j + T_out · dL/dT_out
            behind = running.neg_().add_((total + t_g)[:, None, :])
            g_alpha = t_before * per_weight - behind / one_minus
            # excluded entries and those under 1/255 (alpha = 0) get no gradient
            g_alpha = torch.where(included & (alpha > 0), g_alpha, zero)
            # As in the 3DGS rasteriser (and the GaussRender release), the 0.99 clamp is
            # straight-through: d alpha / d (o G) = 1 even where o G > 0.99, so opaque
            # Gaussians still learn from the pixels at their centre.
            g_power = g_alpha.mul_(raw)  # d loss / d (power + log o)
            g_coef = torch.matmul(g_power, plan.basis.to(dtype).t())  # [A, K, 6]
            g0, g1, g2, g3, g4, g5 = g_coef.unbind(-1)
            g_rows = torch.cat(
                [
                    torch.stack(
                        [
                            g1 * e.a + g2 * e.b - g0 * (e.a * e.mx + e.b * e.my),  # u
                            g1 * e.b + g2 * e.c - g0 * (e.c * e.my + e.b * e.mx),  # v
                            g1 * e.mx - 0.5 * g0 * e.mx * e.mx - 0.5 * g3,  # a
                            g1 * e.my + g2 * e.mx - g0 * e.mx * e.my - g5,  # b
                            g2 * e.my - 0.5 * g0 * e.my * e.my - 0.5 * g4,  # c
                            # d (log o) / d o = 1 / o; padding entries have g0 = 0
                            torch.where(sl.present, g0 / e.opacity.clamp_min(ALPHA_MIN), zero),  # opacity
                        ],
                        dim=-1,
                    ),
                    torch.bmm(weight, g_values),  # depth, features
                ],
                dim=-1,
            )
            g_table.index_add_(0, sl.rows.reshape(-1), g_rows.reshape(-1, table.shape[1]))
            # colour, depth and T_out of this round are all proportional to t_in
            g_tin = (total + t_g) / t_in
            g_trans[tiles] = torch.where(done_in, g_trans[tiles], g_tin)
        return g_table, None


def rasterize_torch(
    splats: Splats,
    background: torch.Tensor,
    depth_chunk: int = 16,
    max_elements: int = 1 << 22,
    tile: int = TILE,
    keep_elements: int = 1 << 21,
) -> RenderResult:
    """Blend packed splats (:func:`gaussrender.render._project.splat`) into their views.

    ``depth_chunk`` (Gaussians per tile per round), ``max_elements`` (alpha values evaluated
    at once), ``tile`` (tile edge, pixels) and ``keep_elements`` (alpha values whose
    compositing the forward pass keeps for the backward pass instead of recomputing it: five
    floats and a bool each, 42 MiB in float32 at the default 2^21. Kept, a small scene's
    backward pass skips the recomputation (a small-grid training step's render cost nearly
    halves); for large renders a budget beyond that raised the peak memory of a batch
    without making the loss faster at two threads) change speed and memory, never the result.

    Returns images of all ``splats.num_views`` views: features ``[V, H, W, C]``, depth and
    alpha ``[V, H, W]``.
    """
    table = splats.table
    device, dtype = table.device, table.dtype
    num_views, width, height = splats.num_views, splats.width, splats.height
    bins = bin_splats(splats, tile)
    tiles_x, tiles_y = bins.tiles_x, bins.tiles_y
    with torch.no_grad():
        pixel = torch.arange(tile * tile, device=device)
        local_x = (pixel % tile).to(dtype) + 0.5  # pixel centres, tile-local
        local_y = torch.div(pixel, tile, rounding_mode="floor").to(dtype) + 0.5
        basis = torch.stack([torch.ones_like(local_x), local_x, local_y, local_x**2, local_y**2, local_x * local_y])
        tile_in_view = torch.arange(num_views * tiles_x * tiles_y, device=device) % (tiles_x * tiles_y)
        tile_x0 = (tile_in_view % tiles_x) * tile
        tile_y0 = torch.div(tile_in_view, tiles_x, rounding_mode="floor") * tile
        inside = ((tile_x0[:, None] + (pixel % tile)[None, :]) < width) & (
            (tile_y0[:, None] + torch.div(pixel, tile, rounding_mode="floor")[None, :]) < height
        )
    plan = _Plan(
        pair_visible=bins.pair_row,
        tile_start=bins.tile_start,
        tile_count=bins.tile_count,
        tile_origin=torch.stack([tile_x0, tile_y0], dim=-1),
        basis=basis,
        inside=inside,
        depth_chunk=depth_chunk,
        max_elements=max_elements,
        keep_elements=keep_elements,
    )
    color, depth, trans = _Rasterize.apply(table, plan)
    color = color + trans[..., None] * background

    def to_image(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(num_views, tiles_y, tiles_x, tile, tile, *x.shape[2:])
        x = x.transpose(2, 3).reshape(num_views, tiles_y * tile, tiles_x * tile, *x.shape[5:])
        return x[:, :height, :width]

    return RenderResult(features=to_image(color), depth=to_image(depth), alpha=to_image(1.0 - trans))


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
    keep_elements: int = 1 << 21,
    cull: str = "footprint",
) -> RenderResult:
    """Render one set of Gaussians into ``cameras`` with the vectorised PyTorch backend; see
    :func:`gaussrender.render` for the contract and :func:`rasterize_torch` for the options."""
    splats = splat([GaussianSet(means, opacities, features, scales, cameras)], cull)
    return rasterize_torch(splats, background, depth_chunk, max_elements, tile, keep_elements)
