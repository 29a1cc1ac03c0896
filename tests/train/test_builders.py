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


def test_relative_info_paths_follow_data_root(tmp_path, monkeypatch):
    from gaussrender.train.builders import resolve_infos
    from gaussrender.train.config import load_config

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "infos_train.pkl").write_bytes(b"")
    # the shipped config's relative info path follows --set data.root
    cfg = load_config("tpvformer_occ3d_std", [f"data.root={tmp_path / 'a'}", "data.train_infos=infos_train.pkl"])
    assert resolve_infos(cfg.data, "train") == str(tmp_path / "a" / "infos_train.pkl")
    # and a root given on the command line (predict --data)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "infos_train.pkl").write_bytes(b"")
    assert resolve_infos(cfg.data, "train", str(tmp_path / "b")) == str(tmp_path / "b" / "infos_train.pkl")
    # an absolute path stays
    absolute = str(tmp_path / "b" / "infos_train.pkl")
    cfg = load_config("tpvformer_occ3d_std", [f"data.root={tmp_path / 'a'}", f"data.train_infos={absolute}"])
    assert resolve_infos(cfg.data, "train") == absolute
    # missing: named, with where it looked and how to write them
    cfg = load_config("tpvformer_occ3d_std", [f"data.root={tmp_path / 'a'}"])
    with pytest.raises(
        FileNotFoundError, match=r"data.val_infos: info file not found: .*relative to data.root.*prepare"
    ):
        resolve_infos(cfg.data, "val")
    # an older config's path relative to the working directory still works, with a warning
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        "tpvformer_occ3d_std", [f"data.root={tmp_path / 'elsewhere'}", "data.train_infos=a/infos_train.pkl"]
    )
    with pytest.warns(UserWarning, match="relative to data.root"):
        assert resolve_infos(cfg.data, "train") == "a/infos_train.pkl"
