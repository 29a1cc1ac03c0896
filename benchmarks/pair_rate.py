"""How close is the numba rasteriser to what one core can do? (Entry, pixel) pairs per second.

* ``limit``: a micro-benchmark of the per-pair work alone, one thread, float32: for a stream of
  pairs, the Gaussian exponent, ``exp``, the clamped alpha, the transmittance update and the
  blend of ``C`` channels (``C = 0``: depth only, ``C = 18``: the Occ3D classes), with no
  tiles, lists, branches or memory traffic beyond one pixel's accumulator: the scalar code's
  ceiling on this CPU.
* ``achieved``: the numba backend's forward kernel on real renders, one thread (CPU seconds of
  the thread), divided into the number of pairs it evaluated (pixels of an entry's footprint
  box still blending), of which ``exp`` was evaluated for those passing the exponent
  pre-test, and blended for those that contributed. The counts come from a counting copy of
  the kernel's walk (same decisions, no blending).

Renders: the loss's four renders of the real Occ3D frame for a trained-like prediction (front
camera 400x225 and BEV 400x400, prediction and ground truth), and the eval's (six cameras at
1600x900, ground truth, ``cull="center"``).

    python benchmarks/pair_rate.py --labels ../shared/data/occ3d_nuscenes/occupancy_vis_demo/3D_occupancy_data.npz
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numba
import numpy as np
import torch

import gaussrender as gr
from gaussrender._io import atomic_write_text
from gaussrender.render import _numba
from gaussrender.render._numba_kernels import NUM_GEOMETRY, _evaluate
from gaussrender.render._project import GaussianSet, splat

RESULTS = Path(__file__).resolve().parent / "results"


@numba.njit(nogil=True, error_model="numpy")
def _limit(n, channels, acc, feature):
    """``n`` pairs of exponent + exp + alpha + T update + ``channels`` blends (float32)."""
    half, one, t_min = np.float32(0.5), np.float32(1.0), np.float32(1e-4)
    a, b, c, o = np.float32(0.11), np.float32(0.01), np.float32(0.09), np.float32(0.9)
    t = one
    for i in range(n):
        dx = np.float32(i & 15) + half - np.float32(7.3)
        dy = np.float32((i >> 4) & 15) + half - np.float32(8.1)
        power = -half * (a * dx * dx + c * dy * dy) - b * dx * dy
        alpha = min(np.float32(0.99), o * np.exp(power))
        w = alpha * t
        t_next = t * (one - alpha)
        t = one if t_next < t_min else t_next
        row = acc[i & 255]
        row[0] += w
        for k in range(channels):
            row[k + 1] += w * feature[k]
    return t


@numba.njit(nogil=True, error_model="numpy")
def _count(table, box, pair_row, tile_start, tile_count, order, centres, consts, tile, tiles_x, tiles_y, h, w):
    """The forward kernel's walk, counting: visited (pixel of the box still blending), exp
    evaluated, blended."""
    alpha_min, alpha_max, t_min = consts[0], consts[1], consts[2]
    one, half, zero, margin = consts[3], consts[4], consts[5], consts[6]
    t_pix = np.empty(tile * tile, table.dtype)
    alive = np.empty(tile * tile, np.bool_)
    out = np.zeros(3, np.int64)
    per_view = tiles_x * tiles_y
    for t in order:
        ox = (t % per_view % tiles_x) * tile
        oy = (t % per_view // tiles_x) * tile
        nx, ny = min(tile, w - ox), min(tile, h - oy)
        t_pix[:] = one
        alive[:] = True
        n_alive = nx * ny
        for j in range(tile_count[t]):
            r = pair_row[tile_start[t] + j]
            x0, x1 = max(box[r, 0], ox), min(box[r, 1], ox + nx - 1)
            y0, y1 = max(box[r, 2], oy), min(box[r, 3], oy + ny - 1)
            u, v, a, b, c, o = table[r, 0], table[r, 1], table[r, 2], table[r, 3], table[r, 4], table[r, 5]
            log_cut = np.log(alpha_min / o) - margin
            for y in range(y0, y1 + 1):
                for x in range(x0, x1 + 1):
                    p = (y - oy) * tile + x - ox
                    if not alive[p]:
                        continue
                    out[0] += 1
                    power, skip = _evaluate(a, b, c, centres[x] - u, centres[y] - v, log_cut, half, zero)
                    if skip:
                        continue
                    out[1] += 1
                    alpha = min(alpha_max, o * np.exp(power))
                    if alpha < alpha_min:
                        continue
                    t_after = t_pix[p] * (one - alpha)
                    if t_after < t_min:
                        alive[p] = False
                        n_alive -= 1
                        continue
                    out[2] += 1
                    t_pix[p] = t_after
            if n_alive == 0:
                break
    return out


def limit_rates(pairs: int) -> dict:
    acc = np.zeros((256, 19), np.float32)
    feature = np.random.default_rng(0).random(18).astype(np.float32)
    out = {}
    for channels in (0, 18):
        _limit(1000, channels, acc, feature)
        runs = []
        for _ in range(5):
            t0 = time.thread_time()
            _limit(pairs, channels, acc, feature)
            runs.append(pairs / (time.thread_time() - t0))
        out[f"channels_{channels}_pairs_per_s"] = statistics.median(runs)
    return out


def achieved(name: str, sets: list[GaussianSet], cull: str) -> dict:
    splats = splat(sets, cull)
    table = splats.table.detach()
    background = torch.zeros(table.shape[1] - NUM_GEOMETRY, dtype=table.dtype)
    bins = _numba._bin(splats, _numba.TILE)
    tab = table.numpy()
    counts = _count(
        tab, bins.box, bins.pair_row, bins.tile_start, bins.tile_count, bins.order[: bins.busy],
        _numba._centres(bins, tab.dtype), _numba._consts(tab.dtype), bins.tile, bins.tiles_x, bins.tiles_y,
        bins.height, bins.width,
    )  # fmt: skip
    _numba._Blend.apply(table, background, bins)  # warm-up
    runs = []
    for _ in range(3):
        t0 = time.thread_time()
        _numba._Blend.apply(table, background, bins)
        runs.append(time.thread_time() - t0)
    seconds = statistics.median(runs)
    visited, evaluated, blended = (int(x) for x in counts)
    return {
        "render": name,
        "views": splats.num_views,
        "image": [splats.height, splats.width],
        "rows": int(table.shape[0]),
        "list_entries": int(bins.pair_row.shape[0]),
        "visited_pairs": visited,
        "exp_pairs": evaluated,
        "blended_pairs": blended,
        "forward_s": seconds,
        "visited_per_s": visited / seconds,
        "blended_per_s": blended / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", required=True, help="the Occ3D labels.npz of the real frame")
    p.add_argument("--pairs", type=int, default=20_000_000)
    p.add_argument("--out", default=str(RESULTS / "pair_rate_cpu.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    grid = gr.OCC3D_NUSCENES
    with np.load(args.labels) as data:
        labels = torch.from_numpy(data["semantics"].astype("int64"))
    g = torch.Generator().manual_seed(0)
    onehot = torch.nn.functional.one_hot(labels, grid.num_classes).permute(3, 0, 1, 2).float()
    logits = 8.0 * onehot + torch.randn(onehot.shape, generator=g)
    k, poses, _ = gr.nuscenes_rig((900, 1600))
    front = gr.Cameras(poses[:1], gr.geometry.scale_intrinsics(k[:1], 0.25), 400, 225)
    bev = gr.bev_camera(grid, 400)
    six = gr.Cameras(poses, k, 1600, 900)
    with torch.no_grad():
        pred = gr.voxels_to_gaussians(grid, logits=logits, labels=labels)
        truth = gr.voxels_to_gaussians(grid, labels=labels)

    def as_set(gs, cams):
        return GaussianSet(gs.means, gs.opacities, gs.features.float(), gs.scales, cams)

    result = {"limit": limit_rates(args.pairs), "achieved": []}
    for name, sets, cull in (
        ("loss trained-like: prediction, front camera 400x225", [as_set(pred, front)], "center"),
        ("loss trained-like: ground truth, front camera 400x225", [as_set(truth, front)], "center"),
        ("loss trained-like: prediction, BEV 400x400", [as_set(pred, bev)], "footprint"),
        ("loss trained-like: ground truth, BEV 400x400", [as_set(truth, bev)], "footprint"),
        ("eval: ground truth, six cameras 1600x900", [as_set(truth, six)], "center"),
    ):
        result["achieved"].append(achieved(name, sets, cull))
    lim = result["limit"]
    print(f"limit, 1 thread: {lim['channels_0_pairs_per_s'] / 1e6:.0f} M pairs/s (no channels),", end=" ")
    print(f"{lim['channels_18_pairs_per_s'] / 1e6:.0f} M pairs/s (18 channels)")
    for r in result["achieved"]:
        print(
            f"{r['render']:<55} visited {r['visited_pairs'] / 1e6:7.2f} M  blended {r['blended_pairs'] / 1e6:7.2f} M"
            f"  forward {r['forward_s']:.3f} s  {r['visited_per_s'] / 1e6:5.0f} M visited/s"
            f"  {r['blended_per_s'] / 1e6:5.0f} M blended/s"
        )
    result["meta"] = {
        "command": "python benchmarks/pair_rate.py " + " ".join(argv if argv is not None else []),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "numba": numba.__version__,
        "torch": torch.__version__,
    }
    out = atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
