"""`gaussrender eval` end to end on files written in each benchmark's layout.

Known answers: a prediction equal to the ground truth scores 100 everywhere; relabelling
every voxel of one class X as another class Y gives IoU_X = 0, IoU_Y = n_Y / (n_Y + n_X)
(voxel counts in the scored region) and 1 for every other class, on voxels and on rays.
``--render-metrics`` is checked against the metric run directly on the same cameras.
"""

import json

import numpy as np
import pytest

from gaussrender import OCC3D_NUSCENES, SSCBENCH_KITTI360, SURROUNDOCC_NUSCENES
from gaussrender.cli import main
from gaussrender.data import (
    CAMERA_NAMES,
    write_infos_json,
    write_kitti360_sample,
    write_occ3d_sample,
    write_surroundocc_sample,
)
from gaussrender.data.nuscenes import resolve_data_path
from tests.data.synthetic import IMAGE_HW, random_labels, synthetic_scene, write_png, write_tables
from tests.shared_data import OCC3D_DEMO

CAR, BUS = 4, 3  # shared by the nuScenes grids and KITTI-360's car(1)/truck(4) below


def _occ3d(tmp_path, n_scenes=2):
    # one sample per scene: one RayIoU origin per sample keeps the ray casting cheap
    samples = [s for i in range(n_scenes) for s in synthetic_scene(f"scene-{i:04d}", 1)]
    rng = np.random.default_rng(0)
    gts = {}
    for s in samples:
        sem = random_labels(rng, OCC3D_NUSCENES.shape, 18, 17, p_occupied=0.05)
        cam = rng.random(OCC3D_NUSCENES.shape) < 0.7
        write_occ3d_sample(tmp_path / "gt", s.scene, s.token, sem, cam | (rng.random(cam.shape) < 0.5), cam)
        gts[s.token] = (sem, cam)
    infos = write_infos_json(tmp_path / "infos.json", samples)
    return samples, gts, infos


def _save(pred_dir, token, array, key="semantics"):
    path = pred_dir / f"{token}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{key: array})


def _run(*argv):
    return main(["eval", *map(str, argv)])


