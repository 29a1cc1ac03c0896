"""The one entry point, :func:`render`: checks its inputs, then hands them to a backend.

Every backend (``_torch``, ``_numba``, ``_triton``) keeps one contract (docs/method.md#rendering):

* per view, Gaussians with camera depth ``z <= near`` are dropped (and, with
  ``cull="center"``, those whose centre does not project strictly inside the image); the
  rest are projected with the perspective (or orthographic) Jacobian ``J`` at the mean,
  ``Σ' = s² J Jᵀ + 0.3 I`` (pixels²), the perspective one's
  direction clamped as in the 3DGS rasteriser: ``x/z`` to ``±1.3 · W / (2 fx)``, ``y/z`` to
  ``±1.3 · H / (2 fy)`` (symmetric around the optical axis, whatever the principal point);
* pixel (row r, column c) samples (u, v) = (c + 0.5, r + 0.5);
* front to back by depth (ties keep the input order):
  ``α = min(0.99, o · exp(power))``, skipped where ``α < 1/255`` (``power <= 0`` by
  construction, the conic being positive definite; the Triton kernel also skips ``power > 0``,
  which only rounding can reach) (every
  pixel where ``α ≥ 1/255`` counts: no tile or radius cut-off), a pixel stops before a
  Gaussian that would bring its transmittance ``T`` below 1e-4,
  ``C += α T f``, ``D += α T z``, ``T *= 1 - α``; finally ``C += T · background``;
* gradients: the 0.99 clamp is straight-through, ``∂α/∂(o · exp(power)) = 1`` even where
  clamped (as the 3DGS rasteriser's backward pass, which the GaussRender release uses);
* outputs: features ``[V, H, W, C]``, depth ``[V, H, W]`` (alpha-weighted, not
  normalised), alpha ``[V, H, W]`` (``1 - T``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from .._checks import (
    MAX_COORDINATE,
    MAX_SCALE,
    check_finite,
    check_floating,
    check_memory,
    check_real,
    check_shape,
    checks_enabled,
    compute_dtype,
    render_bytes,
)
from ..geometry.cameras import Cameras
from ._project import CULL_MODES, GaussianSet, splat
from .result import RenderResult

__all__ = ["render", "render_unchecked", "render_sets_unchecked", "GaussianSet", "RenderResult", "available_backends"]

Backend = Literal["auto", "torch", "numba", "triton"]
BACKENDS = ("auto", "torch", "numba", "triton")


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def _numba_available() -> bool:
    from ._numba import numba_available

    return numba_available()


def available_backends() -> list[str]:
    """Backends importable in this process (``"numba"`` renders CPU tensors; ``"triton"``
    needs Triton and a CUDA device, or ``TRITON_INTERPRET=1`` for the CPU interpreter)."""
    out = ["torch"]
    if _numba_available():
        out.append("numba")
    if _triton_available():
        out.append("triton")
    return out


def _resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that renders tensors on ``device``: ``"auto"`` is triton on CUDA (when
    importable), numba on the CPU (when importable), torch otherwise."""
    if backend == "auto":
        if device.type == "cuda":
            return "triton" if _triton_available() else "torch"
        return "numba" if device.type == "cpu" and _numba_available() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton" and not _triton_available():
        raise ValueError("backend='triton' needs the 'triton' package (pip install 'gaussrender[gpu]')")
    if backend == "numba":
        if not _numba_available():
            raise ValueError("backend='numba' needs the 'numba' package (pip install numba)")
        if device.type != "cpu":
            raise ValueError(f"backend='numba' renders CPU tensors, got tensors on {device}; use backend='auto'")
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
        means: ``[N, 3]`` centres, metres, world frame, ``|means| <= 1e6``.
        opacities: ``[N]`` in ``[0, 1]``.
        features: ``[N, C]`` any number of channels (class probabilities, colours, ...).
        scales: isotropic standard deviation, metres, in ``(0, 1e4]``: a float or ``[N]``.
        cameras: the views (:class:`gaussrender.Cameras`).
        background: ``[C]`` added with the remaining transmittance; default zeros.
        backend: ``"torch"`` (vectorised PyTorch, CPU and CUDA), ``"numba"`` (fused CPU
            kernels compiled by numba), ``"triton"`` (fused GPU kernels) or ``"auto"``
            (triton on CUDA and numba on the CPU when importable, torch otherwise).
        cull: per view, which Gaussians are splatted: ``"footprint"`` (every one whose
            alpha >= 1/255 footprint reaches a pixel centre: exact splatting) or
            ``"center"`` (only those whose centre projects strictly inside the image,
            ``0.5 < u < W - 0.5`` and ``0.5 < v < H - 0.5``, as the GaussRender release
            culls its camera views; a Gaussian just outside the border then leaves no trace).

    Returns:
        :class:`RenderResult` with ``features [V, H, W, C]``, ``depth [V, H, W]`` and
        ``alpha [V, H, W]`` in the dtype of ``means``; differentiable w.r.t. means,
        opacities, features and background. float16/bfloat16 inputs are rendered in float32
        and the images cast back (float64 stays float64).

    Raises:
        TypeError, ValueError: naming the argument, for wrong shapes, dtypes (complex,
            integer) or devices, meta tensors, non-finite values or values out of range
            (including scales so large, or ``cameras.near`` so small, that the projected
            covariance overflows the compute dtype). Value checks read tensors back to the
            host; ``gr.set_checks(False)`` skips them.
        gaussrender._checks.FootprintError: (a ``ValueError`` and a ``MemoryError``) when a
            lower bound of the images' memory, ``2 V H W (C + 2)`` values plus 16 bytes per
            pixel, exceeds the available memory (physical memory on the CPU, free + cached
            on CUDA), before anything is allocated.

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
        if t.device != means.device:
            raise ValueError(f"{name} is on {t.device} but means on {means.device}; expected one device")
    if cameras.device != means.device:
        raise ValueError(f"cameras are on {cameras.device} but means on {means.device}; expected one device")
    if cull not in CULL_MODES:
        raise ValueError(f"cull must be one of {CULL_MODES}, got {cull!r}")
    out_dtype = means.dtype
    # float16/bfloat16 cannot hold pixel coordinates, depths or long transmittance products
    # (errors of 0.5 at z = 0.3 m): every backend computes in float32 and casts back.
    dtype = compute_dtype(out_dtype)
    if isinstance(scales, torch.Tensor):
        check_shape("scales", scales, [n])
        check_floating("scales", scales)
        if scales.device != means.device:
            raise ValueError(f"scales is on {scales.device} but means on {means.device}; expected one device")
        scales_t = scales.to(dtype)
        check_finite("scales", scales_t)
        if checks_enabled() and n and bool(((scales_t <= 0) | (scales_t > MAX_SCALE)).any()):
            raise ValueError(
                f"scales must lie in (0, {MAX_SCALE:g}] metres, got range "
                f"[{float(scales_t.min()):.3g}, {float(scales_t.max()):.3g}]"
            )
    else:
        scale = check_real("scales", scales, 0.0, MAX_SCALE, low_open=True, unit="metres")
        scales_t = torch.full((n,), scale, dtype=dtype, device=means.device)
    check_finite("means", means, MAX_COORDINATE, "metres")
    check_finite("opacities", opacities)
    check_finite("features", features)
    if checks_enabled() and n and bool(((opacities < 0) | (opacities > 1)).any()):
        raise ValueError(
            f"opacities must lie in [0, 1], got range [{float(opacities.min()):.3g}, {float(opacities.max()):.3g}]"
        )
    if background is None:
        background = torch.zeros(c, dtype=dtype, device=means.device)
    else:
        check_shape("background", background, [c])
        check_floating("background", background)
        if background.device != means.device:
            raise ValueError(f"background is on {background.device} but means on {means.device}; expected one device")
        check_finite("background", background)
    check_memory(
        "cameras",
        render_bytes(len(cameras), cameras.height, cameras.width, c, torch.finfo(dtype).bits // 8),
        means.device,
        f"rendering {len(cameras)} view(s) of {cameras.width}x{cameras.height} pixels x {c} channels",
        "render fewer views, smaller images (cameras.width, cameras.height) or fewer feature channels",
    )
    return render_unchecked(means, opacities, features, scales_t, cameras, background, backend, cull)


def render_unchecked(
    means: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    scales: torch.Tensor,
    cameras: Cameras,
    background: torch.Tensor,
    backend: Backend = "auto",
    cull: Literal["footprint", "center"] = "footprint",
) -> RenderResult:
    """:func:`render` for inputs a caller has already validated (``GaussRenderLoss`` checks its
    logits and labels once, then renders Gaussians it built itself): the same contract, without
    the per-tensor value checks (each a pass over the data and a host read-back).

    ``scales`` is a ``[N]`` tensor and ``background`` a ``[C]`` tensor here. The covariance
    range check (small, on the intrinsics) still runs.
    """
    one = GaussianSet(means, opacities, features, scales, cameras)
    return render_sets_unchecked([one], background, backend, cull)[0]


def render_sets_unchecked(
    sets: Sequence[GaussianSet],
    background: torch.Tensor,
    backend: Backend = "auto",
    cull: Literal["footprint", "center"] = "footprint",
) -> list[RenderResult]:
    """Render several sets of Gaussians, each into its own cameras, in ONE blending pass.

    This is how ``GaussRenderLoss`` renders a batch: every sample's Gaussians in that
    sample's cameras, all views of all samples blended together (one tile list, one round
    loop or one kernel launch), instead of one call per sample. Each set's images are exactly
    those :func:`render_unchecked` gives for it alone.

    Args:
        sets: :class:`~gaussrender.render._project.GaussianSet` s (validated inputs); their
            cameras share one image size; the dtype of ``sets[0].means`` sets the precision.
        background: ``[C]``.

    Returns:
        one :class:`RenderResult` per set, ``[len(set.cameras), H, W, ...]`` (views of the
        call's images, no copies).

    Raises:
        ValueError: no set, or sets whose cameras differ in image size.
    """
    if not sets:
        raise ValueError("sets must hold at least one GaussianSet")
    out_dtype = sets[0].means.dtype
    dtype = compute_dtype(out_dtype)
    converted = [
        GaussianSet(s.means.to(dtype), s.opacities.to(dtype), s.features.to(dtype), s.scales.to(dtype), s.cameras)
        for s in sets
    ]
    checked = [s for s in converted if s.means.shape[0] and len(s.cameras)]
    if checks_enabled() and checked:
        # one read-back for every set's largest scale; a camera shared by several sets (the
        # loss's BEV) is checked once per distinct scale
        largest = torch.stack([s.scales.amax() for s in checked]).tolist()
        seen: set[tuple[int, float]] = set()
        for s, s_max in zip(checked, largest, strict=True):
            if (id(s.cameras), s_max) not in seen:
                seen.add((id(s.cameras), s_max))
                _check_covariance_range(s_max, s.cameras, dtype)
    background = background.to(dtype)
    splats = splat(converted, cull)
    name = _resolve_backend(backend, splats.table.device)
    if name == "triton":
        from ._triton import rasterize_triton

        out = rasterize_triton(splats, background)
    elif name == "numba":
        from ._numba import rasterize_numba

        out = rasterize_numba(splats, background)
    else:
        from ._torch import rasterize_torch

        out = rasterize_torch(splats, background)
    images = [out.features, out.depth, out.alpha]
    if out_dtype != dtype:
        images = [x.to(out_dtype) for x in images]
    sizes = [len(s.cameras) for s in sets]
    return [RenderResult(*parts) for parts in zip(*(x.split(sizes) for x in images), strict=True)]


#: Largest projected 2D covariance (pixels²) accepted, as a fraction of the dtype's range:
#: the rasteriser squares pixel offsets against it and its determinant (a square) may
#: overflow to inf harmlessly, but the covariance itself must stay finite with a margin for
#: the gradients (which scale it by 1/z).
_COV_RANGE_FRACTION = 1e-8


def _check_covariance_range(s_max: float, cameras: Cameras, dtype: torch.dtype) -> None:
    """Refuse scales/near/intrinsics whose projected covariance overflows ``dtype``.

    Bound (see ``_project.project_gaussians``): the Jacobian rows are ``(fx, s, -(fx xc + s
    yc))/z`` and ``(0, fy, -fy yc)/z`` with the direction clamped to ``|xc| <= Lx``,
    ``|yc| <= Ly`` (1.3x the field of view) and ``z > near``; so
    ``Σ' <= s_max² (fx² + s² + (|fx| Lx + |s| Ly)²) / near² + 0.3`` (orthographic: no
    ``1/z``, no third column), ``s_max`` the largest scale (metres). One read-back of the
    intrinsics.
    """
    k = cameras.intrinsics.detach().to(device="cpu", dtype=torch.float64)
    fx, sk, cx = k[:, 0, 0].abs(), k[:, 0, 1].abs(), k[:, 0, 2]
    fy, cy = k[:, 1, 1].abs(), k[:, 1, 2]
    if cameras.model == "pinhole":
        w, h = cameras.width, cameras.height
        lx = torch.maximum((cx + 0.15 * w).abs(), (w - cx + 0.15 * w).abs()) / fx
        ly = torch.maximum((cy + 0.15 * h).abs(), (h - cy + 0.15 * h).abs()) / fy
        row0 = fx**2 + sk**2 + (fx * lx + sk * ly) ** 2
        row1 = fy**2 + (fy * ly) ** 2
        bound = s_max**2 * torch.maximum(row0, row1).amax() / cameras.near**2
    else:
        bound = s_max**2 * torch.maximum(fx**2 + sk**2, fy**2).amax()
    limit = torch.finfo(dtype).max * _COV_RANGE_FRACTION
    if float(bound) > limit:
        raise ValueError(
            f"scales up to {s_max:.3g} m with near = {cameras.near:g} m and these intrinsics "
            f"project to 2D covariances up to {float(bound):.3g} pixels², beyond what {dtype} "
            f"can blend ({limit:.3g}); lower scales, raise cameras.near or render in float64"
        )
