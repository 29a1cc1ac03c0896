"""The nuScenes readers' LiDAR 2D targets (``lidar_targets=True``): the scan z-buffered into the
render cameras, for real-data training from 2D targets (configs ``*_2d`` / ``*_3d+2d``)."""

import dataclasses
import shutil

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


@pytest.fixture(scope="module")
def one_scene(tmp_path_factory):
    """Three synthetic samples made one scene of three frames (timestamps in order)."""
    root = tmp_path_factory.mktemp("lidar_scene")
    ds = make_dataset(root, 3, num_val_scenes=0, seed=4, image_size=SIZE, camera_stride=32, lidar=True)
    samples = []
    for i, s in enumerate(load_infos(ds.train_infos)):
        # the Occ3D labels live under gts/<scene>/<token>/: the new scene name needs them there
        target = ds.root / "gts" / "scene-x" / s.token
        target.mkdir(parents=True)
        shutil.copy(ds.root / "gts" / s.scene / s.token / "labels.npz", target / "labels.npz")
        samples.append(dataclasses.replace(s, scene="scene-x", timestamp=1_000_000 * (i + 1)))
    return ds, samples


def test_adjacent_frames_add_their_targets_in_their_own_cameras(one_scene):
    from gaussrender.data import adjacent_cam_from_ego

    ds, samples = one_scene
    reader = Occ3DNuScenes(ds.root, samples, lidar_targets=True, adjacent_frames=(-1, 1), with_origins=False)
    own = Occ3DNuScenes(ds.root, samples, lidar_targets=True, with_origins=False)
    item, alone = reader[1], own[1]
    assert item["target_depth"].shape == (18, *SIZE) and item["target_cam_from_grid"].shape == (18, 4, 4)
    # the sample's own views first, unchanged
    assert torch.equal(item["target_depth"][:6], alone["target_depth"])
    torch.testing.assert_close(item["target_cam_from_grid"][:6], alone["cam_from_grid"])
    # then frame t-1 and t+1: their scans in their own cameras, those cameras against grid t
    for block, other in ((1, samples[0]), (2, samples[2])):
        views = slice(6 * block, 6 * block + 6)
        assert torch.equal(item["target_depth"][views], own[samples.index(other)]["target_depth"])
        chain = adjacent_cam_from_ego(samples[1], other)
        torch.testing.assert_close(item["target_cam_from_grid"][views], torch.from_numpy(chain).float())
        torch.testing.assert_close(item["target_intrinsics"][views], own[samples.index(other)]["render_intrinsics"])
    # the first frame has no predecessor: empty targets (they weigh nothing) in its own cameras
    first = reader[0]
    assert not bool((first["target_depth"][6:12] > 0).any())
    assert bool((first["target_semantics"][6:12] == 255).all())
    torch.testing.assert_close(first["target_cam_from_grid"][6:12], first["cam_from_grid"])


def test_adjacent_frames_reach_the_loss(one_scene):
    from gaussrender.data import collate

    ds, samples = one_scene
    reader = Occ3DNuScenes(ds.root, samples, lidar_targets=True, adjacent_frames=(1,), with_origins=False)
    batch = collate([reader[1]])
    size = tuple(int(v) for v in batch["render_image_size"][0])
    # a confident prediction (few visible voxels): the test checks wiring, not speed
    onehot = torch.nn.functional.one_hot(batch["labels"].long().clamp(max=17), 18).permute(0, 4, 1, 2, 3)
    logits = (8.0 * onehot.float()).requires_grad_()
    out = gr.GaussRenderLoss(gr.OCC3D_NUSCENES, views=("bev",), bev_size=16)(
        logits,
        None,
        batch["render_intrinsics"],
        batch["cam_from_grid"],
        size,
        target_depth=batch["target_depth"],
        target_semantics=batch["target_semantics"].long(),
        target_intrinsics=batch["target_intrinsics"],
        target_cam_from_grid=batch["target_cam_from_grid"],
    )
    out["loss"].backward()
    assert float(out["target_depth"].detach()) > 0 and torch.isfinite(logits.grad).all()


def test_adjacent_frames_refused_without_lidar_targets(one_scene):
    ds, samples = one_scene
    with pytest.raises(ValueError, match="needs lidar_targets=True"):
        Occ3DNuScenes(ds.root, samples, adjacent_frames=(1,))
    with pytest.raises(ValueError, match="non-zero int offsets"):
        Occ3DNuScenes(ds.root, samples, lidar_targets=True, adjacent_frames=(0,))
    with pytest.raises(ConfigError, match="data.adjacent_frames"):
        load_config("tpvformer_occ3d_2d", ["data.lidar_targets=false", "data.adjacent_frames=[1]"])
