"""The ``triton`` backend: fused tile blending in two Triton kernels (CUDA, or Triton's CPU
interpreter with ``TRITON_INTERPRET=1``).

Projection, packing and tile binning are the shared PyTorch code (:func:`splat`,
:func:`bin_splats`), so gradients of the 3D means flow through the projection by autograd and
one call can blend a whole batch (each sample in its own cameras).
Only the per-pixel blending is fused: a :class:`torch.autograd.Function` whose forward kernel
walks each 16x16 tile's depth-sorted list front to back, storing per pixel only the final
transmittance and how many list entries it used, and whose backward kernel walks the same
list back to front and scatters gradients of the 2D means, conics, depths, opacities and
features with atomics. Nothing of size Gaussians x pixels is ever stored.

Triton is imported lazily: importing :mod:`gaussrender` never imports it.
"""

from __future__ import annotations

import functools
import math
import os
import types
from dataclasses import dataclass
from typing import Any

import torch

from ..geometry.cameras import Cameras
from ._project import (
    ALPHA_MAX,
    ALPHA_MIN,
    COL_A,
    COL_C,
    COL_DEPTH,
    COL_OPACITY,
    COL_U,
    COL_V,
    FEATURE_COLUMN,
    T_MIN,
    GaussianSet,
    Splats,
    TileBins,
    bin_splats,
    splat,
)
from .result import RenderResult

__all__ = ["render_triton", "rasterize_triton", "TritonConfig"]

TILE = 16


