"""`gaussrender view` on files in the Occ3D layout: the promised pictures exist with the right
sizes, and the printed numbers are the sample's metrics computed here, voxel IoU also by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from gaussrender import OCC3D_NUSCENES, degrade, make_scene
from gaussrender.cli import main
from gaussrender.data import CAMERA_NAMES, write_infos_json, write_occ3d_sample
from gaussrender.viz import comparison_rows, palette, tile_images
from tests.data.synthetic import synthetic_scene
from tests.shared_data import OCC3D_DEMO

GRID = OCC3D_NUSCENES
REAL = OCC3D_DEMO
TINY = ["--render-scale", "0.1", "--frames", "2"]  # cameras 160x90 (of 1600x900), BEV metric 40x40, picture 90x90


def _dataset(tmp_path, samples, labels, masks, preds):
    for s, sem, cam, pred in zip(samples, labels, masks, preds):
        write_occ3d_sample(tmp_path / "gt", s.scene, s.token, sem, np.ones(sem.shape, bool), cam)
        (tmp_path / "pred").mkdir(exist_ok=True)
        np.savez_compressed(tmp_path / "pred" / f"{s.token}.npz", semantics=pred.astype(np.uint8))
    return write_infos_json(tmp_path / "infos.json", samples)


def _printed(stdout: str) -> dict[str, float]:
    voxels = re.search(r"^voxels.*: IoU:\s+(\S+)\s+mIoU:\s+(\S+)$", stdout, flags=re.M)
    cams = re.search(r"^  cameras  IoU:\s+(\S+)\s+mIoU:\s+(\S+)\s+depth L1: (\S+) m$", stdout, flags=re.M)
    bev = re.search(r"^  BEV      IoU:\s+(\S+)\s+mIoU:\s+(\S+)\s+depth L1: (\S+) m$", stdout, flags=re.M)
    assert voxels and cams and bev, stdout
    names = ["iou", "miou", "image_iou", "image_miou", "depth_l1", "bev_iou", "bev_miou", "bev_depth_l1"]
    values = [float(x) for x in voxels.groups() + cams.groups() + bev.groups()]
    return dict(zip(names, values))


def _expected(sample, sem, pred, mask, scale=None, image_size=(900, 1600)):
    """The sample's metrics computed here: voxel IoU by hand (float64), the rest by the metrics
    (the rendered views only with a ``scale``)."""
    from gaussrender.data.nuscenes import cam_from_ego
    from gaussrender.metrics import OccupancyMetrics, RenderedViewMetrics

    occ_gt, occ_pred = sem != GRID.empty_index, pred != GRID.empty_index
    tp = np.float64((occ_gt & occ_pred & mask).sum())
    iou = tp / ((occ_gt | occ_pred) & mask).sum()
    p, t = torch.from_numpy(pred.astype(np.int64))[None], torch.from_numpy(sem.astype(np.int64))[None]
    voxel = OccupancyMetrics(GRID)
    voxel.update(p, t, torch.from_numpy(mask)[None])
    v = voxel.compute()
    assert float(v["iou"]) == pytest.approx(iou, rel=1e-12)
    out = {"iou": 100 * iou, "miou": 100 * float(v["miou"])}
    if scale is None:
        return out
    k = torch.from_numpy(np.stack([sample.cameras[n].intrinsics for n in CAMERA_NAMES])).float()
    pose = torch.from_numpy(cam_from_ego(sample, CAMERA_NAMES)).float()  # Occ3D: grid frame = ego frame
    rendered = RenderedViewMetrics(GRID, image_scale=scale)
    rendered.update(p, t, k[None], pose[None], image_size)
    r = rendered.compute()
    for key in ("image_iou", "image_miou", "bev_iou", "bev_miou"):
        out[key] = 100 * float(r[key])
    out["depth_l1"], out["bev_depth_l1"] = float(r["depth_l1"]), float(r["bev_depth_l1"])
    return out


def _small_scene() -> np.ndarray:
    """A procedural scene kept within 12 m of the ego: few Gaussians, fast renders."""
    sem = make_scene(0, GRID).semantics.numpy().astype(np.uint8)
    keep = np.zeros(GRID.shape, bool)
    keep[70:130, 70:130] = True
    return np.where(keep, sem, GRID.empty_index).astype(np.uint8)


def _panels(h: int, w: int, title: str, depth_range=(0.0, 50.0)) -> tuple[int, ...]:
    """Shape of a view's picture: ground truth | prediction | error, semantics above depth."""
    blank = (np.zeros((h, w, GRID.num_classes), np.float32), np.zeros((h, w), np.float32))
    rows, captions = comparison_rows(blank, blank, palette(GRID), depth_range, title)
    return tile_images(rows, captions).shape


