"""CPU benchmark of the renderer and of GaussRenderLoss on Occ3D-size scenes.

Scenes (Occ3D-nuScenes grid, 200x200x16, 18 classes), all from one label volume: by default
the real Occ3D-nuScenes frame in ``../shared/data`` (``3D_occupancy_data.npz``, see its
PROVENANCE.md) when it is there, else the procedural scene of
``gaussrender.scene.make_scene(seed)`` (said in the output); ``--labels labels.npz`` or
``--labels procedural`` choose explicitly:

* ``gt``: the ground-truth Gaussians (non-empty voxels, opacity 1);
* ``trained``: a prediction with trained-like confidences, logits = 8 x one-hot(truth) +
  N(0, 1) noise (free space is confidently free, so most of it is culled exactly);
* ``uncertain``: logits = 5 x one-hot(truth) + 1.5 x N(0, 1);
* ``untrained``: logits ~ N(0, 1): every voxel is nearly opaque (opacity ~ 0.997), the worst
  case, 640,000 Gaussians.

Views: the front camera of the nuScenes-like rig at 1/4 of 1600x900 (400x225) plus the
400x400 perspective BEV, as the loss renders them.

``eval`` (not a prediction but a case of its own): the release's full rendered-view evaluation
of one sample, :class:`gaussrender.metrics.RenderedViewMetrics` at ``image_scale=1`` (six
cameras of the nuScenes-like rig at 1600x900 + the 400x400 BEV, prediction and ground truth
rendered; the prediction is the ground truth shifted by one voxel along x, as
``benchmarks/eval_fixture.py`` writes it): ``eval_s`` is one ``update`` (after a small
warm-up render that loads the compiled kernels).

Backends (``--backends``, default ``torch numba``): every (scene, backend) runs in its own
subprocess, in the order round 1: scene 1 torch, scene 1 numba, scene 2 torch, ...; round 2:
the same again (``--rounds``). Old and new code thus alternate within minutes on a machine
whose speed drifts; the JSON keeps every run, and the table gives per backend the median over
all runs of all rounds and, per round, the ratio torch / numba of that round's medians.

Measured per scene, each in a fresh subprocess so that the peak memory (``ru_maxrss``) belongs
to that scene alone: ``render`` forward and forward+backward of the scene's Gaussians into both
views, and ``loss`` forward+backward of the whole ``GaussRenderLoss`` (prediction and truth
rendered into both views, all four terms), medians of ``--repeats`` runs after one warm-up;
``loss_b4`` is the same loss on a batch of 4 samples (the scene's labels with 4 independent
noise draws), and ``b4_ratio`` its cost over one sample's. The loss renders a batch in one call
per view kind (prediction and truth apart), up to 2^19 Gaussians a call on the CPU
(``gaussrender.losses.render.renders.CPU_GAUSSIANS_PER_CALL``): trained-like batches share one call, untrained
samples get one each.

    python benchmarks/render.py                       # table + benchmarks/results/render_cpu.json
    python benchmarks/render.py --labels procedural --repeats 7
    python benchmarks/render.py --scenes trained eval --backends torch numba --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import gaussrender as gr
from gaussrender._io import atomic_write_text

SCENES = ("gt", "trained", "uncertain", "untrained", "eval")
BACKENDS = ("torch", "numba", "auto")
RESULTS = Path(__file__).resolve().parent / "results"
#: The real Occ3D-nuScenes frame of the shared data folder (never copied into the repository).
REAL_FRAME = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "occ3d_nuscenes"
    / "occupancy_vis_demo"
    / "3D_occupancy_data.npz"
)


def default_labels() -> str:
    return str(REAL_FRAME) if REAL_FRAME.is_file() else "procedural"


def load_labels(path: str | None, seed: int) -> torch.Tensor:
    if path and path != "procedural":
        import numpy as np

        with np.load(path) as data:
            if "semantics" not in data:
                raise KeyError(f"{path}: expected key 'semantics', found {sorted(data.keys())}")
            return torch.from_numpy(data["semantics"].astype("int64"))
    from gaussrender.scene import make_scene

    return make_scene(seed).semantics.long()


def make_logits(kind: str, labels: torch.Tensor, grid: gr.VoxelGrid, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    onehot = torch.nn.functional.one_hot(labels.clamp(max=grid.num_classes - 1), grid.num_classes)
    onehot = onehot.permute(3, 0, 1, 2).float()
    if kind == "gt":
        return 200.0 * onehot  # softmax is exactly one-hot: the prediction equals the truth
    noise = torch.randn(onehot.shape, generator=g)
    if kind == "trained":
        return 8.0 * onehot + noise
    if kind == "uncertain":
        return 5.0 * onehot + 1.5 * noise
    return noise


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


CPU_TIMES: list[float] = []


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``repeats`` calls after a warm-up; the process's CPU seconds of
    each call (all threads) go to :data:`CPU_TIMES`, a measure of the work that other jobs on a
    shared machine disturb less than the wall clock."""
    fn()  # warm-up
    times = []
    CPU_TIMES.clear()
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        CPU_TIMES.append(time.process_time() - c0)
    return statistics.median(times), times


