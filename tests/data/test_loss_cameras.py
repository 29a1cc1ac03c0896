"""``gr.data.loss_cameras``: an infos entry -> the loss's camera arguments, and the docs example
on the real Occ3D frame (skipped, with the reason, when shared/data is absent)."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.data import cam_from_ego, load_infos, read_kitti360_calibration
from tests.data.synthetic import K_SYNTH, synthetic_sample
from tests.shared_data import OCC3D_DEMO

DOC = Path(__file__).resolve().parents[2] / "docs" / "cameras.md"


def test_occ3d_surroundocc_and_kitti360_frames():
    sample = synthetic_sample("tok0", "scene-0001", 1)
    k, t, size = gr.data.loss_cameras(sample, "occ3d")
    assert k.shape == (6, 3, 3) and t.shape == (6, 4, 4) and size == (900, 1600)
    torch.testing.assert_close(k, torch.from_numpy(np.stack([K_SYNTH] * 6)).float())
    torch.testing.assert_close(t, torch.from_numpy(cam_from_ego(sample)).float())
    # SurroundOcc's grid is the LiDAR frame: grid -> ego through lidar2ego
    _, t_lidar, _ = gr.data.loss_cameras(sample, gr.SURROUNDOCC_NUSCENES)
    want = torch.from_numpy(cam_from_ego(sample) @ sample.lidar2ego.matrix()).float()
    torch.testing.assert_close(t_lidar, want)
    # KITTI-360: the calibration, Velodyne frame
    calib = read_kitti360_calibration()
    k1, t1, size1 = gr.data.loss_cameras(calib, "kitti360")
    assert k1.shape == (1, 3, 3) and size1 == (376, 1408)
    torch.testing.assert_close(t1[0], torch.from_numpy(calib.cam_from_velo).float())
    # a batch, a given size, the loss takes them as they are
    batch = gr.data.loss_cameras([sample, synthetic_sample("tok1", "scene-0001", 2)], "occ3d", image_size=(360, 640))
    assert batch.intrinsics.shape == (2, 6, 3, 3) and batch.image_size == (360, 640)
    assert set(batch.kwargs()) == {"intrinsics", "cam_from_grid", "image_size"}
    assert dict(**batch) == batch.kwargs() and batch["image_size"] == (360, 640) and batch[2] == (360, 640)
    with pytest.raises(KeyError, match="nope"):
        batch["nope"]


def test_bad_input_is_named():
    sample = synthetic_sample("tok0", "scene-0001", 1)
    with pytest.raises(ValueError, match="grid_frame"):
        gr.data.loss_cameras(sample, gr.VoxelGrid(**{**gr.OCC3D_NUSCENES.__dict__, "name": "mine"}))
    with pytest.raises(ValueError, match="KITTI-360"):
        gr.data.loss_cameras(read_kitti360_calibration(), "occ3d")
    with pytest.raises(ValueError, match="ego or LiDAR"):
        gr.data.loss_cameras(sample, "kitti360")
    with pytest.raises(KeyError, match="CAM_X"):
        gr.data.loss_cameras(sample, "occ3d", camera_names=("CAM_X",))


def _doc_example() -> str:
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return block


@pytest.mark.skipif(not OCC3D_DEMO.is_dir(), reason=f"real Occ3D frame not found in {OCC3D_DEMO}")
def test_docs_example_runs_on_the_real_frame(capsys):
    code = _doc_example().replace('FRAME = "occupancy_vis_demo"', f"FRAME = {str(OCC3D_DEMO)!r}")
    assert f"FRAME = {str(OCC3D_DEMO)!r}" in code
    ns: dict = {}
    exec(code, ns)
    out, k, t = ns["out"], ns["k"], ns["t"]
    assert k.shape == (6, 3, 3) and t.shape == (6, 4, 4) and ns["size"] == (900, 1600)
    assert out["cam"] > 0 and out["bev"] > 0 and out["cam_depth"] > 0
    assert torch.isfinite(ns["logits"].grad).all() and ns["logits"].grad.abs().sum() > 0
    # the real calibration matches the reader's: the same cameras as Occ3DNuScenes would give
    info = load_infos(OCC3D_DEMO / "world-nuscenes_mini_infos_val.pkl")[0]
    torch.testing.assert_close(t, torch.from_numpy(cam_from_ego(info)).float())
    assert "'loss':" in capsys.readouterr().out
    # outside mask_camera: ignore
    labels, occ = ns["labels"], ns["occ"]
    assert bool((labels[0][~torch.from_numpy(occ["mask_camera"])] == 255).all())
