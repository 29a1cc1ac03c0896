"""The optimiser of a run (AdamW, backbone at a lower rate) and its learning-rate schedule:
the release's timm ``CosineLRScheduler`` (linear warm-up, then cosine decay per iteration;
docs/method.md#loss), reproduced to the step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .config import Config

__all__ = ["timm_cosine_lr", "release_lr", "param_groups", "build_optimizer"]


def timm_cosine_lr(
    t: int, base_lr: float, total_steps: int, warmup_iters: int, warmup_lr_init: float, lr_min: float
) -> float:
    """timm's ``CosineLRScheduler._get_lr(t)`` for one parameter group, as the release builds it.

    The release's ``train.py`` (lines 95-102) makes ``CosineLRScheduler(optimizer,
    t_initial=len(loader) * max_epochs, lr_min=lr * 1e-3, warmup_t=warmup_iters,
    warmup_lr_init=lr / 3, t_in_epochs=False)`` with timm's defaults otherwise (one cycle,
    ``warmup_prefix=False``, ``k_decay=1``, no noise). So, for a group of base rate ``base_lr``:

    * ``t < warmup_iters``: ``warmup_lr_init + t * (base_lr - warmup_lr_init) / warmup_iters``
      (linear; ``warmup_lr_init`` is one number for every group, so a group whose base rate is
      below it, the backbone at ``lr x 0.1``, warms *down* to its base rate);
    * ``warmup_iters <= t < total_steps``: ``lr_min + (base_lr - lr_min) (1 + cos(pi t /
      total_steps)) / 2`` (the cosine is not shifted by the warm-up: ``warmup_prefix=False``);
    * ``t >= total_steps``: ``lr_min`` (the same floor for every group).
    """
    if t < warmup_iters:
        return warmup_lr_init + t * (base_lr - warmup_lr_init) / warmup_iters
    if t >= total_steps:
        return lr_min
    return lr_min + 0.5 * (base_lr - lr_min) * (1.0 + math.cos(math.pi * t / total_steps))


def release_lr(
    step: int, base_lr: float, total_steps: int, warmup_iters: int, warmup_lr_init: float, lr_min: float
) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of one group in the release's training.

    The release calls ``scheduler.step_update(global_iter)`` *after* step ``global_iter``, so
    step ``s >= 1`` runs at :func:`timm_cosine_lr` ``(s - 1)``; step 0 runs at the rate set
    when the scheduler is built, ``warmup_lr_init`` (``base_lr`` without warm-up), which is
    also ``timm_cosine_lr(0)``. Every step thus lags timm's index by one.

    Args:
        step: optimiser step, ``>= 0``.
        base_lr: the group's base rate (``lr``, or ``lr x backbone_lr_mult``).
        total_steps: steps of the whole run (timm's ``t_initial``), ``>= 1``.
        warmup_iters: warm-up length in steps (timm's ``warmup_t``), ``>= 0``.
        warmup_lr_init: rate at the warm-up's start, the same for every group (``lr / 3``).
        lr_min: the cosine's floor, the same for every group.
    """
    if total_steps < 1 or step < 0:
        raise ValueError(f"need total_steps >= 1 and step >= 0, got {total_steps}, {step}")
    return timm_cosine_lr(max(step - 1, 0), base_lr, total_steps, warmup_iters, warmup_lr_init, lr_min)


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
    """AdamW over :func:`param_groups` and the release's schedule over ``total_steps``
    (:func:`release_lr`: warm-up from ``lr x warmup_ratio`` for every group, then cosine to
    ``min_lr`` for every group)."""
    optim = cfg.optim
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=optim.lr, weight_decay=optim.weight_decay)
    warmup_lr_init = optim.lr * optim.warmup_ratio

    def factor(base: float):  # LambdaLR multiplies each group's base rate by its own factor
        def at(step: int) -> float:
            lr = release_lr(step, base, total_steps, optim.warmup_iters, warmup_lr_init, optim.min_lr)
            return lr / base if base > 0 else 0.0

        return at

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g["lr"]) for g in optimizer.param_groups])
    return optimizer, scheduler