def run_eval(args: argparse.Namespace) -> dict:
    """One sample's full rendered-view evaluation (``RenderedViewMetrics`` at image scale 1)."""
    from gaussrender.metrics import RenderedViewMetrics

    grid = gr.OCC3D_NUSCENES
    labels = load_labels(args.labels, args.seed)
    pred = torch.roll(labels, 1, dims=0)
    k, poses, _ = gr.nuscenes_rig((900, 1600))
    baseline = rss_mib()
    warm = RenderedViewMetrics(grid, image_scale=0.05, backend=args.backend)
    warm.update(pred[None], labels[None], k[None], poses[None], (900, 1600))
    times, cpu = [], []
    for _ in range(args.repeats):
        metric = RenderedViewMetrics(grid, image_scale=1.0, backend=args.backend)
        c0 = time.process_time()
        t0 = time.perf_counter()
        metric.update(pred[None], labels[None], k[None], poses[None], (900, 1600))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    scores = {key: float(v) for key, v in metric.compute().items() if v.ndim == 0}
    return {
        "scene": "eval",
        "backend": args.backend,
        "repeats": args.repeats,
        "eval_s": statistics.median(times),
        "eval_runs_s": times,
        "eval_cpu_s": statistics.median(cpu),
        "eval_cpu_runs_s": cpu,
        "scores": scores,
        "peak_rss_mib": rss_mib(),
        "baseline_rss_mib": baseline,
    }


