"""Painting voxels in metric coordinates: the label canvas and the street's layout.

:class:`Canvas` holds the ``[X, Y, Z]`` uint8 label volume of a grid plus a 2D footprint map
that keeps objects from overlapping; its methods take metres in the grid frame (x forward
along the road, y left, z up; heights of objects are metres above the ground plane).
:func:`street_layout` draws the road, lanes, parking strips, sidewalks, grass strips and an
optional cross street from a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..geometry.grid import VoxelGrid

__all__ = ["Canvas", "StreetLayout", "street_layout"]


class Canvas:
    """The label volume plus a 2D footprint map that keeps objects from overlapping."""

    def __init__(self, grid: VoxelGrid, ground_z: float) -> None:
        self.grid = grid
        self.cls = {name: i for i, name in enumerate(grid.class_names)}
        self.sem = np.full(grid.shape, grid.empty_index, dtype=np.uint8)
        self.taken = np.zeros(grid.shape[:2], dtype=bool)
        self.ground_k = int(math.floor((ground_z - grid.range_min[2]) / grid.voxel_size))
        if not 0 <= self.ground_k < grid.shape[2] - 1:
            raise ValueError(
                f"ground_z={ground_z} m must lie inside the grid's z range "
                f"[{grid.range_min[2]}, {grid.range_max[2]}) with room above it"
            )
        self.ground_z = ground_z
        # objects start on the top face of the ground voxel
        self.object_z0 = grid.range_min[2] + (self.ground_k + 1) * grid.voxel_size

    def span(self, lo: float, hi: float, axis: int) -> slice:
        """Voxel indices along ``axis`` whose centres lie in ``[lo, hi]`` metres; at least the
        voxel holding the midpoint, so thin objects (a cone, a trunk) never vanish."""
        g = self.grid
        first = g.range_min[axis] + 0.5 * g.voxel_size
        i0 = math.ceil((lo - first) / g.voxel_size - 1e-6)
        i1 = math.floor((hi - first) / g.voxel_size + 1e-6)
        if i1 < i0:
            i0 = i1 = math.floor((0.5 * (lo + hi) - g.range_min[axis]) / g.voxel_size)
        i0, i1 = max(i0, 0), min(i1, g.shape[axis] - 1)
        return slice(i0, max(i0, i1 + 1) if i1 >= i0 else i0)

    def ground(self, x0: float, x1: float, y0: float, y1: float, name: str) -> None:
        self.sem[self.span(x0, x1, 0), self.span(y0, y1, 1), self.ground_k] = self.cls[name]

    def box(
        self, x0: float, x1: float, y0: float, y1: float, h0: float, h1: float, name: str, free_only: bool = False
    ) -> None:
        """Fill a box; heights ``h0, h1`` are metres above the ground plane."""
        sx, sy = self.span(x0, x1, 0), self.span(y0, y1, 1)
        sz = self.span(max(self.ground_z + h0, self.object_z0), self.ground_z + h1, 2)
        if free_only:
            view = self.sem[sx, sy, sz]
            view[view == self.grid.empty_index] = self.cls[name]
        else:
            self.sem[sx, sy, sz] = self.cls[name]

    def hollow(self, x0: float, x1: float, y0: float, y1: float, height: float) -> None:
        """Empty the inside of a box filled by :meth:`box`, keeping a one-voxel shell (walls,
        and the roof when it lies inside the grid)."""
        vs = self.grid.voxel_size
        sx, sy = self.span(x0 + vs, x1 - vs, 0), self.span(y0 + vs, y1 - vs, 1)
        sz = self.span(self.ground_z - vs / 2, self.ground_z + height - vs, 2)
        self.sem[sx, sy, sz] = self.grid.empty_index

    def is_free(self, x0: float, x1: float, y0: float, y1: float, margin: float = 0.4) -> bool:
        g = self.grid
        if x0 < g.range_min[0] or x1 > g.range_max[0] or y0 < g.range_min[1] or y1 > g.range_max[1]:
            return False
        sx, sy = self.span(x0 - margin, x1 + margin, 0), self.span(y0 - margin, y1 + margin, 1)
        return not self.taken[sx, sy].any()

    def claim(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.taken[self.span(x0, x1, 0), self.span(y0, y1, 1)] = True

    def ellipsoid(self, cx: float, cy: float, cz: float, rx: float, rz: float, name: str) -> None:
        """Fill free voxels inside an upright ellipsoid (centre height ``cz`` above ground)."""
        g = self.grid
        sx, sy = self.span(cx - rx, cx + rx, 0), self.span(cy - rx, cy + rx, 1)
        sz = self.span(max(self.ground_z + cz - rz, self.object_z0), self.ground_z + cz + rz, 2)
        centres = [
            g.range_min[a] + (np.arange(s.start, s.stop) + 0.5) * g.voxel_size for a, s in enumerate((sx, sy, sz))
        ]
        dx, dy, dz = np.meshgrid(centres[0] - cx, centres[1] - cy, centres[2] - (self.ground_z + cz), indexing="ij")
        inside = (dx**2 + dy**2) / rx**2 + dz**2 / rz**2 <= 1.0
        view = self.sem[sx, sy, sz]
        view[inside & (view == g.empty_index)] = self.cls[name]


@dataclass
class StreetLayout:
    lane_w: float
    lanes_left: int  # lanes left of the ego lane (oncoming traffic)
    lanes_right: int  # lanes right of the ego lane (same direction)
    road_lo: float  # y of the road's right edge (parking strip included)
    road_hi: float
    park_right: bool
    park_left: bool
    walk_lo: float  # y of the right sidewalk's outer edge
    walk_hi: float
    green_lo: float  # y of the right grass strip's outer edge
    green_hi: float
    cross_x: float | None  # centre of the cross street along x (None: no cross street)
    cross_w: float
    walk_w: float

    def lane_centres(self) -> list[tuple[float, int]]:
        """(y, heading) of every lane: +1 drives towards +x (ego direction), -1 oncoming."""
        out = [(0.0, 1)]
        out += [(-(i + 1) * self.lane_w, 1) for i in range(self.lanes_right)]
        out += [((i + 1) * self.lane_w, -1) for i in range(self.lanes_left)]
        return out

    def near_cross(self, x0: float, x1: float, margin: float) -> bool:
        if self.cross_x is None:
            return False
        lo = self.cross_x - self.cross_w / 2 - self.walk_w - margin
        hi = self.cross_x + self.cross_w / 2 + self.walk_w + margin
        return x1 > lo and x0 < hi


def street_layout(rng: np.random.Generator) -> StreetLayout:
    lane_w = float(rng.uniform(3.2, 3.7))
    lanes_left, lanes_right = int(rng.integers(1, 3)), int(rng.integers(0, 2))
    park_right, park_left = bool(rng.random() < 0.6), bool(rng.random() < 0.5)
    if not (park_right or park_left):
        park_right = True  # parked cars need a strip somewhere
    road_lo = -lane_w / 2 - lanes_right * lane_w - 2.4 * park_right
    road_hi = lane_w / 2 + lanes_left * lane_w + 2.4 * park_left
    walk_w = float(rng.uniform(2.4, 4.0))
    walk_lo, walk_hi = road_lo - walk_w, road_hi + walk_w
    green_lo = walk_lo - float(rng.uniform(1.6, 5.0))
    green_hi = walk_hi + float(rng.uniform(1.6, 5.0))
    cross_x = None
    if rng.random() < 0.7:
        cross_x = float(rng.choice([-1.0, 1.0]) * rng.uniform(14.0, 28.0))
    return StreetLayout(
        lane_w,
        lanes_left,
        lanes_right,
        road_lo,
        road_hi,
        park_right,
        park_left,
        walk_lo,
        walk_hi,
        green_lo,
        green_hi,
        cross_x,
        float(rng.uniform(7.0, 10.0)),
        walk_w,
    )
