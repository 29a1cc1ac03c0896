"""Occ3D-Waymo ``<scene>/<frame>_04.npz`` files as the release ships them (free stored as 23)."""

import numpy as np
import pytest

import gaussrender as gr
from gaussrender.data import DataFileError, Occ3DWaymo, read_occ3d_waymo_labels, write_occ3d_waymo_sample

SHAPE = (200, 200, 16)


def _official(path, rng, free=23):
    sem = rng.integers(0, 15, SHAPE).astype(np.uint8)
    sem[rng.random(SHAPE) < 0.9] = free
    infov = rng.random(SHAPE) < 0.6
    lidar = rng.random(SHAPE) < 0.7
    camera = lidar & (rng.random(SHAPE) < 0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the release's keys; masks as bool and uint8 (the loaders cast them with astype(bool))
    np.savez_compressed(
        path,
        voxel_label=sem,
        origin_voxel_state=lidar.astype(np.uint8),
        final_voxel_state=camera,
        infov=infov,
        ego2global=np.eye(4),
    )
    return sem, lidar, camera, infov


def test_reads_the_release_layout_and_moves_free_to_15(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "validation" / "003" / "005_04.npz"
    sem, lidar, camera, infov = _official(path, rng)
    out = read_occ3d_waymo_labels(path)
    expected = np.where(sem == 23, 15, sem)
    np.testing.assert_array_equal(out["semantics"], expected)
    assert out["semantics"].dtype == np.uint8
    np.testing.assert_array_equal(out["mask_lidar"], lidar)
    np.testing.assert_array_equal(out["mask_camera"], camera)
    np.testing.assert_array_equal(out["mask_infov"], infov)
    voxels = gr.data.read_occ3d_waymo_voxels(path)
    assert voxels.shape == SHAPE and voxels.max() == 15 == gr.OCC3D_WAYMO.empty_index

    ds = Occ3DWaymo(tmp_path)  # default split: validation
    assert ds.frames == [("003", "005")]
    item = ds[0]
    assert item["token"] == "003/005"
    np.testing.assert_array_equal(item["labels"].numpy(), expected)
    assert Occ3DWaymo(tmp_path / "validation").frames == ds.frames  # a split folder itself
    with pytest.raises(FileNotFoundError, match="training"):
        Occ3DWaymo(tmp_path, "train")


def test_bad_files_are_named(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "000" / "000_04.npz"
    sem, lidar, camera, infov = _official(path, rng)
    np.savez_compressed(tmp_path / "nokey.npz", voxel_label=sem, infov=infov)
    with pytest.raises(DataFileError, match=r"nokey\.npz.*origin_voxel_state"):
        read_occ3d_waymo_labels(tmp_path / "nokey.npz")
    bad = sem.copy()
    bad[0, 0, 0] = 17
    np.savez_compressed(
        tmp_path / "label.npz", voxel_label=bad, origin_voxel_state=lidar, final_voxel_state=camera, infov=infov
    )
    with pytest.raises(DataFileError, match=r"label\.npz voxel_label.*\[17\]"):
        read_occ3d_waymo_labels(tmp_path / "label.npz")
    np.savez_compressed(
        tmp_path / "fine.npz",
        voxel_label=np.zeros((1600, 1600, 4), np.uint8),
        origin_voxel_state=lidar,
        final_voxel_state=camera,
        infov=infov,
    )
    with pytest.raises(DataFileError, match=r"fine\.npz voxel_label: expected shape \(200, 200, 16\)"):
        read_occ3d_waymo_labels(tmp_path / "fine.npz")


def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    sem = rng.integers(0, 16, SHAPE).astype(np.uint8)
    masks = [rng.random(SHAPE) < p for p in (0.5, 0.6, 0.7)]
    path = write_occ3d_waymo_sample(tmp_path / "training", 12, "034", sem, *masks)
    assert path == tmp_path / "training" / "012" / "034_04.npz"
    with np.load(path) as raw:  # stored with free = 23, as the release's files
        assert set(raw.files) == {"voxel_label", "origin_voxel_state", "final_voxel_state", "infov"}
        assert raw["voxel_label"].max() == 23 and not (raw["voxel_label"] == 15).any()
    out = read_occ3d_waymo_labels(path)
    np.testing.assert_array_equal(out["semantics"], sem)
    for got, want in zip((out["mask_lidar"], out["mask_camera"], out["mask_infov"]), masks):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="3-digit"):
        write_occ3d_waymo_sample(tmp_path, "../x", 0, sem, *masks)
