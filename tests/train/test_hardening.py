"""Training hardening (issue 10, point 6): every bad config value, file or override gets a
named error; stale temporaries and duplicated log records do not survive a kill; NaN/inf in
a loss term, a gradient or a parameter stops the run with a named error."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gaussrender as gr
from gaussrender import _io
from gaussrender.train.config import ConfigError, config_from_dict, load_config
from gaussrender.train.loop import NonFiniteLossError, ResumeError
from gaussrender.train.runlog import RunLogger, read_jsonl

from .helpers import tiny_config, tiny_trainer

IO_FILE = Path(_io.__file__)


# ---------------------------------------------------------------- config values
@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("optim", "lr", float("inf"), "expected a finite number > 0"),
        ("optim", "lr", float("nan"), "expected a finite number > 0"),
        ("optim", "lr", 0.0, "expected a finite number > 0"),
        ("optim", "lr", -1e-3, "expected a finite number > 0"),
        ("optim", "weight_decay", float("nan"), "expected a finite number >= 0"),
        ("optim", "weight_decay", -1e-4, "expected a finite number >= 0"),
        ("optim", "backbone_lr_mult", float("inf"), "expected a finite number >= 0"),
        ("optim", "warmup_iters", -1, "expected an integer >= 0"),
        ("optim", "warmup_ratio", 0.0, "expected a number in (0, 1]"),
        ("optim", "warmup_ratio", 1.5, "expected a number in (0, 1]"),
        ("optim", "grad_clip", 0.0, "expected a finite number > 0"),
        ("optim", "grad_clip", float("inf"), "expected a finite number > 0"),
        ("optim", "min_lr", float("nan"), "expected a finite number with 0 <= min_lr <= lr (optim.lr = 0.0002)"),
        ("train", "max_steps", -1, "expected null (no limit) or an integer >= 1"),
        ("train", "max_steps", 0, "expected null (no limit) or an integer >= 1"),
        ("train", "epochs", 0, "expected an integer >= 1"),
        ("train", "batch_size", 0, "expected an integer >= 1"),
        ("train", "log_every", 0, "expected an integer >= 1"),
        ("train", "checkpoint_every", -5, "expected an integer >= 1"),
        ("train", "val_every_epochs", -1, "expected an integer >= 0"),
        ("train", "seed", -1, "expected an integer in [0, 2**32)"),
        ("train", "seed", 2**40, "expected an integer in [0, 2**32)"),
        ("train", "device", "gpu", "expected one of ['auto', 'cpu', 'cuda']"),
        ("loss", "ce_weight", float("nan"), "expected a finite number >= 0"),
        ("loss", "lovasz_weight", -1.0, "expected a finite number >= 0"),
        ("loss", "render_weight", float("inf"), "expected a finite number >= 0"),
        ("loss", "scale_decay", -0.5, "expected a finite number >= 0"),
        ("model", "dropout", 1.0, "expected a number in [0, 1)"),
        ("model", "backbone_depth", 7, "expected null or one of [18, 34, 50, 101]"),
        ("data", "num_cameras", 0, "expected an integer >= 1"),
        ("data", "num_workers", -1, "expected an integer >= 0"),
        (
            "data",
            "grid",
            "occ4d",
            f"expected one of {sorted(gr.PRESETS)}",
        ),
    ],
)
def test_bad_value_is_refused_naming_key_expectation_and_value(section, key, value, expected):
    with pytest.raises(ConfigError) as info:
        config_from_dict({section: {key: value}})
    assert str(info.value) == f"{section}.{key}: {expected}, got {value!r}"
    assert info.value.key == f"{section}.{key}"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"loss": {"class_weights": [1.0, float("nan")]}}, "loss.class_weights: expected a non-empty list"),
        ({"loss": {"class_weights": [0.0, 0.0]}}, "loss.class_weights: expected a non-empty list"),
        ({"data": {"augment": {"brightness": 1.5}}}, "data.augment.brightness: expected a number in [0, 1], got 1.5"),
        ({"data": {"augment": {"resize_scale": [0.5, float("inf")]}}}, "data.augment.resize_scale: expected finite"),
        ({"data": {"image_size": [0, 32]}}, "data.image_size: expected positive (H, W) pixels, got (0, 32)"),
        ({"data": {"synthetic": {"num_scenes": 0}}}, "data.synthetic.num_scenes: expected an integer >= 1, got 0"),
        ({"optim": {"lr": 10**400}}, "optim.lr: expected a number within the float range"),
        ({"loss": {"render_kwargs": {"bev_sise": 3}}}, "loss.render_kwargs: "),
        ({"loss": {"render_kwargs": {"seed": 3}}}, "loss.render_kwargs.seed: set by the trainer"),
        ({"loss": {"render_kwargs": {"views": ["cam", "sky"]}}}, "loss.render_kwargs: "),
        ({1: {}}, "1: unknown key(s) ['1'] in config"),
    ],
)
def test_other_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(values)
    assert str(info.value).startswith(message)


def test_valid_edge_values_pass():
    cfg = config_from_dict(
        {
            "optim": {
                "lr": 1e-3,
                "min_lr": 1e-3,
                "weight_decay": 0.0,
                "grad_clip": None,
                "warmup_iters": 0,
                "warmup_ratio": 1.0,
            },
            "train": {"max_steps": None, "seed": 2**32 - 1, "val_every_epochs": 0},
            "loss": {"ce_weight": 0.0, "render_kwargs": {"bev_size": 16}},
        }
    )
    assert cfg.train.max_steps is None and cfg.optim.min_lr == cfg.optim.lr


# ---------------------------------------------------------------- config files and --set
def _yaml(tmp_path: Path, text: str | bytes, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    "content, problem",
    [
        ("optim: {lr: [1, 2\n", "not valid YAML: expected ',' or ']'"),
        ("optim:\n  lr: 1\n lr2: 2\n", "not valid YAML"),
        ("- a\n- b\n", "a config must be a mapping of sections, got list"),
        (b"optim: {lr: 1}\n\xff\xfe\n", "not a UTF-8 text file"),
        ("a: &a [*a]\n", "the YAML expands to more than"),
        (
            "a: &a [1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, "
            "*b]\n"
            "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
            "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
            "the YAML expands to more than",
        ),
        ("optim: {lr: .inf}\n", "optim.lr: expected a finite number > 0, got inf"),
    ],
)
def test_corrupt_or_bad_yaml_names_the_file(tmp_path, content, problem):
    path = _yaml(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert problem in str(info.value)


def test_unreadable_config_names_the_file(tmp_path, monkeypatch):
    path = _yaml(tmp_path, "optim: {lr: 1.0e-3}\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError, match=rf"^{path}: cannot read the config file \(Permission denied\)"):
        load_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=.inf", "{path}: optim.lr: expected a finite number > 0, got inf (--set)"),
        ("train.max_steps=-1", "{path}: train.max_steps: expected null (no limit) or an integer >= 1, got -1 (--set)"),
        ("optim.lrr=1", "{path}: optim.lrr: unknown key(s) ['lrr'] in optim"),
        ("optim.lr=[1", "--set optim.lr: the value '[1' is not valid YAML"),
        ("optim.lr", "--set expects key.sub=value, got 'optim.lr'"),
        ("optim..lr=1", "--set key must be dotted names like optim.lr, got 'optim..lr'"),
        ("optim.lr.x=1", "--set optim.lr.x: 'lr' is not a section"),
    ],
)
def test_bad_override_names_the_key(tmp_path, override, message):
    path = _yaml(tmp_path, "optim: {lr: 1.0e-3}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert str(info.value).startswith(message.format(path=path))


def test_value_from_the_file_is_not_marked_as_set(tmp_path):
    path = _yaml(tmp_path, "train: {max_steps: -1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["optim.lr=1e-3"])
    assert str(info.value) == f"{path}: train.max_steps: expected null (no limit) or an integer >= 1, got -1"


# ---------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("exc", [ValueError("disk on fire"), KeyboardInterrupt()])
def test_atomic_write_removes_its_temporary_on_any_exception(tmp_path, exc):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"half a checkpoint")
        raise exc

    with pytest.raises(type(exc)):
        _io.atomic_write(target, write, fsync=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert target.read_bytes() == b"old"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_write_gives_open_permissions_without_touching_the_umask(tmp_path, monkeypatch, umask):
    # os.umask is process-wide and can only be read by setting it: a writer that sets it,
    # even briefly, races with other threads creating files. The write must never call it.
    previous = os.umask(umask)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(os, "umask", lambda *_: pytest.fail("atomic_write changed the process umask"))
            path = _io.atomic_write(tmp_path / "sub" / "a.bin", lambda f: f.write(b"data"))
            plain = tmp_path / "plain.bin"
            plain.write_bytes(b"data")
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"data"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask == plain.stat().st_mode & 0o777
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.bin"]  # no temporary left


def test_atomic_write_temporary_names_are_what_remove_stale_temporaries_removes(tmp_path):
    seen = []

    def write(f):
        seen.extend(tmp_path.iterdir())  # the temporary, while it is written
        f.write(b"x")

    _io.atomic_write(tmp_path / "x.yaml", write)
    (tmp,) = seen
    assert re.fullmatch(r"\.x\.yaml\.[a-z0-9_]{8}\.tmp", tmp.name)
    tmp.write_bytes(b"stale")  # as a killed writer would leave it
    assert _io.remove_stale_temporaries(tmp_path, ["x.yaml"]) == [tmp]


# The child loads gaussrender/_io.py by file path (stdlib only; importing the package would
# import torch and take seconds), starts an atomic write and blocks in the middle of it.
CHILD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("gr_io", sys.argv[1])
io = importlib.util.module_from_spec(spec); spec.loader.exec_module(io)

def write(f):
    f.write(b"x" * 4096); f.flush()
    print("writing", flush=True)
    time.sleep(60)

with io.sigterm_as_exit():
    io.atomic_write(sys.argv[2], write)
"""


