"""The scene's parts, painted onto a :class:`~.canvas.Canvas`: ground, buildings, works,
traffic, people and vegetation (see :mod:`gaussrender.scene` for the whole picture).

:func:`paint_street` runs them in a fixed order from one seeded ``numpy.random.Generator``, so
a seed always gives the same scene. Objects claim their footprint on the canvas first and
are skipped where it is taken, so they never overlap.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .canvas import Canvas, StreetLayout, street_layout

__all__ = ["paint_street"]


def paint_street(c: Canvas, rng: np.random.Generator) -> StreetLayout:
    """Draw a street layout and paint every part of the scene onto ``c``; returns the layout."""
    lay = street_layout(rng)
    _paint_ground(c, lay, rng)
    _paint_buildings(c, lay, rng)
    _paint_works(c, lay, rng)
    _paint_traffic(c, lay, rng)
    _paint_people(c, lay, rng)
    _paint_vegetation(c, lay, rng)
    return lay


def _paint_ground(c: Canvas, lay: StreetLayout, rng: np.random.Generator) -> None:
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


def _paint_buildings(c: Canvas, lay: StreetLayout, rng: np.random.Generator) -> None:
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


def _tree(c: Canvas, x: float, y: float, rng: np.random.Generator) -> None:
    radius = rng.uniform(1.2, 2.4)
    centre = rng.uniform(3.0, 4.4)
    c.box(x - 0.2, x + 0.2, y - 0.2, y + 0.2, 0.0, centre - 0.5 * radius, "vegetation", free_only=True)
    c.ellipsoid(x, y, centre, radius, radius * rng.uniform(0.8, 1.1), "vegetation")
    c.claim(x - 0.4, x + 0.4, y - 0.4, y + 0.4)


def _paint_vegetation(c: Canvas, lay: StreetLayout, rng: np.random.Generator) -> None:
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
    c: Canvas, kind: str, x: float, y: float, heading: int, rng: np.random.Generator, along_y: bool = False
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


def _paint_traffic(c: Canvas, lay: StreetLayout, rng: np.random.Generator) -> None:
    g = c.grid
    xmin, xmax = g.range_min[0] + 3, g.range_max[0] - 3

    def in_lane(kind: str, lane: tuple[float, int], lo: float = xmin, hi: float = xmax) -> bool:
        x = rng.uniform(lo, hi)
        if lay.near_cross(x - 6, x + 6, 0.0):
            return False
        return _vehicle(c, kind, x, lane[0] + rng.uniform(-0.3, 0.3), lane[1], rng)

    c.claim(-2.6, 2.0, -1.1, 1.1)  # the ego vehicle (rear axle at the origin) stays free
    lanes = lay.lane_centres()
    oncoming = [lane for lane in lanes if lane[1] < 0]
    # the car ahead keeps a gap, so the front camera sees down the road
    _try(40, lambda: in_lane("car", lanes[0], 14.0, 30.0))
    c.claim(-10.0, 12.0, -lay.lane_w / 2 + 0.2, lay.lane_w / 2 - 0.2)

    # the guaranteed cast first, so every class appears in every scene
    _try(40, lambda: in_lane("bus", oncoming[int(rng.integers(len(oncoming)))]))
    _try(40, lambda: in_lane("truck+trailer", lanes[int(rng.integers(len(lanes)))]))
    for _ in range(int(rng.integers(4, 9))):
        kind = rng.choice(["car", "car", "car", "car", "truck", "bus"])

        # kind bound as a default: _try calls place at once, but the binding makes that explicit
        def place(kind: str = str(kind)) -> bool:
            return in_lane(kind, lanes[int(rng.integers(len(lanes)))])

        _try(10, place)

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


def _paint_people(c: Canvas, lay: StreetLayout, rng: np.random.Generator) -> None:
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


def _paint_works(c: Canvas, lay: StreetLayout, rng: np.random.Generator) -> None:
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
