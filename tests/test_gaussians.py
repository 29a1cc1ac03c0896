import pytest
import torch

import gaussrender as gr
from gaussrender.render.gaussians import sharpen

GRID = gr.OCC3D_NUSCENES


def _labels():
    labels = torch.full(GRID.shape, GRID.empty_index, dtype=torch.uint8)
    labels[10, 20, 3] = 4
    labels[11, 20, 3] = 11
    labels[12, 20, 3] = 255
    return labels


def test_ground_truth_is_one_hot_opaque_non_empty_voxels():
    g = gr.voxels_to_gaussians(GRID, labels=_labels())
    assert len(g) == 2
    assert torch.equal(g.voxel_index, torch.tensor([[10, 20, 3], [11, 20, 3]]))
    assert torch.equal(g.features.argmax(1), torch.tensor([4, 11]))
    assert torch.equal(g.features.sum(1), torch.ones(2)) and torch.equal(g.opacities, torch.ones(2))
    centre = torch.tensor([-40 + 10.5 * 0.4, -40 + 20.5 * 0.4, -1 + 3.5 * 0.4])
    torch.testing.assert_close(g.means[0], centre)
    assert torch.equal(g.scales, torch.full((2,), 0.27))


def test_sharpen_matches_the_release():
    p = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    torch.testing.assert_close(sharpen(p), torch.tensor([0.0, 0.0625, 0.75, 0.9375, 1.0]))


def test_prediction_features_and_opacity_against_dense_reference():
    torch.manual_seed(0)
    logits = torch.randn(GRID.num_classes, *GRID.shape, dtype=torch.float64)
    labels = _labels()
    g = gr.voxels_to_gaussians(GRID, logits=logits, labels=labels)
    probs = torch.softmax(logits, 0)
    pe = probs[GRID.empty_index]
    opacity = 1 - torch.where(pe < 0.5, pe**2, 1 - (1 - pe) ** 2)
    keep = (opacity >= 1 / 255) & (labels != 255)
    assert len(g) == int(keep.sum())
    ix, iy, iz = g.voxel_index.unbind(1)
    torch.testing.assert_close(g.opacities, opacity[ix, iy, iz])
    torch.testing.assert_close(g.features, probs[:, ix, iy, iz].t())
    assert not ((ix == 12) & (iy == 20) & (iz == 3)).any()  # ignore voxel dropped


def test_prediction_equal_to_truth_gives_the_same_gaussians():
    labels = _labels()
    onehot = torch.nn.functional.one_hot(labels.long().clamp(max=17), 18).permute(3, 0, 1, 2).float()
    g = gr.voxels_to_gaussians(GRID, logits=200 * onehot, labels=labels)
    t = gr.voxels_to_gaussians(GRID, labels=labels)
    assert torch.equal(g.voxel_index, t.voxel_index)
    assert torch.equal(g.features, t.features) and torch.equal(g.opacities, t.opacities)


def test_given_opacity_volume_and_gradients():
    logits = torch.zeros(GRID.num_classes, *GRID.shape, requires_grad=True)
    opacity = torch.zeros(GRID.shape)
    opacity[1, 2, 3] = 0.5
    opacity = opacity.requires_grad_()
    g = gr.voxels_to_gaussians(GRID, logits=logits, opacity=opacity)
    assert len(g) == 1 and float(g.opacities.detach()) == 0.5
    (g.opacities.sum() + g.features[:, 0].sum()).backward()
    assert opacity.grad[1, 2, 3] == 1 and logits.grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(ValueError, match="needs logits"):
        gr.voxels_to_gaussians(GRID)
    with pytest.raises(ValueError, match="logits"):
        gr.voxels_to_gaussians(GRID, logits=torch.zeros(17, *GRID.shape))
    with pytest.raises(ValueError, match="NaN"):
        gr.voxels_to_gaussians(GRID, logits=torch.full((18, *GRID.shape), float("nan")))
    with pytest.raises(TypeError, match="labels"):
        gr.voxels_to_gaussians(GRID, labels=torch.zeros(GRID.shape))
    bad = _labels()
    bad[0, 0, 0] = 30
    with pytest.raises(ValueError, match=r"labels must hold class indices.*\[30\]"):
        gr.voxels_to_gaussians(GRID, labels=bad)
    with pytest.raises(ValueError, match="labels"):
        gr.voxels_to_gaussians(GRID, labels=torch.zeros(200, 200, dtype=torch.long))
    with pytest.raises(ValueError, match="opacity"):
        gr.voxels_to_gaussians(GRID, logits=torch.zeros(18, *GRID.shape), opacity=torch.full(GRID.shape, 2.0))


def _toy_grid():
    return gr.VoxelGrid("gather_toy", (-2.0, -2.0, -1.0), (2.0, 2.0, 1.0), 0.5, (8, 8, 4), ("free", "car", "road"), 0)


@pytest.mark.parametrize("with_opacity", [False, True])
def test_batch_of_predictions_is_each_sample_alone_with_one_gradient(with_opacity):
    """build_predictions gathers a batch's visible voxels with one autograd node: each sample's
    Gaussians and the gradients of logits (and opacity) are those of building it alone."""
    from gaussrender.render.gaussians import build_gaussians, build_predictions

    grid = _toy_grid()
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 3, *grid.shape, generator=g, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.randint(0, 3, (3, *grid.shape), generator=g)
    labels[1, :2] = grid.ignore_index
    opacity = torch.rand(3, *grid.shape, generator=g, dtype=torch.float64).requires_grad_() if with_opacity else None
    weights = [torch.randn(500, 3, generator=g, dtype=torch.float64) for _ in range(3)]

    def total(gaussians):
        return sum(
            (p.features * w[: len(p)]).sum() + (p.opacities * w[: len(p), 0]).sum() for p, w in zip(gaussians, weights)
        )

    batch = build_predictions(grid, logits, labels, opacity, 0.3)
    assert len({len(p) for p in batch}) > 1, "samples should keep different voxels"
    got = torch.autograd.grad(total(batch), [logits] + ([opacity] if with_opacity else []))
    alone = [
        build_gaussians(
            grid, logits=logits[b], labels=labels[b], opacity=None if opacity is None else opacity[b], scale=0.3
        )
        for b in range(3)
    ]
    for p, q in zip(batch, alone):
        assert torch.equal(p.voxel_index, q.voxel_index)
        torch.testing.assert_close(p.features, q.features, rtol=0, atol=0)
        torch.testing.assert_close(p.opacities, q.opacities, rtol=0, atol=0)
    want = torch.autograd.grad(total(alone), [logits] + ([opacity] if with_opacity else []))
    for a, b in zip(got, want):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # and the gather itself against finite differences
    small = logits[:2, :, :2, :2, :1].detach().clone().requires_grad_()
    idx = [torch.tensor([0, 3]), torch.tensor([1])]
    from gaussrender.render.gaussians import _GatherColumns

    torch.autograd.gradcheck(lambda x: _GatherColumns.apply(x.flatten(2), *idx), (small,))
