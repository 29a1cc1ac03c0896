"""The learned-opacity head: the release's architecture and init, range, absence when disabled."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gaussrender.models import OpacityHead
from tests.models.helpers import TINY_GRIDS, H, W, build_tiny, rig


def test_architecture_is_linear_relu_linear_relu_linear():
    head = OpacityHead(12, 7, 18)
    kinds = [type(m) for m in head.mlp]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    shapes = [tuple(m.weight.shape) for m in head.mlp if isinstance(m, nn.Linear)]
    assert shapes == [(7, 12), (7, 7), (1, 7)]


@pytest.mark.parametrize("num_classes", [18, 17, 19])
def test_xavier_uniform_init_with_the_release_fan_outs_and_zero_biases(num_classes):
    torch.manual_seed(0)
    d = 256  # the release's TPVFormer voxel feature width
    head = OpacityHead(d, d, num_classes)
    # the release's Decoder: Linear(D, D), ReLU, Linear(D, D), ReLU, Linear(D, 3 + C + 1 + 3 + 4),
    # all Xavier-uniform; the opacity is output row 3 + C of the last one
    fan_outs = [d, d, 3 + num_classes + 1 + 3 + 4]
    for m, fan_out in zip((m for m in head.mlp if isinstance(m, nn.Linear)), fan_outs, strict=True):
        fan_in = m.weight.shape[1]
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot & Bengio (2010), uniform
        w = m.weight.detach().double()
        assert float(w.abs().max()) <= bound
        # a uniform on [-bound, bound] reaches close to its edges and has variance bound^2 / 3
        assert float(w.abs().max()) > (0.9 if w.numel() > 100 else 0.7) * bound
        assert float(w.var()) == pytest.approx(bound**2 / 3.0, rel=0.25)
        assert bool((m.bias == 0).all())
    assert head.init_bound == math.sqrt(6.0 / (d + num_classes + 11))
    # the same bound as the opacity row of the release's shared head, drawn in float64
    shared = torch.empty(3 + num_classes + 1 + 3 + 4, d, dtype=torch.float64)
    nn.init.xavier_uniform_(shared)
    assert float(shared[3 + num_classes].abs().max()) <= head.init_bound


def test_zero_output_gives_sigmoid_minus_one_and_range():
    head = OpacityHead(8, 8, 4)
    torch.nn.init.zeros_(head.mlp[4].weight)
    # biases start at zero, so the last layer's zero weight makes the MLP output exactly 0
    expected = 1.0 / (1.0 + math.exp(1.0))  # 0.2689...
    torch.testing.assert_close(head(torch.randn(3, 8)), torch.full((3,), expected), atol=1e-7, rtol=0)
    head = OpacityHead(8, 8, 4)
    op = head(torch.randn(4, 5, 6, 7, 8) * 5)
    assert op.shape == (4, 5, 6, 7) and bool((op > 0).all()) and bool((op < 1).all())


def test_forward_matches_float64_reference():
    torch.manual_seed(1)
    head = OpacityHead(5, 4, 3).double()
    f = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    l1, l2, l3 = (m for m in head.mlp if isinstance(m, nn.Linear))
    h = torch.clamp(f @ l1.weight.T + l1.bias, min=0)
    h = torch.clamp(h @ l2.weight.T + l2.bias, min=0)
    z = (h @ l3.weight.T + l3.bias)[:, 0] - 1.0
    ref = 1.0 / (1.0 + torch.exp(-z))
    out = head(f)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    (g_out,) = torch.autograd.grad(out.sum(), f)
    (g_ref,) = torch.autograd.grad(ref.sum(), f)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-12, atol=1e-12)


def test_bad_widths_are_named():
    with pytest.raises(ValueError, match="hidden_dims"):
        OpacityHead(8, 0, 4)
    with pytest.raises(ValueError, match="num_classes"):
        OpacityHead(8, 8, 0)


@pytest.mark.parametrize("name", ["tpvformer", "surroundocc"])
def test_models_carry_the_head_only_when_asked(name):
    k, t = rig()
    model = build_tiny(name, TINY_GRIDS["occ3d"], learned_opacity=True)
    head = model.opacity_head
    # hidden width = the voxel feature width the head reads (documented in docs/models.md)
    assert head.mlp[0].in_features == head.mlp[0].out_features == head.mlp[2].out_features
    with torch.no_grad():
        op = model(torch.rand(1, 2, 3, H, W), k, t)["opacity"]
    assert op.shape == (1, *TINY_GRIDS["occ3d"].shape)
    model = build_tiny(name, TINY_GRIDS["occ3d"], learned_opacity=False)
    with torch.no_grad():
        assert model(torch.rand(1, 2, 3, H, W), k, t)["opacity"] is None
