"""Issue 24 (Hardening II): no input may exhaust memory or time, no stale cache is trusted.

Hostile inputs whose failure mode is a blow-up (alias bombs, deep nesting, zip bombs, a
FIFO, ``/dev/zero``) run in child processes (:func:`run_bounded`) whose address space
(RLIMIT_AS) is capped at 512 MiB above what the interpreter maps with torch and gaussrender
imported, with a time limit; the others run in-process. Every case must be refused by name:
the file, key or argument, and what was expected.
"""

from __future__ import annotations

import io
import json
import os
import re
import textwrap
from pathlib import Path

import pytest
import torch

import gaussrender as gr
from gaussrender._checks import FootprintError, set_memory_limit
from gaussrender.cli import main
from gaussrender.data import DataFileError, load_infos, load_nuscenes_tables, write_infos_json
from gaussrender.data.files import read_json
from gaussrender.data.images import common_image_size
from gaussrender.train.checkpoint import (
    MAX_CHECKPOINT_BYTES,
    checkpoint_byte_limit,
    load_checkpoint,
    load_model_state,
    save_atomic,
)
from gaussrender.train.config import ConfigError, config_from_dict, load_config
from tests.data.synthetic import synthetic_scene, write_png, write_tables

from .hostile import CHILD_MEMORY, deflate_bomb_checkpoint, patch_declared_size, run_bounded

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"


def _alias_bomb(levels: int = 8, width: int = 9) -> str:
    """``{a: &a [x, ...], b: &b [*a, ...], ...}``: width**levels values from ~40 * levels bytes."""
    parts = ["a0: &a0 [" + ",".join(["x"] * width) + "]"]
    for i in range(1, levels):
        parts.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "{" + ", ".join(parts) + "}"