def run_one(scene: str, args: argparse.Namespace) -> dict:
    if scene == "eval":
        return run_eval(args)
    torch.manual_seed(0)
    grid = gr.OCC3D_NUSCENES
    labels = load_labels(args.labels, args.seed)
    logits = make_logits(scene, labels, grid)
    k, poses, _ = gr.nuscenes_rig((900, 1600))
    front = gr.Cameras(poses[:1], gr.geometry.scale_intrinsics(k[:1], 0.25), 400, 225)
    bev = gr.bev_camera(grid, 400)
    background = torch.nn.functional.one_hot(torch.tensor(grid.empty_index), grid.num_classes).float()
    with torch.no_grad():
        g = gr.voxels_to_gaussians(grid, logits=logits, labels=labels)
    repeats = args.repeats if scene != "untrained" else max(1, min(args.repeats, 2))
    baseline = rss_mib()

    def render_forward() -> None:
        with torch.no_grad():
            for cams in (front, bev):
                gr.render(g.means, g.opacities, g.features, g.scales, cams, background, backend=args.backend)

    def render_forward_backward() -> None:
        feats = g.features.clone().requires_grad_()
        opac = g.opacities.clone().requires_grad_()
        means = g.means.clone().requires_grad_()
        total = 0.0
        for cams in (front, bev):
            out = gr.render(means, opac, feats, g.scales, cams, background, backend=args.backend)
            total = total + out.features.square().sum() + out.depth.sum()
        total.backward()

    loss_fn = gr.GaussRenderLoss(
        grid,
        camera_weights=(1, 0, 0, 0, 0, 0),
        camera_strategy="sensor",
        resolution_divisor=4,
        backend=args.backend,
    )

    def loss_forward_backward() -> None:
        x = logits[None].clone().requires_grad_()
        out = loss_fn(x, labels[None], k[None], poses[None], (900, 1600))
        out["loss"].backward()

    batch_logits = torch.stack([logits] + [make_logits(scene, labels, grid, seed) for seed in (1, 2, 3)])

    def loss_batch_of_4() -> None:
        x = batch_logits.clone().requires_grad_()
        out = loss_fn(
            x, labels.expand(4, *labels.shape), k.expand(4, *k.shape), poses.expand(4, *poses.shape), (900, 1600)
        )
        out["loss"].backward()

    result = {"scene": scene, "backend": args.backend, "gaussians": len(g), "repeats": repeats}
    cases = [("loss_fwd_bwd", loss_forward_backward), ("loss_b4_fwd_bwd", loss_batch_of_4)]
    if not args.loss_only:
        cases = [("render_fwd", render_forward), ("render_fwd_bwd", render_forward_backward), *cases]
    for name, fn in cases:
        med, times = median_time(fn, repeats)
        result[name + "_s"] = med
        result[name + "_runs_s"] = times
        result[name + "_cpu_s"] = statistics.median(CPU_TIMES)
        result[name + "_cpu_runs_s"] = list(CPU_TIMES)
    result["b4_ratio"] = result["loss_b4_fwd_bwd_s"] / result["loss_fwd_bwd_s"]
    result["peak_rss_mib"] = rss_mib()
    result["baseline_rss_mib"] = baseline
    return result


TIMED = (
    "render_fwd_s",
    "render_fwd_bwd_s",
    "loss_fwd_bwd_s",
    "loss_b4_fwd_bwd_s",
    "eval_s",
    "loss_fwd_bwd_cpu_s",
    "loss_b4_fwd_bwd_cpu_s",
    "eval_cpu_s",
)


def summarise(rows: list[dict], args: argparse.Namespace) -> list[dict]:
    """Per (scene, backend): the median of every timed run over all rounds, the largest peak
    RSS, and per round the ratio of the first backend's median to this one's (the loss, or the
    eval), so that old and new are compared within the same minutes."""
    out = []
    for scene in args.scenes:
        for backend in args.backends:
            mine = [r for r in rows if r["scene"] == scene and r["backend"] == backend]
            entry: dict = {"scene": scene, "backend": backend, "runs": len(mine)}
            if scene != "eval":
                entry["gaussians"] = mine[0]["gaussians"]
            for key in TIMED:
                runs = [t for r in mine if key in r for t in r[key.removesuffix("_s") + "_runs_s"]]
                if runs:
                    entry[key] = statistics.median(runs)
            if "loss_fwd_bwd_s" in entry:
                entry["b4_ratio"] = entry["loss_b4_fwd_bwd_s"] / entry["loss_fwd_bwd_s"]
            entry["peak_rss_mib"] = max(r["peak_rss_mib"] for r in mine)
            key = "eval_s" if scene == "eval" else "loss_fwd_bwd_s"
            if backend != args.backends[0]:
                for suffix, k in (("", key), ("_cpu", key.removesuffix("_s") + "_cpu_s")):
                    first = {
                        r["round"]: r[k]
                        for r in rows
                        if r["scene"] == scene and r["backend"] == args.backends[0] and k in r
                    }
                    ratios = [first[r["round"]] / r[k] for r in mine if r["round"] in first and k in r]
                    if ratios:
                        entry[f"ratio{suffix}_per_round"] = ratios
            out.append(entry)
    return out


