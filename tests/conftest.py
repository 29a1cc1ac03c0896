"""Fixtures shared across the test folders."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Many small renders: one torch thread is faster, much faster on a busy CPU, where extra
    threads only contend. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
