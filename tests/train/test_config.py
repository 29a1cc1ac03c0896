"""YAML configs: strict keys, typed values, --set overrides, the shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gaussrender.train.config import (
    Config,
    apply_overrides,
    config_from_dict,
    config_names,
    config_to_dict,
    load_config,
    resolve_config,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"


def test_defaults_are_the_paper_recipe():
    cfg = Config()
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.backbone_lr_mult) == (2e-4, 1e-4, 0.1)
    assert (cfg.optim.warmup_iters, cfg.optim.warmup_ratio, cfg.optim.min_lr) == (500, 1 / 3, 2e-7)
    assert (cfg.train.epochs, cfg.train.batch_size) == (20, 1)
    assert (cfg.loss.ce_weight, cfg.loss.lovasz_weight, cfg.loss.scale_decay, cfg.loss.render_weight) == (
        10,
        1,
        0.5,
        10,
    )
    # MonoScene's scene-class affinity terms are off unless a config asks for them
    assert (cfg.loss.sem_scal_weight, cfg.loss.geo_scal_weight, cfg.loss.frustum_weight) == (0.0, 0.0, 0.0)
    for name, bad in (
        ("sem_scal_weight", -1.0),
        ("geo_scal_weight", -1.0),
        ("frustum_weight", -1.0),
        ("frustum_size", 0),
    ):
        with pytest.raises(ValueError, match=f"loss.{name}"):
            config_from_dict({"loss": {name: bad}})


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: surroundocc}\noptim: {lr: 1.0e-3}\n")
    cfg = load_config(
        path,
        [
            "optim.lr=5e-4",
            "data.image_size=[450, 800]",
            "loss.render=true",
            "data.augment.flip=true",
            "train.max_steps=10",
        ],
    )
    assert cfg.optim.lr == 5e-4 and cfg.data.image_size == (450, 800) and cfg.loss.render is True
    assert cfg.data.augment.flip is True and cfg.train.max_steps == 10
    assert cfg.model.name == "surroundocc"


def test_resolved_config_roundtrips(tmp_path):
    cfg = config_from_dict(
        {"loss": {"render": True, "class_weights": [1, 2, 3]}, "data": {"synthetic": {"num_scenes": 2}}}
    )
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config_to_dict(cfg)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"optim": {"lrr": 1}}, r"unknown key\(s\) \['lrr'\] in optim"),
        ({"modle": {}}, r"unknown key\(s\) \['modle'\]"),
        ({"optim": {"lr": "fast"}}, "optim.lr: expected a number, got 'fast'"),
        ({"model": {"name": "resnet"}}, r"model.name: expected one of \['tpvformer', 'surroundocc', 'symphonies'\]"),
        ({"data": {"image_size": [1, 2, 3]}}, "data.image_size: expected a list of 2 items"),
        ({"train": {"epochs": 1.5}}, "train.epochs: expected an integer, got 1.5"),
        ({"loss": {"render": "yes"}}, "loss.render: expected true or false"),
        ({"optim": {"min_lr": 1.0}}, "min_lr <= lr"),
        ({"loss": {"nonfinite": "ignore"}}, "loss.nonfinite: expected one of"),
    ],
)
def test_bad_values_name_the_key(values, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(values)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="key.sub=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_load_and_pair_up():
    files = sorted(CONFIGS.glob("*.yaml"))
    names = {f.stem for f in files}
    for model in ("tpvformer", "surroundocc"):
        for bench in ("occ3d", "surroundocc", "kitti360"):
            if model == "tpvformer" and bench == "kitti360":
                continue  # the paper has no TPVFormer on SSCBench-KITTI360
            assert {f"{model}_{bench}_std", f"{model}_{bench}_render"} <= names
    assert {"tiny_synthetic_std", "tiny_synthetic_render"} <= names
    for f in files:
        cfg = load_config(f)
        if not f.stem.endswith(("_std", "_render")):
            continue  # evidence_small: a base whose arms benchmarks/evidence.py sets
        assert cfg.loss.render is f.stem.endswith("_render"), f
        assert cfg.model.learned_opacity is f.stem.endswith("_render"), f
        if f.stem.endswith("_render"):
            # std and render differ by the render switch and the learned opacity only
            std = config_to_dict(load_config(f.with_name(f.stem[: -len("render")] + "std.yaml")))
            ren = config_to_dict(cfg)
            for d in (std, ren):
                d["loss"].pop("render"), d["model"].pop("learned_opacity")
            assert std == ren, f


def test_configs_are_addressed_by_name_or_path(tmp_path, monkeypatch, capsys):
    names = config_names()
    assert names == sorted(p.stem for p in CONFIGS.glob("*.yaml")) and "tpvformer_occ3d_render" in names
    # a name is looked up inside the package, wherever the command runs
    monkeypatch.chdir(tmp_path)
    assert resolve_config("tpvformer_occ3d_render") == CONFIGS / "tpvformer_occ3d_render.yaml"
    assert load_config("tiny_synthetic_std") == load_config(CONFIGS / "tiny_synthetic_std.yaml")
    # a path is a path: a local file of the same stem wins over nothing, and is read as given
    own = tmp_path / "tiny_synthetic_std.yaml"
    own.write_text("optim: {lr: 0.5}\n")
    assert load_config("tiny_synthetic_std.yaml").optim.lr == 0.5
    assert load_config("./tiny_synthetic_std.yaml").optim.lr == 0.5
    assert load_config("tiny_synthetic_std").optim.lr != 0.5
    with pytest.raises(FileNotFoundError, match="config file not found: missing.yaml"):
        load_config("missing.yaml")
    with pytest.raises(FileNotFoundError, match="nor a shipped config name; shipped: .*surroundocc_kitti360_render, "):
        load_config("tpvformer_kitti360_render")
    # the command line: a name, the resolved config printed, an unknown name listed
    from gaussrender.cli import main

    assert main(["train", "--config", "tiny_synthetic_render", "--print-config", "--set", "optim.lr=0.25"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.25 and printed["loss"]["render"] is True
    assert main(["train", "--config", "nope", "--run-dir", str(tmp_path / "run")]) == 2
    assert "tiny_synthetic_std" in capsys.readouterr().err
    assert main(["train", "--config", "tiny_synthetic_std"]) == 2
    assert "--run-dir is required" in capsys.readouterr().err
