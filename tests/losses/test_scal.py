"""sem_scal / geo_scal against float64 references written as explicit per-class, per-voxel loops."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from gaussrender.losses.occupancy import Occupancy3DLoss, downsample_labels
from gaussrender.losses.scal import _neg_log_ratio, frustum_ids, frustum_proportion_loss, geo_scal_loss, sem_scal_loss

IGNORE = 255
C = 5
SHAPE = (2, 4, 3, 2)  # [B, X, Y, Z]: 48 voxels


def _voxels(labels: torch.Tensor, ignore_index: int) -> list[tuple[int, ...]]:
    return [v for v in itertools.product(*(range(s) for s in labels.shape)) if int(labels[v]) != ignore_index]


def _prob(probs: torch.Tensor, c: int, v: tuple[int, ...]) -> torch.Tensor:
    b, x, y, z = v
    return probs[b, c, x, y, z]


def _bce_one(ratio: torch.Tensor) -> torch.Tensor:
    """``F.binary_cross_entropy(ratio, 1)``: ``-log(ratio)``, 100 at ``ratio = 0`` (its log clamp)."""
    return ratio.new_tensor(100.0) if float(ratio.detach()) == 0 else -torch.log(ratio)


def ref_sem_scal(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """The Symphonies release's sem_scal, one class and one voxel at a time, in float64."""
    probs = logits.double().softmax(dim=1)
    voxels = _voxels(labels, ignore_index)
    total = probs.new_zeros(())
    present = 0
    for c in range(logits.shape[1]):
        pos = [v for v in voxels if int(labels[v]) == c]
        neg = [v for v in voxels if int(labels[v]) != c]
        if not pos:  # a class absent from the labels is skipped and not counted
            continue
        present += 1
        hit = sum((_prob(probs, c, v) for v in pos), probs.new_zeros(()))
        predicted = sum((_prob(probs, c, v) for v in voxels), probs.new_zeros(()))
        if predicted > 0:
            total = total + _bce_one(hit / predicted)
        total = total + _bce_one(hit / len(pos))
        if neg:
            true_neg = sum((1 - _prob(probs, c, v) for v in neg), probs.new_zeros(()))
            total = total + _bce_one(true_neg / len(neg))
    return total / present


def ref_geo_scal(
    logits: torch.Tensor, labels: torch.Tensor, empty_index: int, ignore_index: int = IGNORE
) -> torch.Tensor:
    """The release's geo_scal in float64 loops; a ratio with a zero denominator is left out."""
    probs = logits.double().softmax(dim=1)
    voxels = _voxels(labels, ignore_index)
    occupied = [v for v in voxels if int(labels[v]) != empty_index]
    free = [v for v in voxels if int(labels[v]) == empty_index]
    zero = probs.new_zeros(())
    hit = sum((1 - _prob(probs, empty_index, v) for v in occupied), zero)
    predicted = sum((1 - _prob(probs, empty_index, v) for v in voxels), zero)
    total = zero + _bce_one(hit / predicted)
    if occupied:
        total = total + _bce_one(hit / len(occupied))
    if free:
        total = total + _bce_one(sum((_prob(probs, empty_index, v) for v in free), zero) / len(free))
    return total


def make_inputs(seed: int, classes: tuple[int, ...] = tuple(range(C)), ignore_frac: float = 0.25):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(SHAPE[0], C, *SHAPE[1:], generator=g, dtype=torch.float64) * 2
    pick = torch.randint(0, len(classes), SHAPE, generator=g)
    labels = torch.tensor(classes)[pick]
    labels[torch.rand(SHAPE, generator=g) < ignore_frac] = IGNORE
    return logits, labels


def grads(fn, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.clone().requires_grad_(True)
    value = fn(x)
    (g,) = torch.autograd.grad(value, x)
    return value.detach(), g


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", [tuple(range(C)), (0, 1, 3)])  # all classes / 2 and 4 absent
def test_sem_scal_matches_loop_reference_forward_and_grad(seed, classes):
    logits, labels = make_inputs(seed, classes)
    assert set(labels[labels != IGNORE].unique().tolist()) == set(classes)
    value, g = grads(lambda x: sem_scal_loss(x, labels, IGNORE), logits)
    want, g_want = grads(lambda x: ref_sem_scal(x, labels), logits)
    torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g_want, rtol=1e-10, atol=1e-12)
    x = logits[:1, :, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: sem_scal_loss(t, labels[:1, :2], IGNORE), (x,))


