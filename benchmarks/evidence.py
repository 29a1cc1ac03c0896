"""Does the GaussRender loss improve an occupancy model? A paired-seed experiment.

Trains the same tiny model (the packaged config ``evidence_small``: tiny TPVFormer, synthetic
scenes on a coarse Occ3D-range grid) once per *arm* and *seed*:

* ``std``: the 3D loss only;
* ``render``: + GaussRender with the release's defaults (learned opacity, one sampled sensor
  camera + the BEV, weight 10, ``sensor`` strategy);
* ``render_bev``: + GaussRender on the BEV only;
* ``render_elevated``: + GaussRender with the ``elevated`` camera strategy;
* ``lidar2d``: no 3D loss: GaussRender against the simulated LiDAR's sparse depth and classes
  z-buffered into the six cameras only (``loss.voxel_losses: false``, ``render_labels: false``,
  ``targets_2d: true``; ``data.synthetic.targets_2d: lidar``), with the opacity 1 - p(empty)
  of the logits (``model.learned_opacity: false``);
* ``std_lidar2d``: the 3D loss + those LiDAR 2D terms (no rendered 3D labels).

Every arm reads the same dataset, LiDAR sweeps included (``data.synthetic.lidar: true`` in the
base config), so the 2D arms pair with the others seed by seed; the 3D labels are still used by
every arm's validation.

For one seed every arm has the same ``train.seed``: the same initial weights (checked: the
parameter checksums without the learned-opacity head, which ``lidar2d`` lacks, are recorded
as ``shared_checksum`` and must agree), the same data order, augmentation and dropout stream.
The training and validation scenes are disjoint (the validation scenes' seeds follow the
training ones). Every run is validated once at its end by the trainer
(:meth:`gaussrender.train.loop.Trainer.evaluate`): voxel IoU / mIoU inside ``mask_camera``
(Occ3D's averaging), RayIoU from the synthetic LiDAR origins, and the rendered-view metrics
(image IoU / mIoU, depth L1, BEV IoU / mIoU, BEV depth L1) at ``train.val_render_scale``.

Reported per arm: mean ± sample standard deviation over seeds; per arm against ``std``: the
per-seed paired differences, their mean, a 95 % bootstrap interval of the mean (resampling
seeds, fixed generator seed) and a two-sided sign test. Learning curves (3D and render loss
per logged step; the 3D loss is None for a run without it) come from each run's ``log.jsonl``.
Writes ``<out>/<name>.json`` (``--name``, default ``evidence``: command, config, seeds, arms,
versions, wall times, per-run metrics and curves, summary) and ``<out>/<name>.png`` (curves
and paired differences), and prints a table.

Usage::

    python benchmarks/evidence.py --steps 40 --seeds 2 --arms std,render      # a pilot
    python benchmarks/evidence.py --grid synthetic_small --scenes 32 --val-scenes 8 \\
        --steps 3000 --seeds 5 --arms std,render,render_bev

A long experiment can be split over processes (one torch thread each is faster on a small CPU
than one process with two): run disjoint ``--seeds``/``--arms`` with ``--reuse`` in parallel,
then the full command with ``--reuse`` summarises the finished runs without training again
(a run is reused only when its recorded resolved config is identical).

``--set key=value`` passes config overrides to every run (after the arm's). Each run is
single-process on the CPU unless the config says otherwise; ``--threads`` sets torch's
thread count (on a shared machine 1 thread per run is often faster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "src" / "gaussrender" / "configs" / "evidence_small.yaml"

#: arm name -> config overrides (applied to the base config, before ``--set``)
ARMS: dict[str, list[str]] = {
    "std": ["loss.render=false"],
    "render": ["loss.render=true"],
    "render_bev": ["loss.render=true", "loss.render_kwargs.views=[bev]"],
    "render_elevated": ["loss.render=true", "loss.render_kwargs.camera_strategy=elevated"],
    # 2D supervision from the LiDAR scan (docs/supervision.md): without / with the 3D loss
    "lidar2d": [
        # the opacity is 1 - p(empty) of the logits: with a learned opacity head and no 3D loss
        # nothing teaches the logits free space (the config refuses it); the other weights
        # stay those of the other arms (the head is built last), checked by shared_checksum
        "model.learned_opacity=false",
        "loss.render=true",
        "loss.voxel_losses=false",
        "loss.render_labels=false",
        "loss.targets_2d=true",
        "data.synthetic.targets_2d=lidar",
    ],
    "std_lidar2d": [
        "loss.render=true",
        "loss.render_labels=false",
        "loss.targets_2d=true",
        "data.synthetic.targets_2d=lidar",
    ],
}
BASELINE = "std"
#: per-run record written at the end of a run; ``--reuse`` takes a run whose record has the same config
RUN_RECORD = "evidence_run.json"

#: validation metrics reported, and whether higher is better
METRICS: dict[str, bool] = {
    "iou": True,
    "miou": True,
    "rayiou": True,
    "image_iou": True,
    "image_miou": True,
    "depth_l1": False,
    "bev_iou": True,
    "bev_miou": True,
    "bev_depth_l1": False,
}
#: seed of the bootstrap resampling (fixed: the interval is a function of the data only)
BOOTSTRAP_SEED = 20250207
BOOTSTRAP_SAMPLES = 10_000
#: what each interval field of ``summary.paired[arm][metric]`` holds (written into the JSON)
INTERVALS = {
    "t95": "95 % paired t-interval of the mean difference (mean ± t_{0.975, n-1} sd / sqrt(n)); the "
    "interval the docs quote and the plot draws",
    "bootstrap95": "95 % percentile bootstrap of the mean difference (resampling seeds); kept for comparison: "
    "with 3-5 seeds it is too narrow (it cannot reach beyond the extreme seeds)",
}


# ------------------------------------------------------------------ statistics
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than 2 values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else float("nan")


def bootstrap_interval(
    diffs: Sequence[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (resampling with replacement).

    With one value the interval is that value (no spread can be estimated from one seed).
    """
    x = np.asarray(diffs, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def student_t_cdf(t: float, df: int) -> float:
    """CDF of Student's t with ``df`` degrees of freedom at ``t``: ``1/2 + integral_0^t pdf``,
    the integral by composite Simpson's rule (4,000 panels; error below 1e-10 for |t| <= 100)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if t < 0:
        return 1.0 - student_t_cdf(-t, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    panels = 4000
    h = t / panels
    area = pdf(0.0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, panels))
    return 0.5 + area * h / 3


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (``0.5 < p < 1``), by bisection on :func:`student_t_cdf`."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must lie in (0.5, 1), got {p}")
    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if student_t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The paired t-interval of the mean of ``diffs``: ``mean ± t_{(1+level)/2, n-1} · sd / sqrt(n)``.

    The interval that holds at 3-5 seeds, where a percentile bootstrap of so few values is too
    narrow (it never reaches beyond the extreme seeds). NaN for fewer than two values (no
    spread can be estimated from one seed).
    """
    x = np.asarray(diffs, dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    half = student_t_quantile((1 + level) / 2, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return float(x.mean()) - half, float(x.mean()) + half


def sign_test(diffs: Sequence[float]) -> dict[str, float]:
    """Two-sided exact sign test of ``diffs`` against 0 (ties dropped).

    Returns ``positive``, ``negative`` (counts) and ``p`` = min(1, 2 · P(K <= min(pos, neg)))
    for K ~ Binomial(pos + neg, 1/2); ``p`` is 1 when every difference is a tie.
    """
    pos = int(sum(d > 0 for d in diffs))
    neg = int(sum(d < 0 for d in diffs))
    n = pos + neg
    if n == 0:
        return {"positive": 0, "negative": 0, "p": 1.0}
    tail = sum(math.comb(n, k) for k in range(min(pos, neg) + 1)) / 2.0**n
    return {"positive": pos, "negative": neg, "p": min(1.0, 2.0 * tail)}


def summarise(runs: list[dict[str, Any]], arms: list[str], seeds: list[int]) -> dict[str, Any]:
    """Mean ± std per arm and metric; paired differences (arm - baseline) per seed."""
    by = {(r["arm"], r["seed"]): r["metrics"] for r in runs}
    summary: dict[str, Any] = {"per_arm": {}, "paired": {}}
    for arm in arms:
        summary["per_arm"][arm] = {}
        for m in METRICS:
            vals = [by[(arm, s)][m] for s in seeds if m in by[(arm, s)]]
            mu, sd = mean_std(vals)
            summary["per_arm"][arm][m] = {"mean": mu, "std": sd, "n": len(vals)}
    if BASELINE in arms:
        for arm in arms:
            if arm == BASELINE:
                continue
            summary["paired"][arm] = {}
            for m, higher in METRICS.items():
                pairs = [
                    (s, by[(arm, s)][m] - by[(BASELINE, s)][m])
                    for s in seeds
                    if m in by[(arm, s)] and m in by[(BASELINE, s)]
                ]
                diffs = [d for _, d in pairs]
                summary["paired"][arm][m] = {
                    "higher_is_better": higher,
                    "per_seed": {str(s): d for s, d in pairs},
                    "mean": mean_std(diffs)[0],
                    "t95": list(t_interval(diffs)),
                    "bootstrap95": list(bootstrap_interval(diffs)),
                    "sign_test": sign_test(diffs),
                }
    summary["intervals"] = INTERVALS
    return summary


# ------------------------------------------------------------------ runs
def read_curves(run_dir: Path) -> dict[str, list]:
    """Training (3D and render loss per logged step) and validation curves of a run."""
    from gaussrender.train.runlog import read_jsonl

    train = read_jsonl(run_dir / "log.jsonl", "train")
    val = read_jsonl(run_dir / "log.jsonl", "val")
    return {
        "step": [int(r["step"]) for r in train],
        # None for a run trained without the 3D loss (lidar2d)
        "loss_3d": [float(r["loss_ce"]) + float(r["loss_lovasz"]) if "loss_ce" in r else None for r in train],
        "loss_render": [float(r["loss_render"]) if "loss_render" in r else None for r in train],
        "lr": [float(r["lr"]) for r in train],
        "val_step": [int(r["step"]) for r in val],
        "val": [{m: float(r[m]) for m in METRICS if m in r} for r in val],
    }


def run_config(base: Path, arm: str, seed: int, steps: int, data_root: Path, args: argparse.Namespace):
    """The config of one run: base file + arm + the script's settings + ``--set``."""
    from gaussrender.train.config import load_config

    base_cfg = load_config(base)
    syn = base_cfg.data.synthetic
    scenes = args.scenes if args.scenes is not None else syn.num_scenes
    per_epoch = math.ceil(scenes / base_cfg.train.batch_size)
    epochs = math.ceil(steps / per_epoch)
    overrides = list(ARMS[arm]) + [
        f"train.seed={seed}",
        f"train.max_steps={steps}",
        f"train.epochs={epochs}",
        f"train.val_every_epochs={args.val_every_epochs or epochs}",
        f"data.root={data_root}",
        f"data.synthetic.num_scenes={scenes}",
    ]
    if args.val_scenes is not None:
        overrides.append(f"data.synthetic.num_val_scenes={args.val_scenes}")
    if args.grid is not None:
        overrides.append(f"data.grid={args.grid}")
    overrides += args.set
    return load_config(base, overrides), overrides


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.evidence.lock`` while a run trains: two processes splitting an experiment
    must not train the same run (both would append to one ``log.jsonl``). A lock left by a
    killed process is reported, not broken: delete it once no process trains that run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".evidence.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise SystemExit(
            f"error: {lock} exists: another evidence.py process is training this run (or one was killed; "
            "delete the file if none is running)"
        ) from None
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def data_dir(cfg, root: Path) -> Path:
    """One folder per dataset description, so a cached dataset is never reused for another."""
    syn = cfg.data.synthetic
    h, w = syn.image_size
    return root / f"{cfg.data.grid}_train{syn.num_scenes}_val{syn.num_val_scenes}_seed{syn.seed}_{h}x{w}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def numpy_blas() -> str:
    """The BLAS numpy was built against (name and version), as ``numpy.show_config`` reports it."""
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except (TypeError, KeyError, AttributeError):  # numpy < 1.26 has no mode="dicts"
        return "?"


def dataset_sha256(root: Path) -> str:
    """SHA-256 over the generated dataset: every file's path (relative to ``root``) and bytes,
    in sorted order. Two runs with the same hash trained and validated on the same files."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def versions() -> dict[str, str]:
    import gaussrender

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gaussrender": getattr(gaussrender, "__version__", "?"),
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
        # runs are bit-identical on one machine only: another CPU (vector width) or another
        # torch/BLAS build rounds differently, and a few hundred steps amplify that
        "cpu_model": cpu_model(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_git_version": str(getattr(torch.version, "git_version", "?")),
        "numpy_blas": numpy_blas(),
    }
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        out["git_dirty"] = str(bool(dirty))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# ------------------------------------------------------------------ plot
_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75)]


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or y.size < k:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([y[: k - 1], out]) if out.size else y


def plot(path: Path, runs: list[dict[str, Any]], summary: dict[str, Any], arms: list[str], seeds: list[int]) -> Path:
    """PNG: left, the mean 3D training loss per arm (smoothed, over seeds); right, the paired
    differences arm - std per metric (dots: seeds, bar: mean, line: paired t 95 %), each
    metric scaled by the largest absolute value in its row. Drawn with PIL only."""
    from PIL import Image, ImageDraw, ImageFont

    width, height, pad = 1400, 600, 50
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    # --- left panel: learning curves
    x0, y0, x1, y1 = pad + 20, pad, width // 2 - pad, height - pad
    d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    d.text(
        (x0, y0 - 30),
        "3D training loss (CE x10 + Lovasz), mean over seeds, after the first 10% of steps",
        fill=(0, 0, 0),
        font=font,
    )
    curves = {}
    for arm in arms:
        # a run without the 3D loss (lidar2d) has no curve here
        rows = [
            r["curves"]
            for r in runs
            if r["arm"] == arm and r["curves"]["step"] and all(v is not None for v in r["curves"]["loss_3d"])
        ]
        if not rows:
            continue
        n = min(len(c["step"]) for c in rows)
        steps = np.asarray(rows[0]["step"][:n], dtype=np.float64)
        loss = np.mean([np.asarray(c["loss_3d"][:n], dtype=np.float64) for c in rows], axis=0)
        # the first steps (loss falling from ~20) would flatten the part worth reading
        keep = steps >= 0.1 * steps.max()
        curves[arm] = (steps[keep], _smooth(loss, max(1, n // 20))[keep])
    if curves:
        xs = np.concatenate([s for s, _ in curves.values()])
        ys = np.concatenate([loss for _, loss in curves.values()])
        ys = ys[np.isfinite(ys)]
        xlo, xhi = float(xs.min()), float(max(xs.max(), xs.min() + 1))
        ylo, yhi = (float(ys.min()), float(max(ys.max(), ys.min() + 1e-9))) if ys.size else (0.0, 1.0)
        for i, (arm, (s, ls)) in enumerate(curves.items()):
            pts = [
                (x0 + (sx - xlo) / (xhi - xlo) * (x1 - x0), y1 - (ly - ylo) / (yhi - ylo) * (y1 - y0))
                for sx, ly in zip(s, ls)
                if math.isfinite(ly)
            ]
            colour = _COLOURS[arms.index(arm) % len(_COLOURS)]  # as in the right panel
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            d.text((x1 - 150, y0 + 10 + 14 * i), arm, fill=colour, font=font)
        d.text((x0, y1 + 6), f"step {xlo:.0f}", fill=(0, 0, 0), font=font)
        d.text((x1 - 60, y1 + 6), f"{xhi:.0f}", fill=(0, 0, 0), font=font)
        d.text((x0 - 45, y0), f"{yhi:.3g}", fill=(0, 0, 0), font=font)
        d.text((x0 - 45, y1 - 10), f"{ylo:.3g}", fill=(0, 0, 0), font=font)
    # --- right panel: paired differences
    x0, x1 = width // 2 + 230, width - 100
    d.text(
        (width // 2 + 10, pad - 30),
        "paired difference arm - std (dots: seeds; |: mean; line: paired t 95%)",
        fill=(0, 0, 0),
        font=font,
    )
    paired = summary.get("paired", {})
    rows = [(arm, m) for arm in paired for m in METRICS if m in paired[arm]]
    if rows:
        row_h = (height - 2 * pad) / len(rows)
        xm = (x0 + x1) / 2
        d.line([(xm, pad), (xm, height - pad)], fill=(150, 150, 150))
        for j, (arm, m) in enumerate(rows):
            entry = paired[arm][m]
            vals = [v for v in entry["per_seed"].values() if math.isfinite(v)]
            interval = [v if v is not None else math.nan for v in entry["t95"]]
            scale = max([abs(v) for v in vals + [entry["mean"]] + interval if math.isfinite(v)] + [1e-12])
            yc = pad + (j + 0.5) * row_h
            colour = _COLOURS[(arms.index(arm)) % len(_COLOURS)]
            better = "+" if entry["higher_is_better"] else "-"
            d.text((width // 2 + 10, yc - 6), f"{arm}: {m} ({better} better)", fill=colour, font=font)
            to_x = lambda v, scale=scale: xm + v / scale * (x1 - xm) * 0.95  # noqa: E731
            lo, hi = interval
            if math.isfinite(lo) and math.isfinite(hi):
                d.line([(to_x(lo), yc), (to_x(hi), yc)], fill=colour, width=2)
            for v in vals:
                d.ellipse([to_x(v) - 3, yc - 3, to_x(v) + 3, yc + 3], outline=colour)
            if math.isfinite(entry["mean"]):
                d.line([(to_x(entry["mean"]), yc - 7), (to_x(entry["mean"]), yc + 7)], fill=(0, 0, 0), width=2)
            d.text((x1 + 8, yc - 6), f"±{scale:.3g}", fill=(120, 120, 120), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


# ------------------------------------------------------------------ table
def table(summary: dict[str, Any], arms: list[str]) -> str:
    lines = ["arm".ljust(18) + "".join(m.rjust(28) for m in METRICS)]
    for arm in arms:
        cells = []
        for m in METRICS:
            e = summary["per_arm"][arm][m]
            cells.append((f"{e['mean']:.4f} ± {e['std']:.4f}" if e["n"] else "-").rjust(28))
        lines.append(arm.ljust(18) + "".join(cells))
    for arm, entry in summary.get("paired", {}).items():
        lines.append(
            f"{arm} - {BASELINE}".ljust(18)
            + "".join((_paired_cell(entry[m]) if m in entry else "-").rjust(28) for m in METRICS)
        )
    return "\n".join(lines)


def _paired_cell(entry: dict[str, Any]) -> str:
    lo, hi = (math.nan if v is None else v for v in entry["t95"])
    return f"{entry['mean']:+.4f} [{lo:+.3f}, {hi:+.3f}]"


def _finite_or_null(x: Any) -> Any:
    """``x`` with every NaN/inf float replaced by None (strict JSON; e.g. the std of one seed)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite_or_null(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_null(v) for v in x]
    return x


# ------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="base config (default %(default)s)")
    p.add_argument("--grid", default=None, help="data.grid preset (default: the config's, synthetic_small)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default: the config's max_steps)")
    p.add_argument("--seeds", default="3", help="N (seeds 0..N-1) or a comma list of seeds")
    p.add_argument("--arms", default="std,render,render_bev", help=f"comma list of {sorted(ARMS)}")
    p.add_argument("--scenes", type=int, default=None, help="training scenes (default: the config's)")
    p.add_argument("--val-scenes", type=int, default=None, help="validation scenes (default: the config's)")
    p.add_argument("--val-every-epochs", type=int, default=0, help="validate every N epochs (0: at the end only)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where <name>.json/png go")
    p.add_argument("--name", default="evidence", help="file name of the result, without suffix (default %(default)s)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "evidence", help="run directories")
    p.add_argument("--data", type=Path, default=ROOT / "runs" / "evidence_data", help="synthetic datasets")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help=f"reuse a finished run whose {RUN_RECORD} has the same resolved config (split a long "
        "experiment over processes with --seeds/--arms, then summarise with --reuse)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    p.add_argument(
        "--resummarise",
        type=Path,
        default=None,
        metavar="JSON",
        help="recompute the summary (and the PNG beside it) of a finished result from its recorded per-run "
        "metrics, training nothing; the other options are ignored",
    )
    args = p.parse_args(argv)
    if "," in args.seeds or not args.seeds.isdigit():
        try:
            args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            p.error(f"--seeds must be N or a comma list of ints, got {args.seeds!r}")
    else:
        args.seed_list = list(range(int(args.seeds)))
    if not args.seed_list or min(args.seed_list) < 0 or len(set(args.seed_list)) != len(args.seed_list):
        p.error(f"--seeds must give distinct seeds >= 0, got {args.seeds!r}")
    args.arm_list = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arm_list if a not in ARMS]
    if unknown or not args.arm_list or len(set(args.arm_list)) != len(args.arm_list):
        p.error(f"--arms must be distinct names of {sorted(ARMS)}, got {args.arms!r}")
    for name in ("steps", "scenes", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not args.name or "/" in args.name or args.name.startswith("."):
        p.error(f"--name must be a plain file name without suffix, got {args.name!r}")
    if args.val_scenes is not None and args.val_scenes < 1:
        p.error(f"--val-scenes must be >= 1 (the arms are compared on them), got {args.val_scenes}")
    return args


def resummarise(path: Path, argv: Sequence[str]) -> dict[str, Any]:
    """Recompute ``summary`` of the result at ``path`` from its ``runs`` (the statistics change,
    the runs do not), record that it was done and how, and rewrite the JSON and its PNG."""
    result = json.loads(path.read_text())
    if result.get("schema") != "gaussrender.evidence/1" or not isinstance(result.get("runs"), list):
        raise SystemExit(f"error: {path} is not a gaussrender.evidence/1 result")
    arms, seeds = list(result["arms"]), list(result["seeds"])
    result["summary"] = summarise(result["runs"], arms, seeds)
    result["resummarised"] = {
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/evidence.py", *argv]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "note": "summary recomputed from the recorded per-run metrics with the current statistics (paired "
        "t-intervals); no run was repeated. Fields the original runs did not record (dataset_sha256, "
        "versions.cpu_model, torch and BLAS builds) stay absent.",
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_finite_or_null(result), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    png = plot(path.with_suffix(".png"), result["runs"], result["summary"], arms, seeds)
    print(table(result["summary"], arms))
    print(f"rewrote {path} and {png}")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from gaussrender.train.builders import prepare_synthetic
    from gaussrender.train.config import config_to_dict
    from gaussrender.train.run import build_initial_model, parameter_checksum, train

    args = parse_args(argv)
    if args.resummarise is not None:
        return resummarise(args.resummarise, list(argv if argv is not None else sys.argv[1:]))
    if args.threads:
        torch.set_num_threads(args.threads)
    from gaussrender.train.config import load_config

    steps = args.steps if args.steps is not None else (load_config(args.config).train.max_steps or 1000)
    tic = time.perf_counter()
    # the dataset is a function of the config's data section: write it once for all runs
    probe, _ = run_config(args.config, args.arm_list[0], args.seed_list[0], steps, args.data, args)
    root = data_dir(probe, args.data)
    probe, _ = run_config(args.config, args.arm_list[0], args.seed_list[0], steps, root, args)
    if probe.data.synthetic is None or probe.data.synthetic.num_val_scenes < 1:
        raise SystemExit("error: the config must describe a synthetic dataset with validation scenes")
    prepare_synthetic(probe.data)
    data_hash = dataset_sha256(root)
    data_s = time.perf_counter() - tic
    runs: list[dict[str, Any]] = []
    for seed in args.seed_list:
        for arm in args.arm_list:
            cfg, overrides = run_config(args.config, arm, seed, steps, root, args)
            run_dir = args.runs / f"{cfg.data.grid}_{arm}_seed{seed}"
            record_path = run_dir / RUN_RECORD
            key = json.loads(json.dumps(config_to_dict(cfg)))  # as it reads back from the record
            shared = parameter_checksum(build_initial_model(cfg), exclude=("opacity_head.",))
            if args.reuse and record_path.is_file():
                record = json.loads(record_path.read_text())
                if record.get("config") == key:
                    record.pop("config")
                    runs.append({**record, "shared_checksum": shared, "reused": True})
                    print(f"[{arm} seed {seed}] reused {record_path}", flush=True)
                    continue
            with run_lock(run_dir):
                for stale in ("log.jsonl", "last.pt", RUN_RECORD):  # a fresh run, not a resumed or appended one
                    (run_dir / stale).unlink(missing_ok=True)
                t0 = time.perf_counter()
                result = train(cfg, run_dir, progress=False)
                wall = time.perf_counter() - t0
            metrics = {k: float(v) for k, v in result.items() if k in METRICS}
            curves = read_curves(run_dir)
            record = {
                "arm": arm,
                "seed": seed,
                "overrides": overrides,
                "run_dir": str(run_dir),
                "init_checksum": result["init_checksum"],
                "shared_checksum": shared,
                "steps": int(result["step"]),
                "wall_s": wall,
                "s_per_step": wall / max(1, int(result["step"])),
                "torch_threads": torch.get_num_threads(),
                "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                "metrics": metrics,
                "curves": curves,
            }
            # written last and atomically: a record on disk means a finished run of exactly ``cfg``
            tmp = record_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(_finite_or_null({**record, "config": key}), allow_nan=False) + "\n")
            os.replace(tmp, record_path)
            runs.append({**record, "reused": False})
            print(
                f"[{arm} seed {seed}] {result['step']} steps, {wall:.1f} s: "
                + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
                flush=True,
            )
    # the paired design: every arm of a seed starts from the same weights (bar the learned-opacity
    # head, built last, which an arm without it lacks)
    for seed in args.seed_list:
        sums = {r["shared_checksum"] for r in runs if r["seed"] == seed}
        if len(sums) != 1:
            raise SystemExit(f"error: the arms of seed {seed} start from different weights {sorted(sums)}")
    summary = summarise(runs, args.arm_list, args.seed_list)
    wall = time.perf_counter() - tic
    out = {
        "schema": "gaussrender.evidence/1",
        "status": "complete",
        "command": " ".join(
            shlex.quote(a)
            for a in [
                "python",
                str(Path(__file__).resolve().relative_to(ROOT)),
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "config_file": str(args.config),
        "config": config_to_dict(probe),
        "arms": {a: ARMS[a] for a in args.arm_list},
        "baseline": BASELINE,
        "seeds": args.seed_list,
        "steps": steps,
        "grid": probe.data.grid,
        "train_scenes": probe.data.synthetic.num_scenes,
        "val_scenes": probe.data.synthetic.num_val_scenes,
        "scene_seeds": {
            "train": [probe.data.synthetic.seed, probe.data.synthetic.seed + probe.data.synthetic.num_scenes - 1],
            "val": [
                probe.data.synthetic.seed + probe.data.synthetic.num_scenes,
                probe.data.synthetic.seed + probe.data.synthetic.num_scenes + probe.data.synthetic.num_val_scenes - 1,
            ],
        },
        "bootstrap": {"seed": BOOTSTRAP_SEED, "samples": BOOTSTRAP_SAMPLES, "level": 0.95},
        "dataset_sha256": data_hash,
        "versions": versions(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "wall_s": wall,
        "data_s": data_s,
        "runs": runs,
        "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{args.name}.json"
    json_path.write_text(json.dumps(_finite_or_null(out), indent=1, allow_nan=False) + "\n")
    png_path = plot(args.out / f"{args.name}.png", runs, summary, args.arm_list, args.seed_list)
    print(table(summary, args.arm_list))
    print(f"wrote {json_path} and {png_path} ({wall:.0f} s)")
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
