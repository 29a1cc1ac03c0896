"""The optimiser of a run (AdamW, backbone at a lower rate) and its learning-rate schedule:
linear warm-up, then cosine decay per iteration (docs/method.md#loss)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .config import Config

__all__ = ["warmup_cosine_factor", "param_groups", "build_optimizer"]


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


def param_groups(model: torch.nn.Module, cfg: Config) -> list[dict[str, Any]]:
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


def build_optimizer(
    model: torch.nn.Module, cfg: Config, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`param_groups` and its warm-up + cosine schedule over ``total_steps``."""
    optim = cfg.optim
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=optim.lr, weight_decay=optim.weight_decay)
    min_ratio = optim.min_lr / optim.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(step, total_steps, optim.warmup_iters, optim.warmup_ratio, min_ratio),
    )
    return optimizer, scheduler
