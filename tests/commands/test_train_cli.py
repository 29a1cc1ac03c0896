"""End to end on the CPU: `gaussrender train` under `torchrun` with 2 processes (gloo) on the
tiny synthetic config, then `predict -> eval` on its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gaussrender.train.runlog import read_jsonl

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"
pytestmark = pytest.mark.slow

# one training scene, one validation scene, one optimiser step: the pipeline, not the model
SMALL = ["--set", "data.synthetic.num_scenes=1", "--set", "train.max_steps=1"]


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from gaussrender.train.synthetic import make_dataset

    root = tmp_path_factory.mktemp("synthetic")
    make_dataset(root, 1, num_val_scenes=1, seed=0, image_size=(48, 88))
    return root


def test_torchrun_train_then_predict_and_eval(tmp_path, data_root):
    # One run covers both: `train` under torchrun (2 processes, gloo) with the render loss, then
    # `predict` and `eval` as separate processes on its checkpoint. (Single-process training is
    # covered in-process by tests/train; the CLI's own single-process path by test_train_cli_errors.)
    run_dir = tmp_path / "run"
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "gaussrender",
            "train",
            "--config",
            str(CONFIGS / "tiny_synthetic_render.yaml"),
            "--run-dir",
            str(run_dir),
            "--set",
            f"data.root={data_root}",
            "--no-progress",
        ]
        + SMALL,
        tmp_path,
    )
    (train,) = read_jsonl(run_dir / "log.jsonl", "train")
    assert train["step"] == 1 and train["loss_render"] > 0 and train["samples_per_s"] > 0
    (val,) = read_jsonl(run_dir / "log.jsonl", "val")
    # one validation scene: rank 0 scores it, rank 1 nothing, and the summed metrics see it once
    assert {"iou", "miou", "rayiou"} <= set(val) and 0 <= val["miou"] <= 1
    assert (run_dir / "config.yaml").is_file() and (run_dir / "last.pt").is_file()

    cli = [sys.executable, "-m", "gaussrender"]
    pred = tmp_path / "pred"
    _run(
        cli
        + [
            "predict",
            "--config",
            str(run_dir / "config.yaml"),
            "--checkpoint",
            str(run_dir / "last.pt"),
            "--out",
            str(pred),
        ],
        tmp_path,
    )
    (file,) = sorted(pred.glob("*.npz"))
    with np.load(file) as npz:
        assert npz["semantics"].dtype == np.uint8 and npz["semantics"].shape == (200, 200, 16)

    results = tmp_path / "results.json"
    _run(
        cli
        + [
            "eval",
            "--benchmark",
            "occ3d",
            "--gt",
            str(data_root),
            "--infos",
            str(data_root / "synthetic_infos_val.json"),
            "--pred",
            str(pred),
            "--out",
            str(results),
        ],
        tmp_path,
    )
    scores = json.loads(results.read_text())
    # `eval` scores the written predictions exactly as the trainer's (sharded) validation scored the model
    for key in ("iou", "miou", "rayiou"):
        assert scores[key] == pytest.approx(val[key], abs=1e-9), key
