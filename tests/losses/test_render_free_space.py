"""The 2D-target options of GaussRenderLoss that let 2D-only training carve free space
(issue 27): ``opacity="linear"``, ``classes="conditional"``, ``target_alpha`` / ``target_sky``
and ``target_depth_mode="normalised"``. Values and gradients against float64 references
(loops over views and pixels; the public renderer fed hand-built Gaussians), the release's
defaults unchanged, and bad input refused by name with the options on."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from gaussrender.losses.render.terms import NO_TARGET, NORMALISE_MIN_ALPHA, target_alpha_term, target_depth_term

from .test_render_targets_2d import GRID, POSES, SIZE, K, _cams, _labels, _logits, _sparse_targets

FREE = dict(opacity="linear", classes="conditional", target_alpha=True)
BG = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def _alpha_reference(alpha, t_depth, sky):
    """float64 loop: per view the mean of |alpha - [return]| over the counted pixels, then the
    mean over the views that have any."""
    views = []
    for v in range(alpha.shape[0]):
        total, n = 0.0, 0
        for r in range(alpha.shape[1]):
            for c in range(alpha.shape[2]):
                hit = float(t_depth[v, r, c]) > 0
                if hit or sky:
                    total += (1.0 - float(alpha[v, r, c])) if hit else float(alpha[v, r, c])
                    n += 1
        if n:
            views.append(total / n)
    return sum(views) / len(views) if views else 0.0


def _normalised_depth_reference(depth, alpha, t_depth, scale):
    views = []
    for v in range(depth.shape[0]):
        total, n = 0.0, 0
        for r in range(depth.shape[1]):
            for c in range(depth.shape[2]):
                a = float(alpha[v, r, c])
                if float(t_depth[v, r, c]) > 0 and a >= NORMALISE_MIN_ALPHA:
                    total += abs(float(depth[v, r, c]) / a - float(t_depth[v, r, c])) / scale
                    n += 1
        if n:
            views.append(total / n)
    return sum(views) / len(views) if views else 0.0


def _manual_render(logits, classes):
    """The prediction's Gaussians built by hand in float64: opacity 1 - p_empty (linear), features
    the joint softmax or the class distribution given "occupied" (empty removed, renormalised)."""
    p = torch.softmax(logits[0].double(), dim=0)  # [C, X, Y, Z]
    alpha = 1.0 - p[GRID.empty_index]
    keep = alpha >= 1.0 / 255.0
    index = keep.nonzero()
    probs = p[:, keep].t()  # [N, C]
    if classes == "conditional":
        probs = probs.clone()
        probs[:, GRID.empty_index] = 0.0
        probs = probs / probs.sum(1, keepdim=True)
    means = torch.tensor(GRID.range_min, dtype=torch.float64) + (index.double() + 0.5) * GRID.voxel_size
    scales = torch.full((index.shape[0],), GRID.gaussian_scale, dtype=torch.float64)
    cams = gr.Cameras(POSES.double(), K.double(), SIZE[1], SIZE[0])
    return gr.render(means, alpha[keep], probs, scales, cams, BG, cull="center", backend="torch")


@pytest.mark.parametrize("classes", ["joint", "conditional"])
@pytest.mark.parametrize("sky", [False, True])
def test_terms_match_float64_references(classes, sky):
    logits = _logits(dtype=torch.float64, seed=2)
    k, poses = _cams()
    t_depth, t_sem = _sparse_targets(1)
    loss = gr.GaussRenderLoss(GRID, opacity="linear", classes=classes, target_alpha=True, target_sky=sky)
    out = loss(logits, None, k, poses, SIZE, target_depth=t_depth, target_semantics=t_sem)
    img = _manual_render(logits, classes)
    assert float(out["target_alpha"]) == pytest.approx(_alpha_reference(img.alpha, t_depth[0], sky), rel=1e-9)
    # the depth and semantic terms see the same render (linear opacity, these features)
    assert float(out["target_depth"]) == pytest.approx(float(target_depth_term(img.depth, t_depth[0], 50.0)), rel=1e-9)
    label = t_sem[0]
    valid = label != NO_TARGET
    picked = img.features.gather(-1, torch.where(valid, label, 0)[..., None])[..., 0]
    per_pixel = (img.features.sum(-1) - 2 * picked + 1) / 3
    want = torch.stack([per_pixel[v][valid[v]].mean() for v in range(2)]).mean()
    assert float(out["target_semantics"]) == pytest.approx(float(want), rel=1e-9)
    if classes == "conditional":  # no empty class in the rendered Gaussians' features
        assert float(out["loss"]) == pytest.approx(
            10.0 * float(out["target_alpha"] + out["target_depth"] + out["target_semantics"]), rel=1e-12
        )


def test_normalised_depth_matches_float64_loop():
    logits = _logits(dtype=torch.float64, seed=4)
    k, poses = _cams()
    t_depth, _ = _sparse_targets(1)
    out = gr.GaussRenderLoss(GRID, opacity="linear", target_depth_mode="normalised")(
        logits, None, k, poses, SIZE, target_depth=t_depth
    )
    img = _manual_render(logits, "joint")
    want = _normalised_depth_reference(img.depth, img.alpha, t_depth[0], 50.0)
    assert want > 0
    assert float(out["target_depth"]) == pytest.approx(want, rel=1e-9)


def test_term_functions_gradcheck():
    g = torch.Generator().manual_seed(0)
    alpha = (0.05 + 0.9 * torch.rand(2, 3, 4, generator=g, dtype=torch.float64)).requires_grad_()
    depth = (torch.rand(2, 3, 4, generator=g, dtype=torch.float64) * 5).requires_grad_()
    t_depth = torch.rand(2, 3, 4, generator=g, dtype=torch.float64) * 6
    t_depth[0, 0] = 0.0
    t_depth[1, :, 1:] = 0.0
    for sky in (False, True):
        assert torch.autograd.gradcheck(lambda a, sky=sky: target_alpha_term(a, t_depth, sky), (alpha,))
    assert torch.autograd.gradcheck(lambda d, a: target_depth_term(d, t_depth, 50.0, a), (depth, alpha))


def test_alpha_term_values_by_hand():
    alpha = torch.tensor([[[0.2, 0.9], [0.5, 0.0]]], dtype=torch.float64)
    t_depth = torch.tensor([[[3.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    assert float(target_alpha_term(alpha, t_depth, sky=False)) == pytest.approx((0.8 + 0.5) / 2)
    assert float(target_alpha_term(alpha, t_depth, sky=True)) == pytest.approx((0.8 + 0.9 + 0.5 + 0.0) / 4)
    # a view without any return counts nothing without sky
    assert float(target_alpha_term(alpha, torch.zeros_like(t_depth), sky=False)) == 0.0


def test_faint_pixels_are_left_out_of_the_normalised_depth():
    depth = torch.tensor([[[1e-4, 2.0]]], dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([[[1e-3, 0.5]]], dtype=torch.float64, requires_grad=True)
    t_depth = torch.tensor([[[9.0, 5.0]]], dtype=torch.float64)
    value = target_depth_term(depth, t_depth, 1.0, alpha)
    assert float(value.detach()) == pytest.approx(1.0)  # |2 / 0.5 - 5| on the bright pixel only
    value.backward()
    assert float(depth.grad[0, 0, 0]) == 0.0 and float(alpha.grad[0, 0, 0]) == 0.0


@pytest.mark.parametrize("options", [FREE, {**FREE, "target_sky": True, "target_depth_mode": "normalised"}])
def test_gradient_matches_finite_differences(options):
    logits = 0.5 * _logits(dtype=torch.float64, seed=3)
    logits[:, 2] += 1.0
    logits.requires_grad_()
    k, poses = _cams()
    t_depth, t_sem = _sparse_targets(1)
    loss = gr.GaussRenderLoss(GRID, semantic="ce", **options)

    def f(x):
        return loss(x, None, k, poses, SIZE, target_depth=t_depth, target_semantics=t_sem)["loss"]

    f(logits).backward()
    assert torch.isfinite(logits.grad).all()
    # the empty class gets a gradient (through the opacity) though the features lack it
    assert float(logits.grad[:, GRID.empty_index].abs().sum()) > 0
    g = torch.Generator().manual_seed(5)
    for _ in range(2):
        direction = torch.randn(logits.shape, generator=g, dtype=torch.float64)
        eps = 1e-6
        with torch.no_grad():
            numeric = (f(logits + eps * direction) - f(logits - eps * direction)) / (2 * eps)
        assert float((logits.grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-4, abs=1e-8)


def test_linear_opacity_passes_more_gradient_once_empty_is_unlikely():
    # every voxel nearly certainly occupied (p_empty ~ 1e-3): the failure of docs/evidence.md
    logits = torch.zeros(1, 3, 16, 16, 4, dtype=torch.float64)
    logits[:, 0] = 7.0
    k, poses = _cams()
    t_depth, _ = _sparse_targets(1)
    grads = {}
    for opacity in ("sharpened", "linear"):
        x = logits.clone().requires_grad_()
        gr.GaussRenderLoss(GRID, opacity=opacity)(x, None, k, poses, SIZE, target_depth=t_depth)["loss"].backward()
        grads[opacity] = float(x.grad[:, GRID.empty_index].abs().sum())
    assert grads["linear"] > 100 * grads["sharpened"] > 0


def test_defaults_are_the_release():
    logits, labels = _logits(dtype=torch.float64), _labels()
    k, poses = _cams()
    t_depth, t_sem = _sparse_targets(1)
    a = gr.GaussRenderLoss(GRID, seed=0)(logits, labels, k, poses, SIZE, target_depth=t_depth, target_semantics=t_sem)
    b = gr.GaussRenderLoss(GRID, opacity="sharpened", classes="joint", target_alpha=False, seed=0)(
        logits, labels, k, poses, SIZE, target_depth=t_depth, target_semantics=t_sem
    )
    assert "target_alpha" not in a
    for key in a:
        assert float(a[key]) == float(b[key])


def test_a_given_opacity_volume_wins_over_the_option():
    logits = _logits(dtype=torch.float64)
    opacity = torch.full((1, 16, 16, 4), 0.5, dtype=torch.float64)
    k, poses = _cams()
    t_depth, _ = _sparse_targets(1)
    outs = [
        gr.GaussRenderLoss(GRID, opacity=o, target_alpha=True)(
            logits, None, k, poses, SIZE, opacity=opacity, target_depth=t_depth
        )
        for o in ("sharpened", "linear")
    ]
    assert float(outs[0]["loss"]) == float(outs[1]["loss"])


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(target_depth=torch.zeros(1, 3, 24, 32)), "target_depth"),  # 3 views for 2 cameras
        (dict(target_depth=torch.full((1, 2, 24, 32), float("nan"))), "target_depth"),
        (dict(target_semantics=torch.full((1, 2, 24, 32), 3)), "target_semantics"),
        (dict(target_depth=None), "target_alpha"),
    ],
)
def test_bad_targets_refused_by_name(change, match):
    k, poses = _cams()
    targets = dict(target_depth=torch.ones(1, 2, 24, 32), target_semantics=torch.zeros(1, 2, 24, 32, dtype=torch.long))
    targets.update(change)
    with pytest.raises(ValueError, match=match):
        gr.GaussRenderLoss(GRID, **FREE, target_sky=True)(_logits(), None, k, poses, SIZE, **targets)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(opacity="square"), "opacity"),
        (dict(classes="occupied"), "classes"),
        (dict(target_depth_mode="mean"), "target_depth_mode"),
        (dict(target_sky=True), "target_alpha"),
        (dict(target_alpha=1), "target_alpha"),
        (dict(carve_offset=-0.1), "carve_offset"),
        (dict(carve_empty_weight=0.0), "carve_empty_weight"),
    ],
)
def test_bad_options_refused_by_name(options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gr.GaussRenderLoss(GRID, **options)


# ----------------------------------------------------------------- free space in voxels (carve)
def _scene_targets():
    """Exact dense targets of the test scene: one ray per pixel centre into ``_labels()``."""
    from gaussrender.scene import camera_targets

    labels = _labels()[0]
    depth, sem = camera_targets(labels, GRID, K.double(), POSES.double(), SIZE)
    return labels, depth, sem


def _carve_reference(depth, sem, sky, offset):
    """float64, ray by ray: the slab test of every voxel against the ray through each pixel
    centre; crossed before the return (exit <= t + tol) -> empty, containing the point just past
    the return by ``offset`` -> the pixel's class (votes, ties to the smaller class)."""
    import numpy as np

    from gaussrender.losses.render.carve import CARVE_TOLERANCE, OCCUPIED

    lo = np.array(GRID.range_min)
    vs = GRID.voxel_size
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in GRID.shape], indexing="ij"), -1).reshape(-1, 3)
    vmin, vmax = idx.astype(np.float64), idx + 1.0
    free = np.zeros(len(idx), bool)
    votes = np.zeros((len(idx), GRID.num_classes + 1), np.int64)
    for v in range(depth.shape[0]):
        pose = POSES[v].double().numpy()
        k = K[v].double().numpy()
        centre = (-pose[:3, :3].T @ pose[:3, 3] - lo) / vs
        for r in range(depth.shape[1]):
            for c in range(depth.shape[2]):
                d = float(depth[v, r, c])
                if d == 0 and not sky:
                    continue
                yc = (r + 0.5 - k[1, 2]) / k[1, 1]
                xc = (c + 0.5 - k[0, 2] - k[0, 1] * yc) / k[0, 0]
                ray = pose[:3, :3].T @ np.array([xc, yc, 1.0])
                t_hit = d * np.linalg.norm(ray) / vs if d > 0 else np.inf
                u = ray / np.linalg.norm(ray)
                with np.errstate(divide="ignore", invalid="ignore"):
                    t0 = (vmin - centre) / u
                    t1 = (vmax - centre) / u
                tn = np.where(u == 0, np.where((centre >= vmin) & (centre < vmax), -np.inf, np.inf), np.minimum(t0, t1))
                tf = np.where(u == 0, np.where((centre >= vmin) & (centre < vmax), np.inf, -np.inf), np.maximum(t0, t1))
                t_in, t_out = np.maximum(tn.max(1), 0.0), tf.min(1)
                crossed = t_in < t_out
                free |= crossed & (t_out <= t_hit + CARVE_TOLERANCE)
                if d > 0:
                    ends = crossed & (t_out > t_hit + offset) & (t_in <= t_hit + offset)
                    label = int(sem[v, r, c])
                    votes[ends, GRID.num_classes if label == NO_TARGET else label] += 1
    out = np.full(len(idx), GRID.ignore_index, np.int64)
    out[free] = GRID.empty_index
    has = votes[:, : GRID.num_classes].sum(1) > 0
    out[has] = votes[has, : GRID.num_classes].argmax(1)
    out[~has & (votes[:, GRID.num_classes] > 0)] = OCCUPIED
    return torch.from_numpy(out.reshape(GRID.shape))


