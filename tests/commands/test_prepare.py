"""`gaussrender prepare`: info files from the official nuScenes tables (the tables fixture), that
a shipped config reads once pointed at them; KITTI-360's calibration installed where the reader
looks. Bad input is one named `error:` line."""

import json

import numpy as np
import pytest

from gaussrender import OCC3D_NUSCENES
from gaussrender.cli import main
from gaussrender.data import load_infos, load_nuscenes_tables, read_kitti360_calibration, write_occ3d_sample
from gaussrender.train.builders import build_dataset
from gaussrender.train.config import load_config
from tests.data.synthetic import synthetic_scene, write_tables


def _two_scene_tables(root, version="v1.0-mini", names=("scene-0061", "scene-0103")):
    """The tables fixture (one scene of four samples) split into two scenes of two samples."""
    samples = synthetic_scene("scene-x", 4)
    write_tables(root, samples, version=version, scene_name=names[0])
    d = root / version
    rows = json.loads((d / "sample.json").read_text())
    rows[1]["next"], rows[2]["prev"] = "", ""
    for r in rows[2:]:
        r["scene_token"] = "sc2"
    (d / "sample.json").write_text(json.dumps(rows))
    (scene,) = json.loads((d / "scene.json").read_text())
    first = dict(scene, last_sample_token=samples[1].token, nbr_samples=2)
    second = dict(scene, token="sc2", name=names[1], first_sample_token=samples[2].token, nbr_samples=2)
    (d / "scene.json").write_text(json.dumps([first, second]))
    return samples


def _prepare(*argv):
    return main(["prepare", *map(str, argv)])


def test_nuscenes_tables_to_train_and_val_info_files_a_config_reads(tmp_path, capsys):
    samples = _two_scene_tables(tmp_path / "nuscenes", version="v1.0-trainval", names=("scene-0001", "scene-0002"))
    labels = tmp_path / "occ3d"
    labels.mkdir()
    (labels / "annotations.json").write_text(json.dumps({"train_split": ["scene-0001"], "val_split": ["scene-0002"]}))
    code = _prepare(
        "nuscenes",
        "--dataroot",
        tmp_path / "nuscenes",
        "--version",
        "v1.0-trainval",
        "--splits",
        labels / "annotations.json",
        "--out",
        labels,
    )
    out = capsys.readouterr().out
    assert code == 0
    train, val = load_infos(labels / "gaussrender_infos_train.json"), load_infos(labels / "gaussrender_infos_val.json")
    assert [s.token for s in train] == [s.token for s in samples[:2]] and {s.scene for s in train} == {"scene-0001"}
    assert [s.token for s in val] == [s.token for s in samples[2:]] and {s.scene for s in val} == {"scene-0002"}
    # the same calibration as reading the tables directly
    tables = {s.token: s for s in load_nuscenes_tables(tmp_path / "nuscenes", "v1.0-trainval")}
    for s in train + val:
        ref = tables[s.token]
        assert s.cameras.keys() == ref.cameras.keys() and s.lidar_path == ref.lidar_path
        for name, cam in s.cameras.items():
            np.testing.assert_allclose(cam.intrinsics, ref.cameras[name].intrinsics)
            np.testing.assert_allclose(cam.sensor2ego.matrix(), ref.cameras[name].sensor2ego.matrix())

    # the printed --set arguments point a shipped config at them; the data root moves the info files
    (line,) = [x.strip() for x in out.splitlines() if x.strip().startswith("--set")]
    overrides = [a for a in line.split() if a != "--set"]
    assert f"data.root={labels.resolve()}" in overrides
    for s in train + val:  # labels under the tables' scene names
        sem = np.full(OCC3D_NUSCENES.shape, OCC3D_NUSCENES.empty_index, np.uint8)
        write_occ3d_sample(labels, s.scene, s.token, sem, np.ones(sem.shape, bool), np.ones(sem.shape, bool))
    cfg = load_config("tpvformer_occ3d_std", overrides)
    assert len(build_dataset(cfg.data, "train", load_images=False)) == 2
    assert len(build_dataset(cfg.data, "val", load_images=False)) == 2
    moved = tmp_path / "moved"
    labels.rename(moved)
    cfg = load_config("tpvformer_occ3d_std", [*overrides, f"data.root={moved}"])
    assert [i["token"] for i in build_dataset(cfg.data, "val", load_images=False)] == [s.token for s in samples[2:]]


