"""Atomic checkpoints: an interrupted save leaves the previous checkpoint intact."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gaussrender.train import checkpoint as ckpt
from gaussrender.train.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_atomic

from .helpers import tiny_trainer


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"step": 1, "w": torch.arange(5)}, path)
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # bytes hit the temp file ...
        f.flush()
        raise KeyboardInterrupt("simulated crash during the write")  # ... then the process dies

    monkeypatch.setattr(ckpt.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": 2, "w": torch.zeros(5)}, path)
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left


def test_trainer_checkpoint_holds_everything_for_resume(tmp_path):
    t = tiny_trainer(tmp_path)
    t.fit()
    state = load_checkpoint(tmp_path / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "step", "epoch", "step_in_epoch", "rng", "config"} <= set(
        state
    )
    assert state["step"] == 6 and state["epoch"] == 2
    assert set(state["rng"][0]) == {"global", "render"}
    assert set(state["rng"][0]["global"]) >= {"python", "numpy", "torch"}
    assert state["config"]["optim"]["lr"] == t.cfg.optim.lr


def test_rng_state_roundtrip():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
