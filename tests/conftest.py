"""Fixtures shared across the test folders."""

from __future__ import annotations

import os

# Child processes the tests start (torchrun, the gloo workers, the CLI) inherit this before they import
# torch. The tests' renders and models are tiny: a second OpenMP thread only contends, and on a
# loaded 2-core machine its spin-waiting made single renders ~30x slower (measured: a 6-view
# synthetic render took 85 s with 2 threads, 2.7 s with 1). A user's own setting is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Every test runs on one torch thread (see OMP_NUM_THREADS above): faster here, and the
    same numbers whatever the machine's core count. Tests that need more set it themselves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
