"""Triton kernels of the fused tile blending (forward and backward), left undecorated.

:mod:`gaussrender.render._triton` wraps these functions with ``triton.jit`` (CUDA) or with
Triton's interpreter (CPU tensors, ``TRITON_INTERPRET=1``) on demand, so one process can hold
both kinds and importing this module never decides the mode for the rest of the process.

Layout shared by both kernels:

* tiles of 16x16 pixels (``TILE``), numbered ``(view * tiles_y + row) * tiles_x + col``
  exactly as :func:`gaussrender.render._project.bin_splats` numbers them; a program handles
  a band of ``ROWS`` rows of one tile (program axis ``band``), so several programs may walk
  the same tile list: fewer pixels per program means fewer registers per thread;
* a band's pixels are a flat block of ``ROWS * TILE`` lanes; pixel (r, c) samples
  (c + 0.5, r + 0.5);
* a tile's depth-sorted (Gaussian, tile) pairs are walked in batches of ``BATCH`` entries, so
  every blending quantity is a ``[pixels, BATCH]`` block; the strict front-to-back order
  inside a batch is recovered with cumulative products along the batch axis;
* every tile-list entry names one row of the packed splats (:class:`Splats`): the kernels read
  that row of ``means2d [Mv, 2]``, ``conics [Mv, 3]``, ``depths``, ``opacities [Mv]`` and
  ``features [Mv, C]`` (row-major); images are ``[V, H, W, C]``; channels are processed in
  blocks of ``CHANNEL_BLOCK`` (a power of two >= 16 so that ``tl.dot`` applies); the weighted
  sums over a batch are ``tl.dot`` products in IEEE precision (no TF32: the contract is exact
  float32 blending).

All arithmetic runs in the element type of ``means2d_ptr`` (float32 or float64).

Both kernels locate their pixels with :func:`band_pixels` and evaluate a batch of entries with
:func:`batch_entries`, device functions that :mod:`gaussrender.render._triton` wraps in the
kernels' mode too (they are listed in ``DEVICE_FUNCTIONS``). Both are inlined by Triton, so
the kernels compute exactly what they computed with the code written out.
"""

from __future__ import annotations

import triton.language as tl

__all__ = ["blend_forward_kernel", "blend_backward_kernel", "band_pixels", "batch_entries", "DEVICE_FUNCTIONS"]

#: the device functions the kernels call, by name: wrapped for the kernels' mode
DEVICE_FUNCTIONS = ("band_pixels", "batch_entries")


