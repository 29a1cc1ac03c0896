"""The nuScenes readers' LiDAR 2D targets (``lidar_targets=True``): the scan z-buffered into the
render cameras, for real-data training from 2D targets (configs ``*_2d`` / ``*_3d+2d``)."""

import dataclasses

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.data import Occ3DNuScenes, cam_from_ego, load_infos, load_lidar
from gaussrender.train.config import ConfigError, load_config
from gaussrender.train.synthetic import SyntheticOccupancy, make_dataset

SIZE = (24, 40)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("lidar_targets")
    return make_dataset(root, 2, num_val_scenes=0, seed=3, image_size=SIZE, camera_stride=32, lidar=True)


def test_targets_are_the_scan_through_the_render_cameras(dataset):
    reader = Occ3DNuScenes(dataset.root, dataset.train_infos, lidar_targets=True, with_origins=False)
    sample = reader.samples[0]
    item = reader[0]
    # the same targets from the public pieces, in float64: scan (ego = Occ3D grid frame),
    # calibration, the render cameras' intrinsics and size
    points, labels = load_lidar(sample, dataset.root)
    size = tuple(int(v) for v in item["render_image_size"])
    depth, sem = gr.project_points(
        torch.from_numpy(points),
        torch.from_numpy(labels),
        torch.from_numpy(cam_from_ego(sample)),
        item["render_intrinsics"].double(),
        size,
    )
    assert item["target_depth"].dtype == torch.float32 and item["target_semantics"].dtype == torch.uint8
    assert item["target_depth"].shape == (6, *size) and item["target_semantics"].shape == (6, *size)
    torch.testing.assert_close(item["target_depth"], depth.float())
    assert torch.equal(item["target_semantics"], sem)
    hit = item["target_depth"] > 0
    assert int(hit.sum()) > 20  # the test sees returns in the cameras
    assert bool((item["target_semantics"][hit] != 255).all())


def test_targets_match_the_synthetic_readers(dataset):
    # the synthetic reader's "lidar" targets use the same scan (nothing dropped there either)
    real = Occ3DNuScenes(dataset.root, dataset.train_infos, lidar_targets=True, with_origins=False)[1]
    syn = SyntheticOccupancy(dataset.root, dataset.train_infos, targets_2d="lidar", with_origins=False)[1]
    assert torch.equal(real["target_depth"], syn["target_depth"])
    assert torch.equal(real["target_semantics"], syn["target_semantics"])


def test_samples_without_lidar_are_refused(dataset, tmp_path):
    samples = [dataclasses.replace(s, lidarseg_path="") for s in load_infos(dataset.train_infos)]
    with pytest.raises(ValueError, match="lidar_targets needs every sample's lidar_path and lidarseg_path"):
        Occ3DNuScenes(dataset.root, samples, lidar_targets=True)
    with pytest.raises(TypeError, match="lidar_targets must be a bool"):
        Occ3DNuScenes(dataset.root, dataset.train_infos, lidar_targets="yes")


def test_config_takes_lidar_targets_for_nuscenes_only():
    cfg = load_config("tpvformer_occ3d_2d")
    assert cfg.data.lidar_targets and cfg.loss.targets_2d and not cfg.loss.voxel_losses
    assert load_config("tpvformer_occ3d_3d+2d").loss.voxel_losses
    with pytest.raises(ConfigError, match="data.lidar_targets"):
        load_config("tpvformer_occ3d_2d", ["data.format=kitti360", "data.grid=kitti360"])
    with pytest.raises(ConfigError, match="loss.targets_2d"):
        load_config("tpvformer_occ3d_2d", ["data.lidar_targets=false"])


def test_build_dataset_passes_the_flag(dataset):
    from gaussrender.train.builders import build_dataset

    cfg = load_config(
        "tpvformer_occ3d_2d",
        [
            f"data.root={dataset.root}",
            f"data.data_root={dataset.root}",
            f"data.train_infos={dataset.train_infos}",
            f"data.image_size=[{SIZE[0]},{SIZE[1]}]",
        ],
    )
    with_images = build_dataset(cfg.data, "train")
    assert "target_depth" in with_images[0] and "target_semantics" in with_images[0]
    labels_only = build_dataset(cfg.data, "train", load_images=False)  # the class-count pass
    assert "target_depth" not in labels_only[0]
    assert np.isfinite(with_images[0]["target_depth"].numpy()).all()
