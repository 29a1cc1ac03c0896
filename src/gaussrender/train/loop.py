"""The training loop: one process or ``torchrun`` DDP, AMP, clipping, checkpoints, logs.

:class:`Trainer` owns the model, optimiser, schedule, losses and data loaders of one run
directory; :meth:`Trainer.fit` trains, validates and checkpoints; :func:`train` builds
everything from a :class:`~gaussrender.train.config.Config`.

Loss (DESIGN §5): ``L = loss_ce + loss_lovasz [+ loss_sem_scal + loss_geo_scal + loss_frustum]
[+ loss_render]`` (MonoScene's terms only with a weight > 0) where the 3D terms come from
:class:`gaussrender.losses3d.Occupancy3DLoss` and ``loss_render`` is the weighted total of
:class:`gaussrender.GaussRenderLoss` (only with ``loss.render: true``). Every term is
computed in float32 outside autocast. A term that is NaN/inf never reaches the optimiser:
with ``loss.nonfinite: raise`` the run stops with :class:`NonFiniteLossError` naming the
term, step and samples; with ``skip`` the step is skipped with a warning (on every rank, so
DDP stays in lockstep) and counted in the log. The same policy covers a non-finite gradient
norm. A parameter that is non-finite (at the start of :meth:`Trainer.fit`, or after an
optimiser step) always stops the run: the update cannot be taken back.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .._io import atomic_write_text, remove_stale_temporaries
from ..data.files import DataFileError
from ..geometry.grid import VoxelGrid, get_grid
from ..losses3d import Occupancy3DLoss, release_class_weights
from .augment import AugmentedDataset
from .checkpoint import load_checkpoint, restore_rng_state, rng_state, save_atomic
from .config import Config, config_to_dict, save_config
from .distributed import DistInfo, ShardSampler, TrainSampler, all_reduce_sum, init_distributed
from .runlog import RunLogger
from .schedule import warmup_cosine_factor
from .seeds import INIT_SEED_STRIDE, RENDER_SEED_STRIDE, epoch_seed

__all__ = [
    "NonFiniteLossError",
    "ResumeError",
    "TrainingLoss",
    "Trainer",
    "seed_everything",
    "init_seed_of",
    "move_batch",
    "run_model",
    "count_classes",
    "class_weights_for",
]


class NonFiniteLossError(FloatingPointError):
    """A loss term, the gradient norm or a parameter was NaN or infinite; the message names
    which one(s) and the step."""


class ResumeError(ValueError):
    """The checkpoint to resume from cannot be read or restored; the message names its path."""


# the files a run directory receives through atomic writes (their stale temporaries are
# removed when a run starts)
_RUN_FILES = ("last.pt", "config.yaml", "class_counts.json", "log.jsonl")


def init_seed_of(cfg: Config) -> int:
    """The seed the model's weights are drawn with: ``model.init_seed``, or, when that is
    null, ``(train.seed * INIT_SEED_STRIDE + 1) mod 2**32`` (a stream apart from the
    training stream ``train.seed + rank``, which drives dropout)."""
    if cfg.model.init_seed is not None:
        return int(cfg.model.init_seed)
    return (cfg.train.seed * INIT_SEED_STRIDE + 1) % 2**32


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, NumPy and PyTorch; optionally force deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this before its first use to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def run_model(model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
    """``model(images, intrinsics, cam_from_grid)``, plus ``depth=batch["depth"]`` for a
    model that reads depth maps (``needs_depth``: Symphonies' voxel proposals)."""
    kwargs = {}
    if getattr(_unwrap(model), "needs_depth", False):
        if "depth" not in batch:
            raise ValueError(
                f"{type(_unwrap(model)).__name__} needs depth maps but the samples carry none "
                "(KITTI-360: set data.depth_root)"
            )
        kwargs["depth"] = batch["depth"]
    return model(batch["images"], batch["intrinsics"], batch["cam_from_grid"], **kwargs)


def _dataset_len(dataset: torch.utils.data.Dataset, name: str) -> int:
    """``len(dataset)``; torch types ``Dataset`` without ``__len__``, but the samplers here need it."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{name} must be a map-style dataset with __len__, got {type(dataset).__name__}")
    return len(dataset)


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors (and lists of tensors) of a collated batch moved to ``device``."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, list) and v and all(isinstance(t, torch.Tensor) for t in v):
            out[k] = [t.to(device, non_blocking=True) for t in v]
        else:
            out[k] = v
    return out


class TrainingLoss(torch.nn.Module):
    """The total training loss of a config: 3D terms plus, optionally, GaussRender.

    Args:
        cfg: the run's config (section ``loss``).
        grid: the voxel grid of the labels.
        render_generator: CPU generator for GaussRender's camera sampling (saved in
            checkpoints so that a resumed run draws the same cameras).
        class_weights: ``[C]`` cross-entropy weights used when ``loss.class_weights`` is
            not set (see :func:`class_weights_for`); with ``loss.class_weighting:
            release`` and none given, the grid's release table.

    Call ``(outputs, batch)`` with the model's outputs (``logits``, ``aux_logits``,
    ``opacity``) and the batch (``labels``, ``cam_from_grid``, and the render cameras
    ``render_intrinsics [B, Ncam, 3, 3]`` + ``render_image_size [B, 2]`` (H, W) that the
    readers give at the native image size, independent of the network input; a batch
    without them renders with the network's ``intrinsics`` at the ``images`` size).
    A learned ``opacity`` output ``[B, X, Y, Z]`` is the opacity of the predicted Gaussians.
    Returns ``(terms, extras)``: ``terms`` are the differentiable summands of the loss
    (``loss_ce``, ``loss_lovasz``, ``loss_sem_scal`` / ``loss_geo_scal`` / ``loss_frustum``
    when weighted, and with rendering ``loss_render``); ``extras`` are
    detached values for the log (the unweighted render terms ``render_cam``, ...).
    """

    def __init__(
        self,
        cfg: Config,
        grid: VoxelGrid,
        render_generator: torch.Generator | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        weights = class_weights
        if cfg.loss.class_weights is not None:
            if len(cfg.loss.class_weights) != grid.num_classes:
                raise ValueError(
                    f"loss.class_weights has {len(cfg.loss.class_weights)} entries, the grid "
                    f"{grid.name!r} has {grid.num_classes} classes"
                )
            weights = torch.tensor(cfg.loss.class_weights, dtype=torch.float32)
        elif weights is None and cfg.loss.class_weighting == "release":
            weights = release_class_weights(grid)
        self.occupancy = Occupancy3DLoss(
            grid.num_classes,
            grid.empty_index,
            grid.ignore_index,
            ce_weight=cfg.loss.ce_weight,
            lovasz_weight=cfg.loss.lovasz_weight,
            scale_decay=cfg.loss.scale_decay,
            class_weights=weights,
            coarse_labels=cfg.loss.coarse_labels,
            sem_scal_weight=cfg.loss.sem_scal_weight,
            geo_scal_weight=cfg.loss.geo_scal_weight,
            frustum_weight=cfg.loss.frustum_weight,
            num_frustums=cfg.loss.frustum_size**2,
        )
        self.grid = grid
        self.frustum_size = cfg.loss.frustum_size
        self.render_image_size = cfg.loss.render_image_size
        self.render = None
        if cfg.loss.render:
            from ..loss import GaussRenderLoss

            kwargs = dict(cfg.loss.render_kwargs)
            for reserved in ("weight", "on_nan", "prefix", "seed"):
                if reserved in kwargs:
                    raise ValueError(
                        f"loss.render_kwargs.{reserved} is set by the trainer (use "
                        "loss.render_weight / loss.nonfinite); remove it"
                    )
            self.render = GaussRenderLoss(grid, weight=cfg.loss.render_weight, on_nan="raise", **kwargs)
        self.render_generator = render_generator

    def forward(
        self, outputs: dict[str, Any], batch: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        logits = outputs["logits"].float()
        labels = batch["labels"]
        aux = [a.float() for a in (outputs.get("aux_logits") or ())]
        frustum = self.frustum_ids(batch) if self.occupancy.frustum_weight > 0 else None
        terms = dict(self.occupancy(logits, labels, aux, frustum=frustum))
        extras: dict[str, float] = {}
        if self.render is None:
            return terms, extras
        if not all(bool(torch.isfinite(t)) for t in terms.values()):
            # the render loss refuses non-finite logits; the 3D terms already carry the fault
            terms["loss_render"] = logits.new_full((), float("nan"))
            return terms, extras
        opacity = outputs.get("opacity")
        intrinsics, image_size = self.render_cameras(batch)
        try:
            out = self.render(
                logits,
                labels,
                intrinsics=intrinsics,
                cam_from_grid=batch["cam_from_grid"].float(),
                image_size=image_size,
                opacity=None if opacity is None else opacity.float(),
                generator=self.render_generator,
            )
        except FloatingPointError:
            terms["loss_render"] = logits.new_full((), float("nan"))
            return terms, extras
        terms["loss_render"] = out["loss"]
        extras.update({f"render_{k}": float(v.detach()) for k, v in out.items() if k != "loss"})
        return terms, extras

    def frustum_ids(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[B, X, Y, Z]`` local-frustum id of every voxel in the first camera, -1 for none.

        As the release (MonoScene's ``vox2pix``): the voxel's corner ``range_min + index *
        voxel_size`` (not its centre) is projected with the network's intrinsics, rounded to
        integer pixels, and tiled over the network's image (``images`` size) into
        ``loss.frustum_size`` squared tiles (:func:`gaussrender.losses_scal.frustum_ids`).
        """
        from ..losses_scal import frustum_ids

        images = batch["images"]
        if batch["intrinsics"].shape[1] < 1:
            raise ValueError("loss.frustum_weight > 0 needs a camera in the batch (intrinsics [B, Ncam >= 1, 3, 3])")
        ks = batch["intrinsics"].double()[:, 0]  # [B, 3, 3]
        cam_from_grid = batch["cam_from_grid"].double()[:, 0]  # [B, 4, 4]
        corners = self.grid.voxel_centers(dtype=torch.float64) - 0.5 * self.grid.voxel_size
        corners = corners.to(ks.device).reshape(-1, 3)  # [N, 3] grid frame, metres
        cam = corners @ cam_from_grid[:, :3, :3].transpose(1, 2) + cam_from_grid[:, None, :3, 3]  # [B, N, 3]
        z = cam[..., 2]
        xy = cam[..., :2] / torch.where(z == 0, torch.ones_like(z), z)[..., None]
        u = ks[:, None, 0, 0] * xy[..., 0] + ks[:, None, 0, 1] * xy[..., 1] + ks[:, None, 0, 2]
        v = ks[:, None, 1, 1] * xy[..., 1] + ks[:, None, 1, 2]
        pixels = torch.round(torch.stack([u, v], dim=-1))  # the release's integer pixels
        size = (int(images.shape[-2]), int(images.shape[-1]))
        ids = frustum_ids(pixels, z, size, self.frustum_size)
        return ids.reshape(ids.shape[0], *self.grid.shape).to(batch["labels"].device)

    def render_cameras(self, batch: dict[str, Any]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Intrinsics ``[B, Ncam, 3, 3]`` (float32) and ``(H, W)`` the sensor cameras are rendered at.

        The samples' ``render_intrinsics`` at their ``render_image_size`` (native, uncropped),
        rescaled to ``loss.render_image_size`` when that is set; without those keys, the
        network's ``intrinsics`` at the ``images`` size.

        Raises:
            ValueError: samples of one batch with different render sizes, or a malformed
                ``render_image_size``.
        """
        from ..geometry.cameras import scale_intrinsics

        if "render_intrinsics" not in batch:
            ks = batch["intrinsics"].float()
            native = (int(batch["images"].shape[-2]), int(batch["images"].shape[-1]))
        else:
            ks = batch["render_intrinsics"].float()
            sizes = torch.as_tensor(batch["render_image_size"]).reshape(-1, 2)
            if sizes.shape[0] != ks.shape[0]:
                raise ValueError(
                    f"render_image_size must be [B, 2] (H, W) with B={ks.shape[0]}, got shape {list(sizes.shape)}"
                )
            distinct = {(int(row[0]), int(row[1])) for row in sizes}  # rows of 2: reshaped above
            if len(distinct) != 1:
                raise ValueError(
                    f"the samples of a batch must share one render_image_size, got {sorted(distinct)}; "
                    "set loss.render_image_size to render them all at one size"
                )
            (native,) = distinct
        if self.render_image_size is None or tuple(self.render_image_size) == native:
            return ks, native
        h, w = (int(s) for s in self.render_image_size)
        return scale_intrinsics(ks, w / native[1], h / native[0]).float(), (h, w)


def count_classes(dataset: torch.utils.data.Dataset, num_classes: int, info: DistInfo) -> torch.Tensor:
    """``[C]`` int64 voxel count per class over ``dataset`` (items with ``labels``), summed
    over ranks (each rank reads a non-overlapping shard)."""
    counts = torch.zeros(num_classes, dtype=torch.int64)
    for i in ShardSampler(_dataset_len(dataset, "dataset"), info.rank, info.world_size):
        labels = dataset[i]["labels"].reshape(-1).long()
        labels = labels[(labels >= 0) & (labels < num_classes)]
        counts += torch.bincount(labels, minlength=num_classes)
    if info.distributed:
        counts = all_reduce_sum(counts.to(info.device)).cpu()
    return counts


def class_weights_for(
    cfg: Config, grid: VoxelGrid, dataset: torch.utils.data.Dataset, info: DistInfo, cache: Path | None = None
) -> torch.Tensor | None:
    """Cross-entropy class weights of ``loss.class_weighting`` (None for ``"none"`` or when
    ``loss.class_weights`` is given). ``"release"``: the grid's fixed table
    (:func:`gaussrender.losses3d.release_class_weights`, DESIGN §5), nothing is counted.
    ``"inverse_log_frequency"``: counted from ``dataset``, cached as JSON in ``cache`` if given."""
    import json

    from ..losses3d import inverse_log_frequency_weights

    if cfg.loss.class_weights is not None or cfg.loss.class_weighting == "none":
        return None
    if cfg.loss.class_weighting == "release":
        return release_class_weights(grid)
    if cache is not None and cache.is_file():
        counts = torch.tensor(json.loads(cache.read_text())["counts"], dtype=torch.int64)
        if counts.numel() != grid.num_classes:
            raise ValueError(f"{cache} holds {counts.numel()} class counts, the grid has {grid.num_classes}")
    else:
        counts = count_classes(dataset, grid.num_classes, info)
        if cache is not None and info.is_main:
            # other ranks never see a half-written file
            atomic_write_text(cache, json.dumps({"counts": counts.tolist(), "classes": list(grid.class_names)}))
    return inverse_log_frequency_weights(counts).float()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _param_groups(model: torch.nn.Module, cfg: Config) -> list[dict[str, Any]]:
    """Backbone parameters (``model.backbone_parameters()``, if defined) at ``lr x mult``."""
    backbone_parameters = getattr(model, "backbone_parameters", None)
    backbone = list(backbone_parameters()) if backbone_parameters is not None else []
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    backbone = [p for p in backbone if p.requires_grad]
    groups = [{"params": rest, "lr": cfg.optim.lr, "name": "head"}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.optim.lr * cfg.optim.backbone_lr_mult, "name": "backbone"})
    return groups


def _default_collate() -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """The batch function of the data loaders when the caller gives none: :func:`gaussrender.data.collate`."""
    from ..data import collate

    return collate


def _gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


class Trainer:
    """Everything of one training run.

    Args:
        cfg: the run's configuration.
        run_dir: where ``config.yaml``, ``log.jsonl`` and checkpoints (``last.pt``) go.
        model: the occupancy model (``model(images, intrinsics, cam_from_grid) -> dict``).
            Its weights are the caller's: :func:`gaussrender.train.run.build_initial_model`
            draws them from ``model.init_seed`` / ``train.seed``; the trainer seeds
            everything after (dropout, data order, augmentation, camera draws).
        train_set: dataset of sample dicts (``images [V, 3, H, W]``, ``intrinsics``,
            ``cam_from_grid``, ``labels [X, Y, Z]``, ``token``). With
            ``loss.class_weighting: inverse_log_frequency`` its labels are counted once
            (cached in ``run_dir/class_counts.json``).
        val_set: validation dataset (``mask_camera``, ``origins`` optional) or None.
        grid: the labels' voxel grid (default: the preset named by ``cfg.data.grid``).
        collate: batch function for the data loaders (default :func:`gaussrender.data.collate`).
        info: this process's place in the job (default: from the ``torchrun`` environment).
        progress: show a tqdm bar on rank 0.
        metric_convention: IoU averaging rule for validation
            (:class:`gaussrender.metrics.occupancy.IoUConvention`); default: the grid
            preset's own. A grid that is not a preset must pass one.
        class_weights: ``[C]`` cross-entropy weights already computed by the caller (e.g.
            from a labels-only dataset); default: :func:`class_weights_for` on ``train_set``.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        model: torch.nn.Module,
        train_set: torch.utils.data.Dataset,
        val_set: torch.utils.data.Dataset | None = None,
        grid: VoxelGrid | None = None,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
        info: DistInfo | None = None,
        progress: bool = True,
        metric_convention: Any = None,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.info = info if info is not None else init_distributed(cfg.train.device)
        self.grid = grid if grid is not None else get_grid(cfg.data.grid)
        self.progress = progress
        self.metric_convention = metric_convention
        self.collate = collate if collate is not None else _default_collate()
        # seeding first, then the set-up steps in their original order: a repeated or resumed
        # run must draw exactly the same values
        seed_everything(cfg.train.seed + self.info.rank, cfg.train.deterministic)
        self._write_run_config()
        self.logger = RunLogger(self.run_dir, enabled=self.info.is_main)
        self.model = model.to(self.info.device)
        self._init_data(train_set, val_set)
        self._init_optimiser()
        self._init_amp()
        self.render_generator = torch.Generator().manual_seed(cfg.train.seed * RENDER_SEED_STRIDE + self.info.rank)
        if class_weights is None:
            class_weights = class_weights_for(cfg, self.grid, train_set, self.info, self.run_dir / "class_counts.json")
        self.loss_fn = TrainingLoss(cfg, self.grid, self.render_generator, class_weights).to(self.info.device)
        self.ddp_model = self._wrap_ddp()
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.skipped_steps = 0

    # ------------------------------------------------------------------ set-up
    def _write_run_config(self) -> None:
        """Create the run directory and write ``config.yaml`` (rank 0 only)."""
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")

    def _init_data(self, train_set: torch.utils.data.Dataset, val_set: torch.utils.data.Dataset | None) -> None:
        """The augmented training set, its sampler, and the run's length in steps."""
        cfg = self.cfg.train
        self.train_set = AugmentedDataset(train_set, self.cfg.data.augment, seed=cfg.seed)
        self.val_set = val_set
        self.sampler = TrainSampler(
            _dataset_len(train_set, "train_set"), self.info.rank, self.info.world_size, cfg.seed
        )
        self.steps_per_epoch = math.ceil(self.sampler.per_rank / cfg.batch_size)
        total = self.steps_per_epoch * cfg.epochs
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total

    def _init_optimiser(self) -> None:
        """AdamW over :func:`_param_groups` and its warm-up + cosine schedule."""
        optim = self.cfg.optim
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, self.cfg), lr=optim.lr, weight_decay=optim.weight_decay
        )
        # the cosine decays over the steps the run takes: a run cut short by max_steps ends at min_lr
        schedule_length = self.total_steps
        min_ratio = optim.min_lr / optim.lr
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: warmup_cosine_factor(step, schedule_length, optim.warmup_iters, optim.warmup_ratio, min_ratio),
        )

    def _init_amp(self) -> None:
        """``train.amp``'s autocast dtype (None: float32; AMP needs CUDA) and the gradient
        scaler (enabled for float16 only)."""
        amp = self.cfg.train.amp
        device = self.info.device
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        if self.amp_dtype is not None and device.type != "cuda":
            warnings.warn(f"train.amp={amp!r} needs CUDA; running in float32 on {device}", RuntimeWarning, stacklevel=2)
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _wrap_ddp(self) -> torch.nn.Module:
        """The model the training step calls: ``self.model``, wrapped in DDP under ``torchrun``."""
        if not self.info.distributed:
            return self.model
        device = self.info.device
        return torch.nn.parallel.DistributedDataParallel(
            self.model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # a learned opacity head is unused when the render loss is off
            find_unused_parameters=self.cfg.model.learned_opacity and not self.cfg.loss.render,
        )

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def forward_backward(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, float], bool]:
        """Forward, loss and (if every term is finite on every rank) backward of one batch.

        Returns:
            ``(terms, extras, ok)``: detached loss terms, log extras, and whether the
            gradients were computed (False: a non-finite term, the step must be skipped).

        Raises:
            NonFiniteLossError: a non-finite term with ``loss.nonfinite: raise``.
        """
        batch = move_batch(batch, self.info.device)
        with self._autocast():
            outputs = run_model(self.ddp_model, batch)
        with torch.autocast(self.info.device.type, enabled=False):
            terms, extras = self.loss_fn(outputs, batch)
        bad = [k for k, v in terms.items() if not bool(torch.isfinite(v.detach()))]
        if self.info.distributed:
            any_bad = int(all_reduce_sum(torch.tensor([float(bool(bad))], device=self.info.device)).item()) > 0
        else:
            any_bad = bool(bad)
        detached = {k: v.detach() for k, v in terms.items()}
        if any_bad:
            self._nonfinite(
                f"non-finite loss term(s) {bad if bad else '(on another rank)'} "
                f"{ {k: float(v) for k, v in detached.items()} } at step {self.step} "
                f"(epoch {self.epoch}, samples {batch.get('token')}, rank {self.info.rank})"
            )
            return detached, extras, False
        total = sum(terms.values())
        self.scaler.scale(total).backward()
        return detached, extras, True

    def _nonfinite(self, message: str) -> None:
        """Apply ``loss.nonfinite`` to a fault of the current step: raise, or warn and count
        the step as skipped (the caller then leaves the parameters untouched)."""
        if self.cfg.loss.nonfinite == "raise":
            raise NonFiniteLossError(message)
        warnings.warn(message + "; optimiser step skipped", RuntimeWarning, stacklevel=3)
        self.skipped_steps += 1

    def _clip_gradients(self) -> tuple[float, list[str]]:
        """Global L2 norm of the gradients, clipped to ``optim.grad_clip`` when finite.

        Returns:
            ``(norm before clipping, names of the parameters whose gradient norm is NaN/inf)``.
            Unlike ``clip_grad_norm_``, a non-finite norm leaves the gradients as they are
            (not all scaled by NaN), so the faulty parameters can be named.
        """
        named = [(n, p.grad) for n, p in _unwrap(self.model).named_parameters() if p.grad is not None]
        if not named:
            return 0.0, []
        grads = [g for _, g in named]
        norms = torch._foreach_norm(grads, 2.0)  # one fused kernel per device and dtype
        device = grads[0].device
        total = float(torch.linalg.vector_norm(torch.stack([n.float().to(device) for n in norms])))
        if not math.isfinite(total):
            return total, [name for (name, _), n in zip(named, norms) if not bool(torch.isfinite(n))]
        max_norm = self.cfg.optim.grad_clip
        if max_norm is not None and total > max_norm:
            torch._foreach_mul_(grads, max_norm / (total + 1e-6))
        return total, []

    def _nonfinite_names(self) -> list[str]:
        """Names of the parameters holding a NaN or inf.

        One fused max-abs norm over all parameters decides (a single host sync per call);
        the per-parameter search runs only when something is wrong.
        """
        named = [(n, p) for n, p in _unwrap(self.model).named_parameters()]
        if not named:
            return []
        norms = torch._foreach_norm([t.detach() for _, t in named], float("inf"))
        # the max-abs norm is NaN or inf exactly when the tensor holds a NaN or an inf
        if bool(torch.isfinite(torch.stack([n.float().to(norms[0].device) for n in norms])).all()):
            return []
        return [n for n, t in named if not bool(torch.isfinite(t.detach()).all())]

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step; returns the logged values (terms, total, lr, grad norm)."""
        self.ddp_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms, extras, ok = self.forward_backward(batch)
        record: dict[str, float] = {k: float(v) for k, v in terms.items()}
        record["loss"] = float(sum(terms.values()))
        record.update(extras)
        grad_norm = float("nan")
        if ok:
            self.scaler.unscale_(self.optimizer)
            grad_norm, bad_grads = self._clip_gradients()
            if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
                # gradients are already summed over ranks, so every rank takes this branch
                # (with fp16 the gradient scaler skips such steps itself)
                self._nonfinite(
                    f"non-finite gradient norm {grad_norm} at step {self.step} "
                    f"(epoch {self.epoch}, samples {batch.get('token')}"
                    + (f", non-finite gradients of {bad_grads[:5]}" if bad_grads else "")
                    + ")"
                )
                self.optimizer.zero_grad(set_to_none=True)
                ok = False
        if ok:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            bad = self._nonfinite_names()
            if bad:
                # always fatal: the update is applied and the optimiser state is spoilt, so no
                # policy can skip it (parameters are identical on every rank under DDP)
                raise NonFiniteLossError(
                    f"non-finite parameter(s) {bad[:5]}{' ...' if len(bad) > 5 else ''} after the "
                    f"optimiser step at step {self.step} (epoch {self.epoch}, samples {batch.get('token')}, "
                    f"loss {record['loss']:.6g}, grad norm {grad_norm:.6g}, lr "
                    f"{self.optimizer.param_groups[0]['lr']:.3g})"
                )
        record["grad_norm"] = grad_norm
        record["skipped"] = float(not ok)
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        # the schedule advances per iteration even on a skipped step, so that the step
        # counter and the learning rate never disagree
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        self.step += 1
        self.step_in_epoch += 1
        return record

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        rng = {"global": rng_state(), "render": self.render_generator.get_state()}
        return {
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "skipped_steps": self.skipped_steps,
            "world_size": self.info.world_size,
            "rng": _gather_objects(rng, self.info),  # one entry per rank
            "config": config_to_dict(self.cfg),
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write an atomic checkpoint (default ``run_dir/last.pt``); collective under DDP."""
        path = Path(path) if path is not None else self.run_dir / "last.pt"
        state = self.state_dict()  # every rank joins the RNG gather
        if self.info.is_main:
            save_atomic(state, path)
        if self.info.distributed:
            dist.barrier()
        return path

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` for an exact resume.

        Raises:
            FileNotFoundError, DataFileError: see :func:`load_checkpoint`; a checkpoint whose
                entries do not fit this run (missing entry, other model, bad RNG state) is a
                DataFileError naming ``path`` and the entry.
        """
        state = load_checkpoint(path, map_location=self.info.device)
        entry = "model"
        try:
            _unwrap(self.model).load_state_dict(state["model"])
            entry = "optimizer"
            self.optimizer.load_state_dict(state["optimizer"])
            entry = "scheduler"
            self.scheduler.load_state_dict(state["scheduler"])
            entry = "scaler"
            self.scaler.load_state_dict(state["scaler"])
            entry = "counters"
            self.step = int(state["step"])
            self.epoch = int(state["epoch"])
            self.step_in_epoch = int(state["step_in_epoch"])
            self.skipped_steps = int(state.get("skipped_steps", 0))
            entry = "rng"
            rngs = state["rng"]
            if len(rngs) == self.info.world_size:
                rng = rngs[self.info.rank]
                restore_rng_state(rng["global"])
                self.render_generator.set_state(rng["render"])
            else:
                warnings.warn(
                    f"checkpoint {path} was written by {len(rngs)} process(es), this run has "
                    f"{self.info.world_size}: RNG states are not restored (resume is not bit-exact)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
            raise DataFileError(
                f"{path}: checkpoint entry {entry!r} does not fit this run ({type(err).__name__}: {err})", path
            ) from err

    # ------------------------------------------------------------------ loops
    def _loader(self) -> torch.utils.data.DataLoader:
        workers = self.cfg.data.num_workers
        return torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.cfg.train.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=self.collate,
            pin_memory=self.info.device.type == "cuda",
            drop_last=False,
            # its own generator: creating the iterator must not draw from the global RNG,
            # or a resumed run would diverge from the uninterrupted one
            generator=torch.Generator().manual_seed(epoch_seed(self.cfg.train.seed, self.epoch)),
        )

    def fit(self, resume: str | Path | None = None) -> dict[str, Any]:
        """Train until ``train.epochs`` (or ``train.max_steps``); returns the last metrics.

        Starting (or resuming) removes the temporaries a killed run left in the run
        directory; resuming drops the log records after the checkpoint's step, which the
        resumed run writes again.

        Raises:
            ResumeError: ``resume`` cannot be read or restored (message names the path).
            NonFiniteLossError: a NaN/inf loss term or gradient norm (``loss.nonfinite:
                raise``), or a NaN/inf parameter; the error is also logged (kind ``error``).
        """
        if self.info.is_main:
            remove_stale_temporaries(self.run_dir, _RUN_FILES)
        if resume is not None:
            try:
                self.load(resume)
            except FileNotFoundError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure to restore is named by path
                raise ResumeError(f"cannot resume from {resume}: {type(err).__name__}: {err}") from err
            self.logger.truncate(self.step)
        bad = self._nonfinite_names()
        if bad:
            where = f"restored from {resume}" if resume is not None else "before training"
            raise NonFiniteLossError(f"non-finite parameter(s) {bad[:5]} {where} (step {self.step})")
        try:
            return self._fit()
        except NonFiniteLossError as err:
            self.logger.log("error", self.step, error=str(err))
            raise
        finally:
            self.logger.close()

    def _next_epoch_if_done(self) -> bool:
        """Move the counters to the next epoch when this one's steps are all taken; return
        whether they moved."""
        if self.step_in_epoch < self.steps_per_epoch:
            return False
        self.epoch += 1
        self.step_in_epoch = 0
        return True

    def _fit(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        cfg = self.cfg.train
        last_val: dict[str, Any] = {}
        while self.epoch < cfg.epochs and self.step < self.total_steps:
            if self._next_epoch_if_done():  # resumed at the end of an epoch
                continue
            self.sampler.set_epoch(self.epoch, skip=self.step_in_epoch * cfg.batch_size)
            self.train_set.set_epoch(self.epoch)
            bar = tqdm(
                total=self.steps_per_epoch,
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch}",
                disable=not (self.info.is_main and self.progress),
                dynamic_ncols=True,
            )
            tic, samples = time.perf_counter(), 0
            for batch in self._loader():
                record = self.train_step(batch)
                samples += len(batch["labels"]) * self.info.world_size
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.2e}")
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    elapsed = time.perf_counter() - tic
                    record["samples_per_s"] = samples / elapsed if elapsed > 0 else float("nan")
                    record["epoch"] = self.epoch
                    self.logger.log("train", self.step, **record)
                    tic, samples = time.perf_counter(), 0
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
                if self.step >= self.total_steps:
                    break
            bar.close()
            epoch_done = self._next_epoch_if_done()
            if self.step % cfg.checkpoint_every != 0:
                self.save()
            finished = self.step >= self.total_steps or self.epoch >= cfg.epochs
            if (
                self.val_set is not None
                and cfg.val_every_epochs
                and ((epoch_done and self.epoch % cfg.val_every_epochs == 0) or finished)
            ):
                last_val = self.evaluate()
                self.logger.log("val", self.step, epoch=self.epoch, **last_val)
        return {"step": self.step, "epoch": self.epoch, "skipped_steps": self.skipped_steps, **last_val}

    @torch.no_grad()
    def evaluate(self, dataset: torch.utils.data.Dataset | None = None) -> dict[str, float]:
        """mIoU / IoU (:class:`~gaussrender.metrics.OccupancyMetrics`), RayIoU and the
        rendered-view metrics on the validation set, sharded over ranks without padding;
        metric states are summed.

        RayIoU needs ``origins`` in the samples. The rendered-view metrics
        (:class:`~gaussrender.metrics.RenderedViewMetrics`: ``image_iou``, ``image_miou``,
        ``depth_l1``, ``bev_iou``, ``bev_miou``, ``bev_depth_l1``) render every camera of the
        sample, and the BEV, with the render loss's cameras (:meth:`TrainingLoss.render_cameras`:
        native size and uncropped K) scaled by ``train.val_render_scale``; they are off by
        default (0), as they cost more than the rest of the validation on a CPU; the paper
        configs set 1.
        """
        from ..metrics import OccupancyMetrics, RayIoU, RenderedViewMetrics

        dataset = self.val_set if dataset is None else dataset
        if dataset is None:
            raise ValueError("evaluate() needs a validation dataset")
        device = self.info.device
        occ = OccupancyMetrics(self.grid, convention=self.metric_convention).to(device)
        ray = RayIoU(self.grid).to(device)
        render_scale = self.cfg.train.val_render_scale
        rendered = None
        if render_scale > 0:
            # the BEV the render loss is configured with (the release's 400 px by default)
            bev_size = int(self.cfg.loss.render_kwargs.get("bev_size", 400))
            rendered = RenderedViewMetrics(self.grid, image_scale=render_scale, bev_size=bev_size).to(device)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=1,
            sampler=ShardSampler(_dataset_len(dataset, "dataset"), self.info.rank, self.info.world_size),
            num_workers=self.cfg.data.num_workers,
            collate_fn=self.collate,
            generator=torch.Generator().manual_seed(0),  # leave the global RNG untouched
        )
        self.model.eval()
        rays_seen = views_seen = 0
        for batch in loader:
            batch = move_batch(batch, device)
            with self._autocast():
                outputs = run_model(self.model, batch)
            pred = outputs["logits"].float().argmax(dim=1)
            mask = batch.get("mask_camera") if self.cfg.train.val_mask_camera else None
            occ.update(pred, batch["labels"], None if mask is None else mask.bool())
            if "origins" in batch:  # RayIoU needs the LiDAR origins (nuScenes readers)
                ray.update(pred, batch["labels"], batch["origins"])
                rays_seen += 1
            if rendered is not None and batch["intrinsics"].shape[1] > 0:
                # the cameras the render loss uses: native size and uncropped K when the
                # samples carry them, the network's input otherwise
                ks, size = self.loss_fn.render_cameras(batch)
                rendered.update(pred, batch["labels"], ks, batch["cam_from_grid"], size)
                views_seen += 1
        self.model.train()
        out = {k: v for k, v in occ.compute().items() if v.dim() == 0}
        # every rank must join RayIoU's sync, so decide together whether any rank has rays
        if all_reduce_sum(torch.tensor([float(rays_seen)], device=device)).item() > 0:
            out.update({k: v for k, v in ray.compute().items() if v.dim() == 0})
        if rendered is not None and all_reduce_sum(torch.tensor([float(views_seen)], device=device)).item() > 0:
            out.update({k: v for k, v in rendered.compute().items() if v.dim() == 0})
        return {k: float(v) for k, v in out.items()}
