"""Where does GaussRenderLoss spend its CPU time? A cProfile breakdown of one forward+backward.

The same set-up as ``benchmarks/render.py``'s ``loss`` column (Occ3D grid, front camera at
400x225 + the 400x400 BEV, torch backend): the loss is run once to warm up, then ``--repeats``
times under :mod:`cProfile`; the table gives, per stage, the cumulative time of the functions
that implement it (their callees included), divided by the number of runs. Stages overlap by
construction (``render`` contains ``projection``), so the column does not sum to the total.
Both CPU rasterisers (``--backend torch`` / ``numba``) are Python ``autograd.Function`` s, so
their backward is visible. cProfile sees only the calling thread: with ``--threads 2`` the
numba kernels' time in the other thread is missing from the stages (use ``--threads 1``).

    python benchmarks/profile_loss.py --scene trained            # table
    python benchmarks/profile_loss.py --scene untrained --top 25  # + the 25 heaviest functions
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import pstats
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

#: stage -> (file suffix, function name) pairs whose cumulative time is the stage's
STAGES: dict[str, list[tuple[str, str]]] = {
    "whole loss, forward": [("losses/render/loss.py", "forward")],
    "whole loss, backward (autograd)": [("torch/_tensor.py", "backward")],
    "voxels -> Gaussians (softmax, opacity, culling of empty voxels)": [
        ("render/gaussians.py", "build_predictions"),
        ("render/gaussians.py", "build_gaussians"),
    ],
    "render calls, forward (projection + rasteriser)": [("render/dispatch.py", "render_sets_unchecked")],
    "projection, camera culling, packing and depth sort": [("render/_project.py", "splat")],
    "binning splats into tiles": [("render/_project.py", "bin_splats"), ("render/_numba.py", "_bin")],
    "rasteriser forward (alpha blending)": [("render/_torch.py", "forward"), ("render/_numba.py", "forward")],
    "rasteriser backward": [("render/_torch.py", "backward"), ("render/_numba.py", "backward")],
}


def _load_render_benchmark():
    spec = importlib.util.spec_from_file_location("render_benchmark", HERE / "render.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", choices=("gt", "trained", "uncertain", "untrained"), default="trained")
    p.add_argument(
        "--labels",
        default=None,
        help="an Occ3D labels.npz, or 'procedural' (default: the real frame in ../shared/data if present)",
    )
    p.add_argument("--seed", type=int, default=0, help="procedural scene seed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=0, help="also print the N functions with the most own time")
    p.add_argument("--backend", choices=("torch", "numba", "auto"), default="torch", help="the loss's renderer backend")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE.parent / "src"))
    import gaussrender as gr

    bench = _load_render_benchmark()
    grid = gr.OCC3D_NUSCENES
    if args.labels is None:
        args.labels = bench.default_labels()
    labels = bench.load_labels(args.labels, args.seed)
    logits = bench.make_logits(args.scene, labels, grid)
    k, poses, _ = gr.nuscenes_rig((900, 1600))
    loss_fn = gr.GaussRenderLoss(
        grid,
        camera_weights=(1, 0, 0, 0, 0, 0),
        camera_strategy="sensor",
        resolution_divisor=4,
        backend=args.backend,
    )

    def step() -> None:
        x = logits[None].clone().requires_grad_()
        out = loss_fn(x, labels[None], k[None], poses[None], (900, 1600))
        out["loss"].backward()

    step()  # warm-up
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    for _ in range(args.repeats):
        step()
    profiler.disable()
    wall = (time.perf_counter() - t0) / args.repeats
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table in .stats
    print(
        f"scene {args.scene}, backend {args.backend}, {args.threads} threads, {args.repeats} profiled runs; "
        f"wall per run {wall:.2f} s "
        "(cProfile adds overhead)"
    )
    print(f"{'stage':66s} {'s/run':>7s} {'share':>6s}")
    for stage, keys in STAGES.items():
        total = 0.0
        for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in entries.items():
            if any(filename.replace("\\", "/").endswith(suffix) and name == fn for suffix, fn in keys):
                total += ct
        per_run = total / args.repeats
        print(f"{stage:66s} {per_run:7.3f} {per_run / wall:6.0%}")
    if args.top:
        print()
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
