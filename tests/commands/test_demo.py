"""`gaussrender demo` end to end, on a tiny setting: the files it promises exist and decode,
the loss terms are printed and finite, and bad ``--labels`` fail with a message that says why.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gaussrender as gr
from gaussrender import OCC3D_NUSCENES
from gaussrender.cli import main
from gaussrender.viz import comparison_rows, palette, tile_images
from tests.shared_data import OCC3D_DEMO

REAL_LABELS = OCC3D_DEMO / "3D_occupancy_data.npz"
TINY = ["--frames", "2", "--size", "0.1"]  # views 160 x 90, BEV 160 x 160


@pytest.fixture(autouse=True)
def restore_threads():
    # the command sets torch's thread count (--threads); give the next test what it had
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _loss_terms(stdout: str) -> dict[str, float]:
    terms = dict(re.findall(r"^\s+(cam|cam_depth|bev|bev_depth|loss)\s+(\S+)$", stdout, flags=re.M))
    return {k: float(v) for k, v in terms.items()}


def _panel_shape(h: int, w: int, title: str, depth_range=(0.0, 50.0)) -> tuple[int, ...]:
    # a view's picture: ground truth | prediction | error, semantics above depth, with captions
    grid = gr.OCC3D_NUSCENES
    blank = (np.zeros((h, w, grid.num_classes), np.float32), np.zeros((h, w), np.float32))
    rows, captions = comparison_rows(blank, blank, palette(grid), depth_range, title)
    return tile_images(rows, captions).shape


def _written(stdout: str) -> list[Path]:
    after = stdout.split("wrote:\n", 1)[1]
    return [Path(line.strip()) for line in after.splitlines() if line.startswith("  ")]


def test_demo_writes_pictures_gif_and_prints_the_loss(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--seed", "1", "--out", str(out), *TINY]) == 0
    stdout = capsys.readouterr().out
    names = {"overview.png", "sensor.png", "elevated.png", "bev.png", "orbit.gif"}
    assert {p.name for p in _written(stdout)} == names
    assert all(p.is_file() for p in _written(stdout))
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # and nothing else (no temp files)

    for name, title in (("sensor", "CAM_FRONT"), ("elevated", "CAM_FRONT, elevated")):
        with Image.open(out / f"{name}.png") as im:
            assert im.format == "PNG" and (im.height, im.width, 3) == _panel_shape(90, 160, title)
            pixels = np.asarray(im.convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # a picture, not a flat fill
    with Image.open(out / "bev.png") as im:
        grid = gr.OCC3D_NUSCENES
        bev_range = (grid.extent[0] - grid.range_max[2], grid.extent[0] - grid.range_min[2])
        assert (im.height, im.width, 3) == _panel_shape(160, 160, "bird's-eye view", bev_range)
    with Image.open(out / "orbit.gif") as im:
        assert im.format == "GIF" and im.n_frames == 2
    with Image.open(out / "overview.png") as im:
        assert im.width >= _panel_shape(160, 160, "bird's-eye view")[1]

    terms = _loss_terms(stdout)
    assert set(terms) == {"cam", "cam_depth", "bev", "bev_depth", "loss"}
    assert all(math.isfinite(v) and v >= 0 for v in terms.values())
    # the prediction is degraded on purpose: the BEV terms must see it
    assert terms["bev"] > 0 and terms["loss"] > 0


def _write_labels(path: Path, drop: str | None = None) -> Path:
    grid = OCC3D_NUSCENES
    sem = np.full(grid.shape, grid.empty_index, np.uint8)
    sem[:, :, 2] = grid.class_names.index("driveable_surface")
    sem[120:131, 95:100, 3:7] = grid.class_names.index("car")
    sem[110:140, 130:150, 2:14] = grid.class_names.index("manmade")
    arrays = {
        "semantics": sem,
        "mask_lidar": np.ones(grid.shape, np.uint8),
        "mask_camera": np.ones(grid.shape, np.uint8),
    }
    if drop:
        del arrays[drop]
    np.savez_compressed(path, **arrays)
    return path


def test_demo_renders_a_labels_file(tmp_path, capsys) -> None:
    labels = _write_labels(tmp_path / "labels.npz")
    assert main(["demo", "--labels", str(labels), "--out", str(tmp_path / "o"), "--frames", "1", "--size", "0.06"]) == 0
    stdout = capsys.readouterr().out
    assert f"Occ3D labels {labels}" in stdout
    assert all(math.isfinite(v) for v in _loss_terms(stdout).values())
    with Image.open(tmp_path / "o" / "orbit.gif") as im:
        assert im.n_frames == 1
    # the front camera looks along the road at the car: road colour and car colour both show
    sensor = np.asarray(Image.open(tmp_path / "o" / "sensor.png").convert("RGB")).reshape(-1, 3)
    for color in ((255, 0, 255), (0, 150, 245)):
        assert (np.abs(sensor.astype(int) - color).sum(1) < 30).any(), color


@pytest.mark.skipif(not REAL_LABELS.is_file(), reason=f"real Occ3D sample not present: {REAL_LABELS}")
def test_demo_on_the_real_occ3d_sample(tmp_path, capsys) -> None:
    assert main(["demo", "--labels", str(REAL_LABELS), "--out", str(tmp_path), "--frames", "1", "--size", "0.06"]) == 0
    stdout = capsys.readouterr().out
    # 31107 occupied voxels in the real file (shared/data/PROVENANCE.md)
    assert "31107 ground-truth Gaussians" in stdout
    assert all(math.isfinite(v) for v in _loss_terms(stdout).values())


def test_bad_labels_path_names_the_path(tmp_path, capsys) -> None:
    missing = tmp_path / "nope" / "labels.npz"
    assert main(["demo", "--labels", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(missing) in err
    assert not (tmp_path / "o").exists()


def test_missing_key_is_named(tmp_path, capsys) -> None:
    labels = _write_labels(tmp_path / "labels.npz", drop="mask_camera")
    assert main(["demo", "--labels", str(labels), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "mask_camera" in err and str(labels) in err


def test_wrong_shape_is_reported(tmp_path, capsys) -> None:
    path = tmp_path / "labels.npz"
    np.savez(
        path,
        semantics=np.zeros((10, 10, 10), np.uint8),
        mask_lidar=np.zeros((10, 10, 10), np.uint8),
        mask_camera=np.zeros((10, 10, 10), np.uint8),
    )
    assert main(["demo", "--labels", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "(200, 200, 16)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--frames", "0"],
        ["--size", "0"],
        ["--fps", "0"],
        ["--threads", "0"],
        ["--device", "nonsense"],
        ["--backend", "triton"],
    ],
)
def test_bad_options(tmp_path, capsys, args) -> None:
    assert main(["demo", "--out", str(tmp_path / "o"), *args]) == 2
    assert args[0] in capsys.readouterr().err
