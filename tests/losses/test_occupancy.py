"""3D losses against slow float64 references written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.losses.occupancy import (
    RELEASE_CLASS_WEIGHTS,
    Occupancy3DLoss,
    cross_entropy_3d,
    downsample_labels,
    inverse_log_frequency_weights,
    lovasz_softmax,
    release_class_weights,
)

IGNORE = 255


def _random_problem(seed: int, b=2, c=5, shape=(4, 3, 2), ignore_frac=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, *shape, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, c, (b, *shape), generator=g)
    labels[torch.rand(b, *shape, generator=g) < ignore_frac] = IGNORE
    return logits, labels


# ---------------------------------------------------------------- references (float64 loops)
def ref_cross_entropy(logits, labels, weights):
    num, den = 0.0, 0.0
    b, c = logits.shape[:2]
    flat_logits = logits.double().movedim(1, -1).reshape(-1, c)
    for row, y in zip(flat_logits, labels.reshape(-1).tolist()):
        if y == IGNORE:
            continue
        logp = row[y] - torch.logsumexp(row, dim=0)
        w = 1.0 if weights is None else float(weights[y])
        num = num - w * logp
        den += w
    return num / den


def ref_lovasz(logits, labels):
    """Lovasz extension of the Jaccard loss, per class, from the set definition."""
    c = logits.shape[1]
    probs = logits.double().softmax(1).movedim(1, -1).reshape(-1, c)
    y = labels.reshape(-1).tolist()
    keep = [i for i, v in enumerate(y) if v != IGNORE]
    losses = []
    for cls in range(c):
        gt = {i for i in keep if y[i] == cls}
        if not gt:
            continue
        errors = {i: abs((1.0 if i in gt else 0.0) - probs[i, cls]) for i in keep}
        order = sorted(keep, key=lambda i: (-errors[i].item(), i))

        def jaccard_loss(mistakes: set, gt: set = gt) -> float:
            # Δ(M) = 1 - |gt \ M| / |gt ∪ M|
            return 1.0 - len(gt - mistakes) / len(gt | mistakes)

        total = 0.0
        prefix: set = set()
        prev = jaccard_loss(prefix)
        for i in order:
            prefix.add(i)
            cur = jaccard_loss(prefix)
            total = total + errors[i] * (cur - prev)
            prev = cur
        losses.append(total)
    return sum(losses) / len(losses)


# ---------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_loop_reference(seed, weighted):
    logits, labels = _random_problem(seed)
    weights = torch.rand(5, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64) + 0.1
    w = weights if weighted else None
    a = logits.clone().requires_grad_(True)
    got = cross_entropy_3d(a, labels, w, IGNORE)
    r = logits.clone().requires_grad_(True)
    want = ref_cross_entropy(r, labels, w)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (ga,) = torch.autograd.grad(got, a)
    (gr,) = torch.autograd.grad(want, r)
    torch.testing.assert_close(ga, gr, rtol=1e-10, atol=1e-12)
    # ignored voxels get exactly zero gradient
    ignored = (labels == IGNORE)[:, None].expand_as(ga)
    assert torch.all(ga[ignored] == 0)


def test_cross_entropy_all_ignored_is_zero_with_graph():
    logits = torch.randn(1, 3, 2, 2, 2, requires_grad=True)
    labels = torch.full((1, 2, 2, 2), IGNORE)
    out = cross_entropy_3d(logits, labels)
    out.backward()
    assert out.item() == 0.0 and torch.all(logits.grad == 0)


# ---------------------------------------------------------------- Lovasz
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lovasz_matches_set_definition(seed):
    logits, labels = _random_problem(seed, b=2, c=4, shape=(3, 3, 2))
    a = logits.clone().requires_grad_(True)
    got = lovasz_softmax(a, labels, IGNORE)
    r = logits.clone().requires_grad_(True)
    want = ref_lovasz(r, labels)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (ga,) = torch.autograd.grad(got, a)
    (gr,) = torch.autograd.grad(want, r)
    torch.testing.assert_close(ga, gr, rtol=1e-9, atol=1e-12)


def test_lovasz_equals_one_minus_iou_for_hard_predictions():
    # with one-hot probabilities the Lovasz extension is the Jaccard loss itself
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 3, (1, 6, 5, 1), generator=g)
    pred = torch.randint(0, 3, (1, 6, 5, 1), generator=g)
    probs = torch.nn.functional.one_hot(pred, 3).movedim(-1, 1).double()
    got = lovasz_softmax(probs, labels, from_logits=False)
    ious = []
    for c in labels.unique().tolist():
        inter = ((labels == c) & (pred == c)).sum().item()
        union = ((labels == c) | (pred == c)).sum().item()
        ious.append(1 - inter / union)
    assert math.isclose(got.item(), sum(ious) / len(ious), rel_tol=1e-12)


def test_lovasz_float32_close_to_float64():
    logits, labels = _random_problem(7, b=1, c=6, shape=(10, 10, 4))
    a = lovasz_softmax(logits.float(), labels)
    b = lovasz_softmax(logits, labels)
    assert abs(a.double().item() - b.item()) < 1e-5


# ---------------------------------------------------------------- multi-scale
def test_downsample_labels_rules():
    empty = 0
    labels = torch.zeros(1, 4, 2, 2, dtype=torch.int64)
    labels[0, 0:2, 0:2, 0:2] = torch.tensor([[[3, 3], [2, 0]], [[0, 0], [0, IGNORE]]])  # 3 wins
    labels[0, 2:4, 0:2, 0:2] = IGNORE  # all ignored
    labels[0, 3, 1, 1] = 0  # ... but one empty child
    out = downsample_labels(labels, (2, 2, 2), num_classes=4, empty_index=empty, ignore_index=IGNORE, rule="majority")
    assert out.shape == (1, 2, 1, 1)
    assert out[0, 0, 0, 0] == 3 and out[0, 1, 0, 0] == empty
    labels[0, 3, 1, 1] = IGNORE
    out = downsample_labels(labels, (2, 2, 2), 4, empty, IGNORE, rule="majority")
    assert out[0, 1, 0, 0] == IGNORE


def test_downsample_labels_matches_loop():
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (2, 4, 6, 2), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.3] = IGNORE
    out = downsample_labels(labels, (2, 3, 1), 4, empty_index=1, ignore_index=IGNORE, rule="majority")
    for b in range(2):
        for i in range(2):
            for j in range(2):
                for k in range(2):
                    block = labels[b, 2 * i : 2 * i + 2, 3 * j : 3 * j + 3, k].reshape(-1).tolist()
                    occ = [v for v in block if v not in (1, IGNORE)]
                    if occ:
                        want = min(set(occ), key=lambda v: (-occ.count(v), v))
                    elif 1 in block:
                        want = 1
                    else:
                        want = IGNORE
                    assert out[b, i, j, k].item() == want


def _last_written_reference(labels, factor, empty):
    """The release's rule, written as it runs: a coarse grid of zeros-as-empty, then every
    non-empty fine voxel as a sparse row (x, y, z, label), rows in row-major order, assigned
    one at a time with integer-divided indices; later rows overwrite earlier ones."""
    b, x, y, z = labels.shape
    fx, fy, fz = factor
    out = torch.full((b, x // fx, y // fy, z // fz), empty, dtype=torch.int64)
    for n in range(b):
        rows = [
            (i, j, k, int(labels[n, i, j, k]))
            for i in range(x)
            for j in range(y)
            for k in range(z)
            if int(labels[n, i, j, k]) != empty
        ]
        for i, j, k, lab in rows:
            out[n, i // fx, j // fy, k // fz] = lab
    return out


@pytest.mark.parametrize("empty", [0, 3])
def test_downsample_labels_last_written_matches_release_loop(empty):
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 4, (2, 4, 6, 4), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.5] = empty  # many empty children
    labels[torch.rand(labels.shape, generator=g) < 0.1] = IGNORE
    for factor in [(2, 2, 2), (2, 3, 1), (4, 6, 4)]:
        out = downsample_labels(labels, factor, 4, empty_index=empty, ignore_index=IGNORE)
        torch.testing.assert_close(out, _last_written_reference(labels, factor, empty), rtol=0, atol=0)


def test_downsample_labels_last_differs_from_majority():
    labels = torch.zeros(1, 2, 2, 2, dtype=torch.int64)
    labels[0, 0, 0, 0] = labels[0, 0, 0, 1] = labels[0, 0, 1, 0] = 2
    labels[0, 1, 1, 0] = 3  # the last non-empty child in row-major order
    assert downsample_labels(labels, (2, 2, 2), 4, 0).item() == 3
    assert downsample_labels(labels, (2, 2, 2), 4, 0, rule="majority").item() == 2
    labels[0, 1, 1, 1] = IGNORE  # an ignored voxel is written too, and comes last here
    assert downsample_labels(labels, (2, 2, 2), 4, 0).item() == IGNORE
    assert downsample_labels(torch.zeros_like(labels), (2, 2, 2), 4, 0).item() == 0
    with pytest.raises(ValueError, match="rule"):
        downsample_labels(labels, (2, 2, 2), 4, 0, rule="mode")


def test_occupancy_loss_coarse_label_rule_option():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 4, 4, 4, 2, generator=g)
    aux = torch.randn(1, 4, 2, 2, 1, generator=g)
    labels = torch.randint(0, 4, (1, 4, 4, 2), generator=g)
    for rule in ("last", "majority"):
        out = Occupancy3DLoss(4, empty_index=0, lovasz_weight=0.0, coarse_labels=rule)(logits, labels, [aux])
        want = 10 * (
            cross_entropy_3d(logits, labels)
            + 0.5 * cross_entropy_3d(aux, downsample_labels(labels, (2, 2, 2), 4, 0, rule=rule))
        )
        torch.testing.assert_close(out["loss_ce"], want)
    with pytest.raises(ValueError, match="coarse_labels"):
        Occupancy3DLoss(4, empty_index=0, coarse_labels="mode")


# ---------------------------------------------------------------- release class weights
def test_release_class_weight_tables_equal_the_release_at_full_precision():
    # typed here from the release's the release's model/utils/utils.py get_frequencies (not from the
    # code under test): Occ3D / SurroundOcc as written there, KITTI-360 from its voxel counts
    occ3d = [
        1.01552756, 1.06897009, 1.30013094, 1.07253735, 0.94637502, 1.10087012,
        1.26960524, 1.06258364, 1.189019, 1.06217292, 1.00595144, 0.85706115,
        1.03923299, 0.90867526, 0.8936431, 0.85486129, 0.8527829, 0.5,
    ]  # fmt: skip
    surroundocc = [
        0.5, 1.06897009, 1.30013094, 1.07253735, 0.94637502, 1.10087012,
        1.26960524, 1.06258364, 1.189019, 1.06217292, 1.00595144, 0.85706115,
        1.03923299, 0.90867526, 0.8936431, 0.85486129, 0.8527829,
    ]  # fmt: skip
    frequencies = np.array([
        2264087502, 20098728, 104972, 96297, 1149426, 4051087, 125103, 105540713,
        16292249, 45297267, 14454132, 110397082, 6766219, 295883213, 50037503,
        1561069, 406330, 30516166, 1950115,
    ])  # fmt: skip
    kitti360 = (1 / np.log(frequencies + 0.001)).tolist()  # float64, as the release computes it
    # docs/method.md#loss prints the same tables rounded to 4 decimals
    design_kitti = [
        0.0464, 0.0595, 0.0865, 0.0871, 0.0717, 0.0657, 0.0852, 0.0541, 0.0602, 0.0567,
        0.0607, 0.0540, 0.0636, 0.0513, 0.0564, 0.0701, 0.0774, 0.0580, 0.0690,
    ]  # fmt: skip
    assert np.abs(np.array(kitti360) - design_kitti).max() < 5e-5
    assert set(RELEASE_CLASS_WEIGHTS) == {"occ3d", "surroundocc", "kitti360"}
    for grid, want in (
        (gr.OCC3D_NUSCENES, occ3d),
        (gr.SURROUNDOCC_NUSCENES, surroundocc),
        (gr.SSCBENCH_KITTI360, kitti360),
    ):
        np.testing.assert_allclose(RELEASE_CLASS_WEIGHTS[grid.name], want, rtol=1e-15, atol=0)
        w = release_class_weights(grid)
        assert w.dtype == torch.float32 and w.shape == (grid.num_classes,)
        torch.testing.assert_close(w, torch.tensor(want, dtype=torch.float32), rtol=0, atol=0)
        w64 = release_class_weights(grid, dtype=torch.float64)
        torch.testing.assert_close(w64, torch.tensor(want, dtype=torch.float64), rtol=1e-15, atol=0)
    # the empty class has the weight 0.5 on both nuScenes benchmarks
    assert release_class_weights(gr.OCC3D_NUSCENES)[gr.OCC3D_NUSCENES.empty_index] == 0.5
    assert release_class_weights(gr.SURROUNDOCC_NUSCENES)[gr.SURROUNDOCC_NUSCENES.empty_index] == 0.5


def test_release_class_weights_unknown_grid_is_named():
    import dataclasses

    custom = dataclasses.replace(gr.OCC3D_NUSCENES, name="mygrid")
    with pytest.raises(ValueError, match="no release class-weight table for grid 'mygrid'"):
        release_class_weights(custom)
    fewer = dataclasses.replace(gr.OCC3D_NUSCENES, class_names=gr.OCC3D_NUSCENES.class_names[1:], empty_index=16)
    with pytest.raises(ValueError, match="17 classes"):
        release_class_weights(fewer)


def test_occupancy_loss_weights_scales_and_terms():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 4, 8, 8, 4, generator=g)
    aux1 = torch.randn(1, 4, 4, 4, 2, generator=g)
    aux2 = torch.randn(1, 4, 2, 2, 1, generator=g)
    labels = torch.randint(0, 4, (1, 8, 8, 4), generator=g)
    loss = Occupancy3DLoss(4, empty_index=0, ce_weight=10.0, lovasz_weight=1.0, scale_decay=0.5)
    out = loss(logits, labels, [aux1, aux2])
    l1 = downsample_labels(labels, (2, 2, 2), 4, 0)
    l2 = downsample_labels(labels, (4, 4, 4), 4, 0)
    want_ce = 10 * (
        cross_entropy_3d(logits, labels) + 0.5 * cross_entropy_3d(aux1, l1) + 0.25 * cross_entropy_3d(aux2, l2)
    )
    want_lov = lovasz_softmax(logits, labels) + 0.5 * lovasz_softmax(aux1, l1) + 0.25 * lovasz_softmax(aux2, l2)
    torch.testing.assert_close(out["loss_ce"], want_ce)
    torch.testing.assert_close(out["loss_lovasz"], want_lov)


def test_occupancy_loss_rejects_bad_input():
    loss = Occupancy3DLoss(4, empty_index=0)
    logits = torch.randn(1, 4, 4, 4, 2)
    with pytest.raises(ValueError, match="labels must have shape"):
        loss(logits, torch.zeros(1, 4, 4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be an integer"):
        loss(logits, torch.zeros(1, 4, 4, 2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        loss(logits, torch.full((1, 4, 4, 2), 7))
    with pytest.raises(ValueError, match="aux_logits\\[0\\]"):
        loss(logits, torch.zeros(1, 4, 4, 2, dtype=torch.long), [torch.randn(1, 4, 3, 3, 1)])
    with pytest.raises(ValueError, match="empty_index"):
        Occupancy3DLoss(4, empty_index=4)


def test_inverse_log_frequency_weights():
    w = inverse_log_frequency_weights(torch.tensor([1e9, 1e5, 0.0]))
    assert w[0] < w[1] < w[2]
    torch.testing.assert_close(w[:2], 1 / torch.log(torch.tensor([1e9, 1e5], dtype=torch.float64) + 0.001))
    with pytest.raises(ValueError, match="counts"):
        inverse_log_frequency_weights(torch.tensor([-1.0, 2.0]))
