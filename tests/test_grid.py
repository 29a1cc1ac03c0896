import pytest
import torch

import gaussrender as gr


@pytest.mark.parametrize(
    "grid,shape,voxel,classes,empty",
    [
        (gr.OCC3D_NUSCENES, (200, 200, 16), 0.4, 18, 17),
        (gr.SURROUNDOCC_NUSCENES, (200, 200, 16), 0.5, 17, 0),
        (gr.SSCBENCH_KITTI360, (256, 256, 32), 0.2, 19, 0),
    ],
)
def test_presets_match_the_benchmarks(grid, shape, voxel, classes, empty):
    assert grid.shape == shape and grid.voxel_size == voxel
    assert grid.num_classes == classes and grid.empty_index == empty
    assert grid.ignore_index == 255
    assert len(grid.semantic_classes) == classes - 1 and empty not in grid.semantic_classes
    assert gr.get_grid(grid.name) is grid


def test_occ3d_classes_and_defaults():
    g = gr.OCC3D_NUSCENES
    assert g.class_names[0] == "others" and g.class_names[16] == "vegetation" and g.class_names[17] == "free"
    assert g.gaussian_scale == 0.27 and g.camera_strategy == "sensor"
    assert gr.SURROUNDOCC_NUSCENES.camera_strategy == "trajectory"
    assert gr.SSCBENCH_KITTI360.gaussian_scale == 0.10


def test_voxel_centers():
    g = gr.OCC3D_NUSCENES
    c = g.voxel_centers()
    assert c.shape == (200, 200, 16, 3)
    torch.testing.assert_close(c[0, 0, 0], torch.tensor([-39.8, -39.8, -0.8]))
    torch.testing.assert_close(c[199, 199, 15], torch.tensor([39.8, 39.8, 5.2]))
    idx, inside = g.voxel_index(c.reshape(-1, 3))
    assert inside.all()
    assert torch.equal(idx.reshape(200, 200, 16, 3)[5, 7, 3], torch.tensor([5, 7, 3]))


def test_inconsistent_grid_rejected():
    with pytest.raises(ValueError, match="range along axis 0"):
        gr.VoxelGrid("bad", (0, 0, 0), (10, 10, 1), 0.5, (10, 20, 2), ("a", "b"), 1)
    with pytest.raises(ValueError, match="empty_index"):
        gr.VoxelGrid("bad", (0, 0, 0), (5, 5, 1), 0.5, (10, 10, 2), ("a", "b"), 5)
    with pytest.raises(ValueError, match="grid must be"):
        gr.get_grid("nuscenes")
