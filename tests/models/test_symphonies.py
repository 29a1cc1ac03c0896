"""Symphonies: shapes and losses at tiny size, its attention against float64 loops, depth-proposal geometry."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr
from gaussrender.losses.occupancy import Occupancy3DLoss
from gaussrender.models import ModelConfig, Symphonies, build_model, ms_deform_attn
from gaussrender.models.symphonies import DeformableAttention, lift_depth, squeeze_points, squeeze_volume
from tests.models.helpers import TINY_GRIDS, H, W, rig
from tests.models.test_deform_attn import reference_ms_deform_attn

GRID = TINY_GRIDS["kitti360"]  # the KITTI-360 box and classes at 3.2 m: 16x16x2


def front_camera(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward camera of :func:`rig` (1.5 m up, looking along +x), ``[batch, 1, ...]``."""
    k, t = rig(batch)
    return k[:, :1].clone(), t[:, :1].clone()


def build(seed: int = 0, grid=GRID, **kw) -> Symphonies:
    torch.manual_seed(seed)
    return build_model(ModelConfig("symphonies", "tiny", grid, num_cameras=1, image_size=(H, W), **kw))


def test_forward_backward_shapes_and_finite_losses():
    model = build(learned_opacity=True)
    k, t = front_camera(batch=2)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 1, 3, H, W, generator=g)
    depth = torch.rand(2, 1, H // 4, W // 4, generator=g) * 40 + 2  # any resolution
    out = model(images, k, t, depth=depth)
    c = GRID.num_classes
    assert out["logits"].shape == (2, c, *GRID.shape)
    assert out["opacity"].shape == (2, *GRID.shape)
    # training: every earlier layer decoded at the full grid (tiny: 2 layers -> 1 aux)
    assert [tuple(a.shape) for a in out["aux_logits"]] == [(2, c, *GRID.shape)]
    labels = torch.randint(0, c, (2, *GRID.shape), generator=g)
    labels[0, :2] = GRID.ignore_index
    terms = Occupancy3DLoss(c, GRID.empty_index, GRID.ignore_index)(out["logits"], labels, out["aux_logits"])
    loss = sum(terms.values()) + out["opacity"].mean()
    assert terms and all(bool(torch.isfinite(v)) for v in terms.values())
    loss.backward()
    backbone = [p for p in model.backbone_parameters() if p.requires_grad]
    assert backbone and all(p.grad is not None for p in backbone)
    for name in (
        "query_embed.weight",
        "query_points.weight",
        "scene_embed.weight",
        "voxel_proposal.attn.value_proj.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    model.eval()
    with torch.no_grad():
        out = model(images, k, t, depth=depth)
    assert out["aux_logits"] == [] and out["logits"].shape == (2, c, *GRID.shape)


def test_release_loss_terms_are_finite_and_reach_the_network():
    """CE + sem_scal + geo_scal + frustum at the Symphonies release's weights (1 each), with its aux outputs."""
    model = build()
    k, t = front_camera()
    g = torch.Generator().manual_seed(2)
    images = torch.rand(1, 1, 3, H, W, generator=g)
    depth = torch.rand(1, 1, H // 4, W // 4, generator=g) * 40 + 2
    out = model(images, k, t, depth=depth)
    c = GRID.num_classes
    labels = torch.randint(0, c, (1, *GRID.shape), generator=g)
    labels[0, :3] = GRID.ignore_index
    loss_fn = Occupancy3DLoss(
        c,
        GRID.empty_index,
        GRID.ignore_index,
        ce_weight=1.0,
        lovasz_weight=0.0,
        sem_scal_weight=1.0,
        geo_scal_weight=1.0,
        frustum_weight=1.0,
        num_frustums=4,
    )
    frustum = torch.randint(-1, 4, labels.shape, generator=g)
    terms = loss_fn(out["logits"], labels, out["aux_logits"], frustum=frustum)
    assert {"loss_sem_scal", "loss_geo_scal", "loss_frustum"} <= set(terms)
    assert all(bool(torch.isfinite(v)) for v in terms.values())
    assert all(float(terms[k].detach()) > 0 for k in ("loss_sem_scal", "loss_geo_scal", "loss_frustum"))
    (terms["loss_sem_scal"] + terms["loss_geo_scal"] + terms["loss_frustum"]).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(gr_).all()) for gr_ in grads)
    assert float(dict(model.named_parameters())["scene_embed.weight"].grad.abs().sum()) > 0


def test_monocular_and_depth_are_required():
    with pytest.raises(ValueError, match="num_cameras must be 1"):
        build_model(ModelConfig("symphonies", "tiny", GRID, num_cameras=2, image_size=(H, W)))
    model = build()
    k, t = front_camera()
    images = torch.rand(1, 1, 3, H, W)
    with pytest.raises(ValueError, match="needs depth"):
        model(images, k, t)
    with pytest.raises(ValueError, match="depth"):
        model(images, k, t, depth=torch.ones(1, H, W))
    with pytest.raises(TypeError, match="depth"):
        model(images, k, t, depth=torch.ones(1, 1, H, W, dtype=torch.int64))
    assert Symphonies.needs_depth


def test_deformable_attention_matches_float64_loop():
    """Offsets normalised per level by (w, h), softmax over levels x points, residual: by hand."""
    g = torch.Generator().manual_seed(3)
    shapes = [(5, 7), (3, 4)]
    c, m, lv, p, q, b = 6, 2, 2, 3, 4, 2
    attn = DeformableAttention(c, m, lv, p, dropout=0.0).double()
    with torch.no_grad():
        for prm in attn.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g, dtype=torch.float64) * 0.3)
    query = torch.randn(b, q, c, generator=g, dtype=torch.float64)
    pos = torch.randn(b, q, c, generator=g, dtype=torch.float64)
    value = torch.randn(b, sum(h * w for h, w in shapes), c, generator=g, dtype=torch.float64)
    ref = torch.rand(b, q, lv, 2, generator=g, dtype=torch.float64)
    out = attn(query, value, ref, shapes, pos)

    x = query + pos
    v = (value @ attn.value_proj.weight.T + attn.value_proj.bias).view(b, -1, m, c // m)
    off = (x @ attn.sampling_offsets.weight.T + attn.sampling_offsets.bias).view(b, q, m, lv, p, 2)
    logits = (x @ attn.attention_weights.weight.T + attn.attention_weights.bias).view(b, q, m, lv * p)
    weights = logits.softmax(-1).view(b, q, m, lv, p)
    loc = torch.empty(b, q, m, lv, p, 2, dtype=torch.float64)
    for li, (h, w) in enumerate(shapes):
        loc[:, :, :, li, :, 0] = ref[:, :, None, li, None, 0] + off[:, :, :, li, :, 0] / w
        loc[:, :, :, li, :, 1] = ref[:, :, None, li, None, 1] + off[:, :, :, li, :, 1] / h
    sampled = reference_ms_deform_attn(v, shapes, loc, weights)
    expected = query + sampled @ attn.output_proj.weight.T + attn.output_proj.bias
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_squeezed_volume_sampling_reads_the_voxels():
    """Each voxel centre samples its own value on the squeezed map; half a voxel up in z
    averages the two z neighbours of the same (x, y) column (float64, against the loop)."""
    g = torch.Generator().manual_seed(4)
    shape = (3, 4, 5)
    vol = torch.randn(1, 2, *shape, generator=g, dtype=torch.float64)
    value, sq = squeeze_volume(vol)
    assert sq == (shape[0] * shape[2], shape[1])
    idx = torch.stack(torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    centres = idx.double() + 0.5
    for shift, expect in ((0.0, None), (0.5, "mean")):
        pts = centres + torch.tensor([0.0, 0.0, shift], dtype=torch.float64)
        keep = idx[:, 2] < shape[2] - 1 if shift else torch.ones(len(idx), dtype=torch.bool)
        loc = squeeze_points(pts[keep], shape).view(1, -1, 1, 1, 1, 2)
        w = torch.ones(1, loc.shape[1], 1, 1, 1, dtype=torch.float64)
        got = ms_deform_attn(value.view(1, -1, 1, 2), [sq], loc, w)
        torch.testing.assert_close(got, reference_ms_deform_attn(value.view(1, -1, 1, 2), [sq], loc, w))
        ix, iy, iz = idx[keep].unbind(-1)
        want = vol[0, :, ix, iy, iz].T
        if expect == "mean":
            want = 0.5 * (want + vol[0, :, ix, iy, iz + 1].T)
        torch.testing.assert_close(got[0], want, rtol=1e-12, atol=1e-12)


def _front_pixel_point(u: float, v: float, depth: float) -> tuple[float, float, float]:
    """Grid-frame point seen at pixel coordinates (u, v) at ``depth`` by :func:`front_camera`,
    written out from its axes: camera x = -grid y, camera y = -grid z, camera z = grid x,
    centre 1.5 m up; focal 60 px, principal point (W/2, H/2)."""
    return depth, -(u - W / 2) * depth / 60.0, 1.5 - (v - H / 2) * depth / 60.0


@pytest.mark.parametrize("scale", [1, 2])
def test_a_pixel_at_a_known_depth_proposes_its_voxel(scale):
    model = build()
    k, t = front_camera()
    hd, wd = H // scale, W // scale
    row, col, z = 10, 30, 23.0
    depth = torch.zeros(1, hd, wd, dtype=torch.float64)
    depth[0, row, col] = z
    depth[0, 0, 0] = float("nan")  # unknown depths propose nothing
    depth[0, 0, 1] = -3.0
    points, valid = lift_depth(depth, k[:, 0].double(), t[:, 0].double(), (H, W))
    # the pixel centre of the depth map, in the network image's pixel coordinates
    expected = _front_pixel_point((col + 0.5) * scale, (row + 0.5) * scale, z)
    torch.testing.assert_close(points[0, row * wd + col], torch.tensor(expected, dtype=torch.float64))
    assert int(valid.sum()) == 1
    prop = model.proposals(points, valid)
    # scene voxels: grid / (2, 2, 4) -> 8x8x1 voxels of 6.4 x 6.4 x 12.8 m from (0, -25.6, -2)
    assert model.scene_shape == (8, 8, 1)
    sx, sy, sz = model.scene_shape
    ix, iy, iz = int(expected[0] // 6.4), int((expected[1] + 25.6) // 6.4), int((expected[2] + 2.0) // 12.8)
    assert prop.shape == (1, sx * sy * sz)
    assert prop[0].nonzero().flatten().tolist() == [(ix * sy + iy) * sz + iz]


def test_pixels_outside_the_grid_propose_nothing():
    model = build()
    k, t = front_camera()
    depth = torch.zeros(1, H, W)
    depth[0, 32, 48] = 80.0  # beyond x = 51.2 m
    depth[0, 5, 5] = 0.05  # 5 cm ahead: x = 0.05 m, inside the grid
    points, valid = lift_depth(depth, k[:, 0], t[:, 0], (H, W))
    prop = model.proposals(points, valid)
    assert int(prop.sum()) == 1  # only the near pixel, at x = 0.05 m
    far = points[0, 32 * W + 48]
    assert float(far[0]) == pytest.approx(80.0)


@pytest.mark.slow
def test_full_kitti360_grid_shapes():
    """The real 256x256x32 grid at tiny size (scene volume 128x128x8), eval mode."""
    from gaussrender.data.kitti360 import read_kitti360_calibration

    cal = read_kitti360_calibration()
    h, w = 48, 176
    k = torch.tensor(cal.intrinsics, dtype=torch.float32)
    k[0] *= w / 1408
    k[1] *= h / 376
    t = torch.tensor(cal.cam_from_velo, dtype=torch.float32)
    torch.manual_seed(0)
    model = build_model(ModelConfig("symphonies", "tiny", gr.SSCBENCH_KITTI360, num_cameras=1, image_size=(h, w)))
    assert model.scene_shape == (128, 128, 8)
    with torch.no_grad():
        out = model.eval()(
            torch.rand(1, 1, 3, h, w), k[None, None], t[None, None], depth=torch.full((1, 1, 12, 44), 9.0)
        )
    assert out["logits"].shape == (1, 19, 256, 256, 32) and bool(torch.isfinite(out["logits"]).all())
