"""Checks every command runs on its arguments before doing any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["usable_device", "check_writable_file", "check_writable_dir", "add_threads_argument", "apply_threads"]


def usable_device(spec: str, option: str = "--device"):
    """The :class:`torch.device` named by ``spec``, or a ValueError saying why it cannot be used.

    Args:
        spec: e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        option: the option or config key it came from, for the message.

    Raises:
        ValueError: not a device name, CUDA requested without CUDA, an index past the
            devices present, or allocating on it fails.
    """
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"{option} {spec!r} is not a torch device ({err})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {spec!r}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{option} {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as err:  # torch asserts when a backend is not compiled in
        raise ValueError(f"{option} {spec!r} is not usable: {err}") from None
    return device


def check_writable_dir(path: Path, option: str = "--out") -> None:
    """Fail now, naming ``option``, if the directory ``path`` could not be created or written:
    ``path`` or its nearest existing ancestor is not a directory, or that ancestor is not
    writable. Creates nothing (a run refused later leaves no empty ``--out`` behind).

    Raises:
        ValueError: naming ``option`` and the path.
    """
    path = Path(path)
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                where = "is not a directory" if ancestor == path else f"cannot be created ({ancestor} is a file)"
                raise ValueError(f"{option} {path} {where}")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise ValueError(f"{option} {path}: cannot write there ({ancestor} is not writable)")
            return


def check_writable_file(path: Path, option: str = "--out") -> None:
    """Fail now, not after the work, if ``path`` cannot be written.

    Creates ``path``'s folder (as the final write would) and a temporary file in it, which is
    removed again.

    Raises:
        ValueError: ``path`` is a directory, its folder cannot be created, or is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file name")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{option} {path}: cannot write there ({ancestor} is not a directory)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".check")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ValueError(f"{option} {path}: cannot write there ({err.strerror or err})") from None


def add_threads_argument(parser, default: int | None) -> None:
    """``--threads N``: torch's CPU threads for the command (docs/performance.md#cpu-threads)."""
    what = "torch's default (one per core, or OMP_NUM_THREADS)" if default is None else str(default)
    parser.add_argument(
        "--threads",
        type=int,
        default=default,
        help=f"torch CPU threads (default {what}); on a busy or small machine 1 is often fastest "
        "(docs/performance.md#cpu-threads)",
    )


def apply_threads(threads: int | None) -> str | None:
    """Set torch's CPU threads to ``threads`` (None: leave them); return an error message for a
    value outside [1, 1024] (each an OS thread, as demo and view bound it), else None."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        return f"--threads must be in [1, 1024], got {threads!r}"
    import torch

    torch.set_num_threads(threads)
    return None
