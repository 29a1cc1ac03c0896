"""Atomic checkpoints with everything needed for an exact resume, loadable without running code.

A checkpoint holds the model, optimiser, scheduler and gradient-scaler states, the step and
epoch counters, the RNG states of ``random``, NumPy and PyTorch (CPU and CUDA) and the
resolved config, all as tensors, numbers, strings, None and plain containers, so that
:func:`load_checkpoint` reads it with ``torch.load(weights_only=True)``: a checkpoint from
elsewhere cannot execute code when loaded (see ``docs/security.md``). It is written to a
temporary file in the destination's directory and moved into place with :func:`os.replace`,
so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write
from ..data.files import DataFileError

__all__ = ["save_atomic", "load_checkpoint", "rng_state", "restore_rng_state"]


def rng_state() -> dict[str, Any]:
    """The RNG states of python ``random``, NumPy and PyTorch (CPU and every CUDA device).

    Every value is a tensor, a number or None (what ``torch.load(weights_only=True)`` reads
    back): python's Mersenne-Twister words and NumPy's key as int64 tensors.
    """
    version, internal, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "name": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`rng_state`.

    Raises:
        ValueError: ``state`` does not have the layout :func:`rng_state` writes.
    """
    try:
        py, npy = state["python"], state["numpy"]
        internal = py["internal"]
        key = npy["key"]
        if not (isinstance(internal, torch.Tensor) and internal.dtype == torch.int64 and internal.ndim == 1):
            raise TypeError("python.internal must be an int64 tensor")
        if not (isinstance(key, torch.Tensor) and key.dtype == torch.int64 and key.shape == (624,)):
            raise TypeError("numpy.key must be an int64 tensor of 624 words")
        gauss_next = py["gauss_next"]
        if gauss_next is not None and not isinstance(gauss_next, float):
            raise TypeError("python.gauss_next must be a float or None")
        random.setstate((int(py["version"]), tuple(int(v) for v in internal.tolist()), gauss_next))
        np.random.set_state(
            (
                str(npy["name"]),
                key.numpy().astype(np.uint32),
                int(npy["pos"]),
                int(npy["has_gauss"]),
                float(npy["cached_gaussian"]),
            )
        )
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError, AttributeError) as err:
        raise ValueError(f"RNG state is not one written by rng_state(): {type(err).__name__}: {err}") from err


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically and durably (temp file, fsync, rename).

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    atomic_write(path, lambda f: torch.save(obj, f), fsync=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by the trainer, with ``torch.load(weights_only=True)``.

    Only tensors, numbers, strings, None and plain containers are accepted, so loading a
    file from an untrusted source cannot run code; checkpoints written before RNG states
    were stored as tensors are refused (by name) for the same reason.

    Raises:
        FileNotFoundError: naming ``path``.
        DataFileError: naming ``path``: unreadable, truncated or corrupt file, a pickle that
            references anything else (e.g. code), or a top level that is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message explains the refused global; keep its first line
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFileError(
            f"{path}: refusing checkpoint content (only tensors, numbers, strings and plain "
            f"containers are loaded): {reason}",
            path,
        ) from err
    except (
        RuntimeError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        OverflowError,
        zipfile.BadZipFile,
        OSError,
        UnicodeDecodeError,
        MemoryError,
    ) as err:
        raise DataFileError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})", path) from err
    if not isinstance(state, dict):
        raise DataFileError(f"{path}: a checkpoint holds a dict, got {type(state).__name__}", path)
    return state
