"""The default GaussRenderLoss against an independent float64 re-derivation of the release's
loss (docs/method.md), on a tiny grid whose camera sees occupied voxels just outside its border.

The reference below shares no code with the package except the dense oracle renderer of
``tests/render/oracle.py`` (itself independent of the package): voxel centres, ground-truth and
predicted Gaussians, the release's centre culling of camera views, the BEV camera (the
release's matrix, which our BEV equals up to a 90° image rotation that leaves the loss
unchanged), and the L1 semantic and depth terms are written again here.
"""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from tests.render.oracle import oracle_render

GRID = gr.VoxelGrid(
    name="tiny",
    range_min=(-2.0, -2.0, -1.0),
    range_max=(2.0, 2.0, 1.0),
    voxel_size=0.5,
    shape=(8, 8, 4),
    class_names=("a", "b", "c", "free"),
    empty_index=3,
    gaussian_scale=0.3,
    camera_strategy="sensor",
)
HEIGHT, WIDTH = 24, 32
BEV_SIZE = 40  # the release's 400 px BEV would make the dense oracle too slow for a unit test
NEAR = 0.2


def _look_along_x(eye: tuple[float, float, float]) -> torch.Tensor:
    """OpenCV camera at ``eye`` looking along grid +x (image right = grid -y, down = grid -z)."""
    rot = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = rot
    pose[:3, 3] = -rot @ torch.tensor(eye, dtype=torch.float64)
    return pose


