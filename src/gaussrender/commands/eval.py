"""Score saved occupancy predictions against a benchmark's ground truth.

Predictions are one ``<token>.npz`` per ground-truth sample under ``--pred`` (key
``semantics``, else ``pred``), an integer array in the benchmark's own layout: Occ3D
``[200, 200, 16]`` with 17 = free, SurroundOcc ``[200, 200, 16]`` with 0 = empty (LiDAR
frame), SSCBench-KITTI360 ``[256, 256, 32]`` with 0 = empty, saved as
``<seq>/<frame>.npz``. Tokens: nuScenes sample tokens, ``<seq>/<frame>`` for KITTI-360.

Metrics pool counts over the whole split (never per-sample averages) with each benchmark's
own IoU convention (see :mod:`gaussrender.metrics`). Occ3D scores mIoU inside
``mask_camera`` by default. RayIoU (nuScenes benchmarks) casts SparseOcc's rays from the
LiDAR positions of up to 8 frames of the sample's scene found in ``--infos``, over the whole
grid (no visibility mask).

With ``--render-metrics``, prediction and ground truth are also rendered from every camera of
the sample (calibration from ``--infos``; KITTI-360: its front camera) and from the bird's-eye
view, as the GaussRender release's eval does, and scored in 2D: image and BEV IoU / mIoU and
depth L1 in metres (:class:`gaussrender.metrics.RenderedViewMetrics`). Full-size nuScenes
images (six 1600x900 cameras) are slow on a CPU; ``--render-scale 0.25`` renders every view at
a quarter of its size (a deviation from the release, for speed: it changes the numbers).

Example:
    gaussrender eval --benchmark occ3d --gt data/nuscenes --infos infos_val.pkl --pred out/pred --out results.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from . import _checks

HELP = (
    "score saved predictions: IoU, mIoU and RayIoU per class (Occ3D, SurroundOcc, KITTI-360), optionally "
    "rendered-view metrics"
)

_BENCHMARKS = ("occ3d", "surroundocc", "kitti360")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--benchmark", required=True, choices=_BENCHMARKS, help="ground-truth layout and metric convention"
    )
    parser.add_argument(
        "--gt",
        required=True,
        type=Path,
        help="ground-truth root (Occ3D: holds gts/; SurroundOcc: holds samples/; KITTI-360: holds preprocess/)",
    )
    parser.add_argument("--pred", required=True, type=Path, help="directory of <token>.npz predictions")
    parser.add_argument(
        "--infos",
        type=Path,
        help=(
            "nuScenes info file (.pkl or .json), or a nuScenes root whose <version>/ holds the official tables; "
            "required for occ3d and surroundocc"
        ),
    )
    parser.add_argument(
        "--nuscenes-version",
        default="v1.0-trainval",
        help="tables folder when --infos is a directory (default v1.0-trainval)",
    )
    parser.add_argument(
        "--split",
        default=None,
        help=(
            "nuScenes: scenes of annotations.json's '<split>_split' (default: every sample of --infos); KITTI-360: "
            "train/val/test (default val)"
        ),
    )
    parser.add_argument(
        "--no-rayiou", action="store_true", help="skip RayIoU (nuScenes benchmarks compute it by default)"
    )
    parser.add_argument(
        "--mask-camera",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score voxel metrics inside mask_camera (default: on for occ3d; other benchmarks have no such mask)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes scoring samples in parallel (each with its share of the torch threads)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device the metrics count on, e.g. cuda (ray casting dominates the run time)",
    )
    parser.add_argument(
        "--render-metrics",
        action="store_true",
        help=(
            "also render prediction and ground truth from every camera and the BEV: image/BEV IoU, mIoU and depth L1 "
            "(the release's 2D metrics)"
        ),
    )
    parser.add_argument(
        "--render-scale",
        type=float,
        default=1.0,
        help=(
            "--render-metrics: render every view at this fraction of its size, in (0, 1] (default 1 = the release; "
            "smaller is faster but changes the numbers)"
        ),
    )
    parser.add_argument(
        "--render-convention",
        choices=("clean", "release"),
        default="clean",
        help=(
            "--render-metrics: 'clean' (absent class skipped, L1 = sum/count) or 'release' (class without ground "
            "truth scores 1, L1 = sum/(count+1))"
        ),
    )


def _error(message: str) -> int:
    print(f"gaussrender eval: error: {message}", file=sys.stderr)
    return 2


def _number(x: Any) -> float | None:
    value = float(x)
    return None if math.isnan(value) else value


def _pct(x: float | None) -> str:
    return "   nan" if x is None else f"{100.0 * x:6.2f}"


def _metres(x: float | None) -> str:
    return "nan" if x is None else f"{x:.3f} m"


def _load_prediction(path: Path, shape: tuple[int, ...], num_classes: int):
    import numpy as np
    import torch

    from ..data.arrays import LABEL_KINDS, open_npz
    from ..data.files import DataFileError

    # header-checked read: a hostile or corrupt prediction file is named, never unpickled
    with open_npz(path, "prediction file") as data:
        key = "semantics" if "semantics" in data.files else "pred" if "pred" in data.files else None
        if key is None:
            raise DataFileError(f"{path}: expected key 'semantics' or 'pred', has {data.files}", path)
        pred = data.read(key, shape, LABEL_KINDS.replace("b", ""))
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise DataFileError(
            f"{path}: {key} labels must be in [0, {num_classes}), found [{pred.min()}, {pred.max()}]", path
        )
    return torch.from_numpy(pred.astype(np.int64))


def _dataset(args: argparse.Namespace, rayiou: bool):
    from ..data import Occ3DNuScenes, SSCBenchKITTI360, SurroundOccNuScenes, load_nuscenes_tables

    if args.benchmark == "kitti360":
        return SSCBenchKITTI360(args.gt, args.split or "val")
    cls = Occ3DNuScenes if args.benchmark == "occ3d" else SurroundOccNuScenes
    infos = load_nuscenes_tables(args.infos, args.nuscenes_version) if args.infos.is_dir() else args.infos
    return cls(args.gt, infos, split=args.split, with_origins=rayiou)


class _Chunk:
    """Scores a list of sample indices with fresh metrics and returns them (on the CPU).

    A picklable callable so that worker processes can run it; the caller merges the metrics
    (all their states are counts that add up), which gives the same result as one
    sequential pass.
    """

    def __init__(
        self,
        dataset: Any,
        pred_dir: Path,
        mask_camera: bool,
        rayiou: bool,
        device: str,
        threads: int,
        render: dict[str, Any] | None = None,
    ) -> None:
        self.dataset, self.pred_dir, self.mask_camera = dataset, pred_dir, mask_camera
        self.rayiou, self.device, self.threads = rayiou, device, threads
        self.render = render  # None, or image_scale, convention and the stored image size

    def _image_size(self, item: dict[str, Any]) -> tuple[int, int]:
        """``(H, W)`` of the images the sample's intrinsics are for (file header, else the benchmark's size)."""
        from ..data.images import stored_image_size

        assert self.render is not None
        sizes = {stored_image_size(p, self.render["stored_image_size"]) for p in item["image_paths"]}
        if len(sizes) != 1:
            raise ValueError(f"sample {item['token']}: camera images differ in size {sorted(sizes)}")
        return sizes.pop()

    def __call__(self, indices: list[int]) -> tuple[Any, Any, float, Any, float]:
        import torch

        from ..metrics import OccupancyMetrics, RayIoU, RenderedViewMetrics

        if self.threads:
            torch.set_num_threads(self.threads)
        grid = self.dataset.grid
        voxel = OccupancyMetrics(grid).to(self.device)
        ray = RayIoU(grid).to(self.device) if self.rayiou else None
        rendered = None
        if self.render is not None:
            rendered = RenderedViewMetrics(
                grid, convention=self.render["convention"], image_scale=self.render["image_scale"]
            ).to(self.device)
        ray_seconds = render_seconds = 0.0
        for index in indices:
            item = self.dataset[index]
            pred = _load_prediction(self.pred_dir / f"{item['token']}.npz", grid.shape, grid.num_classes)[None]
            target = item["labels"][None]
            voxel.update(pred, target, item["mask_camera"][None] if self.mask_camera else None)
            if ray is not None:
                t0 = time.perf_counter()
                ray.update(pred, target, [item["origins"].double()])
                if torch.device(self.device).type == "cuda":
                    torch.cuda.synchronize()  # kernels run asynchronously: time them, not their launch
                ray_seconds += time.perf_counter() - t0
            if rendered is not None:
                t0 = time.perf_counter()
                rendered.update(
                    pred, target, item["intrinsics"][None], item["cam_from_grid"][None], self._image_size(item)
                )
                if torch.device(self.device).type == "cuda":
                    torch.cuda.synchronize()
                render_seconds += time.perf_counter() - t0
        return (
            voxel.cpu(),
            ray.cpu() if ray is not None else None,
            ray_seconds,
            rendered.cpu() if rendered is not None else None,
            render_seconds,
        )


def dataset_options(args: argparse.Namespace) -> bool:
    """Check the dataset arguments shared by ``eval`` and ``view``; return whether voxel
    metrics use ``mask_camera`` (default: on for Occ3D, the only benchmark that has it).

    Raises:
        ValueError: ``--infos`` missing for a nuScenes benchmark, or ``--mask-camera`` asked
            of a benchmark without that mask.
    """
    if args.benchmark != "kitti360" and args.infos is None:
        raise ValueError(f"--infos is required for --benchmark {args.benchmark} (calibration, scenes and tokens)")
    mask_camera = args.mask_camera if args.mask_camera is not None else args.benchmark == "occ3d"
    if mask_camera and args.benchmark != "occ3d":
        raise ValueError(f"--mask-camera: {args.benchmark} ground truth has no mask_camera")
    return mask_camera


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    nuscenes = args.benchmark != "kitti360"
    try:
        mask_camera = dataset_options(args)
    except ValueError as err:
        return _error(str(err))
    use_rayiou = nuscenes and not args.no_rayiou
    if args.workers < 1:
        return _error(f"--workers must be >= 1, got {args.workers}")
    if not args.pred.is_dir():
        return _error(f"prediction directory not found: {args.pred}")
    if not (math.isfinite(args.render_scale) and 0 < args.render_scale <= 1):
        return _error(f"--render-scale must be in (0, 1], got {args.render_scale}")
    try:
        # before the evaluation, not after it: a bad device or an unwritable --out fails now
        _checks.usable_device(args.device)
        if args.out is not None:
            _checks.check_writable_file(args.out)
        dataset = _dataset(args, use_rayiou)
    except (ValueError, FileNotFoundError) as err:
        return _error(str(err))
    grid = dataset.grid
    tokens = [s.token for s in dataset.samples] if nuscenes else [f"{q}/{f}" for q, f in dataset.frames]
    missing = [t for t in tokens if not (args.pred / f"{t}.npz").is_file()]
    if missing:
        first = ", ".join(missing[:5])
        return _error(
            f"{len(missing)} of {len(tokens)} ground-truth samples have no prediction in {args.pred} "
            f"(expected <token>.npz), first: {first}"
        )

    voxel_metric: Any = None  # the first chunk's metrics, the others merged into them
    ray_metric: Any = None
    indices = list(range(len(dataset)))
    # one sample per chunk in-process (fine-grained progress); a few chunks per worker otherwise
    size = 1 if args.workers == 1 else max(1, math.ceil(len(indices) / (4 * args.workers)))
    chunks = [indices[i : i + size] for i in range(0, len(indices), size)]
    # workers share the torch threads; in-process the threads stay as they are (0)
    threads = 0 if args.workers == 1 else max(1, torch.get_num_threads() // args.workers)
    render = None
    if args.render_metrics:
        from ..data.kitti360 import KITTI360_IMAGE_SIZE
        from ..data.nuscenes import NUSCENES_IMAGE_SIZE

        render = {
            "image_scale": args.render_scale,
            "convention": args.render_convention,
            "stored_image_size": NUSCENES_IMAGE_SIZE if nuscenes else KITTI360_IMAGE_SIZE,
        }
    job = _Chunk(dataset, args.pred, mask_camera, use_rayiou, args.device, threads, render)
    rendered_metric: Any = None
    ray_seconds = render_seconds = 0.0
    start = time.perf_counter()
    with tqdm(total=len(indices), desc=f"eval {args.benchmark}", unit="sample", file=sys.stderr) as bar:
        # per chunk: (voxel counts, ray counts, seconds, rendered counts, rendered seconds)
        outputs: Iterator[tuple[Any, Any, float, Any, float]]
        if args.workers == 1:
            outputs = map(job, chunks)
            executor = None
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a forked child may deadlock in an OpenMP pool the parent already started
            executor = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
            outputs = executor.map(job, chunks)
        try:
            for chunk, (voxel, ray, seconds, rendered, r_seconds) in zip(chunks, outputs):
                if voxel_metric is None:
                    voxel_metric, ray_metric, rendered_metric = voxel, ray, rendered
                else:
                    voxel_metric.merge_state(voxel)
                    if ray_metric is not None:
                        ray_metric.merge_state(ray)
                    if rendered_metric is not None:
                        rendered_metric.merge_state(rendered)
                ray_seconds += seconds
                render_seconds += r_seconds
                bar.update(len(chunk))
        finally:
            if executor is not None:
                executor.shutdown(cancel_futures=True)
    total_seconds = time.perf_counter() - start

    voxel = voxel_metric.compute()
    results: dict[str, Any] = {
        "benchmark": args.benchmark,
        "gt": str(args.gt),
        "pred": str(args.pred),
        "split": args.split if nuscenes else (args.split or "val"),
        "num_samples": len(tokens),
        "mask_camera": mask_camera,
        "device": str(args.device),
        "workers": args.workers,
        "iou": _number(voxel["iou"]),
        "miou": _number(voxel["miou"]),
        "per_class_iou": {name: _number(v) for name, v in zip(grid.class_names, voxel["per_class_iou"])},
    }
    if ray_metric is not None:
        ray = ray_metric.compute()
        keys = [f"rayiou@{t:g}" for t in ray_metric.thresholds]
        results["rayiou"] = _number(ray["rayiou"])
        results.update({k: _number(ray[k]) for k in keys})
        results["per_class_rayiou"] = {
            name: {k: _number(ray["per_class_rayiou"][i, c]) for i, k in enumerate(keys)}
            for c, name in enumerate(grid.class_names)
            if c in grid.semantic_classes
        }
    if rendered_metric is not None:
        r = rendered_metric.compute()
        results["render_metrics"] = {
            "convention": rendered_metric.convention,
            "image_scale": rendered_metric.image_scale,
            "bev_size": rendered_metric.rendered_bev_size,
        }
        for key in ("image_iou", "image_miou", "depth_l1", "bev_iou", "bev_miou", "bev_depth_l1"):
            results[key] = _number(r[key])
        for key in ("image_per_class_iou", "bev_per_class_iou"):
            results[key] = {name: _number(v) for name, v in zip(grid.class_names, r[key])}
    results["seconds"] = {
        "total": total_seconds,
        "per_sample": total_seconds / len(tokens),
        # summed over workers: per-sample cost, not wall time, when --workers > 1
        "rayiou_per_sample": ray_seconds / len(tokens) if ray_metric is not None else None,
        "render_per_sample": render_seconds / len(tokens) if rendered_metric is not None else None,
    }
    _print_table(results, grid)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


def _print_table(results: dict[str, Any], grid: Any) -> None:
    ray = results.get("per_class_rayiou")
    keys = list(next(iter(ray.values())).keys()) if ray else []
    width = max(len(n) for n in grid.class_names)
    # rendered-view columns (--render-metrics): per-class IoU of the camera images and the BEV
    views = [
        (k, label)
        for k, label in (("image_per_class_iou", "img IoU"), ("bev_per_class_iou", "BEV IoU"))
        if k in results
    ]
    header = f"{'class':<{width}}  {'IoU':>6}" + "".join(f"  {k:>9}" for k in keys)
    header += "".join(f"  {label:>7}" for _, label in views)
    print(header)
    print("-" * len(header))
    for c in grid.semantic_classes:
        name = grid.class_names[c]
        row = f"{name:<{width}}  {_pct(results['per_class_iou'][name])}"
        row += "".join(f"  {_pct(ray[name][k]):>9}" for k in keys) if ray else ""
        row += "".join(f"  {_pct(results[k][name]):>7}" for k, _ in views)
        print(row)
    print("-" * len(header))
    mask = " (inside mask_camera)" if results["mask_camera"] else ""
    print(f"samples: {results['num_samples']}{mask}")
    print(f"IoU (geometry): {_pct(results['iou'])}   mIoU: {_pct(results['miou'])}")
    if ray:
        parts = "   ".join(f"{k}: {_pct(results[k])}" for k in keys)
        print(f"RayIoU: {_pct(results['rayiou'])}   {parts}")
    if views:
        r = results["render_metrics"]
        print(
            f"rendered views ({r['convention']} convention, image scale {r['image_scale']:g}, BEV {r['bev_size']} px):"
        )
        print(
            f"  cameras  IoU: {_pct(results['image_iou'])}   mIoU: {_pct(results['image_miou'])}   depth L1: "
            f"{_metres(results['depth_l1'])}"
        )
        print(
            f"  BEV      IoU: {_pct(results['bev_iou'])}   mIoU: {_pct(results['bev_miou'])}   depth L1: "
            f"{_metres(results['bev_depth_l1'])}"
        )
    s = results["seconds"]
    extra = f", RayIoU {s['rayiou_per_sample']:.3f} s/sample" if s["rayiou_per_sample"] is not None else ""
    if s.get("render_per_sample") is not None:
        extra += f", rendering {s['render_per_sample']:.3f} s/sample"
    print(f"time: {s['total']:.1f} s ({s['per_sample']:.3f} s/sample{extra})")
