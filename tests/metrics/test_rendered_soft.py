"""RenderedViewMetrics on float logits: the release's eval rule (features softmax(logits),
opacity 1 where the argmax is not empty, pixel class = argmax of the blended soft features plus
the transmittance times the empty-class background), re-derived in float64 from the release's
code (eval.py, src/model/head/voxel_render.py with overwrite_opacity=True, gaussian_render.py,
src/evaluation/metrics.py MeanIoU and L1_Metric)."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from gaussrender.metrics import RenderedViewMetrics
from gaussrender.metrics.rendered import PROBABILITY_TOLERANCE
from tests.metrics.test_rendered import BEV, FREE, GRID, POSE, H, K, W, _confmat, _empty, _random_scene, _two_cameras
from tests.render.oracle import oracle_render

C = GRID.num_classes


def _metric(**kw) -> RenderedViewMetrics:
    kw.setdefault("bev_size", BEV)
    kw.setdefault("backend", "torch")
    return RenderedViewMetrics(GRID, **kw)


def _uncertain_logits(target: torch.Tensor, seed: int, boost: float = 1.0) -> torch.Tensor:
    """``[1, C, X, Y, Z]`` logits leaning (by ``boost``) towards the target class, with noise."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((1, C, *GRID.shape), generator=g, dtype=torch.float64)
    known = target[0] != GRID.ignore_index
    lean = torch.zeros_like(logits[0])
    lean[:, known] = torch.nn.functional.one_hot(target[0][known], C).t().double() * boost
    logits[0] += lean
    logits[0, FREE] += 0.3  # most free voxels stay free
    return logits


def _release_views(logits, target, k, poses, width, height, centre_cull):
    """The release's eval for one sample, float64: class maps and depths of prediction and truth.

    Prediction: all voxels whose ground truth is not 255 (``valid_gauss``), features
    ``softmax(logits)`` over the classes, opacity 1 where argmax(logits) is not empty and 0
    elsewhere (rendered as such: the rasteriser skips alpha < 1/255); ground truth: non-empty,
    non-ignore voxels, one-hot, opacity 1. Camera views keep Gaussians whose centre is in front
    (z > 0, and the rasteriser's near plane 0.2) and projects to 0.5 < u < W - 0.5,
    0.5 < v < H - 0.5; background one-hot empty. Pixel class = argmax of the rendered image.
    """
    idx = torch.stack(torch.meshgrid(*[torch.arange(n) for n in GRID.shape], indexing="ij"), -1).reshape(-1, 3)
    means = torch.tensor(GRID.range_min, dtype=torch.float64) + (idx.double() + 0.5) * GRID.voxel_size
    lab = target.reshape(-1)
    flat = logits.reshape(C, -1).t().double()
    bg = torch.zeros(C, dtype=torch.float64)
    bg[FREE] = 1.0
    sets = {
        "pred": (
            lab != GRID.ignore_index,
            flat.softmax(-1),
            (flat.argmax(-1) != FREE).double(),
        ),
        "gt": (
            (lab != FREE) & (lab != GRID.ignore_index),
            torch.nn.functional.one_hot(lab.clamp_max(C - 1), C).double(),
            torch.ones(lab.shape[0], dtype=torch.float64),
        ),
    }
    out = {}
    for name, (valid, feats, opac) in sets.items():
        classes, depths = [], []
        for v in range(poses.shape[0]):
            sel = valid.clone()
            if centre_cull:
                cam = means @ poses[v, :3, :3].double().T + poses[v, :3, 3].double()
                uv = cam[:, :2] / cam[:, 2:3] @ k[v, :2, :2].double().T + k[v, :2, 2].double()
                sel &= (cam[:, 2] > 0) & (uv[:, 0] > 0.5) & (uv[:, 0] < width - 0.5)
                sel &= (uv[:, 1] > 0.5) & (uv[:, 1] < height - 0.5)
            f, d, _ = oracle_render(
                means[sel], opac[sel], feats[sel], GRID.gaussian_scale, poses[v : v + 1], k[v : v + 1],
                width, height, background=bg,
            )  # fmt: skip
            top2 = f[0].topk(2, dim=-1).values
            # float32 rendering agrees to ~1e-6: a near-tie could flip the argmax
            assert float((top2[..., 0] - top2[..., 1]).min()) > 1e-5
            classes.append(f[0].argmax(-1))
            depths.append(d[0])
        out[name] = (torch.stack(classes), torch.stack(depths))
    return out


