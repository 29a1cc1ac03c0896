"""build_model: both models at tiny size on the three grids; shapes, gradients, determinism, errors."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from gaussrender.models import ModelConfig, build_model
from gaussrender.models.tpvformer import TPVFormer
from tests.models.helpers import TINY_GRIDS, H, W, build_tiny, rig


@pytest.mark.parametrize("grid_name", sorted(TINY_GRIDS))
@pytest.mark.parametrize("name", ["tpvformer", "surroundocc"])
def test_forward_backward_shapes_and_finite_loss(name, grid_name):
    grid = TINY_GRIDS[grid_name]
    model = build_tiny(name, grid, learned_opacity=True)
    k, t = rig(batch=2)
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
    k, t = rig()
    images = torch.rand(1, 2, 3, H, W, generator=torch.Generator().manual_seed(5))
    outs = []
    for _ in range(2):
        model = build_tiny(name, grid, seed=123).eval()
        with torch.no_grad():
            outs.append(model(images, k, t)["logits"])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    other = build_tiny(name, grid, seed=124).eval()
    with torch.no_grad():
        assert not torch.allclose(other(images, k, t)["logits"], outs[0])


def test_bad_inputs_raise():
    model = build_tiny("surroundocc", TINY_GRIDS["occ3d"])
    k, t = rig()
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
    assert isinstance(build_tiny("tpvformer", TINY_GRIDS["occ3d"]), TPVFormer)


def test_image_sizes_off_the_stride_are_padded():
    # 900x1600 nuScenes images are not multiples of 32; neither is 60x90.
    torch.manual_seed(0)
    cfg = ModelConfig("tpvformer", "tiny", TINY_GRIDS["occ3d"], num_cameras=2, image_size=(60, 90))
    model = build_model(cfg)
    k, t = rig()
    out = model(torch.rand(1, 2, 3, 60, 90), k, t)
    assert out["logits"].shape == (1, 18, 25, 25, 2) and bool(torch.isfinite(out["logits"]).all())
