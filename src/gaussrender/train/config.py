"""Training configuration: frozen dataclasses read from small YAML files.

A YAML file maps one to one onto :class:`Config` (sections ``model``, ``data``, ``loss``,
``optim``, ``train``); unknown keys are errors, missing keys take the defaults below, which
are the papers' recipe (DESIGN §5). There is no inheritance between files: each file states
what differs from the defaults. Command-line overrides ``--set key.sub=value`` parse
``value`` as YAML (``--set optim.lr=1e-4``, ``--set data.image_size=[450,800]``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
    "ConfigError",
    "load_config",
    "config_names",
    "resolve_config",
    "apply_overrides",
    "config_to_dict",
    "config_from_dict",
    "save_config",
]


@dataclass(frozen=True)
class ModelSection:
    name: Literal["tpvformer", "surroundocc", "symphonies"] = "tpvformer"  # architecture
    size: Literal["tiny", "base"] = "base"  # tiny: CPU-sized for tests and CI
    learned_opacity: bool = False  # predict a per-voxel opacity for GaussRender
    backbone_depth: int | None = None  # ResNet depth override (18, 34, 50, 101)
    dropout: float = 0.1  # attention / feed-forward dropout
    backbone_weights: str | None = None  # local torchvision ResNet state dict to start from
    # seed of the weight initialisation; None: derived from train.seed. Two runs that differ
    # only in train.seed but share init_seed start from the same weights
    init_seed: int | None = None


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
    lidar: bool = False  # also write a simulated LiDAR sweep per sample (.pcd.bin + lidarseg)
    with_lidar: bool = False  # items carry points [N, 3] / point_labels [N] (needs lidar)
    # items carry target_depth / target_semantics [V, H, W] at the render cameras: "camera" =
    # per-pixel ray casting into the labels (dense), "lidar" = the scan z-buffered (needs lidar)
    targets_2d: Literal["camera", "lidar"] | None = None


@dataclass(frozen=True)
class DataConfig:
    grid: str = "occ3d"  # VoxelGrid preset: occ3d, surroundocc, kitti360
    format: Literal["occ3d", "surroundocc", "kitti360"] = "occ3d"  # reader of gaussrender.data
    root: str = "data/nuscenes"  # labels root (Occ3D: holds gts/; SurroundOcc: nuscenes_occ/)
    data_root: str = ""  # nuScenes root with samples/ (images); "" = root
    train_infos: str = ""  # infos file of the training split
    val_infos: str = ""  # infos file of the validation split
    # KITTI-360: folder of depth maps <seq>/<frame>.npy for models that read depth
    # (Symphonies); "" = none (synthetic KITTI-like data: <root>/depth)
    depth_root: str = ""
    # nuScenes readers (occ3d, surroundocc): items carry target_depth / target_semantics, the
    # key-frame LiDAR scan with its nuScenes-lidarseg labels z-buffered into the render
    # cameras (files under data_root; docs/supervision.md). Synthetic data: data.synthetic.targets_2d
    lidar_targets: bool = False
    # with lidar_targets: also the LiDAR targets of these frame offsets in the scene (e.g.
    # [-1, 1]), in their own cameras; drop_moving: without points in moving objects' boxes
    adjacent_frames: tuple[int, ...] = ()
    drop_moving: bool = False
    image_size: tuple[int, int] = (896, 1600)  # (H, W) network input, pixels
    num_cameras: int = 6  # cameras per sample
    num_workers: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig | None = None  # write a synthetic dataset into `root` first


@dataclass(frozen=True)
class LossConfig:
    ce_weight: float = 10.0  # class-weighted cross-entropy
    lovasz_weight: float = 1.0  # Lovasz-softmax
    sem_scal_weight: float = 0.0  # MonoScene's semantic scene-class affinity loss (0: off)
    geo_scal_weight: float = 0.0  # MonoScene's geometric (occupied/free) affinity loss (0: off)
    frustum_weight: float = 0.0  # MonoScene's frustum-proportion loss, first camera (0: off)
    frustum_size: int = 8  # the image is split into frustum_size x frustum_size local frustums
    scale_decay: float = 0.5  # weight factor per coarser auxiliary scale
    class_weights: tuple[float, ...] | None = None  # [C] explicit CE weights (wins if set)
    # else: "release" = the release's fixed table of the grid preset (DESIGN §5),
    # "inverse_log_frequency" = 1/log(count + 0.001) counted from the training labels, "none"
    class_weighting: Literal["none", "inverse_log_frequency", "release"] = "inverse_log_frequency"
    coarse_labels: Literal["last", "majority"] = "last"  # label rule of coarser scales (release: last)
    render: bool = False  # add the GaussRender loss
    render_weight: float = 10.0  # λ of GaussRender
    render_kwargs: dict = field(default_factory=dict)  # extra GaussRenderLoss arguments
    # (H, W) pixels the sensor cameras are rendered at; None: each sample's native image
    # size (render_image_size of the readers: nuScenes 900x1600, KITTI-360 376x1408) with
    # the uncropped K, whatever data.image_size is
    render_image_size: tuple[int, int] | None = None
    nonfinite: Literal["raise", "skip"] = "raise"  # a NaN/inf loss term: raise, or skip the step
    # what supervises the model (docs/supervision.md). voxel_losses: the 3D voxel terms above
    # (CE, Lovasz, and scal / frustum when weighted); false: none of them (e.g. 2D-only)
    voxel_losses: bool = True
    # GaussRender also compares the prediction, rendered into every render camera, with the
    # batch's 2D targets (target_depth / target_semantics of data.synthetic.targets_2d)
    targets_2d: bool = False
    # GaussRender renders the 3D labels as its target (the release's cam / BEV terms); false:
    # it gets no labels and compares with the 2D targets only
    render_labels: bool = True


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4  # AdamW
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 0.1  # image backbone learning rate factor
    warmup_iters: int = 500  # linear warm-up from lr * warmup_ratio
    warmup_ratio: float = 1.0 / 3.0
    min_lr: float = 2e-7  # cosine (per iteration) floor
    # max global grad norm; None (default): no clipping, as the release's train.py (its logged
    # configs say grad_max_norm 35, but it never clips; DESIGN §5)
    grad_clip: float | None = None


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 20
    max_steps: int | None = None  # stop early after this many optimiser steps
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


class ConfigError(ValueError):
    """A config file, key, value or ``--set`` override is wrong.

    The message names the file or the key, what was expected and what was found
    (``optim.lr: expected a finite number > 0, got inf``); ``key`` holds the dotted key
    when there is one. ``gaussrender train`` reports it as ``error: ...`` with exit code 2.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _fail(where: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{where or 'config'}: {expected}, got {value!r}", where or None)


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Coerce a YAML value to the annotated type ``tp``; raise naming ``where`` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a dataclass type, not an instance
        if not isinstance(value, dict):
            raise _fail(where, "expected a mapping", value)
        return _build(tp, value, where)
    if origin is Literal:
        if isinstance(value, bool) or value not in args:
            raise _fail(where, f"expected one of {list(args)}", value)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, "expected a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(where, f"expected a list of {len(args)} items", value)
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, "expected a mapping", value)
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(where, "expected true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, "expected an integer", value)
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as a string; accept what float() accepts
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, "expected a number", value)
        try:
            return float(value)
        except OverflowError:  # an integer beyond the float range
            raise _fail(where, "expected a number within the float range", value) from None
    if tp is str:
        if not isinstance(value, str):
            raise _fail(where, "expected a string", value)
        return value
    raise TypeError(f"{where}: unsupported config type {tp!r}")


