"""Scoring saved predictions: the prediction files, the benchmark's dataset, and the scorer of a chunk of samples.

Shared by the ``eval`` command (which runs :class:`ChunkScorer` in worker processes) and
``view`` (which reads one sample's prediction).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["load_prediction", "load_probabilities", "open_benchmark", "ChunkScorer"]


def load_prediction(path: Path, shape: tuple[int, ...], num_classes: int):
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


#: What each benchmark's ground-truth root holds (``--gt``), to name a mismatch.
LAYOUTS = {
    "occ3d": ("gts", "Occ3D ground truth (gts/<scene>/<token>/labels.npz)"),
    "surroundocc": ("samples", "SurroundOcc ground truth (samples/<lidar file>.npy)"),
    "kitti360": ("preprocess", "SSCBench-KITTI360 ground truth (preprocess/labels/<sequence>/)"),
}


def _layout_error(benchmark: str, gt: Path, missing: Path | None) -> str:
    """A one-line message for ground truth that is not ``benchmark``'s: what was expected and,
    when the root holds another benchmark's layout, which ``--benchmark`` fits it."""
    expected = LAYOUTS[benchmark][1]
    others = [
        name
        for name, (folder, _) in LAYOUTS.items()
        if name != benchmark and (gt / folder).is_dir() and not (name == "surroundocc" and (gt / "gts").is_dir())
    ]
    what = f"{missing} not found" if missing is not None else f"{gt} has no {LAYOUTS[benchmark][0]}/"
    hint = (
        f"; {gt} holds {LAYOUTS[others[0]][1].split(' (')[0]}: use --benchmark {others[0]}"
        if others
        else f"; --gt must be the root holding {expected}"
    )
    return f"--benchmark {benchmark} expects {expected} under --gt, but {what}{hint}"


def load_probabilities(path: Path, shape: tuple[int, ...], num_classes: int):
    """The file's ``probabilities`` (``gaussrender predict --save-probabilities``) as a float32
    ``[C, X, Y, Z]`` tensor, or None when the file has none.

    Raises:
        DataFileError: a wrong shape or dtype (float only), non-finite values, values outside
            ``[0, 1]``, or a voxel whose probabilities do not sum to 1.
    """
    import numpy as np
    import torch

    from ..data.arrays import open_npz
    from ..data.files import DataFileError
    from ..metrics.rendered import PROBABILITY_TOLERANCE

    with open_npz(path, "prediction file") as data:
        if "probabilities" not in data.files:
            return None
        probs = data.read("probabilities", (num_classes, *shape), "f")
    where = f"{path} probabilities"
    if not np.isfinite(probs).all():
        raise DataFileError(f"{where}: holds non-finite values (NaN or inf)", path)
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise DataFileError(f"{where}: values must lie in [0, 1], found [{probs.min()}, {probs.max()}]", path)
    err = float(np.abs(probs.sum(axis=0, dtype=np.float64) - 1.0).max()) if probs.size else 0.0
    if err > PROBABILITY_TOLERANCE:
        raise DataFileError(
            f"{where}: the {num_classes} class probabilities of a voxel must sum to 1, off by up to {err:.3g}", path
        )
    return torch.from_numpy(probs.astype(np.float32))


def open_benchmark(args: argparse.Namespace, rayiou: bool):
    """The benchmark's dataset, its ground-truth layout checked on the first sample.

    Raises:
        ValueError: ``--gt`` does not hold ``--benchmark``'s layout (naming the benchmark that
            fits, when another one does), or a bad argument.
        FileNotFoundError: a missing ``--gt``, info file or tables.
    """
    from ..data import Occ3DNuScenes, SSCBenchKITTI360, SurroundOccNuScenes, load_nuscenes_tables

    gt = Path(args.gt)
    if not gt.is_dir():
        raise FileNotFoundError(f"--gt directory not found: {gt}")
    if args.benchmark == "kitti360":
        if not (gt / "preprocess").is_dir():
            raise ValueError(_layout_error("kitti360", gt, None))
        return SSCBenchKITTI360(args.gt, args.split or "val")
    cls = Occ3DNuScenes if args.benchmark == "occ3d" else SurroundOccNuScenes
    infos = load_nuscenes_tables(args.infos, args.nuscenes_version) if args.infos.is_dir() else args.infos
    dataset = cls(args.gt, infos, split=args.split, with_origins=rayiou)
    first = dataset.label_path(dataset.samples[0])
    # exists(), not is_file(): a directory or FIFO in its place is named by the reader
    if not first.exists():
        raise ValueError(_layout_error(args.benchmark, gt, first))
    return dataset


class ChunkScorer:
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
        from ..data.images import common_image_size

        assert self.render is not None
        what = f"sample {item['token']}: camera images"
        return common_image_size(list(item["image_paths"]), self.render["stored_image_size"], what)

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
            pred = load_prediction(self.pred_dir / f"{item['token']}.npz", grid.shape, grid.num_classes)[None]
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
                # saved probabilities: the release's rule (soft features); labels otherwise
                path = self.pred_dir / f"{item['token']}.npz"
                probs = load_probabilities(path, grid.shape, grid.num_classes)
                rendered.update(
                    pred if probs is None else probs[None],
                    target,
                    item["intrinsics"][None],
                    item["cam_from_grid"][None],
                    self._image_size(item),
                    probabilities=probs is not None,
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
