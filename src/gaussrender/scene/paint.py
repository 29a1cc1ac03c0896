"""A procedural driving scene in Occ3D format, and a degraded "prediction" of it.

:func:`make_scene` builds, from one integer seed, a street scene on a nuScenes-style grid
(default :data:`gaussrender.OCC3D_NUSCENES`): a road along the ego's x axis with lanes,
optional parking strips and a cross street, sidewalks, grass, trees and bushes, buildings of
varied heights set back from the road, parked and moving cars, trucks (some with trailers),
buses, motorcycles, bicycles, pedestrians and a construction zone fenced by barriers and
traffic cones. It also computes the two visibility masks a real Occ3D ``labels.npz`` carries:

* ``mask_camera``: voxels crossed by rays cast from the six nuScenes camera centres through
  a sub-sampled pixel grid of each camera, up to and including the first occupied voxel;
* ``mask_lidar``: the same from a roof LiDAR (0.94 m ahead of the rear axle, 1.84 m up,
  32 beams from -30.67° to +10.67°, 1° azimuth steps), cast from every ego pose of the short
  trajectory (Occ3D accumulates sweeps over time), expressed in the key frame.

Sub-sampled rays thin out on distant ground, so both masks also include every occupied
surface voxel that has a line of sight to the sensor (cameras: inside the image; LiDAR: from
the key frame, inside the beams' elevation range); see :func:`line_of_sight`. Rays are
marched in steps of half a voxel, so a ray may clip the corner of a voxel without marking it:
a simple approximation of exact voxel traversal, good enough for a demo and for tests (real
Occ3D masks are speckled too).

Frames: the grid is the key frame's ego frame (metres, x forward along the road, y left,
z up, ``z = 0`` on the ground, which lands in z index 2 of the Occ3D grid). Everything is
drawn from ``numpy.random.default_rng(seed)`` and ``torch.Generator``; the same seed gives the
same scene on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_floating, check_integer, check_shape
from ..geometry.cameras import Cameras
from ..geometry.grid import NUSCENES_CLASSES, OCC3D_NUSCENES, VoxelGrid, get_grid

__all__ = ["Scene", "make_scene", "degrade", "visibility_mask", "line_of_sight", "camera_rays", "lidar_rays"]

#: Classes the scene paints; a grid must name all of them.
SCENE_CLASSES = NUSCENES_CLASSES

#: nuScenes roof LiDAR in the ego frame, metres (the real lidar2ego translation, rounded).
LIDAR_ORIGIN = (0.94, 0.0, 1.84)
#: HDL-32E: 32 beams evenly spaced from -30.67° to +10.67° elevation.
LIDAR_ELEVATION_DEG = (-30.67, 10.67)
LIDAR_BEAMS = 32
LIDAR_AZIMUTH_STEP_DEG = 1.0
#: Time between the trajectory's frames, seconds (nuScenes key frames are 2 Hz).
FRAME_DT = 0.5


@dataclass
class Scene:
    """A labelled occupancy scene in the Occ3D ``labels.npz`` layout.

    Attributes:
        semantics: ``[X, Y, Z]`` uint8 class per voxel (``grid.empty_index`` = free).
        mask_camera: ``[X, Y, Z]`` bool, voxels seen by the cameras (see module docstring).
        mask_lidar: ``[X, Y, Z]`` bool, voxels seen by the LiDAR over the trajectory.
        ego_poses: ``[T, 4, 4]`` float64 ego-to-global transforms of a short drive along the
            road, one per frame, 0.5 s apart.
        key_frame: index into ``ego_poses`` of the labelled frame (the grid is its ego frame).
        grid: the voxel grid.
        seed: the seed the scene was made from.
    """

    semantics: torch.Tensor
    mask_camera: torch.Tensor
    mask_lidar: torch.Tensor
    ego_poses: torch.Tensor
    key_frame: int
    grid: VoxelGrid
    seed: int

    def ego_origins(self) -> torch.Tensor:
        """``[T, 3]`` position of every frame's ego origin in the key frame (grid), metres."""
        key_inv = torch.linalg.inv(self.ego_poses[self.key_frame])
        return (key_inv @ self.ego_poses)[:, :3, 3]


# ---------------------------------------------------------------------------------------
# painting voxels in metric coordinates


class _Canvas:
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


# ---------------------------------------------------------------------------------------
# the scene's parts


@dataclass
class _Layout:
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


