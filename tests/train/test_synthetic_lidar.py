"""The synthetic dataset's optional LiDAR scan and 2D targets (written as nuScenes files, read back)."""

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.data import collate, load_infos, load_lidar, read_lidarseg_labels
from gaussrender.scene import camera_targets, lidar_scan, make_scene
from gaussrender.train.synthetic import SyntheticOccupancy, make_dataset

SIZE = (24, 40)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_lidar")
    return make_dataset(root, 2, num_val_scenes=0, seed=5, image_size=SIZE, camera_stride=32, lidar=True)


def test_written_scan_is_the_scene_scan_in_nuscenes_files(dataset):
    samples = load_infos(dataset.train_infos)
    s = samples[0]
    assert s.lidar_path == f"samples/LIDAR_TOP/{s.token}.pcd.bin"
    assert s.lidarseg_path == f"lidarseg/synthetic/{s.token}_lidarseg.bin"
    points, labels = load_lidar(s, dataset.root, drop_fine=())
    scene = make_scene(5, frames=1, camera_stride=32)
    want_points, want_labels = lidar_scan(scene.semantics, scene.grid)
    # float32 files: within float32 rounding of the float64 scan, same classes
    np.testing.assert_allclose(points, want_points.numpy(), atol=1e-5)
    np.testing.assert_array_equal(labels, want_labels.numpy())
    # the points read back still lie in voxels of their class
    idx, inside = scene.grid.voxel_index(torch.from_numpy(points))
    assert bool(inside.all())
    assert torch.equal(scene.semantics[idx[:, 0], idx[:, 1], idx[:, 2]], torch.from_numpy(labels))
    fine = read_lidarseg_labels(dataset.root / s.lidarseg_path, len(points))
    assert set(np.unique(fine).tolist()) <= {29, 9, 14, 16, 17, 18, 21, 2, 12, 22, 23, 24, 25, 26, 27, 28, 30}


def test_reader_adds_points_and_2d_targets_on_request(dataset):
    plain = SyntheticOccupancy(dataset.root, dataset.train_infos)[0]
    assert not {"points", "point_labels", "target_depth", "target_semantics"} & set(plain)
    ds = SyntheticOccupancy(dataset.root, dataset.train_infos, with_lidar=True, targets_2d="camera")
    item = ds[0]
    assert set(item) - set(plain) == {"points", "point_labels", "target_depth", "target_semantics"}
    assert item["points"].dtype == torch.float32 and item["points"].shape[1] == 3
    assert item["point_labels"].dtype == torch.uint8 and len(item["point_labels"]) == len(item["points"])
    h, w = (int(x) for x in item["render_image_size"])
    assert (h, w) == SIZE
    assert item["target_depth"].shape == (6, h, w) and item["target_depth"].dtype == torch.float32
    assert item["target_semantics"].shape == (6, h, w) and item["target_semantics"].dtype == torch.uint8
    k, t, _ = gr.nuscenes_rig(SIZE, dtype=torch.float64)
    depth, sem = camera_targets(item["labels"], ds.grid, k, t, SIZE)
    torch.testing.assert_close(item["target_depth"], depth.float(), atol=1e-4, rtol=0)
    assert torch.equal(item["target_semantics"], sem)
    assert bool(((item["target_depth"] > 0) == (item["target_semantics"] != 255)).all())
    # the LiDAR flavour: the scan z-buffered into the same cameras
    lidar = SyntheticOccupancy(dataset.root, dataset.train_infos, targets_2d="lidar")[0]
    d2, s2 = gr.project_points(item["points"].double(), item["point_labels"], t, k, SIZE)
    torch.testing.assert_close(lidar["target_depth"], d2.float(), atol=1e-4, rtol=0)
    assert torch.equal(lidar["target_semantics"], s2)
    assert 0 < int((lidar["target_depth"] > 0).sum()) < int((item["target_depth"] > 0).sum())
    # where both see something, the sparse LiDAR depth is close to the dense ray-cast depth
    both = (lidar["target_depth"] > 0) & (item["target_depth"] > 0)
    close = (lidar["target_depth"][both] - item["target_depth"][both]).abs() < 2 * ds.grid.voxel_size
    assert float(close.float().mean()) > 0.8
    batch = collate([ds[0], ds[1]])
    assert isinstance(batch["points"], list) and batch["target_depth"].shape == (2, 6, h, w)


def test_reader_refuses_lidar_without_files(tmp_path):
    ds = make_dataset(
        tmp_path, 1, num_val_scenes=0, seed=1, image_size=(12, 20), camera_stride=64, grid="synthetic_small"
    )
    with pytest.raises(ValueError, match=r"make_dataset\(lidar=True\)"):
        SyntheticOccupancy(ds.root, ds.train_infos, grid="synthetic_small", with_lidar=True)
    with pytest.raises(ValueError, match="targets_2d must be"):
        SyntheticOccupancy(ds.root, ds.train_infos, grid="synthetic_small", targets_2d="depth")
    # the dense targets need no LiDAR files
    item = SyntheticOccupancy(ds.root, ds.train_infos, grid="synthetic_small", targets_2d="camera")[0]
    assert item["target_depth"].shape == (6, 12, 20) and bool((item["target_depth"] > 0).any())


def test_config_writes_and_reads_the_lidar_and_2d_targets(tmp_path):
    from gaussrender.train.builders import build_dataset, prepare_synthetic
    from gaussrender.train.config import ConfigError, config_from_dict

    syn = {"num_scenes": 1, "num_val_scenes": 0, "image_size": [12, 20], "lidar": True, "with_lidar": True}
    data = {"grid": "synthetic_small", "root": str(tmp_path), "image_size": [12, 20], "synthetic": syn}
    cfg = config_from_dict({"data": {**data, "synthetic": {**syn, "targets_2d": "lidar"}}})
    prepare_synthetic(cfg.data)
    assert (tmp_path / "samples" / "LIDAR_TOP").is_dir()
    item = build_dataset(cfg.data, "train", load_images=False)[0]
    assert {"points", "point_labels", "target_depth", "target_semantics"} <= set(item)
    assert item["target_depth"].shape == (6, 12, 20) and bool((item["target_depth"] > 0).any())
    # off by default: the same data without the flags gives the plain items
    plain = config_from_dict({"data": {**data, "synthetic": {"num_scenes": 1, "num_val_scenes": 0}}})
    assert "points" not in build_dataset(plain.data, "train", load_images=False)[0]
    with pytest.raises(ConfigError, match="data.synthetic.with_lidar.*needs lidar: true"):
        config_from_dict({"data": {**data, "synthetic": {**syn, "lidar": False}}})
    with pytest.raises(ConfigError, match="data.synthetic.targets_2d"):
        config_from_dict({"data": {**data, "synthetic": {"targets_2d": "depth"}}})
