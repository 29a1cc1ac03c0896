"""Scoring saved predictions: the prediction files, the benchmark's dataset, and the scorer of a chunk of samples.

Shared by the ``eval`` command (which runs :class:`ChunkScorer` in worker processes) and
``view`` (which reads one sample's prediction).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = [
    "BENCHMARKS",
    "NUSCENES_BENCHMARKS",
    "MASKED_BENCHMARKS",
    "RAYIOU_BENCHMARKS",
    "DEFAULT_SPLITS",
    "load_prediction",
    "load_probabilities",
    "prediction_path",
    "open_benchmark",
    "benchmark_tokens",
    "stored_image_size",
    "ChunkScorer",
]

#: ``--benchmark`` choices of ``eval`` and ``view``: the preset grid of the same name reads them.
BENCHMARKS: tuple[str, ...] = (
    "occ3d",
    "surroundocc",
    "kitti360",
    "occ3d_waymo",
    "openocc",
    "nuscenes_occupancy",
    "semantickitti",
)
#: Benchmarks on nuScenes samples: tokens, calibration and RayIoU origins come from ``--infos``.
NUSCENES_BENCHMARKS: tuple[str, ...] = ("occ3d", "surroundocc", "openocc", "nuscenes_occupancy")
#: Benchmarks scored with RayIoU unless ``--no-rayiou`` (nuScenes-Occupancy: only with ``--rayiou``).
RAYIOU_BENCHMARKS: tuple[str, ...] = ("occ3d", "surroundocc", "openocc")
#: Benchmarks whose ground truth carries a camera visibility mask, scored inside it by default
#: (Occ3D-Waymo: inside ``infov & final_voxel_state``, as its release evaluates).
MASKED_BENCHMARKS: tuple[str, ...] = ("occ3d", "occ3d_waymo")
#: ``--split`` when none is given (nuScenes benchmarks: None, every sample of ``--infos``;
#: Occ3D-Waymo: None, ``validation/`` under ``--gt`` or ``--gt`` itself when it is a split folder).
DEFAULT_SPLITS: dict[str, str | None] = {"kitti360": "val", "semantickitti": "val"}


def load_prediction(path: Path, shape: tuple[int, ...], num_classes: int, benchmark: str | None = None):
    """A prediction file as int64 ``[X, Y, Z]`` labels in the preset's classes.

    ``<token>.npz`` (key ``semantics``, else ``pred``); Occ3D-Waymo's free label 23 is read as
    15, as the release's evaluation does with predictions. SemanticKITTI's own submission
    files (``.label``, raw uint16 ids) go through its learning map.
    """
    import numpy as np
    import torch

    from ..data.arrays import LABEL_KINDS, open_npz
    from ..data.files import DataFileError

    if benchmark == "semantickitti" and path.suffix == ".label":
        from ..data.semantickitti import read_semantickitti_voxels

        labels = read_semantickitti_voxels(path)
        if (labels == 255).any():
            raise DataFileError(
                f"{path}: prediction holds raw ids whose learning class is 'unlabeled' (0 excepted); "
                "a prediction must give every voxel empty or one of the 19 classes",
                path,
            )
        return torch.from_numpy(labels.astype(np.int64))
    # header-checked read: a hostile or corrupt prediction file is named, never unpickled
    with open_npz(path, "prediction file") as data:
        key = "semantics" if "semantics" in data.files else "pred" if "pred" in data.files else None
        if key is None:
            raise DataFileError(f"{path}: expected key 'semantics' or 'pred', has {data.files}", path)
        pred = data.read(key, shape, LABEL_KINDS.replace("b", ""))
    if benchmark == "occ3d_waymo":
        from ..data.waymo import OCC3D_WAYMO_FREE_LABEL

        pred = np.where(pred == OCC3D_WAYMO_FREE_LABEL, num_classes - 1, pred)
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise DataFileError(
            f"{path}: {key} labels must be in [0, {num_classes}), found [{pred.min()}, {pred.max()}]", path
        )
    return torch.from_numpy(pred.astype(np.int64))


#: What each benchmark's ground-truth root (``--gt``) holds, to name a mismatch.
LAYOUTS: dict[str, str] = {
    "occ3d": "Occ3D-nuScenes ground truth (gts/<scene>/<token>/labels.npz)",
    "surroundocc": "SurroundOcc ground truth (samples/<lidar file>.npy)",
    "openocc": "OpenOcc ground truth (<scene>/<token>/labels.npz)",
    "nuscenes_occupancy": "nuScenes-Occupancy ground truth (scene_<scene token>/occupancy/<lidar token>.npy)",
    "kitti360": "SSCBench-KITTI360 ground truth (preprocess/labels/<sequence>/)",
    "semantickitti": "SemanticKITTI ground truth (sequences/<seq>/voxels/<frame>.label)",
    "occ3d_waymo": "Occ3D-Waymo ground truth (validation/<scene>/<frame>_04.npz)",
}


def _first(pattern_root: Path, pattern: str) -> bool:
    return next(iter(pattern_root.glob(pattern)), None) is not None


def _layouts_present(gt: Path) -> list[str]:
    """The benchmarks whose ground-truth layout ``gt`` holds (cheap directory probes)."""
    found = []
    if (gt / "gts").is_dir():
        found.append("occ3d")
    if _first(gt, "samples/*.npy"):
        found.append("surroundocc")
    if _first(gt, "scene-*/*/labels.npz"):
        found.append("openocc")
    if _first(gt, "scene_*/occupancy"):
        found.append("nuscenes_occupancy")
    if (gt / "preprocess" / "labels").is_dir():
        found.append("kitti360")
    if (gt / "sequences").is_dir() or (gt / "dataset" / "sequences").is_dir():
        found.append("semantickitti")
    if any((gt / s).is_dir() for s in ("training", "validation")) or _first(gt, "[0-9][0-9][0-9]/*_04.npz"):
        found.append("occ3d_waymo")
    return found


def _layout_error(benchmark: str, gt: Path, what: str, others: list[str]) -> str:
    """One line for ground truth that is not ``benchmark``'s: what was expected, what was
    found, and which ``--benchmark`` fits what ``--gt`` holds."""
    hint = (
        f"; {gt} holds {LAYOUTS[others[0]].split(' (')[0]}: use --benchmark {others[0]}"
        if others
        else f"; --gt must be the root holding {LAYOUTS[benchmark]}"
    )
    return f"--benchmark {benchmark} expects {LAYOUTS[benchmark]} under --gt, but {what}{hint}"


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


def prediction_path(pred_dir: Path, benchmark: str, token: str) -> Path:
    """The prediction file of ``token``: ``<pred_dir>/<token>.npz``; for SemanticKITTI, when that
    file is absent, the official submission layout ``<pred_dir>/sequences/<seq>/predictions/<frame>.label``
    (also under ``<pred_dir>/dataset/``) when it exists."""
    npz = pred_dir / f"{token}.npz"
    if benchmark == "semantickitti" and not npz.is_file():
        seq, frame = token.split("/")
        for base in (pred_dir, pred_dir / "dataset"):
            label = base / "sequences" / seq / "predictions" / f"{frame}.label"
            if label.is_file():
                return label
    return npz


def open_benchmark(args: argparse.Namespace, rayiou: bool):
    """The benchmark's dataset, its ground-truth layout checked (on the first sample for the
    nuScenes readers) so that another benchmark's ground truth is one named error.

    Raises:
        ValueError: ``--gt`` does not hold ``--benchmark``'s layout (naming the benchmark whose
            layout it holds, when one fits), or a bad argument.
        FileNotFoundError: a missing ``--gt``, info file or tables.
    """
    gt = Path(args.gt)
    if not gt.is_dir():
        raise FileNotFoundError(f"--gt directory not found: {gt}")
    try:
        dataset = _open_dataset(args, rayiou)
    except (FileNotFoundError, ValueError) as err:
        others = [b for b in _layouts_present(gt) if b != args.benchmark]
        if not others:
            raise
        raise ValueError(_layout_error(args.benchmark, gt, str(err).rstrip("."), others)) from None
    label_path = getattr(dataset, "label_path", None)
    if label_path is not None:
        from ..data.files import DataFileError

        try:
            first = label_path(dataset.samples[0])
            # exists(), not is_file(): a directory or FIFO in its place is named by the reader
            problem = None if first.exists() else f"{first} not found"
        except DataFileError as err:  # e.g. the infos lack what this layout's file names need
            problem = str(err).rstrip(".")
            if not [b for b in _layouts_present(gt) if b != args.benchmark]:
                raise
        if problem is not None:
            others = [b for b in _layouts_present(gt) if b != args.benchmark]
            raise ValueError(_layout_error(args.benchmark, gt, problem, others))
    return dataset


def _open_dataset(args: argparse.Namespace, rayiou: bool):
    from .. import data

    split = args.split if args.split is not None else DEFAULT_SPLITS.get(args.benchmark)
    if args.benchmark == "kitti360":
        return data.SSCBenchKITTI360(args.gt, split or "val")
    if args.benchmark == "semantickitti":
        # scoring voxels needs no calib.txt (the official evaluation reads none); views do
        return data.SemanticKITTI(args.gt, split or "val", cameras=getattr(args, "render_metrics", True))
    if args.benchmark == "occ3d_waymo":
        return data.Occ3DWaymo(args.gt, split)
    cls: type[data.NuScenesOccupancy] = {  # type: ignore[type-abstract]
        "occ3d": data.Occ3DNuScenes,
        "surroundocc": data.SurroundOccNuScenes,
        "openocc": data.OpenOccNuScenes,
        "nuscenes_occupancy": data.OpenOccupancyNuScenes,
    }[args.benchmark]
    infos = data.load_nuscenes_tables(args.infos, args.nuscenes_version) if args.infos.is_dir() else args.infos
    return cls(args.gt, infos, split=split, with_origins=rayiou)


def benchmark_tokens(dataset: Any, benchmark: str) -> list[str]:
    """The dataset's sample tokens, which name the prediction files: nuScenes sample tokens, else
    ``<sequence>/<frame>`` (KITTI-360, SemanticKITTI) or ``<scene>/<frame>`` (Occ3D-Waymo)."""
    if benchmark in NUSCENES_BENCHMARKS:
        return [s.token for s in dataset.samples]
    return [f"{q}/{f}" for q, f in dataset.frames]


def stored_image_size(benchmark: str) -> tuple[int, int]:
    """``(H, W)`` assumed for a camera image that is absent (an existing file's header wins).

    Raises:
        ValueError: the benchmark's reader has no cameras (Occ3D-Waymo).
    """
    from ..data.kitti360 import KITTI360_IMAGE_SIZE
    from ..data.nuscenes import NUSCENES_IMAGE_SIZE
    from ..data.semantickitti import SEMANTICKITTI_IMAGE_SIZE

    if benchmark in NUSCENES_BENCHMARKS:
        return NUSCENES_IMAGE_SIZE
    if benchmark == "kitti360":
        return KITTI360_IMAGE_SIZE
    if benchmark == "semantickitti":
        return SEMANTICKITTI_IMAGE_SIZE
    raise ValueError(
        f"--benchmark {benchmark}: its reader has no camera calibration (the release's cam_infos.pkl is not read), "
        "so its views cannot be rendered"
    )


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
        benchmark: str | None = None,
    ) -> None:
        self.dataset, self.pred_dir, self.mask_camera = dataset, pred_dir, mask_camera
        self.benchmark = benchmark or ""  # prediction layouts and label conventions of its own
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
            path = prediction_path(self.pred_dir, self.benchmark, item["token"])
            pred = load_prediction(path, grid.shape, grid.num_classes, self.benchmark)[None]
            target = item["labels"][None]
            mask = None
            if self.mask_camera:
                mask = item["mask_camera"]
                if "mask_infov" in item:  # Occ3D-Waymo scores inside the cameras' field of view too
                    mask = mask & item["mask_infov"]
                mask = mask[None]
            voxel.update(pred, target, mask)
            if ray is not None:
                t0 = time.perf_counter()
                ray.update(pred, target, [item["origins"].double()])
                if torch.device(self.device).type == "cuda":
                    torch.cuda.synchronize()  # kernels run asynchronously: time them, not their launch
                ray_seconds += time.perf_counter() - t0
            if rendered is not None:
                t0 = time.perf_counter()
                # saved probabilities: the release's rule (soft features); labels otherwise
                # (a SemanticKITTI .label submission holds labels only)
                probs = load_probabilities(path, grid.shape, grid.num_classes) if path.suffix == ".npz" else None
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