def _release_mean_iou(cm: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """The release's MeanIoU._after_epoch from a confusion matrix: IoU 1 without gt pixels."""
    cm = cm.double()
    seen, correct, positive = cm.sum(1), cm.diagonal(), cm.sum(0)
    ious = [1.0 if seen[i] == 0 else float(correct[i] / (seen[i] + positive[i] - correct[i])) for i in range(C)]
    ne_seen = cm[1:].sum()
    ne_correct = cm[1:, 1:].sum()
    ne_positive = cm[:, 1:].sum()
    iou = 1.0 if ne_seen == 0 else float(ne_correct / (ne_seen + ne_positive - ne_correct))
    miou = sum(ious[i] for i in range(C) if i != FREE) / (C - 1)
    return miou, iou, torch.tensor(ious, dtype=torch.float64)


def test_soft_rule_matches_a_float64_re_derivation_of_the_release_eval():
    _, target = _random_scene(3)
    logits = _uncertain_logits(target, seed=11)
    k, poses = _two_cameras()
    m = _metric(convention="release")
    m.update(logits.float(), target, intrinsics=k[None], cam_from_grid=poses[None], image_size=(H, W))
    ref = _release_views(logits[0], target[0], k, poses, W, H, True)
    (p_cls, p_d), (t_cls, t_d) = ref["pred"], ref["gt"]
    cm = _confmat(t_cls, p_cls)
    assert torch.equal(m.image_confmat, cm)
    assert 0 < int(cm.trace()) < int(cm.sum())  # a non-trivial scene
    valid = t_d > 0.1
    err = (p_d - t_d).abs()[valid]
    assert int(m.image_depth_count) == int(valid.sum())
    out = m.compute()
    # the release's L1_Metric: sum / (count + 1)
    assert float(out["depth_l1"]) == pytest.approx(float(err.sum() / (err.numel() + 1)), rel=1e-4)
    miou, iou, per_class = _release_mean_iou(cm)
    assert float(out["image_miou"]) == pytest.approx(miou, rel=1e-12)
    assert float(out["image_iou"]) == pytest.approx(iou, rel=1e-12)
    torch.testing.assert_close(out["image_per_class_iou"], per_class)

    bev = gr.bev_camera(GRID, BEV, dtype=torch.float64)
    ref_bev = _release_views(logits[0], target[0], bev.intrinsics, bev.cam_from_world, BEV, BEV, False)
    (bp_cls, bp_d), (bt_cls, bt_d) = ref_bev["pred"], ref_bev["gt"]
    assert torch.equal(m.bev_confmat, _confmat(bt_cls, bp_cls))
    bvalid = bt_d > 0.1
    assert int(m.bev_depth_count) == int(bvalid.sum())
    assert float(m.bev_depth_sum) == pytest.approx(float((bp_d - bt_d).abs()[bvalid].sum()), rel=1e-4)


def test_the_rules_differ_on_uncertain_logits_and_agree_on_confident_ones():
    _, target = _random_scene(3)
    k, poses = _two_cameras()

    def run(pred):
        m = _metric()
        m.update(pred, target, intrinsics=k[None], cam_from_grid=poses[None], image_size=(H, W))
        return m

    uncertain = _uncertain_logits(target, seed=11).float()
    soft, hard = run(uncertain), run(uncertain.argmax(dim=1))
    # same Gaussians and opacities: the depth images are the same, the classes are not
    assert torch.equal(soft.image_depth_count, hard.image_depth_count)
    torch.testing.assert_close(soft.image_depth_sum, hard.image_depth_sum)
    torch.testing.assert_close(soft.bev_depth_sum, hard.bev_depth_sum)
    moved = (soft.image_confmat - hard.image_confmat).abs().sum() // 2
    assert int(moved) > 0.02 * int(soft.image_confmat.sum())
    assert not torch.equal(soft.bev_confmat, hard.bev_confmat)

    labels = uncertain.argmax(dim=1)
    confident = torch.nn.functional.one_hot(labels, C).permute(0, 4, 1, 2, 3).float() * 40.0
    sure, hard2 = run(confident), run(labels)
    for name in ("image_confmat", "bev_confmat", "image_depth_count", "bev_depth_count"):
        assert torch.equal(getattr(sure, name), getattr(hard2, name)), name
    torch.testing.assert_close(sure.image_depth_sum, hard2.image_depth_sum)


def test_probabilities_score_like_their_logits():
    _, target = _random_scene(3)
    logits = _uncertain_logits(target, seed=11)
    k, poses = _two_cameras()
    a, b, c16 = _metric(), _metric(), _metric()
    a.update(logits.float(), target, intrinsics=k[None], cam_from_grid=poses[None], image_size=(H, W))
    probs = logits.softmax(dim=1)
    b.update(probs, target, intrinsics=k[None], cam_from_grid=poses[None], image_size=(H, W), probabilities=True)
    assert torch.equal(a.image_confmat, b.image_confmat) and torch.equal(a.bev_confmat, b.bev_confmat)
    # float16 storage (gaussrender predict --save-probabilities) moves at most a few near-tie pixels
    c16.update(
        probs.half(), target, intrinsics=k[None], cam_from_grid=poses[None], image_size=(H, W), probabilities=True
    )
    assert int((c16.image_confmat - a.image_confmat).abs().sum()) <= 0.01 * int(a.image_confmat.sum())
    torch.testing.assert_close(c16.image_depth_sum, a.image_depth_sum)


def test_bad_logits_and_probabilities_are_refused_by_name():
    m = _metric()
    target = _empty()
    kw = dict(intrinsics=K[None, None], cam_from_grid=POSE[None, None], image_size=(H, W))
    logits = torch.zeros(1, C, *GRID.shape)
    with pytest.raises(ValueError, match=r"pred \(logits\) has 5 classes .* has 4"):
        m.update(torch.zeros(1, C + 1, *GRID.shape), target, **kw)
    nan = logits.clone()
    nan[0, 1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"pred \(logits\) holds non-finite"):
        m.update(nan, target, **kw)
    with pytest.raises(ValueError, match=r"pred \(logits\) must have shape"):
        m.update(logits[:, :, :-1], target, **kw)
    with pytest.raises(ValueError, match=r"pred \(probabilities\) must sum to 1"):
        m.update(torch.full((1, C, *GRID.shape), 0.3), target, probabilities=True, **kw)
    off = torch.full((1, C, *GRID.shape), 1.0 / C)
    off[:, 0] += 2 * PROBABILITY_TOLERANCE
    with pytest.raises(ValueError, match="sum to 1"):
        m.update(off, target, probabilities=True, **kw)
    neg = torch.zeros(1, C, *GRID.shape)
    neg[:, 0], neg[:, 1] = 1.5, -0.5
    with pytest.raises(ValueError, match=r"pred \(probabilities\) must lie in \[0, 1\]"):
        m.update(neg, target, probabilities=True, **kw)
    with pytest.raises(TypeError, match="probabilities=True needs a floating-point pred"):
        m.update(target, target, probabilities=True, **kw)
    bad_target = target.clone()
    bad_target[0, 0, 0, 0] = 9
    with pytest.raises(ValueError, match="target"):
        m.update(logits, bad_target, **kw)
    assert int(m.image_confmat.sum()) == 0  # nothing was counted
