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

import math
import os
import pickle
import random
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write
from .._untrusted import ArchiveLimitError, brief, zip_inflated_size
from ..data.files import DataFileError

__all__ = [
    "checkpoint_counter",
    "save_atomic",
    "load_checkpoint",
    "check_checkpoint_archive",
    "checkpoint_byte_limit",
    "load_model_state",
    "rng_state",
    "restore_rng_state",
    "MAX_CHECKPOINT_BYTES",
]

#: Most bytes a checkpoint's members may inflate to, whatever the model (16 GiB: a
#: 1-billion-parameter float32 model with its AdamW moments). The real bound is usually
#: :func:`checkpoint_byte_limit`'s, relative to the model the config builds.
MAX_CHECKPOINT_BYTES = 16 << 30
#: ``torch.save`` stores members uncompressed, so their total is about the file's size; a
#: re-compressed archive may inflate somewhat. Beyond this ratio (plus 16 MiB) it is a zip bomb.
MAX_INFLATION = 16
_GIB = float(1 << 30)


def checkpoint_byte_limit(model: torch.nn.Module | None) -> int:
    """Bytes a checkpoint for ``model`` may inflate to: 4 x its parameter and buffer bytes
    (the weights, AdamW's two moments and room to spare) + 64 MiB (RNG states, config,
    scheduler), at most :data:`MAX_CHECKPOINT_BYTES` (that alone without a model)."""
    if model is None:
        return MAX_CHECKPOINT_BYTES
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))
    return min(MAX_CHECKPOINT_BYTES, 4 * weights + (64 << 20))


def check_checkpoint_archive(path: Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> None:
    """Read a checkpoint's zip directory (not its members) and refuse, naming ``path``, an
    archive whose members inflate beyond ``max_bytes``, beyond :data:`MAX_INFLATION` times
    the file's size, or beyond the memory this process has; or whose directory is huge.

    ``torch.load`` allocates each member at the size the directory declares, so these sizes
    bound what loading can allocate.

    Raises:
        DataFileError: naming ``path``, what it would inflate to and the limit.
    """
    size = path.stat().st_size
    try:
        count, total = zip_inflated_size(path)
    except ArchiveLimitError as err:
        raise DataFileError(f"{path}: not a readable checkpoint ({err})", path) from None
    from .._checks import memory_limit

    available = memory_limit("cpu")
    limits = [(max_bytes, "the limit for this model" if max_bytes < MAX_CHECKPOINT_BYTES else "the limit")]
    limits.append((MAX_INFLATION * size + (16 << 20), f"{MAX_INFLATION} x the file's {size} bytes (a zip bomb?)"))
    if available is not None and math.isfinite(available):
        limits.append((int(available), "the memory available"))
    for limit, what in limits:
        if total > limit:
            raise DataFileError(
                f"{path}: refusing a checkpoint whose {count} members inflate to {total / _GIB:.3g} GiB, "
                f"more than {what} ({limit / _GIB:.3g} GiB)",
                path,
            )


def load_model_state(model: torch.nn.Module, state: Mapping[str, Any], path: str | Path) -> None:
    """Load ``state["model"]`` into ``model``, refusing by name what does not fit.

    Shared by ``train --resume`` and ``predict``: the entry must be a dict of tensors with
    exactly the model's names and shapes.

    Raises:
        DataFileError: naming ``path`` and the entry ``'model'``: absent, not a dict of
            tensors, missing, unexpected or differently shaped weights (the first few named),
            or weights from another model (the checkpoint's config says which).
    """
    where = f"{path}: checkpoint entry 'model'"
    if "model" not in state:
        keys = sorted(str(k)[:40] for k in state)[:10]
        raise DataFileError(
            f"{path}: no 'model' entry (has {keys}); expected a checkpoint written by gaussrender train", path
        )
    weights = state["model"]
    if not isinstance(weights, Mapping):
        raise DataFileError(f"{where} must be a dict of tensors, got {type(weights).__name__}", path)
    bad = [str(k)[:80] for k, v in weights.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise DataFileError(f"{where} must map names to tensors; {len(bad)} entries do not, e.g. {bad[:3]}", path)
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    extra = [k[:80] for k in weights if k not in own]
    shapes = [
        f"{k} {list(weights[k].shape)} (model {list(v.shape)})"
        for k, v in own.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if missing or extra or shapes:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if extra:
            problems.append(f"{len(extra)} unexpected (e.g. {extra[:3]})")
        if shapes:
            problems.append(f"{len(shapes)} of another shape (e.g. {shapes[:2]})")
        origin = ""
        config = state.get("config")
        if isinstance(config, Mapping) and isinstance(config.get("model"), Mapping):
            name = config["model"].get("name")
            size = config["model"].get("size")
            origin = f"; the checkpoint's config names model {str(name)[:40]!r} (size {str(size)[:20]!r})"
        raise DataFileError(
            f"{where} does not fit this run (model {type(model).__name__}): weights {', '.join(problems)}{origin}",
            path,
        )
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as err:
        message = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise DataFileError(f"{where} does not fit this run: {message}", path) from err


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


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", model: torch.nn.Module | None = None
) -> dict[str, Any]:
    """Load a checkpoint written by the trainer, with ``torch.load(weights_only=True)``.

    Only tensors, numbers, strings, None and plain containers are accepted, so loading a
    file from an untrusted source cannot run code; checkpoints written before RNG states
    were stored as tensors are refused (by name) for the same reason.

    Before ``torch.load`` the zip's directory is read and the archive refused when its
    members would inflate beyond :func:`checkpoint_byte_limit` of ``model`` (the model the
    checkpoint is for, when known), beyond 16 x the file's size or beyond the memory
    available (:func:`check_checkpoint_archive`).

    Raises:
        FileNotFoundError: naming ``path``.
        DataFileError: naming ``path``: not a regular file, unreadable, truncated or corrupt
            file, members that inflate too far, a pickle that references anything else (e.g.
            code), or a top level that is not a dict.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except OSError as err:
        raise DataFileError(f"{path}: cannot open the checkpoint ({err.strerror or err})", path) from None
    if not stat.S_ISREG(mode):
        raise DataFileError(f"{path}: the checkpoint is not a regular file (a directory, FIFO or device)", path)
    check_checkpoint_archive(path, checkpoint_byte_limit(model))
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


#: Largest step/epoch counter a checkpoint may hold (far beyond any run, far below overflow).
_MAX_COUNTER = 1 << 53


def checkpoint_counter(state: dict[str, Any], key: str, default: int | None = None) -> int:
    """A checkpoint's step/epoch counter: an int in [0, 2**53] (a negative one would make the
    sampler skip backwards; a float, bool or tensor is not a counter)."""
    value = state.get(key, default) if default is not None else state[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNTER:
        raise ValueError(f"{key} must be an integer in [0, 2**53], got {brief(value, 40)}")
    return value
