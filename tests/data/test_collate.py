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
