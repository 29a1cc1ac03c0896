"""``cull="center"``: a view keeps exactly the Gaussians whose centre projects strictly
inside the image, checked against rendering that subset (chosen here, in float64) with the
exact footprint culling."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from tests.render.scenes import random_cameras, random_gaussians


def _inside_centre(means, cams, view):
    w = cams.cam_from_world[view].double()
    k = cams.intrinsics[view].double()
    p = means.double() @ w[:3, :3].T + w[:3, 3]
    if cams.model == "pinhole":
        uv = (p[:, :2] / p[:, 2:]) @ k[:2, :2].T + k[:2, 2]
    else:
        uv = p[:, :2] @ k[:2, :2].T + k[:2, 2]
    size = torch.tensor([cams.width, cams.height], dtype=torch.float64)
    return ((uv > 0.5) & (uv < size - 0.5)).all(-1) & (p[:, 2] > cams.near)


@pytest.mark.parametrize("model", ["pinhole", "orthographic"])
def test_center_cull_equals_rendering_the_inside_subset(model):
    cams = random_cameras(3, 33, 27, model, seed=11)
    means, opac, feats, scales = random_gaussians(120, 4, seed=11)
    bg = torch.rand(4, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (means, opac, feats)]
    out = gr.render(*leaves, scales, cams, bg, backend="torch", cull="center")
    full = gr.render(means, opac, feats, scales, cams, bg, backend="torch")
    culled_something = False
    for v in range(len(cams)):
        keep = _inside_centre(means, cams, v)
        culled_something |= bool((~keep).any())
        one = gr.Cameras(
            cams.cam_from_world[v : v + 1], cams.intrinsics[v : v + 1], cams.width, cams.height, cams.model
        )
        ref = gr.render(means[keep], opac[keep], feats[keep], scales[keep], one, bg, backend="torch")
        torch.testing.assert_close(out.features[v], ref.features[0], atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(out.depth[v], ref.depth[0], atol=1e-10, rtol=1e-9)
    assert culled_something
    # something outside the border did reach the image with exact splatting
    assert not torch.allclose(out.features, full.features)
    # culled Gaussians get exactly zero gradient
    (out.features.sum() + out.depth.sum()).backward()
    keep_any = torch.stack([_inside_centre(means, cams, v) for v in range(len(cams))]).any(0)
    assert torch.all(leaves[1].grad[~keep_any] == 0)


def test_unknown_cull_is_refused_by_name():
    cams = random_cameras(1, 8, 8, seed=0)
    means, opac, feats, scales = random_gaussians(3, 2, seed=0)
    with pytest.raises(ValueError, match="cull"):
        gr.render(means, opac, feats, scales, cams, cull="sphere")
