"""Untrusted data files: one error type, name validation and the JSON reader every loader uses.

Data files (info files, label archives, nuScenes tables) come from third parties. Whatever
they hold, a reader either returns checked values or raises :class:`DataFileError` naming
the file and what was wrong; a name taken from a file (sample token, scene, sequence, file
name) becomes part of a path only after :func:`safe_name` or :func:`join_under` accepted it,
so a hostile file cannot make gaussrender read or write outside the folder it was given.
See ``docs/security.md``.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .._untrusted import brief

__all__ = [
    "DataFileError",
    "split_sequences",
    "MAX_NAME_BYTES",
    "safe_name",
    "join_under",
    "read_json",
    "resolve_data_path",
    "require_regular_file",
    "optional_regular_file",
]

#: Longest name (UTF-8 bytes) taken from a data file for one path component. File systems
#: allow 255 bytes (NAME_MAX); a name also gets a suffix (``<token>.npz``) and the
#: atomic writer's temporary adds 14 more (``.<token>.npz.XXXXXXXX.tmp``). nuScenes tokens
#: have 32 characters, scene names 10, KITTI-360 frames 6.
MAX_NAME_BYTES = 200


class DataFileError(ValueError):
    """A data file is missing, unreadable, corrupt or holds something gaussrender refuses.

    The message starts with the file (and, inside an archive, the member); :attr:`path` is
    the file (None after a round trip through pickle, e.g. from a worker process).
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


def safe_name(value: object, what: str, source: object, path: str | os.PathLike | None = None) -> str:
    """Return ``value`` if it can be used as one path component, else raise :class:`DataFileError`.

    Refused: non-strings, the empty string, ``.`` and ``..``, anything holding ``/``, ``\\``
    or NUL (so also absolute paths and drive letters such as ``C:``).

    Args:
        value: the name as read from the file.
        what: what it is, for the message (``"token"``).
        source: the file (or file + record) it came from, for the message.
        path: the file, kept as :attr:`DataFileError.path`.
    """
    if not isinstance(value, str):
        raise DataFileError(f"{source}: {what} must be a string, got {type(value).__name__}", path)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800") names no file
        raise DataFileError(f"{source}: {what} {value[:40]!r} is not valid Unicode text", path) from None
    if size > MAX_NAME_BYTES:
        raise DataFileError(
            f"{source}: {what} {value[:40]!r}... has {size} bytes, more than the {MAX_NAME_BYTES} a file name may take",
            path,
        )
    bad = (
        value in ("", ".", "..")
        or any(c in value for c in ("/", "\\", "\0"))
        or (len(value) >= 2 and value[1] == ":")  # a Windows drive, e.g. C:x
    )
    if bad:
        raise DataFileError(
            f"{source}: {what} {value!r} cannot be used as a file name (empty, '.', '..', a path "
            "separator, a drive or NUL)",
            path,
        )
    return value


def join_under(
    root: str | os.PathLike, relative: object, what: str, source: object, path: str | os.PathLike | None = None
) -> Path:
    """``root / relative`` for a relative path read from a data file, refusing any escape.

    ``\\`` is read as ``/`` (info files written on Windows) and a leading ``./`` is dropped.
    The path must be relative and, after lexical normalisation, stay inside ``root``: no
    absolute path, no ``..`` component, no NUL. Symbolic links inside ``root`` are the
    user's own layout and are not resolved.

    Raises:
        DataFileError: naming ``source``, ``what`` and the value.
    """
    if not isinstance(relative, str):
        raise DataFileError(f"{source}: {what} must be a string, got {type(relative).__name__}", path)
    norm = relative.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if (
        "\0" in norm
        or norm.startswith("/")
        or (len(norm) >= 2 and norm[1] == ":")
        or ".." in parts
        or not parts
        or posixpath.isabs(norm)
    ):
        raise DataFileError(
            f"{source}: {what} {brief(relative)} must be a relative path inside {os.fspath(root)} "
            "(no absolute path, '..' or NUL)",
            path,
        )
    return Path(root).joinpath(*parts)