# ------------------------------------------------------------------ 1. YAML: --set and files
def test_the_reported_set_alias_bomb_is_refused_in_a_bounded_child(tmp_path):
    bomb = _alias_bomb()  # 9**8 = 43 million values in ~370 bytes, as reported
    assert len(bomb) < 400
    proc, seconds = run_bounded(
        [
            "-m",
            "gaussrender",
            "train",
            "--config",
            "tiny_synthetic_render",
            "--set",
            f"optim.lr={bomb}",
            "--print-config",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--set optim.lr: the value" in proc.stderr and "expands to more than 10000 values" in proc.stderr
    assert len(proc.stderr) < 400  # the value is never echoed whole, let alone expanded
    assert seconds < 40


YAML_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from gaussrender.train.config import ConfigError, load_config
    out = {}
    for name, kind, text in json.loads(Path(sys.argv[1]).read_text()):
        start = time.monotonic()
        try:
            if kind == "file":
                path = Path(sys.argv[2]) / (name.replace(" ", "_") + ".yaml")
                path.write_text(text)
                load_config(path)
            else:
                load_config("tiny_synthetic_render", [text])
            out[name] = ["accepted", ""]
        except ConfigError as err:
            out[name] = ["ConfigError", str(err)]
        except BaseException as err:
            out[name] = [type(err).__name__, str(err)[:300]]
        out[name].append(time.monotonic() - start)
    print(json.dumps(out))
    """
)

YAML_CASES = {
    # name: (file or --set, text, expected words)
    "alias bomb in a file": ("file", "optim: {lr: 1.0e-3}\nx: " + _alias_bomb(), "expands to more than"),
    "deep nesting in a file": ("file", "model: " + "[" * 50_000 + "]" * 50_000, "nests deeper than 32 levels"),
    "deep mapping nesting in a file": ("file", "model: " + "{a: " * 5000 + "1" + "}" * 5000, "nests deeper"),
    "recursive anchor in a file": ("file", "model: &m {name: *m}\n", "inside its own anchor"),
    "5000-digit integer in a file": ("file", "train:\n  seed: " + "9" * 5000, "4300 digits"),
    "100000 scalars in a file": ("file", "loss:\n  class_weights: [" + ", ".join(["1"] * 100_000) + "]", "10000"),
    "deep nesting in --set": ("set", "optim.lr=" + "[" * 50_000 + "]" * 50_000, "nests deeper than 32 levels"),
    "recursive anchor in --set": ("set", "optim.lr=&a [*a]", "inside its own anchor"),
    "5000-digit integer in --set": ("set", "train.seed=" + "9" * 5000, "4300 digits"),
    "huge string in --set": ("set", "optim.lr=" + "x" * 100_000, "optim.lr: expected a number, got 'xxx"),
    "long key in --set": ("set", "optim." + "a." * 5000 + "b=1", "at most 8 dotted names"),
}


def test_hostile_yaml_documents_are_refused_by_name_in_a_bounded_child(tmp_path):
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps([(name, kind, text) for name, (kind, text, _) in YAML_CASES.items()]))
    proc, _ = run_bounded(["-c", YAML_CHILD, str(spec), str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    for name, (kind, _, words) in YAML_CASES.items():
        error, message, seconds = results[name]
        assert error == "ConfigError", (name, error, message)
        assert words in message, (name, message)
        assert len(message) < 500, (name, len(message))  # a short prefix at most
        where = "--set" if kind == "set" else str(tmp_path)
        assert message.startswith(where) or where in message[:300], (name, message)
        assert seconds < 5, (name, seconds)


def test_a_normal_config_with_anchors_still_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("optim: &o {lr: 1.0e-3}\nloss: {class_weights: &w [1.0, 2.0], render_weight: 2.0}\n")
    assert load_config(path).optim.lr == 1e-3
    cfg = load_config("tiny_synthetic_render", ["data.image_size=[24, 44]", "optim.lr=2.0e-4"])
    assert cfg.data.image_size == (24, 44)


def test_a_huge_value_in_a_dict_config_is_echoed_as_a_short_prefix():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"optim": {"lr": "y" * 1_000_000}})
    assert len(str(err.value)) < 200 and "1000000 characters" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config_from_dict({"optim": {"lr": [[list(range(1000))] * 1000] * 1000}})
    assert len(str(err.value)) < 200
    with pytest.raises(ConfigError) as err:
        config_from_dict({"optim": {f"k{i}": 1 for i in range(100_000)}})
    assert len(str(err.value)) < 600 and "and 99995 more" in str(err.value)


# ------------------------------------------------------------------ 2. checkpoint zip bombs
CHECKPOINT_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from gaussrender.data import DataFileError
    from gaussrender.train.checkpoint import load_checkpoint
    out = {}
    for path in sys.argv[1:]:
        start = time.monotonic()
        try:
            load_checkpoint(path)
            out[path] = ["loaded", ""]
        except DataFileError as err:
            out[path] = ["DataFileError", str(err)]
        except BaseException as err:
            out[path] = [type(err).__name__, str(err)[:300]]
        out[path].append(time.monotonic() - start)
    print(json.dumps(out))
    """
)


def test_checkpoint_zip_bombs_are_refused_before_torch_load_in_a_bounded_child(tmp_path):
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(1 << 18)}, "step": 1}, buf)  # 1 MiB, stored
    declared = tmp_path / "declares_1GiB.pt"
    declared.write_bytes(patch_declared_size(buf.getvalue(), "data/0", 1 << 30))
    real = tmp_path / "deflate_64MiB.pt"
    real.write_bytes(deflate_bomb_checkpoint(64 << 20))  # ~64 kB on disk
    assert real.stat().st_size < 1 << 20
    proc, _ = run_bounded(["-c", CHECKPOINT_CHILD, str(declared), str(real)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    for path in (declared, real):
        error, message, seconds = results[str(path)]
        assert error == "DataFileError", (path, error, message)
        assert message.startswith(f"{path}: refusing a checkpoint whose") and "inflate to" in message
        assert "a zip bomb?" in message
        assert seconds < 5


def test_checkpoint_limit_is_relative_to_the_model(tmp_path):
    model = torch.nn.Linear(100, 100)  # 40 kB of weights
    assert checkpoint_byte_limit(model) == 4 * 101 * 100 * 4 + (64 << 20)
    assert checkpoint_byte_limit(None) == MAX_CHECKPOINT_BYTES
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "pad": torch.zeros(1 << 20)}, buf)  # 4 MiB, stored
    path = tmp_path / "big_for_its_model.pt"
    path.write_bytes(patch_declared_size(buf.getvalue(), "data/2", 70 << 20))  # < 16 x the file
    with pytest.raises(DataFileError, match=r"big_for_its_model.pt: refusing .* more than the limit for this model"):
        load_checkpoint(path, model=model)
    ok = tmp_path / "ok.pt"
    save_atomic({"model": model.state_dict(), "step": 3}, ok)
    assert load_checkpoint(ok, model=model)["step"] == 3


