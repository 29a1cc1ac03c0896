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
   and each slice's gradients reach the table with two ``index_add_`` (geometry, values).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy
import torch
from torch.autograd.function import once_differentiable

from ..geometry.cameras import Cameras
from ._project import (
    ALPHA_MAX,
    ALPHA_MIN,
    COL_DEPTH,
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


#: added to the log-opacity of padding entries: exp() of the exponent is then exactly 0 in every
#: float dtype, and unlike -inf it cannot meet a 0 in a matrix product and make a NaN.
_NO_ENTRY = -1.0e4

#: log2(e): the exponent is evaluated as 2^(x · log2 e), since torch's CPU exp2 is several times
#: faster than exp (whose slow path handles the many underflowing exponents of a slice).
_LOG2_E = 1.4426950408889634


def _make_slice(plan: _Plan, tiles: torch.Tensor, start: int, t_in: torch.Tensor, done_in: torch.Tensor) -> _Slice:
    # index_select + view instead of advanced indexing: the same gathers, much cheaper on CPU
    k_range = torch.arange(start, start + plan.depth_chunk, device=tiles.device)
    present = k_range[None, :] < plan.tile_count.index_select(0, tiles)[:, None]
    # padding entries read row 0 (their exponent is made -inf-like in _entries)
    pos = (plan.tile_start.index_select(0, tiles)[:, None] + k_range[None, :]).mul_(present)
    rows = plan.pair_visible.index_select(0, pos.reshape(-1)).view(pos.shape)
    return _Slice(tiles=tiles, rows=rows, present=present, t_in=t_in, done_in=done_in)


@dataclass
class _Entries:
    """Per-entry quantities ``[A, K]`` of a slice, tile-local (pixels from the tile's corner).

    Each is a contiguous row of one ``[6, A, K]`` gather (elementwise work on strided columns
    of ``[A, K, 7 + C]`` rows is several times slower on CPU)."""

    mx: torch.Tensor  # mean u - tile u
    my: torch.Tensor  # mean v - tile v
    a: torch.Tensor  # conic [[a, b], [b, c]]
    b: torch.Tensor
    c: torch.Tensor
    opacity: torch.Tensor  # a real row's opacity also for padding (its exponent holds _NO_ENTRY)
    values: torch.Tensor  # [A, K, 1 + C]: camera depth, then the features


def _split_table(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The packed table ``[Mv, 7 + C]`` as ``geometry [6, Mv]`` (u, v, a, b, c, opacity: one
    contiguous row each) and ``values [Mv, 1 + C]`` (depth, then the features), contiguous."""
    return table[:, :COL_DEPTH].t().contiguous(), table[:, COL_DEPTH:].contiguous()


def _entries(plan: _Plan, geometry: torch.Tensor, values: torch.Tensor, sl: _Slice) -> tuple[_Entries, torch.Tensor]:
    """The slice's entries (two gathers from :func:`_split_table`'s tensors) and their
    exponent coefficients ``[6, A, K]``.

    The exponent of entry k at tile pixel p is ``power + log o = coef[:, k] · basis[:, p]``: the
    quadratic form ``-½ a dx² - ½ c dy² - b dx dy`` (dx = x_p - mx) expanded in the tile-local
    pixel coordinates, with ``log o`` folded into the constant. One matrix product then
    evaluates every (entry, pixel) exponent; the expansion is around the tile's corner, so its
    terms stay of the size of the result (no cancellation of image-sized coordinates).
    """
    flat = sl.rows.reshape(-1)
    u, v, a, b, c, opacity = geometry.index_select(1, flat).view(6, *sl.rows.shape).unbind(0)
    origin = plan.tile_origin.index_select(0, sl.tiles).to(geometry.dtype)  # [A, 2]
    e = _Entries(
        mx=u - origin[:, 0:1],
        my=v - origin[:, 1:2],
        a=a,
        b=b,
        c=c,
        opacity=opacity,
        values=values.index_select(0, flat).view(*sl.rows.shape, values.shape[1]),
    )
    # padding: log o + _NO_ENTRY (adding 0 to a real entry's log o is exact); a bool add, not
    # masked_fill, which is not vectorised on CPU
    log_o = e.opacity.clamp_min(ALPHA_MIN).log_().add_(~sl.present, alpha=_NO_ENTRY)
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
        dim=0,
    )
    return e, coef


@functools.cache
def _largest_below(value: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` number below ``value`` (rounded to ``dtype``): for ``x`` of that
    dtype, ``x > it`` exactly when ``x >= value``, which lets ``threshold_`` (vectorised, in
    place) apply the contract's ``>=`` cut-offs. Computed in numpy: no tensor op, no sync."""
    np_dtype = {torch.float64: numpy.float64, torch.float32: numpy.float32, torch.float16: numpy.float16}[dtype]
    return float(numpy.nextafter(np_dtype(value), np_dtype(0)))


def _alphas(plan: _Plan, coef: torch.Tensor, need_raw: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``raw = o · exp(power)`` zeroed below 1/255 and ``alpha = min(0.99, raw)``, ``[A, K, P]``
    (``raw`` is None, and ``alpha`` takes its storage, unless ``need_raw``: only the backward
    pass needs it).

    The conic is positive definite by construction (``Σ' = s² J Jᵀ + 0.3 I``), so
    ``power <= 0`` up to rounding and needs no test. ``raw`` is zeroed in place (no mask
    kept), so the backward pass's ``d alpha / d raw`` needs no mask of its own.
    """
    _, num, depth = coef.shape
    exponent = torch.mm(coef.view(6, -1).t(), plan.basis.to(coef.dtype) * _LOG2_E)  # [A K, P], base 2
    raw = exponent.exp2_().view(num, depth, -1)
    torch.nn.functional.threshold(raw, _largest_below(ALPHA_MIN, raw.dtype), 0.0, inplace=True)
    if not need_raw:
        return None, raw.clamp_max_(ALPHA_MAX)
    return raw, raw.clamp_max(ALPHA_MAX)


def _composite(raw: torch.Tensor | None, alpha: torch.Tensor, sl: _Slice):
    """Front-to-back compositing of a slice; consumes ``alpha`` and edits ``raw`` in place.

    Returns ``weight [A, K, P]`` (alpha · T before, 0 for excluded entries; the storage of
    ``alpha``), ``t_before`` (T before each entry; any finite value for excluded entries),
    ``one_minus`` (1 - alpha), the transmittance after the round ``t_out [A, P]`` and
    ``done_out [A, P]``. ``raw`` (if given) is zeroed where the entry is excluded (the pixel has
    terminated), so it is the masked factor ``d alpha / d raw · raw`` the backward pass needs.

    Masks are applied as products with 0/1 floats, not ``masked_fill``/``where``, which are
    not vectorised on CPU (ten times slower per element than a product).
    """
    num, depth, pixels = alpha.shape
    # column 0: T at the start of the round (0 for a terminated pixel, so none of its entries
    # is included), then 1 - alpha; one cumulative product gives T before and after every entry
    steps = torch.empty(num, depth + 1, pixels, dtype=alpha.dtype, device=alpha.device)
    live = ~sl.done_in
    torch.mul(sl.t_in, live, out=steps[:, 0])
    one_minus = steps[:, 1:]
    torch.sub(torch.ones((), dtype=alpha.dtype, device=alpha.device), alpha, out=one_minus)
    trans = torch.cumprod(steps, dim=1)  # [A, K + 1, P]
    # T only decreases along the depth-sorted list, so "stop before the Gaussian that would
    # take T below T_MIN" excludes exactly the entries with t_after < T_MIN, a suffix along K
    # (an entry with alpha = 0 changes nothing, whether included or not). Zero those t_after:
    # a live pixel starts at T >= T_MIN, so the surviving T are exactly the included entries'.
    t_after = torch.nn.functional.threshold(trans[:, 1:], _largest_below(T_MIN, trans.dtype), 0.0, inplace=True)
    included = torch.sign(t_after)  # 1.0 / 0.0 (T >= 0)
    # T before an included entry is t_after of the previous one (included too) or the start
    t_before = trans[:, :-1]
    weight = alpha.mul_(included).mul_(t_before)
    if raw is not None:
        raw.mul_(included)
    # T after the round: T after the last included entry, at index (number included) of
    # trans; a terminated pixel's (T = 0 there) passes through
    count = included.sum(dim=1, keepdim=True).long()  # [A, 1, P]
    t_out = trans.gather(1, count).squeeze(1).addcmul_(sl.t_in, sl.done_in)
    done_out = sl.done_in | (t_after[:, -1] == 0)
    return weight, t_before, one_minus, t_out, done_out


class _Rasterize(torch.autograd.Function):
    """Blend the packed table ``[Mv, 7 + C]`` into tile-layout images ``[T, P, C]``, ``[T, P]``, ``[T, P]``."""

    @staticmethod
    def forward(ctx, table, plan: _Plan):
        num_tiles, pixels = plan.inside.shape
        dtype, device = table.dtype, table.device
        channels = table.shape[1] - FEATURE_COLUMN
        # colour and depth accumulate together: column 0 is depth, then the features
        image = torch.zeros(num_tiles, pixels, 1 + channels, dtype=dtype, device=device)
        trans = torch.ones(num_tiles, pixels, dtype=dtype, device=device)
        done = ~plan.inside  # pixels outside the image never need work
        tile_done = done.all(dim=1)  # [T], updated for the tiles each round touches
        slice_tiles = max(1, plan.max_elements // (plan.depth_chunk * pixels))
        walked: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []
        # the compositing of each slice, kept for the backward pass while it fits in
        # plan.keep_elements values (beyond, the backward pass recomputes it)
        kept: list[tuple[torch.Tensor, ...] | None] = []
        need_grad = ctx.needs_input_grad[0]
        budget = plan.keep_elements if need_grad else 0
        geometry, values = _split_table(table)
        start = 0
        while True:
            active = ((plan.tile_count > start) & ~tile_done).nonzero(as_tuple=True)[0]
            if active.numel() == 0:
                break
            updates = []
            for s0 in range(0, active.numel(), slice_tiles):
                tiles = active[s0 : s0 + slice_tiles]
                sl = _make_slice(plan, tiles, start, trans.index_select(0, tiles), done.index_select(0, tiles))
                e, coef = _entries(plan, geometry, values, sl)
                raw, alpha = _alphas(plan, coef, need_grad)
                weight, t_before, one_minus, t_out, done_out = _composite(raw, alpha, sl)
                image.index_add_(0, sl.tiles, torch.bmm(weight.transpose(1, 2), e.values))  # [A, P, 1 + C]
                walked.append((sl.tiles, start, sl.t_in, sl.done_in))
                if raw is not None and weight.numel() <= budget:
                    budget -= weight.numel()
                    kept.append((raw, weight, t_before, one_minus, t_out))
                else:
                    budget = 0  # keep a prefix only: the backward pass walks the slices in reverse
                    kept.append(None)
                updates.append((sl.tiles, t_out, done_out))
            for tiles, t_out, done_out in updates:
                trans.index_copy_(0, tiles, t_out)
                done.index_copy_(0, tiles, done_out)
                tile_done.index_copy_(0, tiles, done_out.all(dim=1))
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
        g_image = torch.zeros(num_tiles, pixels, table.shape[1] - COL_DEPTH, dtype=dtype, device=device)
        if g_color is not None:
            g_image[..., 1:] = g_color
        if g_depth is not None:
            g_image[..., 0] = g_depth
        g_trans = torch.zeros(num_tiles, pixels, dtype=dtype, device=device) if g_trans is None else g_trans.clone()
        geometry, values = _split_table(table)
        # the gradients of the geometry rows [6, Mv] and of the value columns [Mv, 1 + C]
        g_geometry = torch.zeros_like(geometry)
        g_values_table = torch.zeros_like(values)
        basis = plan.basis.to(dtype)
        # Rounds in reverse: the gradient w.r.t. a tile's transmittance after round r is the
        # gradient w.r.t. its transmittance before round r + 1.
        for (tiles, start, t_in, done_in), kept in zip(reversed(ctx.walked), reversed(ctx.kept), strict=True):
            sl = _make_slice(plan, tiles, start, t_in, done_in)
            e, coef = _entries(plan, geometry, values, sl)
            if kept is None:
                raw, alpha = _alphas(plan, coef)
                weight, t_before, one_minus, t_out, _ = _composite(raw, alpha, sl)
            else:
                raw, weight, t_before, one_minus, t_out = kept
            g_out = g_trans.index_select(0, tiles)  # [A, P]
            g_t = g_out * ~done_in  # a done pixel's T passes through
            g_values = g_image.index_select(0, tiles)  # [A, P, 1 + C]
            # d loss / d (weight_k) for every entry and pixel
            per_weight = torch.bmm(e.values, g_values.transpose(1, 2))
            # minus everything behind entry k (later entries and the final transmittance),
            # which scales with (1 - alpha_k): -(sum_{j > k} contrib_j + T_out · dL/dT_out)
            running = torch.mul(weight, per_weight).cumsum_(dim=1)
            total = running[:, -1] + t_out * g_t  # [A, P]
            minus_behind = running.sub_(total[:, None, :])
            g_alpha = minus_behind.div_(one_minus).addcmul_(t_before, per_weight)
            # Excluded entries and those under 1/255 (alpha = 0) get no gradient: raw is 0
            # there (1 - alpha >= 0.01, so g_alpha is finite). As in the 3DGS rasteriser (and
            # the GaussRender release), the 0.99 clamp is straight-through: d alpha / d (o G) = 1
            # even where o G > 0.99, so opaque Gaussians still learn from the pixels at their centre.
            g_power = g_alpha.mul_(raw)  # d loss / d (power + log o)
            flat = sl.rows.reshape(-1)
            g_coef = torch.mm(basis, g_power.view(-1, pixels).t()).view(6, *sl.rows.shape)  # [6, A, K]
            g0, g1, g2, g3, g4, g5 = g_coef.unbind(0)
            g_geo = torch.stack(
                [
                    # coef[1] = a mx + b my, coef[2] = c my + b mx
                    g1 * e.a + g2 * e.b - g0 * coef[1],  # u
                    g1 * e.b + g2 * e.c - g0 * coef[2],  # v
                    g1 * e.mx - 0.5 * g0 * e.mx * e.mx - 0.5 * g3,  # a
                    g1 * e.my + g2 * e.mx - g0 * e.mx * e.my - g5,  # b
                    g2 * e.my - 0.5 * g0 * e.my * e.my - 0.5 * g4,  # c
                    # d (log o) / d o = 1 / o; padding entries have g_power = 0, so g0 = 0
                    g0 / e.opacity.clamp_min(ALPHA_MIN),  # opacity
                ],
                dim=0,
            )
            g_geometry.index_add_(1, flat, g_geo.view(6, -1))
            g_values_table.index_add_(0, flat, torch.bmm(weight, g_values).view(flat.numel(), -1))  # depth, features
            # colour, depth and T_out of this round are all proportional to t_in
            # (a done pixel has total = 0 and keeps its gradient)
            g_tin = torch.div(total, t_in).addcmul_(g_out, done_in)
            g_trans.index_copy_(0, tiles, g_tin)
        return torch.cat([g_geometry.t(), g_values_table], dim=1), None


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
