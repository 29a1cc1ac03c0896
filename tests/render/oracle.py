"""Dense float64 reference renderer: the contract of docs/method.md#rendering, written as plainly as possible.

Every Gaussian is evaluated at every pixel and blended one at a time in depth order. It is
slow (a Python loop over Gaussians) and meant for scenes of at most a few hundred Gaussians.
It shares no code with the package: projection and blending are written again here.
Like the 3DGS rasteriser, ``alpha = min(0.99, o · G)`` lets its gradient through the clamp.
"""

from __future__ import annotations

import torch


def oracle_render(
    means,
    opacities,
    features,
    scales,
    cam_from_world,
    intrinsics,
    width,
    height,
    model="pinhole",
    near=0.2,
    background=None,
):
    """Return (features [V,H,W,C], depth [V,H,W], alpha [V,H,W]) in float64, differentiable."""
    means = means.double()
    opacities = opacities.double()
    features = features.double()
    n, c = features.shape
    if not torch.is_tensor(scales):
        scales = torch.full((n,), float(scales), dtype=torch.float64)
    scales = scales.double()
    bg = torch.zeros(c, dtype=torch.float64) if background is None else background.double()
    rows = torch.arange(height, dtype=torch.float64) + 0.5
    cols = torch.arange(width, dtype=torch.float64) + 0.5
    pv, pu = torch.meshgrid(rows, cols, indexing="ij")  # [H, W]
    out_f, out_d, out_a = [], [], []
    for v in range(cam_from_world.shape[0]):
        w = cam_from_world[v].double()
        k = intrinsics[v].double()
        color = torch.zeros(height, width, c, dtype=torch.float64)
        depth = torch.zeros(height, width, dtype=torch.float64)
        trans = torch.ones(height, width, dtype=torch.float64)
        done = torch.zeros(height, width, dtype=torch.bool)
        cam_pts = [w[:3, :3] @ means[i] + w[:3, 3] for i in range(n)]
        zs = [float(p[2].detach()) for p in cam_pts]
        order = sorted(range(n), key=lambda i: (zs[i], i))
        for i in order:
            t = cam_pts[i]
            if zs[i] <= near:
                continue
            a_mat = k[:2, :2]
            if model == "pinhole":
                proj = a_mat @ (t[:2] / t[2]) + k[:2, 2]
                # the Jacobian's direction is clamped to +-1.3 tan(fov / 2) (3DGS rasteriser),
                # tan(fovx / 2) = W / (2 fx), symmetric whatever the principal point
                lim_x = 1.3 * width / (2 * abs(k[0, 0]))
                lim_y = 1.3 * height / (2 * abs(k[1, 1]))
                xz = torch.clamp(t[0] / t[2], -lim_x, lim_x)
                yz = torch.clamp(t[1] / t[2], -lim_y, lim_y)
                jac = a_mat @ torch.stack(
                    [
                        torch.stack([1 / t[2], torch.zeros((), dtype=torch.float64), -xz / t[2]]),
                        torch.stack([torch.zeros((), dtype=torch.float64), 1 / t[2], -yz / t[2]]),
                    ]
                )
            else:
                proj = a_mat @ t[:2] + k[:2, 2]
                jac = a_mat @ torch.eye(3, dtype=torch.float64)[:2]
            cov = scales[i] ** 2 * jac @ jac.T + 0.3 * torch.eye(2, dtype=torch.float64)
            conic = torch.linalg.inv(cov)
            dx = pu - proj[0]
            dy = pv - proj[1]
            power = -0.5 * (conic[0, 0] * dx * dx + conic[1, 1] * dy * dy) - conic[0, 1] * dx * dy
            raw = opacities[i] * torch.exp(power)
            # alpha = min(0.99, raw) in value; its gradient passes the clamp unchanged
            # (straight-through), as in the 3DGS rasteriser's backward pass
            alpha = raw - (raw - raw.clamp(max=0.99)).detach()
            use = (power <= 0) & (alpha >= 1.0 / 255.0) & ~done
            test = trans * (1 - alpha)
            stop = use & (test < 1e-4)
            done = done | stop
            use = use & ~stop
            wgt = torch.where(use, alpha * trans, torch.zeros_like(alpha))
            color = color + wgt[..., None] * features[i]
            depth = depth + wgt * t[2]
            trans = torch.where(use, test, trans)
        color = color + trans[..., None] * bg
        out_f.append(color)
        out_d.append(depth)
        out_a.append(1 - trans)
    return torch.stack(out_f), torch.stack(out_d), torch.stack(out_a)
