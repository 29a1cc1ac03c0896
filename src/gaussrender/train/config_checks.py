"""What a training config must satisfy beyond its types: ranges, combinations of options,
and the render loss's own arguments. :func:`validate` is run by
:func:`~gaussrender.train.config.config_from_dict` on every config it builds; a failure is a
:class:`ConfigError` naming the dotted key, what was expected and what was found."""

from __future__ import annotations

import math
from typing import Any

from .._untrusted import brief
from .config_schema import Config

__all__ = ["ConfigError", "fail", "validate"]


class ConfigError(ValueError):
    """A config file, key, value or ``--set`` override is wrong.

    The message names the file or the key, what was expected and what was found
    (``optim.lr: expected a finite number > 0, got inf``); ``key`` holds the dotted key
    when there is one. ``gaussrender train`` reports it as ``error: ...`` with exit code 2.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def fail(where: str, expected: str, value: Any) -> ConfigError:
    """The :class:`ConfigError` for key ``where``: ``<where>: <expected>, got <value>``
    (at most a short prefix of the value: it may be huge)."""
    return ConfigError(f"{where or 'config'}: {expected}, got {brief(value)}", where or None)


_SEED_LIMIT = 2**32  # numpy's seed range; torch generators are seeded with multiples of it
# Upper bounds that refuse, when the config is read, sizes that could only exhaust memory or
# time later (a 10^6 x 10^6 image, 10^6 loader processes); each far above any real use.
_MAX_IMAGE_SIDE = 16384  # pixels (nuScenes 1600, KITTI-360 1408)
_MAX_IMAGE_PIXELS = 1 << 26  # as the image reader's limit (gaussrender.data.images.MAX_IMAGE_PIXELS)
_MAX_CAMERAS = 64  # nuScenes has 6
_MAX_WORKERS = 256  # data-loading processes
_MAX_SCENES = 1_000_000  # synthetic scenes (a scene takes ~0.1 s to write)
_MAX_FRUSTUM = 64  # the release uses 8: 64 frustums


def _need(key: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise fail(key, expected, value)


def _count(key: str, value: int, low: int) -> None:
    _need(key, value, value >= low, f"expected an integer >= {low}")


def _number(
    key: str,
    value: float,
    low: float = 0.0,
    *,
    strict: bool = False,
    high: float | None = None,
    high_open: bool = False,
) -> None:
    ok = math.isfinite(value) and (value > low if strict else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    lo = f"> {low:g}" if strict else f">= {low:g}"
    if high is None:
        expected = f"expected a finite number {lo}"
    else:
        expected = f"expected a number in {'(' if strict else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    _need(key, value, ok, expected)


def _pixels(key: str, value: Any, optional: str = "") -> None:
    h, w = value
    _need(key, value, min(h, w) >= 1, f"expected {optional}positive (H, W) pixels")
    _need(
        key,
        value,
        h <= _MAX_IMAGE_SIDE and w <= _MAX_IMAGE_SIDE and h * w <= _MAX_IMAGE_PIXELS,
        f"expected (H, W) with each side <= {_MAX_IMAGE_SIDE} pixels and H x W <= {_MAX_IMAGE_PIXELS}",
    )


def _at_most(key: str, value: int, low: int, high: int, why: str) -> None:
    _count(key, value, low)
    _need(key, value, value <= high, f"expected an integer <= {high} ({why})")


def _seed(key: str, value: int) -> None:
    _need(key, value, 0 <= value < _SEED_LIMIT, "expected an integer in [0, 2**32)")


def validate(cfg: Config) -> None:
    """Refuse, naming the key, a config whose values are out of range or do not combine."""
    _validate_model(cfg)
    _validate_data(cfg)
    _validate_loss(cfg)
    _validate_supervision(cfg)
    _validate_render_kwargs(cfg)
    _validate_optim(cfg)
    _validate_train(cfg)


def _validate_model(cfg: Config) -> None:
    from ..models.backbone import RESNET_BLOCKS

    m, d = cfg.model, cfg.data
    _need(
        "model.backbone_depth",
        m.backbone_depth,
        m.backbone_depth is None or m.backbone_depth in RESNET_BLOCKS,
        f"expected null or one of {sorted(RESNET_BLOCKS)}",
    )
    _number("model.dropout", m.dropout, 0.0, high=1.0, high_open=True)
    if m.name == "symphonies":
        _need("data.num_cameras", d.num_cameras, d.num_cameras == 1, "expected 1 (Symphonies is monocular)")
        _need(
            "data.format",
            d.format,
            d.format == "kitti360",
            "expected 'kitti360' (Symphonies reads depth maps, which only the KITTI-360 reader provides)",
        )
    if m.init_seed is not None:
        _seed("model.init_seed", m.init_seed)


def _validate_data(cfg: Config) -> None:
    from ..geometry.grid import PRESETS

    d = cfg.data
    _need("data.grid", d.grid, d.grid.lower() in PRESETS, f"expected one of {sorted(PRESETS)}")
    _pixels("data.image_size", d.image_size)
    _at_most("data.num_cameras", d.num_cameras, 1, _MAX_CAMERAS, "cameras of one sample")
    _at_most("data.num_workers", d.num_workers, 0, _MAX_WORKERS, "data-loading processes")
    lo, hi = d.augment.resize_scale
    _need(
        "data.augment.resize_scale",
        d.augment.resize_scale,
        math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi,
        "expected finite [lo, hi] with 0 < lo <= hi",
    )
    for name in ("brightness", "contrast", "saturation"):
        # the factor is drawn in [1 - b, 1 + b] and must stay >= 0
        _number(f"data.augment.{name}", getattr(d.augment, name), 0.0, high=1.0)
    if d.synthetic is not None:
        _at_most("data.synthetic.num_scenes", d.synthetic.num_scenes, 1, _MAX_SCENES, "scenes to generate")
        _at_most("data.synthetic.num_val_scenes", d.synthetic.num_val_scenes, 0, _MAX_SCENES, "scenes to generate")
        _seed("data.synthetic.seed", d.synthetic.seed)
        _pixels("data.synthetic.image_size", d.synthetic.image_size)
        for key, wants in (("with_lidar", d.synthetic.with_lidar), ("targets_2d", d.synthetic.targets_2d == "lidar")):
            _need(
                f"data.synthetic.{key}", getattr(d.synthetic, key), not wants or d.synthetic.lidar, "needs lidar: true"
            )
        _need("data.synthetic", d.format, d.format == "occ3d" or not d.synthetic.lidar, "lidar needs format occ3d")


def _validate_loss(cfg: Config) -> None:
    d, loss = cfg.data, cfg.loss
    for name in (
        "ce_weight",
        "lovasz_weight",
        "sem_scal_weight",
        "geo_scal_weight",
        "frustum_weight",
        "scale_decay",
        "render_weight",
    ):
        _number(f"loss.{name}", getattr(loss, name))
    _at_most("loss.frustum_size", loss.frustum_size, 1, _MAX_FRUSTUM, "frustums per image side")
    if loss.class_weights is not None:
        _need(
            "loss.class_weights",
            loss.class_weights,
            len(loss.class_weights) > 0
            and all(math.isfinite(w) and w >= 0 for w in loss.class_weights)
            and sum(loss.class_weights) > 0,
            "expected a non-empty list of finite numbers >= 0, not all 0",
        )
    if loss.class_weights is None and loss.class_weighting == "release":
        from ..geometry.grid import get_grid
        from ..losses.class_weights import RELEASE_CLASS_WEIGHTS

        name = get_grid(d.grid).name
        _need(
            "loss.class_weighting",
            loss.class_weighting,
            name in RELEASE_CLASS_WEIGHTS,
            f"expected a grid with a release table ({sorted(RELEASE_CLASS_WEIGHTS)}); data.grid is {d.grid!r}",
        )
    if loss.render_image_size is not None:
        _pixels("loss.render_image_size", loss.render_image_size, "null or ")


def _validate_optim(cfg: Config) -> None:
    o = cfg.optim
    _number("optim.lr", o.lr, 0.0, strict=True)
    _number("optim.weight_decay", o.weight_decay)
    _number("optim.backbone_lr_mult", o.backbone_lr_mult)
    _count("optim.warmup_iters", o.warmup_iters, 0)
    _number("optim.warmup_ratio", o.warmup_ratio, 0.0, strict=True, high=1.0)
    _need(
        "optim.min_lr",
        o.min_lr,
        math.isfinite(o.min_lr) and 0 <= o.min_lr <= o.lr,
        f"expected a finite number with 0 <= min_lr <= lr (optim.lr = {o.lr!r})",
    )
    if o.grad_clip is not None:
        _number("optim.grad_clip", o.grad_clip, 0.0, strict=True)


def _validate_train(cfg: Config) -> None:
    t = cfg.train
    _count("train.epochs", t.epochs, 1)
    if t.max_steps is not None:
        _need("train.max_steps", t.max_steps, t.max_steps >= 1, "expected null (no limit) or an integer >= 1")
    _count("train.batch_size", t.batch_size, 1)
    _seed("train.seed", t.seed)
    _count("train.log_every", t.log_every, 1)
    _count("train.checkpoint_every", t.checkpoint_every, 1)
    _count("train.val_every_epochs", t.val_every_epochs, 0)
    _number("train.val_render_scale", t.val_render_scale, 0.0, high=1.0)
    _need("train.device", t.device, t.device in ("auto", "cpu", "cuda"), "expected one of ['auto', 'cpu', 'cuda']")


def _validate_supervision(cfg: Config) -> None:
    """``loss.voxel_losses`` / ``targets_2d`` / ``render_labels`` must leave the model a
    supervision signal, and 2D targets must come from data that has them."""
    loss, syn = cfg.loss, cfg.data.synthetic
    if cfg.data.lidar_targets and (syn is not None or cfg.data.format not in ("occ3d", "surroundocc")):
        raise fail(
            "data.lidar_targets",
            "is for the nuScenes readers (data.format occ3d or surroundocc, no data.synthetic); synthetic "
            "data takes data.synthetic.targets_2d",
            True,
        )
    if cfg.data.adjacent_frames and not cfg.data.lidar_targets:
        raise fail("data.adjacent_frames", "needs data.lidar_targets: true", list(cfg.data.adjacent_frames))
    if any(isinstance(k, bool) or not isinstance(k, int) or k == 0 for k in cfg.data.adjacent_frames):
        raise fail("data.adjacent_frames", "expected non-zero int offsets", list(cfg.data.adjacent_frames))
    if loss.targets_2d:
        if not loss.render:
            raise fail("loss.targets_2d", "needs loss.render: true (GaussRender compares with the 2D targets)", True)
        synthetic_targets = syn is not None and syn.targets_2d is not None and cfg.data.format == "occ3d"
        lidar_targets = syn is None and cfg.data.lidar_targets and cfg.data.format in ("occ3d", "surroundocc")
        if not (synthetic_targets or lidar_targets):
            # the readers that emit target_depth / target_semantics
            raise fail(
                "loss.targets_2d",
                "needs data with 2D targets: nuScenes data (data.format occ3d or surroundocc) with "
                "data.lidar_targets: true, or a synthetic dataset (data.synthetic, data.format occ3d) with "
                f"data.synthetic.targets_2d 'camera' or 'lidar' (data.lidar_targets is {cfg.data.lidar_targets}, "
                f"data.synthetic.targets_2d is {None if syn is None else syn.targets_2d!r}, "
                f"data.format {cfg.data.format!r})",
                True,
            )
    if loss.render and not loss.render_labels and not loss.targets_2d:
        raise fail(
            "loss.render_labels",
            "false leaves GaussRender without a target: set loss.targets_2d: true (or render_labels: true)",
            False,
        )
    if not loss.voxel_losses:
        if not loss.render:
            raise fail("loss.voxel_losses", "false needs loss.render: true (nothing else supervises the model)", False)
        if cfg.model.learned_opacity:
            # a learned opacity carries free space in the renders, so nothing would ever teach
            # the logits the empty class, and the prediction (their argmax) would be all occupied
            raise fail(
                "model.learned_opacity",
                "expected false with loss.voxel_losses: false (without the 3D loss only the opacity "
                "1 - p(empty) of the logits teaches them free space)",
                True,
            )
        for name in ("sem_scal_weight", "geo_scal_weight", "frustum_weight"):
            value = getattr(loss, name)
            if value > 0:
                raise fail(f"loss.{name}", "expected 0 with loss.voxel_losses: false (a 3D voxel term)", value)


def _validate_render_kwargs(cfg: Config) -> None:
    """``loss.render_kwargs`` must build a :class:`~gaussrender.GaussRenderLoss` (checked
    even with ``loss.render: false``, so that a typo never waits for the day it is used)."""
    kwargs = cfg.loss.render_kwargs
    if not kwargs:
        return
    from ..losses.render import GaussRenderLoss

    for key in kwargs:
        if key in ("weight", "on_nan", "prefix", "seed"):
            raise ConfigError(
                f"loss.render_kwargs.{key}: set by the trainer (use loss.render_weight / loss.nonfinite); remove it",
                f"loss.render_kwargs.{key}",
            )
    try:
        GaussRenderLoss(cfg.data.grid, weight=cfg.loss.render_weight, on_nan="raise", **kwargs)
    except (TypeError, ValueError) as err:
        message = str(err)
        if len(message) > 300:  # the loss's own message may quote a huge value
            message = message[:300] + "..."
        raise ConfigError(f"loss.render_kwargs: {message}", "loss.render_kwargs") from None
