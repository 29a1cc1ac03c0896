"""Look at one saved prediction next to its ground truth, and score that sample.

Reads the sample's ground truth and calibration as ``gaussrender eval`` does (``--benchmark``,
``--gt``, ``--infos``) and its prediction ``<token>.npz`` from ``--pred`` (the files
``gaussrender predict`` writes), turns both into Gaussians (non-empty voxels, one-hot class
colours, opacity 1) and renders them from every camera of the sample (six on nuScenes, the
front camera on KITTI-360) and from the bird's-eye view.

Files written into ``--out``:
    <CAMERA>.png, bev.png   ground truth | prediction | error (classes that differ in red,
                            depth error), semantics above depth (the BEV picture at least as
                            tall as the camera pictures; panels under 64 px a side enlarged)
    overview.png            every view's semantics and error on one page, with a colour key
    orbit.gif               a camera circling the ego (30 m out, 15 m up), ground truth | prediction

A progress bar on stderr follows the scoring, every view and every GIF frame.

Printed: the sample's voxel IoU / mIoU (:class:`gaussrender.metrics.OccupancyMetrics`, inside
``mask_camera`` on Occ3D by default, as ``eval``) and its rendered-view metrics
(:class:`gaussrender.metrics.RenderedViewMetrics`). Pictures and rendered metrics are made at
``--render-scale`` of each view's size (default 0.25, for speed on a CPU; the release's
rendered metrics use 1, and a smaller scale changes them).

The token is checked against the info file before it names any file. Headless: no window
is opened.

Example:
    gaussrender view --benchmark occ3d --gt data/nuscenes --infos infos_val.pkl --pred out/pred --out view_out
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from . import _checks
from ._scoring import BENCHMARKS, NUSCENES_BENCHMARKS, benchmark_tokens

HELP = (
    "render one saved prediction and its ground truth from the sample's cameras and the BEV: PNGs, an orbit GIF, its "
    "IoU/mIoU"
)

#: Depth colour range of the camera views, metres (what the cameras mostly see).
CAMERA_MAX_DEPTH = 50.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--benchmark",
        required=True,
        choices=tuple(b for b in BENCHMARKS if b != "occ3d_waymo"),  # Occ3D-Waymo: no cameras read
        help="ground-truth layout (as gaussrender eval)",
    )
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth root (as gaussrender eval)")
    parser.add_argument(
        "--pred", required=True, type=Path, help="directory of <token>.npz predictions (gaussrender predict's output)"
    )
    parser.add_argument(
        "--infos",
        type=Path,
        help="nuScenes info file (.pkl or .json) or tables root; required for the nuScenes benchmarks",
    )
    parser.add_argument(
        "--nuscenes-version",
        default="v1.0-trainval",
        help="tables folder when --infos is a directory (default v1.0-trainval)",
    )
    parser.add_argument(
        "--split", default=None, help="as gaussrender eval (default: every sample of --infos; KITTI-360: val)"
    )
    parser.add_argument(
        "--token", default=None, help="sample to show (default: the first sample); KITTI-360: <sequence>/<frame>"
    )
    parser.add_argument("--out", type=Path, default=Path("view_out"), help="output folder (default view_out)")
    parser.add_argument(
        "--render-scale",
        type=float,
        default=0.25,
        help="render every view (pictures and rendered-view metrics) at this fraction of its size, in (0, 1] "
        "(default 0.25, for speed on a CPU; the release's rendered metrics use 1, and smaller changes them)",
    )
    parser.add_argument(
        "--mask-camera",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="voxel IoU/mIoU inside mask_camera (default: on for occ3d, as gaussrender eval)",
    )
    parser.add_argument("--frames", type=int, default=24, help="frames of the orbit GIF (default 24)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second of the GIF (default 8)")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "numba", "triton"),
        help="renderer backend (default auto)",
    )
    parser.add_argument("--device", default="cpu", help="torch device to render on, e.g. cuda (default cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the renders are small, and on a busy machine extra threads slow them down)",
    )


def _error(message: str) -> int:
    print(f"gaussrender view: error: {message}", file=sys.stderr)
    return 2


def _pct(x: float) -> str:
    return "   nan" if math.isnan(x) else f"{100.0 * x:6.2f}"


def _argument_error(args: argparse.Namespace) -> str | None:
    """The first bad command-line value (beyond the dataset options), as a message; None when
    all are good."""
    if not (math.isfinite(args.render_scale) and 0 < args.render_scale <= 1):
        return f"--render-scale must be in (0, 1], got {args.render_scale}"
    # upper bounds: each frame is a render and each thread an OS thread; beyond them a run
    # could only exhaust memory or time
    if not 1 <= args.frames <= 3600:
        return f"--frames must be in [1, 3600], got {args.frames}"
    if not 1 <= args.threads <= 1024:
        return f"--threads must be in [1, 1024], got {args.threads}"
    if not (math.isfinite(args.fps) and args.fps > 0):
        return f"--fps must be > 0, got {args.fps}"
    if args.backend == "triton" and not str(args.device).startswith("cuda"):
        return "--backend triton renders CUDA tensors; add --device cuda (or use --backend torch)"
    if args.backend == "numba" and str(args.device).startswith("cuda"):
        return "--backend numba renders CPU tensors; use --backend auto or torch with --device cuda"
    if not args.pred.is_dir():
        return f"prediction directory not found: {args.pred}"
    if args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} exists and is not a directory"
    try:
        _checks.check_writable_dir(args.out)
    except ValueError as err:
        return str(err)
    return None


def run(args: argparse.Namespace) -> int:
    from .eval import dataset_options

    nuscenes = args.benchmark in NUSCENES_BENCHMARKS
    try:
        mask_camera = dataset_options(args)
    except ValueError as err:
        return _error(str(err))
    message = _argument_error(args)
    if message is not None:
        return _error(message)

    import torch
    from tqdm import tqdm

    from ..data.files import safe_name
    from ..geometry.cameras import Cameras, scale_intrinsics
    from ..geometry.rigs import bev_camera
    from ..metrics import OccupancyMetrics, RenderedViewMetrics
    from ..render.gaussians import voxels_to_gaussians
    from ..viz import orbit_cameras
    from ._pictures import View, write_pictures
    from ._scoring import load_prediction, load_probabilities, open_benchmark

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    try:
        device = _checks.usable_device(args.device)
        dataset = open_benchmark(args, rayiou=False)
    except (ValueError, FileNotFoundError) as err:
        return _error(str(err))
    grid = dataset.grid
    tokens = benchmark_tokens(dataset, args.benchmark)
    token = tokens[0] if args.token is None else args.token
    if token not in tokens:
        return _error(
            f"--token {token!r} is not a sample of the ground truth / info file "
            f"({len(tokens)} samples, first: {', '.join(tokens[:3])})"
        )
    # a token names a file only once each of its components is a plain file name
    parts = token.split("/") if not nuscenes else [token]
    parts = [safe_name(p, "token", "--token") for p in parts]
    pred_path = args.pred.joinpath(*parts[:-1], f"{parts[-1]}.npz")
    if not pred_path.is_file():
        return _error(f"no prediction for sample {token}: {pred_path} not found")
    item = dataset[tokens.index(token)]
    pred = load_prediction(pred_path, grid.shape, grid.num_classes, args.benchmark).to(device)
    target = item["labels"].to(device)

    # one bar for all of it: scoring (voxels, rendered views), each view's picture, each GIF frame
    bar = tqdm(total=2 + len(item["camera_names"]) + 1 + args.frames, desc="view", unit="step", file=sys.stderr)
    # the numbers: voxels as gaussrender eval counts them, then the rendered views
    voxel = OccupancyMetrics(grid).to(device)
    voxel.update(pred[None], target[None], item["mask_camera"][None].to(device) if mask_camera else None)
    v = voxel.compute()
    bar.update()
    height, width = (int(x) for x in item["render_image_size"])
    image_size = (height, width)
    intrinsics = item["render_intrinsics"]
    rendered = RenderedViewMetrics(grid, image_scale=args.render_scale, backend=args.backend).to(device)
    # saved probabilities (predict --save-probabilities): the release's rule; labels: one-hot
    probs = load_probabilities(pred_path, grid.shape, grid.num_classes)
    scored = pred[None] if probs is None else probs[None].to(device)
    rendered.update(
        scored, target[None], intrinsics[None], item["cam_from_grid"][None], image_size, probabilities=probs is not None
    )
    r = rendered.compute()
    bar.update()

    # the pictures: the views the metric renders, the cameras at the same sizes
    h, w = rendered.rendered_image_size(image_size)
    k = scale_intrinsics(intrinsics, w / image_size[1], h / image_size[0]).to(device)
    cams = Cameras(item["cam_from_grid"].to(device), k, w, h)
    # the BEV picture at least as tall as the camera pictures (the metric's BEV is 400 px x scale)
    bev = bev_camera(grid, size=max(rendered.rendered_bev_size, h), device=device)
    pred_g = voxels_to_gaussians(grid, labels=pred)
    gt_g = voxels_to_gaussians(grid, labels=target)
    bev_height = grid.extent[0]  # bev_camera's height above the grid origin, metres
    # camera names are the reader's constants, never file data; checked all the same
    views = [
        View(safe_name(name, "camera name", "dataset"), name, cams[i : i + 1], (0.0, CAMERA_MAX_DEPTH))
        for i, name in enumerate(item["camera_names"])
    ]
    views.append(View("bev", "BEV", bev, (bev_height - grid.range_max[2], bev_height - grid.range_min[2])))
    args.out.mkdir(parents=True, exist_ok=True)
    orbit = orbit_cameras(args.frames, (h, w), device=device)
    with bar:
        written = write_pictures(
            args.out, grid, gt_g, pred_g, views, orbit, args.backend, args.fps, overview_depth=False, progress=bar
        )

    where = " (inside mask_camera)" if mask_camera else ""
    print(f"sample {token}: {len(pred_g)} predicted and {len(gt_g)} ground-truth occupied voxels")
    print(f"voxels{where}: IoU: {_pct(float(v['iou']))}   mIoU: {_pct(float(v['miou']))}")
    print(f"rendered views (image scale {args.render_scale:g}, cameras {w}x{h}, BEV {rendered.rendered_bev_size} px):")
    print(
        f"  cameras  IoU: {_pct(float(r['image_iou']))}   mIoU: {_pct(float(r['image_miou']))}   depth L1: "
        f"{float(r['depth_l1']):.3f} m"
    )
    print(
        f"  BEV      IoU: {_pct(float(r['bev_iou']))}   mIoU: {_pct(float(r['bev_miou']))}   depth L1: "
        f"{float(r['bev_depth_l1']):.3f} m"
    )
    print("wrote:")
    for path in written:
        print(f"  {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
