"""Projection of isotropic 3D Gaussians into the image planes (shared by all backends).

Everything here is plain differentiable PyTorch; the backends differ only in how they blend.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cameras import Cameras

__all__ = ["Projected", "project_gaussians", "ALPHA_MIN", "ALPHA_MAX", "T_MIN", "DILATION"]

#: A Gaussian contributes to a pixel only where its alpha reaches 1/255 (3DGS rasteriser).
ALPHA_MIN = 1.0 / 255.0
#: Alpha is clamped to 0.99 so that transmittance never reaches exactly 0.
ALPHA_MAX = 0.99
#: A pixel stops blending before a Gaussian would bring its transmittance below 1e-4.
T_MIN = 1e-4
#: Screen-space low-pass filter added to the 2D covariance, pixels².
DILATION = 0.3


@dataclass
class Projected:
    """Per-view screen-space Gaussians; every tensor has leading dims ``[V, N]``.

    Attributes:
        means2d: ``[V, N, 2]`` (u, v) pixels.
        conics: ``[V, N, 3]`` (a, b, c) of the inverse 2D covariance ``[[a, b], [b, c]]``.
        depths: ``[V, N]`` camera-space z, metres.
        extents: ``[V, N, 2]`` half-size (u, v) of the box holding every point where the
            Gaussian's alpha can reach 1/255, pixels (already padded against rounding).
        valid: ``[V, N]`` bool: in front of ``near``, opaque enough, and its footprint box
            holds at least one pixel centre.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    extents: torch.Tensor
    valid: torch.Tensor


def project_gaussians(
    means: torch.Tensor,
    opacities: torch.Tensor,
    scales: torch.Tensor,
    cameras: Cameras,
) -> Projected:
    """Project Gaussians ``means [N, 3]`` (metres, world frame) with isotropic ``scales [N]``.

    The 2D covariance is ``Σ' = s² J Jᵀ + 0.3 I`` with ``J`` the exact Jacobian of the
    projection at the mean (no clamping of off-screen Gaussians: the footprint test is exact).
    """
    w = cameras.cam_from_world.to(means.dtype)
    k = cameras.intrinsics.to(means.dtype)
    cam = torch.einsum("vij,nj->vni", w[:, :3, :3], means) + w[:, None, :3, 3]
    z = cam[..., 2]
    in_front = z > cameras.near
    fx, s, cx = k[:, 0, 0, None], k[:, 0, 1, None], k[:, 0, 2, None]
    fy, cy = k[:, 1, 1, None], k[:, 1, 2, None]
    if cameras.model == "pinhole":
        # Gaussians behind the near plane are dropped; give them a harmless depth so that
        # neither the forward nor the gradients see a division by ~0.
        z_safe = torch.where(in_front, z, torch.ones_like(z))
        inv_z = 1.0 / z_safe
        x, y = cam[..., 0] * inv_z, cam[..., 1] * inv_z
        # J = A @ [[1/z, 0, -x/z], [0, 1/z, -y/z]] with A = [[fx, s], [0, fy]]
        j00 = fx * inv_z
        j01 = s * inv_z
        j02 = -(fx * x + s * y) * inv_z
        j11 = fy * inv_z
        j12 = -fy * y * inv_z
    else:
        x, y = cam[..., 0], cam[..., 1]
        j00 = fx.expand_as(z)
        j01 = s.expand_as(z)
        j02 = torch.zeros_like(z)
        j11 = fy.expand_as(z)
        j12 = torch.zeros_like(z)
    u = fx * x + s * y + cx
    v = fy * y + cy
    s2 = (scales * scales)[None, :]
    cov_xx = s2 * (j00 * j00 + j01 * j01 + j02 * j02) + DILATION
    cov_xy = s2 * (j01 * j11 + j02 * j12)
    cov_yy = s2 * (j11 * j11 + j12 * j12) + DILATION
    det = cov_xx * cov_yy - cov_xy * cov_xy
    conics = torch.stack([cov_yy / det, -cov_xy / det, cov_xx / det], dim=-1)

    # alpha >= 1/255  <=>  opacity * exp(-m²/2) >= 1/255  <=>  m² <= 2 ln(255 opacity),
    # where m is the Mahalanobis distance; the box of that ellipse is exact.
    with torch.no_grad():
        opaque = opacities >= ALPHA_MIN
        r2 = 2.0 * torch.log((opacities.detach() * 255.0).clamp_min(1.0))
        ext = torch.stack(
            [torch.sqrt(r2 * cov_xx.detach()), torch.sqrt(r2 * cov_yy.detach())], dim=-1
        )
        ext = ext * 1.001 + 0.01  # rounding margin: the per-pixel test decides exactly
        uv = torch.stack([u, v], dim=-1).detach()
        size = torch.tensor([cameras.width, cameras.height], dtype=uv.dtype, device=uv.device)
        lo = torch.ceil(uv - ext - 0.5)
        hi = torch.floor(uv + ext - 0.5)
        on_screen = ((hi >= 0) & (lo <= size - 1) & (lo <= hi)).all(dim=-1)
        valid = in_front & opaque[None, :] & on_screen & torch.isfinite(uv).all(dim=-1)
    return Projected(
        means2d=torch.stack([u, v], dim=-1),
        conics=conics,
        depths=z,
        extents=ext,
        valid=valid,
    )

