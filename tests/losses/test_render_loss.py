"""GaussRenderLoss on the three benchmark grids: zero at the truth, finite, trainable, safe."""

import pytest
import torch

import gaussrender as gr

# Occ3D's range and classes at 1.6 m voxels (50x50x4): what the options change does not depend
# on the voxel count, and a loss here costs ~1/60 of one on the 200x200x16 grid.
SMALL = gr.get_grid("synthetic_small")


def _scene(grid, seed=0):
    """A sparse scene: a ground slab, a box object and a wall, plus some ignore voxels."""
    g = torch.Generator().manual_seed(seed)
    x, y, z = grid.shape
    labels = torch.full((1, x, y, z), grid.empty_index, dtype=torch.long)
    sem = list(grid.semantic_classes)
    labels[0, x // 4 : 3 * x // 4, y // 4 : 3 * y // 4, 1] = sem[int(torch.randint(len(sem), (1,), generator=g))]
    labels[0, x // 2 + 5 : x // 2 + 9, y // 2 - 2 : y // 2 + 2, 2:5] = sem[0]
    labels[0, x // 2 + 15, y // 4 : 3 * y // 4, 2:8] = sem[-1]
    labels[0, : x // 8, : y // 8, :] = grid.ignore_index
    return labels


def _cameras(grid, size=(90, 160)):
    k, p, _ = gr.nuscenes_rig(size)
    # the rig sits at the ego origin; KITTI-360's grid lies ahead of it, so keep the front camera
    return k[None], p[None]


def _onehot_logits(labels, grid, margin=200.0):
    oh = torch.nn.functional.one_hot(labels.clamp(max=grid.num_classes - 1), grid.num_classes)
    return margin * oh.permute(0, 4, 1, 2, 3).float()


@pytest.mark.parametrize("grid", [gr.OCC3D_NUSCENES, gr.SURROUNDOCC_NUSCENES, gr.SSCBENCH_KITTI360])
def test_zero_at_the_truth_and_positive_elsewhere(grid):
    labels = _scene(grid)
    k, p = _cameras(grid)
    loss_fn = gr.GaussRenderLoss(grid, bev_size=96, seed=0, camera_strategy="sensor")
    out = loss_fn(_onehot_logits(labels, grid), labels, k, p, (90, 160))
    assert all(float(v) == 0.0 for v in out.values()), out
    noisy = (
        _onehot_logits(labels, grid, 8.0) + 0.5 * torch.randn(labels.shape[0], grid.num_classes, *grid.shape)
    ).requires_grad_()
    out = loss_fn(noisy, labels, k, p, (90, 160))
    assert all(torch.isfinite(v) for v in out.values())
    assert out["bev"] > 0 and out["loss"] > 0
    torch.testing.assert_close(out["loss"], 10.0 * (out["cam"] + out["cam_depth"] + out["bev"] + out["bev_depth"]))
    out["loss"].backward()
    assert torch.isfinite(noisy.grad).all() and noisy.grad.abs().sum() > 0


def test_loss_decreases_under_optimisation():
    grid = gr.OCC3D_NUSCENES
    labels = _scene(grid, seed=1)
    k, p = _cameras(grid)
    torch.manual_seed(0)
    # a wrong but confident start: the object is shifted by 2 voxels and mislabelled
    start = labels.roll(2, dims=1)
    start[start == grid.semantic_classes[0]] = grid.semantic_classes[3]
    logits = (_onehot_logits(start, grid, 6.0) + 0.5 * torch.randn(1, grid.num_classes, *grid.shape)).requires_grad_()
    opt = torch.optim.Adam([logits], lr=0.2)
    loss_fn = gr.GaussRenderLoss(
        grid, bev_size=96, resolution_divisor=2, camera_strategy="sensor", camera_weights=(1, 0, 0, 0, 0, 0)
    )  # the same view every step
    losses = []
    for _ in range(5):
        out = loss_fn(logits, labels, k, p, (90, 160))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses


def test_empty_and_all_ignore_scenes_give_zero_finite_gradients():
    grid = SMALL
    k, p = _cameras(grid)
    loss_fn = gr.GaussRenderLoss(grid, bev_size=32)
    ignore = torch.full((1, *grid.shape), 255)
    logits = torch.randn(1, grid.num_classes, *grid.shape, requires_grad=True)
    out = loss_fn(logits, ignore, k, p, (90, 160))
    out["loss"].backward()
    assert float(out["loss"]) == 0 and torch.equal(logits.grad, torch.zeros_like(logits))
    empty = torch.full((1, *grid.shape), grid.empty_index)
    confident_empty = _onehot_logits(empty, grid).requires_grad_()
    out = loss_fn(confident_empty, empty, k, p, (90, 160))
    out["loss"].backward()
    assert float(out["loss"]) == 0 and torch.isfinite(confident_empty.grad).all()
    assert confident_empty.grad.abs().max() == 0
    # an empty truth with a wrong prediction is penalised
    wrong = torch.zeros_like(confident_empty)
    assert float(loss_fn(wrong, empty, k, p, (90, 160))["loss"]) > 0


def _differs(a, b):
    """More than 0.01% apart: far above float32 noise (the terms are ~1e-4 to 1e-8, which the
    default absolute tolerance of allclose would call equal)."""
    return not torch.allclose(a, b, rtol=1e-4, atol=0.0)


def test_bev_only_without_cameras_and_options():
    grid = SMALL
    labels = _scene(grid)
    logits = _onehot_logits(labels, grid, 8.0)
    truth = _onehot_logits(labels, grid)
    out = gr.GaussRenderLoss(grid, bev_size=48)(logits, labels)
    assert out["cam"] == 0 and out["cam_depth"] == 0 and out["bev"] > 0
    k, p = _cameras(grid)

    def run(logits, **kw):
        loss_fn = gr.GaussRenderLoss(grid, bev_size=48, resolution_divisor=2, seed=0, **kw)
        return loss_fn(logits, labels, k, p, (90, 160))

    base = run(logits)
    assert base["cam"] > 0 and base["bev"] > 0 and base["cam_depth"] > 0 and base["bev_depth"] > 0
    # CE of the rendered distributions = their entropy + KL: the CE at the truth is the truth's
    # entropy, so CE(prediction) - CE(truth) is the KL loss, term by term
    ce, ce_truth, kl = run(logits, semantic="ce"), run(truth, semantic="ce"), run(logits, semantic="kl")
    assert ce_truth["cam"] > 0 and ce_truth["bev"] > 0 and kl["cam"] > 0 and kl["bev"] > 0
    for term in ("cam", "bev"):
        torch.testing.assert_close(ce[term] - ce_truth[term], kl[term], rtol=1e-3, atol=1e-7)
    for term in ("cam_depth", "bev_depth"):  # the depth terms do not depend on `semantic`
        torch.testing.assert_close(ce[term], base[term])
        torch.testing.assert_close(kl[term], base[term])
    # options that touch one part only: the other terms are the default's
    ortho = run(logits, bev_model="orthographic")
    assert _differs(ortho["bev"], base["bev"]) and _differs(ortho["bev_depth"], base["bev_depth"])
    torch.testing.assert_close(ortho["cam"], base["cam"])
    cam_only = run(logits, views=("cam",))
    assert cam_only["bev"] == 0 and cam_only["bev_depth"] == 0
    torch.testing.assert_close(cam_only["cam"], base["cam"])
    no_depth = run(logits, depth=False)
    assert no_depth["cam_depth"] == 0 and no_depth["bev_depth"] == 0
    torch.testing.assert_close(no_depth["cam"], base["cam"])
    torch.testing.assert_close(no_depth["bev"], base["bev"])
    # camera strategies move (or add) the sensor camera only: the BEV terms stay the default's,
    # the camera term changes, and prediction and truth go through the same moved camera, so
    # the truth still scores 0
    for kw in [
        dict(camera_strategy="stereo", cameras_per_sample=2),
        dict(camera_weights=gr.NUSCENES_CAMERA_WEIGHTS, cameras_per_sample=3),
        dict(camera_strategy="elevated"),
        dict(camera_strategy="random"),
        dict(camera_strategy="trajectory"),
    ]:
        out = run(logits, **kw)
        torch.testing.assert_close(out["bev"], base["bev"], msg=lambda m, kw=kw: f"{kw}: {m}")
        torch.testing.assert_close(out["bev_depth"], base["bev_depth"], msg=lambda m, kw=kw: f"{kw}: {m}")
        assert out["cam"] > 0 and _differs(out["cam"], base["cam"]), kw
        assert all(float(v) == 0.0 for v in run(truth, **kw).values()), kw
    for kw in [dict(semantic="kl"), dict(bev_model="orthographic"), dict(views=("cam",)), dict(depth=False)]:
        assert all(float(v) == 0.0 for v in run(truth, **kw).values()), kw
    out = gr.GaussRenderLoss(grid, bev_size=32, prefix="loss_render_")(logits, labels)
    assert set(out) == {"loss", "loss_render_cam", "loss_render_cam_depth", "loss_render_bev", "loss_render_bev_depth"}
    assert isinstance(gr.GaussRenderLoss("surroundocc").grid, gr.VoxelGrid)


def test_seeded_camera_sampling_is_reproducible():
    grid = SMALL
    labels = _scene(grid)
    logits = _onehot_logits(labels, grid, 8.0)
    k, p = _cameras(grid)
    runs = [
        gr.GaussRenderLoss(grid, views=("cam",), camera_strategy="random", resolution_divisor=2, seed=5)(
            logits, labels, k, p, (90, 160)
        )["cam"]
        for _ in range(2)
    ]
    assert float(runs[0]) == float(runs[1])


def test_bad_input():
    grid = SMALL
    labels = _scene(grid)
    logits = _onehot_logits(labels, grid, 8.0)
    k, p = _cameras(grid)
    loss_fn = gr.GaussRenderLoss(grid, bev_size=16)
    with pytest.raises(ValueError, match="logits"):
        loss_fn(logits[:, :5], labels)
    with pytest.raises(ValueError, match="NaN"):
        loss_fn(torch.full_like(logits, float("nan")), labels)
    with pytest.raises(ValueError, match="labels"):
        loss_fn(logits, labels.clamp(max=17) + 1)
    with pytest.raises(ValueError, match="together"):
        loss_fn(logits, labels, intrinsics=k)
    with pytest.raises(ValueError, match="cam_from_grid"):
        loss_fn(logits, labels, k, p[:, :2], (90, 160))
    with pytest.raises(ValueError, match="image_size"):
        loss_fn(logits, labels, k, p, (0, 160))
    singular = k.clone()
    singular[..., 0, 0] = 0
    with pytest.raises(ValueError, match="singular"):
        loss_fn(logits, labels, singular, p, (90, 160))
    with pytest.raises(ValueError, match="views"):
        gr.GaussRenderLoss(grid, views=("side",))
    with pytest.raises(ValueError, match="camera_strategy"):
        gr.GaussRenderLoss(grid, camera_strategy="drone")
    with pytest.raises(ValueError, match="camera_weights"):
        gr.GaussRenderLoss(grid, camera_weights=(1.0, 2.0))(logits, labels, k, p, (90, 160))


def test_zero_cameras_are_refused_by_name():
    """A sample with no camera (``[B, 0, 3, 3]``) would supervise nothing in the camera terms:
    refused, naming the argument, for the sampled cameras and the 2D targets' own cameras."""
    grid = SMALL
    labels = _scene(grid)
    logits = _onehot_logits(labels, grid, 8.0)
    k, p = _cameras(grid)
    loss_fn = gr.GaussRenderLoss(grid, bev_size=16)
    with pytest.raises(ValueError, match=r"intrinsics holds 0 cameras per sample; expected at least 1"):
        loss_fn(logits, labels, k[:, :0], p[:, :0], (90, 160))
    depth = torch.zeros(1, 0, 90, 160)
    with pytest.raises(ValueError, match=r"target_intrinsics holds 0 cameras"):
        loss_fn(
            logits,
            labels,
            k,
            p,
            (90, 160),
            target_depth=depth,
            target_intrinsics=k[:, :0],
            target_cam_from_grid=p[:, :0],
        )


def test_strategy_draws_are_shared_by_the_batch_like_the_release():
    """``trajectory`` draws one r per batch in the release: two samples with the same camera
    must end up with the same moved camera, and a different seed moves it differently."""
    from gaussrender.losses.render.cameras import sample_cameras

    grid = gr.SSCBENCH_KITTI360
    k = torch.tensor([[[552.6, 0.0, 682.0], [0.0, 552.6, 238.8], [0.0, 0.0, 1.0]]]).expand(2, 1, 3, 3)
    level = torch.tensor([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 1.5], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    poses = level.expand(2, 1, 4, 4)
    options = gr.RenderLossOptions(camera_strategy="trajectory")
    cams = sample_cameras(
        k, poses, (376, 1408), grid, "trajectory", options, torch.Generator().manual_seed(0), torch.float32
    )
    torch.testing.assert_close(cams[0].cam_from_world, cams[1].cam_from_world)
    assert not torch.allclose(cams[0].cam_from_world, poses[0])
    other = sample_cameras(
        k, poses, (376, 1408), grid, "trajectory", options, torch.Generator().manual_seed(1), torch.float32
    )
    assert not torch.allclose(other[0].cam_from_world, cams[0].cam_from_world)
