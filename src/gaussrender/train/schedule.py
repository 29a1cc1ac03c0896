"""Learning-rate schedule: linear warm-up, then cosine decay per iteration (DESIGN §5)."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine_factor"]


def warmup_cosine_factor(
    step: int,
    total_steps: int,
    warmup_iters: int = 500,
    warmup_ratio: float = 1.0 / 3.0,
    min_ratio: float = 1e-3,
) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Cosine from 1 at step 0 to ``min_ratio`` at ``total_steps`` (``min_lr / lr``), per
    iteration; during the first ``warmup_iters`` steps the cosine value is scaled by a factor
    that rises linearly from ``warmup_ratio`` to 1 (the mmcv ``CosineAnnealing`` +
    linear warm-up convention: warm-up from ``lr / 3`` for ``warmup_ratio = 1/3``).

    Args:
        step: optimiser step, ``>= 0``.
        total_steps: steps of the whole run, ``>= 1``.
        warmup_iters: warm-up length in steps.
        warmup_ratio: factor at step 0.
        min_ratio: factor reached at ``total_steps``.
    """
    if total_steps < 1 or step < 0:
        raise ValueError(f"need total_steps >= 1 and step >= 0, got {total_steps}, {step}")
    progress = min(step, total_steps) / total_steps
    cosine = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if step < warmup_iters:
        k = (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)
        return cosine * (1.0 - k)
    return cosine
