"""Build a run's model and datasets from its :class:`~gaussrender.train.config.Config`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..geometry.grid import VoxelGrid, get_grid
from .config import Config, ConfigError, DataConfig

__all__ = [
    "build_model_from_config",
    "build_dataset",
    "prepare_synthetic",
    "grid_of",
    "resolve_infos",
]


def build_model_from_config(cfg: Config) -> torch.nn.Module:
    """The occupancy model of ``cfg.model`` for ``cfg.data`` (grid, cameras, image size);
    the backbone starts from ``model.backbone_weights`` when given (a local file)."""
    from ..models import ModelConfig, ResNet, build_model, load_torchvision_weights

    model = build_model(
        ModelConfig(
            name=cfg.model.name,
            size=cfg.model.size,
            grid=get_grid(cfg.data.grid),
            num_cameras=cfg.data.num_cameras,
            image_size=(cfg.data.image_size[0], cfg.data.image_size[1]),  # (H, W): the config checks two ints
            learned_opacity=cfg.model.learned_opacity,
            backbone_depth=cfg.model.backbone_depth,
            dropout=cfg.model.dropout,
        )
    )
    if cfg.model.backbone_weights:
        backbone = model.get_submodule("image_encoder.backbone")
        if not isinstance(backbone, ResNet):
            raise ValueError(
                f"model.backbone_weights loads torchvision ResNet weights; {cfg.model.name}'s backbone is a "
                f"{type(backbone).__name__}"
            )
        load_torchvision_weights(backbone, cfg.model.backbone_weights)
    return model


def prepare_synthetic(cfg: DataConfig, is_main: bool = True) -> None:
    """Write the synthetic dataset ``cfg.synthetic`` describes into ``cfg.root`` unless the
    same one is already there (main process only; others wait at a barrier).

    "The same" is decided by ``root/synthetic_manifest.json``: the description the dataset
    was made from (format, grid, scenes, seed, image size, LiDAR) and the SHA-256 of every
    file written. Another description, a changed or missing file, or no manifest (a dataset
    written before manifests, or a write that was killed) makes it write the dataset again,
    so a second config never silently gets the first one's data.
    """
    import torch.distributed as dist

    from .fingerprint import MANIFEST, manifest_matches, synthetic_description
    from .synthetic import make_dataset

    syn = cfg.synthetic
    if syn is None:
        return
    root = Path(cfg.root)
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"data.root: {root} exists and is not a directory (the synthetic dataset is written there)", "data.root"
        )
    grid = get_grid(cfg.grid)
    description = synthetic_description(
        cfg.format, grid, syn.num_scenes, syn.num_val_scenes, syn.seed, syn.image_size, syn.lidar
    )
    try:  # the main process decides (and writes); the others wait at the barrier below
        ready = manifest_matches(root, description) if is_main else True
    except ValueError as err:  # a directory or FIFO where the manifest goes
        raise ConfigError(f"data.root: {err}", "data.root") from None
    if is_main and not ready:
        if cfg.format == "kitti360":
            # a KITTI-like front camera with depth maps (monocular models such as Symphonies)
            from .synthetic_kitti360 import make_kitti360_dataset

            write: Callable[..., object] = make_kitti360_dataset
        else:
            write = make_dataset
        (root / MANIFEST).unlink(missing_ok=True)  # a write killed half-way leaves no manifest
        write(
            root,
            syn.num_scenes,
            num_val_scenes=syn.num_val_scenes,
            seed=syn.seed,
            image_size=(syn.image_size[0], syn.image_size[1]),
            grid=grid,
            **({"lidar": True} if syn.lidar else {}),  # the KITTI-like writer has no LiDAR (config refuses it)
        )  # the writers end with the manifest (fingerprint.write_manifest)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def resolve_infos(cfg: DataConfig, split: str, root: str | None = None) -> str:
    """The info file of ``split`` (``"train"``/``"val"``), following the data root.

    A relative ``data.<split>_infos`` is relative to ``data.root`` (or to ``root`` when given,
    e.g. ``gaussrender predict --data``), so ``--set data.root=/elsewhere`` moves the info
    files with the labels; an absolute path stays as it is. For configs written before this
    rule, a relative path that exists only relative to the working directory is still taken
    from there, with a warning. Synthetic data: ``<root>/synthetic_infos_<split>.json``.

    Raises:
        ValueError: the split's info file is not set.
        FileNotFoundError: it exists in neither place (the message says where it looked and
            how to write the info files: ``gaussrender prepare``).
    """
    base = Path(root if root is not None else cfg.root)
    if cfg.synthetic is not None:
        return str(base / f"synthetic_infos_{split}.json")
    given = cfg.train_infos if split == "train" else cfg.val_infos
    if not given:
        raise ValueError(f"data.{split}_infos is empty; give the {split} info file of {cfg.format!r}")
    path = Path(given)
    if path.is_absolute():
        return given
    under_root = base / path
    if under_root.exists():
        return str(under_root)
    if path.exists():
        warnings.warn(
            f"data.{split}_infos {given!r} is read relative to the working directory; relative info paths are "
            f"relative to data.root ({base}): write it as {_relative_to(path, base)!r} (or an absolute path)",
            UserWarning,
            stacklevel=2,
        )
        return given
    raise FileNotFoundError(
        f"data.{split}_infos: info file not found: {under_root} (a relative info path is relative to data.root "
        f"{str(base)!r}); write the info files with 'gaussrender prepare' (docs/training.md)"
    )


def _relative_to(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def build_dataset(
    cfg: DataConfig, split: str, *, load_images: bool = True, root: str | None = None, infos: str | None = None
) -> torch.utils.data.Dataset:
    """The reader of ``cfg.format`` for ``split`` (``"train"`` or ``"val"``).

    Args:
        cfg: the data section.
        split: ``"train"`` or ``"val"``.
        load_images: read the images (False: labels and calibration only).
        root: replaces ``cfg.root`` (e.g. ``gaussrender predict --data``); relative info
            paths follow it (:func:`resolve_infos`).
        infos: replaces the split's info file (nuScenes formats), as given.
    """
    from .. import data

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    root = root if root is not None else cfg.root
    size = (cfg.image_size[0], cfg.image_size[1])  # (H, W): the config checks two ints
    if cfg.image_fit != "resize" and (cfg.synthetic is not None or cfg.format == "kitti360"):
        raise ValueError(
            f"data.image_fit {cfg.image_fit!r} is for the nuScenes readers (data.format occ3d or surroundocc, "
            "no data.synthetic); use 'resize'"
        )
    if cfg.synthetic is not None and cfg.format == "occ3d":
        # synthetic labels may be written on any grid with Occ3D's classes (data.grid)
        from .synthetic import SyntheticOccupancy

        return SyntheticOccupancy(
            root,
            infos if infos is not None else resolve_infos(cfg, split, root),
            grid=cfg.grid,
            load_images=load_images,
            image_size=size,
            data_root=cfg.data_root or root,
            with_lidar=cfg.synthetic.with_lidar,
            targets_2d=cfg.synthetic.targets_2d,
        )
    if cfg.synthetic is not None and cfg.format == "kitti360":
        from .synthetic_kitti360 import SyntheticKITTI360

        depth_root = cfg.depth_root or str(Path(root) / "depth")
        return SyntheticKITTI360(
            root,
            split,
            grid=cfg.grid,
            load_images=load_images,
            image_size=size,
            depth_root=depth_root if load_images else None,
        )
    # the readers take different arguments: KITTI-360 a split name, the nuScenes formats info files
    nuscenes = {"occ3d": data.Occ3DNuScenes, "surroundocc": data.SurroundOccNuScenes}
    reader_grid = data.SSCBenchKITTI360.grid if cfg.format == "kitti360" else nuscenes[cfg.format].grid
    if get_grid(cfg.grid) != reader_grid:
        raise ValueError(f"data.grid {cfg.grid!r} does not match the {cfg.format!r} reader's grid {reader_grid.name!r}")
    if cfg.format == "kitti360":
        # depth maps only go with the images (the label-only pass counts classes)
        return data.SSCBenchKITTI360(
            root,
            split,
            load_images=load_images,
            image_size=size,
            depth_root=(cfg.depth_root or None) if load_images else None,
        )
    return nuscenes[cfg.format](
        root,
        infos if infos is not None else resolve_infos(cfg, split, root),
        load_images=load_images,
        image_size=size,
        data_root=cfg.data_root or root,
        # the 2D targets go with the images (the label-only pass counts classes)
        lidar_targets=cfg.lidar_targets and load_images,
        adjacent_frames=tuple(cfg.adjacent_frames) if cfg.lidar_targets and load_images else (),
        drop_moving=cfg.drop_moving,
        image_fit=cfg.image_fit,
    )


def grid_of(cfg: Config) -> VoxelGrid:
    """The voxel grid preset named by ``cfg.data.grid``."""
    return get_grid(cfg.data.grid)
