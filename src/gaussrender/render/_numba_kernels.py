"""Numba kernels of the ``numba`` backend: tile binning, fused blending forward and backward, and
the fixed-order reduction of the backward pass's per-entry gradients.

Layout shared by the kernels (see :mod:`gaussrender.render._numba` for the autograd side):

* ``table [Mv, 7 + C]``: the packed splats of :func:`gaussrender.render._project.splat` (u, v,
  conic a, b, c, opacity, depth, features), float32 or float64, C-contiguous. Every kernel
  computes in the table's dtype (no float64 promotion of float32 work): the constants the
  arithmetic needs come in ``consts`` (:data:`CONST_NAMES`) in that dtype, and pixel centres
  in ``centres`` (``i + 0.5``);
* tiles of ``tile x tile`` pixels, numbered ``(view * tiles_y + row) * tiles_x + col`` as in
  :func:`gaussrender.render._project.bin_splats`; each tile's list holds the rows whose
  footprint box touches it, in table order, hence in depth order (the rows of one view are
  depth-sorted in the table);
* images ``[V, H, W(, C)]``, C-contiguous.

A kernel handles the tiles ``order[i0:i1]`` (or the rows ``r0:r1``): the Python side runs
several such ranges in threads (every kernel releases the GIL). No two ranges write the same
memory, and every sum is taken in an order fixed by the data alone, so the results do not
depend on the number of threads or on which thread ran which range.

The two blending kernels evaluate a (list entry, pixel) pair with the same function
(:func:`_evaluate`), so the backward pass re-derives exactly the forward pass's decisions.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "bin_rows",
    "blend_forward",
    "blend_backward",
    "reduce_rows",
    "background_grad",
    "CONST_NAMES",
    "NUM_GEOMETRY",
]

#: ``consts`` holds, in the table's dtype: the alpha cut-off 1/255, the alpha clamp 0.99, the
#: transmittance stop 1e-4, 1, 1/2, 0 and the margin of the exponent pre-test (see
#: :func:`_evaluate`).
CONST_NAMES = ("alpha_min", "alpha_max", "t_min", "one", "half", "zero", "margin")
#: columns of a table row before the features: u, v, a, b, c, opacity, depth
NUM_GEOMETRY = 7


def _jit(fn):
    """``numba.njit`` with the GIL released and the on-disk cache, where numba finds a
    writable cache directory (next to this file, ``NUMBA_CACHE_DIR``, or the user's cache
    folder); without one the kernels are compiled in every process instead."""
    options = {"nogil": True, "error_model": "numpy"}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available": read-only install
        return numba.njit(**options)(fn)


@_jit
def bin_rows(uv, ext, view, width, height, tile, tiles_x, tiles_y, num_views):
    """Tile lists of every row's footprint box (the box of
    :func:`gaussrender.render._project.bin_splats`, clamped to the image).

    Returns ``(box, row_first, tile_start, tile_count, pair_row, pair_entry)``: ``box [Mv, 4]``
    int32 the row's pixel box (x0, x1, y0, y1 inclusive; x0 > x1 when it holds no pixel),
    ``row_first [Mv + 1]`` the first (row, tile) entry of each row (entries numbered row by
    row, tile by tile), ``tile_start``/``tile_count [V * tiles_y * tiles_x]``, and per tile-list
    position the row (``pair_row``, int32) and its entry number (``pair_entry``). A counting
    sort: rows are appended to their tiles in table order, so each list keeps the depth order.
    """
    n = uv.shape[0]
    box = np.empty((n, 4), np.int32)
    row_first = np.empty(n + 1, np.int64)
    tiles_per_view = tiles_x * tiles_y
    tile_count = np.zeros(num_views * tiles_per_view, np.int64)
    total = 0
    for r in range(n):
        # in float64 whatever the table's dtype: the box only has to hold every pixel the
        # exact per-pixel test accepts, and its extents carry a rounding margin
        u = np.float64(uv[r, 0])
        v = np.float64(uv[r, 1])
        eu = np.float64(ext[r, 0])
        ev = np.float64(ext[r, 1])
        fx0 = max(np.ceil(u - eu - 0.5), 0.0)
        fx1 = min(np.floor(u + eu - 0.5), width - 1.0)
        fy0 = max(np.ceil(v - ev - 0.5), 0.0)
        fy1 = min(np.floor(v + ev - 0.5), height - 1.0)
        row_first[r] = total
        if not (fx0 <= fx1 and fy0 <= fy1):
            box[r, 0] = 1
            box[r, 1] = 0
            box[r, 2] = 1
            box[r, 3] = 0
            continue
        x0, x1, y0, y1 = int(fx0), int(fx1), int(fy0), int(fy1)
        box[r, 0] = x0
        box[r, 1] = x1
        box[r, 2] = y0
        box[r, 3] = y1
        base = view[r] * tiles_per_view
        for ty in range(y0 // tile, y1 // tile + 1):
            for tx in range(x0 // tile, x1 // tile + 1):
                tile_count[base + ty * tiles_x + tx] += 1
        total += (y1 // tile - y0 // tile + 1) * (x1 // tile - x0 // tile + 1)
    row_first[n] = total
    tile_start = np.empty_like(tile_count)
    cursor = np.empty_like(tile_count)
    acc = 0
    for t in range(tile_count.shape[0]):
        tile_start[t] = acc
        cursor[t] = acc
        acc += tile_count[t]
    pair_row = np.empty(total, np.int32)
    pair_entry = np.empty(total, np.int64)
    for r in range(n):
        if box[r, 0] > box[r, 1]:
            continue
        base = view[r] * tiles_per_view
        e = row_first[r]
        for ty in range(box[r, 2] // tile, box[r, 3] // tile + 1):
            for tx in range(box[r, 0] // tile, box[r, 1] // tile + 1):
                t = base + ty * tiles_x + tx
                pos = cursor[t]
                cursor[t] = pos + 1
                pair_row[pos] = r
                pair_entry[pos] = e
                e += 1
    return box, row_first, tile_start, tile_count, pair_row, pair_entry


@numba.njit(inline="always")
def _evaluate(a, b, c, dx, dy, log_cut, half, zero):
    """The exponent ``power = -½ (a dx² + c dy²) - b dx dy`` of one (entry, pixel) pair, and
    whether the pair is certainly skipped: ``power > 0`` (the contract's skip, reachable only
    by rounding) or ``power < log_cut``, where ``log_cut`` lies a margin below
    ``log(1/255 / opacity)``, so ``opacity · exp(power) < 1/255`` without evaluating ``exp``
    (the caller still tests the exact alpha of the pairs that pass)."""
    power = -half * (a * dx * dx + c * dy * dy) - b * dx * dy
    return power, power > zero or power < log_cut


@_jit
def blend_forward(
    table, background, box, pair_row, tile_start, tile_count, order, i0, i1, centres, consts, tile, tiles_x,
    tiles_y, color, depth, trans, last,
):  # fmt: skip
    """Blend the tiles ``order[i0:i1]`` front to back (docs/method.md#rendering) into ``color [V, H, W, C]``
    (``+ T · background``), ``depth``, ``trans`` (final T) and ``last`` (int32: 1 + the list
    position of the pixel's last blended entry, 0 if none) ``[V, H, W]``; every pixel of
    those tiles is written.

    Per tile, the list is walked once; an entry touches only the pixels of its footprint box
    inside the tile that are still blending; a pixel stops at the entry that would take its T
    below 1e-4, and the walk ends when every pixel of the tile has stopped.
    """
    alpha_min, alpha_max, t_min = consts[0], consts[1], consts[2]
    one, half, zero, margin = consts[3], consts[4], consts[5], consts[6]
    channels = table.shape[1] - NUM_GEOMETRY
    height, width = trans.shape[1], trans.shape[2]
    npix = tile * tile
    tiles_per_view = tiles_x * tiles_y
    t_pix = np.empty(npix, table.dtype)
    alive = np.empty(npix, np.bool_)
    acc = np.empty((npix, channels + 1), table.dtype)  # depth, then the features
    count = np.empty(npix, np.int32)
    for i in range(i0, i1):
        t = order[i]
        view = t // tiles_per_view
        ox = (t % tiles_per_view % tiles_x) * tile
        oy = (t % tiles_per_view // tiles_x) * tile
        nx = min(tile, width - ox)
        ny = min(tile, height - oy)
        for p in range(npix):
            t_pix[p] = one
            alive[p] = True
            count[p] = 0
            for k in range(channels + 1):
                acc[p, k] = zero
        n_alive = nx * ny
        start = tile_start[t]
        for j in range(tile_count[t]):
            r = pair_row[start + j]
            x0 = max(box[r, 0], ox)
            x1 = min(box[r, 1], ox + nx - 1)
            y0 = max(box[r, 2], oy)
            y1 = min(box[r, 3], oy + ny - 1)
            if x0 > x1 or y0 > y1:
                continue
            u, v, a, b, c = table[r, 0], table[r, 1], table[r, 2], table[r, 3], table[r, 4]
            o, z = table[r, 5], table[r, 6]
            feature = table[r, NUM_GEOMETRY:]
            log_cut = np.log(alpha_min / o) - margin
            for y in range(y0, y1 + 1):
                dy = centres[y] - v
                row = (y - oy) * tile - ox
                for x in range(x0, x1 + 1):
                    p = row + x
                    if not alive[p]:
                        continue
                    dx = centres[x] - u
                    power, skip = _evaluate(a, b, c, dx, dy, log_cut, half, zero)
                    if skip:
                        continue
                    alpha = min(alpha_max, o * np.exp(power))
                    if alpha < alpha_min:
                        continue
                    t_before = t_pix[p]
                    t_after = t_before * (one - alpha)
                    if t_after < t_min:
                        alive[p] = False
                        n_alive -= 1
                        continue
                    w = alpha * t_before
                    blended = acc[p]
                    blended[0] += w * z
                    for k in range(channels):
                        blended[k + 1] += w * feature[k]
                    t_pix[p] = t_after
                    count[p] = j + 1
            if n_alive == 0:
                break
        for py in range(ny):
            for px in range(nx):
                p = py * tile + px
                y, x = oy + py, ox + px
                depth[view, y, x] = acc[p, 0]
                out = color[view, y, x]
                t_end = t_pix[p]
                for k in range(channels):
                    out[k] = acc[p, k + 1] + t_end * background[k]
                trans[view, y, x] = t_end
                last[view, y, x] = count[p]


@_jit
def blend_backward(
    table, background, box, pair_row, pair_entry, tile_start, tile_count, order, i0, i1, centres, consts, tile,
    tiles_x, tiles_y, trans, last, grad_color, grad_depth, grad_trans, slots,
):  # fmt: skip
    """Gradients of the tiles ``order[i0:i1]``: each list is re-walked back to front (the 3DGS
    backward pass), and the gradient of every list entry w.r.t. its table row (u, v, a, b, c,
    opacity, depth, features; a sum over the entry's pixels in the tile, in row-major pixel
    order) is written to ``slots[pair_entry[position]]``, its own row; entries no pixel
    reached get zeros.

    With ``w_i = α_i T_i`` and ``g_i = ∂L/∂C · f_i + ∂L/∂D · z_i``,
    ``∂L/∂α_i = T_i g_i - S_i / (1 - α_i)``, ``S_i = Σ_{j>i} w_j g_j + ∂L/∂T_N · T_N``
    accumulated from the back (``∂L/∂T_N`` includes the background term ``∂L/∂C · background``);
    ``T_i`` is recovered from the final T by division. The 0.99
    clamp is straight-through (``∂α/∂(o G) = 1``), as the 3DGS rasteriser's backward pass.
    """
    alpha_min, alpha_max = consts[0], consts[1]
    one, half, zero, margin = consts[3], consts[4], consts[5], consts[6]
    channels = table.shape[1] - NUM_GEOMETRY
    cols = table.shape[1]
    height, width = trans.shape[1], trans.shape[2]
    npix = tile * tile
    tiles_per_view = tiles_x * tiles_y
    t_pix = np.empty(npix, table.dtype)
    suffix = np.empty(npix, table.dtype)
    count = np.empty(npix, np.int32)
    grad = np.empty(cols, table.dtype)
    for i in range(i0, i1):
        t = order[i]
        view = t // tiles_per_view
        ox = (t % tiles_per_view % tiles_x) * tile
        oy = (t % tiles_per_view // tiles_x) * tile
        nx = min(tile, width - ox)
        ny = min(tile, height - oy)
        end = 0
        for p in range(npix):
            t_pix[p] = one
            suffix[p] = zero
            count[p] = 0
        for py in range(ny):
            for px in range(nx):
                p = py * tile + px
                y, x = oy + py, ox + px
                t_pix[p] = trans[view, y, x]
                g_color = grad_color[view, y, x]
                g_t = grad_trans[view, y, x]
                for k in range(channels):
                    g_t += g_color[k] * background[k]
                suffix[p] = g_t * t_pix[p]
                count[p] = last[view, y, x]
                end = max(end, count[p])
        start = tile_start[t]
        for j in range(tile_count[t] - 1, -1, -1):
            e = pair_entry[start + j]
            for k in range(cols):
                grad[k] = zero
            r = pair_row[start + j]
            x0 = max(box[r, 0], ox)
            x1 = min(box[r, 1], ox + nx - 1)
            y0 = max(box[r, 2], oy)
            y1 = min(box[r, 3], oy + ny - 1)
            if j < end and x0 <= x1 and y0 <= y1:
                u, v, a, b, c = table[r, 0], table[r, 1], table[r, 2], table[r, 3], table[r, 4]
                o, z = table[r, 5], table[r, 6]
                feature = table[r, NUM_GEOMETRY:]
                grad_feature = grad[NUM_GEOMETRY:]
                log_cut = np.log(alpha_min / o) - margin
                for y in range(y0, y1 + 1):
                    dy = centres[y] - v
                    row = (y - oy) * tile - ox
                    for x in range(x0, x1 + 1):
                        p = row + x
                        if j >= count[p]:
                            continue
                        dx = centres[x] - u
                        power, skip = _evaluate(a, b, c, dx, dy, log_cut, half, zero)
                        if skip:
                            continue
                        gauss = np.exp(power)
                        raw = o * gauss
                        alpha = min(alpha_max, raw)
                        if alpha < alpha_min:
                            continue
                        one_minus = one - alpha
                        t_before = t_pix[p] / one_minus
                        w = alpha * t_before
                        g_d = grad_depth[view, y, x]
                        g_color = grad_color[view, y, x]
                        # g = ∂L/∂C · f + ∂L/∂D · z in four partial sums (a chain of
                        # dependent adds is latency-bound); the order is fixed by the code
                        g0, g1, g2, g3 = g_d * z, zero, zero, zero
                        k = 0
                        while k + 4 <= channels:
                            g0 += g_color[k] * feature[k]
                            g1 += g_color[k + 1] * feature[k + 1]
                            g2 += g_color[k + 2] * feature[k + 2]
                            g3 += g_color[k + 3] * feature[k + 3]
                            k += 4
                        while k < channels:
                            g0 += g_color[k] * feature[k]
                            k += 1
                        g = (g0 + g1) + (g2 + g3)
                        for k in range(channels):
                            grad_feature[k] += w * g_color[k]
                        grad[6] += w * g_d
                        d_alpha = t_before * g - suffix[p] / one_minus
                        suffix[p] += w * g
                        t_pix[p] = t_before
                        d_power = d_alpha * raw  # straight through the 0.99 clamp
                        grad[5] += d_alpha * gauss
                        # power = -½ (a dx² + c dy²) - b dx dy with dx = x - u, dy = y - v
                        grad[0] += d_power * (a * dx + b * dy)
                        grad[1] += d_power * (b * dx + c * dy)
                        grad[2] -= half * d_power * dx * dx
                        grad[3] -= d_power * dx * dy
                        grad[4] -= half * d_power * dy * dy
            for k in range(cols):
                slots[e, k] = grad[k]


@_jit
def reduce_rows(slots, row_first, r0, r1, out):
    """``out[r] = Σ slots[row_first[r]:row_first[r + 1]]`` for the rows ``r0:r1``, summed in entry
    order (tile by tile in the row's box), whatever the threads."""
    cols = out.shape[1]
    for r in range(r0, r1):
        for k in range(cols):
            out[r, k] = 0
        for e in range(row_first[r], row_first[r + 1]):
            for k in range(cols):
                out[r, k] += slots[e, k]


@_jit
def background_grad(trans, grad_color, r0, r1, out):
    """``out[i] = Σ_x trans[i, x] · grad_color[i, x]`` for the image rows ``i`` in ``r0:r1``
    (``trans [V H, W]``, ``grad_color [V H, W, C]``), summed along the row in order."""
    channels = out.shape[1]
    for i in range(r0, r1):
        row = out[i]
        for k in range(channels):
            row[k] = 0
        for x in range(trans.shape[1]):
            t = trans[i, x]
            g = grad_color[i, x]
            for k in range(channels):
                row[k] += t * g[k]
