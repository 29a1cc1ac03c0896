"""The learning-rate schedule against a float64 re-derivation of the release's: timm's
CosineLRScheduler (as built in the release's train.py, lines 95-102) driven by its training
loop, which calls ``scheduler.step_update(global_iter)`` after each optimiser step."""

from __future__ import annotations

import math

import pytest
import torch

from gaussrender.train.schedule import build_optimizer, release_lr, timm_cosine_lr


class _TimmCosine:
    """timm's CosineLRScheduler (t_in_epochs=False, one cycle, no noise), re-derived from its source."""

    def __init__(self, groups, t_initial, lr_min, warmup_t, warmup_lr_init):
        self.groups, self.base = groups, [g["lr"] for g in groups]
        self.t_initial, self.lr_min, self.warmup_t, self.init = t_initial, lr_min, warmup_t, warmup_lr_init
        if warmup_t:
            self.steps = [(v - warmup_lr_init) / warmup_t for v in self.base]
            for g in groups:  # update_groups(scalar): every group gets the same starting rate
                g["lr"] = warmup_lr_init

    def _get_lr(self, t):
        if t < self.warmup_t:
            return [self.init + t * s for s in self.steps]
        i, t_curr = t // self.t_initial, t - self.t_initial * (t // self.t_initial)
        if i < 1:
            return [
                self.lr_min + 0.5 * (v - self.lr_min) * (1 + math.cos(math.pi * t_curr / self.t_initial))
                for v in self.base
            ]
        return [self.lr_min for _ in self.base]

    def step_update(self, num_updates):
        for g, v in zip(self.groups, self._get_lr(num_updates)):
            g["lr"] = v


def _release_rates(lr, mult, total, warmup, ratio, min_lr, steps):
    """Per optimiser step, the (head, backbone) rates the release's loop trains with."""
    groups = [{"lr": lr}, {"lr": lr * mult}]
    sched = _TimmCosine(groups, total, min_lr, warmup, lr * ratio)
    rates = []
    for global_iter in range(steps):
        rates.append((groups[0]["lr"], groups[1]["lr"]))  # optimizer.step() runs at these
        sched.step_update(global_iter)
    return rates


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head, self.backbone = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    def backbone_parameters(self):
        return self.backbone.parameters()


@pytest.mark.parametrize("warmup", [5, 0])
def test_build_optimizer_trains_at_the_release_rates(warmup):
    from tests.train.helpers import tiny_config

    lr, mult, total, ratio, min_lr = 2e-4, 0.1, 20, 1 / 3, 2e-7
    cfg = tiny_config(optim={"lr": lr, "backbone_lr_mult": mult, "warmup_iters": warmup, "min_lr": min_lr})
    assert cfg.optim.warmup_ratio == pytest.approx(ratio)
    optimizer, scheduler = build_optimizer(_Model(), cfg, total)
    want = _release_rates(lr, mult, total, warmup, ratio, min_lr, total + 3)
    for step, (head, backbone) in enumerate(want):
        got = [g["lr"] for g in optimizer.param_groups]
        assert got[0] == pytest.approx(head, rel=1e-12, abs=0), step
        assert got[1] == pytest.approx(backbone, rel=1e-12, abs=0), step
        optimizer.step()
        scheduler.step()
    if warmup:
        # the release's details: two steps at lr/3, the backbone warming *down* from lr/3 to
        # lr x 0.1, and one floor for both groups
        assert want[0] == want[1] == (pytest.approx(lr / 3), pytest.approx(lr / 3))
        assert want[warmup + 1][1] == pytest.approx(
            lr * mult * 0.5 * (1 + math.cos(math.pi * warmup / total)), rel=1e-2
        )
        assert want[1][1] > want[warmup][1] > lr * mult
    else:
        assert want[0] == want[1] == (pytest.approx(lr), pytest.approx(lr * mult))
    assert want[total + 1] == (min_lr, min_lr)


@pytest.mark.parametrize("t", [0, 1, 250, 499, 500, 501, 5000, 9999, 10000, 12000])
def test_timm_rate_closed_form(t):
    base, init, floor, total, warmup = 2e-4, 2e-4 / 3, 2e-7, 10000, 500
    if t < warmup:
        want = init + t * (base - init) / warmup
    elif t < total:
        want = floor + (base - floor) * (1 + math.cos(math.pi * t / total)) / 2
    else:
        want = floor
    assert timm_cosine_lr(t, base, total, warmup, init, floor) == pytest.approx(want, rel=1e-12)
    assert release_lr(t + 1, base, total, warmup, init, floor) == pytest.approx(want, rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        release_lr(0, 1.0, 0, 0, 1.0, 0.0)
    with pytest.raises(ValueError, match="step"):
        release_lr(-1, 1.0, 10, 0, 1.0, 0.0)
