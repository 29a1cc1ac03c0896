"""Differentiable N-channel rendering of isotropic 3D Gaussians.

One function, :func:`render`, several backends with one contract (DESIGN §3):

* per view, Gaussians with camera depth ``z <= near`` are dropped (and, with
  ``cull="center"``, those whose centre does not project strictly inside the image); the
  rest are projected with the perspective (or orthographic) Jacobian ``J`` at the mean,
  ``Σ' = s² J Jᵀ + 0.3 I`` (pixels²), the perspective one's
  direction clamped as in the 3DGS rasteriser: ``x/z`` to ``±1.3 · W / (2 fx)``, ``y/z`` to
  ``±1.3 · H / (2 fy)`` (symmetric around the optical axis, whatever the principal point);
* pixel (row r, column c) samples (u, v) = (c + 0.5, r + 0.5);
* front to back by depth (ties keep the input order):
  ``α = min(0.99, o · exp(power))``, skipped where ``power > 0`` or ``α < 1/255`` (every
  pixel where ``α ≥ 1/255`` counts: no tile or radius cut-off), a pixel stops before a
  Gaussian that would bring its transmittance ``T`` below 1e-4,
  ``C += α T f``, ``D += α T z``, ``T *= 1 - α``; finally ``C += T · background``;
* gradients: the 0.99 clamp is straight-through, ``∂α/∂(o · exp(power)) = 1`` even where
  clamped (as the 3DGS rasteriser's backward pass, which the GaussRender release uses);
* outputs: features ``[V, H, W, C]``, depth ``[V, H, W]`` (alpha-weighted, not
  normalised), alpha ``[V, H, W]`` (``1 - T``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .._checks import check_finite, check_floating, check_shape, check_tensor
from ..cameras import Cameras
from ._project import CULL_MODES

__all__ = ["render", "RenderResult", "available_backends"]

Backend = Literal["auto", "torch", "triton"]


@dataclass
class RenderResult:
    """Rendered images of ``V`` views.

    Attributes:
        features: ``[V, H, W, C]`` blended features plus ``T · background``.
        depth: ``[V, H, W]`` alpha-weighted camera depth, metres (not normalised).
        alpha: ``[V, H, W]`` accumulated opacity ``1 - T``.
    """

    features: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def available_backends() -> list[str]:
    """Backends usable in this process (``"triton"`` needs Triton and a CUDA device, or
    ``TRITON_INTERPRET=1`` for the CPU interpreter)."""
    out = ["torch"]
    if _triton_available():
        out.append("triton")
    return out


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "triton" if device.type == "cuda" and _triton_available() else "torch"
    if backend not in ("torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    if backend == "triton" and not _triton_available():
        raise ValueError("backend='triton' needs the 'triton' package (pip install 'gaussrender[gpu]')")
    return backend


def render(
    means: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    scales: float | torch.Tensor,
    cameras: Cameras,
    background: torch.Tensor | None = None,
    backend: Backend = "auto",
    cull: Literal["footprint", "center"] = "footprint",
) -> RenderResult:
    """Render ``N`` isotropic Gaussians into every view of ``cameras``.

    Args:
        means: ``[N, 3]`` centres, metres, world frame.
        opacities: ``[N]`` in ``[0, 1]``.
        features: ``[N, C]`` any number of channels (class probabilities, colours, ...).
        scales: isotropic standard deviation, metres: a float or ``[N]``.
        cameras: the views (:class:`gaussrender.Cameras`).
        background: ``[C]`` added with the remaining transmittance; default zeros.
        backend: ``"torch"`` (vectorised PyTorch, CPU and CUDA), ``"triton"`` (fused GPU
            kernels) or ``"auto"`` (triton on CUDA when importable, torch otherwise).
        cull: per view, which Gaussians are splatted: ``"footprint"`` (every one whose
            alpha >= 1/255 footprint reaches a pixel centre: exact splatting) or
            ``"center"`` (only those whose centre projects strictly inside the image,
            ``0.5 < u < W - 0.5`` and ``0.5 < v < H - 0.5``, as the GaussRender release
            culls its camera views; a Gaussian just outside the border then leaves no trace).

    Returns:
        :class:`RenderResult` with ``features [V, H, W, C]``, ``depth [V, H, W]`` and
        ``alpha [V, H, W]``; differentiable w.r.t. means, opacities, features and background.

    Example:
        >>> import torch, gaussrender as gr
        >>> cams = gr.Cameras(torch.eye(4)[None], torch.tensor([[[50., 0, 32], [0, 50, 24], [0, 0, 1]]]), 64, 48)
        >>> out = gr.render(torch.tensor([[0., 0, 5]]), torch.ones(1), torch.eye(3)[:1], 0.3, cams)
        >>> out.features.shape, out.depth.shape
        (torch.Size([1, 48, 64, 3]), torch.Size([1, 48, 64]))
    """
    if not isinstance(cameras, Cameras):
        raise TypeError(f"cameras must be a gaussrender.Cameras, got {type(cameras).__name__}")
    n = check_shape("means", means, ["N", 3])["N"]
    check_shape("opacities", opacities, [n])
    c = check_shape("features", features, [n, "C"])["C"]
    for name, t in (("means", means), ("opacities", opacities), ("features", features)):
        check_floating(name, t)
        check_finite(name, t)
        if t.device != means.device:
            raise ValueError(f"{name} is on {t.device} but means on {means.device}; expected one device")
    if cameras.device != means.device:
        raise ValueError(f"cameras are on {cameras.device} but means on {means.device}; expected one device")
    dtype = means.dtype
    if isinstance(scales, torch.Tensor):
        check_shape("scales", scales, [n])
        check_floating("scales", scales)
        scales_t = scales.to(dtype)
    elif isinstance(scales, (int, float)) and not isinstance(scales, bool):
        scales_t = torch.full((n,), float(scales), dtype=dtype, device=means.device)
    else:
        raise TypeError(f"scales must be a float or a [N] tensor, got {type(scales).__name__}")
    check_finite("scales", scales_t)
    if n and bool((scales_t <= 0).any()):
        raise ValueError("scales must be > 0 metres")
    if n and bool(((opacities < 0) | (opacities > 1)).any()):
        raise ValueError(
            f"opacities must lie in [0, 1], got range [{float(opacities.min()):.3g}, {float(opacities.max()):.3g}]"
        )
    if cull not in CULL_MODES:
        raise ValueError(f"cull must be one of {CULL_MODES}, got {cull!r}")
    if background is None:
        background = torch.zeros(c, dtype=dtype, device=means.device)
    else:
        check_tensor("background", background)
        check_shape("background", background, [c])
        check_floating("background", background)
        check_finite("background", background)
    opacities = opacities.to(dtype)
    features = features.to(dtype)
    background = background.to(dtype)

    name = _resolve_backend(backend, means.device)
    if name == "triton":
        from ._triton import render_triton

        return render_triton(means, opacities, features, scales_t, cameras, background, cull=cull)
    from ._torch import render_torch

    return render_torch(means, opacities, features, scales_t, cameras, background, cull=cull)
