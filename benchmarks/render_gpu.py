"""GPU rendering benchmark: our ``triton`` backend, our ``torch`` backend and gsplat, side by side.

All three renderers get the same isotropic Gaussians and the same views, in one process:

* scenes on the Occ3D-nuScenes grid (200x200x16, 0.4 m voxels, scale 0.27 m), built from
  labels (``--labels`` an Occ3D ``labels.npz``; without it the procedural driving scene of
  :func:`gaussrender.make_scene`, the same one the CPU benchmark and the demo use):
  ``gt`` (ground truth: occupied voxels, one-hot, opacity 1),
  ``trained`` (prediction logits = 10 x one-hot(GT) + N(0, 1.5²) noise: confident, a few
  faint false positives),
  ``untrained`` (logits ~ N(0, 0.1²): every voxel nearly opaque, 640k Gaussians);
* views: the nuScenes front camera or all six at 1/4 (400x225) and 1/2 (800x450) of
  1600x900, and the 400x400 perspective bird's-eye view;
* batch 1 and 4: our renderers take the batch in one call (each sample's Gaussians in the
  same views, ``render_sets_unchecked``, as :class:`gaussrender.GaussRenderLoss` renders a
  batch on a GPU); gsplat gets one call per sample.

Per case: median forward and forward+backward time (CUDA events, after warm-up runs; the
backward pass is that of a fixed random linear function of the feature and depth images,
with gradients w.r.t. features and opacities as in training), peak memory
(``torch.cuda.max_memory_allocated`` above what the scene already held), and the largest
absolute difference of our images from gsplat's. gsplat (optional, ``pip install
gsplat``) gets quaternions (1, 0, 0, 0), three equal scales, the features as N-D colours,
``packed=False``, ``rasterize_mode="classic"``, ``near_plane=0.2``, ``eps2d=0.3``,
``render_mode="RGB+D"`` and the backgrounds; its CUDA code may compile on its first call,
which happens before any timing (and is reported separately).

Writes ``benchmarks/results/render_gpu_<device>.json`` and prints a table. Needs CUDA;
``--scenes-only`` builds and summarises the scenes on any device (no timing).

Usage::

    python benchmarks/render_gpu.py                       # everything (several minutes)
    python benchmarks/render_gpu.py --quick               # a small subset
    python benchmarks/render_gpu.py --labels path/to/labels.npz --scenes gt trained
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

SCENES = ("gt", "trained", "untrained")
VIEWS = ("cam1_400x225", "cam6_400x225", "cam1_800x450", "cam6_800x450", "bev_400x400")
RENDERERS = ("triton", "torch", "gsplat")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def batch_labels(labels: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """``batch`` distinct samples of equal statistics: the scene and its mirror images."""
    variants = [labels, labels.flip(1), labels.flip(0), labels.flip(0).flip(1)]
    return [variants[i % 4] for i in range(batch)]


@dataclass
class Scene:
    """One sample's Gaussians (``[N, 3]``, ``[N]``, ``[N, C]``, ``[N]``) and background ``[C]``."""

    means: torch.Tensor
    opacities: torch.Tensor
    features: torch.Tensor
    scales: torch.Tensor
    background: torch.Tensor


def build_scene(kind: str, labels: torch.Tensor, grid, generator: torch.Generator, device: torch.device) -> Scene:
    import gaussrender as gr

    labels = labels.to(device=device, dtype=torch.long)
    if kind == "gt":
        gs = gr.voxels_to_gaussians(grid, labels=labels)
    else:
        c = grid.num_classes
        noise = torch.randn((c,) + tuple(labels.shape), generator=generator).to(device)
        if kind == "trained":
            onehot = torch.nn.functional.one_hot(labels, c).permute(3, 0, 1, 2).float()
            logits = 10.0 * onehot + 1.5 * noise
        elif kind == "untrained":
            logits = 0.1 * noise
        else:
            raise ValueError(f"scene must be one of {SCENES}, got {kind!r}")
        gs = gr.voxels_to_gaussians(grid, logits=logits, labels=labels)
    background = torch.nn.functional.one_hot(torch.tensor(grid.empty_index), grid.num_classes).float().to(device)
    return Scene(gs.means.detach(), gs.opacities.detach(), gs.features.detach(), gs.scales.detach(), background)


