"""GaussRenderLoss against 2D targets (LiDAR depth, 2D label maps): the terms against a float64
loop over views and pixels, zero when the prediction renders exactly the targets, gradients,
2D-only supervision (no 3D labels), target resolution != image size, and bad input refused
by name."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from gaussrender.losses.render.terms import NO_TARGET, target_depth_term, target_semantic_term

GRID = gr.VoxelGrid(
    "t", (-4.0, -4.0, -1.0), (4.0, 4.0, 1.0), 0.5, (16, 16, 4), ("a", "b", "free"), 2, gaussian_scale=0.3
)
SIZE = (24, 32)
K1 = torch.tensor([[25.0, 0.0, 16.0], [0.0, 25.0, 12.0], [0.0, 0.0, 1.0]])
POSES = torch.stack(
    [
        gr.look_at(torch.tensor([-6.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 0.0])),
        gr.look_at(torch.tensor([0.0, -6.0, 2.5]), torch.tensor([0.0, 0.0, 0.0])),
    ]
)
K = K1.expand(2, 3, 3)


def _labels(batch: int = 1) -> torch.Tensor:
    labels = torch.full((batch, 16, 16, 4), 2)
    labels[:, 4:12, 4:12, 1] = 0
    labels[:, 6:9, 6:9, 2] = 1
    return labels


def _logits(batch: int = 1, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 16, 16, 4, generator=g).to(dtype)


def _cams(batch: int = 1):
    return K[None].repeat(batch, 1, 1, 1), POSES[None].repeat(batch, 1, 1, 1)


def _sparse_targets(batch: int, size=SIZE, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(batch, 2, *size, generator=g, dtype=torch.float64) * 10.0 + 1.0
    depth[torch.rand(depth.shape, generator=g) < 0.6] = 0.0  # sparse, as a LiDAR scan
    sem = torch.randint(0, 3, (batch, 2, *size), generator=g)
    sem[torch.rand(sem.shape, generator=g) < 0.5] = NO_TARGET
    return depth, sem


def _reference_terms(features, depth, t_depth, t_sem, kind, scale):
    """float64 loops: per view, the mean over valid pixels; then the mean over views with any."""
    d_views, s_views = [], []
    for v in range(depth.shape[0]):
        d_sum, d_n, s_sum, s_n = 0.0, 0, 0.0, 0
        for r in range(depth.shape[1]):
            for c in range(depth.shape[2]):
                if t_depth[v, r, c] > 0:
                    d_sum += abs(float(depth[v, r, c]) - float(t_depth[v, r, c])) / scale
                    d_n += 1
                label = int(t_sem[v, r, c])
                if label != NO_TARGET:
                    p = features[v, r, c].double()
                    if kind == "l1":
                        onehot = torch.zeros_like(p)
                        onehot[label] = 1.0
                        s_sum += float((p - onehot).abs().mean())
                    else:
                        s_sum += -float(torch.log(p[label].clamp_min(1e-6)))
                    s_n += 1
        if d_n:
            d_views.append(d_sum / d_n)
        if s_n:
            s_views.append(s_sum / s_n)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    return mean(d_views), mean(s_views)


@pytest.mark.parametrize("kind", ["l1", "ce"])
def test_terms_match_float64_loop(kind):
    logits, labels = _logits(dtype=torch.float64), _labels()
    k, poses = _cams()
    t_depth, t_sem = _sparse_targets(1)
    loss = gr.GaussRenderLoss(GRID, semantic=kind, views=("bev",), bev_size=16, weight=2.0)
    out = loss(logits, labels, k, poses, SIZE, target_depth=t_depth, target_semantics=t_sem)
    # the prediction's render in those cameras, by the public renderer (oracle-tested elsewhere)
    pred = gr.voxels_to_gaussians(GRID, logits=logits[0], labels=labels[0])
    bg = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    img = gr.render(
        pred.means, pred.opacities, pred.features, pred.scales, gr.Cameras(POSES, K, 32, 24), bg, cull="center"
    )
    want_d, want_s = _reference_terms(img.features, img.depth, t_depth[0], t_sem[0], kind, 50.0)
    assert float(out["target_depth"]) == pytest.approx(want_d, rel=1e-9)
    assert float(out["target_semantics"]) == pytest.approx(want_s, rel=1e-9)
    total = 2.0 * (out["bev"] + out["bev_depth"] + out["target_depth"] + out["target_semantics"])
    assert float(out["loss"]) == pytest.approx(float(total), rel=1e-12)


def test_zero_when_the_prediction_renders_the_targets():
    labels = _labels(2)
    logits = 60.0 * torch.nn.functional.one_hot(labels, 3).permute(0, 4, 1, 2, 3).double()  # exact truth
    k, poses = _cams(2)
    bg = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    depths, sems = [], []
    for b in range(2):
        pred = gr.voxels_to_gaussians(GRID, logits=logits[b], labels=labels[b])
        img = gr.render(
            pred.means, pred.opacities, pred.features, pred.scales, gr.Cameras(POSES, K, 32, 24), bg, cull="center"
        )
        depths.append(img.depth)
        p, cls = img.features.max(-1)
        sems.append(torch.where(p > 1 - 1e-9, cls, torch.full_like(cls, NO_TARGET)))
    t_depth, t_sem = torch.stack(depths), torch.stack(sems)
    assert (t_sem != NO_TARGET).sum() > 100 and (t_depth > 0).sum() > 100  # the test sees pixels
    for kind in ("l1", "ce"):
        out = gr.GaussRenderLoss(GRID, semantic=kind)(
            logits, None, k, poses, SIZE, target_depth=t_depth, target_semantics=t_sem
        )
        assert float(out["target_depth"]) == 0.0
        assert float(out["target_semantics"]) < 1e-8
        assert float(out["loss"]) < 1e-7
        # and a wrong target gives a clearly positive term (the test can fail)
        wrong = torch.where(t_sem == NO_TARGET, t_sem, (t_sem + 1) % 3)
        out = gr.GaussRenderLoss(GRID, semantic=kind)(
            logits, None, k, poses, SIZE, target_depth=t_depth * 1.5, target_semantics=wrong
        )
        assert float(out["target_depth"]) > 1e-3 and float(out["target_semantics"]) > 0.1


def test_two_d_only_supervision_gradients():
    logits = _logits(2).requires_grad_()
    k, poses = _cams(2)
    t_depth, t_sem = _sparse_targets(2)
    out = gr.GaussRenderLoss(GRID)(logits, None, k, poses, SIZE, target_depth=t_depth.float(), target_semantics=t_sem)
    assert sorted(out) == ["bev", "bev_depth", "cam", "cam_depth", "loss", "target_depth", "target_semantics"]
    for term in ("bev", "bev_depth", "cam", "cam_depth"):
        assert float(out[term]) == 0.0  # no 3D labels: no ground-truth render
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_gradient_matches_finite_differences():
    # opacities below the 0.99 clamp (straight-through in the backward pass, docs/method.md#rendering)
    logits = 0.5 * _logits(dtype=torch.float64, seed=3)
    logits[:, 2] += 1.0
    logits.requires_grad_()
    k, poses = _cams()
    t_depth, t_sem = _sparse_targets(1)
    loss = gr.GaussRenderLoss(GRID, semantic="ce")

    def f(x):
        return loss(x, None, k, poses, SIZE, target_depth=t_depth, target_semantics=t_sem)["loss"]

    f(logits).backward()
    g = torch.Generator().manual_seed(5)
    direction = torch.randn(logits.shape, generator=g, dtype=torch.float64)
    eps = 1e-6
    with torch.no_grad():
        numeric = (f(logits + eps * direction) - f(logits - eps * direction)) / (2 * eps)
    assert float((logits.grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-4, abs=1e-8)


def test_target_resolution_rescales_the_intrinsics():
    logits, labels = _logits(dtype=torch.float64), _labels()
    k, poses = _cams()
    t_depth = torch.full((1, 2, 12, 16), 3.0, dtype=torch.float64)  # half of SIZE
    out = gr.GaussRenderLoss(GRID, views=("bev",), bev_size=8)(logits, labels, k, poses, SIZE, target_depth=t_depth)
    pred = gr.voxels_to_gaussians(GRID, logits=logits[0], labels=labels[0])
    half = gr.Cameras(POSES, gr.geometry.scale_intrinsics(K, 0.5, 0.5), 16, 12)
    img = gr.render(
        pred.means,
        pred.opacities,
        pred.features,
        pred.scales,
        half,
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
        cull="center",
    )
    want = ((img.depth - 3.0).abs().flatten(1).mean(1) / 50.0).mean()
    assert float(out["target_depth"]) == pytest.approx(float(want), rel=1e-9)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(target_depth=torch.zeros(1, 3, 24, 32)), "target_depth"),  # 3 cameras, 2 given
        (dict(target_depth=torch.full((1, 2, 24, 32), -1.0)), "target_depth must be >= 0"),
        (dict(target_depth=torch.full((1, 2, 24, 32), float("nan"))), "target_depth"),
        (dict(target_depth=torch.zeros(1, 2, 24, 32, dtype=torch.long)), "target_depth"),
        (dict(target_semantics=torch.full((1, 2, 24, 32), 7)), "target_semantics must hold class indices"),
        (dict(target_semantics=torch.zeros(1, 2, 24, 32)), "target_semantics"),  # floating
        (
            dict(target_depth=torch.zeros(1, 2, 24, 32), target_semantics=torch.zeros(1, 2, 12, 16, dtype=torch.long)),
            "target_semantics",
        ),
        (dict(target_depth=torch.zeros(1, 2, 1, 32)), "at least 2x2"),
    ],
)
def test_bad_targets_refused_by_name(change, match):
    k, poses = _cams()
    with pytest.raises((ValueError, TypeError), match=match):
        gr.GaussRenderLoss(GRID)(_logits(), _labels(), k, poses, SIZE, **change)


def test_missing_inputs_refused():
    k, poses = _cams()
    with pytest.raises(ValueError, match="labels is None and no 2D target"):
        gr.GaussRenderLoss(GRID)(_logits(), None, k, poses, SIZE)
    with pytest.raises(ValueError, match="images of the given cameras"):
        gr.GaussRenderLoss(GRID)(_logits(), None, target_depth=torch.zeros(1, 2, 24, 32))


def test_term_functions_gradcheck():
    g = torch.Generator().manual_seed(0)
    feats = torch.softmax(torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64), -1).requires_grad_()
    depth = torch.rand(2, 3, 4, generator=g, dtype=torch.float64).requires_grad_()
    t_depth = torch.rand(2, 3, 4, generator=g, dtype=torch.float64)
    t_depth[0, 0] = 0.0
    t_sem = torch.randint(0, 5, (2, 3, 4), generator=g)
    t_sem[1, 1] = NO_TARGET
    assert torch.autograd.gradcheck(lambda d: target_depth_term(d, t_depth, 50.0), (depth,))
    for kind in ("l1", "ce"):
        assert torch.autograd.gradcheck(lambda f, kind=kind: target_semantic_term(f, t_sem, kind), (feats,))


def _pose(yaw_deg: float, translation) -> torch.Tensor:
    c, s = (
        torch.cos(torch.deg2rad(torch.tensor(yaw_deg, dtype=torch.float64))),
        torch.sin(torch.deg2rad(torch.tensor(yaw_deg, dtype=torch.float64))),
    )
    m = torch.eye(4, dtype=torch.float64)
    m[:2, :2] = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    m[:3, 3] = torch.tensor(translation, dtype=torch.float64)
    return m


def test_adjacent_frame_targets_use_their_own_cameras():
    # a static scene seen from the next frame: the ego moved 1.5 m and turned 12 degrees. Its
    # targets are the exact prediction rendered into its cameras through the chain written out
    # here (grid t = ego t -> global -> ego t+1 -> camera); the loss, given the cameras from
    # gr.adjacent_cam_from_grid as target cameras, must find them exactly, while the sensor
    # cameras (the 3D terms' cameras) or a chain that ignores the motion must not.
    labels = _labels()
    logits = 60.0 * torch.nn.functional.one_hot(labels, 3).permute(0, 4, 1, 2, 3).double()
    ego_t = _pose(10.0, [100.0, 50.0, 0.0])  # ego -> global at frame t (grid = ego frame t)
    ego_next = ego_t @ _pose(12.0, [1.5, 0.5, 0.0])
    sensor2ego = torch.linalg.inv(POSES.double())  # the rig: camera -> ego, the same in both frames
    by_hand = torch.linalg.inv(sensor2ego) @ (torch.linalg.inv(ego_next) @ ego_t)  # [2, 4, 4]
    pred = gr.voxels_to_gaussians(GRID, logits=logits[0], labels=labels[0])
    bg = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    img = gr.render(
        pred.means,
        pred.opacities,
        pred.features,
        pred.scales,
        gr.Cameras(by_hand, K.double(), 32, 24),
        bg,
        cull="center",
    )
    depth = img.depth[None]
    k, poses = _cams()
    loss = gr.GaussRenderLoss(GRID, views=("bev",), bev_size=8)

    def depth_term(**cams):
        out = loss(logits, labels, k.double(), poses.double(), SIZE, target_depth=depth, **cams)
        return float(out["target_depth"])

    chain = gr.adjacent_cam_from_grid(ego_t, ego_next, sensor2ego)
    assert depth_term(target_intrinsics=k.double(), target_cam_from_grid=chain[None]) < 1e-7  # float64 rounding (um)
    assert depth_term() > 1e-3  # without target cameras: the sensor cameras of frame t
    no_motion = gr.adjacent_cam_from_grid(ego_t, ego_t, sensor2ego)
    assert depth_term(target_intrinsics=k.double(), target_cam_from_grid=no_motion[None]) > 1e-3


def test_target_cameras_refused_by_name():
    k, poses = _cams()
    depth = torch.zeros(1, 3, 24, 32)
    with pytest.raises(ValueError, match="given together"):
        gr.GaussRenderLoss(GRID)(_logits(), _labels(), k, poses, SIZE, target_depth=depth, target_intrinsics=k)
    with pytest.raises(ValueError, match="target_cam_from_grid"):
        gr.GaussRenderLoss(GRID)(
            _logits(),
            _labels(),
            k,
            poses,
            SIZE,
            target_depth=depth,
            target_intrinsics=K1.expand(1, 3, 3, 3),
            target_cam_from_grid=poses,
        )
    with pytest.raises(ValueError, match="without target_depth or target_semantics"):
        gr.GaussRenderLoss(GRID)(_logits(), _labels(), k, poses, SIZE, target_intrinsics=k, target_cam_from_grid=poses)
