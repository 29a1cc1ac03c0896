"""Random small scenes for renderer tests (shared by every backend's tests)."""

from __future__ import annotations

import torch

import gaussrender as gr


def random_cameras(num_views: int, width: int, height: int, model: str = "pinhole", seed: int = 0,
                   dtype: torch.dtype = torch.float64) -> gr.Cameras:
    """Cameras around the origin looking roughly at it, with random focal, skew and principal point."""
    g = torch.Generator().manual_seed(seed)
    poses, ks = [], []
    for _ in range(num_views):
        angle = float(torch.rand((), generator=g)) * 6.28
        eye = torch.tensor([6.0 * torch.cos(torch.tensor(angle)), 6.0 * torch.sin(torch.tensor(angle)), 1.0 + float(torch.rand((), generator=g))], dtype=torch.float64)
        target = 0.5 * torch.randn(3, generator=g, dtype=torch.float64)
        poses.append(gr.look_at(eye, target))
        if model == "pinhole":
            f = 0.8 * width * (0.8 + 0.4 * float(torch.rand((), generator=g)))
        else:
            f = width / 8.0 * (0.8 + 0.4 * float(torch.rand((), generator=g)))
        skew = 0.05 * f * float(torch.randn((), generator=g))
        ks.append(torch.tensor([[f, skew, width / 2 + 3.0 * float(torch.randn((), generator=g))],
                                [0.0, f * 1.1, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float64))
    return gr.Cameras(torch.stack(poses).to(dtype), torch.stack(ks).to(dtype), width, height, model)


def random_gaussians(n: int, channels: int, seed: int = 0, dtype: torch.dtype = torch.float64,
                     spread: float = 1.5):
    """Means around the origin, opacities in (0, 1) with some fully opaque, per-Gaussian scales."""
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(n, 3, generator=g, dtype=dtype)
    opacities = torch.rand(n, generator=g, dtype=dtype)
    opacities[: n // 5] = 1.0
    features = torch.rand(n, channels, generator=g, dtype=dtype)
    scales = 0.1 + 0.3 * torch.rand(n, generator=g, dtype=dtype)
    return means, opacities, features, scales
