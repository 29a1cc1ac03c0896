"""SSCBench-KITTI360: label files, invalid masks, calibration and splits."""

import numpy as np
import pytest
import torch

from gaussrender import SSCBENCH_KITTI360
from gaussrender.data import (
    KITTI360_SPLITS,
    SSCBenchKITTI360,
    kitti360_sequence,
    read_kitti360_calibration,
    read_kitti360_invalid,
    read_kitti360_labels,
    write_kitti360_sample,
)
from tests.data.synthetic import random_labels, write_png

SHAPE = SSCBENCH_KITTI360.shape


def test_splits_and_sequence_names():
    assert KITTI360_SPLITS["val"] == (6,) and KITTI360_SPLITS["test"] == (9,)
    assert KITTI360_SPLITS["train"] == (0, 2, 3, 4, 5, 7, 10)
    assert kitti360_sequence(6) == kitti360_sequence("06") == "2013_05_28_drive_0006_sync"
    with pytest.raises(ValueError, match="sequence"):
        kitti360_sequence("six")


def test_labels_and_invalid_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = random_labels(rng, SHAPE, 19, 0, p_occupied=0.05)
    invalid = rng.random(SHAPE) < 0.1
    path = write_kitti360_sample(tmp_path, 6, "000005", labels, invalid)
    assert path == tmp_path / "preprocess/labels/2013_05_28_drive_0006_sync/000005_1_1.npy"
    np.testing.assert_array_equal(read_kitti360_labels(path), labels)
    inv_path = tmp_path / "data_2d_raw/2013_05_28_drive_0006_sync/voxels/000005.invalid"
    assert inv_path.stat().st_size == np.prod(SHAPE) // 8
    np.testing.assert_array_equal(read_kitti360_invalid(inv_path), invalid)


def test_invalid_bit_order_is_msb_first(tmp_path):
    """SemanticKITTI packs 8 voxels per byte, first voxel in the most significant bit."""
    packed = np.zeros(np.prod(SHAPE) // 8, np.uint8)
    packed[0] = 0b1000_0001
    packed.tofile(tmp_path / "x.invalid")
    inv = read_kitti360_invalid(tmp_path / "x.invalid")
    assert inv[0, 0, 0] and inv[0, 0, 7] and inv.sum() == 2


def test_reader_rejects_bad_files(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((256, 256, 16), np.uint8))
    with pytest.raises(ValueError, match=r"a.npy: expected shape \(256, 256, 32\)"):
        read_kitti360_labels(tmp_path / "a.npy")
    bad = np.zeros(SHAPE, np.uint8)
    bad[1, 2, 3] = 19
    np.save(tmp_path / "b.npy", bad)
    with pytest.raises(ValueError, match=r"b.npy.*\[0, 19\) or 255.*19"):
        read_kitti360_labels(tmp_path / "b.npy")
    (tmp_path / "c.invalid").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="c.invalid: expected 262144 bytes"):
        read_kitti360_invalid(tmp_path / "c.invalid")


def test_default_calibration_and_files(tmp_path):
    calib = read_kitti360_calibration(None)
    np.testing.assert_allclose(calib.intrinsics, [[552.554261, 0, 682.049453], [0, 552.554261, 238.769549], [0, 0, 1]])
    # a velodyne point 10 m ahead (x forward) sits in front of the camera, near the image centre row
    p = calib.cam_from_velo @ [10.0, 0.0, 0.0, 1.0]
    uv = calib.intrinsics @ p[:3] / p[2]
    assert 9 < p[2] < 10 and 0 <= uv[0] < 1408 and 0 <= uv[1] < 376
    d = tmp_path / "calibration"
    d.mkdir()
    (d / "perspective.txt").write_text(
        "image_00: 1408 376\nP_rect_00: 500 0 700 0 0 500 200 0 0 0 1 0\nS_rect_00: 1.408000e+03 3.760000e+02\n"
    )
    (d / "calib_cam_to_velo.txt").write_text("0 0 1 1.0 -1 0 0 0 0 -1 0 0\n")
    calib = read_kitti360_calibration(tmp_path)
    np.testing.assert_allclose(calib.intrinsics, [[500, 0, 700], [0, 500, 200], [0, 0, 1]])
    # camera at velodyne (1, 0, 0) looking along velodyne x: velodyne (11, 0, 0) is 10 m ahead on axis
    np.testing.assert_allclose(calib.cam_from_velo @ [11.0, 0.0, 0.0, 1.0], [0, 0, 10, 1], atol=1e-12)


def test_dataset_split_items_and_invalid_mask(tmp_path):
    rng = np.random.default_rng(0)
    labels = random_labels(rng, SHAPE, 19, 0, p_occupied=0.05)
    invalid = np.zeros(SHAPE, bool)
    invalid[:10] = True
    write_kitti360_sample(tmp_path, 6, "000000", labels, invalid)
    write_kitti360_sample(tmp_path, 6, "000005", labels)
    write_kitti360_sample(tmp_path, 9, "000000", labels)
    ds = SSCBenchKITTI360(tmp_path, "val")
    assert len(ds) == 2 and len(SSCBenchKITTI360(tmp_path, "test")) == 1
    item = ds[0]
    assert item["token"] == "2013_05_28_drive_0006_sync/000000"
    assert item["labels"].dtype == torch.int64 and item["labels"].shape == SHAPE
    assert bool((item["labels"][:10] == 255).all())
    np.testing.assert_array_equal(item["labels"][10:].numpy(), labels[10:])
    np.testing.assert_array_equal(ds[1]["labels"].numpy(), labels)
    assert item["intrinsics"].shape == (1, 3, 3) and item["cam_from_grid"].shape == (1, 4, 4)
    with pytest.raises(FileNotFoundError, match="2013_05_28_drive_0000_sync"):
        SSCBenchKITTI360(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        SSCBenchKITTI360(tmp_path, "validation")


def test_dataset_images(tmp_path):
    write_kitti360_sample(tmp_path, 6, "000000", np.zeros(SHAPE, np.uint8))
    write_png(tmp_path / "data_2d_raw/2013_05_28_drive_0006_sync/image_00/data_rect/000000.png", hw=(376, 1408))
    item = SSCBenchKITTI360(tmp_path, [6], load_images=True, image_size=(188, 704))[0]
    assert item["images"].shape == (1, 3, 188, 704)
    assert item["intrinsics"][0, 0, 0] == pytest.approx(552.554261 / 2, rel=1e-6)
    assert item["intrinsics"][0, 1, 2] == pytest.approx(238.769549 / 2, rel=1e-6)
