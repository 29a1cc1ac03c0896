"""Render a driving scene and an imperfect prediction of it, the way GaussRender compares them.

Without ``--labels`` the scene is procedural (:func:`gaussrender.scene.make_scene`, from
``--seed``); with ``--labels`` it is a real Occ3D ``labels.npz``. The prediction is the
ground truth degraded on purpose (:func:`gaussrender.scene.degrade`: grown, shrunk and
mislabelled objects, noisy logits). Both become Gaussians and are rendered from the front
camera of a nuScenes-like rig, from an elevated camera and from the bird's-eye view; the
GaussRender loss terms between them are printed.

Files written into ``--out``:
    sensor.png, elevated.png, bev.png   ground truth | prediction | error (classes that differ in
                                        red, depth error), semantics above depth
    overview.png                        the three views and a colour key on one page
    orbit.gif                           a camera circling the ego (30 m out, 15 m up),
                                        ground truth | prediction

Example:
    gaussrender demo --seed 3 --out demo_out
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..geometry.grid import VoxelGrid

HELP = "render a synthetic (or real Occ3D) scene and a degraded prediction: PNGs, an orbit GIF, the loss terms"

#: Orbit of the GIF's camera around the ego, metres.
ORBIT_RADIUS = 30.0
ORBIT_HEIGHT = 15.0
#: Horizontal field of view of the GIF's camera, degrees.
ORBIT_FOV = 70.0
#: Depth colour ranges, metres: cameras see up to ~50 m, which the loss also normalises by.
CAMERA_MAX_DEPTH = 50.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the procedural scene and of the degradation (default 0)"
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument(
        "--labels", type=Path, default=None, help="render this Occ3D labels.npz instead of a procedural scene"
    )
    parser.add_argument("--frames", type=int, default=24, help="frames of the orbit GIF (default 24)")
    parser.add_argument(
        "--size", type=float, default=0.25, help="image size as a fraction of nuScenes' 1600x900 (default 0.25)"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "numba", "triton"),
        help="renderer backend (default auto)",
    )
    parser.add_argument("--device", default="cpu", help="torch device to render on, e.g. cuda (default cpu)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second of the GIF (default 8)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the renders are small, and on a busy machine extra threads slow them down)",
    )


def _error(message: str) -> int:
    print(f"gaussrender demo: error: {message}", file=sys.stderr)
    return 2


def _argument_error(args: argparse.Namespace) -> str | None:
    """The first bad command-line value, as a message; None when all are good."""
    if not 1 <= args.frames <= 3600:  # each frame is a render kept in memory for the GIF
        return f"--frames must be in [1, 3600], got {args.frames}"
    if not (0.02 <= args.size <= 2.0):
        return f"--size must be in [0.02, 2] (fraction of 1600x900), got {args.size}"
    if args.fps <= 0:
        return f"--fps must be > 0, got {args.fps}"
    if args.seed < 0:
        return f"--seed must be >= 0, got {args.seed}"
    if not 1 <= args.threads <= 1024:  # each an OS thread
        return f"--threads must be in [1, 1024], got {args.threads}"
    from ._checks import check_writable_dir

    try:
        check_writable_dir(args.out)
    except ValueError as err:
        return str(err)
    if args.backend == "triton" and not str(args.device).startswith("cuda"):
        return "--backend triton renders CUDA tensors; add --device cuda (or use --backend torch)"
    if args.backend == "numba" and str(args.device).startswith("cuda"):
        return "--backend numba renders CPU tensors; use --backend auto or torch with --device cuda"
    return None


def _scene(args: argparse.Namespace, grid: VoxelGrid, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Ground-truth labels ``[X, Y, Z]`` (Occ3D file or procedural), the degraded prediction's
    logits ``[C, X, Y, Z]`` and a line saying where the scene came from. Raises
    ``FileNotFoundError``/``KeyError``/``ValueError`` for a bad ``--labels`` file."""
    import numpy as np
    import torch

    from ..data.occ3d import read_occ3d_labels
    from ..scene import degrade, make_scene

    if args.labels is not None:
        labels = torch.from_numpy(read_occ3d_labels(args.labels, grid)["semantics"].astype(np.int64))
        source = f"Occ3D labels {args.labels}"
    else:
        labels = make_scene(args.seed, grid).semantics.long()
        source = f"procedural scene, seed {args.seed}"
    logits = degrade(labels, args.seed, grid).to(device)
    return labels.to(device), logits, source


def run(args: argparse.Namespace) -> int:
    message = _argument_error(args)
    if message is not None:
        return _error(message)

    import torch

    from ..geometry.camera_strategies import elevated
    from ..geometry.cameras import Cameras
    from ..geometry.grid import OCC3D_NUSCENES
    from ..geometry.rigs import bev_camera, nuscenes_rig
    from ..losses.render import GaussRenderLoss
    from ..render.gaussians import voxels_to_gaussians
    from ..viz import orbit_cameras
    from ._pictures import View, write_pictures

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        return _error(f"--device {args.device!r} is not usable: {err}")
    grid = OCC3D_NUSCENES
    try:
        labels, logits, source = _scene(args, grid, device)
    except (FileNotFoundError, KeyError, ValueError) as err:
        return _error(str(err).strip("'\""))
    gt = voxels_to_gaussians(grid, labels=labels)
    pred = voxels_to_gaussians(grid, logits=logits, labels=labels)
    print(f"{source}: {len(gt)} ground-truth Gaussians, {len(pred)} predicted (opacity >= 1/255)")

    height, width = max(8, round(900 * args.size)), max(8, round(1600 * args.size))
    intrinsics, cam_from_ego, names = nuscenes_rig((height, width), device=device)
    gen = torch.Generator().manual_seed(args.seed)
    raised = elevated(cam_from_ego[:1], generator=gen)
    bev_size = max(32, round(1600 * args.size))
    bev_height = grid.extent[0]  # bev_camera's height above the ground, metres
    views = [
        View("sensor", names[0], Cameras(cam_from_ego[:1], intrinsics[:1], width, height), (0.0, CAMERA_MAX_DEPTH)),
        View(
            "elevated", f"{names[0]}, elevated", Cameras(raised, intrinsics[:1], width, height), (0.0, CAMERA_MAX_DEPTH)
        ),
        View(
            "bev",
            "bird's-eye view",
            bev_camera(grid, size=bev_size, device=device),
            (bev_height - grid.range_max[2], bev_height - grid.range_min[2]),
        ),
    ]
    # the orbit's panels are 3/4 of the sensor views' size: two per frame, many frames
    orbit_size = (max(8, round(0.75 * height)), max(8, round(0.75 * width)))
    orbit = orbit_cameras(args.frames, orbit_size, ORBIT_RADIUS, ORBIT_HEIGHT, ORBIT_FOV, device=device)
    written = write_pictures(args.out, grid, gt, pred, views, orbit, args.backend, args.fps, overview_depth=True)

    loss_fn = GaussRenderLoss(grid, bev_size=bev_size, backend=args.backend, seed=args.seed)
    with torch.no_grad():
        # the pictured front camera, so that the numbers match what the PNGs show
        terms = loss_fn(
            logits[None],
            labels[None],
            intrinsics=intrinsics[None, :1],
            cam_from_grid=cam_from_ego[None, :1],
            image_size=(height, width),
        )
    print(f"GaussRender loss, ground truth vs degraded prediction ({names[0]} + bird's-eye view):")
    for name in ("cam", "cam_depth", "bev", "bev_depth", "loss"):
        print(f"  {name:<10} {float(terms[name]):.6f}")
    print("wrote:")
    for path in written:
        print(f"  {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
