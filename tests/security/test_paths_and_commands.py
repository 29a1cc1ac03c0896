"""Names from data files never escape their folder; commands refuse bad inputs up front.

Traversal tokens, scene names and stored image paths are refused by name before they
become paths; ``predict`` and ``eval`` given hostile inputs exit with ``error: ...`` and
code 2, write nothing outside ``--out`` and run no payload.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussrender import OCC3D_NUSCENES
from gaussrender.cli import main
from gaussrender.data import (
    DataFileError,
    Occ3DNuScenes,
    kitti360_sequence,
    load_infos,
    load_nuscenes_tables,
    occ3d_label_path,
    resolve_data_path,
    surroundocc_label_path,
    write_infos_json,
    write_kitti360_sample,
    write_occ3d_sample,
)
from gaussrender.train.checkpoint import load_checkpoint, rng_state, save_atomic
from tests.data.synthetic import synthetic_scene, write_tables

from .hostile import hostile_pickles, malicious_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"
BAD_NAMES = ["../../escaped", "/abs/escaped", "a/b", "..", ".", "", "a\\b", "nul\x00x", "C:escaped"]


def _infos_with(tmp_path: Path, field: str, value, name: str = "infos.json") -> Path:
    path = write_infos_json(tmp_path / name, synthetic_scene("scene-0001", 2))
    data = json.loads(path.read_text())
    data["infos"][1][field] = value
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("bad", BAD_NAMES + [123, None])
def test_info_tokens_that_are_not_file_names_are_refused(tmp_path, bad):
    path = _infos_with(tmp_path, "token", bad)
    with pytest.raises(DataFileError, match=r"infos.json infos\[1\].*token") as err:
        load_infos(path)
    assert err.value.path == path


@pytest.mark.parametrize("bad", ["../evil", "scene/../..", "/etc"])
def test_scene_names_that_are_not_file_names_are_refused(tmp_path, bad):
    with pytest.raises(DataFileError, match=r"infos.json infos\[1\].*scene name"):
        load_infos(_infos_with(tmp_path, "scene_name", bad))


def test_pickled_infos_get_the_same_checks(tmp_path):
    samples = write_infos_json(tmp_path / "i.json", synthetic_scene("scene-0001", 1))
    data = json.loads(samples.read_text())
    data["infos"][0]["token"] = "../../escaped"
    path = tmp_path / "infos.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(
        DataFileError, match=r"infos.pkl infos\[0\].*token '../../escaped' cannot be used as a file name"
    ):
        load_infos(path)


def test_datasets_check_tokens_of_samples_built_in_code(tmp_path):
    (s,) = synthetic_scene("scene-0001", 1)
    with pytest.raises(DataFileError, match="token '../x'"):
        Occ3DNuScenes(tmp_path, [replace(s, token="../x")])
    with pytest.raises(ValueError, match=r"infos.json holds no samples"):
        path = tmp_path / "infos.json"
        path.write_text(json.dumps({"infos": []}))
        Occ3DNuScenes(tmp_path, path)


def test_label_paths_and_writers_refuse_traversal(tmp_path):
    labels = np.full(OCC3D_NUSCENES.shape, 17, np.uint8)
    for bad in BAD_NAMES:
        with pytest.raises(DataFileError):
            occ3d_label_path(tmp_path, "scene", bad)
        with pytest.raises(DataFileError):
            occ3d_label_path(tmp_path, bad, "token")
    with pytest.raises(DataFileError):
        write_occ3d_sample(tmp_path / "root", "scene", "../../escaped", labels, labels > 0, labels > 0)
    with pytest.raises(DataFileError, match="lidar_path base name"):
        surroundocc_label_path(tmp_path, "samples/..")
    with pytest.raises(DataFileError, match="frame"):
        write_kitti360_sample(tmp_path / "root", 6, "../../escaped", np.zeros((256, 256, 32), np.uint8))
    for bad in ("2013_05_28_drive_0006_sync/../..", "2013_/etc", 10**6, True, 1.5):
        with pytest.raises(ValueError, match="KITTI-360 sequence"):
            kitti360_sequence(bad)
    assert kitti360_sequence("06") == "2013_05_28_drive_0006_sync"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was written anywhere


def test_stored_image_paths_stay_under_data_root(tmp_path):
    root = tmp_path / "nuscenes"
    # the author's prefix (absolute, relative, Windows separators) is replaced by data_root
    assert resolve_data_path("./data/nuscenes\\samples/CAM_FRONT/x.jpg", root) == root / "samples/CAM_FRONT/x.jpg"
    assert resolve_data_path("/mnt/other/samples/CAM_FRONT/x.jpg", root) == root / "samples/CAM_FRONT/x.jpg"
    assert resolve_data_path("./images/x.jpg", root) == root / "images/x.jpg"
    for bad in (
        "../../etc/passwd",
        "/etc/passwd",
        "samples/../../../etc/passwd",
        "C:\\Windows\\x.jpg",
        "images/\x00x.jpg",
        "",
    ):
        with pytest.raises(DataFileError, match="image path"):
            resolve_data_path(bad, root)


def test_official_tables_with_traversal_or_loops_are_refused(tmp_path):
    samples = synthetic_scene("scene-0001", 3)
    write_tables(tmp_path, samples, "v1.0-mini")
    table = tmp_path / "v1.0-mini" / "scene.json"
    scenes = json.loads(table.read_text())
    good = table.read_text()
    scenes[0]["name"] = "../../escaped"
    table.write_text(json.dumps(scenes))
    with pytest.raises(DataFileError, match="scene name '../../escaped'"):
        load_nuscenes_tables(tmp_path, "v1.0-mini")
    table.write_text(good)
    sample_table = tmp_path / "v1.0-mini" / "sample.json"
    records = json.loads(sample_table.read_text())
    records[-1]["next"] = records[0]["token"]  # the last sample points back to the first
    sample_table.write_text(json.dumps(records))
    with pytest.raises(DataFileError, match="loops"):
        load_nuscenes_tables(tmp_path, "v1.0-mini")
    sample_table.write_text("{not json")
    with pytest.raises(DataFileError, match="sample.json: nuScenes table is not valid JSON"):
        load_nuscenes_tables(tmp_path, "v1.0-mini")


# ----------------------------------------------------------------------------- commands
def _occ3d_gt(tmp_path: Path, infos_name: str = "infos.json") -> tuple[list, Path]:
    samples = synthetic_scene("scene-0001", 1)
    labels = np.full(OCC3D_NUSCENES.shape, 17, np.uint8)
    for s in samples:
        write_occ3d_sample(tmp_path / "gt", s.scene, s.token, labels, labels < 17, labels < 17)
    return samples, write_infos_json(tmp_path / infos_name, samples)


def test_predict_with_traversal_token_writes_nothing_and_says_why(tmp_path, capsys):
    _, infos = _occ3d_gt(tmp_path)
    data = json.loads(infos.read_text())
    data["infos"][0]["token"] = "../../escaped"
    infos.write_text(json.dumps(data))
    ckpt = tmp_path / "ckpt.pt"
    save_atomic({"model": {}}, ckpt)
    out = tmp_path / "run" / "pred"
    code = main(
        [
            "predict",
            "--config",
            str(CONFIGS / "tiny_synthetic_render.yaml"),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--data",
            str(tmp_path / "gt"),
            "--infos",
            str(infos),
            "--set",
            "train.device=cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"gaussrender predict: error: {infos} infos[0]" in err and "'../../escaped'" in err
    assert not list(tmp_path.rglob("escaped*")) and not out.exists()


def test_predict_refuses_a_malicious_checkpoint_without_running_it(tmp_path, capsys):
    _, infos = _occ3d_gt(tmp_path)
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "evil.pt"
    ckpt.write_bytes(malicious_checkpoint(marker))
    code = main(
        [
            "predict",
            "--config",
            str(CONFIGS / "tiny_synthetic_render.yaml"),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "pred"),
            "--data",
            str(tmp_path / "gt"),
            "--infos",
            str(infos),
            "--set",
            "train.device=cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"error: {ckpt}: refusing checkpoint content" in err
    assert not marker.exists()


def _eval(tmp_path: Path, infos: Path, *extra: str) -> int:
    (tmp_path / "pred").mkdir(exist_ok=True)
    return main(
        [
            "eval",
            "--benchmark",
            "occ3d",
            "--gt",
            str(tmp_path / "gt"),
            "--infos",
            str(infos),
            "--pred",
            str(tmp_path / "pred"),
            "--no-rayiou",
            *extra,
        ]
    )


def test_eval_refuses_bad_device_and_out_before_evaluating(tmp_path, capsys):
    samples, infos = _occ3d_gt(tmp_path)
    labels = np.full(OCC3D_NUSCENES.shape, 17, np.uint8)
    (tmp_path / "pred").mkdir()
    np.savez(tmp_path / "pred" / f"{samples[0].token}.npz", semantics=labels)
    # no CUDA here: "cuda" is unusable; with CUDA, device 99 is
    cuda = "cuda:99" if torch.cuda.is_available() else "cuda"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for extra, message in [
        (["--device", cuda], f"--device '{cuda}'"),
        (["--device", "warp9"], "--device 'warp9' is not a torch device"),
        (["--out", str(blocker / "results.json")], f"cannot write there ({blocker} is not a directory)"),
        (["--out", str(tmp_path)], f"--out {tmp_path} is a directory"),
    ]:
        assert _eval(tmp_path, infos, *extra) == 2, extra
        captured = capsys.readouterr()
        assert captured.err.startswith("gaussrender eval: error: ") and message in captured.err, captured.err
        assert "samples:" not in captured.out  # refused before any scoring
    assert _eval(tmp_path, infos, "--out", str(tmp_path / "new" / "r.json")) == 0
    assert json.loads((tmp_path / "new" / "r.json").read_text())["num_samples"] == 1


def test_eval_names_empty_and_hostile_info_files(tmp_path, capsys):
    _occ3d_gt(tmp_path)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"infos": []}))
    assert _eval(tmp_path, empty) == 2
    assert f"{empty} holds no samples" in capsys.readouterr().err
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(hostile_pickles(marker)["object dtype with cleared flags (segfault trick)"])
    assert _eval(tmp_path, evil) == 2
    assert f"gaussrender eval: error: {evil}: refusing numpy dtype 'O8'" in capsys.readouterr().err
    evil.write_bytes(hostile_pickles(marker)["STACK_GLOBAL+REDUCE builtins.exec"])
    assert _eval(tmp_path, evil) == 2
    assert "refusing to unpickle builtins.exec" in capsys.readouterr().err
    assert not marker.exists()


def test_checkpoints_hold_only_weights_only_types_and_rng_states_round_trip(tmp_path):
    import random

    path = tmp_path / "rng.pt"
    save_atomic({"rng": rng_state()}, path)
    state = load_checkpoint(path)  # weights_only=True inside
    py, npy = state["rng"]["python"], state["rng"]["numpy"]
    assert py["internal"].dtype == torch.int64 and npy["key"].shape == (624,)
    # the stored words are exactly the generators' states
    assert tuple(py["internal"].tolist()) == random.getstate()[1]
    np.testing.assert_array_equal(npy["key"].numpy(), np.random.get_state()[1])
