"""SurroundOcc-nuScenes: sparse [N, 4] files, label 0 in the file = ignore, LiDAR grid frame."""

import numpy as np
import pytest
import torch

from gaussrender import SURROUNDOCC_NUSCENES
from gaussrender.data import (
    SurroundOccNuScenes,
    read_surroundocc_labels,
    surroundocc_label_path,
    write_surroundocc_sample,
)
from tests.data.synthetic import YAW_DEG, random_labels, synthetic_scene

SHAPE = SURROUNDOCC_NUSCENES.shape


def test_densify_by_hand(tmp_path):
    rows = np.array([[0, 0, 0, 4], [199, 199, 15, 16], [10, 20, 3, 0]], dtype=np.int64)
    np.save(tmp_path / "a.npy", rows)
    dense = read_surroundocc_labels(tmp_path / "a.npy")
    assert dense.shape == SHAPE and dense.dtype == np.uint8
    assert dense[0, 0, 0] == 4 and dense[199, 199, 15] == 16
    assert dense[10, 20, 3] == 255  # label 0 inside the file means "no valid class"
    assert int((dense == 0).sum()) == dense.size - 3


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = random_labels(rng, SHAPE, 17, 0)
    labels[rng.random(SHAPE) < 0.01] = 255
    path = write_surroundocc_sample(tmp_path, "./data/nuscenes\\samples/LIDAR_TOP/x__LIDAR_TOP__1.pcd.bin", labels)
    assert path == tmp_path / "samples" / "x__LIDAR_TOP__1.pcd.bin.npy"
    rows = np.load(path)
    assert rows.shape == (int((labels != 0).sum()), 4)
    np.testing.assert_array_equal(read_surroundocc_labels(path), labels)


@pytest.mark.parametrize(
    "rows, match",
    [
        (np.zeros((3, 3), np.int64), r"expected shape \(N, 4\), got \(3, 3\)"),
        (np.array([[200, 0, 0, 1]]), "outside the grid"),
        (np.array([[0, 0, 0, 17]]), r"labels must be in \[0, 17\)"),
        (np.array([[0.5, 0, 0, 1]]), "fractional"),
    ],
)
def test_reader_rejects_bad_files(tmp_path, rows, match):
    np.save(tmp_path / "bad.npy", rows)
    with pytest.raises(ValueError, match=f"bad.npy.*{match}"):
        read_surroundocc_labels(tmp_path / "bad.npy")


def test_dataset_grid_is_the_lidar_frame(tmp_path):
    """LiDAR at (1, 0, 1.8), yawed -90 deg in the ego frame: grid coordinates are LiDAR ones."""
    samples = synthetic_scene("scene-0001", 5)
    rng = np.random.default_rng(1)
    written = {}
    for s in samples:
        written[s.token] = random_labels(rng, SHAPE, 17, 0)
        write_surroundocc_sample(tmp_path, s.lidar_path, written[s.token])
    ds = SurroundOccNuScenes(tmp_path, samples)
    item = ds[2]
    assert "mask_camera" not in item
    np.testing.assert_array_equal(item["labels"].numpy(), written[samples[2].token])
    # ego point 10 m ahead of CAM_FRONT at camera height, expressed in the LiDAR frame:
    # ego (10, 0, 1.5) - lidar (1, 0, 1.8) = (9, 0, -0.3), rotated +90 deg about z -> (0, 9, -0.3)
    p = torch.tensor([0.0, 9.0, -0.3, 1.0])
    cam = item["cam_from_grid"][0] @ p
    uv = (item["intrinsics"][0] @ cam[:3]) / cam[2]
    assert YAW_DEG["CAM_FRONT"] == 0.0
    np.testing.assert_allclose(uv[:2].numpy(), [320.0, 180.0], atol=1e-3)
    # origins in the LiDAR frame: frame j's LiDAR is 2 (j - 2) m ahead -> (0, 2 (j - 2), 0)
    expected = [[0.0, 2.0 * (j - 2), 0.0] for j in range(5)]
    np.testing.assert_allclose(item["origins"].numpy(), expected, atol=1e-5)


def test_dataset_prefers_occ_path_and_names_missing_file(tmp_path):
    (s,) = synthetic_scene("scene-0001", 1)
    ds = SurroundOccNuScenes(tmp_path, [s], with_origins=False)
    with pytest.raises(FileNotFoundError, match=surroundocc_label_path(tmp_path, s.lidar_path).name):
        ds[0]