@pytest.mark.parametrize("sky", [False, True])
@pytest.mark.parametrize("offset", [1e-3, 0.25])
def test_carved_labels_match_float64_slab_reference(sky, offset):
    from gaussrender.losses.render.carve import carve_labels

    labels, depth, sem = _scene_targets()
    assert (depth > 0).sum() > 200 and (depth == 0).sum() > 50  # surfaces and sky in view
    cams = gr.Cameras(POSES.double(), K.double(), SIZE[1], SIZE[0])
    carved = carve_labels(cams, depth, sem.long(), GRID, sky, offset)
    assert torch.equal(carved, _carve_reference(depth, sem, sky, offset))
    seen = carved != GRID.ignore_index
    agree = float((carved[seen] == labels[seen].long()).double().mean())
    if offset == 1e-3:  # exact targets of the labels, read at their depth, carve the labels
        assert int(seen.sum()) > 100 and agree == 1.0
    else:
        assert agree > 0.9


def test_carved_pixels_without_class_mark_occupied():
    from gaussrender.losses.render.carve import OCCUPIED, carve_labels

    _, depth, sem = _scene_targets()
    cams = gr.Cameras(POSES.double(), K.double(), SIZE[1], SIZE[0])
    carved = carve_labels(cams, depth, None, GRID, sky=False)
    assert torch.equal(carved, _carve_reference(depth, torch.full_like(sem, NO_TARGET), False, 0.25))
    assert (carved == OCCUPIED).any() and (carved == GRID.empty_index).any()


