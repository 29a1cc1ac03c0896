"""Simulated LiDAR returns and per-pixel 2D targets of a label grid, against independent references."""

import math

import numpy as np
import pytest
import torch

from gaussrender.geometry.grid import OCC3D_NUSCENES, VoxelGrid
from gaussrender.geometry.raycast import first_hits
from gaussrender.geometry.rigs import nuscenes_rig
from gaussrender.scene import LIDAR_ORIGIN, camera_targets, first_entries, lidar_scan, make_scene
from gaussrender.scene.visibility import camera_rays, lidar_rays

SMALL = VoxelGrid(
    name="small",
    range_min=(-3.0, -2.5, -1.0),
    range_max=(3.0, 2.5, 3.0),
    voxel_size=0.5,
    shape=(12, 10, 8),
    class_names=("a", "b", "c", "free"),
    empty_index=3,
)


def _segments_brute(occ: np.ndarray, o: np.ndarray, d: np.ndarray, size: float, lo: np.ndarray):
    """First occupied voxel and entry distance (metres) of one ray: every boundary crossing
    along each axis, sorted; the voxel of each piece is read at its midpoint. Float64 loop."""
    d = d / np.linalg.norm(d)
    shape = np.array(occ.shape)
    hi = lo + shape * size
    ts = [0.0]
    for k in range(3):
        if d[k] != 0:
            for i in range(shape[k] + 1):
                t = (lo[k] + i * size - o[k]) / d[k]
                if t > 0:
                    ts.append(t)
    ts = sorted(ts)
    for a, b in zip(ts[:-1], ts[1:]):
        if b - a <= 0:
            continue
        mid = o + (a + b) / 2 * d
        if np.any(mid < lo) or np.any(mid >= hi):
            continue
        v = np.floor((mid - lo) / size).astype(int)
        if occ[tuple(v)]:
            return tuple(v), a
    return None, None


def test_first_entries_match_a_segment_by_segment_reference():
    rng = np.random.default_rng(0)
    occ = rng.random(SMALL.shape) < 0.12
    lo = np.array(SMALL.range_min)
    origins = lo + rng.random((300, 3)) * np.array(SMALL.shape) * SMALL.voxel_size
    origins[:40] = lo - 1.0 - rng.random((40, 3))  # outside the grid: advanced to its box first
    dirs = rng.normal(size=(300, 3))
    dirs[:10, 2] = 0.0  # parallel to a face
    hit, voxel, dist = first_entries(torch.from_numpy(occ), SMALL, torch.from_numpy(origins), torch.from_numpy(dirs))
    n_hit = 0
    for r in range(300):
        v, t = _segments_brute(occ, origins[r], dirs[r], SMALL.voxel_size, lo)
        assert bool(hit[r]) == (v is not None), r
        if v is not None:
            n_hit += 1
            assert tuple(voxel[r].tolist()) == v, r
            assert float(dist[r]) == pytest.approx(t, abs=1e-9), r
        else:
            assert voxel[r].tolist() == [-1, -1, -1] and math.isnan(float(dist[r]))
    assert 100 < n_hit < 300


def test_lidar_scan_points_lie_in_the_hit_voxels_and_agree_with_first_hits():
    scene = make_scene(0, frames=1, camera_stride=32)
    points, labels = lidar_scan(scene.semantics, scene.grid)
    assert points.dtype == torch.float64 and labels.dtype == torch.uint8 and len(points) > 5000
    idx, inside = scene.grid.voxel_index(points)
    assert bool(inside.all())
    voxel_class = scene.semantics[idx[:, 0], idx[:, 1], idx[:, 2]]
    assert bool((voxel_class != scene.grid.empty_index).all())
    assert torch.equal(voxel_class.to(torch.uint8), labels)
    # RayIoU's traversal (first_hits) on the same rays: same voxel; it reports the exit distance
    o, d = lidar_rays(torch.tensor([LIDAR_ORIGIN], dtype=torch.float64))
    lo = torch.tensor(scene.grid.range_min, dtype=torch.float64)
    ref = first_hits((scene.semantics != scene.grid.empty_index)[None], (o - lo) / scene.grid.voxel_size, d)
    assert int(ref.hit.sum()) == len(points)
    assert torch.equal(ref.voxel[0][ref.hit[0]], idx)
    entry = (points - o[ref.hit[0]]).norm(dim=1)
    exit_ = ref.distance[0][ref.hit[0]] * scene.grid.voxel_size
    assert bool((entry <= exit_ + 1e-9).all())
    assert bool((exit_ - entry <= math.sqrt(3) * scene.grid.voxel_size + 1e-9).all())
    # several classes are seen, ground (driveable surface) most of all
    assert len(torch.unique(labels)) >= 4


