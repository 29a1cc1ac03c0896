"""TPVFormer geometry: plane aggregation, hybrid-attention references, pillar anchors."""

from __future__ import annotations

import dataclasses

import torch

import gaussrender as gr
from gaussrender.models.tpvformer import CrossViewHybridAttention
from tests.models.helpers import TINY_GRIDS, build_tiny


def test_tpv_planes_sum_broadcast_to_voxels():
    """The aggregator's broadcast sum against an explicit loop (float64)."""
    grid = dataclasses.replace(
        gr.OCC3D_NUSCENES, shape=(4, 6, 2), voxel_size=3.2, range_max=(-40.0 + 12.8, -40.0 + 19.2, 5.4)
    )
    model = build_tiny("tpvformer", grid).double()
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


def test_hybrid_attention_references_lie_where_the_cell_projects():
    attn = CrossViewHybridAttention(8, 2, tpv_shape=(4, 6, 2), num_anchors=2, num_points=4, dropout=0.0)
    ref = attn.reference  # [N, level, point, (u, v)]; levels xy [X, Y], zx [Z, X], yz [Y, Z]
    assert ref.shape == (4 * 6 + 2 * 4 + 6 * 2, 3, 4, 2)
    # Top-plane cell (x=1, y=2): its own plane at itself, then z anchors 0.25 and 0.75.
    x, y = 1.5 / 4, 2.5 / 6
    cell = ref[1 * 6 + 2]
    torch.testing.assert_close(cell[0], torch.tensor([[y, x]] * 4))
    torch.testing.assert_close(cell[1], torch.tensor([[x, 0.25]] * 2 + [[x, 0.75]] * 2))
    torch.testing.assert_close(cell[2], torch.tensor([[0.25, y]] * 2 + [[0.75, y]] * 2))
    # Side-plane cell (z=1, x=3): anchors along y in the top and front planes.
    z, x = 1.5 / 2, 3.5 / 4
    cell = ref[24 + 1 * 4 + 3]
    torch.testing.assert_close(cell[0], torch.tensor([[0.25, x]] * 2 + [[0.75, x]] * 2))
    torch.testing.assert_close(cell[1], torch.tensor([[x, z]] * 4))
    torch.testing.assert_close(cell[2], torch.tensor([[z, 0.25]] * 2 + [[z, 0.75]] * 2))


def test_pillar_anchors_span_the_flattened_axis_in_metres():
    grid = TINY_GRIDS["occ3d"]  # 25x25x2 voxels -> TPV 13x13x1
    model = build_tiny("tpvformer", grid)
    assert model.tpv_shape == (13, 13, 1)
    top = model.anchors_0.view(13, 13, 2, 3)  # tiny: 2 anchors per top-plane cell, along z
    torch.testing.assert_close(top[0, 0, :, 2], torch.tensor([-1.0 + 1.6, -1.0 + 4.8]))
    torch.testing.assert_close(top[0, 0, :, 0], torch.full((2,), -40.0 + 80.0 * 0.5 / 13))
    torch.testing.assert_close(top[12, 3, :, 1], torch.full((2,), -40.0 + 80.0 * 3.5 / 13))
    side = model.anchors_1.view(1, 13, 4, 3)  # zx plane: 4 anchors along y over the full width
    torch.testing.assert_close(side[0, 0, :, 1], torch.tensor([-30.0, -10.0, 10.0, 30.0]))
