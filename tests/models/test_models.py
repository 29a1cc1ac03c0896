"""TPVFormer and SurroundOcc at tiny size: shapes, gradients, determinism, masking, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import gaussrender as gr
from gaussrender.models import ModelConfig, OpacityHead, build_model
from gaussrender.models.image_cross_attn import AnchorSampler, project_points
from gaussrender.models.tpvformer import TPVFormer

H, W = 64, 96

# The three benchmark grids with coarse voxels (same boxes, a few hundred voxels each).
TINY_GRIDS = {
    "occ3d": dataclasses.replace(gr.OCC3D_NUSCENES, shape=(25, 25, 2), voxel_size=3.2),
    "surroundocc": dataclasses.replace(gr.SURROUNDOCC_NUSCENES, shape=(25, 25, 2), voxel_size=4.0),
    "kitti360": dataclasses.replace(gr.SSCBENCH_KITTI360, shape=(16, 16, 2), voxel_size=3.2),
}


def _rig(batch: int = 1):
    """Two cameras 1.5 m up, looking forward (+x) and backward (-x); 60 px focal."""
    k = torch.tensor([[60.0, 0.0, W / 2], [0.0, 60.0, H / 2], [0.0, 0.0, 1.0]])
    # OpenCV camera axes in grid coordinates: x_cam = -y, y_cam = -z, z_cam = +x.
    fwd = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    back = fwd @ torch.diag(torch.tensor([-1.0, -1.0, 1.0]))
    mats = []
    for rot in (fwd, back):
        t = torch.eye(4)
        t[:3, :3] = rot
        t[:3, 3] = -rot @ torch.tensor([0.0, 0.0, 1.5])
        mats.append(t)
    return k.expand(batch, 2, 3, 3).clone(), torch.stack(mats).expand(batch, 2, 4, 4).clone()


def _build(name: str, grid, seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(name, "tiny", grid, num_cameras=2, image_size=(H, W), **kw)
    return build_model(cfg)


@pytest.mark.parametrize("grid_name", sorted(TINY_GRIDS))
@pytest.mark.parametrize("name", ["tpvformer", "surroundocc"])
def test_forward_backward_shapes_and_finite_loss(name, grid_name):
    grid = TINY_GRIDS[grid_name]
    model = _build(name, grid, learned_opacity=True)
    k, t = _rig(batch=2)
    images = torch.rand(2, 2, 3, H, W, generator=torch.Generator().manual_seed(1))
    out = model(images, k, t)
    c = grid.num_classes
    assert out["logits"].shape == (2, c, *grid.shape)
    assert out["opacity"].shape == (2, *grid.shape)
    if name == "surroundocc":
        # Finest first, each coarser by two (rounded up).
        x, y, z = grid.shape
        expected = [(2, c, -(-x // s), -(-y // s), -(-z // s)) for s in (2, 4, 8)]
        assert [tuple(a.shape) for a in out["aux_logits"]] == expected
    else:
        assert out["aux_logits"] == []
    labels = torch.randint(0, c, (2, *grid.shape), generator=torch.Generator().manual_seed(2))
    loss = torch.nn.functional.cross_entropy(out["logits"], labels)
    loss = loss + sum(0.5 ** (i + 1) * a.square().mean() for i, a in enumerate(out["aux_logits"]))
    loss = loss + out["opacity"].mean()
    assert torch.isfinite(loss)
    loss.backward()
    # Gradients reach the image backbone through the cross-attention, and the queries.
    backbone = list(model.backbone_parameters())
    assert backbone and all(p.grad is not None for p in backbone if p.requires_grad)
    assert any(float(p.grad.abs().sum()) > 0 for p in backbone if p.grad is not None)
    for p in model.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", ["tpvformer", "surroundocc"])
def test_deterministic_under_a_seed(name):
    grid = TINY_GRIDS["occ3d"]
    k, t = _rig()
    images = torch.rand(1, 2, 3, H, W, generator=torch.Generator().manual_seed(5))
    outs = []
    for _ in range(2):
        model = _build(name, grid, seed=123).eval()
        with torch.no_grad():
            outs.append(model(images, k, t)["logits"])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    other = _build(name, grid, seed=124).eval()
    with torch.no_grad():
        assert not torch.allclose(other(images, k, t)["logits"], outs[0])


def test_opacity_head_range_and_absence():
    head = OpacityHead(8, 8)
    # Zero output maps to sigmoid(-1); large inputs saturate but stay strictly inside (0, 1).
    torch.nn.init.zeros_(head.mlp[2].weight)
    torch.nn.init.zeros_(head.mlp[2].bias)
    torch.testing.assert_close(head(torch.randn(3, 8)), torch.full((3,), 0.2689414), atol=1e-6, rtol=0)
    head = OpacityHead(8, 8)
    op = head(torch.randn(4, 5, 6, 7, 8) * 5)
    assert op.shape == (4, 5, 6, 7) and bool((op > 0).all()) and bool((op < 1).all())
    model = _build("tpvformer", TINY_GRIDS["occ3d"], learned_opacity=False)
    k, t = _rig()
    with torch.no_grad():
        assert model(torch.rand(1, 2, 3, H, W), k, t)["opacity"] is None


def test_projection_and_visibility():
    k, t = _rig()
    pts = torch.tensor([[[10.0, 0.0, 1.5]], [[10.0, 0.0, 11.5]], [[-10.0, 2.0, 1.5]]])  # [N=3, D=1, 3]
    loc, vis = project_points(pts, k, t, (H, W))
    assert loc.shape == (1, 2, 3, 1, 2) and vis.shape == (1, 2, 3, 1)
    # Straight ahead at camera height: the principal point of the front camera.
    torch.testing.assert_close(loc[0, 0, 0, 0], torch.tensor([0.5, 0.5]))
    # 10 m up at 10 m: v = 32 - 60 px, above the image; behind: masked for the front camera.
    assert vis[0, 0, :, 0].tolist() == [True, False, False]
    # The back camera sees the third point, 2 m to the left = image right: u = 48 + 12 px.
    assert vis[0, 1, :, 0].tolist() == [False, False, True]
    torch.testing.assert_close(loc[0, 1, 2, 0], torch.tensor([60.0 / W, 0.5]))


def test_anchors_nobody_sees_contribute_nothing():
    torch.manual_seed(0)
    sampler = AnchorSampler(embed_dims=8, num_heads=2, num_levels=1, num_anchors=3, points_per_anchor=2)
    query = torch.randn(1, 5, 8)
    value = torch.randn(2, 6 * 4, 2, 4)  # B*V = 2 cameras, one 6x4 level
    loc = torch.rand(1, 2, 5, 3, 2)
    visible = torch.zeros(1, 2, 5, 3, dtype=torch.bool)
    visible[0, 0, 1, 2] = True  # one anchor of query 1, in camera 0
    out = sampler(query, value, [(6, 4)], loc, visible)
    assert torch.count_nonzero(out[0, [0, 2, 3, 4]]) == 0
    assert torch.count_nonzero(out[0, 1]) > 0
    # Query 1 only reads camera 0: changing camera 1's features leaves it unchanged.
    value2 = value.clone()
    value2[1] += 1.0
    torch.testing.assert_close(sampler(query, value2, [(6, 4)], loc, visible), out)


def test_tpv_planes_sum_broadcast_to_voxels():
    """The aggregator's broadcast sum against an explicit loop (float64)."""
    grid = dataclasses.replace(gr.OCC3D_NUSCENES, shape=(4, 6, 2), voxel_size=3.2,
                               range_max=(-40.0 + 12.8, -40.0 + 19.2, 5.4))
    model = _build("tpvformer", grid).double()
    model.tpv_shape = grid.shape  # no upsampling: compare plane cells to voxels one to one
    X, Y, Z = grid.shape
    model.plane_sizes = [X * Y, Z * X, Y * Z]
    c = 3
    query = torch.randn(1, sum(model.plane_sizes), c, dtype=torch.float64)
    xy, zx, yz = query[0].split(model.plane_sizes)
    xy, zx, yz = xy.view(X, Y, c), zx.view(Z, X, c), yz.view(Y, Z, c)
    got = model._planes_to_voxels(query)[0]
    for x in range(X):
        for y in range(Y):
            for z in range(Z):
                torch.testing.assert_close(got[x, y, z], xy[x, y] + zx[z, x] + yz[y, z])


