"""What the voxel metrics and GaussRenderLoss cost on a preset's full grid (CPU time, peak memory).

One measurement per run (peak RSS is per process), on a procedural scene of the preset's
grid: a ground layer 1.8 m below the grid origin (nuScenes-Occupancy, SemanticKITTI: LiDAR
frame) or at z = 0 (Occ3D-style ego grids), and boxes of random classes (about 3-4 % of the
voxels occupied, as in the real benchmarks). The loss runs forward + backward on float32 logits
``[1, C, X, Y, Z]`` that put 4.0 on the label's class plus N(0, 1) noise, with the six cameras
of :func:`gaussrender.nuscenes_rig` (KITTI grids: its front camera) at 900x1600 divided by
``--resolution-divisor``, plus the BEV at ``--bev-size``.

    python benchmarks/preset_cost.py --grid nuscenes_occupancy --what metrics
    python benchmarks/preset_cost.py --grid nuscenes_occupancy --what loss --bev-size 100 --resolution-divisor 8
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch


def procedural_labels(grid, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x, y, z = grid.shape
    labels = torch.full(grid.shape, grid.empty_index, dtype=torch.int64)
    semantic = [c for c in grid.semantic_classes]
    ground_z = -1.8 if grid.range_min[2] < -1.9 else 0.0
    kz = int((ground_z - grid.range_min[2]) / grid.voxel_size)
    kz = min(max(kz, 0), z - 1)
    labels[:, :, kz] = semantic[-5 % len(semantic)]  # a ground-like class
    n_boxes = 200
    for _ in range(n_boxes):
        cls = semantic[int(torch.randint(len(semantic), (1,), generator=g))]
        sx, sy = (int(v) for v in torch.randint(2, max(3, x // 25), (2,), generator=g))
        sz = int(torch.randint(1, max(2, z // 4), (1,), generator=g))
        ox = int(torch.randint(0, x - sx, (1,), generator=g))
        oy = int(torch.randint(0, y - sy, (1,), generator=g))
        labels[ox : ox + sx, oy : oy + sy, kz + 1 : kz + 1 + sz] = cls
    return labels


def coarsened(grid, factor: int):
    """``grid`` with ``factor``-times fewer voxels per axis: same name, range and classes; the
    Gaussian scale grows with the voxel."""
    import dataclasses

    if factor == 1:
        return grid
    if any(n % factor for n in grid.shape):
        raise ValueError(f"--coarsen {factor} must divide the grid shape {grid.shape}")
    return dataclasses.replace(
        grid,
        shape=tuple(n // factor for n in grid.shape),
        voxel_size=grid.voxel_size * factor,
        gaussian_scale=grid.gaussian_scale * factor,
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    import gaussrender as gr
    from gaussrender.metrics import OccupancyMetrics, RayIoU

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", default="nuscenes_occupancy")
    p.add_argument("--what", choices=("metrics", "rayiou", "loss"), default="metrics")
    p.add_argument("--bev-size", type=int, default=400)
    p.add_argument("--resolution-divisor", type=float, default=1.0)
    p.add_argument("--views", default="cam,bev")
    p.add_argument("--cull", default="center", choices=("center", "footprint"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--margin", type=float, default=4.0, help="logit added to the label's class (8: confident, empty voxels culled)"
    )
    p.add_argument("--coarsen", type=int, default=1, help="divide the grid's shape by this (same range and classes)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = coarsened(gr.get_grid(args.grid), args.coarsen)
    labels = procedural_labels(grid)[None]
    base_rss = peak_rss_mib()
    result: dict = {
        "grid": grid.name,
        "shape": list(grid.shape),
        "classes": grid.num_classes,
        "what": args.what,
        "coarsen": args.coarsen,
        "threads": args.threads,
        "occupied_fraction": float((labels != grid.empty_index).float().mean()),
    }
    times = []
    if args.what == "metrics":
        for _ in range(args.repeats):
            m = OccupancyMetrics(grid)
            pred = labels.clone()
            t0 = time.perf_counter()
            m.update(pred, labels)
            m.compute()
            times.append(time.perf_counter() - t0)
    elif args.what == "rayiou":
        for _ in range(args.repeats):
            m = RayIoU(grid)
            t0 = time.perf_counter()
            m.update(labels, labels, [torch.zeros(1, 3, dtype=torch.float64)])
            m.compute()
            times.append(time.perf_counter() - t0)
    else:
        views = tuple(v for v in args.views.split(",") if v)
        shape = (1, grid.num_classes, *grid.shape)
        logits = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        logits.scatter_add_(1, labels[:, None], torch.full((1, 1, *grid.shape), args.margin))
        k, cam_from_ego, _ = gr.nuscenes_rig((900, 1600))
        if grid.range_min[0] >= 0:  # KITTI-style grid in front of the car: the front camera only
            k, cam_from_ego = k[:1], cam_from_ego[:1]
        loss_fn = gr.GaussRenderLoss(
            grid,
            views=views,
            bev_size=args.bev_size,
            resolution_divisor=args.resolution_divisor,
            cull=args.cull,
            backend="torch",
            camera_strategy="sensor",
            seed=0,
        )
        result.update(
            {
                "bev_size": args.bev_size,
                "resolution_divisor": args.resolution_divisor,
                "views": list(views),
                "margin": args.margin,
            }
        )
        base_rss = peak_rss_mib()
        for _ in range(args.repeats):
            x = logits.clone().requires_grad_(True)
            t0 = time.perf_counter()
            out = loss_fn(x, labels, k[None], cam_from_ego[None], (900, 1600))
            out["loss"].backward()
            times.append(time.perf_counter() - t0)
            result["loss"] = float(out["loss"].detach())
    result["seconds"] = times
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    result["rss_before_measuring_mib"] = round(base_rss, 1)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
