"""The paper configs carry the release's recipe (docs/method.md): learned opacity when
rendering, fixed class weights, no clipping, camera odds, coarse-label rule, and render
cameras independent of the network input size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import gaussrender as gr
from gaussrender.train.config import Config, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"
# tiny_*: CPU smoke tests; evidence_*: the base of benchmarks/evidence.py (synthetic grid,
# arms set by the script)
PAPER = sorted(p for p in CONFIGS.glob("*.yaml") if not p.stem.startswith(("tiny_", "evidence_")))
RENDER = sorted(CONFIGS.glob("*_render.yaml"))


def test_defaults_do_not_clip_and_use_the_release_coarse_rule():
    cfg = Config()
    assert cfg.optim.grad_clip is None
    assert cfg.loss.coarse_labels == "last"
    assert cfg.loss.render_image_size is None


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_configs_state_the_release_recipe(path):
    cfg = load_config(path)
    assert cfg.loss.class_weighting == "release" and cfg.loss.class_weights is None
    assert cfg.optim.grad_clip is None
    assert "grad_clip: null" in path.read_text()  # said explicitly, not left to the default
    assert cfg.loss.coarse_labels == "last"
    assert cfg.loss.render_image_size is None  # native size, uncropped K
    # the release learns the opacity it renders; a 2D-only config renders 1 - p(empty) of the
    # logits (nothing else would teach them free space)
    assert cfg.model.learned_opacity is (cfg.loss.render and cfg.loss.voxel_losses)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_nuscenes_camera_odds_are_the_releases(path):
    cfg = load_config(path)
    if cfg.data.num_cameras != 6:
        return  # KITTI-360: one camera
    w = torch.tensor(cfg.loss.render_kwargs["camera_weights"], dtype=torch.float64)
    # FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT: random.choices normalises
    # the release's [1/3, 1/6, 1/6, 1/3, 1/6, 1/6] to 1/4, 1/8, 1/8, 1/4, 1/8, 1/8
    release = torch.tensor([1 / 3, 1 / 6, 1 / 6, 1 / 3, 1 / 6, 1 / 6], dtype=torch.float64)
    torch.testing.assert_close(w / w.sum(), release / release.sum(), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        w / w.sum(), torch.tensor([0.25, 0.125, 0.125, 0.25, 0.125, 0.125], dtype=torch.float64), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_configs_build_models_with_learned_opacity_when_rendering(path):
    from gaussrender.models import OpacityHead
    from gaussrender.train.builders import build_model_from_config

    cfg = load_config(path)
    # the tiny size keeps this fast; the opacity switch is the config's own
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, size="tiny", backbone_weights=None))
    model = build_model_from_config(cfg)
    if path.stem.endswith("_render"):
        assert isinstance(model.opacity_head, OpacityHead), path
    elif path.stem.endswith("_std"):
        assert model.opacity_head is None, path


def test_release_class_weighting_needs_a_table():
    cfg = config_from_dict({"data": {"grid": "kitti360", "format": "kitti360"}, "loss": {"class_weighting": "release"}})
    assert cfg.loss.class_weighting == "release"
    with pytest.raises(ValueError, match="class_weighting"):
        config_from_dict({"loss": {"class_weighting": "paper"}})
    with pytest.raises(ValueError, match="render_image_size"):
        config_from_dict({"loss": {"render_image_size": [0, 10]}})


def test_training_loss_uses_the_release_table():
    from gaussrender.losses.occupancy import release_class_weights
    from gaussrender.train.loop import TrainingLoss, class_weights_for

    for name in ("occ3d", "surroundocc", "kitti360"):
        fmt = name
        cfg = config_from_dict({"data": {"grid": name, "format": fmt}, "loss": {"class_weighting": "release"}})
        grid = gr.get_grid(name)
        loss = TrainingLoss(cfg, grid)
        torch.testing.assert_close(loss.occupancy.class_weights, release_class_weights(grid))
        # nothing is counted: the dataset is never touched
        assert torch.equal(class_weights_for(cfg, grid, None, None), release_class_weights(grid))
    from tests.train.helpers import TINY_GRID

    cfg = config_from_dict({"loss": {"class_weighting": "release"}})
    with pytest.raises(ValueError, match="no release class-weight table for grid 'tiny'"):
        TrainingLoss(cfg, TINY_GRID)


# ---------------------------------------------------------------- render cameras
def _captured_render_inputs(cfg, batch, monkeypatch):
    """(intrinsics, image_size) that TrainingLoss hands to GaussRenderLoss for ``batch``.

    The 3D terms are switched off (they do not touch the cameras) to keep this fast."""
    from gaussrender.train.loop import TrainingLoss

    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, ce_weight=0.0, lovasz_weight=0.0))
    seen = {}
    loss = TrainingLoss(cfg, gr.get_grid(cfg.data.grid))

    def spy(logits, labels, **kw):
        seen.update(kw)
        return {"loss": logits.sum() * 0.0}

    monkeypatch.setattr(loss.render, "forward", spy)
    grid = gr.get_grid(cfg.data.grid)
    logits = torch.zeros(batch["labels"].shape[0], grid.num_classes, *grid.shape)
    loss({"logits": logits, "aux_logits": [], "opacity": None}, batch)
    return seen["intrinsics"], seen["image_size"]


def _write_one_sample(root, image_size):
    """One Occ3D-layout sample with six stored images of ``image_size`` and the nuScenes-like
    rig calibrated for them (what :func:`make_dataset` writes, without its slow scene)."""
    import numpy as np

    from gaussrender.data import CameraInfo, Pose, SampleInfo, write_infos_json, write_occ3d_sample
    from gaussrender.viz import save_png

    grid = gr.OCC3D_NUSCENES
    sem = np.full(grid.shape, grid.empty_index, dtype=np.uint8)
    sem[90:110, 90:110, 0] = 11
    ones = np.ones(grid.shape, dtype=bool)
    write_occ3d_sample(root, "scene-a", "tok0", sem, ones, ones, grid)
    ks, cam_from_ego, names = gr.nuscenes_rig(image_size, dtype=torch.float64)
    identity = Pose((0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0))
    cams = {}
    for v, name in enumerate(names):
        rel = f"samples/{name}/tok0.png"
        save_png(root / rel, np.zeros((*image_size, 3), dtype=np.uint8))
        inv = np.linalg.inv(cam_from_ego[v].numpy())
        from gaussrender.geometry.transforms import matrix_to_quaternion

        cams[name] = CameraInfo(
            name=name,
            image_path=rel,
            intrinsics=ks[v].numpy(),
            sensor2ego=Pose(tuple(inv[:3, 3]), matrix_to_quaternion(inv[:3, :3])),
            ego2global=identity,
        )
    sample = SampleInfo(
        token="tok0",
        scene="scene-a",
        scene_token="scene-a",
        timestamp=0,
        lidar_path="",
        lidar2ego=identity,
        ego2global=identity,
        cameras=cams,
        occ_path="gts/scene-a/tok0",
    )
    write_infos_json(root / "infos.json", [sample])
    return ks.float()


def test_render_cameras_do_not_depend_on_the_network_input_size(tmp_path, monkeypatch):
    from gaussrender.data import collate
    from gaussrender.train.builders import build_dataset

    native_k = _write_one_sample(tmp_path, (36, 64))
    inputs = []
    for size in ([36, 64], [18, 32], [24, 40]):
        cfg = config_from_dict(
            {
                "data": {
                    "root": str(tmp_path),
                    "image_size": size,
                    "num_workers": 0,
                    "train_infos": str(tmp_path / "infos.json"),
                },
                "loss": {"render": True},
            }
        )
        item = build_dataset(cfg.data, "train")[0]
        assert tuple(item["images"].shape[-2:]) == tuple(size)
        assert item["render_image_size"].tolist() == [36, 64]  # the stored images
        inputs.append(_captured_render_inputs(cfg, collate([item]), monkeypatch))
    for ks, image_size in inputs:
        # the calibration of the stored 36x64 images, whatever the network reads
        assert image_size == (36, 64)
        torch.testing.assert_close(ks[0], native_k, rtol=0, atol=0)


def test_render_image_size_option_rescales_the_native_k(monkeypatch):
    k = torch.tensor([[[100.0, 0.0, 80.0], [0.0, 90.0, 45.0], [0.0, 0.0, 1.0]]]).expand(2, 1, 3, 3).clone()
    batch = {
        "labels": torch.full((2, *gr.OCC3D_NUSCENES.shape), 17),
        "intrinsics": k * 0.1,
        "images": torch.zeros(2, 1, 3, 9, 16),
        "render_intrinsics": k,
        "render_image_size": torch.tensor([[90, 160], [90, 160]]),
        "cam_from_grid": torch.eye(4).expand(2, 1, 4, 4).clone(),
    }
    cfg = config_from_dict({"loss": {"render": True, "render_image_size": [45, 40]}})
    ks, size = _captured_render_inputs(cfg, batch, monkeypatch)
    assert size == (45, 40)
    want = k.double().clone()
    want[..., 0, :] *= 40 / 160  # fx, s, cx scale with the width
    want[..., 1, :] *= 45 / 90  # fy, cy with the height
    torch.testing.assert_close(ks, want.float(), rtol=0, atol=0)
    # native size by default
    ks, size = _captured_render_inputs(config_from_dict({"loss": {"render": True}}), batch, monkeypatch)
    assert size == (90, 160) and torch.equal(ks, k)
    # samples of one batch with different native sizes need an explicit render size
    batch["render_image_size"] = torch.tensor([[90, 160], [45, 80]])
    with pytest.raises(ValueError, match="share one render_image_size"):
        _captured_render_inputs(config_from_dict({"loss": {"render": True}}), batch, monkeypatch)
    # without render cameras (a custom dataset): the network's cameras at the image size
    del batch["render_intrinsics"], batch["render_image_size"]
    ks, size = _captured_render_inputs(config_from_dict({"loss": {"render": True}}), batch, monkeypatch)
    assert size == (9, 16) and torch.equal(ks, k * 0.1)


def test_augmentation_leaves_the_render_camera_alone():
    from gaussrender.train.augment import AugmentedDataset
    from gaussrender.train.config import AugmentConfig
    from tests.train.helpers import tiny_sample

    sample = tiny_sample(0)
    aug = AugmentedDataset([sample], AugmentConfig(flip=True, resize_scale=(0.5, 1.5)), seed=3)
    for epoch in range(4):
        aug.set_epoch(epoch)
        out = aug[0]
        assert torch.equal(out["render_intrinsics"], sample["render_intrinsics"])
        assert torch.equal(out["render_image_size"], sample["render_image_size"])
        assert torch.equal(out["cam_from_grid"], sample["cam_from_grid"])


# ---------------------------------------------------------------- learned opacity in training
def test_learned_opacity_reaches_the_render_loss_and_gets_gradients():
    from gaussrender.train.loop import TrainingLoss
    from tests.models.helpers import TINY_GRIDS, H, W, build_tiny, rig

    grid = TINY_GRIDS["kitti360"]  # 16x16x2: SurroundOcc's coarser scales divide it
    model = build_tiny("surroundocc", grid, learned_opacity=True)
    k, t = rig()
    g = torch.Generator().manual_seed(0)
    labels = torch.full((1, *grid.shape), grid.empty_index)
    labels[0, :, :, 0] = torch.randint(0, grid.num_classes, (16, 16), generator=g)
    batch = {"labels": labels, "cam_from_grid": t, "render_intrinsics": k, "render_image_size": torch.tensor([[H, W]])}
    # a small render (16x24 cameras, 8x8 BEV) keeps this fast
    cfg = config_from_dict(
        {
            "loss": {
                "render": True,
                "class_weighting": "none",
                "render_image_size": [16, 24],
                "render_kwargs": {"bev_size": 8, "camera_weights": [1.0, 1.0]},
            }
        }
    )
    loss = TrainingLoss(cfg, grid, torch.Generator().manual_seed(1))
    out = model(torch.rand(1, 2, 3, H, W, generator=g), k, t)
    assert out["opacity"] is not None
    terms, _ = loss(out, batch)
    terms["loss_render"].backward()
    grads = [p.grad for p in model.opacity_head.parameters()]
    assert all(gr_ is not None for gr_ in grads) and any(float(gr_.abs().sum()) > 0 for gr_ in grads)
    # the opacity is used: the model's own empty probability gives a different render loss
    loss2 = TrainingLoss(cfg, grid, torch.Generator().manual_seed(1))
    with torch.no_grad():
        without = loss2({**out, "opacity": None}, batch)[0]["loss_render"]
    assert float((terms["loss_render"].detach() - without).abs()) > 1e-6


def test_kitti360_render_camera_is_the_published_calibration_at_1408x376(tmp_path):
    import numpy as np

    from gaussrender.data import SSCBenchKITTI360, write_kitti360_sample

    write_kitti360_sample(tmp_path, 6, "000000", np.zeros(gr.SSCBENCH_KITTI360.shape, dtype=np.uint8))
    # docs/method.md#benchmarks: fx = fy = 552.554261, cx = 682.049453, cy = 238.769549 for 1408x376
    want = torch.tensor([[552.554261, 0.0, 682.049453], [0.0, 552.554261, 238.769549], [0.0, 0.0, 1.0]])
    for size in (None, (188, 704), (96, 320)):
        item = SSCBenchKITTI360(tmp_path, "val", image_size=size)[0]
        assert item["render_image_size"].tolist() == [376, 1408]
        torch.testing.assert_close(item["render_intrinsics"][0], want, rtol=1e-7, atol=1e-4)
    # the network's K follows image_size; the render K does not
    assert float(item["intrinsics"][0, 0, 0]) == pytest.approx(552.554261 * 320 / 1408, rel=1e-6)
