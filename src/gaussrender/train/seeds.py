"""The seeds of a training run's random streams, all derived from ``train.seed``, and the
seeding of a process (:func:`seed_everything`).

Each stream multiplies the seed by its own prime stride before adding the rank, epoch or
sample index, so that no two streams start from the same state. Changing a value here
changes every run's draws: the determinism tests pin them.
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "EPOCH_SEED_STRIDE",
    "RENDER_SEED_STRIDE",
    "INIT_SEED_STRIDE",
    "epoch_seed",
    "sample_seed",
    "init_seed_of",
    "seed_everything",
]

#: per-epoch streams: ``seed * EPOCH_SEED_STRIDE + epoch`` seeds the training sampler's
#: shuffle and the data loader's own generator; an augmented sample adds its index the same
#: way (:func:`sample_seed`)
EPOCH_SEED_STRIDE = 1_000_003
#: GaussRender's camera draws: ``train.seed * RENDER_SEED_STRIDE + rank``
RENDER_SEED_STRIDE = 7919
#: default weight initialisation: ``(train.seed * INIT_SEED_STRIDE + 1) mod 2**32``
#: (``model.init_seed`` replaces it)
INIT_SEED_STRIDE = 104_729


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of an epoch's stream: ``seed * EPOCH_SEED_STRIDE + epoch``."""
    return seed * EPOCH_SEED_STRIDE + epoch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of sample ``index`` in ``epoch`` (augmentation): ``epoch_seed(epoch_seed(seed, epoch), index)``."""
    return epoch_seed(epoch_seed(seed, epoch), index)


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