def test_camera_targets_see_a_wall_at_its_analytic_depth():
    # one wall of "a" voxels filling the plane x index 9 (x in [1.5, 2.0) m); a camera at
    # (-1, 0, 0) looking along +x: every pixel that reaches the wall sees its face at camera
    # depth 1.5 - (-1) = 2.5 m
    sem = torch.full(SMALL.shape, SMALL.empty_index, dtype=torch.uint8)
    sem[9] = 0
    cam_from_grid = torch.zeros(1, 4, 4, dtype=torch.float64)
    cam_from_grid[0, :3, :3] = torch.tensor([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])  # x right = -y, y down = -z
    cam_from_grid[0, :3, 3] = -(cam_from_grid[0, :3, :3] @ torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))
    cam_from_grid[0, 3, 3] = 1.0
    k = torch.tensor([[[8.0, 0, 8], [0, 8, 6], [0, 0, 1]]], dtype=torch.float64)
    depth, cls = camera_targets(sem, SMALL, k, cam_from_grid, (12, 16))
    assert depth.shape == (1, 12, 16) and cls.dtype == torch.uint8
    # the wall spans y in [-2.5, 2.5) and z in [-1, 3); at 2.5 m every column stays within
    # |y| <= 2.34 m, and row v meets the wall's plane at z = -(v + 0.5 - 6) / 8 * 2.5: the lowest
    # rows would meet it below the grid's floor (z < -1), so they leave the grid and see nothing
    v_centres = torch.arange(12, dtype=torch.float64) + 0.5
    z_at_wall = -(v_centres - 6.0) / 8.0 * 2.5
    rows_on_wall = (z_at_wall >= -1.0) & (z_at_wall < 3.0)
    assert bool(rows_on_wall.any()) and not bool(rows_on_wall.all())
    assert torch.allclose(depth[0][rows_on_wall], torch.full_like(depth[0][rows_on_wall], 2.5), atol=1e-12)
    assert bool((cls[0][rows_on_wall] == 0).all())
    assert bool((depth[0][~rows_on_wall] == 0).all()) and bool((cls[0][~rows_on_wall] == 255).all())


def test_camera_targets_agree_with_first_hits_on_a_scene():
    scene = make_scene(1, frames=1, camera_stride=32)
    k, t, _ = nuscenes_rig((24, 44), dtype=torch.float64)
    depth, cls = camera_targets(scene.semantics, scene.grid, k, t, (24, 44))
    assert depth.dtype == torch.float64 and 0.5 < float((depth > 0).double().mean()) < 1.0
    o, d = camera_rays(k, t, (24, 44), 1)
    lo = torch.tensor(scene.grid.range_min, dtype=torch.float64)
    ref = first_hits((scene.semantics != scene.grid.empty_index)[None], (o - lo) / scene.grid.voxel_size, d)
    hit = ref.hit[0].view(6, 24, 44)
    assert torch.equal(hit, depth > 0)
    v = ref.voxel[0][ref.hit[0]]
    assert torch.equal(cls[hit], scene.semantics[v[:, 0], v[:, 1], v[:, 2]].to(torch.uint8))
    # depth = entry distance x the ray's cosine to the optical axis; the exit is at most a voxel diagonal further
    cos = (d.view(6, -1, 3) * t[:, None, 2, :3]).sum(-1).view(6, 24, 44)
    exit_depth = (ref.distance[0].view(6, 24, 44) * scene.grid.voxel_size * cos)[hit]
    assert bool((depth[hit] <= exit_depth + 1e-9).all())
    assert bool((exit_depth - depth[hit] <= math.sqrt(3) * scene.grid.voxel_size + 1e-9).all())


def test_bad_semantics_are_refused():
    with pytest.raises(ValueError, match="semantics"):
        lidar_scan(torch.zeros(3, 3, 3, dtype=torch.uint8), OCC3D_NUSCENES)
    with pytest.raises(TypeError, match="semantics"):
        lidar_scan(torch.zeros(OCC3D_NUSCENES.shape), OCC3D_NUSCENES)
