"""`gaussrender predict --save-probabilities` -> `gaussrender eval --render-metrics`: the saved
float16 probabilities are scored with the release's rule (soft features), the report says so,
and a file whose probabilities are broken is refused by name."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussrender.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A synthetic validation sample, a fresh tiny model's checkpoint and its predictions."""
    from gaussrender.train.builders import build_model_from_config
    from gaussrender.train.config import load_config
    from gaussrender.train.synthetic import make_dataset

    tmp = tmp_path_factory.mktemp("probs")
    root = tmp / "data"
    make_dataset(root, 1, num_val_scenes=1, seed=0, image_size=(48, 88))
    cfg_path = CONFIGS / "tiny_synthetic_std.yaml"
    overrides = [f"data.root={root}", "train.device=cpu", "data.num_workers=0"]
    cfg = load_config(str(cfg_path), overrides)
    torch.manual_seed(0)
    model = build_model_from_config(cfg)
    torch.save({"model": model.state_dict()}, tmp / "ckpt.pt")
    argv = ["predict", "--config", str(cfg_path), "--checkpoint", str(tmp / "ckpt.pt")]
    argv += [a for o in overrides for a in ("--set", o)]
    assert main([*argv, "--out", str(tmp / "probs"), "--save-probabilities"]) == 0
    assert main([*argv, "--out", str(tmp / "labels")]) == 0
    return tmp, root


def _eval(tmp: Path, root: Path, pred: Path, name: str) -> tuple[int, dict]:
    out = tmp / f"{name}.json"
    code = main(
        [
            "eval", "--benchmark", "occ3d", "--gt", str(root), "--infos", str(root / "synthetic_infos_val.json"),
            "--pred", str(pred), "--no-rayiou", "--render-metrics", "--render-scale", "0.25", "--out", str(out),
        ]
    )  # fmt: skip
    return code, json.loads(out.read_text()) if code == 0 else {}


def test_predict_writes_float16_probabilities_compressed(run):
    tmp, _ = run
    (file,) = sorted((tmp / "probs").glob("*.npz"))
    with np.load(file, allow_pickle=False) as npz:
        probs, sem = npz["probabilities"], npz["semantics"]
    assert probs.dtype == np.float16 and probs.shape == (18, 200, 200, 16)
    assert np.abs(probs.astype(np.float64).sum(0) - 1).max() < 1e-3
    assert (probs.argmax(0) == sem).mean() > 0.999  # float16 may tie two near-equal classes
    with zipfile.ZipFile(file) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    (plain,) = sorted((tmp / "labels").glob("*.npz"))
    with np.load(plain, allow_pickle=False) as npz:
        assert npz.files == ["semantics"] and np.array_equal(npz["semantics"], sem)


def test_eval_scores_saved_probabilities_with_the_release_rule_and_says_so(run, capsys):
    from gaussrender.data import Occ3DNuScenes
    from gaussrender.metrics import RenderedViewMetrics

    tmp, root = run
    code, soft = _eval(tmp, root, tmp / "probs", "soft")
    assert code == 0 and soft["render_metrics"]["prediction_rule"] == "soft"
    assert "prediction rule: the release's" in capsys.readouterr().out
    code, hard = _eval(tmp, root, tmp / "labels", "hard")
    assert code == 0 and hard["render_metrics"]["prediction_rule"] == "labels"
    assert soft["miou"] == hard["miou"]  # the voxel metrics read the labels either way
    # an untrained model is uncertain: the two rules give other image classes, the same depth
    assert soft["image_per_class_iou"] != hard["image_per_class_iou"]
    assert soft["depth_l1"] == pytest.approx(hard["depth_l1"], rel=1e-6)

    # the same numbers from the metric run here on the file's probabilities
    dataset = Occ3DNuScenes(root, root / "synthetic_infos_val.json", split=None)
    item = dataset[0]
    (file,) = sorted((tmp / "probs").glob("*.npz"))
    with np.load(file, allow_pickle=False) as npz:
        probs = torch.from_numpy(npz["probabilities"].astype(np.float32))
    m = RenderedViewMetrics(dataset.grid, image_scale=0.25)
    m.update(probs[None], item["labels"][None], item["intrinsics"][None], item["cam_from_grid"][None], (48, 88),
             probabilities=True)  # fmt: skip
    for key, value in m.compute().items():
        if value.dim() == 0:
            assert soft[key] == pytest.approx(float(value), rel=1e-9, nan_ok=True), key


def test_eval_refuses_broken_probabilities_by_name(run, capsys):
    tmp, root = run
    (file,) = sorted((tmp / "probs").glob("*.npz"))
    with np.load(file, allow_pickle=False) as npz:
        sem, probs = npz["semantics"], npz["probabilities"]
    cases = {
        "sum": (probs * np.float16(0.9), "must sum to 1"),
        "nan": (np.where(np.arange(18)[:, None, None, None] == 3, np.float16("nan"), probs), "non-finite"),
        "shape": (probs[:17], "probabilities"),
        "dtype": (probs.astype(np.int32), "probabilities"),
    }
    for name, (bad, message) in cases.items():
        d = tmp / f"broken_{name}"
        d.mkdir()
        np.savez_compressed(d / file.name, semantics=sem, probabilities=bad)
        code, _ = _eval(tmp, root, d, name)
        err = capsys.readouterr().err
        assert code == 2 and message in err and file.name in err, (name, err)


def test_view_scores_saved_probabilities_like_eval(run, capsys):
    import re

    tmp, root = run
    _, soft = _eval(tmp, root, tmp / "probs", "soft_for_view")
    capsys.readouterr()
    code = main(
        [
            "view", "--benchmark", "occ3d", "--gt", str(root), "--infos", str(root / "synthetic_infos_val.json"),
            "--pred", str(tmp / "probs"), "--out", str(tmp / "view"), "--render-scale", "0.25", "--frames", "2",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    cams = re.search(r"cameras\s+IoU:\s+(\S+)\s+mIoU:\s+(\S+)\s+depth L1: (\S+) m", out)
    assert cams, out
    assert float(cams.group(1)) == pytest.approx(100 * soft["image_iou"], abs=0.006)
    assert float(cams.group(2)) == pytest.approx(100 * soft["image_miou"], abs=0.006)