def test_view_writes_every_view_and_prints_the_sample_metrics(tmp_path, capsys):
    samples = synthetic_scene("scene-0003", 2)
    scene = _small_scene()
    labels = [scene, scene[::-1].copy()]  # the second one mirrored front to back
    preds = [degrade(torch.from_numpy(sem.astype(np.int64)), i, GRID).argmax(0).numpy() for i, sem in enumerate(labels)]
    rng = np.random.default_rng(0)
    masks = [rng.random(GRID.shape) < 0.8 for _ in labels]
    infos = _dataset(tmp_path, samples, labels, masks, preds)
    base = [
        "view",
        "--benchmark",
        "occ3d",
        "--gt",
        str(tmp_path / "gt"),
        "--infos",
        str(infos),
        "--pred",
        str(tmp_path / "pred"),
    ]

    # the second sample, by token
    out = tmp_path / "view"
    assert main([*base, "--token", samples[1].token, "--out", str(out), *TINY]) == 0
    stdout = capsys.readouterr().out
    names = {f"{c}.png" for c in CAMERA_NAMES} | {"bev.png", "overview.png", "orbit.gif"}
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for cam in CAMERA_NAMES:
        with Image.open(out / f"{cam}.png") as im:
            assert (im.height, im.width, 3) == _panels(90, 160, cam)
    with Image.open(out / "CAM_FRONT.png") as im:
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 20  # a picture, not a fill
    with Image.open(out / "bev.png") as im:
        bev_range = (GRID.extent[0] - GRID.range_max[2], GRID.extent[0] - GRID.range_min[2])
        assert (im.height, im.width, 3) == _panels(90, 90, "BEV", bev_range)
    with Image.open(out / "orbit.gif") as im:
        blank = np.zeros((90, 160, 3), np.uint8)
        frame = tile_images([[blank, blank]], [["ground truth", "prediction"]]).shape
        assert im.n_frames == 2 and (im.height, im.width, 3) == frame
    assert f"sample {samples[1].token}:" in stdout and "(inside mask_camera)" in stdout

    printed = _printed(stdout)
    expected = _expected(samples[1], labels[1], preds[1], masks[1], 0.1)
    for key, value in expected.items():
        tol = 0.005 if key.endswith("iou") else 0.0005  # printed: percent with 2 decimals, metres with 3
        assert printed[key] == pytest.approx(value, abs=tol), key
    assert 0 < printed["iou"] < 100 and 0 < printed["miou"] < 100  # degraded: neither perfect nor empty

    # default: the first sample; without the mask every voxel counts
    assert (
        main([*base, "--out", str(tmp_path / "first"), "--no-mask-camera", "--render-scale", "0.05", "--frames", "1"])
        == 0
    )
    stdout = capsys.readouterr().out
    assert f"sample {samples[0].token}:" in stdout and "mask_camera" not in stdout
    everywhere = np.ones(GRID.shape, bool)
    expected = _expected(samples[0], labels[0], preds[0], everywhere)
    assert _printed(stdout)["iou"] == pytest.approx(expected["iou"], abs=0.005)
    assert _printed(stdout)["miou"] == pytest.approx(expected["miou"], abs=0.005)


def test_unknown_token_and_missing_prediction_are_named(tmp_path, capsys):
    samples = synthetic_scene("scene-0004", 2)
    sem = np.full(GRID.shape, GRID.empty_index, np.uint8)
    sem[100:104, 98:102, 2:6] = GRID.class_names.index("car")
    infos = _dataset(tmp_path, samples, [sem, sem], [np.ones(GRID.shape, bool)] * 2, [sem, sem])
    base = [
        "view",
        "--benchmark",
        "occ3d",
        "--gt",
        str(tmp_path / "gt"),
        "--infos",
        str(infos),
        "--pred",
        str(tmp_path / "pred"),
        "--out",
        str(tmp_path / "o"),
    ]
    for token in ("nope", "../../etc/passwd"):  # never a path: checked against the info file first
        assert main([*base, "--token", token]) == 2
        err = capsys.readouterr().err
        assert f"--token {token!r} is not a sample" in err and samples[0].token in err
    (tmp_path / "pred" / f"{samples[1].token}.npz").unlink()
    assert main([*base, "--token", samples[1].token]) == 2
    assert f"{samples[1].token}.npz not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    for bad in (["--render-scale", "0"], ["--frames", "0"], ["--render-scale", "2"]):
        assert main([*base, *bad]) == 2
        assert bad[0] in capsys.readouterr().err


@pytest.mark.skipif(
    not (REAL / "3D_occupancy_data.npz").is_file(), reason=f"shared real Occ3D frame not found in {REAL}"
)
def test_view_on_the_real_frame(tmp_path, capsys):
    from gaussrender.data import load_infos

    sample = load_infos(REAL / "nuscenes_mini_val_calib.json")[0]  # a real nuScenes rig (see PROVENANCE.md)
    with np.load(REAL / "3D_occupancy_data.npz") as data:
        sem, cam = data["semantics"], data["mask_camera"].astype(bool)
    shifted = np.full_like(sem, GRID.empty_index)
    shifted[1:] = sem[:-1]  # everything one voxel (0.4 m) further forward
    infos = _dataset(tmp_path, [sample], [sem], [cam], [shifted])
    argv = [
        "view",
        "--benchmark",
        "occ3d",
        "--gt",
        str(tmp_path / "gt"),
        "--infos",
        str(infos),
        "--pred",
        str(tmp_path / "pred"),
        "--out",
        str(tmp_path / "o"),
        "--render-scale",
        "0.05",
        "--frames",
        "1",
    ]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    print(stdout)
    printed = _printed(stdout)
    expected = _expected(sample, sem, shifted, cam, 0.05)
    for key in ("iou", "miou", "image_miou", "bev_miou"):
        assert printed[key] == pytest.approx(expected[key], abs=0.005), key
    assert 0 < printed["miou"] < 100 and printed["depth_l1"] > 0
    assert len(list((tmp_path / "o").glob("CAM_*.png"))) == 6