def test_sem_scal_absent_classes_are_not_counted():
    logits, labels = make_inputs(3, classes=(0, 1, 3))
    value = sem_scal_loss(logits, labels, IGNORE)
    # the same labels with the absent classes' logits changed: the mean is over present classes,
    # and absent classes enter only through the softmax of the others
    probs = logits.softmax(dim=1)
    flat_p = probs.movedim(1, -1)[labels != IGNORE]
    flat_y = labels[labels != IGNORE]
    per_class = []
    for c in (0, 1, 3):
        t = (flat_y == c).double()
        p = flat_p[:, c]
        precision, recall = (p * t).sum() / p.sum(), (p * t).sum() / t.sum()
        specificity = ((1 - p) * (1 - t)).sum() / (1 - t).sum()
        ones = torch.ones(())
        per_class.append(
            sum(F.binary_cross_entropy(r, ones.double()) for r in (precision, recall, specificity))  # the release's op
        )
    torch.testing.assert_close(value, sum(per_class) / 3, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("empty_index", [0, 3])
def test_geo_scal_matches_loop_reference_forward_and_grad(seed, empty_index):
    logits, labels = make_inputs(seed)
    value, g = grads(lambda x: geo_scal_loss(x, labels, empty_index, IGNORE), logits)
    want, g_want = grads(lambda x: ref_geo_scal(x, labels, empty_index), logits)
    torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g_want, rtol=1e-10, atol=1e-12)
    x = logits[:1, :, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: geo_scal_loss(t, labels[:1, :2], empty_index, IGNORE), (x,))


@pytest.mark.parametrize("fill", [0, 2])  # only free voxels (no recall) / only occupied (no specificity)
def test_geo_scal_drops_ratios_with_zero_denominator(fill):
    logits, labels = make_inputs(4)
    labels[labels != IGNORE] = fill
    value, g = grads(lambda x: geo_scal_loss(x, labels, 0, IGNORE), logits)
    want, g_want = grads(lambda x: ref_geo_scal(x, labels, 0), logits)
    assert math.isfinite(float(value)) and bool(torch.isfinite(g).all())
    torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g_want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", ["sem", "geo"])
def test_ignored_voxels_carry_no_supervision(loss):
    logits, labels = make_inputs(5, ignore_frac=0.4)
    fn = (lambda x: sem_scal_loss(x, labels, IGNORE)) if loss == "sem" else (lambda x: geo_scal_loss(x, labels, 0))
    value, g = grads(fn, logits)
    ignored = labels == IGNORE
    assert bool(ignored.any())
    assert float(g.movedim(1, -1)[ignored].abs().max()) == 0.0
    other = logits.clone()
    other.movedim(1, -1)[ignored] = torch.randn(int(ignored.sum()), C, dtype=torch.float64) * 5
    torch.testing.assert_close(fn(other), value, rtol=0, atol=0)
    # everything ignored: zero with a graph
    none = torch.full_like(labels, IGNORE)
    x = logits.clone().requires_grad_(True)
    for out in (sem_scal_loss(x, none, IGNORE), geo_scal_loss(x, none, 0, IGNORE)):
        assert float(out.detach()) == 0.0 and out.requires_grad


