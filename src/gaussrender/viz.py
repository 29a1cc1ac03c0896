"""Pictures: class palettes, colourised semantic and depth images, PNG and animated GIF files.

Everything returns or takes ``uint8`` RGB images ``[H, W, 3]`` as numpy arrays (tensors are
accepted as inputs) and uses Pillow only. :func:`render_pictures` and :func:`orbit_cameras`
turn Gaussians into such images (the ``demo`` and ``view`` commands use them). Files are
written atomically: to a temporary file in the target folder, then renamed, so a reader never sees half a picture.
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ._io import atomic_write
from .geometry.cameras import Cameras, look_at
from .geometry.grid import VoxelGrid, get_grid
from .render import render
from .render.dispatch import Backend
from .render.gaussians import Gaussians

__all__ = [
    "NUSCENES_COLORS",
    "SEMANTICKITTI_COLORS",
    "EMPTY_COLOR",
    "IGNORE_COLOR",
    "palette",
    "colorize_semantics",
    "colorize_depth",
    "legend",
    "tile_images",
    "save_png",
    "save_gif",
    "atomic_write",
    "render_pictures",
    "orbit_cameras",
    "orbit_frames",
]

#: The nuScenes occupancy colours most occupancy visualisers share (RGB).
NUSCENES_COLORS: Mapping[str, tuple[int, int, int]] = {
    "others": (0, 0, 0),
    "barrier": (255, 120, 50),
    "bicycle": (255, 192, 203),
    "bus": (255, 255, 0),
    "car": (0, 150, 245),
    "construction_vehicle": (0, 255, 255),
    "motorcycle": (200, 180, 0),
    "pedestrian": (255, 0, 0),
    "traffic_cone": (255, 240, 150),
    "trailer": (135, 60, 0),
    "truck": (160, 32, 240),
    "driveable_surface": (255, 0, 255),
    "other_flat": (175, 0, 75),
    "sidewalk": (75, 0, 75),
    "terrain": (150, 240, 80),
    "manmade": (230, 230, 250),
    "vegetation": (0, 175, 0),
}

#: The SemanticKITTI colours (RGB) used by SSC visualisers, with SSCBench-KITTI-360's names.
SEMANTICKITTI_COLORS: Mapping[str, tuple[int, int, int]] = {
    "car": (100, 150, 245),
    "bicycle": (100, 230, 245),
    "motorcycle": (30, 60, 150),
    "truck": (80, 30, 180),
    "other-vehicle": (100, 80, 250),
    "person": (255, 30, 30),
    "road": (255, 0, 255),
    "parking": (255, 150, 255),
    "sidewalk": (75, 0, 75),
    "other-ground": (175, 0, 75),
    "building": (255, 200, 0),
    "fence": (255, 120, 50),
    "vegetation": (0, 175, 0),
    "terrain": (150, 240, 80),
    "pole": (255, 240, 150),
    "traffic-sign": (255, 0, 0),
    "other-structure": (255, 150, 0),
    "other-object": (50, 255, 255),
}

#: Free space (the grid's empty class): a neutral grey, so that the near-white "manmade"
#: stands out from the sky in camera views and from empty ground in the bird's-eye view.
EMPTY_COLOR = (128, 128, 128)
#: Label pixels equal to the grid's ignore index.
IGNORE_COLOR = (40, 40, 40)

# Viridis at 0, 1/8, ..., 1 (the published 9-step sequence); linear interpolation between
# these stops stays within a few units of the full 256-entry table.
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 45, 123],
        [59, 82, 139],
        [44, 114, 142],
        [33, 145, 140],
        [40, 174, 128],
        [94, 201, 98],
        [173, 220, 48],
        [253, 231, 37],
    ],
    dtype=np.float64,
)


def _to_numpy(name: str, x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a numpy array or torch.Tensor, got {type(x).__name__}")


def _check_image(name: str, image: object) -> np.ndarray:
    arr = _to_numpy(name, image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a uint8 RGB image [H, W, 3], got {arr.dtype} {list(arr.shape)}")
    return np.ascontiguousarray(arr)


def _distinct_color(i: int) -> tuple[int, int, int]:
    """A colour for a class no table names: hues spaced by the golden angle."""
    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def palette(grid: VoxelGrid | str, table: Mapping[str, tuple[int, int, int]] | None = None) -> np.ndarray:
    """Colours of ``grid``'s classes, ``uint8 [C, 3]`` RGB.

    Args:
        grid: a :class:`VoxelGrid` or preset name.
        table: class name -> RGB. Default: whichever of :data:`NUSCENES_COLORS` and
            :data:`SEMANTICKITTI_COLORS` names more of the grid's classes (nuScenes on a tie).

    The empty class is :data:`EMPTY_COLOR`; names missing from the table get distinct
    generated colours.
    """
    grid = get_grid(grid)
    if table is None:
        hits = [sum(n in t for n in grid.class_names) for t in (NUSCENES_COLORS, SEMANTICKITTI_COLORS)]
        table = SEMANTICKITTI_COLORS if hits[1] > hits[0] else NUSCENES_COLORS
    out = np.zeros((grid.num_classes, 3), dtype=np.uint8)
    for i, name in enumerate(grid.class_names):
        out[i] = EMPTY_COLOR if i == grid.empty_index else table.get(name, _distinct_color(i))
    return out


def colorize_semantics(
    x: torch.Tensor | np.ndarray,
    colors: np.ndarray | VoxelGrid | str,
    ignore_index: int = 255,
) -> np.ndarray:
    """Colour a semantic image.

    Args:
        x: class labels ``[H, W]`` (integers; ``ignore_index`` drawn :data:`IGNORE_COLOR`) or
            per-class features ``[H, W, C]`` (e.g. rendered class probabilities), whose
            colour is the feature-weighted sum of the class colours, so uncertain pixels
            show mixed colours (weights are used as given, clipped to [0, 1] in the result).
        colors: ``uint8 [C, 3]`` palette, or a grid whose :func:`palette` to use.
        ignore_index: label drawn as ignore.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    pal = palette(colors) if isinstance(colors, (VoxelGrid, str)) else _to_numpy("colors", colors)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"colors must be a [C, 3] palette, got shape {list(pal.shape)}")
    arr = _to_numpy("x", x)
    c = pal.shape[0]
    if arr.ndim == 2:
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"x as labels [H, W] must be integers, got dtype {arr.dtype}")
        bad = (arr != ignore_index) & ((arr < 0) | (arr >= c))
        if bad.any():
            raise ValueError(
                f"x labels must be in [0, {c}) or {ignore_index}, found {np.unique(arr[bad])[:5].tolist()}"
            )
        lut = np.concatenate([pal.astype(np.uint8), np.array([IGNORE_COLOR], dtype=np.uint8)])
        return lut[np.where(arr == ignore_index, c, arr)]
    if arr.ndim == 3:
        if arr.shape[2] != c:
            raise ValueError(f"x as features [H, W, C] must have C = {c} channels (the palette's), got {arr.shape[2]}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"x as features [H, W, C] must be floating point, got dtype {arr.dtype}")
        rgb = arr.astype(np.float64) @ pal.astype(np.float64)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    raise ValueError(f"x must be labels [H, W] or features [H, W, C], got shape {list(arr.shape)}")


def colorize_depth(
    depth: torch.Tensor | np.ndarray,
    max_depth: float,
    invalid_color: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Colour a depth image with viridis: near is yellow, ``max_depth`` and beyond is purple.

    Args:
        depth: ``[H, W]`` metres; pixels ``<= 0`` or not finite are "no depth".
        max_depth: depth mapped to the far end of the colormap, metres (> 0).
        invalid_color: RGB of pixels without depth.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    d = _to_numpy("depth", depth).astype(np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {list(d.shape)}")
    if not (isinstance(max_depth, (int, float)) and np.isfinite(max_depth) and max_depth > 0):
        raise ValueError(f"max_depth must be a positive number of metres, got {max_depth!r}")
    valid = np.isfinite(d) & (d > 0)
    t = 1.0 - np.clip(np.where(valid, d, 0.0) / max_depth, 0.0, 1.0)  # 1 = near
    pos = t * (len(_VIRIDIS) - 1)
    i0 = np.minimum(np.floor(pos).astype(int), len(_VIRIDIS) - 2)
    frac = (pos - i0)[..., None]
    rgb = _VIRIDIS[i0] * (1.0 - frac) + _VIRIDIS[i0 + 1] * frac
    out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    out[~valid] = invalid_color
    return out


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
            as wide as its widest image and each row as tall as its tallest; smaller images
            are centred.
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
    features, depth, alpha = out.features.cpu(), out.depth.cpu(), out.alpha.cpu()
    sem = [colorize_semantics(f.numpy(), colors) for f in features]
    d = torch.where(alpha > 0.5, depth / alpha.clamp_min(1e-6), torch.zeros_like(depth))
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
        ``len(cameras)`` images ``uint8 [H, W, 3]`` of one size, for :func:`save_gif`.
    """
    frames = []
    for i in range(len(cameras)):
        # one view at a time: memory stays that of one frame whatever the number of frames
        row = [render_pictures(g, cameras[i : i + 1], colors, (0.0, 1.0), background, backend)[0][0] for _, g in scenes]
        frames.append(tile_images([row], [[caption for caption, _ in scenes]]))
        if on_frame is not None:
            on_frame()
    return frames
