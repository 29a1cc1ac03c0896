"""Config -> datasets/model: errors name what is wrong."""

from __future__ import annotations

import pytest

from gaussrender.train.builders import build_dataset, build_model_from_config
from gaussrender.train.config import config_from_dict


def test_missing_infos_is_named(tmp_path):
    cfg = config_from_dict({"data": {"root": str(tmp_path), "format": "occ3d"}})
    with pytest.raises(ValueError, match="data.train_infos is empty"):
        build_dataset(cfg.data, "train")
    with pytest.raises(ValueError, match="split must be"):
        build_dataset(cfg.data, "test")


def test_missing_root_is_named(tmp_path):
    cfg = config_from_dict({"data": {"root": str(tmp_path / "nowhere"), "train_infos": "x.json"}})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset(cfg.data, "train")


def test_grid_must_match_reader(tmp_path):
    cfg = config_from_dict(
        {"data": {"root": str(tmp_path), "grid": "surroundocc", "format": "occ3d", "train_infos": "infos.json"}}
    )
    with pytest.raises(ValueError, match="data.grid 'surroundocc' does not match the 'occ3d' reader's grid"):
        build_dataset(cfg.data, "train")


def test_model_matches_config():
    cfg = config_from_dict(
        {"model": {"name": "tpvformer", "size": "tiny"}, "data": {"image_size": [32, 48], "num_cameras": 2}}
    )
    model = build_model_from_config(cfg)
    assert model.cfg.num_cameras == 2 and model.cfg.image_size == (32, 48)
    assert len(list(model.backbone_parameters())) > 0


def test_missing_backbone_weights_named(tmp_path):
    cfg = config_from_dict(
        {
            "model": {"name": "tpvformer", "size": "tiny", "backbone_weights": str(tmp_path / "r18.pth")},
            "data": {"image_size": [32, 48], "num_cameras": 2},
        }
    )
    with pytest.raises(FileNotFoundError, match="r18.pth"):
        build_model_from_config(cfg)
