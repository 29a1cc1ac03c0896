"""The ``eval`` command's results: the JSON record of the merged metrics and the table it prints."""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["collect_results", "print_table"]


def _number(x: Any) -> float | None:
    value = float(x)
    return None if math.isnan(value) else value


def _pct(x: float | None) -> str:
    return "   nan" if x is None else f"{100.0 * x:6.2f}"


def _metres(x: float | None) -> str:
    return "nan" if x is None else f"{x:.3f} m"


def collect_results(
    args: argparse.Namespace,
    grid: Any,
    num_samples: int,
    mask_camera: bool,
    voxel_metric: Any,
    ray_metric: Any,
    rendered_metric: Any,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The JSON record of an evaluation: the arguments, the merged metrics (None for NaN) and
    the timing (``seconds``: ``total``, ``rayiou`` and ``render`` summed over samples)."""
    from ._scoring import DEFAULT_SPLITS

    total_seconds, ray_seconds, render_seconds = seconds["total"], seconds["rayiou"], seconds["render"]
    voxel = voxel_metric.compute()
    results: dict[str, Any] = {
        "benchmark": args.benchmark,
        "gt": str(args.gt),
        "pred": str(args.pred),
        "split": args.split if args.split is not None else DEFAULT_SPLITS.get(args.benchmark),
        "num_samples": num_samples,
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
            # soft: saved probabilities, the release's rule; labels: one-hot of the saved classes
            "prediction_rule": rendered_metric.prediction_rule,
            "image_scale": rendered_metric.image_scale,
            "bev_size": rendered_metric.rendered_bev_size,
        }
        for key in ("image_iou", "image_miou", "depth_l1", "bev_iou", "bev_miou", "bev_depth_l1"):
            results[key] = _number(r[key])
        for key in ("image_per_class_iou", "bev_per_class_iou"):
            results[key] = {name: _number(v) for name, v in zip(grid.class_names, r[key])}
    results["seconds"] = {
        "total": total_seconds,
        "per_sample": total_seconds / num_samples,
        # summed over workers: per-sample cost, not wall time, when --workers > 1
        "rayiou_per_sample": ray_seconds / num_samples if ray_metric is not None else None,
        "render_per_sample": render_seconds / num_samples if rendered_metric is not None else None,
    }
    return results


_RULES = {
    "soft": "the release's (saved probabilities as soft features, opacity 1 where the argmax is not empty)",
    "labels": "one-hot labels (the files hold no probabilities: gaussrender predict --save-probabilities)",
    "mixed": "mixed: some files hold probabilities (release's rule), some only labels (one-hot)",
}


def print_table(results: dict[str, Any], grid: Any) -> None:
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
        print(f"  prediction rule: {_RULES.get(r['prediction_rule'], r['prediction_rule'])}")
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
