"""The picture files ``gaussrender demo`` and ``gaussrender view`` write: one PNG per view
(ground truth | prediction | error, semantics above depth: the order of every picture), an
orbit GIF, and an overview page with a colour key."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..geometry.cameras import Cameras
from ..geometry.grid import VoxelGrid
from ..render.dispatch import Backend
from ..render.gaussians import Gaussians
from ..viz import ORDER, comparison_rows, legend, orbit_frames, palette, render_views, save_gif, save_png, tile_images

__all__ = ["View", "write_pictures"]


@dataclass(frozen=True)
class View:
    """One pictured view: written to ``<file_stem>.png``, captioned ``title``, depth coloured
    over ``depth_range`` (metres, near = yellow)."""

    file_stem: str
    title: str
    cameras: Cameras
    depth_range: tuple[float, float]


def write_pictures(
    out: Path,
    grid: VoxelGrid,
    truth: Gaussians,
    prediction: Gaussians,
    views: list[View],
    orbit: Cameras,
    backend: Backend,
    fps: float,
    *,
    overview_depth: bool,
    progress: tqdm | None = None,
) -> list[Path]:
    """Render ground truth and prediction in every view and along the ``orbit`` cameras (one
    GIF frame each); write the files into ``out`` and return their paths, the overview first.

    Every view's picture is ground truth | prediction | error (:func:`~gaussrender.viz.comparison_rows`),
    semantics above depth; the GIF shows ground truth | prediction. ``overview_depth``: the
    overview shows the depth rows too. ``progress``: a progress bar to advance by one per view
    and frame (default: a bar of its own on stderr).
    """
    device = truth.means.device
    background = torch.zeros(grid.num_classes, device=device)
    background[grid.empty_index] = 1.0  # pixels that see nothing show free space
    colors = palette(grid)
    written: list[Path] = []
    page_rows: list[list[np.ndarray]] = []
    page_captions: list[list[str]] = []
    bar = progress if progress is not None else tqdm(total=len(views) + len(orbit), desc="rendering", file=sys.stderr)
    try:
        for view in views:
            t_feat, t_depth = render_views(truth, view.cameras, background, backend)
            p_feat, p_depth = render_views(prediction, view.cameras, background, backend)
            rows, captions = comparison_rows(
                (t_feat[0], t_depth[0]), (p_feat[0], p_depth[0]), colors, view.depth_range, view.title
            )
            written.append(save_png(out / f"{view.file_stem}.png", tile_images(rows, captions)))
            kept = len(rows) if overview_depth else 1
            page_rows += rows[:kept]
            page_captions += captions[:kept]
            bar.update()
        subjects = [(ORDER[0], truth), (ORDER[1], prediction)]
        frames = orbit_frames(subjects, orbit, colors, background, backend, on_frame=bar.update)
    finally:
        if progress is None:
            bar.close()
    written.append(save_gif(out / "orbit.gif", frames, fps=fps))
    page = tile_images(page_rows, page_captions)
    key = legend(grid, columns=max(1, min(8, page.shape[1] // 170)))
    written.insert(0, save_png(out / "overview.png", tile_images([[page], [key]])))
    return written
