"""Whole runs: :func:`train` a config into a run directory, :func:`predict` with a checkpoint."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write
from .batches import _dataset_len, move_batch, run_model
from .builders import build_dataset, build_model_from_config, grid_of, prepare_synthetic
from .checkpoint import load_checkpoint, load_model_state
from .config import Config, ConfigError
from .distributed import DistInfo, ShardSampler, init_distributed, shutdown_distributed
from .loop import Trainer
from .seeds import init_seed_of
from .training_loss import class_weights_for

__all__ = ["train", "predict", "build_initial_model", "parameter_checksum", "metric_convention_of"]


def build_initial_model(cfg: Config) -> torch.nn.Module:
    """The model of ``cfg`` with its weights drawn from :func:`~gaussrender.train.seeds.init_seed_of`
    (``model.init_seed``, or derived from ``train.seed``).

    The draw happens in a forked RNG, so it neither depends on nor changes the global torch
    state; every call with the same ``cfg.model`` / ``cfg.data`` and seed gives the same
    weights. Optional modules are built last (the learned-opacity head), so a model with
    ``model.learned_opacity: true`` shares all its other weights with one without.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed_of(cfg))
        return build_model_from_config(cfg)


def parameter_checksum(model: torch.nn.Module, exclude: tuple[str, ...] = ()) -> str:
    """SHA-256 (hex) of the names, shapes, dtypes and bytes of ``model``'s parameters and
    buffers (state dict order); entries whose name starts with one of ``exclude`` are left out.
    Two models hash alike exactly when their weights are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if name.startswith(exclude):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{list(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def metric_convention_of(cfg: Config) -> Any:
    """IoU averaging rule of the run's validation: None (the grid preset's own, from
    :data:`gaussrender.metrics.CONVENTIONS`) for the benchmark grids, else the convention of
    the benchmark whose format the data is in (synthetic grids: Occ3D's)."""
    from ..metrics import CONVENTIONS

    grid = grid_of(cfg)
    return None if grid.name in CONVENTIONS else CONVENTIONS[cfg.data.format]


def train(cfg: Config, run_dir: str | Path, resume: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (single process or under ``torchrun``).

    Writes ``run_dir/config.yaml`` (resolved), ``log.jsonl``, ``last.pt``; with
    ``data.synthetic`` set, first writes the synthetic dataset into ``data.root``.

    The model's weights come from :func:`build_initial_model` (seeded by ``model.init_seed``
    or ``train.seed``); the trainer then seeds dropout, data order, augmentation and camera
    draws from ``train.seed`` (:class:`Trainer`). Two runs of one config on the CPU give
    bit-identical losses.

    Returns:
        The final step/epoch, the last validation metrics and ``init_checksum``
        (:func:`parameter_checksum` of the initial weights).

    Raises:
        ConfigError: ``train.device`` is not usable here, the training split is empty, the run
            directory is a file (or under one), or another ``train`` holds its lock
            (``RUN/.train.lock``).
        ResumeError: ``resume`` cannot be read or restored (names the path).
        NonFiniteLossError: the run stopped on a NaN/inf loss, gradient or parameter.
    """
    try:
        info = init_distributed(cfg.train.device)
    except ValueError as err:  # e.g. train.device='cuda' without CUDA
        raise ConfigError(str(err), "train.device") from None
    run_dir = Path(run_dir)
    try:
        check_run_dir(run_dir)
        with contextlib.ExitStack() as stack:
            if info.is_main:  # one process per job writes the run directory
                stack.enter_context(run_dir_lock(run_dir))
            return _train(cfg, run_dir, resume, progress, info)
    finally:
        shutdown_distributed()


#: The lock file a training run holds in its run directory (``flock``: released when the
#: process ends, however it ends).
LOCK_FILE = ".train.lock"


def check_run_dir(run_dir: Path) -> None:
    """Refuse, naming it, a run directory that is a file, or whose nearest existing ancestor
    is one (it could never be created), or where one of the files a run writes is a
    directory, FIFO or device."""
    for path in (run_dir, *run_dir.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                what = "is a file" if path == run_dir else f"is under {path}, which is a file"
                raise ConfigError(f"--run-dir {run_dir} {what}; expected a directory (or a path to create one)")
            break
    from .loop import RUN_FILES

    for name in (*RUN_FILES, LOCK_FILE):  # the files a run writes must be files (or absent)
        path = run_dir / name
        if not path.is_symlink() and path.exists() and not path.is_file():
            raise ConfigError(f"--run-dir {run_dir}: {path} is not a regular file; a run writes its {name} there")


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.train.lock`` (an exclusive ``flock``) for the duration of a run, so a
    second ``train`` into the same run directory is refused by name instead of interleaving
    checkpoints and logs with the first.

    Raises:
        ConfigError: another process holds the lock (the message gives its pid when known).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as err:
        raise ConfigError(f"--run-dir {run_dir}: cannot create its lock file ({err.strerror or err})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            raise ConfigError(
                f"--run-dir {run_dir} is in use by another gaussrender train"
                f"{f' (pid {holder})' if holder.isdigit() else ''} (lock {run_dir / LOCK_FILE}); wait for it to "
                "finish or choose another run directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _train(cfg: Config, run_dir: Path, resume: str | Path | None, progress: bool, info: DistInfo) -> dict[str, Any]:
    """The body of :func:`train`, run under the run directory's lock."""
    prepare_synthetic(cfg.data, info.is_main)
    grid = grid_of(cfg)
    train_set = build_dataset(cfg.data, "train")
    if _dataset_len(train_set, "train_set") == 0:
        where = (
            cfg.data.root if cfg.data.synthetic is not None or cfg.data.format == "kitti360" else cfg.data.train_infos
        )
        raise ConfigError(f"data: the training split ({where}) has no samples", "data")
    # count classes once, from labels only (no images), for every rank together
    weights = None
    if cfg.loss.class_weights is None and cfg.loss.class_weighting != "none" and cfg.loss.voxel_losses:
        labels_only = build_dataset(cfg.data, "train", load_images=False)
        weights = class_weights_for(cfg, grid, labels_only, info, run_dir / "class_counts.json")
    val_set = build_dataset(cfg.data, "val") if cfg.train.val_every_epochs else None
    model = build_initial_model(cfg)
    init_checksum = parameter_checksum(model)
    trainer = Trainer(
        cfg,
        run_dir,
        model,
        train_set,
        val_set,
        grid=grid,
        info=info,
        progress=progress,
        class_weights=weights,
        metric_convention=metric_convention_of(cfg),
    )
    return {**trainer.fit(resume=resume), "init_checksum": init_checksum}


@torch.no_grad()
def predict(
    cfg: Config,
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    root: str | None = None,
    infos: str | None = None,
    split: str = "val",
    info: DistInfo | None = None,
    probabilities: bool = False,
) -> list[Path]:
    """Write ``<out_dir>/<token>.npz`` (key ``semantics``, uint8 ``[X, Y, Z]``) per sample.

    With ``probabilities`` each file also holds ``probabilities``, float16 ``[C, X, Y, Z]``
    (``softmax`` of the logits; compressed), from which ``gaussrender eval --render-metrics``
    scores the rendered views with the release's rule.

    Args:
        cfg: the run's config (``RUN/config.yaml``).
        checkpoint: a checkpoint of that run (``model`` weights are used).
        out_dir: output directory.
        root: dataset root replacing ``cfg.data.root``.
        infos: info file replacing the split's (nuScenes formats).
        split: which split of the config's data to predict.
        info: process placement (default from the ``torchrun`` environment); samples are
            sharded over ranks without overlap.
        probabilities: also write the class probabilities (float16).

    Returns:
        The files this process wrote.
    """
    info = info if info is not None else init_distributed(cfg.train.device)
    grid = grid_of(cfg)
    dataset = build_dataset(cfg.data, split, root=root, infos=infos)
    model = build_model_from_config(cfg)
    # the checks of train --resume: size relative to this model before loading, then the
    # 'model' entry's names and shapes
    state = load_checkpoint(checkpoint, map_location="cpu", model=model)
    load_model_state(model, state, checkpoint)
    model.to(info.device).eval()
    from ..data import collate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=1,
        sampler=ShardSampler(_dataset_len(dataset, "dataset"), info.rank, info.world_size),
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
    )
    written = []
    for batch in loader:
        batch = move_batch(batch, info.device)
        logits = run_model(model, batch)["logits"]
        labels = logits.float().argmax(dim=1).to(torch.uint8).cpu().numpy()
        probs = logits.float().softmax(dim=1).to(torch.float16).cpu().numpy() if probabilities else None
        for i, (token, sem) in enumerate(zip(batch["token"], labels)):
            if sem.shape != tuple(grid.shape):
                raise ValueError(f"model output grid {sem.shape} differs from the config's grid {grid.shape}")
            path = out_dir / f"{token}.npz"  # KITTI-360 tokens are <seq>/<frame>
            arrays = {"semantics": sem} if probs is None else {"semantics": sem, "probabilities": probs[i]}
            atomic_write(path, functools.partial(np.savez_compressed, **arrays))
            written.append(path)
    return written