def _kill_mid_write(target: Path, sig: int) -> int:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(IO_FILE), str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(sig)
        return proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()


def test_sigterm_mid_write_leaves_no_temporary(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    rc = _kill_mid_write(target, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert target.read_bytes() == b"old"


def test_stale_temporary_of_a_killed_writer_is_removed_and_nothing_else(tmp_path):
    target = tmp_path / "last.pt"
    assert _kill_mid_write(target, signal.SIGKILL) == -signal.SIGKILL
    (stale,) = [p for p in tmp_path.iterdir()]  # SIGKILL cannot be caught: the temporary stays
    assert stale.name.startswith(".last.pt.") and stale.name.endswith(".tmp") and stale.stat().st_size == 4096
    lookalikes = [
        ".last.pt.abc.tmp",
        ".last.pt.abcdefghi.tmp",
        "last.pt.abcdefgh.tmp",
        ".notes.abcdefgh.tmp",
        ".last.pt.ABCDEFGH.tmp",
        ".last.pt.abcdefgh.tmp.bak",
    ]
    for name in lookalikes:
        (tmp_path / name).write_text("keep")
    (tmp_path / ".config.yaml.abcdefgh.tmp").mkdir()  # a folder is never removed
    removed = _io.remove_stale_temporaries(tmp_path, ["last.pt", "config.yaml"])
    assert removed == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(lookalikes + [".config.yaml.abcdefgh.tmp"])


def test_training_start_removes_stale_run_temporaries(tmp_path):
    t = tiny_trainer(tmp_path, tiny_config(train={"epochs": 1, "max_steps": 1, "device": "cpu"}), n_train=1)
    stale = [tmp_path / ".last.pt.k3_x9q0z.tmp", tmp_path / ".log.jsonl.aaaaaaaa.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (tmp_path / "mine.tmp").write_text("keep")
    t.fit()
    assert not any(p.exists() for p in stale)
    assert (tmp_path / "mine.tmp").is_file() and (tmp_path / "last.pt").is_file()


# ---------------------------------------------------------------- resume
def test_log_truncation_keeps_records_up_to_the_step(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        log.log("train", step, loss=1.0)
    log.log("val", 2, miou=0.5)
    with (tmp_path / "log.jsonl").open("a") as f:
        f.write('{"kind": "train", "step": 4, "lo')  # cut short by a kill
    with pytest.warns(RuntimeWarning, match=r"log.jsonl:5: dropping a line"):
        assert log.truncate(2) == 2  # train step 3 and the cut line
    assert [(r["kind"], r["step"]) for r in read_jsonl(tmp_path / "log.jsonl")] == [
        ("train", 1),
        ("train", 2),
        ("val", 2),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]  # written atomically


def test_log_truncation_purges_tensorboard_after_the_step(tmp_path, monkeypatch):
    import types

    opened = []

    class FakeWriter:  # tensorboard's SummaryWriter is an optional extra
        def __init__(self, log_dir, purge_step=None):
            opened.append((log_dir, purge_step))

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    log = RunLogger(tmp_path)
    log.truncate(7)
    assert opened == [(str(tmp_path / "tb"), None), (str(tmp_path / "tb"), 8)]


def test_resume_after_a_kill_has_no_duplicate_log_steps(tmp_path):
    sections = dict(train={"epochs": 2, "log_every": 1, "checkpoint_every": 2, "device": "cpu"})
    t = tiny_trainer(tmp_path, tiny_config(**sections))  # 3 samples x 2 epochs = 6 steps
    step = t.train_step

    def killed_after_three(batch):
        if t.step == 3:  # steps 1-3 logged, last checkpoint at step 2
            raise KeyboardInterrupt
        return step(batch)

    t.train_step = killed_after_three
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [1, 2, 3]
    resumed = tiny_trainer(tmp_path, tiny_config(**sections))
    resumed.fit(resume=tmp_path / "last.pt")
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl", "train")] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_unreadable_resume_checkpoint_names_its_path(tmp_path, damage):
    cfg = tiny_config(train={"epochs": 1, "max_steps": 1, "device": "cpu"})
    path = tiny_trainer(tmp_path / "a", cfg, n_train=1).save()
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(300), "empty": b""}[damage])
    t = tiny_trainer(tmp_path / "b", cfg, n_train=1)
    with pytest.raises(ResumeError, match=rf"^cannot resume from {path}: "):
        t.fit(resume=path)
    assert not (tmp_path / "b" / "log.jsonl").exists()


# ---------------------------------------------------------------- NaN / inf policy
ONE_STEP = dict(train={"epochs": 1, "max_steps": 1, "log_every": 1, "device": "cpu"})


def test_nan_parameter_before_training_is_named(tmp_path):
    t = tiny_trainer(tmp_path, tiny_config(**ONE_STEP), n_train=1)
    with torch.no_grad():
        t.model.mix.bias[1] = float("inf")
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite parameter\(s\) \['mix.bias'\] before training \(step 0\)"
    ):
        t.fit()
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_nan_parameter_after_the_step_stops_the_run_whatever_the_policy(tmp_path, policy):
    t = tiny_trainer(tmp_path, tiny_config(loss={"nonfinite": policy}, **ONE_STEP), n_train=1)
    step = t.optimizer.step

    def overflowing_step(*args, **kwargs):  # what an overflowing update does to a weight
        out = step(*args, **kwargs)
        with torch.no_grad():
            t.model.voxel[0, 1, 2, 3] = float("nan")
        return out

    t.optimizer.step = overflowing_step
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite parameter\(s\) \['voxel'\] after the optimiser step "
        r"at step 0 \(epoch 0, samples \['tok000'\]",
    ):
        t.fit()
    (error,) = read_jsonl(tmp_path / "log.jsonl", "error")
    assert error["step"] == 0 and "voxel" in error["error"]
    assert not (tmp_path / "last.pt").exists()  # a NaN model is never checkpointed


