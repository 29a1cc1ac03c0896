"""The seeds of a training run's random streams, all derived from ``train.seed``.

Each stream multiplies the seed by its own prime stride before adding the rank, epoch or
sample index, so that no two streams start from the same state. Changing a value here
changes every run's draws: the determinism tests pin them.
"""

from __future__ import annotations

__all__ = ["EPOCH_SEED_STRIDE", "RENDER_SEED_STRIDE", "INIT_SEED_STRIDE", "epoch_seed", "sample_seed"]

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
