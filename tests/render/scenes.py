"""Random small scenes for renderer tests (shared by every backend's tests)."""

from __future__ import annotations

import torch

import gaussrender as gr


def random_cameras(
    num_views: int, width: int, height: int, model: str = "pinhole", seed: int = 0, dtype: torch.dtype = torch.float64
) -> gr.Cameras:
    """Cameras around the origin looking roughly at it, with random focal, skew and principal point."""
    g = torch.Generator().manual_seed(seed)
    poses, ks = [], []
    for _ in range(num_views):
        angle = float(torch.rand((), generator=g)) * 6.28
        eye = torch.tensor(
            [
                6.0 * torch.cos(torch.tensor(angle)),
                6.0 * torch.sin(torch.tensor(angle)),
                1.0 + float(torch.rand((), generator=g)),
            ],
            dtype=torch.float64,
        )
        target = 0.5 * torch.randn(3, generator=g, dtype=torch.float64)
        poses.append(gr.look_at(eye, target))
        if model == "pinhole":
            f = 0.8 * width * (0.8 + 0.4 * float(torch.rand((), generator=g)))
        else:
            f = width / 8.0 * (0.8 + 0.4 * float(torch.rand((), generator=g)))
        skew = 0.05 * f * float(torch.randn((), generator=g))
        ks.append(
            torch.tensor(
                [
                    [f, skew, width / 2 + 3.0 * float(torch.randn((), generator=g))],
                    [0.0, f * 1.1, height / 2],
                    [0.0, 0.0, 1.0],
                ],
                dtype=torch.float64,
            )
        )
    return gr.Cameras(torch.stack(poses).to(dtype), torch.stack(ks).to(dtype), width, height, model)


def random_gaussians(n: int, channels: int, seed: int = 0, dtype: torch.dtype = torch.float64, spread: float = 1.5):
    """Means around the origin, opacities in (0, 1) with some fully opaque, per-Gaussian scales."""
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(n, 3, generator=g, dtype=dtype)
    opacities = torch.rand(n, generator=g, dtype=dtype)
    opacities[: n // 5] = 1.0
    features = torch.rand(n, channels, generator=g, dtype=dtype)
    scales = 0.1 + 0.3 * torch.rand(n, generator=g, dtype=dtype)
    return means, opacities, features, scales


def clamped_scene(dtype: torch.dtype = torch.float64, device: str = "cpu"):
    """One view (40x30) and three Gaussians; the first is opaque (opacity 1, about 9 px wide)
    and centred on pixel (14, 20), so ``o · G > 0.99`` at the few pixels nearest its centre
    and alpha is clamped there; the others overlap it, unclamped (raw <= 0.9).

    Returns ``(cameras, means, opacities, features, scales, clamped)`` with ``clamped`` the
    ``[1, H, W]`` mask of pixels where the first Gaussian's ``o · G`` exceeds 0.99 (computed
    here in float64 from its isotropic footprint, ``G = exp(-d² / (2 σ²))`` plus the 0.3 px²
    dilation, with a margin: G > 0.992).
    """
    k = torch.tensor([[[36.0, 0.0, 20.0], [0.0, 36.0, 15.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    cams = gr.Cameras(torch.eye(4, dtype=torch.float64)[None], k, 40, 30)
    # pixel (row 14, column 20) has centre (20.5, 14.5): (u - cx) / fx = 0.5 / 36
    z = 5.0
    means = torch.tensor([[0.5 * z / 36, -0.5 * z / 36, z], [0.6, 0.2, 7.0], [-0.4, 0.3, 4.0]], dtype=torch.float64)
    opacities = torch.tensor([1.0, 0.6, 0.9], dtype=torch.float64)
    features = torch.tensor([[1.0, 0.0], [0.2, 0.7], [0.0, 1.0]], dtype=torch.float64)
    scales = torch.tensor([1.2, 0.5, 0.3], dtype=torch.float64)
    # near the optical axis the Jacobian is ~ fx / z in both directions (x/z = 1/72: the
    # off-diagonal terms are below 1e-3 of it), so the footprint is ~isotropic
    var = (36.0 * 1.2 / z) ** 2 * (1 + (0.5 / 36) ** 2) + 0.3
    rows = torch.arange(30, dtype=torch.float64)[:, None] + 0.5
    cols = torch.arange(40, dtype=torch.float64)[None, :] + 0.5
    d2 = (cols - 20.5) ** 2 + (rows - 14.5) ** 2
    clamped = (torch.exp(-0.5 * d2 / var) > 0.992)[None]
    cams = gr.Cameras(cams.cam_from_world.to(device, dtype), cams.intrinsics.to(device, dtype), 40, 30)
    return cams, *(t.to(device, dtype) for t in (means, opacities, features, scales)), clamped.to(device)