def test_mini_has_its_split_built_in_and_no_split_writes_one_file(tmp_path, capsys):
    _two_scene_tables(tmp_path / "nuscenes")  # scene-0061 (mini train), scene-0103 (mini val)
    assert (
        _prepare("nuscenes", "--dataroot", tmp_path / "nuscenes", "--version", "v1.0-mini", "--out", tmp_path / "o")
        == 0
    )
    assert len(load_infos(tmp_path / "o" / "gaussrender_infos_train.json")) == 2
    assert len(load_infos(tmp_path / "o" / "gaussrender_infos_val.json")) == 2
    _two_scene_tables(tmp_path / "n2", version="v1.0-trainval")
    argv = ["nuscenes", "--dataroot", tmp_path / "n2", "--out", tmp_path / "all", "--prefix", "mine"]
    assert _prepare(*argv) == 0
    assert len(load_infos(tmp_path / "all" / "mine_all.json")) == 4
    assert "no split given" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--version", "v9"], "nuScenes tables not found"),
        (["--prefix", "../evil"], "--prefix must be a plain file name"),
        (["--splits", "SPLITS"], "'val_split' must be a list"),
        (["--splits", "MISSING"], "not found"),
    ],
)
def test_bad_nuscenes_input_is_one_named_line(tmp_path, capsys, extra, message):
    _two_scene_tables(tmp_path / "nuscenes", version="v1.0-trainval")
    (tmp_path / "splits.json").write_text(json.dumps({"train_split": ["scene-0061"]}))
    extra = [
        str(tmp_path / "splits.json") if a == "SPLITS" else str(tmp_path / "nope.json") if a == "MISSING" else a
        for a in extra
    ]
    code = _prepare("nuscenes", "--dataroot", tmp_path / "nuscenes", "--out", tmp_path / "o", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("gaussrender prepare: error:") and message in err[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_kitti360_calibration_is_installed_where_the_reader_looks(tmp_path, capsys):
    calib = tmp_path / "KITTI-360" / "calibration"
    calib.mkdir(parents=True)
    (calib / "perspective.txt").write_text(
        "image_00: kitti360_cam\nP_rect_00: 500.0 0.0 700.0 0.0 0.0 500.0 190.0 0.0 0.0 0.0 1.0 0.0\n"
    )
    (calib / "calib_cam_to_velo.txt").write_text("0 0 1 0.5 -1 0 0 0 0 -1 0 -0.1\n")
    root = tmp_path / "sscbench"
    root.mkdir()
    assert _prepare("kitti360", "--calibration", calib, "--root", root) == 0
    got = read_kitti360_calibration(root)
    np.testing.assert_allclose(got.intrinsics, [[500, 0, 700], [0, 500, 190], [0, 0, 1]])
    assert "cam_from_velo" in capsys.readouterr().out
    # a corrupt file is refused by name and nothing is written
    (calib / "perspective.txt").write_text("P_rect_00: 1 2 3\n")
    other = tmp_path / "other"
    other.mkdir()
    assert _prepare("kitti360", "--calibration", calib, "--root", other) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "perspective.txt" in err[0] and not (other / "calibration").exists()


def test_kitti360_calibration_files_are_checked_before_they_are_read(tmp_path, capsys):
    calib = tmp_path / "calibration"
    calib.mkdir()
    (calib / "perspective.txt").mkdir()  # a directory in a file's place
    (calib / "calib_cam_to_velo.txt").write_bytes(b"0 " * (1 << 20))  # over the size limit
    root = tmp_path / "root"
    root.mkdir()
    assert _prepare("kitti360", "--calibration", calib, "--root", root) == 2
    assert "is not a regular file" in capsys.readouterr().err
    (calib / "perspective.txt").rmdir()
    (calib / "perspective.txt").write_text("P_rect_00: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    assert _prepare("kitti360", "--calibration", calib, "--root", root) == 2
    assert "is not a calibration file" in capsys.readouterr().err
    assert not (root / "calibration").exists()
