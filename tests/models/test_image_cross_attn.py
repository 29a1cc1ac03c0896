"""Spatial cross-attention: projection into cameras and masking of invisible anchors."""

from __future__ import annotations

import torch

from gaussrender.models import ms_deform_attn
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


def dense_reference(sampler, query, value, shapes, loc, visible):
    """Every query in every camera, invisible anchors weighted 0, mean over seeing cameras."""
    b, n, c = query.shape
    v = loc.shape[1]
    m, lv, d, k = sampler.num_heads, sampler.num_levels, sampler.num_anchors, sampler.points
    off = sampler.sampling_offsets(query).view(b, n, m, lv, d, k, 2)
    wts = sampler.attention_weights(query).view(b, n, m, -1).softmax(-1).view(b, n, m, lv, d, k)
    norm = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype).view(1, 1, lv, 1, 1, 2)
    total = torch.zeros(b, n, c, dtype=query.dtype)
    for bi in range(b):
        for vi in range(v):
            locs = loc[bi, vi].view(n, 1, 1, d, 1, 2) + off[bi] / norm
            w = wts[bi] * visible[bi, vi].view(n, 1, 1, d, 1)
            out = ms_deform_attn(
                value[bi * v + vi : bi * v + vi + 1],
                shapes,
                locs.reshape(1, n, m, lv, d * k, 2),
                w.reshape(1, n, m, lv, d * k),
            )
            total[bi] += out[0]
    count = visible.any(-1).sum(1).clamp(min=1)
    return total / count.unsqueeze(-1)


def test_rebatched_sampling_matches_dense_masked_sampling():
    torch.manual_seed(1)
    shapes = [(6, 5), (3, 3)]
    sampler = AnchorSampler(embed_dims=8, num_heads=2, num_levels=2, num_anchors=3, points_per_anchor=2).double()
    torch.nn.init.normal_(sampler.attention_weights.weight)  # non-uniform weights
    torch.nn.init.normal_(sampler.sampling_offsets.weight, std=0.5)
    b, v, n = 2, 3, 7
    query = torch.randn(b, n, 8, dtype=torch.float64, requires_grad=True)
    value = torch.randn(b * v, 39, 2, 4, dtype=torch.float64, requires_grad=True)
    loc = torch.rand(b, v, n, 3, 2, dtype=torch.float64)
    visible = torch.rand(b, v, n, 3) < 0.4
    fast = sampler(query, value, shapes, loc, visible)
    slow = dense_reference(sampler, query, value, shapes, loc, visible)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    cot = torch.randn(fast.shape, dtype=torch.float64)
    g_fast = torch.autograd.grad((fast * cot).sum(), (query, value))
    g_slow = torch.autograd.grad((slow * cot).sum(), (query, value))
    for a, s, name in zip(g_fast, g_slow, ("query", "value")):
        torch.testing.assert_close(a, s, rtol=1e-9, atol=1e-11, msg=f"gradient of {name}")
    # Nobody sees anything: zeros, without sampling.
    none = sampler(query, value, shapes, loc, torch.zeros_like(visible))
    assert torch.count_nonzero(none) == 0


def test_padding_rescales_locations_but_not_visibility():
    k, t = rig()
    # 2 m left at 10 m in the back camera: u = 60 px of 96; 4 m up at 10 m: v = 32 - 24 px.
    pts = torch.tensor([[[-10.0, 2.0, 1.5]], [[-10.0, 2.0, 5.5]], [[-10.0, -10.0, 1.5]]])
    loc, vis = project_points(pts, k, t, (H, W), padded_size=(96, 128))
    torch.testing.assert_close(loc[0, 1, :2, 0], torch.tensor([[60.0 / 128, 32.0 / 96], [60.0 / 128, 8.0 / 96]]))
    # 10 m right at 10 m: u = 48 - 60 px < 0, outside the real image whatever the padding.
    assert vis[0, 1, :, 0].tolist() == [True, True, False]
    # A point projecting into the padding only (u = 96 + 8 px) is not visible.
    far_left = torch.tensor([[[-10.0, 9.33, 1.5]]])
    loc, vis = project_points(far_left, k, t, (H, W), padded_size=(96, 128))
    assert 96 < float(loc[0, 1, 0, 0, 0]) * 128 < 128 and not bool(vis[0, 1, 0, 0])
