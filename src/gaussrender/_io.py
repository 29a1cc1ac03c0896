"""Atomic file writes: every file gaussrender writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text", "remove_stale_temporaries", "sigterm_as_exit"]

# The temporary beside ``NAME`` is ``.NAME.<8 characters>.tmp``, the 8 characters drawn from
# [a-z0-9_] (as tempfile.mkstemp's). remove_stale_temporaries matches exactly this pattern.
_TMP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TMP_LENGTH = 8
_TMP_RANDOM = f"[a-z0-9_]{{{_TMP_LENGTH}}}"
#: Names tried before giving up (tempfile.TMP_MAX): a clash of 37**8 names is a broken folder.
_TMP_ATTEMPTS = 10_000
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def _temp_prefix(name: str) -> str:
    return f".{name}."


def _create_temporary(folder: Path, name: str) -> tuple[int, str]:
    """Create ``folder/.NAME.XXXXXXXX.tmp`` exclusively; return its descriptor and path.

    The file is created with mode 0o666, which the kernel reduces by the process umask, as a
    plain ``open()`` would: the renamed file gets the usual permissions without this code
    reading the umask (``os.umask`` can only be read by setting it, which races with other
    threads creating files). ``O_EXCL`` (and ``O_NOFOLLOW``) refuse an existing name or link.
    """
    for _ in range(_TMP_ATTEMPTS):
        random = "".join(secrets.choice(_TMP_ALPHABET) for _ in range(_TMP_LENGTH))
        tmp = os.path.join(folder, f"{_temp_prefix(name)}{random}.tmp")
        try:
            return os.open(tmp, _TMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {name!r} in {str(folder)!r} after {_TMP_ATTEMPTS} attempts")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], fsync: bool = False) -> Path:
    """Create ``path``'s folder, call ``write(file)`` on a temporary file beside it, then rename
    it to ``path`` (atomic on POSIX). On any error, KeyboardInterrupt included, the temporary
    file is removed and ``path`` keeps its previous content. ``fsync=True`` flushes to disk
    before the rename (checkpoints). A process killed outright (SIGKILL) leaves its temporary,
    ``.NAME.XXXXXXXX.tmp``; :func:`remove_stale_temporaries` removes those. ``write``'s return
    value (a byte count from ``file.write``, say) is ignored.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            fd = -1  # owned (and closed) by f from here on
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
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
    random characters :func:`atomic_write` draws) are removed; nothing else is touched.
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
