"""The picture files ``gaussrender demo`` and ``gaussrender view`` write: one PNG per view
(the subjects side by side, semantics above depth), an orbit GIF, and an overview page with a
colour key."""

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
from ..viz import legend, orbit_frames, palette, render_pictures, save_gif, save_png, tile_images

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
    subjects: list[tuple[str, Gaussians]],
    views: list[View],
    orbit: Cameras,
    backend: Backend,
    fps: float,
    *,
    overview_depth: bool,
) -> list[Path]:
    """Render every subject (``(caption, Gaussians)``, left to right) in every view and along
    the ``orbit`` cameras (one GIF frame each); write the files into ``out`` and return their
    paths, the overview first. ``overview_depth``: the overview shows the depth rows too."""
    device = subjects[0][1].means.device
    background = torch.zeros(grid.num_classes, device=device)
    background[grid.empty_index] = 1.0  # pixels that see nothing show free space
    colors = palette(grid)
    written: list[Path] = []
    page_rows: list[list[np.ndarray]] = []
    page_captions: list[list[str]] = []
    with tqdm(total=len(views) + len(orbit), desc="rendering", unit="view", file=sys.stderr) as bar:
        for view in views:
            semantics, depths = [], []
            for _, gaussians in subjects:
                (sem,), (dep,) = render_pictures(gaussians, view.cameras, colors, view.depth_range, background, backend)
                semantics.append(sem)
                depths.append(dep)
            captions = [[f"{view.title}: {subjects[0][0]}"] + [name for name, _ in subjects[1:]]]
            captions.append(["depth (near = yellow)"] + ["depth"] * (len(subjects) - 1))
            rows = [semantics, depths]
            written.append(save_png(out / f"{view.file_stem}.png", tile_images(rows, captions)))
            kept = len(rows) if overview_depth else 1
            page_rows += rows[:kept]
            page_captions += captions[:kept]
            bar.update()
        frames = orbit_frames(subjects, orbit, colors, background, backend, on_frame=bar.update)
    written.append(save_gif(out / "orbit.gif", frames, fps=fps))
    page = tile_images(page_rows, page_captions)
    key = legend(grid, columns=max(1, min(8, page.shape[1] // 170)))
    written.insert(0, save_png(out / "overview.png", tile_images([[page], [key]])))
    return written