def _layout(rng: np.random.Generator) -> _Layout:
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
    return _Layout(
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


def _paint_ground(c: _Canvas, lay: _Layout, rng: np.random.Generator) -> None:
    g = c.grid
    xmin, xmax = g.range_min[0], g.range_max[0]
    ymin, ymax = g.range_min[1], g.range_max[1]
    c.ground(xmin, xmax, ymin, ymax, "terrain")
    # paved lots and plazas behind the building line
    for _ in range(int(rng.integers(3, 7))):
        x0 = rng.uniform(xmin, xmax - 8)
        side = rng.choice([-1, 1])
        y_in = lay.green_hi if side > 0 else lay.green_lo
        y0 = y_in + side * rng.uniform(0, 10)
        y1 = y0 + side * rng.uniform(6, 18)
        c.ground(x0, x0 + rng.uniform(8, 20), min(y0, y1), max(y0, y1), "other_flat")
    c.ground(xmin, xmax, lay.walk_lo, lay.walk_hi, "sidewalk")
    c.ground(xmin, xmax, lay.road_lo, lay.road_hi, "driveable_surface")
    if lay.cross_x is not None:
        x0, x1 = lay.cross_x - lay.cross_w / 2, lay.cross_x + lay.cross_w / 2
        for y0, y1 in ((ymin, lay.road_lo), (lay.road_hi, ymax)):  # its sidewalks stop at the main road
            c.ground(x0 - lay.walk_w, x1 + lay.walk_w, y0, y1, "sidewalk")
            c.ground(x0, x1, y0, y1, "driveable_surface")
    # a traffic island (other_flat) between the ego's and the oncoming lanes in places
    for _ in range(int(rng.integers(0, 3))):
        x0 = rng.uniform(xmin, xmax - 10)
        if not lay.near_cross(x0, x0 + 10, 2.0) and not (x0 < 6 and x0 + 10 > -6):
            y = lay.lane_w / 2
            c.ground(x0, x0 + rng.uniform(5, 10), y - 0.4, y + 0.4, "other_flat")
    # gentle bumps: the grass strip rises one voxel where a smooth random field is high
    coarse = torch.from_numpy(rng.random((1, 1, 12, 12)))
    field = F.interpolate(coarse, size=g.shape[:2], mode="bilinear", align_corners=True)[0, 0].numpy()
    grass = c.sem[:, :, c.ground_k] == c.cls["terrain"]
    c.sem[:, :, c.ground_k + 1][grass & (field > 0.72)] = c.cls["terrain"]


def _paint_buildings(c: _Canvas, lay: _Layout, rng: np.random.Generator) -> None:
    g = c.grid
    for side in (-1, 1):
        line = (lay.green_hi if side > 0 else lay.green_lo) + side * 0.4
        x = g.range_min[0] - rng.uniform(0, 12)
        while x < g.range_max[0]:
            length = rng.uniform(8, 24)
            x0, x1 = x, x + length
            x = x1 + rng.uniform(1.6, 7.0)
            if lay.near_cross(x0, x1, 1.0):
                continue
            setback = rng.uniform(0, 2.5)
            depth = rng.uniform(8, 18)
            height = rng.uniform(3.5, 14.0)  # taller ones are cut by the grid's top
            y_in = line + side * setback
            y0, y1 = sorted((y_in, y_in + side * depth))
            # Occ3D labels come from accumulated LiDAR points, which only reach the facades
            # and roofs: a building is a hollow shell one voxel thick, its inside is free
            c.box(x0, x1, y0, y1, -10.0, height, "manmade")
            c.hollow(x0, x1, y0, y1, height)
            c.claim(x0, x1, y0, y1)
            if rng.random() < 0.4:  # a lower annex towards the street
                ax0 = x0 + rng.uniform(0, length / 2)
                ax1 = min(x1, ax0 + rng.uniform(3, 8))
                ay0, ay1 = sorted((y_in, y_in - side * rng.uniform(1.0, 2.0)))
                c.box(ax0, ax1, ay0, ay1, -10.0, rng.uniform(2.4, 3.6), "manmade")
                c.claim(ax0, ax1, ay0, ay1)
        # a low wall or fence along part of the grass strip (nuScenes labels these manmade)
        if rng.random() < 0.5:
            x0 = rng.uniform(g.range_min[0], g.range_max[0] - 15)
            if not lay.near_cross(x0, x0 + 15, 1.0):
                y0, y1 = sorted((line, line - side * 0.4))
                c.box(x0, x0 + rng.uniform(6, 15), y0, y1, 0.0, rng.uniform(1.0, 1.8), "manmade", free_only=True)


def _tree(c: _Canvas, x: float, y: float, rng: np.random.Generator) -> None:
    radius = rng.uniform(1.2, 2.4)
    centre = rng.uniform(3.0, 4.4)
    c.box(x - 0.2, x + 0.2, y - 0.2, y + 0.2, 0.0, centre - 0.5 * radius, "vegetation", free_only=True)
    c.ellipsoid(x, y, centre, radius, radius * rng.uniform(0.8, 1.1), "vegetation")
    c.claim(x - 0.4, x + 0.4, y - 0.4, y + 0.4)


def _paint_vegetation(c: _Canvas, lay: _Layout, rng: np.random.Generator) -> None:
    g = c.grid
    for side in (-1, 1):
        outer, inner = (lay.green_hi, lay.walk_hi) if side > 0 else (lay.green_lo, lay.walk_lo)
        y = 0.5 * (outer + inner)
        x = g.range_min[0] + rng.uniform(0, 6)
        while x < g.range_max[0]:
            if not lay.near_cross(x - 2, x + 2, 0.0) and c.is_free(x - 0.4, x + 0.4, y - 0.4, y + 0.4, 0.0):
                if rng.random() < 0.75:
                    _tree(c, x, y + rng.uniform(-0.4, 0.4), rng)
                else:
                    rx = rng.uniform(0.8, 1.4)
                    c.ellipsoid(x, y, 0.2, rx, rng.uniform(0.8, 1.3), "vegetation")
            x += rng.uniform(6, 12)
    # trees and hedges behind the buildings
    for _ in range(int(rng.integers(10, 20))):
        side = rng.choice([-1, 1])
        lim = g.range_max[1] if side > 0 else -g.range_min[1]
        start = (lay.green_hi if side > 0 else -lay.green_lo) + 2
        if start >= lim - 1:
            continue
        x, y = rng.uniform(g.range_min[0], g.range_max[0]), side * rng.uniform(start, lim - 1)
        if c.is_free(x - 1, x + 1, y - 1, y + 1, 0.0):
            _tree(c, x, y, rng)


def _vehicle(
    c: _Canvas, kind: str, x: float, y: float, heading: int, rng: np.random.Generator, along_y: bool = False
) -> bool:
    """Place a vehicle centred at (x, y) if its footprint is free; ``heading`` +1/-1 tells
    which end is the front. Returns whether it was placed."""
    sizes = {  # length, width, height ranges, metres
        "car": ((4.2, 4.9), (1.8, 2.0), (1.5, 1.8)),
        "truck": ((6.0, 8.5), (2.3, 2.5), (2.8, 3.6)),
        "bus": ((10.5, 12.0), (2.5, 2.6), (3.1, 3.4)),
        "construction_vehicle": ((5.5, 7.0), (2.5, 2.8), (2.8, 3.4)),
        "motorcycle": ((2.0, 2.2), (0.7, 0.9), (1.2, 1.5)),
        "bicycle": ((1.7, 1.9), (0.5, 0.7), (1.0, 1.2)),
        "trailer": ((9.0, 12.0), (2.4, 2.6), (3.4, 3.9)),
    }
    (l0, l1), (w0, w1), (h0, h1) = sizes["truck" if kind == "truck+trailer" else kind]
    length, width, height = rng.uniform(l0, l1), rng.uniform(w0, w1), rng.uniform(h0, h1)
    total = length
    if kind == "truck+trailer":
        length = rng.uniform(2.6, 3.2)  # the tractor unit
        trailer_len = rng.uniform(*sizes["trailer"][0])
        total = length + 0.4 + trailer_len

    def rect(a0: float, a1: float, b0: float, b1: float) -> tuple[float, float, float, float]:
        # (along-road interval, across-road interval) -> (x0, x1, y0, y1)
        return (b0, b1, a0, a1) if along_y else (a0, a1, b0, b1)

    along, across = (y, x) if along_y else (x, y)
    a0, a1 = along - total / 2, along + total / 2
    b0, b1 = across - width / 2, across + width / 2
    if not c.is_free(*rect(a0, a1, b0, b1)):
        return False
    c.claim(*rect(a0, a1, b0, b1))
    front_end = a1 if heading > 0 else a0

    def seg(start: float, size: float) -> tuple[float, float]:
        # a piece of ``size`` metres starting ``start`` metres behind the front
        if heading > 0:
            return front_end - start - size, front_end - start
        return front_end + start, front_end + start + size

    if kind == "car":  # a body and a shorter cabin, so cars read as cars from above
        c.box(*rect(a0, a1, b0, b1), 0.0, 0.9, "car")
        s0, s1 = seg(0.25 * length, 0.55 * length)
        c.box(*rect(s0, s1, b0 + 0.1, b1 - 0.1), 0.9, height, "car")
    elif kind in ("truck", "truck+trailer"):
        cab = min(2.4, length)
        s0, s1 = seg(0.0, cab)
        c.box(*rect(s0, s1, b0, b1), 0.0, min(height, 3.0), "truck")
        if kind == "truck":
            s0, s1 = seg(cab + 0.2, length - cab - 0.2)
            c.box(*rect(s0, s1, b0, b1), 0.3, height, "truck")
        else:
            s0, s1 = seg(length + 0.4, total - length - 0.4)
            c.box(*rect(s0, s1, b0 - 0.05, b1 + 0.05), 0.3, rng.uniform(*sizes["trailer"][2]), "trailer")
    elif kind == "construction_vehicle":  # chassis, cab and a raised arm
        c.box(*rect(a0, a1, b0, b1), 0.0, 1.4, kind)
        s0, s1 = seg(0.3 * length, 0.35 * length)
        c.box(*rect(s0, s1, b0, b0 + width * 0.6), 1.4, height, kind)
        s0, s1 = seg(0.0, 0.35 * length)
        c.box(*rect(s0, s1, b1 - 0.6, b1), 1.4, height + 0.6, kind)
    else:
        c.box(*rect(a0, a1, b0, b1), 0.0, height, kind)
    return True


def _try(attempts: int, place: Callable[[], bool]) -> bool:
    """Call ``place`` until it succeeds (a random spot was free), at most ``attempts`` times."""
    return any(place() for _ in range(attempts))


def _paint_traffic(c: _Canvas, lay: _Layout, rng: np.random.Generator) -> None:
    g = c.grid
    xmin, xmax = g.range_min[0] + 3, g.range_max[0] - 3

    def in_lane(kind: str, lane: tuple[float, int], lo: float = xmin, hi: float = xmax) -> bool:
        x = rng.uniform(lo, hi)
        if lay.near_cross(x - 6, x + 6, 0.0):
            return False
        return _vehicle(c, kind, x, lane[0] + rng.uniform(-0.3, 0.3), lane[1], rng)

    c.claim(-2.6, 2.0, -1.1, 1.1)  # the ego vehicle (rear axle at the origin) stays free
    lanes = lay.lane_centres()
    oncoming = [l for l in lanes if l[1] < 0]
    # the car ahead keeps a gap, so the front camera sees down the road
    _try(40, lambda: in_lane("car", lanes[0], 14.0, 30.0))
    c.claim(-10.0, 12.0, -lay.lane_w / 2 + 0.2, lay.lane_w / 2 - 0.2)

    # the guaranteed cast first, so every class appears in every scene
    _try(40, lambda: in_lane("bus", oncoming[int(rng.integers(len(oncoming)))]))
    _try(40, lambda: in_lane("truck+trailer", lanes[int(rng.integers(len(lanes)))]))
    for _ in range(int(rng.integers(4, 9))):
        kind = rng.choice(["car", "car", "car", "car", "truck", "bus"])
        _try(10, lambda: in_lane(str(kind), lanes[int(rng.integers(len(lanes)))]))

    strips = []
    if lay.park_right:
        strips.append((lay.road_lo + 1.2, 1))
    if lay.park_left:
        strips.append((lay.road_hi - 1.2, -1))

    def parked(kind: str) -> bool:
        y, heading = strips[int(rng.integers(len(strips)))]
        x = rng.uniform(xmin, xmax)
        if lay.near_cross(x - 3, x + 3, 0.0):
            return False
        return _vehicle(c, kind, x, y + rng.uniform(-0.15, 0.15), heading, rng)

    _try(40, lambda: parked("truck"))
    _try(40, lambda: parked("motorcycle"))
    for _ in range(int(rng.integers(5, 12))):
        _try(5, lambda: parked(str(rng.choice(["car", "car", "car", "car", "motorcycle"]))))

    if lay.cross_x is not None:  # cars waiting at the crossing, aligned with the cross street
        for _ in range(int(rng.integers(1, 4))):
            side = rng.choice([-1, 1])
            edge = lay.walk_hi if side > 0 else lay.walk_lo
            y = edge + side * rng.uniform(3, 20)
            x = lay.cross_x + side * -lay.cross_w / 4
            _vehicle(c, "car", x, y, -int(side), rng, along_y=True)

    def on_sidewalk(kind: str, lo_h: float = 0.25) -> bool:
        side = rng.choice([-1, 1])
        outer = lay.walk_hi if side > 0 else lay.walk_lo
        inner = lay.road_hi if side > 0 else lay.road_lo
        y = inner + (outer - inner) * rng.uniform(lo_h, 0.85)
        return _vehicle(c, kind, rng.uniform(xmin, xmax), y, 1, rng)

    _try(40, lambda: on_sidewalk("bicycle", 0.6))
    for _ in range(int(rng.integers(0, 3))):
        on_sidewalk("bicycle", 0.6)


def _paint_people(c: _Canvas, lay: _Layout, rng: np.random.Generator) -> None:
    g = c.grid

    def person(x: float, y: float) -> bool:
        half = rng.uniform(0.25, 0.35)
        if not c.is_free(x - half, x + half, y - half, y + half, 0.2):
            return False
        c.claim(x - half, x + half, y - half, y + half)
        c.box(x - half, x + half, y - half, y + half, 0.0, rng.uniform(1.55, 1.9), "pedestrian")
        return True

    def on_walk() -> bool:
        side = rng.choice([-1, 1])
        inner, outer = (lay.road_hi, lay.walk_hi) if side > 0 else (lay.road_lo, lay.walk_lo)
        return person(
            rng.uniform(g.range_min[0] + 1, g.range_max[0] - 1),
            rng.uniform(min(inner, outer) + 0.4, max(inner, outer) - 0.4),
        )

    _try(40, on_walk)
    for _ in range(int(rng.integers(4, 12))):
        on_walk()
    if lay.cross_x is not None:  # a few crossing the main road at the intersection
        x = lay.cross_x - lay.cross_w / 2 - lay.walk_w / 2
        for _ in range(int(rng.integers(1, 4))):
            person(x + rng.uniform(-1, 1), rng.uniform(lay.road_lo, lay.road_hi))


def _paint_works(c: _Canvas, lay: _Layout, rng: np.random.Generator) -> None:
    """A construction zone on the grass and sidewalk beside the road: barriers along the kerb,
    cones on the lane edge, a construction vehicle inside."""
    g = c.grid
    for _ in range(60):
        side = int(rng.choice([-1, 1]))
        length = rng.uniform(10, 16)
        x0 = rng.uniform(g.range_min[0] + 2, g.range_max[0] - 2 - length)
        x1 = x0 + length
        kerb = lay.road_hi if side > 0 else lay.road_lo
        outer = lay.green_hi if side > 0 else lay.green_lo
        if lay.near_cross(x0, x1, 1.0) or (x0 < 4 and x1 > -4):
            continue
        y0, y1 = sorted((kerb, outer))
        if not c.is_free(x0, x1, y0, y1, 0.0):
            continue
        c.claim(x0, x1, y0, y1)
        # barriers: 0.4 m wide, 1 m tall, in 2-3 m segments along the kerb
        yb = kerb + side * 0.4
        x = x0
        while x < x1 - 1.0:
            seg = min(rng.uniform(2.0, 3.0), x1 - x)
            c.box(x, x + seg, yb - 0.2, yb + 0.2, 0.0, 1.0, "barrier")
            x += seg + rng.uniform(0.3, 0.8)
        # cones 0.4 m square, 0.7 m tall, on the road just outside the barriers
        yc = kerb - side * 0.6
        for xc in np.arange(x0 + 0.5, x1, rng.uniform(1.6, 2.4)):
            c.box(xc - 0.2, xc + 0.2, yc - 0.2, yc + 0.2, 0.0, 0.7, "traffic_cone")
        c.taken[c.span(x0, x1, 0), c.span(min(yc, kerb) - 0.3, max(yc, kerb) + 0.3, 1)] = True
        # the machine sits in the middle of the zone
        c.taken[c.span(x0, x1, 0), c.span(y0, y1, 1)] = False
        yv = 0.5 * (kerb + outer) + side * 0.6
        c.ground(x0, x1, y0 + 0.4, y1 - 0.4, "other_flat" if rng.random() < 0.5 else "terrain")
        _vehicle(c, "construction_vehicle", 0.5 * (x0 + x1), yv, 1, rng)
        c.claim(x0, x1, y0, y1)
        return


# ---------------------------------------------------------------------------------------
# visibility


def _check_rays(
    occupied: torch.Tensor, grid: VoxelGrid, origins: torch.Tensor, ends: torch.Tensor, ends_name: str
) -> int:
    check_shape("occupied", occupied, list(grid.shape))
    if occupied.dtype != torch.bool:
        raise TypeError(f"occupied must be a bool tensor, got dtype {occupied.dtype}")
    r = check_shape("origins", origins, ["R", 3])["R"]
    check_shape(ends_name, ends, [r, 3])
    check_floating("origins", origins)
    check_floating(ends_name, ends)
    lo = torch.tensor(grid.range_min, dtype=origins.dtype)
    hi = torch.tensor(grid.range_max, dtype=origins.dtype)
    outside = ((origins < lo) | (origins >= hi)).any(dim=1)
    if bool(outside.any()):
        raise ValueError(
            f"origins must lie inside the grid {grid.range_min}..{grid.range_max} m; {int(outside.sum())} of {r} do not"
        )
    return r


class _Marcher:
    """Samples rays every half voxel through a copy of the grid padded with "outside" voxels
    (code 2; free is 0, occupied 1) as wide as one chunk of samples. A ray still alive at the
    start of a chunk is inside the grid, so no sample of the chunk leaves the padded volume
    and nothing needs clamping. Coordinates are in voxel units."""

    STEP = 0.5  # voxels between samples

    def __init__(self, occupied: torch.Tensor, grid: VoxelGrid, chunk_steps: int) -> None:
        self.grid, self.chunk = grid, chunk_steps
        self.pad = pad = int(math.ceil(chunk_steps * self.STEP)) + 2
        self.padded_shape = [n + 2 * pad for n in grid.shape]
        codes = torch.full(self.padded_shape, 2, dtype=torch.uint8)
        codes[pad:-pad, pad:-pad, pad:-pad] = occupied.to(torch.uint8)
        self.codes = codes.reshape(-1)
        self.ks = torch.arange(chunk_steps, dtype=torch.float32)
        self.lo = torch.tensor(grid.range_min, dtype=torch.float32)

    def to_voxels(self, points: torch.Tensor) -> torch.Tensor:
        return (points.float() - self.lo) / self.grid.voxel_size + self.pad

    def flat(self, ijk: torch.Tensor) -> torch.Tensor:
        """Flat index of integer voxel coordinates ``[..., 3]`` (padded volume)."""
        _, sy, sz = self.padded_shape
        return (ijk[..., 0] * sy + ijk[..., 1]) * sz + ijk[..., 2]

    def samples(self, origins: torch.Tensor, dirs: torch.Tensor, k0: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices and codes ``[A, S]`` of samples ``k0 .. k0 + S - 1`` (unit ``dirs``)."""
        t = (k0 + self.ks + 0.5) * self.STEP
        pts = origins[:, None, :] + dirs[:, None, :] * t[None, :, None]
        flat = self.flat(pts.to(torch.int32))  # truncation is floor: coordinates are positive
        return flat, self.codes[flat]

    def crop(self, padded_flat: torch.Tensor) -> torch.Tensor:
        p = self.pad
        return padded_flat.reshape(self.padded_shape)[p:-p, p:-p, p:-p].clone()


def visibility_mask(
    occupied: torch.Tensor,
    grid: VoxelGrid,
    origins: torch.Tensor,
    directions: torch.Tensor,
    chunk_steps: int = 24,
) -> torch.Tensor:
    """Voxels each ray crosses up to and including its first occupied voxel.

    Every ray is sampled every half voxel, ``t = (k + 0.5) · voxel_size / 2`` metres, until it
    hits an occupied voxel or leaves the grid; the sampled voxels are marked. A ray that
    grazes a voxel's corner between two samples does not mark it (a documented
    approximation of exact voxel traversal).

    Args:
        occupied: ``[X, Y, Z]`` bool, True where a voxel stops rays.
        grid: the voxel grid (metres).
        origins: ``[R, 3]`` ray origins inside the grid, metres, grid frame.
        directions: ``[R, 3]`` ray directions (any length; normalised here).
        chunk_steps: samples per ray evaluated at once (memory vs. Python overhead).

    Returns:
        ``[X, Y, Z]`` bool mask.
    """
    _check_rays(occupied, grid, origins, directions, "directions")
    norm = directions.float().norm(dim=1, keepdim=True)
    if bool((norm < 1e-9).any()):
        raise ValueError("directions must be non-zero vectors")
    m = _Marcher(occupied, grid, chunk_steps)
    seen = torch.zeros(m.codes.numel(), dtype=torch.bool)
    alive_o, alive_d = m.to_voxels(origins), directions.float() / norm
    k0 = 0
    while alive_o.shape[0]:
        flat, code = m.samples(alive_o, alive_d, k0)
        stop = code != 0
        stopped = stop.any(dim=1)
        first = torch.where(stopped, stop.to(torch.uint8).argmax(dim=1), chunk_steps)[:, None]
        # free samples before the first stop, and the stop itself when it is an occupied voxel
        keep = (m.ks[None, :] < first) | ((m.ks[None, :] == first) & (code == 1))
        seen[flat[keep]] = True
        alive_o, alive_d = alive_o[~stopped], alive_d[~stopped]
        k0 += chunk_steps
    return m.crop(seen)


def line_of_sight(
    occupied: torch.Tensor,
    grid: VoxelGrid,
    origins: torch.Tensor,
    targets: torch.Tensor,
    chunk_steps: int = 24,
) -> torch.Tensor:
    """Whether each target point is seen from its origin.

    The segment is sampled every half voxel; it is blocked by an occupied voxel that is not
    the target's voxel nor one of its 26 neighbours. Neighbours are ignored because they
    belong to the same surface: a ray grazing a flat ground towards one of its voxels always
    passes through the next voxel of that ground.

    Args:
        occupied: ``[X, Y, Z]`` bool.
        grid: the voxel grid (metres).
        origins: ``[R, 3]`` points inside the grid, metres, grid frame.
        targets: ``[R, 3]`` points inside the grid, metres, grid frame.
        chunk_steps: samples per ray evaluated at once.

    Returns:
        ``[R]`` bool.
    """
    r = _check_rays(occupied, grid, origins, targets, "targets")
    lo = torch.tensor(grid.range_min, dtype=targets.dtype)
    hi = torch.tensor(grid.range_max, dtype=targets.dtype)
    if bool(((targets < lo) | (targets >= hi)).any()):
        raise ValueError(f"targets must lie inside the grid {grid.range_min}..{grid.range_max} m")
    m = _Marcher(occupied, grid, chunk_steps)
    o, t = m.to_voxels(origins), m.to_voxels(targets)
    d = t - o
    length = d.norm(dim=1)
    d = d / length.clamp_min(1e-9)[:, None]
    goal = t.to(torch.int32)
    visible = torch.ones(r, dtype=torch.bool)
    alive = torch.arange(r)
    k0 = 0
    while alive.numel():
        ts = (k0 + m.ks + 0.5) * m.STEP
        ijk = (o[alive, None, :] + d[alive, None, :] * ts[None, :, None]).to(torch.int32)
        code = m.codes[m.flat(ijk)]
        near_goal = (ijk - goal[alive, None, :]).abs().amax(dim=-1) <= 1
        before = ts[None, :] < length[alive, None]
        blocked = (before & (code == 1) & ~near_goal).any(dim=1)
        visible[alive[blocked]] = False
        further = ~blocked & ((k0 + chunk_steps) * m.STEP < length[alive])
        alive = alive[further]
        k0 += chunk_steps
    return visible


def _surface(occupied: torch.Tensor) -> torch.Tensor:
    """Occupied voxels with a free 6-neighbour (outside the grid counts as free): the only
    ones a sensor can see."""
    padded = F.pad(occupied[None, None].float(), (1, 1, 1, 1, 1, 1))[0, 0] > 0
    x, y, z = occupied.shape
    inner = torch.ones_like(occupied)
    for axis, size in enumerate((x, y, z)):
        for shift in (0, 2):
            sl = [slice(1, 1 + x), slice(1, 1 + y), slice(1, 1 + z)]
            sl[axis] = slice(shift, shift + size)
            inner &= padded[tuple(sl)]
    return occupied & ~inner


def _seen_surfaces(
    occupied: torch.Tensor,
    grid: VoxelGrid,
    sensors: torch.Tensor,
    in_view,
    candidates: torch.Tensor,  # type: ignore[no-untyped-def]
) -> torch.Tensor:
    """``[X, Y, Z]`` voxels among ``candidates`` (bool, a subset of ``occupied``) with a line
    of sight from one of ``sensors`` ``[S, 3]`` (metres) to the voxel's point nearest to it
    (pulled 5 % inside the voxel). ``in_view(s, points [N, 3]) -> bool [N]`` says which
    points sensor ``s`` can see at all (its field of view)."""
    idx = (candidates & _surface(occupied)).nonzero()
    centres = torch.tensor(grid.range_min) + (idx.float() + 0.5) * grid.voxel_size
    half = 0.45 * grid.voxel_size
    origins, targets, which = [], [], []
    for s, sensor in enumerate(sensors.float()):
        near = centres + (sensor[None] - centres).clamp(-half, half)
        ok = in_view(s, near)
        origins.append(sensor[None].expand(int(ok.sum()), 3))
        targets.append(near[ok])
        which.append(ok.nonzero()[:, 0])
    out = torch.zeros_like(occupied)
    if sum(t.shape[0] for t in targets):
        vis = line_of_sight(occupied, grid, torch.cat(origins), torch.cat(targets))
        sel = idx[torch.cat(which)[vis]]
        out[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    return out


def camera_rays(
    intrinsics: torch.Tensor, cam_from_grid: torch.Tensor, image_size: tuple[int, int], stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through every ``stride``-th pixel centre of pinhole cameras.

    Args:
        intrinsics: ``[V, 3, 3]`` pixels.
        cam_from_grid: ``[V, 4, 4]`` grid-to-OpenCV-camera transforms.
        image_size: (height, width) in pixels.
        stride: pixel spacing of the rays.

    Returns:
        origins ``[R, 3]`` (camera centres, metres) and unit directions ``[R, 3]``, grid frame.
    """
    v = check_shape("intrinsics", intrinsics, ["V", 3, 3])["V"]
    check_shape("cam_from_grid", cam_from_grid, [v, 4, 4])
    h, w = image_size
    us = torch.arange(stride / 2, w, stride, dtype=torch.float64)
    vs = torch.arange(stride / 2, h, stride, dtype=torch.float64)
    uu, vv = torch.meshgrid(us, vs, indexing="xy")
    pix = torch.stack([uu.reshape(-1), vv.reshape(-1), torch.ones(uu.numel(), dtype=torch.float64)], -1)
    d_cam = pix @ torch.linalg.inv(intrinsics.double()).transpose(1, 2)  # [V, P, 3]
    rot = cam_from_grid[:, :3, :3].double()
    d_grid = d_cam @ rot  # R^T d, row vectors
    centres = -(rot.transpose(1, 2) @ cam_from_grid[:, :3, 3:].double())[..., 0]  # [V, 3]
    origins = centres[:, None, :].expand_as(d_grid)
    d_grid = d_grid / d_grid.norm(dim=-1, keepdim=True)
    return origins.reshape(-1, 3), d_grid.reshape(-1, 3)


def lidar_rays(origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays of the spinning LiDAR (:data:`LIDAR_BEAMS` beams, 1° azimuth) from each origin.

    Args:
        origins: ``[T, 3]`` sensor positions, metres, grid frame.

    Returns:
        origins ``[R, 3]`` and unit directions ``[R, 3]``.
    """
    elev = torch.deg2rad(torch.linspace(*LIDAR_ELEVATION_DEG, LIDAR_BEAMS, dtype=torch.float64))
    azim = torch.deg2rad(torch.arange(0.0, 360.0, LIDAR_AZIMUTH_STEP_DEG, dtype=torch.float64))
    e, a = torch.meshgrid(elev, azim, indexing="ij")
    d = torch.stack([e.cos() * a.cos(), e.cos() * a.sin(), e.sin()], -1).reshape(-1, 3)
    o = origins.double()[:, None, :].expand(-1, d.shape[0], -1).reshape(-1, 3)
    return o, d.repeat(origins.shape[0], 1)


def _ego_poses(rng: np.random.Generator, frames: int, key: int) -> torch.Tensor:
    """``[T, 4, 4]`` ego2global of a drive along +x at a constant speed; the global frame is an
    arbitrary map frame (yaw and offset drawn from the seed), as in nuScenes."""
    speed = rng.uniform(3.0, 9.0)  # m/s
    yaw = rng.uniform(-math.pi, math.pi)
    offset = np.array([rng.uniform(300, 2000), rng.uniform(300, 2000), 0.0])
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    poses = np.tile(np.eye(4), (frames, 1, 1))
    for i in range(frames):
        local = np.array([speed * FRAME_DT * (i - key), 0.0, 0.0])
        poses[i, :3, :3] = rot
        poses[i, :3, 3] = offset + rot @ local
    return torch.from_numpy(poses)


# ---------------------------------------------------------------------------------------
# public entry points


def make_scene(
    seed: int,
    grid: VoxelGrid | str = OCC3D_NUSCENES,
    *,
    ground_z: float = 0.0,
    frames: int = 5,
    camera_stride: int = 8,
    rig: tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None = None,
) -> Scene:
    """Generate a labelled driving scene from ``seed`` (deterministic, well under 2 s on CPU).

    Args:
        seed: any non-negative int.
        grid: a grid whose ``class_names`` include the nuScenes classes (Occ3D, SurroundOcc).
        ground_z: height of the ground plane in the grid frame, metres (0 for Occ3D's ego
            frame).
        frames: number of ego poses of the trajectory; the key frame is the middle one.
        camera_stride: pixel spacing (at 1600x900) of the rays that build ``mask_camera``.
        rig: ``(intrinsics [V, 3, 3], cam_from_grid [V, 4, 4], (height, width))`` of the
            cameras for ``mask_camera``; default :func:`gaussrender.geometry.rigs.nuscenes_rig`
            at full resolution.

    Returns:
        A :class:`Scene`.

    Raises:
        ValueError: the grid lacks a class the scene paints, or ``ground_z`` is outside it.

    Example:
        >>> from gaussrender.scene import make_scene
        >>> scene = make_scene(0)
        >>> scene.semantics.shape, scene.semantics.dtype
        (torch.Size([200, 200, 16]), torch.uint8)
    """
    grid = get_grid(grid)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    missing = [n for n in SCENE_CLASSES if n not in grid.class_names]
    if missing:
        raise ValueError(f"grid {grid.name!r} lacks the scene's classes {missing}; expected nuScenes class names")
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be an int >= 1, got {frames!r}")
    rng = np.random.default_rng(int(seed))
    canvas = _Canvas(grid, ground_z)
    lay = _layout(rng)
    _paint_ground(canvas, lay, rng)
    _paint_buildings(canvas, lay, rng)
    _paint_works(canvas, lay, rng)
    _paint_traffic(canvas, lay, rng)
    _paint_people(canvas, lay, rng)
    _paint_vegetation(canvas, lay, rng)

    semantics = torch.from_numpy(canvas.sem)
    occupied = semantics != grid.empty_index

    key = frames // 2
    poses = _ego_poses(rng, frames, key)
    if rig is None:
        from ..geometry.rigs import nuscenes_rig

        intrinsics, cam_from_grid, _ = nuscenes_rig((900, 1600))
        image_size = (900, 1600)
    else:
        intrinsics, cam_from_grid, image_size = rig
    # the rig is given relative to the ground; shift it with the grid's ground height
    lift = torch.eye(4, dtype=cam_from_grid.dtype)
    lift[2, 3] = -ground_z
    cam_from_grid = (cam_from_grid @ lift).float()
    o, d = camera_rays(intrinsics, cam_from_grid, image_size, camera_stride)
    mask_camera = visibility_mask(occupied, grid, o, d)
    # pixel rays thin out on the ground far away; test the line of sight of every occupied
    # surface voxel they missed, so that the visible surfaces are complete
    cams = Cameras(cam_from_grid, intrinsics.float(), image_size[1], image_size[0])

    def in_image(v: int, points: torch.Tensor) -> torch.Tensor:
        uv, z = cams[v].project(points)
        u, w = uv[0, :, 0], uv[0, :, 1]
        return (z[0] > cams.near) & (u >= 0) & (u < image_size[1]) & (w >= 0) & (w < image_size[0])

    mask_camera |= _seen_surfaces(occupied, grid, cams.world_from_cam[:, :3, 3], in_image, occupied & ~mask_camera)

    key_inv = torch.linalg.inv(poses[key])
    lidar_local = torch.tensor([*LIDAR_ORIGIN[:2], LIDAR_ORIGIN[2] + ground_z, 1.0], dtype=torch.float64)
    lidar_origins = ((key_inv @ poses) @ lidar_local)[:, :3]
    lo = torch.tensor(grid.range_min, dtype=torch.float64)
    hi = torch.tensor(grid.range_max, dtype=torch.float64)
    lidar_origins = lidar_origins[((lidar_origins > lo) & (lidar_origins < hi)).all(dim=1)]
    o, d = lidar_rays(lidar_origins)
    mask_lidar = visibility_mask(occupied, grid, o, d)
    lo_el, hi_el = (math.radians(a) for a in LIDAR_ELEVATION_DEG)

    def in_beams(s: int, points: torch.Tensor) -> torch.Tensor:
        rel = points.double() - key_origin[s]
        elevation = torch.atan2(rel[:, 2], rel[:, :2].norm(dim=1))
        return (elevation >= lo_el) & (elevation <= hi_el)

    # surfaces by line of sight from the key frame only (the costly part); the beams of the
    # other frames still add what they hit
    key_origin = lidar_origins[(lidar_origins[:, :2] ** 2).sum(dim=1).argmin()][None]
    mask_lidar |= _seen_surfaces(occupied, grid, key_origin, in_beams, occupied & ~mask_lidar)
    return Scene(semantics, mask_camera, mask_lidar, poses, key, grid, int(seed))


# classes a weak model confuses, by name; pairs absent from a grid are skipped
_CONFUSIONS = {
    "car": "truck",
    "truck": "car",
    "bus": "truck",
    "trailer": "truck",
    "construction_vehicle": "truck",
    "motorcycle": "bicycle",
    "bicycle": "motorcycle",
    "pedestrian": "barrier",
    "traffic_cone": "barrier",
    "barrier": "manmade",
    "driveable_surface": "other_flat",
    "other_flat": "driveable_surface",
    "sidewalk": "driveable_surface",
    "terrain": "vegetation",
    "vegetation": "manmade",
    "manmade": "vegetation",
}


def _smooth_field(shape: tuple[int, int], cells: int, generator: torch.Generator) -> torch.Tensor:
    """``[X, Y]`` smooth noise in [0, 1]: uniform values on a coarse lattice, bilinearly
    upsampled, so degradations come in patches rather than salt-and-pepper."""
    coarse = torch.rand(1, 1, cells, cells, generator=generator)
    return F.interpolate(coarse, size=shape, mode="bilinear", align_corners=True)[0, 0]


def degrade(
    labels: torch.Tensor,
    seed: int,
    grid: VoxelGrid | str = OCC3D_NUSCENES,
    *,
    confidence: float = 6.0,
    free_confidence: float = 10.0,
    noise: float = 1.0,
    morph_fraction: float = 0.25,
    confuse_fraction: float = 0.12,
) -> torch.Tensor:
    """A plausible imperfect prediction of ``labels``, as logits.

    Built in three steps, each in random smooth patches of the scene (so errors look like a
    model's, not like noise): objects grow by one voxel into free space in a
    ``morph_fraction`` of the area and shrink by one voxel in another ``morph_fraction``
    (thin objects may vanish); in a ``confuse_fraction`` of the area classes are swapped for
    a similar one (car → truck, sidewalk → driveable surface, ...). The logits are
    ``margin · onehot + noise · N(0, 1)`` with ``margin = free_confidence`` where free space is
    predicted and ``confidence · (1 - 0.3 · r / r_max)`` elsewhere: objects are confident
    near the ego (horizontal distance ``r`` from the frame's origin) and softer far away.
    Ignore voxels (255) are predicted free.

    Args:
        labels: ``[X, Y, Z]`` integer classes (``grid.ignore_index`` allowed).
        seed: seed of the torch generator.
        grid: the voxel grid.
        confidence: logit margin of a predicted occupied class near the ego.
        free_confidence: logit margin of predicted free space.
        noise: standard deviation of the Gaussian logit noise.
        morph_fraction: fraction of the area dilated, and of the area eroded, in [0, 0.5].
        confuse_fraction: fraction of the area whose classes are swapped, in [0, 1].

    Returns:
        ``[C, X, Y, Z]`` float32 logits.
    """
    grid = get_grid(grid)
    check_shape("labels", labels, list(grid.shape))
    check_integer("labels", labels)
    if not 0 <= morph_fraction <= 0.5:
        raise ValueError(f"morph_fraction must be in [0, 0.5], got {morph_fraction}")
    if not 0 <= confuse_fraction <= 1:
        raise ValueError(f"confuse_fraction must be in [0, 1], got {confuse_fraction}")
    lab = labels.long().clone()
    bad = (lab != grid.ignore_index) & ((lab < 0) | (lab >= grid.num_classes))
    if bool(bad.any()):
        raise ValueError(
            f"labels must be class indices in [0, {grid.num_classes}) or {grid.ignore_index}, "
            f"got values {sorted(set(lab[bad].tolist()))[:5]}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    empty, c = grid.empty_index, grid.num_classes
    lab[lab == grid.ignore_index] = empty
    xy = grid.shape[:2]

    def patches(fraction: float) -> torch.Tensor:
        field = _smooth_field(xy, 16, gen)
        thr = torch.quantile(field.flatten(), 1.0 - fraction) if fraction > 0 else torch.tensor(2.0)
        return (field >= thr)[:, :, None]

    # one-voxel morphology in x and y over the 8 neighbours; outside the grid counts as free
    x, y = lab.shape[:2]
    padded = F.pad(lab[None].float(), (0, 0, 1, 1, 1, 1), value=float(empty))[0].long()
    shifts = [padded[1 + dx : 1 + dx + x, 1 + dy : 1 + dy + y] for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
    # dilation: a free voxel takes the (largest) class of an occupied neighbour
    grown = torch.full_like(lab, -1)
    for s in shifts:
        grown = torch.maximum(grown, torch.where(s == empty, torch.full_like(s, -1), s))
    dilated = torch.where((lab == empty) & (grown >= 0), grown, lab)
    # erosion: an object voxel next to any other class turns free (ground classes stay)
    interior = torch.ones_like(lab, dtype=torch.bool)
    for s in shifts:
        interior &= s == lab
    is_ground = torch.zeros_like(lab, dtype=torch.bool)
    for name in ("driveable_surface", "other_flat", "sidewalk", "terrain"):
        if name in grid.class_names:
            is_ground |= lab == grid.class_names.index(name)
    eroded = torch.where(interior | is_ground, lab, torch.full_like(lab, empty))

    pred = lab.clone()
    dil, ero = patches(morph_fraction), patches(morph_fraction)
    pred = torch.where(dil.expand_as(pred), dilated, pred)
    pred = torch.where(ero.expand_as(pred) & ~dil.expand_as(pred), eroded, pred)
    swap = torch.arange(c)
    for a, b in _CONFUSIONS.items():
        if a in grid.class_names and b in grid.class_names:
            swap[grid.class_names.index(a)] = grid.class_names.index(b)
    conf = patches(confuse_fraction).expand_as(pred)
    pred = torch.where(conf, swap[pred], pred)

    r = grid.voxel_centers()[..., :2].norm(dim=-1)
    scale = confidence * (1.0 - 0.3 * r / r.max())  # [X, Y, Z]
    # free space is predicted with a larger margin, as trained models do: otherwise every free
    # voxel would keep a faint opacity and the prediction would render as fog
    scale = torch.where(pred == empty, torch.full_like(scale, free_confidence), scale)
    logits = noise * torch.randn((c,) + tuple(grid.shape), generator=gen)
    logits.scatter_add_(0, pred[None], scale[None])
    return logits