def test_a_checkpoint_that_is_not_a_zip_or_not_a_file_is_named(tmp_path):
    for name, data in [("empty.pt", b""), ("text.pt", b"hello" * 100)]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataFileError, match=rf"{name}: not a readable checkpoint"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(DataFileError, match="not a regular file"):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------ 3. project_points footprint
def test_project_points_refuses_a_huge_image_with_the_named_footprint_error():
    k = torch.tensor([[[10.0, 0, 2], [0, 10, 2], [0, 0, 1]]])
    with pytest.raises(FootprintError, match=r"^image_size: z-buffering 1 point\(s\) into 1 view\(s\) of 100000x"):
        gr.project_points(torch.zeros(1, 3), None, torch.eye(4)[None], k, (100_000, 100_000))
    set_memory_limit(1 << 30)
    try:  # 3 M points into 6 views need ~1.2 GiB of float64 buffers
        with pytest.raises(FootprintError, match=r"^points: z-buffering 3000000 point\(s\) into 6 view"):
            gr.project_points(torch.zeros(3_000_000, 3), None, torch.eye(4).repeat(6, 1, 1), k.repeat(6, 1, 1), (4, 4))
    finally:
        set_memory_limit(None)
    depth, _ = gr.project_points(torch.tensor([[0.0, 0, 5]]), None, torch.eye(4)[None], k, (4, 4))
    assert float(depth[0, 2, 2]) == 5.0


MEMORY_CHILD = textwrap.dedent(
    """
    import resource, torch, gaussrender as gr
    from gaussrender._checks import FootprintError, memory_limit
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_limit("cpu")
    assert limit is not None and limit < soft, (limit, soft)
    k = torch.tensor([[[10.0, 0, 2], [0, 10, 2], [0, 0, 1]]])
    try:
        gr.project_points(torch.zeros(1, 3), None, torch.eye(4)[None], k, (8000, 8000))  # ~2 GiB
    except FootprintError as err:
        print("refused:", err)
    """
)


def test_the_memory_estimate_honours_the_address_space_limit():
    """Under ``ulimit -v`` a request that physical memory would allow is refused by name,
    not left to fail in the allocator."""
    proc, _ = run_bounded(["-c", MEMORY_CHILD])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("refused: image_size: z-buffering") and "GiB are available on cpu" in proc.stdout
    assert CHILD_MEMORY <= 512 << 20


# ------------------------------------------------------------------ 4. stale synthetic dataset
def _synthetic(root: Path, **synthetic) -> object:
    values = {"num_scenes": 1, "num_val_scenes": 0, "seed": 0, "image_size": [12, 22]}
    values.update(synthetic)
    return config_from_dict({"data": {"grid": "synthetic_small", "root": str(root), "synthetic": values}}).data


def test_a_synthetic_dataset_is_rewritten_when_its_description_or_content_changes(tmp_path):
    from gaussrender.train.builders import prepare_synthetic
    from gaussrender.train.fingerprint import MANIFEST

    infos = tmp_path / "synthetic_infos_train.json"
    prepare_synthetic(_synthetic(tmp_path))
    first = infos.read_bytes()
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["description"]["seed"] == 0 and manifest["files"]
    stamp = infos.stat().st_mtime_ns
    prepare_synthetic(_synthetic(tmp_path))  # the same description: reused, not rewritten
    assert infos.stat().st_mtime_ns == stamp
    prepare_synthetic(_synthetic(tmp_path, seed=7))  # another seed: written again
    assert infos.read_bytes() != first
    assert json.loads((tmp_path / MANIFEST).read_text())["description"]["seed"] == 7
    label = next(tmp_path.glob("gts/*/*/labels.npz"))
    label.write_bytes(b"tampered")  # content changed after the manifest: written again
    prepare_synthetic(_synthetic(tmp_path, seed=7))
    assert label.read_bytes() != b"tampered"
    (tmp_path / MANIFEST).write_text("{not json")  # a broken manifest is not trusted either
    prepare_synthetic(_synthetic(tmp_path, seed=7))
    assert json.loads((tmp_path / MANIFEST).read_text())["description"]["seed"] == 7


# ------------------------------------------------------------------ 5. stale class_counts.json
class _Labels(torch.utils.data.Dataset):
    def __init__(self, value: int, n: int = 2) -> None:
        self.value, self.n = value, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"labels": torch.full((4, 4, 2), self.value, dtype=torch.long)}


