"""The procedural scene: plausible, deterministic, and its visibility masks are what they claim.

The ray marcher is checked against a float64 reference that walks each ray in tiny steps in
plain Python; the scene against what a street must look like (objects on the ground, every
class present, road along x, the ego's spot free).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.scene import Scene, camera_rays, degrade, lidar_rays, line_of_sight, make_scene, visibility_mask

GRID = gr.OCC3D_NUSCENES
NAMES = GRID.class_names
EMPTY = GRID.empty_index
SEEDS = (0, 1, 2, 7)

# the scene's cast: every nuScenes class but "others"; every typical seed must show all of them
REQUIRED = NAMES[1:17]


@pytest.fixture(scope="module")
def scenes() -> dict[int, Scene]:
    return {s: make_scene(s) for s in SEEDS}


def test_layout_matches_occ3d_labels(scenes) -> None:
    s = scenes[0]
    assert s.semantics.shape == GRID.shape and s.semantics.dtype == torch.uint8
    assert s.mask_camera.shape == GRID.shape and s.mask_camera.dtype == torch.bool
    assert s.mask_lidar.shape == GRID.shape and s.mask_lidar.dtype == torch.bool
    assert int(s.semantics.max()) <= EMPTY


@pytest.mark.parametrize("seed", SEEDS)
def test_every_listed_class_is_present(scenes, seed: int) -> None:
    counts = torch.bincount(scenes[seed].semantics.flatten().long(), minlength=GRID.num_classes)
    missing = [n for n in REQUIRED if counts[NAMES.index(n)] == 0]
    assert not missing, f"seed {seed} lacks {missing}"


def test_class_histogram_is_plausible(scenes) -> None:
    # mostly free space, as in real Occ3D frames (the shared real sample: 95 % free)
    for seed, s in scenes.items():
        counts = torch.bincount(s.semantics.flatten().long(), minlength=GRID.num_classes).double()
        frac = counts / counts.sum()
        assert 0.85 < frac[EMPTY] < 0.97, (seed, float(frac[EMPTY]))
        ground = sum(counts[NAMES.index(n)] for n in ("driveable_surface", "sidewalk", "terrain", "other_flat"))
        # the ground layer covers most of the 200 x 200 columns
        assert 0.6 * 200 * 200 < ground < 1.3 * 200 * 200
        # big static stuff dominates small objects; a car is far larger than a traffic cone
        assert counts[NAMES.index("manmade")] > counts[NAMES.index("car")] > counts[NAMES.index("traffic_cone")]
        assert counts[NAMES.index("bus")] > 100  # a bus is ~11 m x 2.5 m x 3.2 m: hundreds of voxels


def test_deterministic_per_seed_and_varies_across_seeds() -> None:
    a, b = make_scene(3), make_scene(3)
    assert torch.equal(a.semantics, b.semantics)
    assert torch.equal(a.mask_camera, b.mask_camera) and torch.equal(a.mask_lidar, b.mask_lidar)
    assert torch.equal(a.ego_poses, b.ego_poses)
    assert not torch.equal(a.semantics, make_scene(4).semantics)


def test_ground_is_at_z_index_2_and_objects_stand_on_it(scenes) -> None:
    ground_ids = [NAMES.index(n) for n in ("driveable_surface", "sidewalk", "other_flat")]
    object_ids = [NAMES.index(n) for n in ("car", "truck", "bus", "pedestrian", "barrier", "traffic_cone", "trailer")]
    for s in scenes.values():
        sem = s.semantics.long()
        # paved classes only ever occupy the ground layer
        for g in ground_ids:
            assert set(torch.nonzero(sem == g)[:, 2].unique().tolist()) == {2}
        # every object column starts right above the ground (z index 3)
        is_obj = torch.zeros_like(sem, dtype=torch.bool)
        for o in object_ids:
            is_obj |= sem == o
        cols = is_obj.any(dim=2)
        lowest = torch.where(is_obj, torch.arange(16), torch.full_like(sem, 99)).amin(dim=2)[cols]
        assert (lowest == 3).all()
        assert (sem[..., 2][cols] != EMPTY).all()  # and there is ground under it
        assert not (sem[..., :2] == torch.tensor(object_ids)[:, None, None, None]).any()


def test_road_runs_along_x_and_ego_spot_is_free(scenes) -> None:
    road = NAMES.index("driveable_surface")
    for s in scenes.values():
        sem = s.semantics.long()
        # the ego's lane column (y = 0) is road over the whole x range, except where objects stand
        row = sem[:, 100, 2]
        assert (row == road).float().mean() > 0.95
        # the ego vehicle itself (rear axle at the origin, ~4.6 m x 2 m) is free space
        assert (sem[95:104, 98:102, 3:] == EMPTY).all()


def test_masks_are_plausible(scenes) -> None:
    for s in scenes.values():
        occ = s.semantics != EMPTY
        cam, lidar = s.mask_camera, s.mask_lidar
        # real Occ3D frames: ~16 % of the voxels observed by the cameras (shared sample: 100520)
        assert 0.08 < cam.float().mean() < 0.5
        assert 0.08 < lidar.float().mean() < 0.5
        # the cameras see the road ahead, not the voxels under the ground nor the far corners
        # (the ego lane is kept clear for 12 m; the ground shows from ~6 m on)
        assert cam[116:128, 98:102, 2].all()
        assert not cam[..., :2].any()
        # both free and occupied voxels are seen, and occlusion hides some of each
        assert (cam & ~occ).sum() > 0 and (cam & occ).sum() > 0
        assert (occ & ~cam).sum() > 0 and (~occ & ~cam).sum() > 0
        # building interiors (free voxels under a manmade roof) stay hidden: rays stop at the
        # walls
        manmade = (s.semantics == NAMES.index("manmade")).int()
        roofed = manmade.flip(2).cumsum(2).flip(2) - manmade > 0  # manmade somewhere above
        interior = ~occ & roofed
        assert interior.any() and not (interior & cam).any() and not (interior & lidar).any()


def test_ego_poses_drive_along_x() -> None:
    s = make_scene(5)
    assert s.ego_poses.shape == (5, 4, 4) and s.ego_poses.dtype == torch.float64
    assert torch.allclose(s.ego_poses[s.key_frame, 3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64))
    origins = s.ego_origins()
    assert torch.allclose(origins[s.key_frame], torch.zeros(3, dtype=torch.float64), atol=1e-9)
    steps = origins[1:] - origins[:-1]
    assert (steps[:, 0] > 1.0).all() and torch.allclose(steps[:, 1:], torch.zeros_like(steps[:, 1:]), atol=1e-9)


def test_fast() -> None:
    start = time.process_time()
    make_scene(11)
    # 0.8-1.6 s of CPU time (one thread) on a busy shared machine, well under 2 s idle; CPU
    # time, with headroom, so that a loaded machine does not fail it
    assert time.process_time() - start < 3.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="seed"):
        make_scene(-1)
    with pytest.raises(ValueError, match="lacks the scene's classes"):
        make_scene(0, gr.SSCBENCH_KITTI360)
    with pytest.raises(ValueError, match="ground_z"):
        make_scene(0, ground_z=100.0)


# ---- exact traversal against a slow float64 reference ----------------------------------


def _pieces(occ_shape, lo: np.ndarray, vs: float, origin: np.ndarray, d: np.ndarray, t_stop: float | None = None):
    """The voxels one ray crosses, in order, with the distance (voxel units) where it enters
    each: every parameter where the ray meets a voxel face is listed, sorted, and the voxel
    holding the midpoint of each piece is read off with floor(). Independent of the stepping
    scheme of :class:`VoxelWalk` (no per-axis running maxima, no tie order)."""
    o = (origin - lo) / vs
    d = d / np.linalg.norm(d)
    size = np.array(occ_shape, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ta, tb = -o / d, (size - o) / d
    t_end = float(np.where(d != 0, np.maximum(ta, tb), np.inf).min())
    if t_stop is not None:
        t_end = min(t_end, t_stop)
    ts = [0.0, t_end]
    for a in range(3):
        if d[a] == 0:
            continue
        k = np.arange(0, occ_shape[a] + 1, dtype=np.float64)
        t = (k - o[a]) / d[a]
        ts += [float(v) for v in t if 0 < v < t_end]
    ts = sorted(ts)
    out = []
    for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
        if t1 - t0 > 1e-12:
            idx = tuple(int(v) for v in np.floor(o + d * 0.5 * (t0 + t1)))
            if all(0 <= i < n for i, n in zip(idx, occ_shape, strict=True)):
                out.append((idx, t0))
    return out


def _reference_visibility(occ: np.ndarray, lo: np.ndarray, vs: float, origin: np.ndarray, d: np.ndarray) -> set:
    """Voxels of one ray up to and including the first occupied one."""
    seen = set()
    for idx, _ in _pieces(occ.shape, lo, vs, origin, d):
        seen.add(idx)
        if occ[idx]:
            break
    return seen


def _reference_line_of_sight(occ: np.ndarray, lo: np.ndarray, vs: float, o: np.ndarray, t: np.ndarray) -> bool:
    goal = np.floor((t - lo) / vs).astype(int)
    length = np.linalg.norm(t - o) / vs
    for idx, _ in _pieces(occ.shape, lo, vs, o, t - o, length):
        if occ[idx] and np.abs(np.array(idx) - goal).max() > 1:
            return False
    return True


SMALL = gr.VoxelGrid(
    name="small",
    range_min=(-4.0, -4.0, -1.0),
    range_max=(4.0, 4.0, 2.2),
    voxel_size=0.4,
    shape=(20, 20, 8),
    class_names=GRID.class_names,
    empty_index=EMPTY,
)


def test_visibility_mask_matches_reference_on_random_grids() -> None:
    gen = torch.Generator().manual_seed(0)
    lo = np.array(SMALL.range_min)
    for trial in range(3):
        occ = torch.rand(SMALL.shape, generator=gen) < 0.08
        origins = (torch.rand(40, 3, generator=gen) * 0.8 + 0.1) * torch.tensor(SMALL.extent) + torch.tensor(
            SMALL.range_min
        )
        dirs = torch.randn(40, 3, generator=gen)
        got = visibility_mask(occ, SMALL, origins, dirs)
        want = np.zeros(SMALL.shape, dtype=bool)
        for o, d in zip(origins.double().numpy(), dirs.double().numpy()):
            for idx in _reference_visibility(occ.numpy(), lo, SMALL.voxel_size, o, d):
                want[idx] = True
        assert (got.numpy() == want).all(), trial
        assert want.sum() > 40  # not vacuous


def test_line_of_sight_matches_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    lo = np.array(SMALL.range_min)
    occ = torch.rand(SMALL.shape, generator=gen) < 0.1
    scale = torch.tensor(SMALL.extent) * 0.98
    o = torch.rand(200, 3, generator=gen) * scale + torch.tensor(SMALL.range_min) + 0.01
    t = torch.rand(200, 3, generator=gen) * scale + torch.tensor(SMALL.range_min) + 0.01
    got = line_of_sight(occ, SMALL, o, t)
    want = [
        _reference_line_of_sight(occ.numpy(), lo, SMALL.voxel_size, a, b)
        for a, b in zip(o.double().numpy(), t.double().numpy())
    ]
    assert got.tolist() == want
    assert 0 < int(got.sum()) < 200  # both outcomes occur


def test_wall_hides_what_is_behind_it() -> None:
    occ = torch.zeros(SMALL.shape, dtype=torch.bool)
    occ[12, :, :] = True  # a wall across x at x index 12 (x in [0.8, 1.2) m)
    o = torch.tensor([[-2.0, 0.1, 0.5]])
    mask = visibility_mask(occ, SMALL, o, torch.tensor([[1.0, 0.0, 0.0]]))
    assert mask[12, 10, 3] and not mask[13:, 10, 3].any() and mask[5:12, 10, 3].all()
    targets = torch.tensor([[1.0, 0.1, 0.5], [3.0, 0.1, 0.5], [0.0, 0.1, 0.5]])
    assert line_of_sight(occ, SMALL, o.expand(3, 3), targets).tolist() == [True, False, True]


def test_camera_and_lidar_rays() -> None:
    k = torch.tensor([[[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]])
    pose = gr.look_at(torch.tensor([0.0, 0.0, 1.5]), torch.tensor([10.0, 0.0, 1.5]))[None]
    o, d = camera_rays(k, pose, (80, 100), 10)
    assert o.shape == d.shape == (8 * 10, 3)
    assert torch.allclose(o, torch.tensor([0.0, 0.0, 1.5], dtype=torch.float64).expand_as(o), atol=1e-6)
    assert torch.allclose(d.norm(dim=1), torch.ones(80, dtype=torch.float64))
    assert (d[:, 0] > 0.8).all()  # all look forward (+x)
    o, d = lidar_rays(torch.zeros(2, 3))
    assert o.shape == (2 * 32 * 360, 3)
    elev = torch.rad2deg(torch.asin(d[:, 2]))
    assert math.isclose(float(elev.min()), -30.67, abs_tol=1e-6) and math.isclose(
        float(elev.max()), 10.67, abs_tol=1e-6
    )


def test_ray_inputs_are_checked() -> None:
    occ = torch.zeros(SMALL.shape, dtype=torch.bool)
    with pytest.raises(ValueError, match="inside the grid"):
        visibility_mask(occ, SMALL, torch.tensor([[10.0, 0, 0]]), torch.tensor([[1.0, 0, 0]]))
    with pytest.raises(TypeError, match="bool"):
        visibility_mask(occ.float(), SMALL, torch.zeros(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="directions"):
        visibility_mask(occ, SMALL, torch.zeros(1, 3), torch.ones(2, 3))


# ---- the degraded prediction -------------------------------------------------------------


def test_degrade_is_a_plausible_prediction(scenes) -> None:
    labels = scenes[0].semantics.long()
    logits = degrade(labels, 0)
    assert logits.shape == (GRID.num_classes, *GRID.shape) and logits.dtype == torch.float32
    pred = logits.argmax(0)
    occ, pocc = labels != EMPTY, pred != EMPTY
    # mostly right, clearly not perfect
    agree = float((pred == labels).float().mean())
    assert 0.9 < agree < 0.999
    inter, union = (occ & pocc).sum(), (occ | pocc).sum()
    iou = float(inter) / float(union)
    assert 0.5 < iou < 0.98
    # errors of every kind: missed, hallucinated and mislabelled occupied voxels
    assert (occ & ~pocc).any() and (~occ & pocc).any() and (occ & pocc & (pred != labels)).any()
    # free space predicted with confidence, so it renders transparent
    p_empty = torch.softmax(logits[:, ~pocc][:, :5000], dim=0)[EMPTY]
    assert float(p_empty.median()) > 0.99
    # deterministic
    assert torch.equal(logits, degrade(labels, 0)) and not torch.equal(logits, degrade(labels, 1))


def test_degrade_treats_ignore_as_free_and_checks_inputs() -> None:
    labels = torch.full(GRID.shape, EMPTY, dtype=torch.long)
    labels[100:110, 100:110, 2] = NAMES.index("driveable_surface")
    labels[0:10, 0:10, :] = 255
    pred = degrade(labels, 0, noise=0.0).argmax(0)
    assert (pred[0:10, 0:10, :] == EMPTY).all()
    with pytest.raises(ValueError, match="labels"):
        degrade(torch.full((10, 10, 10), 1), 0)
    with pytest.raises(TypeError, match="integer"):
        degrade(labels.float(), 0)
    bad = labels.clone()
    bad[0, 0, 0] = 40
    with pytest.raises(ValueError, match="class indices"):
        degrade(bad, 0)
    with pytest.raises(ValueError, match="morph_fraction"):
        degrade(labels, 0, morph_fraction=0.9)
