"""Occ3D-nuScenes: labels.npz reader/writer and the dataset's cameras, images and origins."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from gaussrender import OCC3D_NUSCENES
from gaussrender.data import (
    CAMERA_NAMES,
    DataFileError,
    Occ3DNuScenes,
    Pose,
    collate,
    load_infos,
    read_occ3d_labels,
    write_infos_json,
    write_occ3d_sample,
)
from tests.data.synthetic import IMAGE_HW, K_SYNTH, YAW_DEG, random_labels, synthetic_scene, write_png
from tests.shared_data import OCC3D_DEMO

DEMO = OCC3D_DEMO
REAL_NPZ = DEMO / "3D_occupancy_data.npz"
REAL_PKL = DEMO / "world-nuscenes_mini_infos_val.pkl"
SHAPE = OCC3D_NUSCENES.shape


def _write(root, samples, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for s in samples:
        sem = random_labels(rng, SHAPE, 18, 17)
        lidar = rng.random(SHAPE) < 0.5
        cam = lidar & (rng.random(SHAPE) < 0.8)
        write_occ3d_sample(root, s.scene, s.token, sem, lidar, cam)
        out[s.token] = (sem, lidar, cam)
    return out


@pytest.mark.skipif(not REAL_NPZ.is_file(), reason=f"real Occ3D labels not found: {REAL_NPZ}")
def test_real_labels_have_documented_histogram():
    data = read_occ3d_labels(REAL_NPZ)
    values, counts = np.unique(data["semantics"], return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {
        2: 49,
        4: 455,
        5: 694,
        6: 35,
        11: 8275,
        12: 573,
        13: 1156,
        14: 4700,
        15: 8524,
        16: 6646,
        17: 608893,
    }
    assert int((data["semantics"] != 17).sum()) == 31107
    assert int(data["mask_lidar"].sum()) == 107649 and int(data["mask_camera"].sum()) == 100520
    assert data["mask_camera"].dtype == bool


def test_write_read_round_trip(tmp_path):
    (s,) = synthetic_scene("scene-0001", 1)
    sem, lidar, cam = _write(tmp_path, [s])[s.token]
    path = tmp_path / "gts" / "scene-0001" / s.token / "labels.npz"
    data = read_occ3d_labels(path)
    np.testing.assert_array_equal(data["semantics"], sem)
    np.testing.assert_array_equal(data["mask_lidar"], lidar)
    np.testing.assert_array_equal(data["mask_camera"], cam)
    with np.load(path) as raw:
        assert all(raw[k].dtype == np.uint8 for k in ("semantics", "mask_lidar", "mask_camera"))


def test_reader_names_file_and_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.npz"):
        read_occ3d_labels(tmp_path / "labels.npz")
    ok = np.zeros(SHAPE, np.uint8)
    np.savez(tmp_path / "a.npz", semantics=ok, mask_lidar=ok)
    with pytest.raises(DataFileError, match=r"a.npz: missing \['mask_camera'\]"):
        read_occ3d_labels(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", semantics=ok[:, :, :8], mask_lidar=ok, mask_camera=ok)
    with pytest.raises(ValueError, match=r"b.npz semantics: expected shape \(200, 200, 16\)"):
        read_occ3d_labels(tmp_path / "b.npz")
    bad = ok.copy()
    bad[0, 0, 0] = 40
    np.savez(tmp_path / "c.npz", semantics=bad, mask_lidar=ok, mask_camera=ok)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 18\).*40"):
        read_occ3d_labels(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", semantics=ok, mask_lidar=ok + 2, mask_camera=ok)
    with pytest.raises(ValueError, match="mask_lidar: mask values must be 0 or 1"):
        read_occ3d_labels(tmp_path / "d.npz")


def test_dataset_item_contract(tmp_path):
    samples = synthetic_scene("scene-0001", 3)
    written = _write(tmp_path, samples)
    infos = write_infos_json(tmp_path / "infos.json", samples)
    ds = Occ3DNuScenes(tmp_path, infos)
    item = ds[1]
    assert item["token"] == samples[1].token and item["scene"] == "scene-0001"
    assert item["camera_names"] == list(CAMERA_NAMES)
    assert item["labels"].dtype == torch.int64 and item["labels"].shape == SHAPE
    np.testing.assert_array_equal(item["labels"].numpy(), written[samples[1].token][0])
    assert item["mask_camera"].dtype == torch.bool
    assert item["intrinsics"].shape == (6, 3, 3) and item["intrinsics"].dtype == torch.float32
    assert item["cam_from_grid"].shape == (6, 4, 4) and item["cam_from_grid"].dtype == torch.float32
    assert "images" not in item
    # image paths stored with Windows separators under ./data/nuscenes resolve under the root
    assert item["image_paths"][0] == str(tmp_path / "samples" / "CAM_FRONT" / f"{samples[1].token}_CAM_FRONT.png")
    batch = collate([ds[0], ds[2]])
    assert batch["labels"].shape == (2, *SHAPE) and batch["cam_from_grid"].shape == (2, 6, 4, 4)
    assert batch["token"] == [samples[0].token, samples[2].token]


def test_point_ahead_of_each_camera_projects_to_principal_point(tmp_path):
    """Cameras at 1.5 m yawed per YAW_DEG: a point 10 m along the yaw lands on (cx, cy)."""
    samples = synthetic_scene("scene-0001", 1)
    _write(tmp_path, samples)
    item = Occ3DNuScenes(tmp_path, samples, with_origins=False)[0]
    for v, name in enumerate(CAMERA_NAMES):
        yaw = np.radians(YAW_DEG[name])
        p = torch.tensor([10 * np.cos(yaw), 10 * np.sin(yaw), 1.5, 1.0], dtype=torch.float32)
        cam = item["cam_from_grid"][v] @ p
        uv = (item["intrinsics"][v] @ cam[:3]) / cam[2]
        assert cam[2] == pytest.approx(10.0, abs=1e-4)
        np.testing.assert_allclose(uv[:2].numpy(), K_SYNTH[:2, 2], atol=1e-3)


def test_camera_timestamp_ego_pose_is_used(tmp_path):
    """The camera fired after the ego moved 0.5 m forward: a grid point looks 0.5 m closer."""
    (s,) = synthetic_scene("scene-0001", 1)
    moved = Pose((0.5, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0))
    s = replace(s, cameras={n: replace(c, ego2global=moved) for n, c in s.cameras.items()})
    _write(tmp_path, [s])
    item = Occ3DNuScenes(tmp_path, [s], with_origins=False)[0]
    cam = item["cam_from_grid"][0] @ torch.tensor([10.0, 0.0, 1.5, 1.0])
    assert cam[2] == pytest.approx(9.5, abs=1e-5)


@pytest.mark.skipif(not REAL_PKL.is_file(), reason=f"real nuScenes-mini infos not found: {REAL_PKL}")
def test_real_rig_points_ahead_project_inside_images(tmp_path):
    """Independent check: sensor2lidar (stored in the pkl) puts a point 10 m down each optical axis."""
    from gaussrender.data import safe_pickle_load

    samples = load_infos(REAL_PKL)
    raw = safe_pickle_load(REAL_PKL)["infos"][0]
    _write(tmp_path, samples[:1])
    item = Occ3DNuScenes(tmp_path, samples, with_origins=False)[0]
    lidar2ego = samples[0].lidar2ego.matrix()
    for v, name in enumerate(CAMERA_NAMES):
        r = np.asarray(raw["cams"][name]["sensor2lidar_rotation"])
        t = np.asarray(raw["cams"][name]["sensor2lidar_translation"])
        p_ego = lidar2ego @ np.r_[t + 10.0 * r[:, 2], 1.0]
        cam = item["cam_from_grid"][v].double() @ torch.from_numpy(p_ego)
        uv = (item["intrinsics"][v].double() @ cam[:3]) / cam[2]
        assert 9.9 < float(cam[2]) < 10.1
        assert 0 <= uv[0] < 1600 and 0 <= uv[1] < 900
        np.testing.assert_allclose(uv[:2].numpy(), samples[0].cameras[name].intrinsics[:2, 2], atol=2.0)


def test_images_load_resize_and_intrinsics_follow(tmp_path):
    samples = synthetic_scene("scene-0001", 1)
    _write(tmp_path, samples)
    pngs = {}
    for v, name in enumerate(CAMERA_NAMES):
        path = tmp_path / "samples" / name / f"{samples[0].token}_{name}.png"
        pngs[name] = write_png(path, seed=v)
    item = Occ3DNuScenes(tmp_path, samples, load_images=True, with_origins=False)[0]
    assert item["images"].shape == (6, 3, *IMAGE_HW) and item["images"].dtype == torch.float32
    np.testing.assert_allclose(item["images"][2].permute(1, 2, 0).numpy(), pngs["CAM_FRONT_LEFT"] / 255.0, atol=1e-6)
    np.testing.assert_allclose(item["intrinsics"][0].numpy(), K_SYNTH, atol=1e-5)

    half = Occ3DNuScenes(tmp_path, samples, load_images=True, image_size=(180, 320), with_origins=False)[0]
    assert half["images"].shape == (6, 3, 180, 320)
    np.testing.assert_allclose(half["intrinsics"][0].numpy(), [[200, 0, 160], [0, 200, 90], [0, 0, 1]], atol=1e-5)
    # without loading, intrinsics scale from the image file's own size (640 x 360 here) ...
    k = Occ3DNuScenes(tmp_path, samples, image_size=(180, 320), with_origins=False)[0]["intrinsics"][0]
    np.testing.assert_allclose(k.numpy(), [[200, 0, 160], [0, 200, 90], [0, 0, 1]], atol=1e-5)
    # ... or, with no file, from the stored nuScenes size 1600 x 900
    for name in CAMERA_NAMES:
        (tmp_path / "samples" / name / f"{samples[0].token}_{name}.png").unlink()
    k = Occ3DNuScenes(tmp_path, samples, image_size=(450, 800), with_origins=False)[0]["intrinsics"][0]
    np.testing.assert_allclose(k.numpy(), [[200, 0, 160], [0, 200, 90], [0, 0, 1]], atol=1e-5)


def test_missing_image_and_bad_size_are_named(tmp_path):
    samples = synthetic_scene("scene-0001", 1)
    _write(tmp_path, samples)
    with pytest.raises(ValueError, match=r"image_size must be \(H, W\) positive ints"):
        Occ3DNuScenes(tmp_path, samples, image_size=(450.0, 800))
    with pytest.raises(FileNotFoundError, match="CAM_FRONT.png"):
        Occ3DNuScenes(tmp_path, samples, load_images=True, with_origins=False)[0]


def test_origins_are_the_scene_lidar_positions(tmp_path):
    """Ego drives 2 m per frame along x; LiDAR sits at (1, 0, 1.8) in the ego frame."""
    samples = synthetic_scene("scene-0001", 5)
    _write(tmp_path, samples[2:3])
    origins = Occ3DNuScenes(tmp_path, samples)[2]["origins"]
    expected = [[2.0 * (j - 2) + 1.0, 0.0, 1.8] for j in range(5)]
    np.testing.assert_allclose(origins.numpy(), expected, atol=1e-5)


def test_split_by_scene_names_and_annotations(tmp_path):
    samples = synthetic_scene("scene-0001", 2) + synthetic_scene("scene-0002", 2)
    _write(tmp_path, samples)
    assert len(Occ3DNuScenes(tmp_path, samples, split=["scene-0002"])) == 2
    with pytest.raises(FileNotFoundError, match="annotations.json"):
        Occ3DNuScenes(tmp_path, samples, split="val")
    (tmp_path / "annotations.json").write_text('{"train_split": ["scene-0001"], "val_split": ["scene-0002"]}')
    ds = Occ3DNuScenes(tmp_path, samples, split="val")
    assert [s.token for s in ds.samples] == [s.token for s in samples[2:]]
    with pytest.raises(ValueError, match="no sample"):
        Occ3DNuScenes(tmp_path, samples, split=["scene-9999"])