@dataclass(frozen=True)
class TritonConfig:
    """Launch parameters of the blending kernels (powers of two; ``>= 16`` for ``tl.dot``).

    They change speed, never results (beyond float rounding). The defaults were chosen from
    ptxas resource reports of sm_90 builds (with up to 32 channels, 16 bytes of register
    spill per thread at most, against about 1 KB for whole-tile programs), not from GPU
    timings.

    Attributes:
        rows: tile rows per program (a divisor of 16; 16 = one program per tile); fewer
            pixels per program lower the register pressure.
        forward_batch: list entries blended per step of the forward kernel.
        backward_batch: list entries per step of the backward kernel (it keeps more
            ``[pixels, batch]`` blocks alive, hence a smaller default).
        max_channel_block: widest channel block; more channels loop over blocks.
        num_warps: warps per program (one program per ``rows`` x 16 pixels).
    """

    rows: int = 8
    forward_batch: int = 32
    backward_batch: int = 16
    max_channel_block: int = 32
    num_warps: int = 8

    def __post_init__(self) -> None:
        if self.rows not in (1, 2, 4, 8, 16):
            raise ValueError(f"rows must divide the 16-pixel tile (1, 2, 4, 8 or 16), got {self.rows}")
        for name in ("forward_batch", "backward_batch", "max_channel_block"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {value}")
        if self.num_warps < 1 or self.num_warps & (self.num_warps - 1):
            raise ValueError(f"num_warps must be a power of two >= 1, got {self.num_warps}")

    def channel_block(self, num_channels: int) -> int:
        """Power-of-two block (16 to ``max_channel_block``) holding up to all channels."""
        block = 16
        while block < num_channels and block < self.max_channel_block:
            block *= 2
        return block


def interpreter_requested() -> bool:
    """True when ``TRITON_INTERPRET=1``: kernels then run in Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_interprets() -> bool:
    """Whether this process's Triton runs kernels in its interpreter.

    Triton fixes the mode of its own library functions (``tl.sum``, ``tl.cumprod``, ...) when
    it is first imported, from ``TRITON_INTERPRET`` at that moment; our kernels must follow
    the same mode.
    """
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.sum, InterpretedFunction)


@dataclass(frozen=True)
class _Kernels:
    forward: Any
    backward: Any


@functools.lru_cache(maxsize=2)
def _kernels(interpret: bool) -> _Kernels:
    """Wrap the kernel functions for Triton's mode (compiled or interpreted).

    The wrapping is explicit rather than ``@triton.jit`` at import so that importing the
    kernel module never depends on the environment of that moment. A kernel finds the device
    functions it calls (``_triton_kernels.DEVICE_FUNCTIONS``) in its globals, and they must be
    wrapped in its mode: each mode binds its kernels to its own copy of the module's globals
    holding its own wrappers, so both modes can live in one process.
    """
    from . import _triton_kernels as k

    if interpret:
        from triton.runtime.interpreter import InterpretedFunction

        wrap = InterpretedFunction
    else:
        from triton.runtime.jit import JITFunction

        wrap = JITFunction
    namespace = dict(vars(k))

    def bind(fn: Any) -> Any:
        return wrap(_with_globals(fn, namespace))

    for name in k.DEVICE_FUNCTIONS:
        namespace[name] = bind(getattr(k, name))
    return _Kernels(forward=bind(k.blend_forward_kernel), backward=bind(k.blend_backward_kernel))


def _with_globals(fn: Any, namespace: dict[str, Any]) -> Any:
    """A copy of the plain function ``fn`` that resolves global names in ``namespace``
    (same code, hence same source for Triton, signature and annotations)."""
    copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__annotations__ = dict(fn.__annotations__)
    copy.__qualname__ = fn.__qualname__
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    return copy


def _nonempty(t: torch.Tensor) -> torch.Tensor:
    """Kernels take a pointer even where every access is masked off; give them a real one."""
    return t if t.numel() else torch.zeros(1, dtype=t.dtype, device=t.device)


@dataclass(frozen=True)
class _Geometry:
    num_views: int
    width: int
    height: int
    tiles_x: int
    tiles_y: int

    @property
    def num_tiles(self) -> int:
        return self.num_views * self.tiles_x * self.tiles_y


class _Blend(torch.autograd.Function):
    """Blend binned screen-space Gaussians; returns features (no background), depth, final T."""

    @staticmethod
    def forward(
        ctx: Any,
        means2d: torch.Tensor,  # [Mv, 2] (rows of the packed splats)
        conics: torch.Tensor,  # [Mv, 3]
        depths: torch.Tensor,  # [Mv]
        opacities: torch.Tensor,  # [Mv]
        features: torch.Tensor,  # [Mv, C]
        bins: TileBins,
        geo: _Geometry,
        config: TritonConfig,
        interpret: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kernels = _kernels(interpret)
        device, dtype = means2d.device, means2d.dtype
        c = features.shape[1]
        shape = (geo.num_views, geo.height, geo.width)
        color = torch.zeros(*shape, c, dtype=dtype, device=device)
        depth = torch.zeros(shape, dtype=dtype, device=device)
        trans = torch.ones(shape, dtype=dtype, device=device)
        last = torch.zeros(shape, dtype=torch.int32, device=device)
        block = config.channel_block(c)
        num_blocks = max(1, math.ceil(c / block))
        tensors = (means2d, conics, depths, opacities, features)
        if bins.pair_row.numel() and geo.num_tiles:
            kernels.forward[(geo.num_tiles, num_blocks, TILE // config.rows)](
                *(_nonempty(t) for t in tensors),
                bins.pair_row,
                bins.tile_start,
                bins.tile_count,
                _nonempty(color),
                depth,
                trans,
                last,
                c,
                geo.width,
                geo.height,
                geo.tiles_x,
                geo.tiles_x * geo.tiles_y,
                TILE=TILE,
                ROWS=config.rows,
                BATCH=config.forward_batch,
                CHANNEL_BLOCK=block,
                ALPHA_MIN=ALPHA_MIN,
                ALPHA_MAX=ALPHA_MAX,
                T_MIN=T_MIN,
                num_warps=config.num_warps,
            )
        ctx.save_for_backward(*tensors, bins.pair_row, bins.tile_start, trans, last)
        ctx.geo, ctx.config, ctx.interpret = geo, config, interpret
        return color, depth, trans

    @staticmethod
    def backward(
        ctx: Any,
        grad_color: torch.Tensor | None,
        grad_depth: torch.Tensor | None,
        grad_trans: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        means2d, conics, depths, opacities, features, pair_row, tile_start, trans, last = ctx.saved_tensors
        geo: _Geometry = ctx.geo
        config: TritonConfig = ctx.config
        grads = [torch.zeros_like(t) for t in (means2d, conics, depths, opacities, features)]
        if pair_row.numel() and geo.num_tiles:
            c = features.shape[1]
            zeros = torch.zeros_like(trans)
            grad_color = zeros[..., None].expand(-1, -1, -1, c) if grad_color is None else grad_color
            grad_depth = zeros if grad_depth is None else grad_depth
            grad_trans = zeros if grad_trans is None else grad_trans
            block = config.channel_block(c)
            _kernels(ctx.interpret).backward[(geo.num_tiles, TILE // config.rows)](
                *(_nonempty(t) for t in (means2d, conics, depths, opacities, features)),
                pair_row,
                tile_start,
                trans,
                last,
                _nonempty(grad_color.contiguous()),
                grad_depth.contiguous(),
                grad_trans.contiguous(),
                *(_nonempty(g) for g in grads),
                c,
                geo.width,
                geo.height,
                geo.tiles_x,
                geo.tiles_x * geo.tiles_y,
                TILE=TILE,
                ROWS=config.rows,
                BATCH=config.backward_batch,
                CHANNEL_BLOCK=block,
                NUM_CHANNEL_BLOCKS=max(1, math.ceil(c / block)),
                ALPHA_MIN=ALPHA_MIN,
                ALPHA_MAX=ALPHA_MAX,
                num_warps=config.num_warps,
            )
        return (*grads, None, None, None, None)


def _check_device(device: torch.device) -> bool:
    """Whether the kernels run interpreted; refuses CPU tensors without the interpreter."""
    if device.type != "cuda" and not interpreter_requested():
        raise ValueError(
            f"backend='triton' needs CUDA tensors (got tensors on {device}); set "
            "TRITON_INTERPRET=1 before Python imports triton to run the kernels in Triton's "
            "CPU interpreter (slow, for testing), or use backend='torch'"
        )
    interpret = triton_interprets()
    if device.type != "cuda" and not interpret:
        raise ValueError(
            "TRITON_INTERPRET=1 was set after triton had been imported in compiled mode; "
            "Triton reads it once, at its first import: set it before importing triton (or "
            "torch._inductor), or use backend='torch'"
        )
    return interpret


def rasterize_triton(splats: Splats, background: torch.Tensor, config: TritonConfig | None = None) -> RenderResult:
    """Blend packed splats (:func:`gaussrender.render._project.splat`) into their views with
    the fused kernels; float32 or float64 (the splats' dtype).

    Raises:
        ValueError: the splats are not on a CUDA device and ``TRITON_INTERPRET`` is not
            ``"1"`` (or was set only after triton had been imported).
    """
    table = splats.table
    interpret = _check_device(table.device)
    config = TritonConfig() if config is None else config
    bins = bin_splats(splats, TILE)
    geo = _Geometry(splats.num_views, splats.width, splats.height, bins.tiles_x, bins.tiles_y)
    color, depth, trans = _Blend.apply(
        table[:, COL_U : COL_V + 1].contiguous(),
        table[:, COL_A : COL_C + 1].contiguous(),
        table[:, COL_DEPTH].contiguous(),
        table[:, COL_OPACITY].contiguous(),
        table[:, FEATURE_COLUMN:].contiguous(),
        bins,
        geo,
        config,
        interpret,
    )
    color = color + trans[..., None] * background
    return RenderResult(features=color, depth=depth, alpha=1.0 - trans)


def render_triton(
    means: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    scales: torch.Tensor,
    cameras: Cameras,
    background: torch.Tensor,
    config: TritonConfig | None = None,
    cull: str = "footprint",
) -> RenderResult:
    """Render one set of Gaussians into ``cameras`` with the fused Triton backend; see
    :func:`gaussrender.render` for the contract.

    Inputs are validated by :func:`gaussrender.render`. float32 and float64 run in their own
    precision; float16/bfloat16 are blended in float32 and the results cast back.

    Raises:
        ValueError: tensors are not on a CUDA device and ``TRITON_INTERPRET`` is not ``"1"``
            (or was set only after triton had been imported).
    """
    out_dtype = means.dtype
    dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    means, opacities, features, scales, background = (
        t.to(dtype) for t in (means, opacities, features, scales, background)
    )
    splats = splat([GaussianSet(means, opacities, features, scales, cameras)], cull)
    out = rasterize_triton(splats, background, config)
    return RenderResult(out.features.to(out_dtype), out.depth.to(out_dtype), out.alpha.to(out_dtype))