def test_carve_term_value_and_gradients():
    from gaussrender.losses.render.carve import OCCUPIED, carve_term

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    grid = gr.VoxelGrid("c", (0.0, 0.0, 0.0), (4.0, 3.0, 2.0), 1.0, (4, 3, 2), ("a", "b", "free"), 2)
    carved = torch.full((4, 3, 2), grid.ignore_index)
    carved[0, 0, 0], carved[1, 2, 1], carved[3, 1, 0], carved[2, 2, 0] = 2, 0, 1, OCCUPIED
    p = torch.softmax(logits.detach(), 0)
    # the empty voxels (one) and the surface voxels (three) weigh half each
    surface = -(torch.log(p[0, 1, 2, 1]) + torch.log(p[1, 3, 1, 0]) + torch.log(1 - p[2, 2, 2, 0])) / 3
    want = (-torch.log(p[2, 0, 0, 0]) + surface) / 2
    assert float(carve_term(logits, carved, grid).detach()) == pytest.approx(float(want), rel=1e-12)
    assert torch.autograd.gradcheck(lambda x: carve_term(x, carved, grid), (logits,))
    # a weight on the empty voxels instead: the weighted mean over all carved voxels
    weighted = (-0.5 * torch.log(p[2, 0, 0, 0]) + 3 * surface) / 3.5
    assert float(carve_term(logits, carved, grid, 0.5).detach()) == pytest.approx(float(weighted), rel=1e-12)
    assert torch.autograd.gradcheck(lambda x: carve_term(x, carved, grid, 0.5), (logits,))
    assert float(carve_term(logits, torch.full_like(carved, grid.ignore_index), grid).detach()) == 0.0


def test_loss_with_carve_is_its_term_and_refuses_missing_depth():
    from gaussrender.losses.render.carve import carve_labels, carve_term

    _, depth, sem = _scene_targets()
    logits = _logits(dtype=torch.float64)
    k, poses = _cams()
    out = gr.GaussRenderLoss(GRID, target_carve=True, target_sky=True, carve_offset=1e-3)(
        logits, None, k.double(), poses.double(), SIZE, target_depth=depth[None], target_semantics=sem[None].long()
    )
    cams = gr.Cameras(POSES.double(), K.double(), SIZE[1], SIZE[0])
    want = carve_term(logits[0], carve_labels(cams, depth, sem.long(), GRID, True, 1e-3), GRID)
    assert float(out["target_carve"]) == pytest.approx(float(want), rel=1e-12)
    with pytest.raises(ValueError, match="target_carve"):
        gr.GaussRenderLoss(GRID, target_carve=True)(logits, None, k, poses, SIZE, target_semantics=sem[None].long())
