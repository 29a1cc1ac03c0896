"""benchmarks/evidence.py at CI size (1 seed, 2 arms, 2 steps, tiny images), so it never
rots; and its statistics against independent re-derivations."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussrender.train.runlog import read_jsonl

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "evidence.py"


@pytest.fixture(scope="module")
def evidence():
    spec = importlib.util.spec_from_file_location("evidence_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x


def _ci_run(evidence, tmp_path, *extra, arms="std,render"):
    threads = torch.get_num_threads()
    try:
        return evidence.main(
            [
                "--steps",
                "2",
                "--seeds",
                "1",
                "--arms",
                arms,
                "--scenes",
                "1",
                "--val-scenes",
                "1",
                "--out",
                str(tmp_path / "out"),
                "--runs",
                str(tmp_path / "runs"),
                "--data",
                str(tmp_path / "data"),
                "--threads",
                "1",
                "--set",
                "data.image_size=[24,44]",
                "--set",
                "data.synthetic.image_size=[24,44]",
                "--set",
                "loss.render_kwargs.bev_size=32",
                "--set",
                "train.log_every=1",
                "--set",
                "train.val_render_scale=0.5",
                *extra,
            ]
        )
    finally:
        torch.set_num_threads(threads)


def test_ci_sized_run_writes_a_paired_result(evidence, tmp_path):
    _ci_run(evidence, tmp_path)
    data = json.loads((tmp_path / "out" / "evidence.json").read_text())
    for key in (
        "schema",
        "command",
        "config",
        "arms",
        "seeds",
        "steps",
        "grid",
        "versions",
        "wall_s",
        "runs",
        "summary",
        "scene_seeds",
        "bootstrap",
    ):
        assert key in data, key
    assert data["command"].startswith("python benchmarks/evidence.py --steps 2")
    assert data["seeds"] == [0] and list(data["arms"]) == ["std", "render"] and data["grid"] == "synthetic_small"
    assert data["config"]["data"]["grid"] == "synthetic_small"
    assert {"torch", "numpy", "python"} <= set(data["versions"])
    # training and validation scenes are disjoint
    (t0, t1), (v0, v1) = data["scene_seeds"]["train"], data["scene_seeds"]["val"]
    assert t1 < v0 and t0 <= t1 and v0 <= v1
    # paired structure: one run per (arm, seed), same initial weights across the arms of a seed
    runs = data["runs"]
    assert sorted((r["arm"], r["seed"]) for r in runs) == [("render", 0), ("std", 0)]
    assert len({r["init_checksum"] for r in runs}) == 1 and len(runs[0]["init_checksum"]) == 64
    assert len({r["shared_checksum"] for r in runs}) == 1 and len(runs[0]["shared_checksum"]) == 64
    for r in runs:
        assert r["steps"] == 2 and r["curves"]["step"] == [1, 2]
        assert set(r["metrics"]) == set(evidence.METRICS)  # voxel, RayIoU and rendered-view metrics
        assert all(math.isfinite(v) for v in r["metrics"].values())
        assert all(math.isfinite(v) for v in r["curves"]["loss_3d"])
    render_run = next(r for r in runs if r["arm"] == "render")
    assert all(v is not None and math.isfinite(v) for v in render_run["curves"]["loss_render"])
    # the two arms did train differently (the render loss changed the gradient)
    std_run = next(r for r in runs if r["arm"] == "std")
    assert std_run["curves"]["loss_3d"][0] == render_run["curves"]["loss_3d"][0]  # same start, same sample
    assert std_run["metrics"] != render_run["metrics"]
    paired = data["summary"]["paired"]["render"]
    for m, entry in paired.items():
        want = render_run["metrics"][m] - std_run["metrics"][m]
        assert entry["per_seed"] == {"0": want} and entry["mean"] == want
        assert entry["bootstrap95"] == [want, want]  # one seed: no spread
        assert entry["t95"] == [None, None]  # one seed: no t-interval (null, not NaN)
    assert set(data["summary"]["intervals"]) == {"t95", "bootstrap95"}  # each field says what it holds
    assert len(data["dataset_sha256"]) == 64
    assert {"cpu_model", "torch_cpu_capability", "numpy_blas"} <= set(data["versions"])
    assert all(math.isfinite(v) for v in _numbers(data["summary"]))  # one seed: std is null, not NaN
    assert data["summary"]["per_arm"]["std"]["iou"]["std"] is None
    png = (tmp_path / "out" / "evidence.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(tmp_path / "out" / "evidence.png") as im:
        assert im.size == (1400, 600)

    # --reuse takes the finished runs of the same config instead of training again ...
    again = _ci_run(evidence, tmp_path, "--reuse")
    assert [r["reused"] for r in again["runs"]] == [True, True]
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in runs]
    # ... and only those: another config (here a third step) trains afresh
    longer = _ci_run(evidence, tmp_path, "--reuse", "--set", "train.max_steps=3")
    assert [r["reused"] for r in longer["runs"]] == [False, False]


def test_ci_sized_run_of_the_2d_arms(evidence, tmp_path):
    # 2D-only (LiDAR targets) and 3D + 2D against std, paired on one dataset with LiDAR sweeps
    _ci_run(evidence, tmp_path, "--name", "evidence_2d", arms="std,lidar2d,std_lidar2d")
    assert not (tmp_path / "out" / "evidence.json").exists()  # --name: the default result is left alone
    data = json.loads((tmp_path / "out" / "evidence_2d.json").read_text())
    assert (tmp_path / "out" / "evidence_2d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(data["arms"]) == ["std", "lidar2d", "std_lidar2d"]
    runs = {r["arm"]: r for r in data["runs"]}
    # same initial weights, bar the learned-opacity head that lidar2d has not
    assert len({r["shared_checksum"] for r in runs.values()}) == 1
    assert runs["std"]["init_checksum"] == runs["std_lidar2d"]["init_checksum"] != runs["lidar2d"]["init_checksum"]
    configs = {
        arm: json.loads((Path(r["run_dir"]) / evidence.RUN_RECORD).read_text())["config"] for arm, r in runs.items()
    }
    for arm, cfg in configs.items():
        assert cfg["data"]["synthetic"]["lidar"] is True, arm  # one dataset for every arm
        assert cfg["data"]["root"] == configs["std"]["data"]["root"], arm
    assert configs["std"]["data"]["synthetic"]["targets_2d"] is None and not configs["std"]["loss"]["targets_2d"]
    for arm, voxel in (("lidar2d", False), ("std_lidar2d", True)):
        loss = configs[arm]["loss"]
        assert (loss["voxel_losses"], loss["render_labels"], loss["targets_2d"]) == (voxel, False, True), arm
        assert configs[arm]["model"]["learned_opacity"] is voxel, arm  # 2D-only: opacity 1 - p(empty)
        assert configs[arm]["data"]["synthetic"]["targets_2d"] == "lidar", arm
        assert all(v is not None and math.isfinite(v) and v > 0 for v in runs[arm]["curves"]["loss_render"]), arm
        train = read_jsonl(Path(runs[arm]["run_dir"]) / "log.jsonl", "train")
        assert [r["step"] for r in train] == [1, 2], arm
        assert all(math.isfinite(r["render_target_depth"]) and r["render_target_depth"] > 0 for r in train), arm
        assert all(("loss_ce" in r) is voxel for r in train), arm
    assert runs["lidar2d"]["curves"]["loss_3d"] == [None, None]  # no 3D loss at all
    assert runs["std"]["curves"]["loss_render"] == [None, None]
    # std and std_lidar2d: same weights and sample, so the same first 3D loss; then they part
    assert runs["std"]["curves"]["loss_3d"][0] == runs["std_lidar2d"]["curves"]["loss_3d"][0]
    for arm in ("lidar2d", "std_lidar2d"):
        assert set(runs[arm]["metrics"]) == set(evidence.METRICS)
        assert all(math.isfinite(v) for v in runs[arm]["metrics"].values())
        assert runs[arm]["metrics"] != runs["std"]["metrics"], arm
    assert set(data["summary"]["paired"]) == {"lidar2d", "std_lidar2d"}


def test_sign_test_matches_the_binomial_tail(evidence):
    # independent: P(K <= k) for K ~ Bin(n, 1/2) by summing the float64 pmf
    for diffs in ([1, 2, 3, 4, 5], [1, -1, 2, 3, 0], [-1, -2, -3], [0.0, 0.0], [2, -1, 3, 4, 5, 6, -7]):
        pos = sum(d > 0 for d in diffs)
        neg = sum(d < 0 for d in diffs)
        n = pos + neg
        pmf = [math.factorial(n) / (math.factorial(k) * math.factorial(n - k)) * 0.5**n for k in range(n + 1)]
        want = 1.0 if n == 0 else min(1.0, 2 * sum(pmf[: min(pos, neg) + 1]))
        got = evidence.sign_test(diffs)
        assert (got["positive"], got["negative"]) == (pos, neg)
        assert got["p"] == pytest.approx(want, rel=1e-12)
    assert evidence.sign_test([1, 2, 3, 4, 5])["p"] == pytest.approx(2 / 32)


def test_bootstrap_interval_is_fixed_and_brackets_the_mean(evidence):
    diffs = [0.1, -0.05, 0.2, 0.15, 0.0]
    lo, hi = evidence.bootstrap_interval(diffs)
    assert (lo, hi) == evidence.bootstrap_interval(diffs)  # a fixed generator seed
    assert lo < float(np.mean(diffs)) < hi
    assert min(diffs) <= lo and hi <= max(diffs)
    # re-derivation: the percentile interval of resampled means with the documented generator
    rng = np.random.default_rng(evidence.BOOTSTRAP_SEED)
    x = np.asarray(diffs)
    means = x[rng.integers(0, 5, size=(evidence.BOOTSTRAP_SAMPLES, 5))].mean(axis=1)
    assert (lo, hi) == tuple(float(q) for q in np.quantile(means, [0.025, 0.975]))


def test_student_t_quantiles_match_the_table(evidence):
    # t_{0.975, df} and t_{0.995, df} from the standard tables (8+ significant digits)
    table = {(0.975, 1): 12.706204736, (0.975, 2): 4.302652730, (0.975, 3): 3.182446305, (0.975, 4): 2.776445105}
    table.update({(0.975, 9): 2.262157163, (0.975, 30): 2.042272456, (0.995, 4): 4.604094871})
    for (p, df), want in table.items():
        assert evidence.student_t_quantile(p, df) == pytest.approx(want, abs=1e-7), (p, df)
    assert evidence.student_t_cdf(0.0, 3) == 0.5
    assert evidence.student_t_cdf(-2.0, 5) == pytest.approx(1 - evidence.student_t_cdf(2.0, 5), abs=1e-12)


def test_t_interval_is_wider_than_the_seeds_can_bootstrap(evidence):
    diffs = [0.1, -0.05, 0.2]
    lo, hi = evidence.t_interval(diffs)
    x = np.asarray(diffs, dtype=np.float64)
    half = 4.302652730 * x.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half), abs=1e-9)
    # the percentile bootstrap never reaches beyond the extreme seeds; the t-interval does
    blo, bhi = evidence.bootstrap_interval(diffs)
    assert lo < min(diffs) - 1e-12 <= blo and bhi <= max(diffs) + 1e-12 < hi
    assert all(math.isnan(v) for v in evidence.t_interval([0.3]))


def test_resummarise_recomputes_the_summary_and_keeps_the_runs(evidence, tmp_path):
    runs = []
    for seed, (a, b) in enumerate([(0.50, 0.55), (0.52, 0.51), (0.48, 0.56)]):
        for arm, value in (("std", a), ("render", b)):
            runs.append(
                {"arm": arm, "seed": seed, "metrics": {m: value for m in evidence.METRICS}, "curves": {"step": []}}
            )
    result = {"schema": "gaussrender.evidence/1", "arms": {"std": [], "render": []}, "seeds": [0, 1, 2], "runs": runs}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(result))
    evidence.main(["--resummarise", str(path)])
    new = json.loads(path.read_text())
    assert new["runs"] == runs and "resummarised" in new
    entry = new["summary"]["paired"]["render"]["iou"]
    assert entry["t95"] == pytest.approx(list(evidence.t_interval([0.05, -0.01, 0.08])))
    assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(SystemExit, match="not a gaussrender.evidence/1 result"):
        evidence.main(["--resummarise", str(path)])


def test_mean_std_is_the_sample_std(evidence):
    mu, sd = evidence.mean_std([1.0, 2.0, 4.0])
    assert mu == pytest.approx(7 / 3)
    assert sd == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert math.isnan(evidence.mean_std([1.0])[1])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--arms", "std,nope"], "--arms"),
        (["--seeds", "0,0"], "--seeds"),
        (["--seeds", "a"], "--seeds"),
        (["--steps", "0"], "--steps"),
        (["--val-scenes", "0"], "--val-scenes"),
        (["--name", "../evidence"], "--name"),
    ],
)
def test_bad_options_are_refused(evidence, argv, message, capsys):
    with pytest.raises(SystemExit):
        evidence.parse_args(argv)
    assert message in capsys.readouterr().err


def test_a_run_another_process_holds_is_refused(evidence, tmp_path):
    # two processes splitting an experiment must not train one run into one log.jsonl
    run_dir = tmp_path / "runs" / "synthetic_small_std_seed0"
    run_dir.mkdir(parents=True)
    (run_dir / ".evidence.lock").write_text("12345\n")
    with pytest.raises(SystemExit, match=r"\.evidence\.lock exists"):
        _ci_run(evidence, tmp_path)
    assert not (run_dir / "log.jsonl").exists()  # nothing was trained or deleted
    assert (run_dir / ".evidence.lock").read_text() == "12345\n"  # a foreign lock is not broken
    (run_dir / ".evidence.lock").unlink()
    _ci_run(evidence, tmp_path)
    assert not (run_dir / ".evidence.lock").exists()  # released after the run
