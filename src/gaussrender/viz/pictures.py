"""Gaussians rendered into pictures: semantic and depth images of given cameras, and orbits around the ego."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..geometry.cameras import Cameras, look_at
from ..render import render
from ..render.dispatch import Backend
from ..render.gaussians import Gaussians
from .colors import colorize_depth, colorize_semantics
from .compare import enlarge
from .layout import tile_images

__all__ = ["render_views", "render_pictures", "orbit_cameras", "orbit_frames"]


def render_views(
    gaussians: Gaussians,
    cameras: Cameras,
    background: torch.Tensor | None = None,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render Gaussians for pictures (no gradients): class features ``[V, H, W, C]`` and the
    expected depth ``[V, H, W]`` (alpha-weighted depth / alpha where alpha > 0.5, else 0 =
    "no depth"), both float32 on the CPU. Arguments as :func:`render_pictures`."""
    with torch.no_grad():  # pictures only; the renderer culls exactly what a view cannot show
        out = render(
            gaussians.means,
            gaussians.opacities,
            gaussians.features,
            gaussians.scales,
            cameras,
            background,
            backend=backend,
        )
    features, depth, alpha = out.features.float().cpu(), out.depth.float().cpu(), out.alpha.float().cpu()
    return features, torch.where(alpha > 0.5, depth / alpha.clamp_min(1e-6), torch.zeros_like(depth))


def render_pictures(
    gaussians: Gaussians,
    cameras: Cameras,
    colors: np.ndarray,
    depth_range: tuple[float, float],
    background: torch.Tensor | None = None,
    backend: Backend = "auto",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Render Gaussians and colour each view's semantics and depth.

    Args:
        gaussians: class-feature Gaussians (``features`` ``[N, C]``), e.g. from
            :func:`gaussrender.voxels_to_gaussians`.
        cameras: the ``V`` views.
        colors: ``uint8 [C, 3]`` palette (:func:`palette`).
        depth_range: ``(near, far)`` metres mapped to the ends of the depth colormap.
        background: ``[C]`` features of pixels that see nothing (e.g. one-hot of the empty
            class), or None for black.
        backend: renderer backend, see :func:`gaussrender.render`.

    Returns:
        ``V`` semantic images (feature-weighted palette colours, so uncertain pixels show
        mixed colours) and ``V`` depth images, each ``uint8 [H, W, 3]``. A pixel's depth is
        the expected depth of what it sees (alpha-weighted depth / alpha) where alpha > 0.5,
        else "no depth".
    """
    features, d = render_views(gaussians, cameras, background, backend)
    sem = [colorize_semantics(f.numpy(), colors) for f in features]
    lo, hi = depth_range
    dep = [colorize_depth(torch.where(x > 0, (x - lo).clamp_min(1e-3), 0.0).numpy(), hi - lo) for x in d]
    return sem, dep


def orbit_cameras(
    frames: int,
    image_size: tuple[int, int],
    radius: float = 30.0,
    altitude: float = 15.0,
    fov: float = 70.0,
    device: torch.device | str | None = None,
) -> Cameras:
    """Cameras circling the origin of the grid frame (the ego), all looking at it.

    Frame ``i`` sits at angle ``2 pi i / frames + pi`` around the z axis (frame 0 behind the
    ego, on the -x side), ``radius`` metres out and ``altitude`` metres up.

    Args:
        frames: number of cameras (>= 1).
        image_size: ``(H, W)`` pixels.
        radius: horizontal distance from the origin, metres (> 0).
        altitude: height above the origin, metres.
        fov: horizontal field of view, degrees, in (0, 180).
        device: where the cameras live.

    Returns:
        :class:`Cameras` with ``frames`` views.
    """
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be an int >= 1, got {frames!r}")
    height, width = image_size
    if not (radius > 0 and 0 < fov < 180):
        raise ValueError(f"radius must be > 0 metres and fov in (0, 180) degrees, got {radius!r}, {fov!r}")
    focal = 0.5 * width / math.tan(math.radians(fov / 2))
    k = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], device=device)
    angles = [2 * math.pi * i / frames + math.pi for i in range(frames)]
    eyes = torch.tensor([[radius * math.cos(a), radius * math.sin(a), altitude] for a in angles], device=device)
    poses = look_at(eyes, torch.zeros_like(eyes))
    return Cameras(poses, k.expand(frames, 3, 3).contiguous(), width, height)


def orbit_frames(
    scenes: Sequence[tuple[str, Gaussians]],
    cameras: Cameras,
    colors: np.ndarray,
    background: torch.Tensor | None = None,
    backend: Backend = "auto",
    on_frame: Callable[[], object] | None = None,
) -> list[np.ndarray]:
    """GIF frames: every scene rendered from each camera in turn, side by side with captions.

    Args:
        scenes: ``(caption, gaussians)`` pairs, left to right.
        cameras: one view per frame (e.g. :func:`orbit_cameras`).
        colors, background, backend: as :func:`render_pictures`.
        on_frame: called after each frame (a progress bar's update).

    Returns:
        ``len(cameras)`` images ``uint8 [H, W, 3]`` of one size, for :func:`save_gif` (panels
        smaller than :data:`~gaussrender.viz.compare.MIN_PANEL_SIDE` enlarged, as every picture's).
    """
    frames = []
    for i in range(len(cameras)):
        # one view at a time: memory stays that of one frame whatever the number of frames
        row = [
            enlarge(render_pictures(g, cameras[i : i + 1], colors, (0.0, 1.0), background, backend)[0][0])
            for _, g in scenes
        ]
        frames.append(tile_images([row], [[caption for caption, _ in scenes]]))
        if on_frame is not None:
            on_frame()
    return frames