def test_class_counts_are_reused_only_for_the_same_dataset(tmp_path):
    from gaussrender.train.distributed import DistInfo
    from gaussrender.train.training_loss import class_weights_for

    cfg = config_from_dict({"loss": {"class_weighting": "inverse_log_frequency"}})
    grid = gr.OCC3D_NUSCENES
    info = DistInfo()
    cache = tmp_path / "class_counts.json"
    a = class_weights_for(cfg, grid, _Labels(3), info, cache, identity={"dataset": "a"})
    assert json.loads(cache.read_text())["identity"] == {"dataset": "a"}
    assert torch.equal(class_weights_for(cfg, grid, _Labels(5), info, cache, identity={"dataset": "a"}), a)  # reused
    with pytest.warns(RuntimeWarning, match="class_counts.json holds class counts of another dataset"):
        b = class_weights_for(cfg, grid, _Labels(5), info, cache, identity={"dataset": "b"})
    assert not torch.equal(a, b) and json.loads(cache.read_text())["identity"] == {"dataset": "b"}
    for corrupt in [b"{not json", b"[1, 2]", json.dumps({"identity": {"dataset": "b"}, "counts": [-1] * 18}).encode()]:
        cache.write_bytes(corrupt)
        with pytest.warns(RuntimeWarning, match="or is corrupt"):
            assert torch.equal(class_weights_for(cfg, grid, _Labels(5), info, cache, identity={"dataset": "b"}), b)
    cache.unlink()
    cache.mkdir()
    with pytest.raises(DataFileError, match="class_counts.json: expected a regular file"):
        class_weights_for(cfg, grid, _Labels(5), info, cache, identity={"dataset": "b"})


def test_the_dataset_identity_follows_the_info_file_and_the_grid(tmp_path):
    from gaussrender.data import Occ3DNuScenes
    from gaussrender.train.training_loss import dataset_identity

    (tmp_path / "gt").mkdir()
    infos = write_infos_json(tmp_path / "infos.json", synthetic_scene("scene-0001", 2))
    cfg = config_from_dict({"data": {"root": str(tmp_path / "gt"), "train_infos": str(infos)}})
    ds = Occ3DNuScenes(tmp_path / "gt", infos)
    first = dataset_identity(cfg, gr.OCC3D_NUSCENES, ds)
    assert first == dataset_identity(cfg, gr.OCC3D_NUSCENES, ds)
    assert first != dataset_identity(cfg, gr.SURROUNDOCC_NUSCENES, ds)
    write_infos_json(infos, synthetic_scene("scene-0002", 2))  # same path, other content
    assert (
        first["infos_sha256"]
        != dataset_identity(cfg, gr.OCC3D_NUSCENES, Occ3DNuScenes(tmp_path / "gt", infos))["infos_sha256"]
    )


# ------------------------------------------------------------------ 6. nuScenes tables
def _tables(tmp_path: Path) -> Path:
    write_tables(tmp_path, synthetic_scene("scene-0042", 2))
    return tmp_path / "v1.0-mini"


def _edit_table(directory: Path, name: str, edit) -> None:
    rows = json.loads((directory / f"{name}.json").read_text())
    edit(rows)
    (directory / f"{name}.json").write_text(json.dumps(rows))


def _camera_calib(rows):
    return next(r for r in rows if r["token"] == "cal-CAM_FRONT")


@pytest.mark.parametrize(
    "table, edit, message",
    [
        (
            "calibrated_sensor",
            lambda rows: _camera_calib(rows).update(camera_intrinsic=[[1.0, float("nan"), 2], [0, 1, 2], [0, 0, 1]]),
            r"calibrated_sensor.json cal-CAM_FRONT \(CAM_FRONT\): camera_intrinsic: must be a finite 3x3 matrix, got "
            r"shape \(3, 3\) with 1 NaN/inf",
        ),
        (
            "calibrated_sensor",
            lambda rows: _camera_calib(rows).update(camera_intrinsic=[[1.0, 0], [0, 1]]),
            r"camera_intrinsic: must be a finite 3x3 matrix, got shape \(2, 2\)",
        ),
        (
            "calibrated_sensor",
            lambda rows: _camera_calib(rows).update(camera_intrinsic=[[1.0, 0, 2], [0, 1, 2], [0, 1, 1]]),
            r"camera_intrinsic: must be a pinhole matrix with last row \[0, 0, 1\]",
        ),
        (
            "calibrated_sensor",
            lambda rows: _camera_calib(rows).update(translation=[0.0, float("inf"), 1.0]),
            r"cal-CAM_FRONT \(CAM_FRONT\) sensor2ego translation must be 3 finite numbers",
        ),
        (
            "ego_pose",
            lambda rows: rows[1].update(rotation=[float("nan"), 0, 0, 0]),
            r"ego_pose.json pose-.* ego2global rotation must be 4 finite numbers",
        ),
        (
            "sample_data",
            lambda rows: rows[1].update(width=-1600),
            r"sample_data.json sd-.*: width must be an integer in \[1, 65536\] pixels, got -1600",
        ),
    ],
)
def test_table_calibration_is_checked_as_the_info_files_are(tmp_path, table, edit, message):
    directory = _tables(tmp_path)
    _edit_table(directory, table, edit)
    with pytest.raises(DataFileError, match=message) as err:
        load_nuscenes_tables(tmp_path, "v1.0-mini")
    assert err.value.path == directory


