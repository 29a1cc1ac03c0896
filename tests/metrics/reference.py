"""Slow, obviously-correct references for the metrics tests (float64, one voxel / one ray at a time)."""

from __future__ import annotations

import math

import numpy as np


def dense_confusion(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int, mask=None) -> np.ndarray:
    """Confusion matrix (rows: truth, columns: prediction) by visiting every voxel."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    p, t = pred.reshape(-1), target.reshape(-1)
    m = np.ones_like(t, dtype=bool) if mask is None else mask.reshape(-1)
    for i in range(t.size):
        if m[i] and t[i] != ignore_index:
            cm[int(t[i]), int(p[i])] += 1
    return cm


def trace_ray(occupied: np.ndarray, origin, direction, max_steps: int = 1000):
    """First occupied voxel along one ray, walking voxel by voxel like SparseOcc's dvr kernel.

    Starts in the voxel holding the origin (even outside the grid), steps to the nearest
    boundary (ties: z, then y, then x, as the kernel's nested comparisons), returns
    ``(voxel, exit_distance)`` of the first occupied voxel inside the grid, or None when the
    ray leaves the grid (or never enters it within ``max_steps``, the kernel's MAX_STEP)
    without a hit. Voxel units, float64.
    """
    size = occupied.shape
    o = [float(c) for c in origin]
    d = [float(c) for c in direction]
    norm = math.sqrt(sum(c * c for c in d))
    d = [c / norm for c in d]
    v = [math.floor(c) for c in o]
    step = [1 if c >= 0 else -1 for c in d]
    t_max = [((v[a] + (1 if step[a] > 0 else 0)) - o[a]) / d[a] if d[a] != 0 else math.inf for a in range(3)]
    t_delta = [step[a] / d[a] if d[a] != 0 else math.inf for a in range(3)]
    was_inside = False
    for _ in range(max_steps):
        inside = all(0 <= v[a] < size[a] for a in range(3))
        if t_max[0] < t_max[1]:
            axis = 0 if t_max[0] < t_max[2] else 2
        else:
            axis = 1 if t_max[1] < t_max[2] else 2
        t_exit = t_max[axis]
        if inside:
            was_inside = True
            if occupied[v[0], v[1], v[2]]:
                return (v[0], v[1], v[2]), t_exit
        elif was_inside:
            return None
        v[axis] += step[axis]
        t_max[axis] += t_delta[axis]
    return None


def reference_ray_counts(pred, target, origins_m, directions, grid, thresholds):
    """RayIoU counts (tp [K, C], gt [C], pred [C]) for one sample, ray by ray, as SparseOcc counts them."""
    lo = np.asarray(grid.range_min, dtype=np.float64)
    c = grid.num_classes
    tp = np.zeros((len(thresholds), c), dtype=np.int64)
    gt_cnt = np.zeros(c, dtype=np.int64)
    pred_cnt = np.zeros(c, dtype=np.int64)
    occ_pred = pred != grid.empty_index
    occ_gt = target != grid.empty_index
    for origin in np.asarray(origins_m, dtype=np.float64):
        o = (origin - lo) / grid.voxel_size
        for d in np.asarray(directions, dtype=np.float64):
            g = trace_ray(occ_gt, o, d)
            if g is None:
                continue
            g_label = int(target[g[0]])
            if g_label == grid.ignore_index:
                continue
            p = trace_ray(occ_pred, o, d)
            p_label = grid.empty_index if p is None else int(pred[p[0]])
            gt_cnt[g_label] += 1
            pred_cnt[p_label] += 1
            if p is not None and p_label == g_label:
                err = abs(p[1] - g[1]) * grid.voxel_size
                for k, thr in enumerate(thresholds):
                    if err < thr:
                        tp[k, g_label] += 1
    return tp, gt_cnt, pred_cnt
