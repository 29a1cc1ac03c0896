"""collate: stack equal-shaped tensors, keep ragged ones and non-tensors as lists."""

import pytest
import torch

from gaussrender.data import collate


def test_stacks_and_keeps_ragged():
    items = [{"labels": torch.zeros(2, 3), "origins": torch.zeros(k, 3), "token": f"t{k}"} for k in (1, 4)]
    batch = collate(items)
    assert batch["labels"].shape == (2, 2, 3)
    assert [o.shape[0] for o in batch["origins"]] == [1, 4]
    assert batch["token"] == ["t1", "t4"]


def test_rejects_empty_and_mismatched_keys():
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ValueError, match="keys"):
        collate([{"a": 1}, {"b": 1}])


def test_point_sets_stay_lists_even_when_their_sizes_agree():
    items = [{"points": torch.zeros(5, 3), "point_labels": torch.zeros(5, dtype=torch.uint8)} for _ in range(2)]
    batch = collate(items)
    assert isinstance(batch["points"], list) and isinstance(batch["point_labels"], list)
    assert [p.shape for p in batch["points"]] == [(5, 3), (5, 3)]