def make_views(grid, device: torch.device) -> dict:
    import gaussrender as gr

    views = {}
    for name in VIEWS:
        if name.startswith("bev"):
            views[name] = gr.bev_camera(grid, 400, device=device)
            continue
        count, size = name.split("_")
        width, height = (int(s) for s in size.split("x"))
        k, cam_from_ego, _ = gr.nuscenes_rig(image_size=(height, width), device=device)
        n = int(count[3:])
        views[name] = gr.Cameras(cam_from_ego[:n], k[:n], width, height)
    return views


Images = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features [V,H,W,C], depth [V,H,W], alpha [V,H,W]


def ours(backend: str) -> Callable[[list[Scene], object], list[Images]]:
    """All samples in one call of our renderer (each sample in ``cams``)."""

    def run(scenes: list[Scene], cams) -> list[Images]:
        from gaussrender.render.dispatch import GaussianSet, render_sets_unchecked

        sets = [GaussianSet(s.means, s.opacities, s.features, s.scales, cams) for s in scenes]
        outs = render_sets_unchecked(sets, scenes[0].background, backend=backend)
        return [(o.features, o.depth, o.alpha) for o in outs]

    return run


def gsplat_renderer() -> Callable[[list[Scene], object], list[Images]]:
    """One gsplat call per sample."""
    from gsplat import rasterization

    def one(scene: Scene, cams) -> Images:
        n, c = scene.features.shape
        quats = torch.zeros(n, 4, device=scene.means.device)
        quats[:, 0] = 1.0
        colors, alphas, _ = rasterization(
            scene.means.contiguous(),
            quats,
            scene.scales[:, None].expand(n, 3).contiguous(),
            scene.opacities,
            scene.features,
            cams.cam_from_world,
            cams.intrinsics,
            cams.width,
            cams.height,
            near_plane=cams.near,
            eps2d=0.3,
            packed=False,
            rasterize_mode="classic",
            render_mode="RGB+D",
            backgrounds=scene.background.expand(len(cams), c).contiguous(),
            camera_model="pinhole" if cams.model == "pinhole" else "ortho",
        )
        return colors[..., :c], colors[..., c], alphas[..., 0]

    def run(scenes: list[Scene], cams) -> list[Images]:
        return [one(s, cams) for s in scenes]

    return run


def time_and_peak(fn: Callable[[], None], warmup: int, repeats: int, budget_s: float) -> dict:
    """Median CUDA-event milliseconds of ``fn`` and its peak memory above the starting point.

    Warm-up runs (the first one compiles Triton kernels) are cut short when one run already
    takes more than a quarter of ``budget_s``; timed runs stop after ``repeats`` or once
    ``budget_s`` seconds of them are spent (at least one).
    """
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if i and time.perf_counter() - t0 > budget_s / 4:
            break
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    while len(times) < repeats and (sum(times) / 1000.0 < budget_s or not times):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return {
        "ms": round(statistics.median(times), 3),
        "runs": len(times),
        "peak_mib": round((torch.cuda.max_memory_allocated() - base) / 2**20, 1),
    }


