"""VoxelGrid and voxels_to_gaussians: bad values refused by name."""

from __future__ import annotations

import pytest
import torch

import gaussrender as gr


def _grid(**kw):
    args = dict(
        name="t",
        range_min=(0.0, 0.0, 0.0),
        range_max=(2.0, 2.0, 1.0),
        voxel_size=0.5,
        shape=(4, 4, 2),
        class_names=("a", "b", "free"),
        empty_index=2,
    )
    args.update(kw)
    return gr.VoxelGrid(**args)


def test_the_reference_grid_is_valid():
    assert _grid().shape == (4, 4, 2)


@pytest.mark.parametrize("value", [float("nan"), 0.0, -0.5, float("inf")])
def test_voxel_size_must_be_finite_and_positive(value):
    with pytest.raises(ValueError, match="voxel_size"):
        _grid(voxel_size=value)


@pytest.mark.parametrize("value", [float("nan"), 0.0, -0.3, 2e4, float("inf")])
def test_gaussian_scale_must_be_in_range(value):
    with pytest.raises(ValueError, match="gaussian_scale"):
        _grid(gaussian_scale=value)


def test_gaussian_scale_of_the_wrong_type_is_refused():
    with pytest.raises(TypeError, match="gaussian_scale"):
        _grid(gaussian_scale="0.27")


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("range_min", (float("nan"), 0.0, 0.0), ValueError),
        ("range_max", (2.0, float("inf"), 1.0), ValueError),
        ("range_min", (0.0, 0.0), ValueError),
        ("range_min", (-2e6, 0.0, 0.0), ValueError),
        ("shape", (4, 0, 2), ValueError),
        ("shape", (4.0, 4, 2), TypeError),
        ("shape", (True, 4, 2), TypeError),
        ("class_names", (), ValueError),
        ("class_names", "abc", ValueError),
        ("empty_index", True, TypeError),
        ("empty_index", 3, ValueError),
        ("ignore_index", 1.5, TypeError),
    ],
)
def test_fields_are_checked_by_name(field, value, error):
    with pytest.raises(error, match=field):
        _grid(**{field: value})


@pytest.mark.parametrize("scale", [float("nan"), 0.0, -1.0, 2e4])
def test_voxels_to_gaussians_scale_must_be_in_range(scale):
    labels = torch.full((4, 4, 2), 2)
    labels[1, 1, 0] = 0
    with pytest.raises(ValueError, match="scale"):
        gr.voxels_to_gaussians(_grid(), labels=labels, scale=scale)
    with pytest.raises(TypeError, match="scale"):
        gr.voxels_to_gaussians(_grid(), labels=labels, scale="0.3")
