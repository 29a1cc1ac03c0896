"""Writer -> reader -> ``gaussrender eval`` for Occ3D-Waymo, OpenOcc, nuScenes-Occupancy and SemanticKITTI.

Known answers as in ``test_eval.py``: a prediction equal to the ground truth scores 1, and
relabelling every voxel of class X as Y gives IoU_X = 0 and IoU_Y = n_Y / (n_Y + n_X) over the
scored voxels, every other class 1; the mean follows each benchmark's convention.
"""

import json
from dataclasses import replace

import numpy as np
import pytest

from gaussrender import NUSCENES_OCCUPANCY, OCC3D_WAYMO, OPENOCC_NUSCENES, SEMANTICKITTI
from gaussrender.cli import main
from gaussrender.data import (
    write_infos_json,
    write_nuscenes_occupancy_sample,
    write_occ3d_waymo_sample,
    write_openocc_sample,
    write_semantickitti_sample,
)
from tests.data.synthetic import random_labels, synthetic_scene


def _save(pred_dir, token, array, key="semantics"):
    path = pred_dir / f"{token}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{key: array})


def _eval(tmp_path, name, *argv):
    out = tmp_path / f"{name}.json"
    assert main(["eval", *map(str, argv), "--out", str(out)]) == 0
    return json.loads(out.read_text())


def _relabel(labels, src, dst, ignore=255, empty=None):
    bad = labels.copy()
    if empty is not None:
        bad[bad == ignore] = empty
    bad[bad == src] = dst
    return bad


def test_occ3d_waymo(tmp_path, capsys):
    g = OCC3D_WAYMO
    rng = np.random.default_rng(0)
    gts = {}
    for scene, frame in (("000", "000"), ("001", "007")):
        sem = random_labels(rng, g.shape, 16, 15, p_occupied=0.1)
        lidar, camera, infov = (rng.random(g.shape) < p for p in (0.8, 0.6, 0.7))
        write_occ3d_waymo_sample(tmp_path / "gt" / "validation", scene, frame, sem, lidar, camera, infov)
        token = f"{scene}/{frame}"
        gts[token] = (sem, camera & infov)
        _save(tmp_path / "same", token, np.where(sem == 15, 23, sem))  # free as 23, as the release's files
        _save(tmp_path / "bad", token, _relabel(sem, 1, 2), key="pred")  # vehicle -> pedestrian
    r = _eval(tmp_path, "same", "--benchmark", "occ3d_waymo", "--gt", tmp_path / "gt", "--pred", tmp_path / "same")
    assert r["num_samples"] == 2 and r["mask_camera"] is True and "rayiou" not in r
    assert r["iou"] == pytest.approx(1.0) and r["miou"] == pytest.approx(1.0)
    assert list(r["per_class_iou"])[:3] == ["general_object", "vehicle", "pedestrian"]

    r = _eval(tmp_path, "bad", "--benchmark", "occ3d_waymo", "--gt", tmp_path / "gt", "--pred", tmp_path / "bad")
    n1 = sum(int(((s == 1) & m).sum()) for s, m in gts.values())
    n2 = sum(int(((s == 2) & m).sum()) for s, m in gts.values())
    assert r["per_class_iou"]["vehicle"] == 0.0
    assert r["per_class_iou"]["pedestrian"] == pytest.approx(n2 / (n1 + n2))
    assert r["miou"] == pytest.approx((13 + n2 / (n1 + n2)) / 15)  # NaN-mean over classes 0-14

    argv = ["--benchmark", "occ3d_waymo", "--gt", tmp_path / "gt", "--pred", tmp_path / "bad", "--no-mask-camera"]
    r = _eval(tmp_path, "all", *argv)
    n1 = sum(int((s == 1).sum()) for s, _ in gts.values())
    n2 = sum(int((s == 2).sum()) for s, _ in gts.values())
    assert r["mask_camera"] is False and r["per_class_iou"]["pedestrian"] == pytest.approx(n2 / (n1 + n2))

    code = main(
        ["eval", "--benchmark", "occ3d_waymo", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "same")]
        + ["--render-metrics"]
    )
    assert code == 2 and "no camera calibration" in capsys.readouterr().err


