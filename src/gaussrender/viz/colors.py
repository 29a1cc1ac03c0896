"""Class palettes and colourised semantic and depth images (``uint8 [H, W, 3]`` RGB)."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping

import numpy as np
import torch

from ..geometry.grid import VoxelGrid, get_grid

__all__ = [
    "NUSCENES_COLORS",
    "SEMANTICKITTI_COLORS",
    "WAYMO_OCC_COLORS",
    "EMPTY_COLOR",
    "IGNORE_COLOR",
    "palette",
    "colorize_semantics",
    "colorize_depth",
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
    # SemanticKITTI's own classes (semantic-kitti.yaml color_map, BGR there)
    "bicyclist": (255, 40, 200),
    "motorcyclist": (150, 30, 90),
    "trunk": (135, 60, 0),
}

#: Occ3D-Waymo's classes, the colours of the Occ3D devkit's ``utils/vis_occ.py`` (RGB).
WAYMO_OCC_COLORS: Mapping[str, tuple[int, int, int]] = {
    "general_object": (0, 0, 0),
    "vehicle": (255, 158, 0),
    "pedestrian": (0, 0, 230),
    "sign": (47, 79, 79),
    "cyclist": (220, 20, 60),
    "traffic_light": (255, 69, 0),
    "pole": (255, 140, 0),
    "construction_cone": (233, 150, 70),
    "bicycle": (255, 61, 99),
    "motorcycle": (112, 128, 144),
    "building": (222, 184, 135),
    "vegetation": (0, 175, 0),
    "tree_trunk": (165, 42, 42),
    "road": (0, 207, 191),
    "walkable": (75, 0, 75),
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
        table: class name -> RGB. Default: whichever of :data:`NUSCENES_COLORS`,
            :data:`SEMANTICKITTI_COLORS` and :data:`WAYMO_OCC_COLORS` names more of the grid's
            classes (the first of them on a tie).

    The empty class is :data:`EMPTY_COLOR`; names missing from the table get distinct
    generated colours.
    """
    grid = get_grid(grid)
    if table is None:
        tables = (NUSCENES_COLORS, SEMANTICKITTI_COLORS, WAYMO_OCC_COLORS)
        hits = [sum(n in t for n in grid.class_names) for t in tables]
        table = tables[hits.index(max(hits))]
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
