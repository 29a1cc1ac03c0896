"""Score saved occupancy predictions against a benchmark's ground truth.

Predictions are one ``<token>.npz`` per ground-truth sample under ``--pred`` (key
``semantics``, else ``pred``), an integer array in the classes of the benchmark's preset grid
(:func:`gaussrender.get_grid`): Occ3D ``[200, 200, 16]`` with 17 = free, SurroundOcc
``[200, 200, 16]`` with 0 = empty (LiDAR frame), SSCBench-KITTI360 ``[256, 256, 32]`` with
0 = empty, Occ3D-Waymo ``[200, 200, 16]`` with 15 = free (not the files' 23), OpenOcc
``[200, 200, 16]`` with 16 = free, nuScenes-Occupancy ``[512, 512, 40]`` with 0 = empty
(LiDAR frame), SemanticKITTI ``[256, 256, 32]`` with 0 = empty and classes 1-19 (learning ids,
not raw ids). Tokens: nuScenes sample tokens; ``<seq>/<frame>`` for KITTI-360 and
SemanticKITTI (``08/000000``); ``<scene>/<frame>`` for Occ3D-Waymo (``000/005``).

Metrics pool counts over the whole split (never per-sample averages) with each benchmark's
own IoU convention (see :mod:`gaussrender.metrics`). Occ3D scores mIoU inside
``mask_camera`` by default, Occ3D-Waymo inside ``infov & final_voxel_state``. RayIoU
(nuScenes benchmarks) casts SparseOcc's rays from the LiDAR positions of up to 8 frames of
the sample's scene found in ``--infos``, over the whole grid (no visibility mask).

With ``--render-metrics``, prediction and ground truth are also rendered from every camera of
the sample (calibration from ``--infos``; KITTI-360: its front camera; SemanticKITTI:
``image_2``; Occ3D-Waymo: not available) and from the bird's-eye
view, as the GaussRender release's eval does, and scored in 2D: image and BEV IoU / mIoU and
depth L1 in metres (:class:`gaussrender.metrics.RenderedViewMetrics`). A file that holds
``probabilities`` (float ``[C, X, Y, Z]``, ``gaussrender predict --save-probabilities``) is
scored with the release's rule (the probabilities are the Gaussians' features, opacity 1 where
the argmax is not empty, pixel class = argmax of the blended features); a file with labels only
is rendered one-hot. The report says which rule was used. Full-size nuScenes
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
from ._eval_report import collect_results, print_table
from ._scoring import (
    BENCHMARKS,
    MASKED_BENCHMARKS,
    NUSCENES_BENCHMARKS,
    RAYIOU_BENCHMARKS,
    ChunkScorer,
    benchmark_tokens,
    open_benchmark,
    prediction_path,
    stored_image_size,
)

HELP = (
    "score saved predictions: IoU, mIoU and RayIoU per class (Occ3D, SurroundOcc, KITTI-360, Occ3D-Waymo, OpenOcc, "
    "nuScenes-Occupancy, SemanticKITTI), optionally rendered-view metrics"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--benchmark",
        required=True,
        choices=BENCHMARKS,
        help="ground-truth layout, preset grid and metric convention (docs/data_and_eval.md)",
    )
    parser.add_argument(
        "--gt",
        required=True,
        type=Path,
        help=(
            "ground-truth root (Occ3D: holds gts/; SurroundOcc: holds samples/; KITTI-360: holds preprocess/; "
            "Occ3D-Waymo: holds training/ and validation/; OpenOcc: the openocc_v2 folder; nuScenes-Occupancy: holds "
            "scene_<token>/; SemanticKITTI: holds sequences/)"
        ),
    )
    parser.add_argument("--pred", required=True, type=Path, help="directory of <token>.npz predictions")
    parser.add_argument(
        "--infos",
        type=Path,
        help=(
            "nuScenes info file (.pkl or .json), or a nuScenes root whose <version>/ holds the official tables; "
            "required for the nuScenes benchmarks (occ3d, surroundocc, openocc, nuscenes_occupancy)"
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
            "nuScenes: scenes of annotations.json's '<split>_split' (default: every sample of --infos); KITTI-360, "
            "SemanticKITTI: train/val/test (default val); Occ3D-Waymo: validation/training/test (default validation)"
        ),
    )
    parser.add_argument(
        "--rayiou",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "RayIoU on the nuScenes benchmarks (default: on for occ3d, surroundocc, openocc; off for "
            "nuscenes_occupancy, whose 512x512x40 grid makes it cost 6.5-11 s per ray origin on a CPU)"
        ),
    )
    parser.add_argument(
        "--mask-camera",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "score voxel metrics inside mask_camera (default: on for occ3d, and for occ3d_waymo inside infov & "
            "final_voxel_state; other benchmarks have no such mask)"
        ),
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
    _checks.add_threads_argument(parser, None)
    parser.add_argument(
        "--render-metrics",
        action="store_true",
        help=(
            "also render prediction and ground truth from every camera and the BEV: image/BEV IoU, mIoU and depth L1 "
            "(the release's 2D metrics; files with 'probabilities' from predict --save-probabilities are scored with "
            "the release's soft rule, label files one-hot)"
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


def dataset_options(args: argparse.Namespace) -> bool:
    """Check the dataset arguments shared by ``eval`` and ``view``; return whether voxel
    metrics use ``mask_camera`` (default: on for Occ3D and Occ3D-Waymo, the benchmarks that have it).

    Raises:
        ValueError: ``--infos`` missing for a nuScenes benchmark, or ``--mask-camera`` asked
            of a benchmark without that mask.
    """
    if args.benchmark in NUSCENES_BENCHMARKS and args.infos is None:
        raise ValueError(f"--infos is required for --benchmark {args.benchmark} (calibration, scenes and tokens)")
    masked = args.benchmark in MASKED_BENCHMARKS
    mask_camera = args.mask_camera if args.mask_camera is not None else masked
    if mask_camera and not masked:
        raise ValueError(f"--mask-camera: {args.benchmark} ground truth has no mask_camera")
    return mask_camera


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    nuscenes = args.benchmark in NUSCENES_BENCHMARKS
    try:
        mask_camera = dataset_options(args)
    except ValueError as err:
        return _error(str(err))
    use_rayiou = nuscenes and (args.rayiou if args.rayiou is not None else args.benchmark in RAYIOU_BENCHMARKS)
    if args.rayiou and not nuscenes:
        return _error(f"--rayiou: {args.benchmark} has no ray origins here (no scene poses are read)")
    if not 1 <= args.workers <= 256:  # each worker is a process: a huge count would exhaust the machine
        return _error(f"--workers must be in [1, 256], got {args.workers}")
    message = _checks.apply_threads(args.threads)  # the workers share these threads
    if message is not None:
        return _error(message)
    if not args.pred.is_dir():
        return _error(f"prediction directory not found: {args.pred}")
    if not (math.isfinite(args.render_scale) and 0 < args.render_scale <= 1):
        return _error(f"--render-scale must be in (0, 1], got {args.render_scale}")
    stored_size = None
    if args.render_metrics:
        try:
            stored_size = stored_image_size(args.benchmark)
        except ValueError as err:
            return _error(f"--render-metrics: {err}")
    try:
        # before the evaluation, not after it: a bad device or an unwritable --out fails now
        _checks.usable_device(args.device)
        if args.out is not None:
            _checks.check_writable_file(args.out)
        dataset = open_benchmark(args, use_rayiou)
    except (ValueError, FileNotFoundError) as err:
        return _error(str(err))
    grid = dataset.grid
    tokens = benchmark_tokens(dataset, args.benchmark)
    # exists(), not is_file(): a directory or FIFO in its place is named by the reader, not "missing"
    missing = [t for t in tokens if not prediction_path(args.pred, args.benchmark, t).exists()]
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
    if stored_size is not None:
        render = {
            "image_scale": args.render_scale,
            "convention": args.render_convention,
            "stored_image_size": stored_size,
        }
    job = ChunkScorer(dataset, args.pred, mask_camera, use_rayiou, args.device, threads, render, args.benchmark)
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

    timing = {"total": total_seconds, "rayiou": ray_seconds, "render": render_seconds}
    results = collect_results(args, grid, len(tokens), mask_camera, voxel_metric, ray_metric, rendered_metric, timing)
    print_table(results, grid)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0
