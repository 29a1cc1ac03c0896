"""Multi-scale deformable attention against a slow float64 loop with hand-written bilinear sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gaussrender.models import ms_deform_attn
from gaussrender.models.deform_attn import init_sampling_offsets

SHAPES = [(5, 7), (3, 4), (2, 2)]


def reference_ms_deform_attn(value, spatial_shapes, locations, weights):
    """Loop over every sample; bilinear weights by hand; zero outside the map (float64)."""
    b, _, m, d = value.shape
    q, p = locations.shape[1], locations.shape[4]
    starts = [0]
    for h, w in spatial_shapes:
        starts.append(starts[-1] + h * w)
    rows = []
    for bi in range(b):
        per_query = []
        for qi in range(q):
            heads = []
            for mi in range(m):
                acc = value.new_zeros(d)
                for li, (h, w) in enumerate(spatial_shapes):
                    for pi in range(p):
                        # Normalised x in [0, 1] covers W pixels whose centres sit at +0.5.
                        x = locations[bi, qi, mi, li, pi, 0] * w - 0.5
                        y = locations[bi, qi, mi, li, pi, 1] * h - 0.5
                        x0, y0 = math.floor(x.item()), math.floor(y.item())
                        for dx in (0, 1):
                            for dy in (0, 1):
                                cx, cy = x0 + dx, y0 + dy
                                if not (0 <= cx < w and 0 <= cy < h):
                                    continue
                                wx = (x - x0) if dx else (1 - (x - x0))
                                wy = (y - y0) if dy else (1 - (y - y0))
                                pix = value[bi, starts[li] + cy * w + cx, mi]
                                acc = acc + weights[bi, qi, mi, li, pi] * wx * wy * pix
                heads.append(acc)
            per_query.append(torch.cat(heads))
        rows.append(torch.stack(per_query))
    return torch.stack(rows)


def _inputs(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    b, q, m, d, p = 2, 4, 2, 3, 3
    s = sum(h * w for h, w in SHAPES)
    value = torch.randn(b, s, m, d, generator=g, dtype=dtype)
    # Some locations fall outside [0, 1] to exercise the zero padding at the borders.
    loc = torch.rand(b, q, m, len(SHAPES), p, 2, generator=g, dtype=dtype) * 1.3 - 0.15
    weights = torch.rand(b, q, m, len(SHAPES), p, generator=g, dtype=dtype)
    return value, loc, weights


def test_forward_matches_loop_reference():
    value, loc, weights = _inputs(0)
    fast = ms_deform_attn(value, SHAPES, loc, weights)
    slow = reference_ms_deform_attn(value, SHAPES, loc, weights)
    assert fast.shape == (2, 4, 6)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)


def test_float32_forward_close_to_float64_reference():
    value, loc, weights = _inputs(1)
    fast = ms_deform_attn(value.float(), SHAPES, loc.float(), weights.float())
    slow = reference_ms_deform_attn(value, SHAPES, loc, weights)
    torch.testing.assert_close(fast.double(), slow, rtol=1e-5, atol=1e-5)


def test_gradients_match_loop_reference():
    value, loc, weights = _inputs(2)
    grads = []
    for fn in (ms_deform_attn, reference_ms_deform_attn):
        v, loc_, w = (t.clone().requires_grad_(True) for t in (value, loc, weights))
        out = fn(v, SHAPES, loc_, w)
        # A fixed random cotangent so every output element matters.
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
        (out * cot).sum().backward()
        grads.append((v.grad, loc_.grad, w.grad))
    for fast, slow, name in zip(grads[0], grads[1], ("value", "locations", "weights")):
        torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-10, msg=f"gradient of {name}")


def test_sample_at_pixel_centre_reads_that_pixel():
    value = torch.arange(12, dtype=torch.float64).view(1, 12, 1, 1)  # one level 3x4
    loc = torch.tensor([(2 + 0.5) / 4, (1 + 0.5) / 3], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    out = ms_deform_attn(value, [(3, 4)], loc, torch.ones(1, 1, 1, 1, 1, dtype=torch.float64))
    assert out.item() == 1 * 4 + 2


def test_bad_inputs_raise_clear_errors():
    value, loc, weights = _inputs(4)
    with pytest.raises(ValueError, match="spatial_shapes"):
        ms_deform_attn(value, [(5, 7)], loc, weights)
    with pytest.raises(ValueError, match="sampling_locations"):
        ms_deform_attn(value, SHAPES, loc[..., :1], weights)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn(value, SHAPES, loc, weights[..., :1])
    with pytest.raises(TypeError, match="value"):
        ms_deform_attn(value.long(), SHAPES, loc, weights)


def test_offset_init_spreads_heads_around_the_reference():
    lin = nn.Linear(8, 4 * 2 * 3 * 2)
    init_sampling_offsets(lin, num_heads=4, groups=2, points=3)
    bias = lin.bias.view(4, 2, 3, 2)
    assert torch.count_nonzero(lin.weight) == 0
    # Head 0 looks along +x, head 1 along +y; point k sits k+1 pixels away.
    torch.testing.assert_close(bias[0, 1, :, 0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(bias[1, 0, :, 1], torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="outputs"):
        init_sampling_offsets(nn.Linear(8, 10), 4, 2, 3)
