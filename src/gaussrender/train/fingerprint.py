"""Content hashes that key the caches a run reuses: the synthetic dataset in ``data.root``
(its manifest) and ``class_counts.json`` in the run directory.

A cache is used only when the description it was made from *and* the content it covers
hash the same as now; anything else (another config, a file changed, a cache from another
dataset, a corrupt cache) makes the run rebuild it, so a stale cache is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "file_digest",
    "files_digest",
    "list_files",
    "read_small_json",
    "MAX_CACHE_BYTES",
    "MANIFEST",
    "synthetic_description",
    "write_manifest",
    "manifest_matches",
]

#: Largest cache file (manifest, class counts) read back; they hold a few kB.
MAX_CACHE_BYTES = 16 << 20


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a regular file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_digest(root: Path, names: Iterable[str]) -> str:
    """SHA-256 (hex) over the relative names, sizes and contents of ``root / name`` for each
    name (sorted); a missing file or one that is not a regular file hashes as absent."""
    digest = hashlib.sha256()
    for name in sorted(names):
        path = root / name
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        digest.update((file_digest(path) if stat.S_ISREG(mode) else "absent").encode() + b"\n")
    return digest.hexdigest()


def list_files(root: Path, exclude: Iterable[str] = ()) -> list[str]:
    """Relative ``/``-joined names of the regular files under ``root`` (links not followed)."""
    skip = set(exclude)
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if rel not in skip and path.is_file() and not path.is_symlink():
                out.append(rel)
    return out


def read_small_json(path: Path) -> Any:
    """A cache file's JSON, or None when it is absent, too large or not JSON (a cache that
    cannot be read is rebuilt, never trusted). Something other than a regular file at
    ``path`` (a directory, FIFO, device) raises ValueError naming it: rebuilding would fail
    to replace it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: expected a regular file (a cache gaussrender writes), found something else there")
    if st.st_size > MAX_CACHE_BYTES:
        return None
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError: bad UTF-8, bad JSON, huge ints
        return None


#: The synthetic dataset's manifest in its root: what it was made from and its content hash.
MANIFEST = "synthetic_manifest.json"


def synthetic_description(
    format: str,
    grid: Any,
    num_scenes: int,
    num_val_scenes: int,
    seed: int,
    image_size: tuple[int, int] | list[int],
    lidar: bool,
) -> dict[str, Any]:
    """What a synthetic dataset is made from: every setting of ``data.synthetic`` (and the
    format and grid) that changes its files. ``grid`` is a :class:`~gaussrender.VoxelGrid`."""
    return {
        "manifest_version": 1,
        "format": str(format),
        "grid": str(grid.name),
        "grid_shape": [int(n) for n in grid.shape],
        "num_scenes": int(num_scenes),
        "num_val_scenes": int(num_val_scenes),
        "seed": int(seed),
        "image_size": [int(n) for n in image_size],
        "lidar": bool(lidar),
    }


def write_manifest(root: Path, description: dict[str, Any]) -> Path:
    """Write ``root/synthetic_manifest.json``: ``description`` and the SHA-256 of every file
    under ``root`` (call it last, once the dataset is complete)."""
    from .._io import atomic_write_text

    files = list_files(root, exclude=(MANIFEST,))
    manifest = {"description": description, "files": files, "content_sha256": files_digest(root, files)}
    return atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def manifest_matches(root: Path, description: dict[str, Any]) -> bool:
    """Whether ``root`` holds the synthetic dataset ``description`` describes, unchanged: its
    manifest states that description and the files it lists hash as they did when written."""
    manifest = read_small_json(root / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("description") != description:
        return False
    files = manifest.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        return False
    return manifest.get("content_sha256") == files_digest(root, files)