def measure_case(render_fn, scenes: list[Scene], cams, weights, args) -> dict:
    """Forward and forward+backward timings and peak memory of ``len(scenes)`` samples."""

    def forward() -> None:
        with torch.no_grad():
            render_fn(scenes, cams)

    leaves = [
        Scene(
            s.means, s.opacities.clone().requires_grad_(), s.features.clone().requires_grad_(), s.scales, s.background
        )
        for s in scenes
    ]

    def forward_backward() -> None:
        images = render_fn(leaves, cams)
        sum((feats * weights[0]).sum() + (depth * weights[1]).sum() for feats, depth, _ in images).backward()
        for s in leaves:
            s.opacities.grad = s.features.grad = None

    row: dict = {}
    for name, fn in (("forward", forward), ("forward_backward", forward_backward)):
        try:
            m = time_and_peak(fn, args.warmup, args.repeats, args.budget)
            row[f"{name}_ms"], row[f"{name}_runs"], row[f"{name}_peak_mib"] = m["ms"], m["runs"], m["peak_mib"]
        except Exception as exc:  # recorded in the JSON and printed, never dropped
            row[f"{name}_ms"] = None
            row[f"{name}_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"  {name} failed: {row[f'{name}_error']}", file=sys.stderr)
            torch.cuda.empty_cache()
    return row


def max_abs_diff(a: Images, b: Images) -> dict:
    return {
        name: float((x.float() - y.float()).abs().max()) if x.numel() else 0.0
        for name, x, y in zip(("features", "depth", "alpha"), a, b)
    }


def device_slug() -> str:
    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--labels", type=Path, default=None, help="Occ3D labels.npz (default: a synthetic street)")
    p.add_argument("--scenes", nargs="+", choices=SCENES, default=list(SCENES))
    p.add_argument("--views", nargs="+", choices=VIEWS, default=list(VIEWS))
    p.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    p.add_argument("--renderers", nargs="+", choices=RENDERERS, default=list(RENDERERS))
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timed runs per measurement at most")
    p.add_argument("--quick", action="store_true", help="gt and trained, cam6_400x225 and bev, batch 1")
    p.add_argument("--scenes-only", action="store_true", help="build the scenes and print their sizes; no timing")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default results/render_gpu_<device>.json)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.scenes, args.views, args.batch = ["gt", "trained"], ["cam6_400x225", "bev_400x400"], [1]
    if any(b < 1 for b in args.batch):
        p.error(f"--batch values must be >= 1, got {args.batch}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import gaussrender as gr

    grid = gr.OCC3D_NUSCENES
    if args.labels is not None:
        from gaussrender.data.occ3d import read_occ3d_labels

        labels = torch.from_numpy(read_occ3d_labels(args.labels, grid)["semantics"])
        label_source = str(args.labels)
    else:
        labels = gr.make_scene(args.seed).semantics
        label_source = f"gaussrender.make_scene({args.seed})"

    cuda = torch.cuda.is_available()
    if not cuda and not args.scenes_only:
        print(
            "render_gpu.py needs a CUDA device (torch.cuda.is_available() is False); nothing was "
            "measured. Use --scenes-only to build and summarise the scenes on the CPU.",
            file=sys.stderr,
        )
        return 1
    device = torch.device("cuda" if cuda else "cpu")
    max_batch = max(args.batch)
    generator = torch.Generator().manual_seed(args.seed)
    scenes = {
        kind: [build_scene(kind, lab, grid, generator, device) for lab in batch_labels(labels, max_batch)]
        for kind in args.scenes
    }
    summary = {
        kind: {
            "gaussians": [int(s.means.shape[0]) for s in ss],
            "mean_opacity": round(float(torch.cat([s.opacities for s in ss]).mean()), 4),
        }
        for kind, ss in scenes.items()
    }
    print(f"labels: {label_source}; occupied voxels {int((labels != grid.empty_index).sum())}")
    for kind, info in summary.items():
        print(f"scene {kind:9s}: gaussians per sample {info['gaussians']}, mean opacity {info['mean_opacity']}")
    if args.scenes_only:
        return 0

    views = make_views(grid, device)
    renderers: dict[str, Callable] = {}
    notes: dict[str, str] = {}
    for name in args.renderers:
        if name == "gsplat":
            try:
                renderers[name] = gsplat_renderer()
            except ImportError as exc:
                notes["gsplat"] = f"not available: {exc}"
                print(f"gsplat skipped: {exc}", file=sys.stderr)
        else:
            renderers[name] = ours(name)
    if "gsplat" in renderers:  # compile gsplat's CUDA code (first use) outside the timings
        tiny = scenes[args.scenes[0]][0]
        t0 = time.perf_counter()
        renderers["gsplat"](
            [Scene(tiny.means[:8], tiny.opacities[:8], tiny.features[:8], tiny.scales[:8], tiny.background)],
            views[args.views[0]],
        )
        torch.cuda.synchronize()
        notes["gsplat_first_call_s"] = f"{time.perf_counter() - t0:.1f}"

    rows = []
    for kind in args.scenes:
        for view_name in args.views:
            cams = views[view_name]
            c = grid.num_classes
            wg = torch.Generator(device=device).manual_seed(1)
            weights = (
                torch.randn(len(cams), cams.height, cams.width, c, generator=wg, device=device),
                torch.randn(len(cams), cams.height, cams.width, generator=wg, device=device) / 50.0,
            )
            # accuracy: sample 0, each of ours against gsplat (and triton against torch)
            images = {}
            for name, fn in renderers.items():
                try:
                    with torch.no_grad():
                        images[name] = fn([scenes[kind][0]], cams)[0]
                except Exception as exc:  # the timing below records the error per case
                    print(f"  {name} on {kind}/{view_name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    torch.cuda.empty_cache()
            for batch in args.batch:
                for name, fn in renderers.items():
                    row = {
                        "scene": kind,
                        "views": view_name,
                        "num_views": len(cams),
                        "width": cams.width,
                        "height": cams.height,
                        "batch": batch,
                        "renderer": name,
                        "gaussians_per_sample": summary[kind]["gaussians"][:batch],
                    }
                    if name != "gsplat" and "gsplat" in images and name in images:
                        row["max_abs_diff_vs_gsplat"] = max_abs_diff(images[name], images["gsplat"])
                    if name == "triton" and "torch" in images and "triton" in images:
                        row["max_abs_diff_vs_torch"] = max_abs_diff(images["triton"], images["torch"])
                    row.update(measure_case(fn, scenes[kind][:batch], cams, weights, args))
                    rows.append(row)
                    print(format_row(row), flush=True)
            del images, weights
            torch.cuda.empty_cache()

    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "gsplat": _version("gsplat"),
        "python": platform.python_version(),
        "labels": label_source,
        "scenes": summary,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "notes": notes,
        "results": rows,
    }
    out = args.out or RESULTS_DIR / f"render_gpu_{device_slug()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")
    print_table(rows)
    return 0


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return getattr(mod, "__version__", "unknown")


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_row(row: dict) -> str:
    diff = row.get("max_abs_diff_vs_gsplat")
    diff_s = "-" if diff is None else f"{diff['features']:.1e}/{diff['depth']:.1e}/{diff['alpha']:.1e}"
    return (
        f"{row['scene']:9s} {row['views']:13s} b{row['batch']} {row['renderer']:6s} "
        f"fwd {_fmt(row.get('forward_ms')):>9s} ms  fwd+bwd {_fmt(row.get('forward_backward_ms')):>9s} ms  "
        f"peak {_fmt(row.get('forward_peak_mib'), 0):>6s}/{_fmt(row.get('forward_backward_peak_mib'), 0):>6s} MiB  "
        f"diff vs gsplat (feat/depth/alpha) {diff_s}"
    )


def print_table(rows: list[dict]) -> None:
    print(
        "\nscene     views         batch renderer fwd ms | fwd+bwd ms | peak fwd/fwd+bwd MiB | max|diff| vs gsplat "
        "f/d/a"
    )
    for row in rows:
        print(format_row(row))


if __name__ == "__main__":
    sys.exit(main())