def band_pixels(
    tile,
    band,
    width,
    height,
    tiles_x,
    tiles_per_view,
    DTYPE: tl.constexpr,
    TILE: tl.constexpr,
    ROWS: tl.constexpr,
):
    """The ``ROWS * TILE`` pixels of band ``band`` of tile ``tile`` (lane ``l``: row
    ``l // TILE``, column ``l % TILE`` of the band).

    Returns ``(inside, px, py, pix)``: whether the pixel lies in the image, its sample point
    ``(col + 0.5, row + 0.5)`` in ``DTYPE``, and its int64 flat index into ``[V, H, W]``.
    """
    view = tile // tiles_per_view
    tile_in_view = tile % tiles_per_view
    lane = tl.arange(0, ROWS * TILE)
    row = (tile_in_view // tiles_x) * TILE + band * ROWS + lane // TILE
    col = (tile_in_view % tiles_x) * TILE + lane % TILE
    inside = (row < height) & (col < width)
    px = col.to(DTYPE) + 0.5
    py = row.to(DTYPE) + 0.5
    pix = (view.to(tl.int64) * height + row) * width + col
    return inside, px, py, pix


def batch_entries(
    means2d_ptr,
    conics_ptr,
    depths_ptr,
    opacities_ptr,
    pair_row_ptr,
    pos,
    present,
    px,
    py,
):
    """Load the tile-list entries at ``pos`` (``[BATCH]``, where ``present``) and evaluate
    their Gaussians at the pixels ``(px, py)`` (``[P]``).

    Returns ``(row, ca, cb, cc, z, op, dx, dy, power)``: the entries' row of the packed
    splats, conic, depth and opacity (``[BATCH]``, 0 where absent), the
    offsets ``dx, dy`` of each pixel from each mean and the Gaussian exponent ``power``
    (``[P, BATCH]``).
    """
    row = tl.load(pair_row_ptr + pos, mask=present, other=0)
    mx = tl.load(means2d_ptr + row * 2, mask=present, other=0.0)
    my = tl.load(means2d_ptr + row * 2 + 1, mask=present, other=0.0)
    ca = tl.load(conics_ptr + row * 3, mask=present, other=0.0)
    cb = tl.load(conics_ptr + row * 3 + 1, mask=present, other=0.0)
    cc = tl.load(conics_ptr + row * 3 + 2, mask=present, other=0.0)
    z = tl.load(depths_ptr + row, mask=present, other=0.0)
    op = tl.load(opacities_ptr + row, mask=present, other=0.0)
    dx = px[:, None] - mx[None, :]  # [P, B]
    dy = py[:, None] - my[None, :]
    power = -0.5 * (ca[None, :] * dx * dx + cc[None, :] * dy * dy) - cb[None, :] * dx * dy
    return row, ca, cb, cc, z, op, dx, dy, power


def blend_forward_kernel(
    means2d_ptr,  # [Mv, 2] (u, v) pixels
    conics_ptr,  # [Mv, 3] (a, b, c)
    depths_ptr,  # [Mv] camera z, metres
    opacities_ptr,  # [Mv]
    features_ptr,  # [Mv, C]
    pair_row_ptr,  # [M] row of each tile-list entry
    tile_start_ptr,  # [num_tiles]
    tile_count_ptr,  # [num_tiles]
    out_color_ptr,  # [V, H, W, C] blended features (without background)
    out_depth_ptr,  # [V, H, W]
    out_trans_ptr,  # [V, H, W] final transmittance T
    out_last_ptr,  # [V, H, W] int32: 1 + tile-list position of the last blended entry
    num_channels,
    width,
    height,
    tiles_x,
    tiles_per_view,
    TILE: tl.constexpr,
    ROWS: tl.constexpr,
    BATCH: tl.constexpr,
    CHANNEL_BLOCK: tl.constexpr,
    ALPHA_MIN: tl.constexpr,
    ALPHA_MAX: tl.constexpr,
    T_MIN: tl.constexpr,
):
    """Grid ``(num_tiles, num_channel_blocks, TILE // ROWS)``: program (tile, block, band)
    blends one channel block of one band of rows.

    Every channel block re-derives the same transmittance (identical arithmetic, so identical
    bits); only block 0 stores depth, T and the last-entry count.
    """
    dtype = means2d_ptr.dtype.element_ty
    tile = tl.program_id(0)
    block = tl.program_id(1)
    band = tl.program_id(2)
    inside, px, py, pix = band_pixels(tile, band, width, height, tiles_x, tiles_per_view, dtype, TILE, ROWS)

    start = tl.load(tile_start_ptr + tile)
    count = tl.load(tile_count_ptr + tile)
    ch = block * CHANNEL_BLOCK + tl.arange(0, CHANNEL_BLOCK)
    ch_ok = ch < num_channels

    trans = tl.full([ROWS * TILE], 1.0, dtype)
    alive = inside  # pixels outside the image never need work
    last = tl.zeros([ROWS * TILE], dtype=tl.int32)
    depth = tl.zeros([ROWS * TILE], dtype=dtype)
    color = tl.zeros([ROWS * TILE, CHANNEL_BLOCK], dtype=dtype)

    b0 = 0
    n_alive = tl.sum(alive.to(tl.int32), axis=0)
    while (b0 < count) & (n_alive > 0):
        k = b0 + tl.arange(0, BATCH)
        present = k < count
        pos = start + k
        row, ca, cb, cc, z, op, dx, dy, power = batch_entries(
            means2d_ptr, conics_ptr, depths_ptr, opacities_ptr, pair_row_ptr, pos, present, px, py
        )
        # exp of a clamped power: skipped entries (power > 0) must not overflow to inf
        alpha = tl.minimum(op[None, :] * tl.exp(tl.minimum(power, 0.0)), ALPHA_MAX)
        keep = (power <= 0.0) & (alpha >= ALPHA_MIN) & present[None, :] & alive[:, None]
        one_minus = tl.where(keep, 1.0 - alpha, 1.0)
        through = tl.cumprod(one_minus, axis=1)  # T factor after each entry, inclusive
        t_after = trans[:, None] * through
        # T only decreases, so a pixel's blended entries are the kept ones before its first
        # entry that would take T below T_MIN
        stop = keep & (t_after < T_MIN)
        included = keep & (tl.cumsum(stop.to(tl.int32), axis=1) == 0)
        weight = tl.where(included, alpha * (t_after / one_minus), 0.0)

        depth += tl.sum(weight * z[None, :], axis=1)
        feat = tl.load(
            features_ptr + row.to(tl.int64)[:, None] * num_channels + ch[None, :],
            mask=present[:, None] & ch_ok[None, :],
            other=0.0,
        )
        color += tl.dot(weight, feat, input_precision="ieee")
        last = tl.maximum(last, tl.max(tl.where(included, k[None, :] + 1, 0), axis=1))
        trans = trans * tl.min(tl.where(included, through, 1.0), axis=1)
        alive = alive & (tl.max(stop.to(tl.int32), axis=1) == 0)
        b0 += BATCH
        n_alive = tl.sum(alive.to(tl.int32), axis=0)

    tl.store(
        out_color_ptr + pix[:, None] * num_channels + ch[None, :],
        color,
        mask=inside[:, None] & ch_ok[None, :],
    )
    if block == 0:
        tl.store(out_depth_ptr + pix, depth, mask=inside)
        tl.store(out_trans_ptr + pix, trans, mask=inside)
        tl.store(out_last_ptr + pix, last, mask=inside)


def blend_backward_kernel(
    means2d_ptr,
    conics_ptr,
    depths_ptr,
    opacities_ptr,
    features_ptr,
    pair_row_ptr,
    tile_start_ptr,
    trans_ptr,  # [V, H, W] final T from the forward pass
    last_ptr,  # [V, H, W] int32 from the forward pass
    grad_color_ptr,  # [V, H, W, C]
    grad_depth_ptr,  # [V, H, W]
    grad_trans_ptr,  # [V, H, W]
    grad_means2d_ptr,  # [Mv, 2] accumulated with atomics
    grad_conics_ptr,  # [Mv, 3]
    grad_depths_ptr,  # [Mv]
    grad_opacities_ptr,  # [Mv]
    grad_features_ptr,  # [Mv, C]
    num_channels,
    width,
    height,
    tiles_x,
    tiles_per_view,
    TILE: tl.constexpr,
    ROWS: tl.constexpr,
    BATCH: tl.constexpr,
    CHANNEL_BLOCK: tl.constexpr,
    NUM_CHANNEL_BLOCKS: tl.constexpr,
    ALPHA_MIN: tl.constexpr,
    ALPHA_MAX: tl.constexpr,
):
    """Grid ``(num_tiles, TILE // ROWS)``: re-walk each tile's list back to front (3DGS style).

    With ``w_i = α_i T_i`` and ``g_i = ∂L/∂C · f_i + ∂L/∂D · z_i`` per pixel,
    ``∂L/∂α_i = T_i g_i - S_i / (1 - α_i)`` where ``S_i = Σ_{j>i} w_j g_j + ∂L/∂T_N · T_N``
    is accumulated from the back; ``T_i`` is recovered from the final T by division.
    A pixel's blended entries are exactly the kept ones before its ``last`` count.
    """
    dtype = means2d_ptr.dtype.element_ty
    tile = tl.program_id(0)
    band = tl.program_id(1)
    inside, px, py, pix = band_pixels(tile, band, width, height, tiles_x, tiles_per_view, dtype, TILE, ROWS)

    start = tl.load(tile_start_ptr + tile)
    t_cur = tl.load(trans_ptr + pix, mask=inside, other=1.0)
    last = tl.load(last_ptr + pix, mask=inside, other=0)
    g_depth = tl.load(grad_depth_ptr + pix, mask=inside, other=0.0)
    g_trans = tl.load(grad_trans_ptr + pix, mask=inside, other=0.0)
    suffix = g_trans * t_cur  # S of the entry after the last one: only the T_N term

    end = tl.max(last, axis=0)
    while end > 0:
        # column 0 is the deepest entry of the batch: cumulative ops run back to front
        k = end - 1 - tl.arange(0, BATCH)
        present = k >= 0
        pos = start + k
        row, ca, cb, cc, z, op, dx, dy, power = batch_entries(
            means2d_ptr, conics_ptr, depths_ptr, opacities_ptr, pair_row_ptr, pos, present, px, py
        )
        gauss = tl.exp(tl.minimum(power, 0.0))
        raw = op[None, :] * gauss
        alpha = tl.minimum(raw, ALPHA_MAX)
        included = (power <= 0.0) & (alpha >= ALPHA_MIN) & present[None, :] & (k[None, :] < last[:, None])
        one_minus = tl.where(included, 1.0 - alpha, 1.0)
        through = tl.cumprod(one_minus, axis=1)  # product from this entry to the batch's back
        t_before = t_cur[:, None] / through
        weight = tl.where(included, alpha * t_before, 0.0)

        g = g_depth[:, None] * z[None, :]
        row64 = row.to(tl.int64)
        for cblk in tl.static_range(NUM_CHANNEL_BLOCKS):
            ch = cblk * CHANNEL_BLOCK + tl.arange(0, CHANNEL_BLOCK)
            ch_ok = ch < num_channels
            g_color = tl.load(
                grad_color_ptr + pix[:, None] * num_channels + ch[None, :],
                mask=inside[:, None] & ch_ok[None, :],
                other=0.0,
            )  # [P, CB]
            feat_t = tl.load(
                features_ptr + row64[None, :] * num_channels + ch[:, None],
                mask=present[None, :] & ch_ok[:, None],
                other=0.0,
            )  # [CB, B]
            g += tl.dot(g_color, feat_t, input_precision="ieee")
            g_feat = tl.dot(tl.trans(weight), g_color, input_precision="ieee")  # [B, CB]
            tl.atomic_add(
                grad_features_ptr + row64[:, None] * num_channels + ch[None, :],
                g_feat,
                mask=present[:, None] & ch_ok[None, :],
            )

        wg = weight * g
        s = suffix[:, None] + tl.cumsum(wg, axis=1) - wg  # S_i: entries behind i only
        d_alpha = tl.where(included, t_before * g - s / one_minus, 0.0)
        # alpha = min(ALPHA_MAX, raw) with a straight-through clamp (3DGS rasteriser, the
        # GaussRender release): d alpha / d raw = 1 even where raw > ALPHA_MAX
        d_raw = d_alpha
        d_power = d_raw * raw

        g_mx = tl.sum(d_power * (ca[None, :] * dx + cb[None, :] * dy), axis=0)
        g_my = tl.sum(d_power * (cb[None, :] * dx + cc[None, :] * dy), axis=0)
        g_ca = tl.sum(-0.5 * d_power * dx * dx, axis=0)
        g_cb = tl.sum(-d_power * dx * dy, axis=0)
        g_cc = tl.sum(-0.5 * d_power * dy * dy, axis=0)
        g_z = tl.sum(weight * g_depth[:, None], axis=0)
        g_op = tl.sum(d_raw * gauss, axis=0)
        tl.atomic_add(grad_means2d_ptr + row * 2, g_mx, mask=present)
        tl.atomic_add(grad_means2d_ptr + row * 2 + 1, g_my, mask=present)
        tl.atomic_add(grad_conics_ptr + row * 3, g_ca, mask=present)
        tl.atomic_add(grad_conics_ptr + row * 3 + 1, g_cb, mask=present)
        tl.atomic_add(grad_conics_ptr + row * 3 + 2, g_cc, mask=present)
        tl.atomic_add(grad_depths_ptr + row, g_z, mask=present)
        tl.atomic_add(grad_opacities_ptr + row, g_op, mask=present)

        suffix = suffix + tl.sum(wg, axis=1)
        t_cur = t_cur / tl.min(through, axis=1)
        end -= BATCH