def test_eval_refuses_nan_table_intrinsics(tmp_path, capsys):
    from .test_paths_and_commands import _eval, _occ3d_gt

    _occ3d_gt(tmp_path)
    directory = _tables(tmp_path / "nus")
    _edit_table(
        directory, "calibrated_sensor", lambda r: _camera_calib(r).update(camera_intrinsic=[[float("nan")] * 3] * 3)
    )
    assert _eval(tmp_path, tmp_path / "nus", "--nuscenes-version", "v1.0-mini") == 2
    assert "camera_intrinsic: must be a finite 3x3 matrix" in capsys.readouterr().err


# ------------------------------------------------------------------ minor items
def test_integers_over_4300_digits_in_json_name_the_file(tmp_path):
    path = tmp_path / "infos.json"
    path.write_text('{"infos": [], "x": ' + "9" * 5000 + "}")
    with pytest.raises(DataFileError, match=rf"^{path}: info file holds a value Python refuses to build"):
        read_json(path, "info file")
    with pytest.raises(DataFileError, match="4300 digits"):
        load_infos(path)


@pytest.mark.parametrize("length", [201, 300, 5000])
def test_a_token_too_long_for_a_file_name_is_refused_by_name(tmp_path, length):
    path = write_infos_json(tmp_path / "infos.json", synthetic_scene("scene-0001", 1))
    data = json.loads(path.read_text())
    data["infos"][0]["token"] = "t" * length
    path.write_text(json.dumps(data))
    with pytest.raises(DataFileError, match=rf"infos\[0\]: token 't+'... has {length} bytes, more than the 200"):
        load_infos(path)


def test_duplicate_tokens_are_refused_not_scored_twice(tmp_path, capsys):
    from gaussrender.data import Occ3DNuScenes

    from .test_paths_and_commands import _eval, _occ3d_gt

    samples, _ = _occ3d_gt(tmp_path)
    infos = write_infos_json(tmp_path / "dup.json", [samples[0], samples[0]])
    with pytest.raises(DataFileError, match=r"dup.json: token '.*' appears twice \(samples 0 and 1\)"):
        load_infos(infos)
    with pytest.raises(DataFileError, match="appears twice"):
        Occ3DNuScenes(tmp_path / "gt", [samples[0], samples[0]])
    assert _eval(tmp_path, infos) == 2
    assert "appears twice" in capsys.readouterr().err


