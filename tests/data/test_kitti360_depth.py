"""SSCBench-KITTI360 depth maps (Symphonies): the reader's depth item, crops and refusals."""

import numpy as np
import pytest
import torch

from gaussrender import SSCBENCH_KITTI360
from gaussrender.data import SSCBenchKITTI360, read_kitti360_depth, write_kitti360_depth, write_kitti360_sample
from gaussrender.data.files import DataFileError
from tests.data.synthetic import write_png

SEQ = "2013_05_28_drive_0006_sync"


def _sample(root, frame="000000", hw=(376, 1408)):
    write_kitti360_sample(root, 6, frame, np.zeros(SSCBENCH_KITTI360.shape, np.uint8))
    write_png(root / f"data_2d_raw/{SEQ}/image_00/data_rect/{frame}.png", hw=hw)


def test_depth_maps_are_read_at_the_stored_size(tmp_path):
    _sample(tmp_path, hw=(40, 150))
    depth = np.arange(48 * 160, dtype=np.float64).reshape(48, 160)  # larger: cropped top-left
    path = write_kitti360_depth(tmp_path / "depth", 6, "000000", depth)
    assert path == tmp_path / "depth" / SEQ / "000000.npy"
    ds = SSCBenchKITTI360(tmp_path, "val", load_images=True, image_size=(20, 75), depth_root=tmp_path / "depth")
    item = ds[0]
    # the network image is resized; the depth stays at the stored image size (40 x 150)
    assert item["images"].shape == (1, 3, 20, 75)
    assert item["depth"].dtype == torch.float32 and item["depth"].shape == (1, 40, 150)
    np.testing.assert_array_equal(item["depth"][0].numpy(), depth[:40, :150].astype(np.float32))
    assert "depth" not in SSCBenchKITTI360(tmp_path, "val")[0]


def test_bad_depth_maps_are_refused(tmp_path):
    _sample(tmp_path, hw=(40, 150))
    root = tmp_path / "depth"
    write_kitti360_depth(root, 6, "000000", np.ones((30, 150)))
    ds = SSCBenchKITTI360(tmp_path, "val", depth_root=root)
    with pytest.raises(DataFileError, match=r"000000.npy: depth map is \[30, 150\], smaller than the image"):
        ds[0]
    np.save(root / SEQ / "000000.npy", np.ones((40, 150), np.int32))
    with pytest.raises(DataFileError, match="dtype"):
        ds[0]
    np.save(root / SEQ / "000000.npy", np.ones((40, 150, 1), np.float32))
    with pytest.raises(DataFileError, match="shape"):
        ds[0]
    (root / SEQ / "000000.npy").unlink()
    with pytest.raises(FileNotFoundError, match="depth map"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="depth_root"):
        SSCBenchKITTI360(tmp_path, "val", depth_root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="frame"):
        write_kitti360_depth(root, 6, "../x", np.ones((2, 2)))
    with pytest.raises(ValueError, match="2D"):
        write_kitti360_depth(root, 6, "x", np.ones((2, 2, 2)))
    # unknown depths (NaN, inf, negative) are returned as 0, the value marking "no depth"
    raw = np.full((5, 6), np.nan)
    raw[0, :3] = [np.inf, -np.inf, -2.0]
    raw[1, 0] = 3.5
    ok = write_kitti360_depth(root, 6, "ok", raw)
    depth = read_kitti360_depth(ok, (5, 6))
    assert np.isfinite(depth).all() and (depth >= 0).all()
    assert depth[1, 0] == 3.5 and (depth != 0).sum() == 1
    for size in [(0, 6), (5, -1), (5,), (5.0, 6)]:  # image sizes are positive (H, W) ints
        with pytest.raises(ValueError, match="image_size"):
            read_kitti360_depth(ok, size)
