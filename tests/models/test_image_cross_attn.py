"""Spatial cross-attention: projection into cameras and masking of invisible anchors."""

from __future__ import annotations

import torch

from gaussrender.models.image_cross_attn import AnchorSampler, project_points
from tests.models.helpers import H, W, rig


def test_projection_and_visibility():
    k, t = rig()
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
