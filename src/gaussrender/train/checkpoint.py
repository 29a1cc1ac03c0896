"""Atomic checkpoints with everything needed for an exact resume.

A checkpoint holds the model, optimiser, scheduler and gradient-scaler states, the step and
epoch counters, the RNG states of ``random``, NumPy and PyTorch (CPU and CUDA) and the
resolved config. It is written to a temporary file in the destination's directory and moved
into place with :func:`os.replace`, so a crash mid-write leaves the previous checkpoint
intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write

__all__ = ["save_atomic", "load_checkpoint", "rng_state", "restore_rng_state"]


def rng_state() -> dict[str, Any]:
    """The RNG states of python ``random``, NumPy and PyTorch (CPU and every CUDA device)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically and durably (temp file, fsync, rename).

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    atomic_write(path, lambda f: torch.save(obj, f), fsync=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by the trainer.

    Raises:
        FileNotFoundError: naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    # our checkpoints hold RNG states (numpy tuples), which the weights-only loader rejects;
    # only load checkpoints you wrote yourself
    return torch.load(path, map_location=map_location, weights_only=False)