def test_nan_gradient_is_named_and_raises(tmp_path):
    t = tiny_trainer(tmp_path, tiny_config(**ONE_STEP), n_train=1)
    t.model.mix.weight.register_hook(lambda g: g * float("nan"))
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite gradient norm nan at step 0 .*"
        r"non-finite gradients of \['mix.weight'\]",
    ):
        t.fit()


def test_nan_gradient_skipped_by_policy_leaves_parameters(tmp_path):
    t = tiny_trainer(tmp_path, tiny_config(loss={"nonfinite": "skip"}, **ONE_STEP), n_train=1)
    before = [p.detach().clone() for p in t.model.parameters()]
    t.model.mix.weight.register_hook(lambda g: g * float("inf"))
    with pytest.warns(RuntimeWarning, match=r"non-finite gradient norm .*mix.weight.*skipped"):
        summary = t.fit()
    assert summary["skipped_steps"] == 1
    assert all(torch.equal(p, q) for p, q in zip(before, t.model.parameters()))


def test_nan_loss_term_stops_the_run_with_the_term_named(tmp_path):
    t = tiny_trainer(tmp_path, tiny_config(**ONE_STEP), n_train=1)
    t.model.make_nan = True
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss term\(s\) \['loss_ce', 'loss_lovasz'\].* at step 0"):
        t.fit()
    (error,) = read_jsonl(tmp_path / "log.jsonl", "error")
    assert "loss_ce" in error["error"]
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["kind"] == "error"


def test_io_module_loads_without_the_package():
    # the subprocess tests above rely on _io being stdlib-only
    spec = importlib.util.spec_from_file_location("gr_io_check", IO_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.atomic_write)
