"""Training from 2D targets (issue 14): the config switches, their refusals, the wiring of the
batch's targets into GaussRender, and the shipped _2d / _3d+2d configs trained end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gaussrender import GaussRenderLoss
from gaussrender.data import collate
from gaussrender.geometry.grid import get_grid
from gaussrender.train.config import ConfigError, config_from_dict, load_config
from gaussrender.train.runlog import read_jsonl
from gaussrender.train.training_loss import TrainingLoss, class_weights_for

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"
SIZE = [24, 44]


def _data(root, targets_2d="lidar", lidar=True):
    syn = {"num_scenes": 1, "num_val_scenes": 1, "image_size": SIZE, "lidar": lidar, "targets_2d": targets_2d}
    return {"grid": "synthetic_small", "root": str(root), "image_size": SIZE, "num_workers": 0, "synthetic": syn}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from gaussrender.train.builders import prepare_synthetic

    root = tmp_path_factory.mktemp("sup2d")
    prepare_synthetic(config_from_dict({"data": _data(root)}).data)
    return root


def test_targets_2d_need_data_with_targets_and_the_render_loss(tmp_path):
    ok = {"render": True, "targets_2d": True}
    config_from_dict({"data": _data(tmp_path), "loss": ok})  # the reference: accepted
    config_from_dict({"data": _data(tmp_path, "camera", lidar=False), "loss": ok})
    with pytest.raises(ConfigError, match=r"loss.targets_2d: needs data with 2D targets.*targets_2d is None"):
        config_from_dict({"data": _data(tmp_path, None), "loss": ok})
    with pytest.raises(ConfigError, match=r"loss.targets_2d: needs data with 2D targets"):
        config_from_dict({"loss": ok})  # nuScenes readers: no 2D targets
    with pytest.raises(ConfigError, match=r"loss.targets_2d: needs loss.render: true"):
        config_from_dict({"data": _data(tmp_path), "loss": {"targets_2d": True}})
    with pytest.raises(ConfigError, match=r"loss.render_labels: false leaves GaussRender without a target"):
        config_from_dict({"data": _data(tmp_path), "loss": {"render": True, "render_labels": False}})
    with pytest.raises(ConfigError, match=r"loss.voxel_losses: false needs loss.render: true"):
        config_from_dict({"data": _data(tmp_path), "loss": {"voxel_losses": False}})
    two_d = {**ok, "voxel_losses": False, "render_labels": False}
    config_from_dict({"data": _data(tmp_path), "loss": two_d})  # 2D-only: accepted
    with pytest.raises(ConfigError, match=r"loss.geo_scal_weight: expected 0 with loss.voxel_losses: false"):
        config_from_dict({"data": _data(tmp_path), "loss": {**two_d, "geo_scal_weight": 1.0}})
    # without the 3D loss a learned opacity would leave the empty class untaught
    with pytest.raises(ConfigError, match=r"model.learned_opacity: expected false with loss.voxel_losses: false"):
        config_from_dict({"data": _data(tmp_path), "loss": two_d, "model": {"learned_opacity": True}})
    # the defaults are the release's: 3D losses, labels rendered, no 2D targets
    default = config_from_dict({}).loss
    assert (default.voxel_losses, default.render_labels, default.targets_2d) == (True, True, False)


def test_a_batch_without_targets_is_refused_by_name(tmp_path):
    cfg = config_from_dict({"data": _data(tmp_path), "loss": {"render": True, "targets_2d": True}})
    loss = TrainingLoss(cfg, get_grid("synthetic_small"))
    with pytest.raises(ValueError, match=r"loss.targets_2d is true but the batch carries no 2D targets"):
        loss.targets_2d_of({"labels": torch.zeros(1, 50, 50, 4, dtype=torch.uint8)})


@pytest.mark.parametrize("voxel_losses", [False, True])
def test_training_loss_hands_the_batch_targets_to_gaussrender(data_root, voxel_losses):
    # the trainer's loss equals GaussRender called by hand on the batch's targets and render
    # cameras (semantics as int64 classes), plus the 3D terms exactly when they are on
    from gaussrender.train.builders import build_dataset

    loss_cfg = {"render": True, "targets_2d": True, "render_labels": False, "voxel_losses": voxel_losses}
    loss_cfg["render_kwargs"] = {"bev_size": 32}
    cfg = config_from_dict({"data": _data(data_root), "loss": {**loss_cfg, "class_weighting": "none"}})
    grid = get_grid("synthetic_small")
    batch = collate([build_dataset(cfg.data, "train", load_images=False)[0]])
    assert batch["target_semantics"].dtype == torch.uint8
    logits = torch.randn(1, grid.num_classes, *grid.shape, generator=torch.Generator().manual_seed(0))
    logits.requires_grad_(True)
    terms, extras = TrainingLoss(cfg, grid)({"logits": logits}, batch)
    assert ("loss_ce" in terms) is voxel_losses and ("loss_lovasz" in terms) is voxel_losses
    want = GaussRenderLoss(grid, bev_size=32)(
        logits.detach(),
        None,
        batch["render_intrinsics"].float(),
        batch["cam_from_grid"].float(),
        tuple(int(s) for s in batch["render_image_size"][0]),
        target_depth=batch["target_depth"],
        target_semantics=batch["target_semantics"].long(),
    )
    torch.testing.assert_close(terms["loss_render"].detach(), want["loss"], rtol=1e-6, atol=0)
    assert extras["render_target_depth"] == pytest.approx(float(want["target_depth"]), rel=1e-6)
    assert extras["render_target_semantics"] == pytest.approx(float(want["target_semantics"]), rel=1e-6)
    assert extras["render_target_depth"] > 0 and extras["render_target_semantics"] > 0
    # no 3D labels rendered: the release's terms are 0
    assert extras["render_cam"] == extras["render_bev"] == extras["render_cam_depth"] == 0.0
    sum(terms.values()).backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all()) and float(logits.grad.abs().sum()) > 0
    # with the 3D labels rendered as well, the release's terms come on top
    both = config_from_dict({"data": _data(data_root), "loss": {**loss_cfg, "render_labels": True}})
    _, extras = TrainingLoss(both, grid)({"logits": logits.detach()}, batch)
    assert extras["render_bev"] > 0 and extras["render_target_depth"] == pytest.approx(
        float(want["target_depth"]), rel=1e-6
    )
    # 2D-only runs count no classes: no cross-entropy to weight
    if not voxel_losses:
        assert class_weights_for(cfg, grid, None, None) is None  # type: ignore[arg-type]


def _train_tiny(name, data_root, run_dir):
    from gaussrender.train.run import train

    # the shipped config's data and loss sections on the coarse grid, with the tiny TPVFormer:
    # the tiny SurroundOcc's coarsest auxiliary scale needs a grid side divisible by 8
    # (Occ3D's 200x200x16, ten times slower here)
    cfg = load_config(
        CONFIGS / f"{name}.yaml",
        [
            f"data.root={data_root}",
            "data.grid=synthetic_small",
            "model.name=tpvformer",
            f"data.image_size={SIZE}",
            f"data.synthetic.image_size={SIZE}",
            "data.synthetic.num_scenes=1",
            "loss.render_kwargs.bev_size=32",
            "train.max_steps=2",
            "train.epochs=2",
            "train.val_every_epochs=2",
            "train.device=cpu",
        ],
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cfg, train(cfg, run_dir, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_tiny_2d_config_trains_from_the_2d_targets_only(data_root, tmp_path, monkeypatch):
    from gaussrender.losses import occupancy as losses3d

    def no_voxel_loss(*args, **kwargs):
        raise AssertionError("a 2D-only run computed a 3D voxel loss")

    monkeypatch.setattr(losses3d.Occupancy3DLoss, "forward", no_voxel_loss)
    cfg, result = _train_tiny("tiny_synthetic_2d", data_root, tmp_path / "run")
    assert not cfg.loss.voxel_losses and cfg.loss.targets_2d and not cfg.loss.render_labels
    assert result["step"] == 2
    records = read_jsonl(tmp_path / "run" / "log.jsonl", "train")
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert not any(k in r for k in ("loss_ce", "loss_lovasz", "loss_sem_scal", "loss_geo_scal"))
        assert r["loss"] == r["loss_render"] > 0
        for term in ("render_target_depth", "render_target_semantics", "render_target_alpha", "render_target_carve"):
            assert math.isfinite(r[term]) and r[term] > 0
        assert r["render_cam"] == r["render_bev"] == 0.0
        assert math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 and r["skipped"] == 0
    # validation still scores the 3D prediction against the 3D labels
    (val,) = read_jsonl(tmp_path / "run" / "log.jsonl", "val")
    assert 0 <= val["iou"] <= 1 and 0 <= val["miou"] <= 1
    assert not (tmp_path / "run" / "class_counts.json").exists()


def test_tiny_3d_plus_2d_config_trains_from_both(data_root, tmp_path):
    cfg, result = _train_tiny("tiny_synthetic_3d+2d", data_root, tmp_path / "run")
    assert cfg.loss.voxel_losses and cfg.loss.targets_2d
    assert result["step"] == 2
    records = read_jsonl(tmp_path / "run" / "log.jsonl", "train")
    for r in records:
        assert math.isfinite(r["loss_ce"]) and math.isfinite(r["loss_lovasz"]) and r["loss_ce"] > 0
        assert r["loss"] == pytest.approx(r["loss_ce"] + r["loss_lovasz"] + r["loss_render"], rel=1e-6)
        for term in ("render_target_depth", "render_target_semantics"):
            assert math.isfinite(r[term]) and r[term] > 0
    # the two configs differ only in the voxel-loss switch, the opacity and the 2D-only
    # free-space options (issue 27: the _2d config carves free space along the LiDAR rays)
    a = load_config(CONFIGS / "tiny_synthetic_2d.yaml")
    b = load_config(CONFIGS / "tiny_synthetic_3d+2d.yaml")
    import dataclasses

    free_space = {"opacity", "classes", "target_alpha", "target_carve", "carve_offset"}
    assert free_space <= set(a.loss.render_kwargs)
    assert (a.loss.render_kwargs["opacity"], a.loss.render_kwargs["target_carve"]) == ("linear", True)
    assert (
        dataclasses.replace(
            a,
            loss=dataclasses.replace(
                a.loss,
                voxel_losses=True,
                render_kwargs={k: v for k, v in a.loss.render_kwargs.items() if k not in free_space},
            ),
            model=dataclasses.replace(a.model, learned_opacity=True),
        )
        == b
    )