def test_neg_log_ratio_is_binary_cross_entropy_against_one():
    x = torch.tensor([0.0, 1e-50, 1e-3, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    ours = _neg_log_ratio(x)
    want = torch.stack([F.binary_cross_entropy(v, torch.ones((), dtype=torch.float64)) for v in x.detach()])
    torch.testing.assert_close(ours, want, rtol=1e-12, atol=1e-12)
    (g,) = torch.autograd.grad(ours.sum(), x)
    assert bool(torch.isfinite(g).all())
    torch.testing.assert_close(g[2:4], -1 / x.detach()[2:4])
    assert bool(torch.isnan(_neg_log_ratio(torch.tensor([float("nan")]))).all())  # a fault stays visible


def test_bad_input_is_refused():
    logits, labels = make_inputs(0)
    with pytest.raises(ValueError, match="empty_index"):
        geo_scal_loss(logits, labels, C, IGNORE)
    with pytest.raises(ValueError, match="labels must lie in"):
        sem_scal_loss(logits, torch.full_like(labels, C), IGNORE)
    with pytest.raises(ValueError, match="labels must have shape"):
        sem_scal_loss(logits, labels[0], IGNORE)
    with pytest.raises(ValueError, match="sem_scal_weight"):
        Occupancy3DLoss(C, 0, IGNORE, sem_scal_weight=-1.0)


def test_occupancy_loss_terms_weighted_over_scales_and_absent_at_zero_weight():
    logits, labels = make_inputs(6, ignore_frac=0.1)
    logits = logits.float()
    aux = [logits[:, :, ::2, ::3, ::2] * 0.5]  # one coarser scale (factor 2, 3, 2) with weight 0.5
    off = Occupancy3DLoss(C, 0, IGNORE)(logits, labels, aux)
    assert set(off) == {"loss_ce", "loss_lovasz"}
    on = Occupancy3DLoss(C, 0, IGNORE, sem_scal_weight=2.0, geo_scal_weight=3.0)(logits, labels, aux)
    assert set(on) == {"loss_ce", "loss_lovasz", "loss_sem_scal", "loss_geo_scal"}
    for k in off:
        torch.testing.assert_close(on[k], off[k])
    coarse = downsample_labels(labels, (2, 3, 2), C, 0, IGNORE)
    sem = ref_sem_scal(logits, labels) + 0.5 * ref_sem_scal(aux[0], coarse)
    geo = ref_geo_scal(logits, labels, 0) + 0.5 * ref_geo_scal(aux[0], coarse, 0)
    torch.testing.assert_close(on["loss_sem_scal"].double(), 2.0 * sem, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(on["loss_geo_scal"].double(), 3.0 * geo, rtol=1e-5, atol=1e-6)
    only_geo = Occupancy3DLoss(C, 0, IGNORE, geo_scal_weight=1.0)(logits, labels)
    assert "loss_sem_scal" not in only_geo and "loss_geo_scal" in only_geo and "loss_frustum" not in only_geo
    # the frustum term: ids at the full grid, applied to the full-grid outputs only
    frustum = torch.randint(-1, 4, SHAPE, generator=torch.Generator().manual_seed(7))
    fr = Occupancy3DLoss(C, 0, IGNORE, frustum_weight=2.0, num_frustums=4)
    with pytest.raises(ValueError, match="frustum"):
        fr(logits, labels, aux)
    out = fr(logits, labels, [logits * 0.5, *aux], frustum=frustum)
    want = ref_frustum_loss(logits, labels, frustum, 4) + 0.5 * ref_frustum_loss(logits * 0.5, labels, frustum, 4)
    torch.testing.assert_close(out["loss_frustum"].double(), 2.0 * want, rtol=1e-5, atol=1e-6)


def ref_frustum_ids(pixels: torch.Tensor, depth: torch.Tensor, image_size: tuple[int, int], size: int) -> torch.Tensor:
    """The release's ``compute_local_frustums`` tiling, one tile and one point at a time."""
    h, w = image_size
    ranges = [(i * 1.0 / size, (i * 1.0 + 1) / size) for i in range(size)]
    out = torch.full(depth.shape, -1, dtype=torch.int64)
    for idx in itertools.product(*(range(s) for s in depth.shape)):
        u, v, z = float(pixels[idx][0]), float(pixels[idx][1]), float(depth[idx])
        f = 0
        for ry in ranges:
            for rx in ranges:
                if rx[0] * w <= u < rx[1] * w and ry[0] * h <= v < ry[1] * h and z > 0:
                    assert out[idx] == -1  # tiles are disjoint
                    out[idx] = f
                f += 1
    return out


def ref_frustum_loss(logits, labels, frustum, num_frustums, ignore_index=IGNORE):
    """The release's ``frustum_proportion_loss`` with one mask per frustum, float64 loops over classes."""
    probs = logits.double().softmax(dim=1)
    voxels = _voxels(labels, ignore_index)
    total, used = probs.new_zeros(()), 0
    for f in range(num_frustums):
        inside = [v for v in voxels if int(frustum[v]) == f]
        counts = [sum(1 for v in inside if int(labels[v]) == c) for c in range(logits.shape[1])]
        mass = [sum((_prob(probs, c, v) for v in inside), probs.new_zeros(())) for c in range(logits.shape[1])]
        total_mass = sum(mass, probs.new_zeros(()))
        if sum(counts) == 0 or not total_mass > 0:
            continue
        used += 1
        for c, n in enumerate(counts):
            if n:
                t = n / sum(counts)
                total = total + t * (math.log(t) - torch.log(mass[c] / total_mass))
    return total / used


def test_frustum_ids_match_the_release_tiling_on_boundaries():
    h, w, size = 6, 10, 4  # tile bounds 2.5, 5, 7.5 px (u) and 1.5, 3, 4.5 px (v)
    g = torch.Generator().manual_seed(0)
    u = torch.cat([torch.tensor([0.0, 2.5, 5.0, 7.5, 9.999, 10.0, -0.01]), torch.rand(40, generator=g) * 12 - 1])
    v = torch.cat([torch.tensor([0.0, 1.5, 3.0, 4.5, 5.999, 2.0, 2.0]), torch.rand(40, generator=g) * 8 - 1])
    pixels = torch.stack([u, v], dim=-1).double().reshape(47, 1, 2)
    depth = torch.where(torch.rand(47, 1, generator=g) < 0.1, -1.0, 1.0).double()
    depth[:7] = 1.0
    ids = frustum_ids(pixels, depth, (h, w), size)
    torch.testing.assert_close(ids, ref_frustum_ids(pixels, depth, (h, w), size), rtol=0, atol=0)
    assert ids[:7, 0].tolist() == [0, 5, 10, 15, 15, -1, -1]  # a start bound belongs to its tile
    assert bool((ids[depth <= 0] == -1).all()) and bool((depth <= 0).any())
    with pytest.raises(ValueError, match="size"):
        frustum_ids(pixels, depth, (h, w), 0)
    with pytest.raises(ValueError, match="depth"):
        frustum_ids(pixels, depth[:3], (h, w), size)


@pytest.mark.parametrize("seed", [0, 1])
def test_frustum_loss_matches_loop_reference_forward_and_grad(seed):
    num_frustums = 4
    logits, labels = make_inputs(seed)
    g = torch.Generator().manual_seed(seed + 10)
    frustum = torch.randint(-1, num_frustums, SHAPE, generator=g)
    frustum[frustum == 2] = -1  # one frustum empty: not counted
    value, grad = grads(lambda x: frustum_proportion_loss(x, labels, frustum, num_frustums, IGNORE), logits)
    want, grad_want = grads(lambda x: ref_frustum_loss(x, labels, frustum, num_frustums), logits)
    torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_want, rtol=1e-10, atol=1e-12)
    # ignored voxels and voxels in no frustum carry no gradient
    silent = (labels == IGNORE) | (frustum < 0)
    assert float(grad.movedim(1, -1)[silent].abs().max()) == 0.0
    x = logits[:1, :, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: frustum_proportion_loss(t, labels[:1, :2], frustum[:1, :2], num_frustums, IGNORE), (x,)
    )
    none = torch.full_like(frustum, -1)
    out = frustum_proportion_loss(logits.clone().requires_grad_(True), labels, none, num_frustums, IGNORE)
    assert float(out.detach()) == 0.0 and out.requires_grad
    with pytest.raises(ValueError, match="frustum ids"):
        frustum_proportion_loss(logits, labels, frustum + num_frustums, num_frustums, IGNORE)