def test_bad_inputs_raise():
    model = _build("surroundocc", TINY_GRIDS["occ3d"])
    k, t = _rig()
    images = torch.rand(1, 2, 3, H, W)
    with pytest.raises(ValueError, match="num_cameras=2"):
        model(torch.rand(1, 3, 3, H, W), k, t)
    with pytest.raises(ValueError, match="image_size"):
        model(torch.rand(1, 2, 3, H, W + 32), k, t)
    with pytest.raises(ValueError, match="intrinsics"):
        model(images, k[:, :1], t)
    with pytest.raises(ValueError, match="cam_from_grid"):
        model(images, k, t[..., :3, :])
    with pytest.raises(TypeError, match="images"):
        model((images * 255).to(torch.uint8), k, t)
    with pytest.raises(ValueError, match="name"):
        ModelConfig("bevformer")
    with pytest.raises(ValueError, match="size"):
        ModelConfig("tpvformer", "huge")
    with pytest.raises(ValueError, match="num_cameras"):
        ModelConfig("tpvformer", num_cameras=0)
    with pytest.raises(ValueError, match="image_size"):
        ModelConfig("tpvformer", image_size=(64,))
    with pytest.raises(ValueError, match="backbone_depth"):
        ModelConfig("tpvformer", backbone_depth=42)
    with pytest.raises(TypeError, match="ModelConfig"):
        build_model({"name": "tpvformer"})
    assert ModelConfig("tpvformer", grid="kitti360").grid is gr.SSCBENCH_KITTI360
    assert isinstance(_build("tpvformer", TINY_GRIDS["occ3d"]), TPVFormer)