def _build(cls: type, values: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(values) - names)  # YAML keys need not be strings
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{key}: unknown key(s) {unknown} in {where or 'config'}; allowed: {sorted(names)}", key)
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict) -> Config:
    """Build a :class:`Config` from nested dicts (as read from YAML), validating every key.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or out of its range; the
            message names the dotted key, what was expected and the value.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(values).__name__}")
    cfg = _build(Config, values, "")
    _validate(cfg)
    return cfg


# every numeric setting checked when the config is built, so that a run never starts with
# a value that can only produce garbage (an infinite learning rate trains to inf weights)
_SEED_LIMIT = 2**32  # numpy's seed range; torch generators are seeded with multiples of it


def _validate(cfg: Config) -> None:
    from ..geometry.grid import PRESETS
    from ..models.backbone import RESNET_BLOCKS

    finite = math.isfinite

    def need(key: str, value: Any, ok: bool, expected: str) -> None:
        if not ok:
            raise _fail(key, expected, value)

    def count(key: str, value: int, low: int) -> None:
        need(key, value, value >= low, f"expected an integer >= {low}")

    def number(
        key: str,
        value: float,
        low: float = 0.0,
        *,
        strict: bool = False,
        high: float | None = None,
        high_open: bool = False,
    ) -> None:
        ok = finite(value) and (value > low if strict else value >= low)
        if high is not None:
            ok = ok and (value < high if high_open else value <= high)
        lo = f"> {low:g}" if strict else f">= {low:g}"
        if high is None:
            expected = f"expected a finite number {lo}"
        else:
            expected = f"expected a number in {'(' if strict else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        need(key, value, ok, expected)

    def seed(key: str, value: int) -> None:
        need(key, value, 0 <= value < _SEED_LIMIT, "expected an integer in [0, 2**32)")

    m, d, loss, o, t = cfg.model, cfg.data, cfg.loss, cfg.optim, cfg.train
    need(
        "model.backbone_depth",
        m.backbone_depth,
        m.backbone_depth is None or m.backbone_depth in RESNET_BLOCKS,
        f"expected null or one of {sorted(RESNET_BLOCKS)}",
    )
    number("model.dropout", m.dropout, 0.0, high=1.0, high_open=True)
    if m.name == "symphonies":
        need("data.num_cameras", d.num_cameras, d.num_cameras == 1, "expected 1 (Symphonies is monocular)")
        need(
            "data.format",
            d.format,
            d.format == "kitti360",
            "expected 'kitti360' (Symphonies reads depth maps, which only the KITTI-360 reader provides)",
        )
    if m.init_seed is not None:
        seed("model.init_seed", m.init_seed)

    need("data.grid", d.grid, d.grid.lower() in PRESETS, f"expected one of {sorted(PRESETS)}")
    need("data.image_size", d.image_size, min(d.image_size) >= 1, "expected positive (H, W) pixels")
    count("data.num_cameras", d.num_cameras, 1)
    count("data.num_workers", d.num_workers, 0)
    lo, hi = d.augment.resize_scale
    need(
        "data.augment.resize_scale",
        d.augment.resize_scale,
        finite(lo) and finite(hi) and 0 < lo <= hi,
        "expected finite [lo, hi] with 0 < lo <= hi",
    )
    for name in ("brightness", "contrast", "saturation"):
        # the factor is drawn in [1 - b, 1 + b] and must stay >= 0
        number(f"data.augment.{name}", getattr(d.augment, name), 0.0, high=1.0)
    if d.synthetic is not None:
        count("data.synthetic.num_scenes", d.synthetic.num_scenes, 1)
        count("data.synthetic.num_val_scenes", d.synthetic.num_val_scenes, 0)
        seed("data.synthetic.seed", d.synthetic.seed)
        need(
            "data.synthetic.image_size",
            d.synthetic.image_size,
            min(d.synthetic.image_size) >= 1,
            "expected positive (H, W) pixels",
        )
        for key, wants in (("with_lidar", d.synthetic.with_lidar), ("targets_2d", d.synthetic.targets_2d == "lidar")):
            need(
                f"data.synthetic.{key}", getattr(d.synthetic, key), not wants or d.synthetic.lidar, "needs lidar: true"
            )
        need("data.synthetic", d.format, d.format == "occ3d" or not d.synthetic.lidar, "lidar needs format occ3d")

    for name in (
        "ce_weight",
        "lovasz_weight",
        "sem_scal_weight",
        "geo_scal_weight",
        "frustum_weight",
        "scale_decay",
        "render_weight",
    ):
        number(f"loss.{name}", getattr(loss, name))
    count("loss.frustum_size", loss.frustum_size, 1)
    if loss.class_weights is not None:
        need(
            "loss.class_weights",
            loss.class_weights,
            len(loss.class_weights) > 0
            and all(finite(w) and w >= 0 for w in loss.class_weights)
            and sum(loss.class_weights) > 0,
            "expected a non-empty list of finite numbers >= 0, not all 0",
        )
    if loss.class_weights is None and loss.class_weighting == "release":
        from ..geometry.grid import get_grid
        from ..losses3d import RELEASE_CLASS_WEIGHTS

        name = get_grid(d.grid).name
        need(
            "loss.class_weighting",
            loss.class_weighting,
            name in RELEASE_CLASS_WEIGHTS,
            f"expected a grid with a release table ({sorted(RELEASE_CLASS_WEIGHTS)}); data.grid is {d.grid!r}",
        )
    if loss.render_image_size is not None:
        need(
            "loss.render_image_size",
            loss.render_image_size,
            min(loss.render_image_size) >= 1,
            "expected null or positive (H, W) pixels",
        )
    _validate_supervision(cfg)
    _validate_render_kwargs(cfg)

    number("optim.lr", o.lr, 0.0, strict=True)
    number("optim.weight_decay", o.weight_decay)
    number("optim.backbone_lr_mult", o.backbone_lr_mult)
    count("optim.warmup_iters", o.warmup_iters, 0)
    number("optim.warmup_ratio", o.warmup_ratio, 0.0, strict=True, high=1.0)
    need(
        "optim.min_lr",
        o.min_lr,
        finite(o.min_lr) and 0 <= o.min_lr <= o.lr,
        f"expected a finite number with 0 <= min_lr <= lr (optim.lr = {o.lr!r})",
    )
    if o.grad_clip is not None:
        number("optim.grad_clip", o.grad_clip, 0.0, strict=True)

    count("train.epochs", t.epochs, 1)
    if t.max_steps is not None:
        need("train.max_steps", t.max_steps, t.max_steps >= 1, "expected null (no limit) or an integer >= 1")
    count("train.batch_size", t.batch_size, 1)
    seed("train.seed", t.seed)
    count("train.log_every", t.log_every, 1)
    count("train.checkpoint_every", t.checkpoint_every, 1)
    count("train.val_every_epochs", t.val_every_epochs, 0)
    number("train.val_render_scale", t.val_render_scale, 0.0, high=1.0)
    need("train.device", t.device, t.device in ("auto", "cpu", "cuda"), "expected one of ['auto', 'cpu', 'cuda']")


def _validate_supervision(cfg: Config) -> None:
    """``loss.voxel_losses`` / ``targets_2d`` / ``render_labels`` must leave the model a
    supervision signal, and 2D targets must come from data that has them."""
    loss, syn = cfg.loss, cfg.data.synthetic
    if cfg.data.lidar_targets and (syn is not None or cfg.data.format not in ("occ3d", "surroundocc")):
        raise _fail(
            "data.lidar_targets",
            "is for the nuScenes readers (data.format occ3d or surroundocc, no data.synthetic); synthetic "
            "data takes data.synthetic.targets_2d",
            True,
        )
    if cfg.data.adjacent_frames and not cfg.data.lidar_targets:
        raise _fail("data.adjacent_frames", "needs data.lidar_targets: true", list(cfg.data.adjacent_frames))
    if any(isinstance(k, bool) or not isinstance(k, int) or k == 0 for k in cfg.data.adjacent_frames):
        raise _fail("data.adjacent_frames", "expected non-zero int offsets", list(cfg.data.adjacent_frames))
    if loss.targets_2d:
        if not loss.render:
            raise _fail("loss.targets_2d", "needs loss.render: true (GaussRender compares with the 2D targets)", True)
        synthetic_targets = syn is not None and syn.targets_2d is not None and cfg.data.format == "occ3d"
        lidar_targets = syn is None and cfg.data.lidar_targets and cfg.data.format in ("occ3d", "surroundocc")
        if not (synthetic_targets or lidar_targets):
            # the readers that emit target_depth / target_semantics
            raise _fail(
                "loss.targets_2d",
                "needs data with 2D targets: nuScenes data (data.format occ3d or surroundocc) with "
                "data.lidar_targets: true, or a synthetic dataset (data.synthetic, data.format occ3d) with "
                f"data.synthetic.targets_2d 'camera' or 'lidar' (data.lidar_targets is {cfg.data.lidar_targets}, "
                f"data.synthetic.targets_2d is {None if syn is None else syn.targets_2d!r}, "
                f"data.format {cfg.data.format!r})",
                True,
            )
    if loss.render and not loss.render_labels and not loss.targets_2d:
        raise _fail(
            "loss.render_labels",
            "false leaves GaussRender without a target: set loss.targets_2d: true (or render_labels: true)",
            False,
        )
    if not loss.voxel_losses:
        if not loss.render:
            raise _fail("loss.voxel_losses", "false needs loss.render: true (nothing else supervises the model)", False)
        for name in ("sem_scal_weight", "geo_scal_weight", "frustum_weight"):
            value = getattr(loss, name)
            if value > 0:
                raise _fail(f"loss.{name}", "expected 0 with loss.voxel_losses: false (a 3D voxel term)", value)


def _validate_render_kwargs(cfg: Config) -> None:
    """``loss.render_kwargs`` must build a :class:`~gaussrender.GaussRenderLoss` (checked
    even with ``loss.render: false``, so that a typo never waits for the day it is used)."""
    kwargs = cfg.loss.render_kwargs
    if not kwargs:
        return
    from ..loss import GaussRenderLoss

    for key in kwargs:
        if key in ("weight", "on_nan", "prefix", "seed"):
            raise ConfigError(
                f"loss.render_kwargs.{key}: set by the trainer (use loss.render_weight / loss.nonfinite); remove it",
                f"loss.render_kwargs.{key}",
            )
    try:
        GaussRenderLoss(cfg.data.grid, weight=cfg.loss.render_weight, on_nan="raise", **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"loss.render_kwargs: {err}", "loss.render_kwargs") from None


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
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to nested dicts, in place.

    Raises:
        ConfigError: a malformed override (no ``=``, an empty key part, a value that is not
            YAML, a key below a value that is not a section), naming the override.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key.sub=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"--set key must be dotted names like optim.lr, got {key!r}")
        node = values
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section", key)
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: the value {raw!r} is not valid YAML ({_yaml_problem(err)})", key) from None
    return values


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line of a YAML error: its problem and position, without PyYAML's source excerpt."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem is None:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


_MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; refuse anything absurd
_MAX_CONFIG_NODES = 100_000  # bounds anchor/alias expansion ("billion laughs") and cycles


def _check_size(value: Any, path: Path) -> None:
    """Refuse YAML whose aliases expand to a huge (or cyclic) tree before anything walks it."""
    seen = 0
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > _MAX_CONFIG_NODES or depth > 64:
            raise ConfigError(
                f"{path}: the YAML expands to more than {_MAX_CONFIG_NODES} values or "
                "nests deeper than 64 levels (recursive or repeated anchors?)"
            )
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def config_names() -> list[str]:
    """Names of the configs shipped inside the package (``gaussrender/configs/<name>.yaml``), sorted."""
    folder = importlib.resources.files("gaussrender") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config(spec: str | os.PathLike) -> Path:
    """The file a ``--config`` value names: a path, or the name of a shipped config.

    An existing file, or anything that looks like a path (a folder separator or a
    ``.yaml``/``.yml`` suffix), is a path. Anything else is a name looked up among
    :func:`config_names` (``tpvformer_occ3d_render``) inside the installed package, so the
    configs work from a wheel, not only from a checkout.

    Raises:
        FileNotFoundError: a path that does not exist, or an unknown name (the message lists
            the shipped names).
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file() or "/" in text or os.sep in text or path.suffix in (".yaml", ".yml"):
        return path
    names = config_names()
    if text not in names:
        raise FileNotFoundError(
            f"config {text!r} is neither a file nor a shipped config name; shipped: {', '.join(names)}"
        )
    found = importlib.resources.files("gaussrender") / "configs" / f"{text}.yaml"
    # a wheel installs the package as plain files, so this is a real path on disk
    if not isinstance(found, os.PathLike):
        raise FileNotFoundError(f"shipped config {text!r} is not a file on disk: {found!r}")
    return Path(os.fspath(found))


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``--set`` overrides and validate it.

    Args:
        path: a YAML file, or the name of a shipped config (:func:`resolve_config`).
        overrides: ``key.sub=value`` strings, ``value`` parsed as YAML.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist (and listing the shipped
            names when it is not a path).
        ConfigError: (a ValueError) an unreadable or corrupt file, a malformed override,
            unknown keys, wrong types or values; the message names the file, and the key
            (marked ``(--set)`` when an override gave the value).
    """
    path = resolve_config(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        size = path.stat().st_size
        if size > _MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size} bytes is not a config file (limit {_MAX_CONFIG_BYTES})")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(values).__name__}")
    _check_size(values, path)
    overridden = {item.split("=", 1)[0].strip() for item in overrides if "=" in item}
    try:
        return config_from_dict(apply_overrides(values, list(overrides)))
    except ConfigError as err:
        if str(err).startswith("--set"):
            raise
        by_set = err.key is not None and any(
            err.key == k or err.key.startswith(k + ".") or err.key.startswith(k + "[") for k in overridden
        )
        raise ConfigError(f"{path}: {err}{' (--set)' if by_set else ''}", err.key) from None


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every key, defaults included) as YAML."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
