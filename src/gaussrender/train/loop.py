"""The training loop: one process or ``torchrun`` DDP, AMP, clipping, checkpoints, logs.

:class:`Trainer` owns the model, optimiser, schedule, losses and data loaders of one run
directory; :meth:`Trainer.fit` trains, validates and checkpoints; :func:`train` builds
everything from a :class:`~gaussrender.train.config.Config`.

Loss (docs/method.md#loss): ``L = loss_ce + loss_lovasz [+ loss_sem_scal + loss_geo_scal + loss_frustum]
[+ loss_render]`` (MonoScene's terms only with a weight > 0) where the 3D terms come from
:class:`gaussrender.losses.occupancy.Occupancy3DLoss` and ``loss_render`` is the weighted total of
:class:`gaussrender.GaussRenderLoss` (only with ``loss.render: true``; with
``loss.targets_2d`` it also compares with the batch's 2D targets, and with
``loss.voxel_losses: false`` it is the only term: see
:class:`~gaussrender.train.training_loss.TrainingLoss`). Every term is
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
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .._io import remove_stale_temporaries
from ..data.files import DataFileError
from ..geometry.grid import VoxelGrid, get_grid
from .augment import AugmentedDataset
from .batches import _dataset_len, _unwrap, move_batch, run_model
from .checkpoint import checkpoint_counter, load_checkpoint, load_model_state, restore_rng_state, rng_state, save_atomic
from .config import Config, config_to_dict, save_config
from .distributed import DistInfo, TrainSampler, all_reduce_sum, gather_objects, init_distributed
from .nonfinite import NonFiniteLossError, clip_gradients, nonfinite_parameters
from .runlog import RunLogger
from .schedule import build_optimizer
from .seeds import RENDER_SEED_STRIDE, epoch_seed, init_seed_of, seed_everything
from .training_loss import TrainingLoss, class_weights_for, count_classes
from .validation import validate

# the names below were all defined here once; they stay importable from this module
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


class ResumeError(ValueError):
    """The checkpoint to resume from cannot be read or restored; the message names its path."""


# the files a run directory receives through atomic writes (their stale temporaries are
# removed when a run starts)
RUN_FILES = ("last.pt", "config.yaml", "class_counts.json", "log.jsonl")


def _default_collate() -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """The batch function of the data loaders when the caller gives none: :func:`gaussrender.data.collate`."""
    from ..data import collate

    return collate


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
        """AdamW and its schedule (:func:`~gaussrender.train.schedule.build_optimizer`)."""
        # the cosine decays over the steps the run takes: a run cut short by max_steps ends at min_lr
        self.optimizer, self.scheduler = build_optimizer(self.model, self.cfg, self.total_steps)

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
            # a learned opacity head is unused when the render loss is off, the auxiliary
            # (coarser-scale) heads when the 3D voxel losses are
            find_unused_parameters=(self.cfg.model.learned_opacity and not self.cfg.loss.render)
            or not self.cfg.loss.voxel_losses,
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
            grad_norm, bad_grads = clip_gradients(_unwrap(self.model), self.cfg.optim.grad_clip)
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
            bad = nonfinite_parameters(_unwrap(self.model))
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
            "rng": gather_objects(rng, self.info),  # one entry per rank
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
        state = load_checkpoint(path, map_location=self.info.device, model=_unwrap(self.model))
        load_model_state(_unwrap(self.model), state, path)  # the same checks as predict's
        entry = "optimizer"
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            entry = "scheduler"
            self.scheduler.load_state_dict(state["scheduler"])
            entry = "scaler"
            self.scaler.load_state_dict(state["scaler"])
            entry = "counters"
            self.step = checkpoint_counter(state, "step")
            self.epoch = checkpoint_counter(state, "epoch")
            self.step_in_epoch = checkpoint_counter(state, "step_in_epoch")
            self.skipped_steps = checkpoint_counter(state, "skipped_steps", 0)
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
                f"{path}: checkpoint entry {entry!r} does not fit this run ({type(err).__name__}: {str(err)[:300]})",
                path,
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
            remove_stale_temporaries(self.run_dir, RUN_FILES)
        if resume is not None:
            try:
                self.load(resume)
            except FileNotFoundError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure to restore is named by path
                raise ResumeError(f"cannot resume from {resume}: {type(err).__name__}: {err}") from err
            self.logger.truncate(self.step)
        bad = nonfinite_parameters(_unwrap(self.model))
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
        """The epochs left to run: each trains, checkpoints and (when due) validates."""
        cfg = self.cfg.train
        last_val: dict[str, Any] = {}
        while self.epoch < cfg.epochs and self.step < self.total_steps:
            if self._next_epoch_if_done():  # resumed at the end of an epoch
                continue
            self._train_epoch()
            epoch_done = self._next_epoch_if_done()
            if self.step % cfg.checkpoint_every != 0:  # else saved by the last step already
                self.save()
            if self._validation_due(epoch_done):
                last_val = self.evaluate()
                self.logger.log("val", self.step, epoch=self.epoch, **last_val)
        return {"step": self.step, "epoch": self.epoch, "skipped_steps": self.skipped_steps, **last_val}

    def _train_epoch(self) -> None:
        """The rest of the current epoch's steps (or up to ``train.max_steps``), with the
        progress bar, the ``train`` log records and the periodic checkpoints."""
        from tqdm.auto import tqdm

        cfg = self.cfg.train
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

    def _validation_due(self, epoch_done: bool) -> bool:
        """Whether to validate now: every ``train.val_every_epochs`` completed epochs, and
        once at the end of the run (never without a validation set or with 0)."""
        cfg = self.cfg.train
        if self.val_set is None or not cfg.val_every_epochs:
            return False
        finished = self.step >= self.total_steps or self.epoch >= cfg.epochs
        return (epoch_done and self.epoch % cfg.val_every_epochs == 0) or finished

    @torch.no_grad()
    def evaluate(self, dataset: torch.utils.data.Dataset | None = None) -> dict[str, float]:
        """Validation metrics of the model on ``dataset`` (default: the run's validation set):
        mIoU / IoU, RayIoU (samples with ``origins``) and, with ``train.val_render_scale >
        0``, the rendered-view metrics with the render loss's cameras
        (:meth:`TrainingLoss.render_cameras`); see :func:`gaussrender.train.validation.validate`."""
        dataset = self.val_set if dataset is None else dataset
        if dataset is None:
            raise ValueError("evaluate() needs a validation dataset")
        return validate(
            self.model,
            dataset,
            cfg=self.cfg,
            grid=self.grid,
            info=self.info,
            collate=self.collate,
            render_cameras=self.loss_fn.render_cameras,
            metric_convention=self.metric_convention,
            autocast=self._autocast,
        )
