"""The learned-opacity head: range, start value, and absence when disabled."""

from __future__ import annotations

import torch

from gaussrender.models import OpacityHead
from tests.models.helpers import H, TINY_GRIDS, W, build_tiny, rig


def test_opacity_head_range_and_absence():
    head = OpacityHead(8, 8)
    # Zero output maps to sigmoid(-1); large inputs saturate but stay strictly inside (0, 1).
    torch.nn.init.zeros_(head.mlp[2].weight)
    torch.nn.init.zeros_(head.mlp[2].bias)
    torch.testing.assert_close(head(torch.randn(3, 8)), torch.full((3,), 0.2689414), atol=1e-6, rtol=0)
    head = OpacityHead(8, 8)
    op = head(torch.randn(4, 5, 6, 7, 8) * 5)
    assert op.shape == (4, 5, 6, 7) and bool((op > 0).all()) and bool((op < 1).all())
    model = build_tiny("tpvformer", TINY_GRIDS["occ3d"], learned_opacity=False)
    k, t = rig()
    with torch.no_grad():
        assert model(torch.rand(1, 2, 3, H, W), k, t)["opacity"] is None