def _commit() -> str:
    """The checked-out commit (with ``+dirty`` when the tree has changes), or "" outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--labels",
        default=None,
        help="an Occ3D labels.npz, or 'procedural' (default: the real frame in ../shared/data if present)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the core count)")
    p.add_argument("--seed", type=int, default=0, help="procedural scene seed")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scenes", nargs="+", choices=SCENES, default=["gt", "trained", "uncertain", "untrained"])
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=["torch", "numba"])
    p.add_argument("--backend", choices=BACKENDS, default="torch", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=1, help="times the whole (scene, backend) sequence runs")
    p.add_argument("--eval-repeats", type=int, default=1, help="timed updates per eval run")
    p.add_argument("--loss-only", action="store_true", help="time only the loss (not the bare render calls)")
    p.add_argument("--out", default=str(RESULTS / "render_cpu.json"))
    p.add_argument("--one", choices=SCENES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.labels is None:
        args.labels = default_labels()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return 0

    rows = []
    load_at_start = os.getloadavg()
    for rnd in range(args.rounds):
        for scene in args.scenes:
            for backend in args.backends:
                repeats = args.eval_repeats if scene == "eval" else args.repeats
                cmd = [sys.executable, __file__, "--one", scene, "--repeats", str(repeats), "--seed", str(args.seed)]
                cmd += ["--labels", args.labels, "--threads", str(torch.get_num_threads()), "--backend", backend]
                cmd += ["--loss-only"] if args.loss_only else []
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr, file=sys.stderr)
                    raise SystemExit(f"scene {scene} ({backend}) failed (exit {proc.returncode})")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["round"] = rnd + 1
                rows.append(row)
                key = "eval_s" if scene == "eval" else "loss_fwd_bwd_s"
                print(f"round {rnd + 1} {scene:<10} {backend:<6} {key} {row[key]:.3f}s", file=sys.stderr)

    summary = summarise(rows, args)
    labels = args.labels if args.labels != "procedural" else f"make_scene({args.seed})"
    print(f"\nOcc3D grid, views: front camera 400x225 + BEV 400x400, {torch.get_num_threads()} threads")
    print(f"labels: {labels}; medians over {args.rounds} round(s), per-round ratio torch / other")
    print(
        f"{'scene':<10} {'backend':<7} {'gaussians':>9} {'render fwd':>11} {'render f+b':>11} {'loss f+b':>9}"
        f" {'loss B=4':>9} {'B=4/B=1':>8} {'peak RSS':>10}  loss ratio per round"
    )
    for r in summary:
        if r["scene"] == "eval":
            print(
                f"{'eval':<10} {r['backend']:<7} six cameras at 1600x900 + BEV 400x400, one update:"
                f" {r['eval_s']:.2f}s, peak {r['peak_rss_mib'] / 1024:.2f}GiB"
                f"  ratio {' '.join(f'{x:.2f}' for x in r.get('ratio_per_round', []))}"
            )
            continue
        render = [f"{r[key]:>10.3f}s" if key in r else f"{'-':>11}" for key in ("render_fwd_s", "render_fwd_bwd_s")]
        print(
            f"{r['scene']:<10} {r['backend']:<7} {r['gaussians']:>9} {render[0]} {render[1]}"
            f" {r['loss_fwd_bwd_s']:>8.3f}s {r['loss_b4_fwd_bwd_s']:>8.3f}s"
            f" {r['b4_ratio']:>8.2f} {r['peak_rss_mib'] / 1024:>8.2f}GiB"
            f"  {' '.join(f'{x:.2f}' for x in r.get('ratio_per_round', []))}"
        )
    meta = {
        "command": "python benchmarks/render.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__,
        "gaussrender": gr.__version__,
        "commit": _commit(),
        # which code ran: a before/after comparison runs this script on another tree's source
        "gaussrender_source": str(Path(gr.__file__).resolve().parent),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        # OpenMP threads spin at barriers by default; on a machine shared with other jobs,
        # spinning makes a 2-thread torch process many times slower (see docs/performance.md)
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "labels": args.labels if args.labels != "procedural" else f"gaussrender.scene.make_scene({args.seed})",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    out = atomic_write_text(args.out, json.dumps({"meta": meta, "summary": summary, "results": rows}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
