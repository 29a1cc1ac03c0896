"""Atomic file writes: every file gaussrender writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

__all__ = ["atomic_write", "atomic_write_text", "remove_stale_temporaries", "sigterm_as_exit"]

# The temporary beside ``NAME`` is ``.NAME.<8 characters>.tmp``: tempfile.mkstemp's random
# part is 8 characters of [a-z0-9_]. remove_stale_temporaries matches exactly this pattern.
_TMP_RANDOM = r"[a-z0-9_]{8}"


def _temp_prefix(name: str) -> str:
    return f".{name}."


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], fsync: bool = False) -> Path:
    """Create ``path``'s folder, call ``write(file)`` on a temporary file beside it, then rename
    it to ``path`` (atomic on POSIX). On any error, KeyboardInterrupt included, the temporary
    file is removed and ``path`` keeps its previous content. ``fsync=True`` flushes to disk
    before the rename (checkpoints). A process killed outright (SIGKILL) leaves its temporary,
    ``.NAME.XXXXXXXX.tmp``; :func:`remove_stale_temporaries` removes those.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fd = -1  # owned (and closed) by f from here on
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        # mkstemp creates the file private (0600); give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:  # os.fdopen itself failed
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporaries :func:`atomic_write` left in ``folder`` for the files ``names``
    when its process was killed mid-write.

    Only regular files named exactly ``.NAME.XXXXXXXX.tmp`` (``NAME`` in ``names``, the 8
    random characters of :func:`tempfile.mkstemp`) are removed; nothing else is touched.
    Call it only when no other process writes those files (e.g. at the start of a run).

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile("|".join(re.escape(_temp_prefix(n)) + _TMP_RANDOM + re.escape(".tmp") for n in names))
    removed = []
    for entry in os.scandir(folder):
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, ``torchrun`` stopping its workers, a scheduler's
    pre-emption) raises ``SystemExit(143)`` instead of ending the process on the spot, so
    that cleanup runs: an :func:`atomic_write` in progress removes its temporary file.
    Has no effect outside the main thread (Python delivers signals only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