def test_occ3d_identity_scores_100_and_corruption_gives_known_numbers(tmp_path, capsys):
    samples, gts, infos = _occ3d(tmp_path)
    for s in samples:
        _save(tmp_path / "same", s.token, gts[s.token][0])
        corrupted = gts[s.token][0].copy()
        corrupted[corrupted == CAR] = BUS
        _save(tmp_path / "bad", s.token, corrupted, key="pred")

    out = tmp_path / "same.json"
    assert (
        _run(
            "--benchmark", "occ3d", "--gt", tmp_path / "gt", "--infos", infos, "--pred", tmp_path / "same", "--out", out
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["num_samples"] == 2 and r["mask_camera"] is True
    for key in ("iou", "miou", "rayiou", "rayiou@1", "rayiou@2", "rayiou@4"):
        assert r[key] == pytest.approx(1.0), key
    printed = capsys.readouterr().out
    assert "driveable_surface" in printed and "mIoU: 100.00" in printed and "RayIoU: 100.00" in printed

    # two worker processes, one sample each: their merged counts must give the known numbers
    out = tmp_path / "bad.json"
    argv = ["--benchmark", "occ3d", "--gt", tmp_path / "gt", "--infos", infos, "--pred", tmp_path / "bad"]
    assert _run(*argv, "--workers", 2, "--out", out) == 0
    r = json.loads(out.read_text())
    assert r["workers"] == 2
    n_car = sum(int(((sem == CAR) & cam).sum()) for sem, cam in gts.values())
    n_bus = sum(int(((sem == BUS) & cam).sum()) for sem, cam in gts.values())
    assert r["per_class_iou"]["car"] == 0.0
    assert r["per_class_iou"]["bus"] == pytest.approx(n_bus / (n_bus + n_car))
    assert r["miou"] == pytest.approx((15 + n_bus / (n_bus + n_car)) / 17)
    assert r["iou"] == pytest.approx(1.0)  # occupancy untouched
    ray = r["per_class_rayiou"]
    assert all(ray["car"][k] == 0.0 for k in ("rayiou@1", "rayiou@2", "rayiou@4"))
    assert 0.0 < ray["bus"]["rayiou@1"] < 1.0
    untouched = [c for c in ray if c not in ("car", "bus") and ray[c]["rayiou@1"] is not None]
    assert untouched and all(ray[c]["rayiou@4"] == pytest.approx(1.0) for c in untouched)


def test_occ3d_without_mask_counts_every_voxel(tmp_path):
    samples, gts, infos = _occ3d(tmp_path)
    for s in samples:
        corrupted = gts[s.token][0].copy()
        corrupted[corrupted == CAR] = BUS
        _save(tmp_path / "bad", s.token, corrupted)
    out = tmp_path / "r.json"
    argv = ["--benchmark", "occ3d", "--gt", tmp_path / "gt", "--infos", infos, "--pred", tmp_path / "bad"]
    assert _run(*argv, "--no-mask-camera", "--no-rayiou", "--out", out) == 0
    r = json.loads(out.read_text())
    n_car = sum(int((sem == CAR).sum()) for sem, _ in gts.values())
    n_bus = sum(int((sem == BUS).sum()) for sem, _ in gts.values())
    assert r["mask_camera"] is False and "rayiou" not in r
    assert r["per_class_iou"]["bus"] == pytest.approx(n_bus / (n_bus + n_car))


def test_official_tables_instead_of_an_info_file(tmp_path):
    samples = synthetic_scene("scene-0042", 2)
    rng = np.random.default_rng(0)
    for s in samples:
        sem = random_labels(rng, OCC3D_NUSCENES.shape, 18, 17, p_occupied=0.05)
        write_occ3d_sample(tmp_path / "gt", s.scene, s.token, sem, np.ones(sem.shape, bool), np.ones(sem.shape, bool))
        _save(tmp_path / "pred", s.token, sem)
    write_tables(tmp_path / "nuscenes", samples, version="v1.0-mini", scene_name="scene-0042")
    out = tmp_path / "r.json"
    argv = ["--benchmark", "occ3d", "--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "--no-rayiou"]
    assert _run(*argv, "--infos", tmp_path / "nuscenes", "--nuscenes-version", "v1.0-mini", "--out", out) == 0
    r = json.loads(out.read_text())
    assert r["num_samples"] == 2 and r["miou"] == pytest.approx(1.0)


def test_missing_predictions_are_listed(tmp_path, capsys):
    samples, gts, infos = _occ3d(tmp_path, n_scenes=3)
    _save(tmp_path / "pred", samples[1].token, gts[samples[1].token][0])
    code = _run("--benchmark", "occ3d", "--gt", tmp_path / "gt", "--infos", infos, "--pred", tmp_path / "pred")
    err = capsys.readouterr().err
    assert code == 2
    assert "2 of 3" in err and samples[0].token in err and samples[2].token in err


def test_bad_prediction_and_arguments_are_named(tmp_path, capsys):
    samples, gts, infos = _occ3d(tmp_path, n_scenes=1)
    _save(tmp_path / "pred", samples[0].token, gts[samples[0].token][0][:, :, :8])
    code = _run(
        "--benchmark", "occ3d", "--gt", tmp_path / "gt", "--infos", infos, "--pred", tmp_path / "pred", "--no-rayiou"
    )
    assert code == 2
    assert (
        f"{samples[0].token}.npz semantics: expected shape (200, 200, 16), got (200, 200, 8)" in capsys.readouterr().err
    )
    assert _run("--benchmark", "occ3d", "--gt", tmp_path / "gt", "--pred", tmp_path / "pred") == 2
    assert "--infos is required" in capsys.readouterr().err
    code = _run(
        "--benchmark",
        "surroundocc",
        "--gt",
        tmp_path / "gt",
        "--infos",
        infos,
        "--pred",
        tmp_path / "pred",
        "--mask-camera",
    )
    assert code == 2 and "no mask_camera" in capsys.readouterr().err


def test_surroundocc_identity_and_corruption(tmp_path):
    (s,) = synthetic_scene("scene-0001", 1)
    rng = np.random.default_rng(0)
    gt = random_labels(rng, SURROUNDOCC_NUSCENES.shape, 17, 0, p_occupied=0.05)
    gt[rng.random(gt.shape) < 0.01] = 255
    write_surroundocc_sample(tmp_path / "gt", s.lidar_path, gt)
    infos = write_infos_json(tmp_path / "infos.json", [s])
    same = np.where(gt == 255, 0, gt)  # ignore voxels never count, any label will do
    _save(tmp_path / "same", s.token, same)
    out = tmp_path / "same.json"
    assert (
        _run(
            "--benchmark",
            "surroundocc",
            "--gt",
            tmp_path / "gt",
            "--infos",
            infos,
            "--pred",
            tmp_path / "same",
            "--out",
            out,
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["mask_camera"] is False
    assert r["iou"] == pytest.approx(1.0) and r["miou"] == pytest.approx(1.0) and r["rayiou"] == pytest.approx(1.0)

    bad = same.copy()
    bad[bad == CAR] = BUS
    _save(tmp_path / "bad", s.token, bad)
    out = tmp_path / "bad.json"
    assert (
        _run(
            "--benchmark",
            "surroundocc",
            "--gt",
            tmp_path / "gt",
            "--infos",
            infos,
            "--pred",
            tmp_path / "bad",
            "--no-rayiou",
            "--out",
            out,
        )
        == 0
    )
    r = json.loads(out.read_text())
    n_car, n_bus = int((gt == CAR).sum()), int((gt == BUS).sum())
    assert r["miou"] == pytest.approx((14 + n_bus / (n_bus + n_car)) / 16)


def test_kitti360_identity_and_corruption(tmp_path):
    rng = np.random.default_rng(0)
    gts = {}
    for frame in ("000000", "000005"):
        gt = random_labels(rng, SSCBENCH_KITTI360.shape, 19, 0, p_occupied=0.02)
        gt[rng.random(gt.shape) < 0.05] = 255
        write_kitti360_sample(tmp_path / "gt", 6, frame, gt)
        token = f"2013_05_28_drive_0006_sync/{frame}"
        gts[token] = gt
        _save(tmp_path / "same", token, np.where(gt == 255, 0, gt).astype(np.uint8))
        bad = np.where(gt == 255, 0, gt).astype(np.uint8)
        bad[bad == 1] = 4  # car -> truck
        _save(tmp_path / "bad", token, bad)
    out = tmp_path / "same.json"
    assert _run("--benchmark", "kitti360", "--gt", tmp_path / "gt", "--pred", tmp_path / "same", "--out", out) == 0
    r = json.loads(out.read_text())
    assert r["split"] == "val" and r["num_samples"] == 2 and "rayiou" not in r
    assert r["iou"] == pytest.approx(1.0) and r["miou"] == pytest.approx(1.0, abs=1e-6)

    out = tmp_path / "bad.json"
    assert (
        _run(
            "--benchmark",
            "kitti360",
            "--gt",
            tmp_path / "gt",
            "--pred",
            tmp_path / "bad",
            "--split",
            "val",
            "--out",
            out,
        )
        == 0
    )
    r = json.loads(out.read_text())
    n_car = sum(int((g == 1).sum()) for g in gts.values())
    n_truck = sum(int((g == 4).sum()) for g in gts.values())
    assert r["per_class_iou"]["car"] == 0.0
    assert r["per_class_iou"]["truck"] == pytest.approx(n_truck / (n_truck + n_car), rel=1e-6)
    assert r["miou"] == pytest.approx((16 + n_truck / (n_truck + n_car)) / 18, rel=1e-6)


# --------------------------------------------------------------------- --render-metrics
REAL = OCC3D_DEMO


def _direct_render_metrics(sample, labels, pred, image_size, scale, convention="clean"):
    """The rendered-view metrics of one sample computed here, without the command."""
    import torch

    from gaussrender.data.nuscenes import cam_from_ego
    from gaussrender.metrics import RenderedViewMetrics

    k = torch.from_numpy(np.stack([sample.cameras[n].intrinsics for n in CAMERA_NAMES])).float()
    pose = torch.from_numpy(cam_from_ego(sample, CAMERA_NAMES)).float()  # Occ3D: grid frame = ego frame
    m = RenderedViewMetrics(OCC3D_NUSCENES, convention=convention, image_scale=scale)
    m.update(
        torch.from_numpy(pred.astype(np.int64))[None],
        torch.from_numpy(labels.astype(np.int64))[None],
        k[None],
        pose[None],
        image_size,
    )
    return m.compute()


def test_render_metrics_identity_corruption_and_image_size_from_the_files(tmp_path, capsys):
    (s,) = synthetic_scene("scene-0007", 1)
    rng = np.random.default_rng(1)
    sem = random_labels(rng, OCC3D_NUSCENES.shape, 18, 17, p_occupied=0.02)
    write_occ3d_sample(tmp_path / "gt", s.scene, s.token, sem, np.ones(sem.shape, bool), np.ones(sem.shape, bool))
    for v, name in enumerate(CAMERA_NAMES):  # the images' headers give their size (360x640, not 900x1600)
        write_png(resolve_data_path(s.cameras[name].image_path, tmp_path / "gt"), seed=v)
    infos = write_infos_json(tmp_path / "infos.json", [s])
    bad = sem.copy()
    bad[bad == CAR] = BUS
    _save(tmp_path / "same", s.token, sem)
    _save(tmp_path / "bad", s.token, bad)
    argv = [
        "--benchmark",
        "occ3d",
        "--gt",
        tmp_path / "gt",
        "--infos",
        infos,
        "--no-rayiou",
        "--render-metrics",
        "--render-scale",
        0.1,
    ]

    out = tmp_path / "same.json"
    assert _run(*argv, "--pred", tmp_path / "same", "--out", out) == 0
    r = json.loads(out.read_text())
    for key in ("image_iou", "image_miou", "bev_iou", "bev_miou"):
        assert r[key] == pytest.approx(1.0), key
    assert r["depth_l1"] == 0.0 and r["bev_depth_l1"] == 0.0
    assert r["render_metrics"] == {
        "convention": "clean",
        "prediction_rule": "labels",  # label files: one-hot
        "image_scale": 0.1,
        "bev_size": 40,
    }
    printed = capsys.readouterr().out
    assert "img IoU" in printed and "BEV IoU" in printed and "rendered views" in printed

    out = tmp_path / "bad.json"
    assert _run(*argv, "--pred", tmp_path / "bad", "--out", out, "--render-convention", "release") == 0
    r = json.loads(out.read_text())
    expected = _direct_render_metrics(s, sem, bad, IMAGE_HW, 0.1, "release")
    for key in ("image_iou", "image_miou", "depth_l1", "bev_iou", "bev_miou", "bev_depth_l1"):
        assert r[key] == pytest.approx(float(expected[key]), rel=1e-9), key
    assert r["image_per_class_iou"]["car"] == 0.0 and r["bev_per_class_iou"]["car"] == 0.0
    # the voxels' geometry is untouched, but a pixel's argmax is not geometric: where car and
    # bus splats share a pixel with the background, merging them can outweigh "empty"
    assert 0.99 < r["image_iou"] <= 1.0

    assert _run(*argv[:-1], 1.5, "--pred", tmp_path / "same") == 2
    assert "--render-scale" in capsys.readouterr().err


@pytest.mark.skipif(
    not (REAL / "3D_occupancy_data.npz").is_file(), reason=f"shared real Occ3D frame not found in {REAL}"
)
def test_render_metrics_on_the_real_frame(tmp_path, capsys):
    from gaussrender.data import load_infos

    s = load_infos(REAL / "nuscenes_mini_val_calib.json")[0]  # a real nuScenes rig (see PROVENANCE.md)
    with np.load(REAL / "3D_occupancy_data.npz") as data:
        sem, lidar, cam = (data[k] for k in ("semantics", "mask_lidar", "mask_camera"))
    write_occ3d_sample(tmp_path / "gt", s.scene, s.token, sem, lidar.astype(bool), cam.astype(bool))
    infos = write_infos_json(tmp_path / "infos.json", [s])
    shifted = np.full_like(sem, 17)
    shifted[1:] = sem[:-1]  # everything one voxel (0.4 m) further forward
    _save(tmp_path / "same", s.token, sem)
    _save(tmp_path / "shifted", s.token, shifted)
    argv = [
        "--benchmark",
        "occ3d",
        "--gt",
        tmp_path / "gt",
        "--infos",
        infos,
        "--no-rayiou",
        "--render-metrics",
        "--render-scale",
        0.05,
    ]

    out = tmp_path / "same.json"
    assert _run(*argv, "--pred", tmp_path / "same", "--out", out) == 0
    r = json.loads(out.read_text())
    assert r["image_miou"] == pytest.approx(1.0) and r["bev_miou"] == pytest.approx(1.0)
    assert r["depth_l1"] == 0.0 and r["bev_depth_l1"] == 0.0
    out = tmp_path / "shifted.json"
    assert _run(*argv, "--pred", tmp_path / "shifted", "--out", out) == 0
    r = json.loads(out.read_text())
    assert 0.0 < r["image_miou"] < 1.0 and 0.0 < r["bev_miou"] < 1.0 and r["depth_l1"] > 0.0
    expected = _direct_render_metrics(s, sem, shifted, (900, 1600), 0.05)
    assert r["image_miou"] == pytest.approx(float(expected["image_miou"]), rel=1e-9)
    assert r["depth_l1"] == pytest.approx(float(expected["depth_l1"]), rel=1e-9)
    printed = capsys.readouterr().out
    print(printed)  # the per-class table, for the log
    assert "driveable_surface" in printed and "cameras  IoU" in printed


@pytest.mark.parametrize("command", ["eval", "view"])
@pytest.mark.parametrize(
    "wrong", ["surroundocc", "kitti360", "openocc", "nuscenes_occupancy", "semantickitti", "occ3d_waymo"]
)
def test_another_benchmarks_ground_truth_is_one_named_line(tmp_path, capsys, command, wrong):
    # the case: --benchmark surroundocc on Occ3D data gave a FileNotFoundError traceback
    if command == "view" and wrong == "occ3d_waymo":
        pytest.skip("view has no occ3d_waymo (its reader has no cameras)")
    samples, gts, infos = _occ3d(tmp_path, n_scenes=1)
    _save(tmp_path / "pred", samples[0].token, gts[samples[0].token][0])
    argv = [command, "--benchmark", wrong, "--gt", tmp_path / "gt", "--pred", tmp_path / "pred"]
    code = main([*map(str, argv), "--infos", str(infos)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"gaussrender {command}: error: --benchmark {wrong} expects"), err
    assert "use --benchmark occ3d" in err[-1] and "Traceback" not in "\n".join(err)


def test_a_missing_label_file_later_in_the_split_is_named(tmp_path, capsys):
    samples, gts, infos = _occ3d(tmp_path, n_scenes=2)
    for s in samples:
        _save(tmp_path / "pred", s.token, gts[s.token][0])
    label = next((tmp_path / "gt" / "gts" / samples[1].scene).rglob("labels.npz"))
    label.unlink()
    code = _run(
        "--benchmark", "occ3d", "--gt", tmp_path / "gt", "--infos", infos, "--pred", tmp_path / "pred", "--no-rayiou"
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "error:" in err[-1] and "labels.npz" in err[-1]


@pytest.mark.skipif(not OCC3D_DEMO.is_dir(), reason=f"real Occ3D frame not found in {OCC3D_DEMO}")
def test_the_docs_evaluation_set_builds_and_scores(tmp_path, capsys):
    # docs/data_and_eval.md builds its timing set in a python block: it runs as written
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "data_and_eval.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "FRAME, OUT, N" in b]
    line = 'FRAME, OUT, N = Path("occupancy_vis_demo"), Path("/tmp/evalbench"), 8'
    assert line in block
    code = block.replace(line, f"FRAME, OUT, N = Path({str(OCC3D_DEMO)!r}), Path({str(tmp_path)!r}), 2")
    exec(code, {})
    out = tmp_path / "r.json"
    argv = ["--benchmark", "occ3d", "--gt", tmp_path / "gt", "--infos", tmp_path / "infos.json"]
    assert _run(*argv, "--pred", tmp_path / "pred", "--no-rayiou", "--out", out) == 0
    r = json.loads(out.read_text())
    assert r["num_samples"] == 2 and 0 < r["miou"] < 1  # shifted by one voxel: imperfect
