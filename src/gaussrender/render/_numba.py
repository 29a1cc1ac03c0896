"""The ``numba`` backend: fused CPU tile blending compiled by numba (the CPU default).

Projection and packing are the shared PyTorch code (:func:`splat`), so gradients of the 3D
means flow through the projection by autograd and one call can blend a whole batch (each
sample in its own cameras). The rest runs in the kernels of :mod:`._numba_kernels`:

1. binning: a counting sort of every row's footprint box into 16x16-pixel tile lists, which
   keeps each list in depth order (no sort);
2. forward: per tile, per list entry, per pixel of the entry's box that is still blending:
   the contract's alpha, exact termination per pixel, and the walk stops when every pixel of
   the tile has; per pixel only the final T and the number of entries used are kept;
3. backward: each list re-walked back to front (the 3DGS algorithm), each entry's gradient
   written to its own slot, then summed per table row in a fixed order.

Nothing of size Gaussians x pixels is stored. The kernels run on ``torch.get_num_threads()``
threads (Python threads over ranges of tiles; numba releases the GIL), and their results are
bitwise the same whatever the thread count. The kernels are compiled on first use and cached
on disk where numba can write (``NUMBA_CACHE_DIR``, see :func:`._numba_kernels._jit`).

numba is imported lazily: importing :mod:`gaussrender` never imports it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ..geometry.cameras import Cameras
from ._project import ALPHA_MAX, ALPHA_MIN, COL_U, COL_V, T_MIN, GaussianSet, Splats, splat
from .result import RenderResult

__all__ = ["render_numba", "rasterize_numba", "numba_available", "TILE"]

TILE = 16
#: the exponent pre-test's margin (see ``_numba_kernels._evaluate``): far above the rounding
#: of a power in [-5.6, 0] (|log(1/255)| = 5.5), far below anything that matters for speed
_MARGIN = 1e-3
#: ranges of tiles (rows) handed to a thread at a time: about this many per thread
_CHUNKS_PER_THREAD = 16


@functools.cache
def numba_available() -> bool:
    """Whether numba imports (the backend's one dependency beyond torch and numpy)."""
    try:
        import numba  # noqa: F401
    except Exception:
        return False
    return True


def _kernels() -> Any:
    from . import _numba_kernels

    return _numba_kernels


def _consts(dtype: np.dtype) -> np.ndarray:
    return np.array([ALPHA_MIN, ALPHA_MAX, T_MIN, 1.0, 0.5, 0.0, _MARGIN], dtype=dtype)


def _run(kernel: Callable[[int, int], Any], size: int, threads: int) -> None:
    """``kernel(lo, hi)`` over ``[0, size)`` in ranges, on ``threads`` threads (the
    calling thread included), each taking the next range when done with its last."""
    if size <= 0:
        return
    threads = max(1, min(threads, size))
    if threads == 1:
        kernel(0, size)
        return
    step = max(1, -(-size // (threads * _CHUNKS_PER_THREAD)))
    ranges = [(lo, min(size, lo + step)) for lo in range(0, size, step)]
    lock = threading.Lock()
    position = [0]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:
                    i = position[0]
                    position[0] = i + 1
                if i >= len(ranges) or errors:
                    return
                kernel(*ranges[i])
        except BaseException as err:  # re-raised in the calling thread
            errors.append(err)

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(threads - 1)]
    for h in helpers:
        h.start()
    work()
    for h in helpers:
        h.join()
    if errors:
        raise errors[0]


@dataclass
class _Bins:
    """The tile lists (:func:`._numba_kernels.bin_rows`) and the image geometry."""

    box: np.ndarray
    row_first: np.ndarray
    tile_start: np.ndarray
    tile_count: np.ndarray
    pair_row: np.ndarray
    pair_entry: np.ndarray
    order: np.ndarray  # every tile, most entries first (the threads' load balance)
    busy: int  # tiles with at least one entry: order[:busy]
    num_views: int
    width: int
    height: int
    tiles_x: int
    tiles_y: int
    tile: int


def _bin(splats: Splats, tile: int) -> _Bins:
    k = _kernels()
    tiles_x, tiles_y = -(-splats.width // tile), -(-splats.height // tile)
    uv = splats.table[:, COL_U : COL_V + 1].detach().contiguous().numpy()
    ext = splats.extents.detach().to(splats.table.dtype).contiguous().numpy()
    view = splats.view.contiguous().numpy()
    box, row_first, tile_start, tile_count, pair_row, pair_entry = k.bin_rows(
        uv, ext, view, splats.width, splats.height, tile, tiles_x, tiles_y, splats.num_views
    )
    order = np.argsort(-tile_count, kind="stable")
    return _Bins(
        box, row_first, tile_start, tile_count, pair_row, pair_entry, order, int(np.count_nonzero(tile_count)),
        splats.num_views, splats.width, splats.height, tiles_x, tiles_y, tile,
    )  # fmt: skip


def _centres(bins: _Bins, dtype: np.dtype) -> np.ndarray:
    """Pixel centres ``i + 0.5`` for every pixel of every tile (edge tiles included)."""
    size = max(bins.tiles_x, bins.tiles_y) * bins.tile
    return np.arange(size, dtype=np.float64).astype(dtype) + dtype.type(0.5)


def _host(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous numpy view (or copy) of a CPU tensor, without autograd."""
    return t.detach().contiguous().numpy()


class _Blend(torch.autograd.Function):
    """Blend the packed table ``[Mv, 7 + C]`` over ``background [C]``; returns features
    ``[V, H, W, C]`` (background included), depth and final T ``[V, H, W]``."""

    @staticmethod
    def forward(
        ctx: Any, table: torch.Tensor, background: torch.Tensor, bins: _Bins
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = _kernels()
        tab = _host(table)
        dtype = tab.dtype
        bg = _host(background.to(table.dtype))
        channels = tab.shape[1] - k.NUM_GEOMETRY
        shape = (bins.num_views, bins.height, bins.width)
        # every pixel is written by the kernel (the tiles without entries too)
        color = np.empty((*shape, channels), dtype)
        depth = np.empty(shape, dtype)
        trans = np.empty(shape, dtype)
        last = np.empty(shape, np.int32)
        centres = _centres(bins, dtype)
        args = (tab, bg, bins.box, bins.pair_row, bins.tile_start, bins.tile_count, bins.order)
        tail = (centres, _consts(dtype), bins.tile, bins.tiles_x, bins.tiles_y, color, depth, trans, last)
        _run(lambda lo, hi: k.blend_forward(*args, lo, hi, *tail), len(bins.order), torch.get_num_threads())
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(table, background)
            ctx.bins, ctx.trans, ctx.last = bins, trans, last
        return torch.from_numpy(color), torch.from_numpy(depth), torch.from_numpy(trans)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_color: torch.Tensor | None, grad_depth: torch.Tensor | None, grad_trans: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        k = _kernels()
        table, background = ctx.saved_tensors
        bins: _Bins = ctx.bins
        tab = _host(table)
        bg = _host(background.to(table.dtype))
        dtype = tab.dtype
        channels = tab.shape[1] - k.NUM_GEOMETRY
        shape = (bins.num_views, bins.height, bins.width)

        def host(g: torch.Tensor | None, full: tuple[int, ...]) -> np.ndarray:
            return np.zeros(full, dtype) if g is None else _host(g.to(table.dtype))

        g_color = host(grad_color, (*shape, channels))
        g_depth = host(grad_depth, shape)
        g_trans = host(grad_trans, shape)
        threads = torch.get_num_threads()
        grad_table = grad_background = None
        if ctx.needs_input_grad[0]:
            slots = np.empty((bins.pair_row.shape[0], tab.shape[1]), dtype)
            args = (tab, bg, bins.box, bins.pair_row, bins.pair_entry, bins.tile_start, bins.tile_count, bins.order)
            tail = (
                _centres(bins, dtype), _consts(dtype), bins.tile, bins.tiles_x, bins.tiles_y,
                ctx.trans, ctx.last, g_color, g_depth, g_trans, slots,
            )  # fmt: skip
            # the tiles without entries have no slot
            _run(lambda lo, hi: k.blend_backward(*args, lo, hi, *tail), bins.busy, threads)
            grad = np.empty_like(tab)
            _run(lambda lo, hi: k.reduce_rows(slots, bins.row_first, lo, hi, grad), tab.shape[0], threads)
            grad_table = torch.from_numpy(grad)
        if ctx.needs_input_grad[1]:
            # Σ over pixels of T · ∂L/∂C: per image row, then over the rows (numpy's fixed order)
            rows = bins.num_views * bins.height
            partial = np.empty((rows, channels), dtype)
            t_rows = ctx.trans.reshape(rows, bins.width)
            g_rows = g_color.reshape(rows, bins.width, channels)
            _run(lambda lo, hi: k.background_grad(t_rows, g_rows, lo, hi, partial), rows, threads)
            grad_background = torch.from_numpy(partial.sum(axis=0)).to(background.dtype)
        return grad_table, grad_background, None


def rasterize_numba(splats: Splats, background: torch.Tensor, tile: int = TILE) -> RenderResult:
    """Blend packed splats (:func:`gaussrender.render._project.splat`) into their views with
    the numba kernels; float32 or float64 (the splats' dtype), CPU tensors.

    ``tile`` (the tile edge, pixels) changes speed, never the result.

    Raises:
        ValueError: the splats are not on the CPU.
    """
    table = splats.table
    if table.device.type != "cpu":
        raise ValueError(f"backend='numba' renders CPU tensors (got tensors on {table.device}); use backend='auto'")
    if table.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"backend='numba' blends float32 or float64 splats, got {table.dtype}")
    if tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    bins = _bin(splats, tile)
    color, depth, trans = _Blend.apply(table, background, bins)
    return RenderResult(features=color, depth=depth, alpha=1.0 - trans)


def render_numba(
    means: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    scales: torch.Tensor,
    cameras: Cameras,
    background: torch.Tensor,
    tile: int = TILE,
    cull: str = "footprint",
) -> RenderResult:
    """Render one set of Gaussians into ``cameras`` with the numba backend; see
    :func:`gaussrender.render` for the contract and :func:`rasterize_numba` for ``tile``."""
    splats = splat([GaussianSet(means, opacities, features, scales, cameras)], cull)
    return rasterize_numba(splats, background, tile)
