"""The vectorised voxel traversal against a slow per-ray walk, plus hand-checked rays."""

from __future__ import annotations

import math

import pytest
import torch

from gaussrender.geometry import first_hits
from tests.metrics.reference import trace_ray


def _compare(occupied: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor) -> int:
    hits = first_hits(occupied, origins, directions)
    occ = occupied.numpy()
    n_hits = 0
    for g in range(occ.shape[0]):
        for i in range(origins.shape[0]):
            ref = trace_ray(occ[g], origins[i].tolist(), directions[i].tolist())
            if ref is None:
                assert not hits.hit[g, i], f"grid {g} ray {i}: fast path hit, reference did not"
                assert hits.voxel[g, i].tolist() == [-1, -1, -1]
                assert math.isnan(float(hits.distance[g, i]))
            else:
                n_hits += 1
                assert hits.hit[g, i], f"grid {g} ray {i}: reference hit {ref}, fast path did not"
                assert tuple(hits.voxel[g, i].tolist()) == ref[0]
                assert float(hits.distance[g, i]) == pytest.approx(ref[1], rel=1e-12, abs=1e-12)
    return n_hits


def test_random_grids_match_the_per_ray_walk():
    gen = torch.Generator().manual_seed(0)
    occupied = torch.rand(3, 13, 11, 7, generator=gen) < 0.2
    n = 400
    # Origins inside the grid and up to 4 voxels outside it, all directions.
    origins = torch.rand(n, 3, generator=gen, dtype=torch.float64) * torch.tensor([21.0, 19.0, 15.0]) - 4.0
    directions = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    n_hits = _compare(occupied, origins, directions)
    assert n_hits > 250  # the comparison is not vacuous


def test_axis_aligned_and_diagonal_rays_follow_the_tie_order():
    # Rays from voxel centres along axes and exact diagonals cross several boundaries at once;
    # the dvr kernel then steps z, then y, then x.
    gen = torch.Generator().manual_seed(1)
    occupied = torch.rand(2, 6, 6, 6, generator=gen) < 0.15
    dirs = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]
    starts = [(0.5, 0.5, 0.5), (2.5, 3.5, 1.5), (5.5, 5.5, 5.5), (3.0, 3.0, 3.0)]
    origins = torch.tensor([s for s in starts for _ in dirs], dtype=torch.float64)
    directions = torch.tensor(dirs * len(starts), dtype=torch.float64)
    assert _compare(occupied, origins, directions) > 50


def test_diagonal_tie_visits_z_then_y_then_x():
    occupied = torch.zeros(1, 3, 3, 3, dtype=torch.bool)
    origin = torch.tensor([[0.5, 0.5, 0.5]], dtype=torch.float64)
    direction = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    # At t = 0.5*sqrt(3) all three boundaries are crossed: z is stepped first, so (0, 0, 1) is
    # visited and (1, 0, 0), (0, 1, 0) are not.
    for voxel, visited in [((0, 0, 1), True), ((0, 1, 1), True), ((1, 0, 0), False), ((0, 1, 0), False)]:
        occ = occupied.clone()
        occ[0, voxel[0], voxel[1], voxel[2]] = True
        hits = first_hits(occ, origin, direction)
        assert bool(hits.hit[0, 0]) is visited, voxel
        if visited:
            # All voxels on this diagonal are left at the same distance, sqrt(3)/2.
            assert float(hits.distance[0, 0]) == pytest.approx(math.sqrt(3) / 2)


def test_known_wall_distance_and_origin_voxel():
    occupied = torch.zeros(1, 20, 4, 4, dtype=torch.bool)
    occupied[0, 12] = True  # a wall filling the plane x in [12, 13)
    origins = torch.tensor(
        [[2.25, 1.5, 1.5], [12.5, 1.5, 1.5], [30.0, 1.5, 1.5], [2.25, 1.5, 1.5]], dtype=torch.float64
    )
    directions = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [-2.0, 0, 0], [-1.0, 0, 0]], dtype=torch.float64)
    hits = first_hits(occupied, origins, directions)
    # The distance is where the ray leaves the wall voxel (13 - 2.25), not where it enters.
    assert hits.hit[0].tolist() == [True, True, True, False]
    assert hits.distance[0, :3].tolist() == pytest.approx([10.75, 0.5, 18.0])
    assert hits.voxel[0, 2].tolist() == [12, 1, 1]
    assert hits.voxel[0, 3].tolist() == [-1, -1, -1]


def test_rays_that_miss_the_grid_have_no_hit():
    occupied = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    origins = torch.tensor([[-1.0, -1.0, 2.0], [2.0, 2.0, 10.0]], dtype=torch.float64)
    directions = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    hits = first_hits(occupied, origins, directions)
    assert not hits.hit.any()


@pytest.mark.parametrize(
    "occupied, origins, directions, error, match",
    [
        (torch.zeros(1, 2, 2, 2), torch.zeros(1, 3), torch.ones(1, 3), TypeError, "occupied must be a bool"),
        (
            torch.zeros(2, 2, 2, dtype=torch.bool),
            torch.zeros(1, 3),
            torch.ones(1, 3),
            ValueError,
            "occupied must have shape",
        ),
        (
            torch.zeros(1, 2, 2, 2, dtype=torch.bool),
            torch.zeros(1, 2),
            torch.ones(1, 3),
            ValueError,
            "origins must have shape",
        ),
        (
            torch.zeros(1, 2, 2, 2, dtype=torch.bool),
            torch.zeros(2, 3),
            torch.ones(1, 3),
            ValueError,
            "directions must have shape",
        ),
        (
            torch.zeros(1, 2, 2, 2, dtype=torch.bool),
            torch.zeros(1, 3, dtype=torch.long),
            torch.ones(1, 3),
            TypeError,
            "origins must be a floating",
        ),
        (torch.zeros(1, 2, 2, 2, dtype=torch.bool), torch.zeros(1, 3), torch.zeros(1, 3), ValueError, "non-zero"),
        (
            torch.zeros(1, 2, 2, 2, dtype=torch.bool),
            torch.full((1, 3), float("nan")),
            torch.ones(1, 3),
            ValueError,
            "NaN",
        ),
        (torch.zeros(9, 2, 2, 2, dtype=torch.bool), torch.zeros(1, 3), torch.ones(1, 3), ValueError, "1 to 8 grids"),
    ],
)
def test_bad_input_is_named(occupied, origins, directions, error, match):
    with pytest.raises(error, match=match):
        first_hits(occupied, origins, directions)