def test_openocc_with_rayiou(tmp_path):
    g = OPENOCC_NUSCENES
    samples = [s for i in range(2) for s in synthetic_scene(f"scene-{i:04d}", 1)]
    rng = np.random.default_rng(1)
    gts = {}
    for s in samples:
        sem = random_labels(rng, g.shape, 17, 16, p_occupied=0.05)
        write_openocc_sample(tmp_path / "openocc_v2", s.scene, s.token, sem)
        gts[s.token] = sem
        _save(tmp_path / "same", s.token, sem)
        _save(tmp_path / "bad", s.token, _relabel(sem, 0, 1))  # car -> truck
    infos = write_infos_json(tmp_path / "infos.json", samples)
    base = ["--benchmark", "openocc", "--gt", tmp_path / "openocc_v2", "--infos", infos]
    r = _eval(tmp_path, "same", *base, "--pred", tmp_path / "same")
    assert r["mask_camera"] is False
    for key in ("iou", "miou", "rayiou", "rayiou@1", "rayiou@2", "rayiou@4"):
        assert r[key] == pytest.approx(1.0), key
    r = _eval(tmp_path, "bad", *base, "--pred", tmp_path / "bad")
    n0 = sum(int((s == 0).sum()) for s in gts.values())
    n1 = sum(int((s == 1).sum()) for s in gts.values())
    assert r["per_class_iou"]["car"] == 0.0
    assert r["miou"] == pytest.approx((14 + n1 / (n0 + n1)) / 16)
    assert all(r["per_class_rayiou"]["car"][k] == 0.0 for k in ("rayiou@1", "rayiou@2", "rayiou@4"))


def test_nuscenes_occupancy(tmp_path):
    g = NUSCENES_OCCUPANCY
    samples = [replace(s, lidar_token=f"lidar-{i}") for i, s in enumerate(synthetic_scene("scene-0003", 2))]
    rng = np.random.default_rng(2)
    gts = {}
    for s in samples:
        sem = random_labels(rng, g.shape, 17, 0, p_occupied=0.003)
        sem[rng.random(g.shape) < 0.001] = 255  # noise
        write_nuscenes_occupancy_sample(tmp_path / "occ", s.scene_token, s.lidar_token, sem)
        gts[s.token] = sem
        _save(tmp_path / "same", s.token, np.where(sem == 255, 0, sem).astype(np.uint8))
        _save(tmp_path / "bad", s.token, _relabel(sem, 4, 3, empty=0))  # car -> bus
    infos = write_infos_json(tmp_path / "infos.json", samples)
    base = ["--benchmark", "nuscenes_occupancy", "--gt", tmp_path / "occ", "--infos", infos]
    r = _eval(tmp_path, "same", *base, "--pred", tmp_path / "same")
    assert r["num_samples"] == 2 and "rayiou" not in r  # off by default on this grid
    assert r["iou"] == pytest.approx(1.0) and r["miou"] == pytest.approx(1.0)
    r = _eval(tmp_path, "bad", *base, "--pred", tmp_path / "bad")
    n4 = sum(int((s == 4).sum()) for s in gts.values())
    n3 = sum(int((s == 3).sum()) for s in gts.values())
    assert r["per_class_iou"]["car"] == 0.0
    assert r["miou"] == pytest.approx((14 + n3 / (n3 + n4)) / 16)  # plain mean over classes 1-16


def test_semantickitti(tmp_path):
    g = SEMANTICKITTI
    rng = np.random.default_rng(3)
    gts = {}
    for frame in ("000000", "000005"):
        sem = random_labels(rng, g.shape, 20, 0, p_occupied=0.03)
        sem[rng.random(g.shape) < 0.05] = 255
        write_semantickitti_sample(tmp_path / "kitti", 8, frame, sem)
        token = f"08/{frame}"
        gts[token] = sem
        _save(tmp_path / "same", token, np.where(sem == 255, 0, sem).astype(np.uint8))
        _save(tmp_path / "bad", token, _relabel(sem, 1, 4, empty=0))  # car -> truck
    base = ["--benchmark", "semantickitti", "--gt", tmp_path / "kitti"]
    r = _eval(tmp_path, "same", *base, "--pred", tmp_path / "same")
    assert r["split"] == "val" and r["num_samples"] == 2
    assert r["iou"] == pytest.approx(1.0) and r["miou"] == pytest.approx(1.0)
    r = _eval(tmp_path, "bad", *base, "--pred", tmp_path / "bad")
    n1 = sum(int((s == 1).sum()) for s in gts.values())
    n4 = sum(int((s == 4).sum()) for s in gts.values())
    assert r["per_class_iou"]["car"] == 0.0
    assert r["per_class_iou"]["bicyclist"] == pytest.approx(1.0)
    assert r["miou"] == pytest.approx((17 + n4 / (n1 + n4)) / 19)

    # the official submission layout: sequences/08/predictions/<frame>.label, raw uint16 ids
    inverse = np.array([0, 10, 11, 15, 18, 20, 30, 31, 32, 40, 44, 48, 49, 50, 51, 70, 71, 72, 80, 81], np.uint16)
    for token, sem in gts.items():
        seq, frame = token.split("/")
        folder = tmp_path / "official" / "sequences" / seq / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        inverse[_relabel(sem, 1, 4, empty=0)].astype("<u2").tofile(folder / f"{frame}.label")
    r2 = _eval(tmp_path, "official", *base, "--pred", tmp_path / "official")
    assert r2["miou"] == pytest.approx(r["miou"]) and r2["per_class_iou"] == r["per_class_iou"]
