"""RayIoU cost per sample: :class:`gaussrender.metrics.RayIoU` on an Occ3D-size grid.

One sample = one ``RayIoU.update`` call with a prediction and a ground truth of 200x200x16
voxels (0.4 m) and 8 ray origins, i.e. 8 x 14,040 = 112,320 rays cast through both grids
(SparseOcc's protocol). The ground truth is an Occ3D ``labels.npz`` (``--labels``), or without
it a deterministic synthetic street (road, sidewalks, building fronts, trees, parked cars);
the prediction is the ground truth moved one voxel (0.4 m) along x with 5% of its occupied
voxels relabelled to another class of the scene, so rays stop at realistic depths in both grids. Origins: the nuScenes
LiDAR position (0.986, 0, 1.84) m, repeated every 4 m along x from -14 m to +14 m, as the
LiDAR positions of neighbouring frames of a straight drive.

Per run the metric is reset and timed around ``update`` (``time.perf_counter``; on CUDA with
synchronisation); the first run is a warm-up and is not counted. Reports the median and the
interquartile range of the seconds per sample (and the median process CPU time), the RayIoU
values as a sanity check, and the machine's load average (the figure is only comparable on an idle machine), then writes
``benchmarks/results/rayiou_<device>.json``. CPU runs use one thread by default: the traversal
is a loop of small elementwise steps, and on a busy machine torch's multithreaded kernels can
spend far longer waiting for cores than computing (measured here: 38 s instead of 1.5 s per
sample with 2 threads on 2 cores shared with other jobs).

Usage::

    python benchmarks/rayiou.py                                  # synthetic street, CPU
    python benchmarks/rayiou.py --labels path/to/labels.npz --repeats 7 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import gaussrender as gr
from gaussrender.metrics import RayIoU

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Occ3D-nuScenes class indices used by the synthetic street.
_CAR, _ROAD, _SIDEWALK, _MANMADE, _VEGETATION, _FREE = 4, 11, 13, 15, 16, 17


def synthetic_street(grid: gr.VoxelGrid = gr.OCC3D_NUSCENES, seed: int = 0) -> torch.Tensor:
    """A deterministic Occ3D-like street ``[200, 200, 16]`` (x forward, y left, z up)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.full(grid.shape, _FREE, dtype=torch.long)
    y = grid.voxel_centers()[..., 1][0, :, 0]  # [Y] metres
    road = y.abs() < 7
    walk = (y.abs() >= 7) & (y.abs() < 10)
    labels[:, road, 2] = _ROAD  # ground at z in [-0.2, 0.2) m
    labels[:, walk, 2:4] = _SIDEWALK
    facade = (y.abs() >= 16) & (y.abs() < 18)
    labels[:, facade, 2:15] = _MANMADE
    for x0 in range(5, 195, 12):  # trees on both sidewalks
        for y0 in (76, 121):
            labels[x0 : x0 + 3, y0 : y0 + 3, 5:12] = _VEGETATION
    n_cars = 14
    xs = torch.randint(0, 190, (n_cars,), generator=gen)
    side = torch.randint(0, 2, (n_cars,), generator=gen)
    for x0, s in zip(xs.tolist(), side.tolist()):
        y0 = 82 if s else 112  # parked along both curbs
        labels[x0 : x0 + 11, y0 : y0 + 5, 3:7] = _CAR
    return labels


def make_prediction(gt: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Ground truth moved one voxel along x, 5% of its occupied voxels relabelled to another
    class of the scene."""
    gen = torch.Generator().manual_seed(seed)
    pred = torch.roll(gt, shifts=1, dims=0)
    classes = torch.unique(gt[gt != _FREE])
    flip = (pred != _FREE) & (torch.rand(pred.shape, generator=gen) < 0.05)
    pred[flip] = classes[torch.randint(0, len(classes), (int(flip.sum()),), generator=gen)]
    return pred


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--labels", type=Path, default=None, help="an Occ3D labels.npz (key 'semantics'); default: synthetic street"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up run")
    p.add_argument("--origins", type=int, default=8, help="number of ray origins")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1; 0 keeps torch's choice)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default results/rayiou_<device>.json)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.origins < 1:
        p.error("--repeats and --origins must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    grid = gr.OCC3D_NUSCENES

    if args.labels is not None:
        if not args.labels.is_file():
            p.error(f"--labels: no such file: {args.labels}")
        gt = torch.from_numpy(np.load(args.labels)["semantics"].astype(np.int64))
        source = str(args.labels)
    else:
        gt = synthetic_street(grid)
        source = "synthetic street (benchmarks/rayiou.py:synthetic_street)"
    if tuple(gt.shape) != grid.shape:
        p.error(f"labels must have shape {grid.shape}, got {tuple(gt.shape)}")
    pred = make_prediction(gt)
    xs = (
        torch.linspace(-14.0, 14.0, args.origins, dtype=torch.float64)
        if args.origins > 1
        else torch.zeros(1, dtype=torch.float64)
    )
    origins = torch.stack([xs + 0.986, torch.zeros_like(xs), torch.full_like(xs, 1.84)], dim=1)
    gt, pred, origins = gt[None].to(device), pred[None].to(device), origins.to(device)

    metric = RayIoU(grid).to(device)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    times: list[float] = []
    cpu_times: list[float] = []
    for run in range(args.repeats + 1):
        metric.reset()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        metric.update(pred, gt, [origins])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
        if run > 0:  # the first run is a warm-up
            times.append(elapsed)
            cpu_times.append(cpu_elapsed)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    scores = {k: float(v) for k, v in metric.compute().items() if v.dim() == 0}
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    rays = args.origins * metric.directions.shape[0]

    result = {
        "benchmark": "rayiou",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "grid": f"{grid.name} {grid.shape} voxel {grid.voxel_size} m",
        "labels": source,
        "origins": args.origins,
        "rays_per_sample": rays,
        "gt_rays_kept": int(metric.gt_count.sum()),
        "repeats": args.repeats,
        "seconds_per_sample_median": round(statistics.median(times), 4),
        "seconds_per_sample_iqr": [round(quartiles[0], 4), round(quartiles[2], 4)],
        "seconds_per_sample_all": [round(t, 4) for t in times],
        # process CPU time, less sensitive than wall time to other jobs on a shared machine
        "cpu_seconds_per_sample_median": round(statistics.median(cpu_times), 4),
        "scores": {k: round(v, 6) for k, v in scores.items()},
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before_after": [load_before, load_after],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out or RESULTS_DIR / f"rayiou_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")

    print(f"RayIoU, {grid.name} {grid.shape}, {args.origins} origins, {rays} rays/sample, {source}")
    print(
        f"{'device':>8} {'threads':>7} {'median s':>9} {'q1 s':>7} {'q3 s':>7} {'rayiou':>7} {'@1':>6} {'@2':>6} "
        f"{'@4':>6}"
    )
    print(
        f"{str(device):>8} {torch.get_num_threads():>7} {statistics.median(times):>9.3f} {quartiles[0]:>7.3f} "
        f"{quartiles[2]:>7.3f} {scores['rayiou']:>7.3f} {scores['rayiou@1']:>6.3f} {scores['rayiou@2']:>6.3f} "
        f"{scores['rayiou@4']:>6.3f}"
    )
    print(f"process CPU time per sample (median): {statistics.median(cpu_times):.3f} s")
    print(f"load average before/after: {load_before} / {load_after}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
