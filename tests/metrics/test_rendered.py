"""RenderedViewMetrics: hand-built scenes with known answers, a float64 re-derivation through the
dense oracle renderer (with the release's centre culling done here), both conventions, and
additivity of the states (batches, merges, two gloo processes)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import gaussrender as gr
from gaussrender.metrics import RenderedViewMetrics
from tests.render.oracle import oracle_render
from tests.two_processes import run_two

FREE, WALL, CAR, ROAD = 0, 1, 2, 3
GRID = gr.VoxelGrid(
    name="toy",
    range_min=(-2.0, -4.0, -3.0),
    range_max=(8.0, 4.0, 3.0),
    voxel_size=0.5,
    shape=(20, 16, 12),
    class_names=("free", "wall", "car", "road"),
    empty_index=FREE,
    gaussian_scale=0.3,
)
H, W, F = 12, 16, 16.0
K = torch.tensor([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])
# camera at the origin looking along grid +x: camera x = -grid y, camera y = -grid z, z = grid x
POSE = torch.tensor([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
BEV = 48  # small BEV keeps the tests fast


def _x_index(x: float) -> int:
    return round((x - GRID.range_min[0]) / GRID.voxel_size - 0.5)


def _empty(b: int = 1) -> torch.Tensor:
    return torch.full((b, *GRID.shape), FREE, dtype=torch.long)


def _wall(x: float, label: int = WALL) -> torch.Tensor:
    labels = _empty()
    labels[0, _x_index(x)] = label  # every y and z: a plane at grid x
    return labels


def _metric(**kw) -> RenderedViewMetrics:
    kw.setdefault("bev_size", BEV)
    kw.setdefault("backend", "torch")
    return RenderedViewMetrics(GRID, **kw)


def _update(m, pred, target, k=K, pose=POSE, size=(H, W)):
    b = pred.shape[0]
    m.update(pred, target, intrinsics=k.expand(b, 1, 3, 3), cam_from_grid=pose.expand(b, 1, 4, 4), image_size=size)


def _oracle(labels: torch.Tensor, k, pose, width, height, centre_cull: bool, target: torch.Tensor | None = None):
    """Class map [V,H,W] and depth [V,H,W] in float64 from the dense oracle.

    Gaussians are built here: non-empty voxels (not ignore, and where ``target`` is given,
    not where the target is ignore), one-hot, opacity 1. With ``centre_cull`` a view keeps
    only Gaussians whose centre is in front (z > 0.2) and projects strictly inside the image.
    """
    keep = (labels != FREE) & (labels != GRID.ignore_index)
    if target is not None:
        keep &= target != GRID.ignore_index
    idx = keep.nonzero().double()
    means = torch.tensor(GRID.range_min, dtype=torch.float64) + (idx + 0.5) * GRID.voxel_size
    feats = torch.nn.functional.one_hot(labels[keep], GRID.num_classes).double()
    bg = torch.zeros(GRID.num_classes, dtype=torch.float64)
    bg[FREE] = 1.0
    classes, depths, margins = [], [], []
    for v in range(pose.shape[0]):
        sel = torch.ones(means.shape[0], dtype=torch.bool)
        if centre_cull:
            cam = means @ pose[v, :3, :3].double().T + pose[v, :3, 3].double()
            uv = cam[:, :2] / cam[:, 2:3] @ k[v, :2, :2].double().T + k[v, :2, 2].double()
            sel = (
                (cam[:, 2] > 0.2)
                & (uv[:, 0] > 0.5)
                & (uv[:, 0] < width - 0.5)
                & (uv[:, 1] > 0.5)
                & (uv[:, 1] < height - 0.5)
            )
        f, d, _ = oracle_render(
            means[sel],
            torch.ones(int(sel.sum()), dtype=torch.float64),
            feats[sel],
            GRID.gaussian_scale,
            pose[v : v + 1],
            k[v : v + 1],
            width,
            height,
            background=bg,
        )
        top2 = f[0].topk(2, dim=-1).values
        margins.append((top2[..., 0] - top2[..., 1]).min())
        classes.append(f[0].argmax(-1))
        depths.append(d[0])
    # a near-tie could flip the argmax between float32 and float64 (the renderers agree to
    # ~1e-6 on features <= 1): the scenes below have none
    assert min(margins) > 1e-5
    return torch.stack(classes), torch.stack(depths)


def _confmat(t_cls, p_cls):
    c = GRID.num_classes
    cm = torch.zeros(c, c, dtype=torch.int64)
    for t, p in zip(t_cls.flatten().tolist(), p_cls.flatten().tolist()):
        cm[t, p] += 1
    return cm


# --------------------------------------------------------------------- known answers
def test_wall_filling_the_view_scores_one_and_zero_depth_error():
    wall = _wall(4.25)
    m = _metric()
    _update(m, wall, wall)
    out = m.compute()
    # every pixel of the camera sees the wall
    assert int(m.image_confmat[WALL, WALL]) == H * W and int(m.image_confmat.sum()) == H * W
    for key in ("image_iou", "image_miou", "bev_iou", "bev_miou"):
        assert float(out[key]) == 1.0, key
    assert float(out["depth_l1"]) == 0.0 and float(out["bev_depth_l1"]) == 0.0
    pc = out["image_per_class_iou"]
    assert float(pc[WALL]) == 1.0 and torch.isnan(pc[CAR]) and torch.isnan(pc[ROAD]) and torch.isnan(pc[FREE])
    assert int(m.image_depth_count) == H * W  # every wall pixel has depth > 0.1 m


def test_wall_one_metre_further_gives_about_one_metre_depth_error():
    target, pred = _wall(4.25), _wall(5.25)
    m = _metric()
    _update(m, pred, target)
    out = m.compute()
    assert float(out["image_iou"]) == 1.0 and float(out["image_miou"]) == 1.0  # same class everywhere
    # independent float64 re-derivation: both walls through the oracle, L1 over depth > 0.1
    _, t_d = _oracle(target[0], K[None], POSE[None], W, H, True)
    _, p_d = _oracle(pred[0], K[None], POSE[None], W, H, True)
    valid = t_d > 0.1
    expected = (p_d - t_d).abs()[valid].mean()
    assert int(valid.sum()) == int(m.image_depth_count) == H * W
    assert float(out["depth_l1"]) == pytest.approx(float(expected), rel=1e-5)
    # the depth images are alpha-weighted (alpha * z): ~1 m where both walls cover a pixel
    # fully; more near the border, where the near wall loses the culled neighbours' splats
    diff = (p_d - t_d)[0]
    assert diff[2:-2, 2:-2].median() == pytest.approx(1.0, abs=0.05)
    assert 0.95 < float(out["depth_l1"]) < 1.2


def test_mislabelled_wall_and_the_two_conventions():
    target, pred = _wall(4.25, WALL), _wall(4.25, CAR)
    clean, release = _metric(), _metric(convention="release")
    for m in (clean, release):
        _update(m, pred, target)
    c, r = clean.compute(), release.compute()
    assert float(c["image_iou"]) == 1.0  # geometry untouched
    assert float(c["image_per_class_iou"][WALL]) == 0.0 and float(c["image_per_class_iou"][CAR]) == 0.0
    assert torch.isnan(c["image_per_class_iou"][ROAD])  # absent from both: skipped
    assert float(c["image_miou"]) == 0.0
    # release: a class without ground-truth pixels scores 1, even car which was predicted
    assert float(r["image_per_class_iou"][WALL]) == 0.0
    assert float(r["image_per_class_iou"][CAR]) == 1.0 and float(r["image_per_class_iou"][ROAD]) == 1.0
    assert float(r["image_miou"]) == pytest.approx(2.0 / 3.0)
    # depth: clean divides by the count, release by count + 1 (identical depth images here)
    assert float(c["depth_l1"]) == 0.0 and float(r["depth_l1"]) == 0.0


def test_release_l1_divides_by_count_plus_one():
    target, pred = _wall(4.25), _wall(5.25)
    clean, release = _metric(), _metric(convention="release")
    for m in (clean, release):
        _update(m, pred, target)
    n = int(clean.image_depth_count)
    total = float(clean.image_depth_sum)
    assert float(clean.compute()["depth_l1"]) == pytest.approx(total / n, rel=1e-12)
    assert float(release.compute()["depth_l1"]) == pytest.approx(total / (n + 1), rel=1e-12)
    nothing = _metric(bev=False)
    _update(nothing, _empty(), _empty())
    assert torch.isnan(nothing.compute()["depth_l1"]) and torch.isnan(nothing.compute()["image_iou"])
    nothing_r = _metric(bev=False, convention="release")
    _update(nothing_r, _empty(), _empty())
    assert float(nothing_r.compute()["depth_l1"]) == 0.0 and float(nothing_r.compute()["image_iou"]) == 1.0


def test_voxel_just_outside_the_image_counts_only_in_the_bev():
    labels = _empty()
    i, j, k = _x_index(4.75), 3, 6  # centre (4.75, -2.25, 0.25)
    labels[0, i, j, k] = CAR
    centre = torch.tensor(GRID.range_min) + (torch.tensor([i, j, k]) + 0.5) * GRID.voxel_size
    u = W / 2 + F * -centre[1] / centre[0]
    assert W - 0.5 < u < W + 0.5  # projects just right of the last pixel column's centre
    m = _metric()
    _update(m, _empty(), labels)
    out = m.compute()
    assert int(m.image_confmat[CAR].sum()) == 0  # culled from the camera view
    assert int(m.bev_confmat[CAR].sum()) > 0  # the BEV keeps every Gaussian
    assert float(out["bev_per_class_iou"][CAR]) == 0.0 and torch.isnan(out["image_per_class_iou"][CAR])
    # footprint culling would have painted it: its splat reaches the last column
    g = gr.voxels_to_gaussians(GRID, labels=labels[0])
    cams = gr.Cameras(POSE[None], K[None], W, H)
    seen = gr.render(g.means, g.opacities, g.features, g.scales, cams, backend="torch", cull="footprint")
    assert float(seen.alpha[0, :, -1].max()) > 0.5


def test_ignored_target_voxels_drop_the_prediction_there():
    target = _wall(4.25)
    target[0, _x_index(2.25)] = GRID.ignore_index  # a layer in front of the wall carries no label
    pred = target.clone()
    pred[0, _x_index(2.25)] = CAR  # predicted there: must not be rendered
    m = _metric()
    _update(m, pred, target)
    out = m.compute()
    assert float(out["image_miou"]) == 1.0 and float(out["depth_l1"]) == 0.0
    assert float(out["bev_miou"]) == 1.0


# --------------------------------------------------------------------- float64 re-derivation
def _random_scene(seed: int, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    target = _empty(batch)
    occupied = torch.rand(target.shape, generator=g) < 0.025
    target[occupied] = torch.randint(1, 4, (int(occupied.sum()),), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.01] = GRID.ignore_index
    pred = target.clone()
    flip = torch.rand(pred.shape, generator=g) < 0.02
    pred[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=g)
    pred[pred == GRID.ignore_index] = CAR  # predicted where the truth is unknown: never rendered
    return pred, target


def _two_cameras():
    k = torch.stack([K, torch.tensor([[12.0, 0, 7.0], [0, 12.0, 6.5], [0, 0, 1]])])
    yaw = torch.tensor(0.6)  # second camera turned left, moved back and raised
    fwd = torch.tensor([torch.cos(yaw), torch.sin(yaw), 0.0])
    right = torch.linalg.cross(fwd, torch.tensor([0.0, 0, 1]))
    rot = torch.stack([right, torch.tensor([0.0, 0, -1]), fwd])  # rows: camera x, y, z in the grid frame
    eye = torch.tensor([-1.0, 0.5, 0.7])
    pose2 = torch.eye(4)
    pose2[:3, :3] = rot
    pose2[:3, 3] = -(rot @ eye)
    return k, torch.stack([POSE, pose2])


def test_confusion_counts_match_a_float64_oracle():
    pred, target = _random_scene(3)
    k, poses = _two_cameras()
    m = _metric()
    m.update(pred, target, intrinsics=k[None], cam_from_grid=poses[None], image_size=(H, W))
    t_cls, t_d = _oracle(target[0], k, poses, W, H, True)
    p_cls, p_d = _oracle(pred[0], k, poses, W, H, True, target=target[0])
    assert torch.equal(m.image_confmat, _confmat(t_cls, p_cls))
    assert 0 < int(m.image_confmat.trace()) < int(m.image_confmat.sum())  # a non-trivial scene
    valid = t_d > 0.1
    assert int(m.image_depth_count) == int(valid.sum())
    assert float(m.image_depth_sum) == pytest.approx(float((p_d - t_d).abs()[valid].sum()), rel=1e-4)

    bev = gr.bev_camera(GRID, BEV, dtype=torch.float64)
    bt_cls, bt_d = _oracle(target[0], bev.intrinsics, bev.cam_from_world, BEV, BEV, False)
    bp_cls, bp_d = _oracle(pred[0], bev.intrinsics, bev.cam_from_world, BEV, BEV, False, target=target[0])
    assert torch.equal(m.bev_confmat, _confmat(bt_cls, bp_cls))
    bvalid = bt_d > 0.1
    assert int(m.bev_depth_count) == int(bvalid.sum())
    assert float(m.bev_depth_sum) == pytest.approx(float((bp_d - bt_d).abs()[bvalid].sum()), rel=1e-4)

    # the ratios from those counts, re-derived here
    cm = _confmat(t_cls, p_cls).double()
    tp, gt, pr = cm.diagonal(), cm.sum(1), cm.sum(0)
    iou = tp / (gt + pr - tp)
    out = m.compute()
    torch.testing.assert_close(out["image_per_class_iou"], iou, equal_nan=True)
    assert float(out["image_miou"]) == pytest.approx(float(iou[1:].nanmean()))
    occ_tp = cm[1:, 1:].sum()
    assert float(out["image_iou"]) == pytest.approx(float(occ_tp / (cm[1:].sum() + cm[:, 1:].sum() - occ_tp)))


def test_image_scale_equals_rendering_with_scaled_intrinsics():
    pred, target = _random_scene(5)
    big_k = K.clone()
    big_k[:2] *= 2.0  # the same camera at 32x24
    half = _metric(image_scale=0.5, bev_size=2 * BEV)
    _update(half, pred, target, k=big_k, size=(2 * H, 2 * W))
    full = _metric()
    _update(full, pred, target)
    for name in ("image_confmat", "bev_confmat", "image_depth_count", "bev_depth_count"):
        assert torch.equal(getattr(half, name), getattr(full, name)), name
    torch.testing.assert_close(half.image_depth_sum, full.image_depth_sum)
    assert half.rendered_image_size((900, 1600)) == (450, 800) and half.rendered_bev_size == BEV


# --------------------------------------------------------------------- additivity
def test_two_updates_equal_one_concatenated_batch_and_merge():
    pred, target = _random_scene(7, batch=2)
    k, poses = _two_cameras()
    kb, pb = k.expand(2, 2, 3, 3), poses.expand(2, 2, 4, 4)
    one = _metric()
    one.update(pred, target, intrinsics=kb, cam_from_grid=pb, image_size=(H, W))
    two = _metric()
    for b in range(2):
        two.update(
            pred[b : b + 1], target[b : b + 1], intrinsics=kb[b : b + 1], cam_from_grid=pb[b : b + 1], image_size=(H, W)
        )
    a, b_ = _metric(), _metric()
    a.update(pred[:1], target[:1], intrinsics=kb[:1], cam_from_grid=pb[:1], image_size=(H, W))
    b_.update(pred[1:], target[1:], intrinsics=kb[1:], cam_from_grid=pb[1:], image_size=(H, W))
    a.merge_state(b_)
    for other in (two, a):
        for name in ("image_confmat", "bev_confmat", "image_depth_count", "bev_depth_count"):
            assert torch.equal(getattr(one, name), getattr(other, name)), name
        torch.testing.assert_close(one.image_depth_sum, other.image_depth_sum)
        torch.testing.assert_close(one.bev_depth_sum, other.bev_depth_sum)
    one.reset()
    assert int(one.image_confmat.sum()) == 0 and float(one.image_depth_sum) == 0.0


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        pred, target = _random_scene(7, batch=2)
        m = _metric(bev_size=16)
        _update(m, pred[rank : rank + 1], target[rank : rank + 1])
        torch.save(m.compute(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")
def test_two_gloo_processes_sum_to_one(tmp_path):
    run_two(_worker, (2, str(tmp_path / "init"), str(tmp_path)))
    pred, target = _random_scene(7, batch=2)
    m = _metric(bev_size=16)
    _update(m, pred, target)
    expected = m.compute()
    alone = _metric(bev_size=16)
    _update(alone, pred[:1], target[:1])
    assert not torch.allclose(alone.compute()["depth_l1"], expected["depth_l1"])  # shards differ
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(got) == set(expected)
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, equal_nan=True, msg=f"rank {rank} {key}")


# --------------------------------------------------------------------- bad input
def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="convention"):
        RenderedViewMetrics(GRID, convention="toolkit")
    with pytest.raises(ValueError, match="image_scale"):
        RenderedViewMetrics(GRID, image_scale=0.0)
    with pytest.raises(ValueError, match="bev_size"):
        RenderedViewMetrics(GRID, bev_size=0)
    m = _metric()
    labels = _empty()
    with pytest.raises(ValueError, match="intrinsics"):
        m.update(labels, labels, intrinsics=K[None], cam_from_grid=POSE[None, None], image_size=(H, W))
    with pytest.raises(ValueError, match="cam_from_grid"):
        m.update(
            labels,
            labels,
            intrinsics=K[None, None],
            cam_from_grid=POSE[None, None].expand(1, 2, 4, 4),
            image_size=(H, W),
        )
    with pytest.raises(ValueError, match="image_size"):
        m.update(labels, labels, intrinsics=K[None, None], cam_from_grid=POSE[None, None], image_size=(H, 0))
    # a float pred is read as logits [B, C, X, Y, Z]: float labels are refused by shape
    with pytest.raises(ValueError, match=r"pred \(logits\) must have shape .*integer dtype"):
        m.update(labels.float(), labels, intrinsics=K[None, None], cam_from_grid=POSE[None, None], image_size=(H, W))
    bad = labels.clone()
    bad[0, 0, 0, 0] = 9
    with pytest.raises(ValueError, match="target"):
        m.update(labels, bad, intrinsics=K[None, None], cam_from_grid=POSE[None, None], image_size=(H, W))


# --------------------------------------------------------------------- training validation
def test_trainer_validation_adds_rendered_view_metrics(tmp_path):
    from gaussrender.data import collate
    from tests.train.helpers import TINY_GRID, tiny_config, tiny_trainer

    cfg = tiny_config(train={"epochs": 1, "device": "cpu", "val_render_scale": 0.5})
    t = tiny_trainer(tmp_path / "a", cfg, n_train=1, n_val=2)
    got = t.evaluate()
    # the same numbers from the metric run here on the model's predictions
    bev_size = int(cfg.loss.render_kwargs.get("bev_size", 400))  # the loss's BEV
    expected = RenderedViewMetrics(TINY_GRID, image_scale=0.5, bev_size=bev_size)
    t.model.eval()
    with torch.no_grad():
        for sample in t.val_set:
            batch = collate([sample])
            # the logits: validation scores them with the release's eval rule
            pred = t.model(batch["images"], batch["intrinsics"], batch["cam_from_grid"])["logits"]
            if "render_intrinsics" in batch:  # the render loss's cameras: native size and K
                ks, size = batch["render_intrinsics"], tuple(int(v) for v in batch["render_image_size"][0])
            else:
                ks, size = batch["intrinsics"], tuple(batch["images"].shape[-2:])
            expected.update(pred, batch["labels"], ks, batch["cam_from_grid"], size)
    for key, value in expected.compute().items():
        if value.dim() == 0:
            assert got[key] == pytest.approx(float(value), rel=1e-9, nan_ok=True), key
    assert 0.0 < got["image_iou"] <= 1.0 and got["depth_l1"] >= 0.0

    off = tiny_trainer(tmp_path / "b", tiny_config(train={"epochs": 1, "device": "cpu"}), n_train=1, n_val=1)
    assert "image_iou" not in off.evaluate()  # off by default
    with pytest.raises(ValueError, match="val_render_scale"):
        tiny_config(train={"val_render_scale": 2.0})
