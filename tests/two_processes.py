"""Two worker processes for the gloo tests, forked from one fork server per test process.

A ``spawn`` child starts a fresh interpreter and imports torch and gaussrender again (about
3 s of CPU each, two per test). The fork server imports them once, on its first use; each
worker is then forked from it. Forking the server, not the test process, keeps the workers
free of whatever threads and locks the test process holds.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp

# what the fork server imports before it forks the first worker (the workers' own test
# module, and anything it imports beyond these, is imported in each worker)
multiprocessing.set_forkserver_preload(["torch", "gaussrender", "torch.distributed"])


def run_two(worker: Callable[..., None], args: tuple[Any, ...]) -> None:
    """``worker(rank, *args)`` for ranks 0 and 1 in two processes; raises if either fails."""
    mp.start_processes(worker, args=args, nprocs=2, join=True, start_method="forkserver")
