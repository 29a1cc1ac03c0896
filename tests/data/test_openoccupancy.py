"""nuScenes-Occupancy (OpenOccupancy) sparse ``[N, 4]`` label files: rows are z, y, x, label."""

from dataclasses import replace

import numpy as np
import pytest

import gaussrender as gr
from gaussrender.data import (
    DataFileError,
    OpenOccupancyNuScenes,
    nuscenes_occupancy_label_path,
    read_nuscenes_occupancy_voxels,
    write_infos_json,
    write_nuscenes_occupancy_sample,
)
from tests.data.synthetic import synthetic_scene

SHAPE = (512, 512, 40)


def test_column_order_noise_and_empty(tmp_path):
    rows = np.array(
        [
            [3, 100, 7, 4],  # z=3, y=100, x=7: car
            [39, 0, 511, 16],  # z=39, y=0, x=511: vegetation
            [0, 5, 6, 0],  # label 0 = noise -> 255
        ],
        dtype=np.float32,  # float rows with integral values are read too
    )
    np.save(tmp_path / "a.npy", rows)
    dense = gr.data.read_nuscenes_occupancy_voxels(tmp_path / "a.npy")
    assert dense.dtype == np.uint8 and dense.shape == SHAPE
    assert dense[7, 100, 3] == 4 and dense[511, 0, 39] == 16 and dense[6, 5, 0] == 255
    assert int((dense != 0).sum()) == 3

    # the velocity variant [z, y, x, vx, vy, vz, label]
    vel = np.array([[3, 100, 7, 0.5, -1.0, 0.0, 4]], dtype=np.float64)
    np.save(tmp_path / "v.npy", vel)
    assert read_nuscenes_occupancy_voxels(tmp_path / "v.npy")[7, 100, 3] == 4


def test_duplicate_rows_take_the_majority(tmp_path):
    rows = np.array([[1, 1, 1, 4], [1, 1, 1, 9], [1, 1, 1, 9], [2, 2, 2, 5], [2, 2, 2, 3]], dtype=np.int64)
    np.save(tmp_path / "d.npy", rows)
    dense = read_nuscenes_occupancy_voxels(tmp_path / "d.npy")
    assert dense[1, 1, 1] == 9 and dense[2, 2, 2] == 3  # most frequent; the smaller label on a tie


def test_bad_files_are_named(tmp_path):
    np.save(tmp_path / "out.npy", np.array([[40, 0, 0, 1]]))
    with pytest.raises(DataFileError, match=r"out\.npy.*outside the grid"):
        read_nuscenes_occupancy_voxels(tmp_path / "out.npy")
    np.save(tmp_path / "lab.npy", np.array([[0, 0, 0, 17]]))
    with pytest.raises(DataFileError, match=r"lab\.npy: labels must be in \[0, 17\)"):
        read_nuscenes_occupancy_voxels(tmp_path / "lab.npy")
    np.save(tmp_path / "shape.npy", np.zeros((3, 5)))
    with pytest.raises(DataFileError, match=r"shape\.npy: expected shape \(N, 4\)"):
        read_nuscenes_occupancy_voxels(tmp_path / "shape.npy")
    np.save(tmp_path / "frac.npy", np.array([[0.5, 0, 0, 1]]))
    with pytest.raises(DataFileError, match="fractional"):
        read_nuscenes_occupancy_voxels(tmp_path / "frac.npy")


def test_writer_round_trip_and_dataset(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    idx = rng.integers(0, [512, 512, 40], size=(2000, 3))
    labels[idx[:, 0], idx[:, 1], idx[:, 2]] = rng.integers(1, 17, 2000)
    labels[0, 0, 0] = 255
    samples = [replace(s, lidar_token=f"lidar{i}") for i, s in enumerate(synthetic_scene("scene-0001", 1))]
    s = samples[0]
    path = write_nuscenes_occupancy_sample(tmp_path / "occ", s.scene_token, s.lidar_token, labels)
    assert path == tmp_path / "occ" / f"scene_{s.scene_token}" / "occupancy" / "lidar0.npy"
    rows = np.load(path)
    assert rows.shape[1] == 4 and (rows[:, 3] == 0).sum() == 1  # ignore stored as noise
    np.testing.assert_array_equal(read_nuscenes_occupancy_voxels(path), labels)

    infos = write_infos_json(tmp_path / "infos.json", samples)  # lidar_token survives the round trip
    ds = OpenOccupancyNuScenes(tmp_path / "occ", infos, with_origins=False)
    np.testing.assert_array_equal(ds[0]["labels"].numpy(), labels)
    with pytest.raises(DataFileError, match="no lidar_token"):
        OpenOccupancyNuScenes(tmp_path / "occ", [replace(s, lidar_token="")], with_origins=False)[0]
    with pytest.raises(DataFileError, match="cannot be used as a file name"):
        nuscenes_occupancy_label_path(tmp_path, "..", "x")
