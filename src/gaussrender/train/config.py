"""Training configuration: frozen dataclasses read from small YAML files.

A YAML file maps one to one onto :class:`Config` (sections ``model``, ``data``, ``loss``,
``optim``, ``train``); unknown keys are errors, missing keys take the defaults below, which
are the papers' recipe (DESIGN §5). There is no inheritance between files: each file states
what differs from the defaults. Command-line overrides ``--set key.sub=value`` parse
``value`` as YAML (``--set optim.lr=1e-4``, ``--set data.image_size=[450,800]``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from .._io import atomic_write_text

__all__ = [
    "ModelSection",
    "AugmentConfig",
    "SyntheticConfig",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "TrainSection",
    "Config",
    "load_config",
    "apply_overrides",
    "config_to_dict",
    "config_from_dict",
    "save_config",
]


@dataclass(frozen=True)
class ModelSection:
    name: Literal["tpvformer", "surroundocc"] = "tpvformer"  # architecture
    size: Literal["tiny", "base"] = "base"  # tiny: CPU-sized for tests and CI
    learned_opacity: bool = False  # predict a per-voxel opacity for GaussRender
    backbone_depth: Optional[int] = None  # ResNet depth override (18, 34, 50, 101)
    dropout: float = 0.1  # attention / feed-forward dropout
    backbone_weights: Optional[str] = None  # local torchvision ResNet state dict to start from


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = False  # random horizontal flip (K's u axis flipped too)
    resize_scale: tuple[float, float] = (1.0, 1.0)  # random resize factor before the crop
    brightness: float = 0.0  # jitter amplitude: factor drawn in [1 - b, 1 + b]
    contrast: float = 0.0
    saturation: float = 0.0


@dataclass(frozen=True)
class SyntheticConfig:
    num_scenes: int = 4  # procedural scenes written by gaussrender.train.synthetic
    num_val_scenes: int = 1
    seed: int = 0
    image_size: tuple[int, int] = (48, 88)  # (H, W) pixels of the rendered RGB images


@dataclass(frozen=True)
class DataConfig:
    grid: str = "occ3d"  # VoxelGrid preset: occ3d, surroundocc, kitti360
    format: Literal["occ3d", "surroundocc", "kitti360"] = "occ3d"  # reader of gaussrender.data
    root: str = "data/nuscenes"  # labels root (Occ3D: holds gts/; SurroundOcc: nuscenes_occ/)
    data_root: str = ""  # nuScenes root with samples/ (images); "" = root
    train_infos: str = ""  # infos file of the training split
    val_infos: str = ""  # infos file of the validation split
    image_size: tuple[int, int] = (896, 1600)  # (H, W) network input, pixels
    num_cameras: int = 6  # cameras per sample
    num_workers: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: Optional[SyntheticConfig] = None  # write a synthetic dataset into `root` first


@dataclass(frozen=True)
class LossConfig:
    ce_weight: float = 10.0  # class-weighted cross-entropy
    lovasz_weight: float = 1.0  # Lovasz-softmax
    scale_decay: float = 0.5  # weight factor per coarser auxiliary scale
    class_weights: Optional[tuple[float, ...]] = None  # [C] explicit CE weights (wins if set)
    class_weighting: Literal["none", "inverse_log_frequency"] = "inverse_log_frequency"  # else
    render: bool = False  # add the GaussRender loss
    render_weight: float = 10.0  # λ of GaussRender
    render_kwargs: dict = field(default_factory=dict)  # extra GaussRenderLoss arguments
    nonfinite: Literal["raise", "skip"] = "raise"  # a NaN/inf loss term: raise, or skip the step


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4  # AdamW
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 0.1  # image backbone learning rate factor
    warmup_iters: int = 500  # linear warm-up from lr * warmup_ratio
    warmup_ratio: float = 1.0 / 3.0
    min_lr: float = 2e-7  # cosine (per iteration) floor
    grad_clip: Optional[float] = 35.0  # max global grad norm; None: no clipping


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 20
    max_steps: Optional[int] = None  # stop early after this many optimiser steps
    batch_size: int = 1  # per process
    amp: Literal["none", "bf16", "fp16"] = "none"  # CUDA only; the render loss stays fp32
    seed: int = 0
    deterministic: bool = False  # deterministic algorithms (slower)
    log_every: int = 50  # optimiser steps between log lines
    checkpoint_every: int = 1000  # optimiser steps between checkpoints (and each epoch end)
    val_every_epochs: int = 1  # 0: no validation
    val_mask_camera: bool = True  # evaluate inside the camera-visibility mask
    val_render_scale: float = 0.0  # rendered-view metrics at this fraction of the image size (1: full); 0: off
    device: str = "auto"  # auto: cuda:<local rank> when available, else cpu


@dataclass(frozen=True)
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Coerce a YAML value to the annotated type ``tp``; raise naming ``where`` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where} must have {len(args)} items, got {value!r}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as a string; accept what float() accepts
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported config type {tp!r}")


def _build(cls: type, values: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in {where or 'config'}; allowed: {sorted(names)}"
        )
    kwargs = {
        k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in values.items()
    }
    return cls(**kwargs)


def config_from_dict(values: dict) -> Config:
    """Build a :class:`Config` from nested dicts (as read from YAML), validating every key."""
    if not isinstance(values, dict):
        raise ValueError(f"a config must be a mapping of sections, got {type(values).__name__}")
    cfg = _build(Config, values, "")
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    h, w = cfg.data.image_size
    if h <= 0 or w <= 0:
        raise ValueError(f"data.image_size must be positive (H, W) pixels, got {cfg.data.image_size}")
    lo, hi = cfg.data.augment.resize_scale
    if not 0 < lo <= hi:
        raise ValueError(f"data.augment.resize_scale must satisfy 0 < lo <= hi, got {(lo, hi)}")
    if cfg.train.batch_size < 1 or cfg.train.epochs < 1:
        raise ValueError("train.batch_size and train.epochs must be >= 1")
    if cfg.optim.lr <= 0 or cfg.optim.min_lr < 0 or cfg.optim.min_lr > cfg.optim.lr:
        raise ValueError(f"optim: need 0 <= min_lr <= lr and lr > 0, got lr={cfg.optim.lr}, min_lr={cfg.optim.min_lr}")
    if cfg.optim.warmup_iters < 0 or not 0 < cfg.optim.warmup_ratio <= 1:
        raise ValueError("optim.warmup_iters must be >= 0 and optim.warmup_ratio in (0, 1]")
    if cfg.optim.grad_clip is not None and cfg.optim.grad_clip <= 0:
        raise ValueError(f"optim.grad_clip must be > 0 or null, got {cfg.optim.grad_clip}")
    if not 0 <= cfg.train.val_render_scale <= 1:
        raise ValueError(f"train.val_render_scale must be in [0, 1] (0: off), got {cfg.train.val_render_scale}")
    if cfg.train.log_every < 1 or cfg.train.checkpoint_every < 1 or cfg.train.val_every_epochs < 0:
        raise ValueError("train.log_every, train.checkpoint_every must be >= 1, val_every_epochs >= 0")


def config_to_dict(cfg: Config) -> dict:
    """Nested plain dicts/lists (YAML-safe) of a config."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (tuple, list)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(cfg)


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to nested dicts, in place."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key.sub=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"--set key must be dotted names like optim.lr, got {key!r}")
        node = values
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ValueError(f"--set {key}: {p!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return values


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply ``--set`` overrides and validate it.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        ValueError: unknown keys, wrong types or values (naming the key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config must be a mapping of sections")
    return config_from_dict(apply_overrides(values, list(overrides)))


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every key, defaults included) as YAML."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
