"""JSONL run logs stay strict JSON and are written by the main process only."""

from __future__ import annotations

import json

import pytest
import torch

from gaussrender.train.runlog import RunLogger, read_jsonl


def test_records_and_nonfinite_values(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    log.log("train", 1, loss=torch.tensor(2.5), lr=1e-4)
    log.log("train", 2, loss=float("nan"), skipped=1.0)
    log.log("val", 2, miou=0.25)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # strict JSON, no bare NaN
    train = read_jsonl(tmp_path / "log.jsonl", "train")
    assert [r["step"] for r in train] == [1, 2] and train[0]["loss"] == 2.5 and train[1]["loss"] == "nan"
    assert read_jsonl(tmp_path / "log.jsonl", "val")[0]["miou"] == 0.25


def test_disabled_logger_writes_nothing(tmp_path):
    RunLogger(tmp_path / "r", enabled=False).log("train", 1, loss=1.0)
    assert not (tmp_path / "r").exists()


def test_missing_log_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="log.jsonl"):
        read_jsonl(tmp_path / "log.jsonl")


def test_tensorboard_gets_numeric_fields(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class FakeWriter:  # stands in for tensorboard's SummaryWriter (an optional extra)
        def __init__(self, log_dir):
            calls.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def close(self):
            calls.append(("closed",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    log = RunLogger(tmp_path)
    log.log("train", 3, loss=1.5, skipped=False, note="text")
    log.close()
    assert calls == [("dir", str(tmp_path / "tb")), ("train/loss", 1.5, 3), ("closed",)]