READER_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from gaussrender.data import read_occ3d_labels, load_infos, load_image, read_kitti360_labels
    from gaussrender.data.files import DataFileError
    readers = {"occ3d": read_occ3d_labels, "infos": load_infos, "image": load_image, "kitti360": read_kitti360_labels}
    out = {}
    for name, reader, path in json.loads(sys.argv[1]):
        try:
            readers[reader](path)
            out[name] = ["read", ""]
        except (DataFileError, FileNotFoundError) as err:
            out[name] = [type(err).__name__, str(err)]
        except BaseException as err:
            out[name] = [type(err).__name__, str(err)[:300]]
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX FIFOs and /dev/zero")
def test_gt_paths_that_are_fifos_directories_or_devices_are_named_not_missing(tmp_path):
    fifo = tmp_path / "labels.npz"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.npy"
    zero.symlink_to("/dev/zero")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    cases = [
        ("fifo", "occ3d", str(fifo), "is a FIFO"),
        ("dev zero", "kitti360", str(zero), "is a device"),
        ("dev zero infos", "infos", str(tmp_path / "zero.pkl"), "is a device"),
        ("directory", "infos", str(folder), "is a directory"),
        ("fifo image", "image", str(fifo), "is a FIFO"),
        ("missing", "occ3d", str(tmp_path / "nope.npz"), "not found"),
    ]
    (tmp_path / "zero.pkl").symlink_to("/dev/zero")
    proc, seconds = run_bounded(["-c", READER_CHILD, json.dumps([c[:3] for c in cases])], seconds=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    for name, _, path, words in cases:
        kind, message = results[name]
        assert kind == ("FileNotFoundError" if name == "missing" else "DataFileError"), (name, kind, message)
        assert path in message and words in message, (name, message)


def test_one_odd_camera_image_is_named(tmp_path):
    paths = [str(tmp_path / f"cam{i}.png") for i in range(6)]
    for i, p in enumerate(paths):
        write_png(Path(p), hw=(9, 16) if i != 4 else (1, 1))
    with pytest.raises(DataFileError, match=r"cam4.png is 1x1, the other 5 are 16x9") as err:
        common_image_size(paths, (900, 1600))
    assert err.value.path == Path(paths[4])
    os.unlink(paths[4])
    os.mkdir(paths[4])  # a directory in its place is named too (it was taken as "absent")
    with pytest.raises(DataFileError, match=r"cam4.png: the image is a directory"):
        common_image_size(paths, (900, 1600))


def test_run_dirs_that_are_files_are_named(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for run_dir, words in [(blocker, "is a file"), (blocker / "sub" / "run", f"is under {blocker}, which is a file")]:
        code = main(["train", "--config", "tiny_synthetic_render", "--run-dir", str(run_dir), "--no-progress"])
        assert code == 2
        assert f"error: --run-dir {run_dir} {words}" in capsys.readouterr().err


def test_a_second_train_on_one_run_dir_is_refused_by_name(tmp_path):
    from gaussrender.train.run import LOCK_FILE, run_dir_lock

    run_dir = tmp_path / "run"
    busy = rf"--run-dir {run_dir} is in use by another gaussrender train \(pid "
    with run_dir_lock(run_dir):
        with pytest.raises(ConfigError, match=busy), run_dir_lock(run_dir):
            pass
        # a second process: the CLI refuses before touching the data or the run directory
        proc, seconds = run_bounded(
            ["-m", "gaussrender", "train", "--config", "tiny_synthetic_render", "--run-dir", str(run_dir)],
            cwd=tmp_path,
        )
        assert proc.returncode == 2 and f"--run-dir {run_dir} is in use by another gaussrender train" in proc.stderr
        assert f"(pid {os.getpid()})" in proc.stderr
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]
    with run_dir_lock(run_dir):  # released with the first
        pass


# ------------------------------------------------------------------ predict and resume share the checks
def _surroundocc_tiny():
    from gaussrender.train.builders import build_model_from_config

    return build_model_from_config(load_config(CONFIGS / "tiny_synthetic_render.yaml"))


def _bad_model_entries():
    good = _surroundocc_tiny().state_dict()
    first = next(iter(good))
    other = config_from_dict({"model": {"name": "tpvformer", "size": "tiny"}, "data": {"image_size": [48, 88]}})
    from gaussrender.train.builders import build_model_from_config

    return {
        "no model": ({"step": 1}, r"no 'model' entry \(has \['step'\]\)"),
        "model of another type": ({"model": [1, 2]}, r"entry 'model' must be a dict of tensors, got list"),
        "non-tensor weight": ({"model": {**good, first: 3}}, r"must map names to tensors; 1 entries do not"),
        "missing weights": (
            {"model": {}},
            rf"does not fit this run \(model SurroundOcc\): weights {len(good)} missing",
        ),
        "extra weight": ({"model": {**good, "extra.w": torch.zeros(1)}}, r"1 unexpected \(e.g. \['extra.w'\]\)"),
        "wrong shape": (
            {"model": {**good, first: torch.zeros(3, 1)}},
            r"1 of another shape \(e.g. \[.*\[3, 1\] \(model",
        ),
        "another model": (
            {"model": build_model_from_config(other).state_dict(), "config": {"model": {"name": "tpvformer"}}},
            r"the checkpoint's config names model 'tpvformer'",
        ),
    }


def test_load_model_state_names_every_misfit(tmp_path):
    model = _surroundocc_tiny()
    for name, (state, message) in _bad_model_entries().items():
        with pytest.raises(DataFileError, match=message) as err:
            load_model_state(model, state, tmp_path / "c.pt")
        assert str(err.value).startswith(f"{tmp_path / 'c.pt'}: "), name


def test_predict_names_a_checkpoint_that_does_not_fit(tmp_path, capsys):
    from .test_paths_and_commands import _occ3d_gt

    _, infos = _occ3d_gt(tmp_path)
    for name, (state, message) in _bad_model_entries().items():
        ckpt = tmp_path / f"{name.replace(' ', '_')}.pt"
        save_atomic(state, ckpt)
        args = ["predict", "--config", "tiny_synthetic_render", "--checkpoint", str(ckpt), "--out", str(tmp_path / "p")]
        args += ["--data", str(tmp_path / "gt"), "--infos", str(infos), "--set", "train.device=cpu"]
        assert main(args) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"gaussrender predict: error: {ckpt}: "), (name, err)
        assert re.search(message, err), (name, err)


