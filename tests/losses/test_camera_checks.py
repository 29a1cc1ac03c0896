"""The loss warns, once per module and with the fix, about cameras that look wrong: a camera-to-grid
pose passed as grid-to-camera, (W, H) passed for (H, W), cameras that see none of the ground truth
or have it all behind them; it stays silent on correct cameras and checks only its first call."""

import warnings

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.losses.render import camera_checks
from tests.shared_data import OCC3D_DEMO

TOY = gr.VoxelGrid(
    name="camera_check_toy",
    range_min=(-4.0, -4.0, -1.0),
    range_max=(4.0, 4.0, 1.0),
    voxel_size=0.5,
    shape=(16, 16, 4),
    class_names=("free", "car", "road"),
    empty_index=0,
)
SIZE = (24, 32)


def _batch(batch=2):
    labels = torch.zeros(batch, *TOY.shape, dtype=torch.long)
    labels[:, :, :, 0] = 2
    labels[:, 10:13, 5:9, 0:2] = 1
    labels[0, 0, 0, 0] = 255
    logits = torch.randn(batch, 3, *TOY.shape, generator=torch.Generator().manual_seed(0))
    k = torch.tensor([[20.0, 0, 16], [0, 20, 12], [0, 0, 1]]).expand(batch, 2, 3, 3).contiguous()
    eye = torch.tensor([[0.0, 0, 0.5], [0.0, 0, 0.5]])
    pose = gr.look_at(eye, torch.tensor([[1.0, 0, 0.5], [-1.0, 0, 0.5]])).expand(batch, 2, 4, 4).contiguous()
    return logits, labels, k, pose


def _warnings(loss, *args):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loss(*args)
    return [str(w.message) for w in record if "GaussRenderLoss" in str(w.message)]


def _loss(**kw):
    return gr.GaussRenderLoss(TOY, bev_size=16, seed=0, backend="torch", **kw)


def test_silent_on_correct_cameras():
    logits, labels, k, pose = _batch()
    assert _warnings(_loss(), logits, labels, k, pose, SIZE) == []
    # the release's camera moves keep cameras upright
    assert _warnings(_loss(camera_strategy="elevated"), logits, labels, k, pose, SIZE) == []


def test_camera_to_grid_poses_warn_once_with_the_fix():
    logits, labels, k, pose = _batch()
    loss = _loss()
    messages = _warnings(loss, logits, labels, k, torch.linalg.inv(pose), SIZE)
    assert messages and all("torch.linalg.inv" in m for m in messages)
    assert any("not upright" in m for m in messages)
    # once per module: the next calls (checked or not) say nothing more
    assert _warnings(loss, logits, labels, k, torch.linalg.inv(pose), SIZE) == []
    # another module says it again
    assert _warnings(_loss(), logits, labels, k, torch.linalg.inv(pose), SIZE)


def test_swapped_image_size_warns_with_the_fix():
    logits, labels, k, pose = _batch()
    swapped = (SIZE[1], SIZE[0])
    messages = _warnings(_loss(), logits, labels, k, pose, swapped)
    assert len(messages) == 1 and "looks swapped" in messages[0] and f"(H, W) = {SIZE}" in messages[0]
    # intrinsics of another resolution (K for 4x the images)
    messages = _warnings(_loss(), logits, labels, 4 * k * torch.tensor([1.0, 1.0, 0.25])[:, None], pose, SIZE)
    assert "disagrees with the intrinsics" in messages[0] and "gr.scale_intrinsics" in messages[0]


def test_cameras_that_see_nothing_or_have_everything_behind_them():
    logits, labels, k, _ = _batch()
    # upright cameras outside the grid, looking away from it
    away = gr.look_at(torch.tensor([[6.0, 0, 0.5], [6.0, 1, 0.5]]), torch.tensor([[9.0, 0, 0.5], [9.0, 1, 0.5]]))
    messages = _warnings(_loss(), logits, labels, k, away.expand(2, 2, 4, 4).contiguous(), SIZE)
    assert any("sees any of the" in m for m in messages) and any("behind every camera" in m for m in messages)
    assert not any("upright" in m for m in messages)


def test_only_the_first_call_is_checked_and_checks_off_skips_it(monkeypatch):
    logits, labels, k, pose = _batch()
    calls = []
    real = camera_checks.camera_warnings
    monkeypatch.setattr("gaussrender.losses.render.loss.camera_warnings", lambda *a: calls.append(1) or real(*a))
    loss = _loss()
    for _ in range(3):
        loss(logits, labels, k, pose, SIZE)
    assert len(calls) == camera_checks.CHECKED_CALLS == 1  # later steps pay nothing
    gr.set_checks(False)
    try:
        assert _warnings(_loss(), logits, labels, k, torch.linalg.inv(pose), SIZE) == []
    finally:
        gr.set_checks(True)
    assert len(calls) == 1
    # no check without cameras, labels or camera views
    loss = _loss(views=("bev",))
    loss(logits, labels, k, pose, SIZE)
    assert len(calls) == 1


@pytest.mark.skipif(not OCC3D_DEMO.is_dir(), reason=f"real Occ3D frame not found in {OCC3D_DEMO}")
def test_real_frame_with_its_calibration():
    from gaussrender.data import cam_from_ego, load_infos

    grid = gr.OCC3D_NUSCENES
    labels = torch.from_numpy(np.load(OCC3D_DEMO / "3D_occupancy_data.npz")["semantics"].astype(np.int64))[None]
    sample = load_infos(OCC3D_DEMO / "nuscenes_mini_val_calib.json")[0]
    pose = torch.from_numpy(cam_from_ego(sample)).float()[None]
    k = torch.from_numpy(np.stack([c.intrinsics for c in sample.cameras.values()])).float()[None]
    check = camera_checks.camera_warnings
    assert check(grid, labels, k, pose, (900, 1600)) == []  # principal points ~50 px off centre: silent
    assert check(grid, labels, k[:, :1], pose[:, :1], (900, 1600)) == []  # the front camera alone
    assert [kind for kind, _ in check(grid, labels, k, torch.linalg.inv(pose), (900, 1600))] == ["upright"]
    assert [kind for kind, _ in check(grid, labels, k, pose, (1600, 900))] == ["image_size"]


def test_large_grids_are_checked_on_a_subsample(monkeypatch):
    # every k-th occupied voxel beyond MAX_CHECKED_VOXELS: the verdicts hold, memory stays small
    monkeypatch.setattr(camera_checks, "MAX_CHECKED_VOXELS", 7)
    logits, labels, k, pose = _batch()
    assert camera_checks.camera_warnings(TOY, labels, k, pose, SIZE) == []
    kinds = [kind for kind, _ in camera_checks.camera_warnings(TOY, labels, k, torch.linalg.inv(pose), SIZE)]
    assert "upright" in kinds
    away = gr.look_at(torch.tensor([[6.0, 0, 0.5], [6.0, 1, 0.5]]), torch.tensor([[9.0, 0, 0.5], [9.0, 1, 0.5]]))
    warned = camera_checks.camera_warnings(TOY, labels, k, away.expand(2, 2, 4, 4).contiguous(), SIZE)
    assert {"blind", "behind"} <= {kind for kind, _ in warned}
    assert all("of the 7 ground-truth voxels checked" in m or "of the" not in m for _, m in warned)
