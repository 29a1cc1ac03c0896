"""Checks for label arrays read from disk: every reader names the file and what it expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["check_label_array", "check_mask_array", "require_file"]


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def check_label_array(array: np.ndarray, shape: tuple[int, ...], where: str, num_classes: int, ignore_index: int) -> np.ndarray:
    """Check an integer label volume of ``shape`` whose values are classes or ``ignore_index``."""
    if array.shape != tuple(shape):
        raise ValueError(f"{where}: expected shape {tuple(shape)}, got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: expected an integer dtype (uint8/int), got {array.dtype}")
    bad = (array != ignore_index) & ((array < 0) | (array >= num_classes))
    if bad.any():
        values = np.unique(array[bad])[:10].tolist()
        raise ValueError(
            f"{where}: labels must be in [0, {num_classes}) or {ignore_index}, found {values}"
        )
    return array


def check_mask_array(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Check a 0/1 (or bool) mask volume of ``shape`` and return it as bool."""
    if array.shape != tuple(shape):
        raise ValueError(f"{where}: expected shape {tuple(shape)}, got {array.shape}")
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{where}: expected a bool/uint8 mask, got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ValueError(f"{where}: mask values must be 0 or 1, found range [{array.min()}, {array.max()}]")
    return array.astype(bool)