@pytest.mark.parametrize("key, value", [("step", -1), ("epoch", -5), ("step_in_epoch", 2.5), ("skipped_steps", True)])
def test_resume_refuses_counters_that_are_not_non_negative_ints(tmp_path, key, value):
    from gaussrender.train.loop import ResumeError
    from tests.train.helpers import tiny_config, tiny_trainer

    cfg = tiny_config(train={"epochs": 1, "max_steps": 1, "device": "cpu"})
    path = tiny_trainer(tmp_path / "a", cfg, n_train=1).save()
    state = torch.load(path, weights_only=True)
    state[key] = value
    save_atomic(state, path)
    with pytest.raises(ResumeError, match=rf"entry 'counters' .* {key} must be an integer in \[0, 2\*\*53\]"):
        tiny_trainer(tmp_path / "b", cfg, n_train=1).fit(resume=path)


# ------------------------------------------------------------------ sizes refused when the config is read
@pytest.mark.parametrize(
    "override, message",
    [
        ("data.image_size=[1000000, 1000000]", "data.image_size: expected (H, W) with each side <= 16384 pixels"),
        ("data.image_size=[16000, 16000]", "H x W <= 67108864"),
        ("data.synthetic.image_size=[100000, 8]", "data.synthetic.image_size: expected (H, W) with each side"),
        ("loss.render_image_size=[100000, 100000]", "loss.render_image_size: expected (H, W) with each side"),
        ("data.num_cameras=100000", "data.num_cameras: expected an integer <= 64"),
        ("data.num_workers=100000", "data.num_workers: expected an integer <= 256"),
        ("data.synthetic.num_scenes=1000000000", "data.synthetic.num_scenes: expected an integer <= 1000000"),
        ("loss.frustum_size=100000", "loss.frustum_size: expected an integer <= 64"),
    ],
)
def test_sizes_that_could_only_exhaust_memory_are_refused_with_the_config(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("tiny_synthetic_render", [override])


def test_eval_refuses_a_worker_count_that_would_exhaust_the_machine(tmp_path, capsys):
    from .test_paths_and_commands import _eval, _occ3d_gt

    _, infos = _occ3d_gt(tmp_path)
    assert _eval(tmp_path, infos, "--workers", "100000") == 2
    assert "--workers must be in [1, 256], got 100000" in capsys.readouterr().err


def test_a_huge_kitti360_calibration_file_is_refused_by_size(tmp_path):
    from gaussrender.data.kitti360 import read_kitti360_calibration

    (tmp_path / "calibration").mkdir()
    with open(tmp_path / "calibration" / "perspective.txt", "wb") as f:
        f.truncate(2 << 20)  # sparse: 2 MiB of NUL bytes, one endless line
    with pytest.raises(DataFileError, match=r"perspective.txt: 2097152 bytes is not a calibration file"):
        read_kitti360_calibration(tmp_path)


def test_voxels_from_points_refuses_a_grid_too_large_for_memory():
    from gaussrender.geometry.grid import VoxelGrid

    huge = VoxelGrid(
        name="huge",
        range_min=(0.0, 0.0, 0.0),
        range_max=(1e5, 1e5, 1e3),
        voxel_size=0.1,
        shape=(10**6, 10**6, 10**4),
        class_names=("a", "free"),
        empty_index=1,
        gaussian_scale=0.1,
    )
    with pytest.raises(FootprintError, match=r"^grid: labelling the 10000000000000000 voxels of grid 'huge'"):
        gr.voxels_from_points(huge, torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))


