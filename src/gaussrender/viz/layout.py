"""Pictures put together and written: a class legend, a captioned grid of images, PNG and GIF files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .._io import atomic_write
from ..geometry.grid import VoxelGrid, get_grid
from .colors import _check_image, _to_numpy, palette

__all__ = ["legend", "tile_images", "save_png", "save_gif"]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def legend(
    grid: VoxelGrid | str,
    classes: Sequence[int] | None = None,
    colors: np.ndarray | None = None,
    columns: int = 6,
    font_size: int = 13,
) -> np.ndarray:
    """A colour key: one swatch and name per class, ``columns`` per row.

    Args:
        grid: names the classes.
        classes: class indices to list (default: all but the empty class).
        colors: ``[C, 3]`` palette (default :func:`palette` of the grid).

    Returns:
        ``uint8 [H, W, 3]`` on white.
    """
    grid = get_grid(grid)
    pal = palette(grid) if colors is None else _to_numpy("colors", colors)
    if classes is None:
        classes = [c for c in range(grid.num_classes) if c != grid.empty_index]
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    names = [grid.class_names[c] for c in classes]
    # textbbox is typed as floats (FreeType layouts); Image.new needs whole pixels
    cell_w = math.ceil(max(probe.textbbox((0, 0), n, font=font)[2] for n in names)) + font_size + 16
    cell_h = font_size + 8
    rows = (len(classes) + columns - 1) // columns
    img = Image.new("RGB", (cell_w * min(columns, len(classes)), cell_h * rows), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for k, (c, name) in enumerate(zip(classes, names)):
        x, y = (k % columns) * cell_w + 4, (k // columns) * cell_h + 4
        draw.rectangle(
            [x, y, x + font_size - 2, y + font_size - 2], fill=tuple(int(v) for v in pal[c]), outline=(0, 0, 0)
        )
        draw.text((x + font_size + 4, y - 1), name, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def tile_images(
    rows: Sequence[Sequence[np.ndarray | torch.Tensor | None]],
    labels: Sequence[Sequence[str]] | None = None,
    pad: int = 6,
    font_size: int = 14,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Lay images out in a grid with a caption above each.

    Args:
        rows: rows of ``uint8 [H, W, 3]`` images; ``None`` leaves a cell empty. Each column is
            as wide as its widest image (and caption) and each row as tall as its tallest;
            smaller images are centred.
        labels: captions with the same nesting as ``rows`` (default none).
        pad: pixels between cells and around the border.
        font_size: caption size in pixels (Pillow's default font).
        background: RGB of the canvas.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    if not rows or not all(len(r) for r in rows):
        raise ValueError("rows must be a non-empty list of non-empty rows of images")
    if labels is not None and (len(labels) != len(rows) or any(len(lab) != len(r) for lab, r in zip(labels, rows))):
        raise ValueError("labels must have the same nesting (rows x columns) as rows")
    imgs = [
        [None if im is None else _check_image(f"rows[{i}][{j}]", im) for j, im in enumerate(r)]
        for i, r in enumerate(rows)
    ]
    ncol = max(len(r) for r in imgs)
    col_w = [
        max((im.shape[1] for r in imgs if j < len(r) and (im := r[j]) is not None), default=0) for j in range(ncol)
    ]
    row_h = [max((im.shape[0] for im in r if im is not None), default=0) for r in imgs]
    font = _font(font_size)
    cap = font_size + 6 if labels is not None else 0
    if labels is not None:
        # a column is at least as wide as its captions, so that neighbouring captions never overlap
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        for row_labels in labels:
            for j, text in enumerate(row_labels):
                if text:
                    col_w[j] = max(col_w[j], math.ceil(probe.textbbox((0, 0), text, font=font)[2]) + 2)
    width = sum(col_w) + pad * (ncol + 1)
    height = sum(row_h) + (pad + cap) * len(imgs) + pad
    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    y = pad
    for i, r in enumerate(imgs):
        x = pad
        for j in range(ncol):
            im = r[j] if j < len(r) else None
            if labels is not None and j < len(labels[i]) and labels[i][j]:
                draw.text((x, y), labels[i][j], fill=(0, 0, 0), font=font)
            if im is not None:
                ox, oy = (col_w[j] - im.shape[1]) // 2, (row_h[i] - im.shape[0]) // 2
                canvas.paste(Image.fromarray(im), (x + ox, y + cap + oy))
            x += col_w[j] + pad
        y += row_h[i] + cap + pad
    return np.asarray(canvas)


def save_png(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write a ``uint8 [H, W, 3]`` image as PNG (atomically). Returns the path."""
    img = Image.fromarray(_check_image("image", image))
    return atomic_write(path, lambda f: img.save(f, format="PNG"))


def save_gif(path: str | os.PathLike, frames: Sequence[np.ndarray | torch.Tensor], fps: float = 10.0) -> Path:
    """Write ``uint8 [H, W, 3]`` frames of one size as a looping animated GIF (atomically).

    Args:
        path: output file.
        frames: at least one frame.
        fps: frames per second (> 0); GIF stores delays in 1/100 s, so it is rounded.

    Returns:
        The path.
    """
    if not len(frames):
        raise ValueError("frames must hold at least one image")
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps!r}")
    arrays = [_check_image(f"frames[{i}]", f) for i, f in enumerate(frames)]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"frames must share one size; got {sorted({a.shape for a in arrays})}")
    # one adaptive palette for the whole animation (from a strip of every frame), so colours
    # do not flicker from frame to frame
    strip = Image.fromarray(np.concatenate(arrays, axis=0)).quantize(256, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(a).quantize(palette=strip, dither=Image.Dither.NONE) for a in arrays]
    duration = max(20, int(round(1000.0 / fps / 10.0)) * 10)
    return atomic_write(
        path,
        lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0),
    )
