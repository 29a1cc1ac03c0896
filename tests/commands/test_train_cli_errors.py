"""`gaussrender train` reports every bad config, override or checkpoint as `error: ...`
naming it, exit code 2, and a run stopped by NaN/inf as `error:` with exit code 1; it says
"done" only when the run finished."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gaussrender.train.run as run_module
from gaussrender.cli import main

from ..train.helpers import tiny_config, tiny_trainer

CONFIG = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs" / "tiny_synthetic_std.yaml"


def _train(capsys, tmp_path, *extra: str, config: Path = CONFIG) -> tuple[int, str, str]:
    """``gaussrender train`` in this process: (exit code, stdout, stderr)."""
    rc = main(["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress", *extra])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a run would start: every case here must stop before training."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(run_module, "train", refuse)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=.inf", f"{CONFIG}: optim.lr: expected a finite number > 0, got inf (--set)"),
        ("optim.lr=-1", f"{CONFIG}: optim.lr: expected a finite number > 0, got -1.0 (--set)"),
        (
            "train.max_steps=-1",
            f"{CONFIG}: train.max_steps: expected null (no limit) or an integer >= 1, got -1 (--set)",
        ),
        ("optim.weight_decay=.nan", f"{CONFIG}: optim.weight_decay: expected a finite number >= 0, got nan (--set)"),
        ("train.batch_size=0", f"{CONFIG}: train.batch_size: expected an integer >= 1, got 0 (--set)"),
        ("loss.ce_weight=.nan", f"{CONFIG}: loss.ce_weight: expected a finite number >= 0, got nan (--set)"),
        ("optim.lrr=1", f"{CONFIG}: optim.lrr: unknown key(s) ['lrr'] in optim"),
        ("train.epochs=one", f"{CONFIG}: train.epochs: expected an integer, got 'one' (--set)"),
        ("optim.lr=[1", "--set optim.lr: the value '[1' is not valid YAML"),
        ("optim.lr", "--set expects key.sub=value, got 'optim.lr'"),
    ],
)
def test_bad_value_or_override_is_an_error_with_exit_code_2(capsys, tmp_path, no_training, override, message):
    rc, out, err = _train(capsys, tmp_path, "--set", override)
    assert rc == 2
    assert err.startswith(f"gaussrender train: error: {message}")
    assert "done" not in out and "Traceback" not in err


@pytest.mark.parametrize(
    "content, problem",
    [
        ("optim: {lr: [1, 2\n", "not valid YAML: expected ',' or ']', but got '<stream end>' at line 2, column 1"),
        ("just a string\n", "a config must be a mapping of sections, got str"),
        ("optim: {lr: .inf}\n", "optim.lr: expected a finite number > 0, got inf"),
    ],
)
def test_corrupt_config_file_is_named(capsys, tmp_path, no_training, content, problem):
    path = tmp_path / "broken.yaml"
    path.write_text(content)
    rc, out, err = _train(capsys, tmp_path, config=path)
    assert rc == 2
    assert err.strip() == f"gaussrender train: error: {path}: {problem}"


def test_missing_config_and_checkpoint_are_named(capsys, tmp_path, no_training):
    rc, _, err = _train(capsys, tmp_path, config=tmp_path / "nope.yaml")
    assert rc == 2 and err.strip() == f"gaussrender train: error: config file not found: {tmp_path / 'nope.yaml'}"
    rc, _, err = _train(capsys, tmp_path, "--resume", str(tmp_path / "gone.pt"))
    assert rc == 2 and err.strip() == f"gaussrender train: error: checkpoint not found: {tmp_path / 'gone.pt'}"


def _tiny_train(poison=None):
    """A stand-in for gaussrender.train.run.train that runs the tiny in-memory problem (the
    synthetic dataset takes minutes to write on a loaded CI machine) through Trainer.fit."""

    def train(cfg, run_dir, resume=None, progress=True):
        t = tiny_trainer(run_dir, tiny_config(train={"epochs": 1, "max_steps": 1, "device": "cpu"}), n_train=1)
        if poison is not None:
            poison(t)
        return t.fit(resume=resume)

    return train


def test_truncated_resume_checkpoint_is_named(capsys, tmp_path, monkeypatch):
    good = tiny_trainer(tmp_path / "a", tiny_config(train={"epochs": 1, "device": "cpu"}), n_train=1).save()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(good.read_bytes()[:200])
    monkeypatch.setattr(run_module, "train", _tiny_train())
    rc, out, err = _train(capsys, tmp_path, "--resume", str(bad))
    assert rc == 2
    assert err.startswith(f"gaussrender train: error: cannot resume from {bad}: ")
    assert "done" not in out


def test_nan_parameter_stops_with_exit_code_1_and_never_done(capsys, tmp_path, monkeypatch):
    def poison(t):
        with torch.no_grad():
            t.model.voxel[0, 0, 0, 0] = float("nan")

    monkeypatch.setattr(run_module, "train", _tiny_train(poison))
    rc, out, err = _train(capsys, tmp_path)
    assert rc == 1
    assert err.startswith(
        "gaussrender train: error: training stopped: non-finite parameter(s) ['voxel'] before training"
    )
    assert "done" not in out


def test_nan_loss_stops_with_exit_code_1(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "train", _tiny_train(lambda t: setattr(t.model, "make_nan", True)))
    rc, out, err = _train(capsys, tmp_path)
    assert rc == 1
    assert "error: training stopped: non-finite loss term(s) ['loss_ce', 'loss_lovasz']" in err
    assert "done" not in out


def test_finished_run_says_done(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "train", _tiny_train())
    rc, out, err = _train(capsys, tmp_path)
    assert rc == 0 and out.startswith("gaussrender train: done (step=1, epoch=1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unusable_device_is_a_config_error(capsys, tmp_path):
    rc, out, err = _train(capsys, tmp_path, "--set", "train.device=cuda")
    assert rc == 2 and err.strip() == "gaussrender train: error: train.device='cuda' but CUDA is not available"


def test_the_process_exits_2_without_a_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gaussrender",
            "train",
            "--config",
            str(CONFIG),
            "--run-dir",
            str(tmp_path / "run"),
            "--set",
            "optim.lr=.inf",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr.strip()
        == f"gaussrender train: error: {CONFIG}: optim.lr: expected a finite number > 0, got inf (--set)"
    )
    assert proc.stdout == ""
    assert not (tmp_path / "run").exists()  # nothing written for a refused config
