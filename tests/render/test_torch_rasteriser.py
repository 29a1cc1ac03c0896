"""Internals of the torch backend's rasteriser that the oracle comparisons cannot pin down."""

from __future__ import annotations

import importlib

import pytest
import torch

from tests.render.scenes import random_cameras, random_gaussians

_torch = importlib.import_module("gaussrender.render._torch")
_project = importlib.import_module("gaussrender.render._project")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bound", [_project.ALPHA_MIN, _project.T_MIN])
def test_threshold_bound_reproduces_the_contracts_greater_or_equal(dtype, bound):
    """``threshold_`` keeps ``x > th``; with ``th = _largest_below(bound)`` that must be
    exactly ``x >= bound`` in ``dtype``, on both neighbours of the bound and on it."""
    at = torch.tensor(bound, dtype=dtype)
    x = torch.stack([torch.nextafter(at, torch.zeros_like(at)), at, torch.nextafter(at, torch.ones_like(at))])
    kept = torch.nn.functional.threshold(x, _torch._largest_below(bound, dtype), 0.0) != 0
    assert kept.tolist() == (x >= bound).tolist() == [False, True, True]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_without_gradients_is_bitwise_the_same(dtype):
    """Without gradients the rasteriser takes alpha in place and skips the backward pass's
    masks; the images must not change by a single bit."""
    cams = random_cameras(2, 23, 19, seed=5, dtype=dtype)
    means, opac, feats, scales = (t.to(dtype) for t in random_gaussians(150, 3, seed=5))
    bg = torch.rand(3, dtype=dtype)
    plain = _torch.render_torch(means, opac, feats, scales, cams, bg, depth_chunk=4, max_elements=700)
    graded = _torch.render_torch(
        means.clone().requires_grad_(), opac, feats, scales, cams, bg, depth_chunk=4, max_elements=700
    )
    for a, b in ((plain.features, graded.features), (plain.depth, graded.depth), (plain.alpha, graded.alpha)):
        assert torch.equal(a, b.detach())
    assert (plain.alpha > 0).any() and (plain.alpha < 1 - 1e-3).any()
