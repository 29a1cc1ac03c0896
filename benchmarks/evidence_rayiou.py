"""RayIoU from several origins, for the runs of a finished evidence result (issue 27).

The trainer's RayIoU on the synthetic scenes casts its rays from one origin, the LiDAR beside
the cameras (the scenes have one frame). This script re-scores each run's end-of-training
checkpoint (``<run_dir>/last.pt``) on the same validation scenes with rays from several
origins along a short straight trajectory through the LiDAR position: the LiDAR origin moved
along the grid's x axis (the ego's driving direction) by ``--offsets`` metres, each kept only
where it lies in a free voxel of the scene's labels. The origins of one scene are pooled as
RayIoU pools the origins of a nuScenes scene. Nothing is trained; the checkpoints are read.

Writes ``rayiou_origins`` into the result JSON (per run: the single-origin RayIoU recomputed
here, which must equal the trainer's, and the several-origin one; a summary per arm and paired
against ``std`` with the result's own statistics) and prints a table::

    python benchmarks/evidence_rayiou.py benchmarks/results/evidence_2d.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OFFSETS = (-12.0, -6.0, 0.0, 6.0, 12.0)


def _evidence():
    spec = importlib.util.spec_from_file_location("evidence_script", ROOT / "benchmarks" / "evidence.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trajectory_origins(labels: torch.Tensor, grid: Any, offsets: tuple[float, ...]) -> torch.Tensor:
    """``[K, 3]`` origins: the synthetic LiDAR's position moved along x by ``offsets`` metres,
    those in a free voxel of ``labels [X, Y, Z]`` (an origin inside an object is no sensor)."""
    from gaussrender.scene import LIDAR_ORIGIN

    out = []
    for dx in offsets:
        p = torch.tensor([LIDAR_ORIGIN[0] + dx, LIDAR_ORIGIN[1], LIDAR_ORIGIN[2]], dtype=torch.float64)
        idx = torch.floor((p - torch.tensor(grid.range_min, dtype=torch.float64)) / grid.voxel_size).long()
        if all(0 <= int(i) < n for i, n in zip(idx, grid.shape)) and int(labels[tuple(idx)]) == grid.empty_index:
            out.append(p)
    return torch.stack(out).float()


def score_run(run_dir: Path, offsets: tuple[float, ...]) -> dict[str, Any]:
    from gaussrender.data import collate
    from gaussrender.metrics import RayIoU
    from gaussrender.train.batches import run_model
    from gaussrender.train.builders import build_dataset, build_model_from_config, grid_of
    from gaussrender.train.checkpoint import load_checkpoint, load_model_state
    from gaussrender.train.config import load_config

    cfg = load_config(run_dir / "config.yaml")
    grid = grid_of(cfg)
    dataset = build_dataset(cfg.data, "val")
    model = build_model_from_config(cfg)
    state = load_checkpoint(run_dir / "last.pt", map_location="cpu", model=model)
    load_model_state(model, state, run_dir / "last.pt")
    model.eval()
    single, several = RayIoU(grid), RayIoU(grid)
    origins_per_scene = []
    with torch.no_grad():
        for i in range(len(dataset)):
            batch = collate([dataset[i]])
            pred = run_model(model, batch)["logits"].float().argmax(dim=1)
            single.update(pred, batch["labels"], batch["origins"])
            origins = trajectory_origins(batch["labels"][0], grid, offsets)
            several.update(pred, batch["labels"], [origins])
            origins_per_scene.append(int(origins.shape[0]))
    return {
        "rayiou_single": float(single.compute()["rayiou"]),
        "rayiou_several": float(several.compute()["rayiou"]),
        "origins_per_scene": origins_per_scene,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("result", type=Path, help="an evidence result JSON (its runs' directories must hold last.pt)")
    p.add_argument("--offsets", default=",".join(str(o) for o in DEFAULT_OFFSETS), help="metres along x")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    offsets = tuple(float(o) for o in args.offsets.split(",") if o.strip())
    ev = _evidence()
    result = json.loads(args.result.read_text())
    arms, seeds = list(result["arms"]), list(result["seeds"])
    tic = time.perf_counter()
    runs = []
    for run in result["runs"]:
        scored = score_run(Path(run["run_dir"]), offsets)
        trainer = run["metrics"]["rayiou"]
        if abs(scored["rayiou_single"] - trainer) > 1e-6:
            raise SystemExit(
                f"error: {run['run_dir']}: single-origin RayIoU {scored['rayiou_single']} differs from the "
                f"trainer's {trainer}: the checkpoint is not the run's end"
            )
        runs.append({"arm": run["arm"], "seed": run["seed"], **scored})
        print(f"[{run['arm']} seed {run['seed']}] single {scored['rayiou_single']:.4f} several "
              f"{scored['rayiou_several']:.4f}", flush=True)  # fmt: skip
    as_runs = [{"arm": r["arm"], "seed": r["seed"], "metrics": {"rayiou": r["rayiou_several"]}} for r in runs]
    summary = ev.summarise(as_runs, arms, seeds)
    result["rayiou_origins"] = {
        "command": " ".join(["python", "benchmarks/evidence_rayiou.py", *(argv if argv is not None else sys.argv[1:])]),
        "offsets_m": list(offsets),
        "note": "RayIoU (SparseOcc's, thresholds 1/2/4 m) from the synthetic LiDAR origin moved along the grid's x "
        "axis by offsets_m, origins in occupied voxels dropped, pooled per scene; single = the trainer's one "
        "origin, recomputed from the checkpoint (checked equal)",
        "runs": runs,
        "summary": {
            "per_arm": {a: v["rayiou"] for a, v in summary["per_arm"].items()},
            "paired": {a: v["rayiou"] for a, v in summary["paired"].items()},
        },  # fmt: skip
        "wall_s": time.perf_counter() - tic,
    }
    tmp = args.result.with_suffix(".tmp")
    tmp.write_text(json.dumps(ev._finite_or_null(result), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, args.result)
    for arm in arms:
        e = summary["per_arm"][arm]["rayiou"]
        line = f"{arm:16s} several-origin RayIoU {e['mean']:.4f} ± {e['std']:.4f}"
        if arm in summary["paired"]:
            d = summary["paired"][arm]["rayiou"]
            lo, hi = d["t95"]
            line += f"   - std {d['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        print(line)
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
