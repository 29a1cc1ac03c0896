"""Every metric is built the same way: the grid (a VoxelGrid or a preset name) first, the
other options keyword-only; a preset name and its grid give the same metric."""

from __future__ import annotations

import inspect

import pytest
import torch

import gaussrender as gr
from gaussrender.metrics import OccupancyMetrics, RayIoU, RenderedViewMetrics

METRICS = [OccupancyMetrics, RayIoU, RenderedViewMetrics]


@pytest.mark.parametrize("metric", METRICS)
def test_grid_first_then_keyword_only_options(metric):
    params = list(inspect.signature(metric).parameters.values())
    assert params[0].name == "grid" and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params[0].default is inspect.Parameter.empty
    assert all(p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD) for p in params[1:])
    with pytest.raises(TypeError, match="positional"):
        metric(gr.OCC3D_NUSCENES, None)
    with pytest.raises(ValueError, match="grid must be a VoxelGrid"):
        metric("nuscenes")


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("name, grid", [("occ3d", gr.OCC3D_NUSCENES), ("surroundocc", gr.SURROUNDOCC_NUSCENES)])
def test_preset_name_and_grid_give_the_same_metric(metric, name, grid):
    by_name, by_grid = metric(name), metric(grid)
    assert by_name.grid == by_grid.grid == grid
    # the plain settings the constructor stored (torchmetrics' wrapped methods aside)
    state = {
        k: v
        for k, v in vars(by_grid).items()
        if not k.startswith("_") and not callable(v) and not isinstance(v, (torch.Tensor, torch.nn.Module))
    }
    assert "grid" in state
    assert state == {k: v for k, v in vars(by_name).items() if k in state}
    assert by_name.metric_state.keys() == by_grid.metric_state.keys()
    for key, value in by_grid.metric_state.items():
        assert torch.equal(by_name.metric_state[key], value), key


def test_preset_name_and_grid_score_alike():
    grid = gr.OCC3D_NUSCENES
    gen = torch.Generator().manual_seed(0)
    target = torch.full((1, *grid.shape), grid.empty_index)
    target[0, 80:120, 80:120, :3] = torch.randint(0, grid.num_classes, (40, 40, 3), generator=gen)
    pred = torch.roll(target, 1, dims=1)
    scores = []
    for g in ("occ3d", grid):
        m = OccupancyMetrics(g)
        m.update(pred, target)
        scores.append(m.compute())
    for key in scores[0]:
        torch.testing.assert_close(scores[0][key], scores[1][key], equal_nan=True)