def _intrinsics(f: float = 20.0) -> torch.Tensor:
    return torch.tensor([[f, 0.0, WIDTH / 2], [0.0, f, HEIGHT / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _scene(seed: int = 0):
    """Labels ``[1, X, Y, Z]`` (about 30 % occupied, some ignore voxels) and random logits."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((1, *GRID.shape), GRID.empty_index, dtype=torch.long)
    occupied = torch.rand(GRID.shape, generator=g) < 0.3
    labels[0][occupied] = torch.randint(0, 3, (int(occupied.sum()),), generator=g)
    # the first x slab, closest to the camera, is full: its y = +-1.75 columns sit just
    # outside the image's left and right borders
    labels[0, 0] = torch.randint(0, 3, GRID.shape[1:], generator=g)
    labels[0, 5, 2, 1] = 255
    labels[0, 6, 6, 3] = 255
    logits = 2.0 * torch.randn(1, GRID.num_classes, *GRID.shape, generator=g, dtype=torch.float64)
    return labels, logits


def _centres() -> torch.Tensor:
    axes = [torch.arange(n, dtype=torch.float64) for n in GRID.shape]
    idx = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return torch.tensor(GRID.range_min, dtype=torch.float64) + (idx + 0.5) * GRID.voxel_size


def _project(means: torch.Tensor, pose: torch.Tensor, k: torch.Tensor):
    cam = means @ pose[:3, :3].T + pose[:3, 3]
    uv = (cam[:, :2] / cam[:, 2:]) @ k[:2, :2].T + k[:2, 2]
    return uv, cam[:, 2]


def _centre_inside(means, pose, k, width, height):
    uv, z = _project(means, pose, k)
    u, v = uv[:, 0], uv[:, 1]
    return (z > NEAR) & (u > 0.5) & (u < width - 0.5) & (v > 0.5) & (v < height - 0.5)


def _render(means, opac, feats, pose, k, width, height, keep):
    bg = torch.nn.functional.one_hot(torch.tensor(GRID.empty_index), GRID.num_classes).double()
    return oracle_render(
        means[keep], opac[keep], feats[keep], GRID.gaussian_scale, pose[None], k[None], width, height, background=bg
    )


def _terms(pred, gt, depth_scale):
    """L1 of the semantic images (all pixels and channels) and the depth L1 over pixels whose
    ground-truth depth exceeds 0.1 m, divided by their count and by ``depth_scale``; also that
    sum and count."""
    semantic = (pred[0] - gt[0]).abs().mean()
    valid = gt[1] > 0.1
    total = (pred[1] - gt[1]).abs()[valid].sum() / depth_scale
    return semantic, total / valid.sum(), total, int(valid.sum())


def reference_loss(logits, labels, poses, ks, opacity=None, cull="center"):
    """The release's default loss for one sample, ``poses [V, 4, 4]``, ``ks [V, 3, 3]``."""
    lab = labels[0].reshape(-1)
    means = _centres().reshape(-1, 3)
    gt_keep = (lab != GRID.empty_index) & (lab != 255)
    gt_feat = torch.nn.functional.one_hot(lab.clamp(max=GRID.num_classes - 1), GRID.num_classes).double()
    gt = (means[gt_keep], torch.ones(int(gt_keep.sum()), dtype=torch.float64), gt_feat[gt_keep])
    probs = torch.softmax(logits[0].reshape(GRID.num_classes, -1).double(), dim=0).T
    p = probs[:, GRID.empty_index]
    sharpened = torch.where(p < 0.5, p * p, 1 - (1 - p) ** 2)
    alpha = 1 - sharpened if opacity is None else opacity[0].reshape(-1).double()
    pr_keep = lab != 255
    pred = (means[pr_keep], alpha[pr_keep], probs[pr_keep])

    cam_terms = []
    for pose, k in zip(poses, ks):
        keeps = []
        for m, _, _ in (pred, gt):
            if cull == "center":
                keeps.append(_centre_inside(m, pose, k, WIDTH, HEIGHT))
            else:
                keeps.append(torch.ones(m.shape[0], dtype=torch.bool))
        rp = _render(*pred, pose, k, WIDTH, HEIGHT, keeps[0])
        rg = _render(*gt, pose, k, WIDTH, HEIGHT, keeps[1])
        cam_terms.append(_terms(rp, rg, 50.0))
    # the release's BEV: grid-to-camera [[1,0,0,0],[0,-1,0,0],[0,0,-1,X extent]], focal = size,
    # principal point at the image centre (the grid is centred on the ego origin); no culling
    bev_pose = torch.tensor(
        [[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, GRID.extent[0]], [0, 0, 0, 1]], dtype=torch.float64
    )
    bev_k = torch.tensor([[BEV_SIZE, 0, BEV_SIZE / 2], [0, BEV_SIZE, BEV_SIZE / 2], [0, 0, 1]], dtype=torch.float64)
    rp = _render(*pred, bev_pose, bev_k, BEV_SIZE, BEV_SIZE, torch.ones(pred[0].shape[0], dtype=torch.bool))
    rg = _render(*gt, bev_pose, bev_k, BEV_SIZE, BEV_SIZE, torch.ones(gt[0].shape[0], dtype=torch.bool))
    bev, bev_depth, _, _ = _terms(rp, rg, 100.0)
    out = {
        "cam": torch.stack([t[0] for t in cam_terms]).mean(),  # mean of per-view means
        "cam_depth": torch.stack([t[1] for t in cam_terms]).mean(),
        "bev": bev,
        "bev_depth": bev_depth,
    }
    out["loss"] = 10.0 * (out["cam"] + out["cam_depth"] + out["bev"] + out["bev_depth"])
    # what pooling all views' pixels would give instead (not the release)
    out["cam_depth_pooled"] = sum(t[2] for t in cam_terms) / sum(t[3] for t in cam_terms)
    out["cam_depth_counts"] = [t[3] for t in cam_terms]
    return out


def _check_border_scene(labels, pose, k):
    """Some occupied voxels' centres project just outside the image (within 2 px of a border)
    while their footprints (3 sigma) reach into it: the scene tests what culling decides."""
    lab = labels[0].reshape(-1)
    means = _centres().reshape(-1, 3)[(lab != GRID.empty_index) & (lab != 255)]
    uv, z = _project(means, pose, k)
    outside = ~_centre_inside(means, pose, k, WIDTH, HEIGHT) & (z > NEAR)
    sigma = k[0, 0] * GRID.gaussian_scale / z
    gap = torch.stack([0.5 - uv[:, 0], uv[:, 0] - (WIDTH - 0.5), 0.5 - uv[:, 1], uv[:, 1] - (HEIGHT - 0.5)], -1)
    gap = gap.max(-1).values
    just_outside = outside & (gap < 2.0) & (gap < 3 * sigma)
    assert int(just_outside.sum()) >= 4, "the scene should have occupied voxels just outside the border"
    assert int(_centre_inside(means, pose, k, WIDTH, HEIGHT).sum()) >= 10


def _package(labels, logits, poses, ks, opacity=None, **kwargs):
    """``GaussRenderLoss(GRID)`` with its defaults but for the sensor strategy, the BEV size and
    the CPU backend (``**kwargs`` override more)."""
    loss_fn = gr.GaussRenderLoss(GRID, camera_strategy="sensor", bev_size=BEV_SIZE, backend="torch", **kwargs)
    return loss_fn(logits, labels, ks[None], poses[None], (HEIGHT, WIDTH), opacity=opacity)


POSE = _look_along_x((-4.0, 0.0, 0.4))


@pytest.mark.parametrize("learned_opacity", [False, True])
def test_default_loss_matches_the_release_reference(learned_opacity):
    labels, logits = _scene(0)
    poses, ks = POSE[None], _intrinsics()[None]
    _check_border_scene(labels, POSE, ks[0])
    opacity = None
    if learned_opacity:
        opacity = torch.rand(1, *GRID.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    leaves = [logits.clone().requires_grad_(), None if opacity is None else opacity.clone().requires_grad_()]
    ref_leaves = [logits.clone().requires_grad_(), None if opacity is None else opacity.clone().requires_grad_()]
    got = _package(labels, leaves[0], poses, ks, opacity=leaves[1])
    want = reference_loss(ref_leaves[0], labels, poses, ks, opacity=ref_leaves[1])
    for name in ("cam", "cam_depth", "bev", "bev_depth", "loss"):
        assert float(want[name].detach()) > 0, name
        torch.testing.assert_close(
            got[name], want[name], rtol=1e-9, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}"
        )
    got["loss"].backward()
    want["loss"].backward()
    torch.testing.assert_close(leaves[0].grad, ref_leaves[0].grad, rtol=1e-7, atol=1e-11)
    assert float(leaves[0].grad.abs().max()) > 0
    if opacity is not None:
        torch.testing.assert_close(leaves[1].grad, ref_leaves[1].grad, rtol=1e-7, atol=1e-11)


def test_footprint_option_is_exact_splatting_and_differs():
    labels, logits = _scene(0)
    poses, ks = POSE[None], _intrinsics()[None]
    leaf, ref_leaf = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    got = _package(labels, leaf, poses, ks, cull="footprint", views=("cam",))
    want = reference_loss(ref_leaf, labels, poses, ks, cull="footprint")
    for name in ("cam", "cam_depth"):
        torch.testing.assert_close(
            got[name], want[name], rtol=1e-9, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}"
        )
    (got["cam"] + got["cam_depth"]).backward()
    (want["cam"] + want["cam_depth"]).backward()
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-7, atol=1e-11)
    center = _package(labels, logits, poses, ks, views=("cam",))
    # the voxels just outside the border change the camera terms (by 0.3 % and more here:
    # far above rounding, which the comparisons above bound by 1e-9)
    assert abs(float(center["cam"]) / float(got["cam"].detach()) - 1) > 1e-3
    assert abs(float(center["cam_depth"]) / float(got["cam_depth"].detach()) - 1) > 1e-3
    assert float(center["bev"]) == 0.0 and float(got["bev"]) == 0.0


def test_several_views_average_per_view_means():
    # two cameras with different amounts of ground-truth depth: the depth term is the mean of
    # the two views' means, not one mean over the pooled pixels
    labels, logits = _scene(2)
    # the second camera, 1.6 m higher and to the side, sees the grid in about half its image
    poses = torch.stack([POSE, _look_along_x((-4.0, 1.5, 1.6))])
    ks = torch.stack([_intrinsics(), _intrinsics()])
    got = _package(labels, logits, poses, ks, views=("cam",), cameras_per_sample=2)
    want = reference_loss(logits, labels, poses, ks)
    for name in ("cam", "cam_depth"):
        torch.testing.assert_close(
            got[name], want[name], rtol=1e-9, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}"
        )
    # the pooled mean over both views' valid pixels is a different number on this scene
    assert want["cam_depth_counts"][0] > 2 * want["cam_depth_counts"][1]
    assert abs(float(want["cam_depth_pooled"]) / float(want["cam_depth"]) - 1) > 0.1


def test_cull_option_is_validated():
    with pytest.raises(ValueError, match="cull"):
        gr.GaussRenderLoss(GRID, cull="sphere")
    assert gr.GaussRenderLoss(GRID).options.cull == "center"