def require_regular_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a regular file (a link to one counts), else an error that says what it is.

    Checked with ``stat`` before anything opens it: a FIFO would block the reader forever and
    ``/dev/zero`` would feed it without end, and neither is "not found".

    Raises:
        FileNotFoundError: nothing exists at ``path`` (or a dangling link): ``<what> not found: <path>``.
        DataFileError: a directory, FIFO, device or socket, or a path that cannot be examined
            (a file name too long, a component that is a file): naming ``what`` and ``path``.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as err:  # ENAMETOOLONG, ENOTDIR, ELOOP, EACCES, NUL in the path
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise DataFileError(f"{path}: cannot open the {what} ({reason})", path) from None
    if not stat.S_ISREG(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise DataFileError(f"{path}: the {what} is {kind}, expected a regular file", path)
    return path


def optional_regular_file(path: str | os.PathLike, what: str) -> bool:
    """Whether an optional file is present: False when nothing exists at ``path``, True for a
    regular file; anything else (directory, FIFO, device) is a :class:`DataFileError`."""
    try:
        require_regular_file(path, what)
    except FileNotFoundError:
        return False
    return True


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse a JSON file, naming it in every error.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names ``what`` and the path).
        DataFileError: not a regular file, unreadable, not UTF-8, not JSON, nested too
            deeply, or an integer of more than 4300 digits (Python's limit).
    """
    path = require_regular_file(path, what)
    try:
        with path.open("rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: {what} is not UTF-8 text ({err})", path) from err
    except json.JSONDecodeError as err:
        raise DataFileError(f"{path}: {what} is not valid JSON ({err})", path) from err
    except RecursionError as err:
        raise DataFileError(f"{path}: {what} is nested too deeply to parse", path) from err
    except ValueError as err:  # int("9" * 5000): "Exceeds the limit (4300 digits) ..."
        reason = str(err).split(":")[0][:120]
        raise DataFileError(f"{path}: {what} holds a value Python refuses to build ({reason})", path) from err
    except OSError as err:
        raise DataFileError(f"{path}: cannot read {what} ({err.strerror or err})", path) from err


# the nuScenes folders a stored path is re-rooted at (lidarseg: nuScenes-lidarseg label files)
_DATA_DIRS = ("samples", "sweeps", "lidarseg")


def resolve_data_path(stored: str, data_root: str | Path, what: str = "image path") -> Path:
    """Map a path stored in an info file onto a local nuScenes root, never outside it.

    Info files store paths as their authors saw them (``./data/nuscenes\\samples/CAM_FRONT/x.jpg``).
    The part from the first ``samples``/``sweeps``/``lidarseg`` component on is joined to ``data_root``
    (so an author's absolute or relative prefix does not matter); a path without such a
    component must be relative and is joined as is (a leading ``./`` dropped). Either way the
    joined part may not hold ``..`` or NUL, and a path without ``samples``/``sweeps`` may not
    be absolute: a hostile info file cannot point a reader outside ``data_root``.

    ``what`` names the path in messages (``"LiDAR path"``).

    Raises:
        DataFileError: the stored value is not a string, or would leave ``data_root``.
    """
    if not isinstance(stored, str):
        raise DataFileError(f"{what} must be a string, got {type(stored).__name__}")
    parts = PurePosixPath(stored.replace("\\", "/")).parts
    for i, part in enumerate(parts):
        if part in _DATA_DIRS:
            return join_under(data_root, "/".join(parts[i:]), what, f"info file entry {brief(stored)}")
    return join_under(data_root, stored, what, f"info file entry {brief(stored)}")


def split_sequences(
    split: str | Iterable[int | str], splits: Mapping[str, Iterable[int | str]], sequence: Callable[[Any], str]
) -> list[str]:
    """The sequence folder names of ``split``: a named split of ``splits`` (e.g. ``"val"``) or a
    list of sequences, each checked and formatted by ``sequence`` (KITTI-style datasets).

    Raises:
        ValueError: a split name that ``splits`` does not have (or what ``sequence`` refuses).
    """
    if isinstance(split, str):
        if split not in splits:
            raise ValueError(f"split must be one of {sorted(splits)} or a list of sequences, got {split!r}")
        return [sequence(n) for n in splits[split]]
    return [sequence(n) for n in split]