def test_predict_names_an_out_dir_that_cannot_be_created(tmp_path, capsys):
    from .test_paths_and_commands import _occ3d_gt

    _, infos = _occ3d_gt(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ckpt = tmp_path / "c.pt"
    save_atomic({"model": _surroundocc_tiny().state_dict()}, ckpt)
    args = ["predict", "--config", "tiny_synthetic_render", "--checkpoint", str(ckpt), "--out", str(blocker / "p")]
    assert main([*args, "--data", str(tmp_path / "gt"), "--infos", str(infos), "--set", "train.device=cpu"]) == 2
    assert f"error: --out {blocker / 'p'} cannot be created ({blocker} is a file)" in capsys.readouterr().err


def test_torchvision_weights_that_inflate_beyond_the_backbone_are_refused(tmp_path):
    from gaussrender.models import ResNet, load_torchvision_weights

    path = tmp_path / "resnet.pth"
    path.write_bytes(deflate_bomb_checkpoint(256 << 20))  # ~256 kB on disk, 256 MiB declared
    backbone = ResNet(depth=18)
    with pytest.raises(ValueError, match=r"resnet.pth'?: refusing a weights file whose members inflate to 26"):
        load_torchvision_weights(backbone, path)


def test_an_image_size_too_large_to_resize_to_is_refused():
    from gaussrender.data.images import check_image_size

    with pytest.raises(ValueError, match=r"image_size \(100000, 100000\) has more than 67108864 pixels"):
        check_image_size((100_000, 100_000))


def test_a_directory_where_the_synthetic_manifest_goes_is_named(tmp_path):
    from gaussrender.train.builders import prepare_synthetic
    from gaussrender.train.fingerprint import MANIFEST

    (tmp_path / MANIFEST).mkdir(parents=True)
    with pytest.raises(ConfigError, match=rf"data.root: {tmp_path / MANIFEST}: expected a regular file"):
        prepare_synthetic(_synthetic(tmp_path))


def test_data_file_errors_echo_a_short_prefix_of_a_huge_value(tmp_path):
    from gaussrender.data import resolve_data_path

    with pytest.raises(DataFileError) as err:
        resolve_data_path("../" * 300_000 + "x.jpg", tmp_path)
    assert len(str(err.value)) < 500 and "(900005 characters)" in str(err.value)
    path = write_infos_json(tmp_path / "infos.json", synthetic_scene("scene-0001", 1))
    data = json.loads(path.read_text())
    del data["infos"][0]["lidar2ego_translation"]
    data["infos"][0].update({f"k{i}" * 50: 1 for i in range(10_000)})
    path.write_text(json.dumps(data))
    with pytest.raises(DataFileError, match="missing key 'lidar2ego_translation'") as err:
        load_infos(path)
    assert len(str(err.value)) < 500


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--frames", "1000000000"], "--frames must be in [1, 3600], got 1000000000"),
        (["--threads", "100000"], "--threads must be in [1, 1024], got 100000"),
    ],
)
def test_view_refuses_counts_that_would_exhaust_the_machine(tmp_path, capsys, extra, message):
    from .test_paths_and_commands import _occ3d_gt

    _, infos = _occ3d_gt(tmp_path)
    (tmp_path / "pred").mkdir()
    args = ["view", "--benchmark", "occ3d", "--gt", str(tmp_path / "gt"), "--infos", str(infos)]
    assert main([*args, "--pred", str(tmp_path / "pred"), "--out", str(tmp_path / "v"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_demo_refuses_counts_and_out_dirs_before_rendering(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for extra, message in [
        (["--frames", "100000000"], "--frames must be in [1, 3600], got 100000000"),
        (["--threads", "100000"], "--threads must be in [1, 1024], got 100000"),
        (["--out", str(blocker / "d")], f"--out {blocker / 'd'} cannot be created ({blocker} is a file)"),
    ]:
        assert main(["demo", *extra]) == 2, extra
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", ["last.pt", "config.yaml", "log.jsonl", "class_counts.json"])
def test_a_run_dir_whose_files_are_directories_is_named_before_training(tmp_path, capsys, name):
    run_dir = tmp_path / "run"
    (run_dir / name).mkdir(parents=True)
    assert main(["train", "--config", "tiny_synthetic_render", "--run-dir", str(run_dir), "--no-progress"]) == 2
    assert f"error: --run-dir {run_dir}: {run_dir / name} is not a regular file" in capsys.readouterr().err
