"""Warm-up + per-iteration cosine schedule against its closed form."""

from __future__ import annotations

import math

import pytest

from gaussrender.train.schedule import warmup_cosine_factor


def reference(step, total, warmup, ratio, min_ratio):
    cosine = min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * min(step, total) / total)) / 2
    if step >= warmup:
        return cosine
    start = ratio * cosine  # warm-up factor rises linearly from ratio to 1
    return start + (cosine - start) * step / warmup


@pytest.mark.parametrize("step", [0, 1, 250, 499, 500, 501, 5000, 9999, 10000, 12000])
def test_matches_closed_form(step):
    got = warmup_cosine_factor(step, 10000, 500, 1 / 3, 1e-3)
    assert got == pytest.approx(reference(step, 10000, 500, 1 / 3, 1e-3), rel=1e-12)


def test_recipe_endpoints():
    # lr 2e-4: starts at lr/3, ends at the 2e-7 floor, decreases after the warm-up
    lr = 2e-4
    assert lr * warmup_cosine_factor(0, 1000) == pytest.approx(lr / 3)
    assert lr * warmup_cosine_factor(1000, 1000, min_ratio=2e-7 / lr) == pytest.approx(2e-7)
    values = [warmup_cosine_factor(s, 1000) for s in range(500, 1001)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        warmup_cosine_factor(0, 0)
