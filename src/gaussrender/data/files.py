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
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["DataFileError", "safe_name", "join_under", "read_json", "resolve_data_path"]


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
            f"{source}: {what} {relative!r} must be a relative path inside {os.fspath(root)} "
            "(no absolute path, '..' or NUL)",
            path,
        )
    return Path(root).joinpath(*parts)


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse a JSON file, naming it in every error.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names ``what`` and the path).
        DataFileError: unreadable, not UTF-8, not JSON, or nested too deeply.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with path.open("rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: {what} is not UTF-8 text ({err})", path) from err
    except json.JSONDecodeError as err:
        raise DataFileError(f"{path}: {what} is not valid JSON ({err})", path) from err
    except RecursionError as err:
        raise DataFileError(f"{path}: {what} is nested too deeply to parse", path) from err
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
            return join_under(data_root, "/".join(parts[i:]), what, f"info file entry {stored!r}")
    return join_under(data_root, stored, what, f"info file entry {stored!r}")
