"""Arrays read from disk: the one ``.npy``/``.npz`` reader and the label checks every reader uses.

:func:`read_npy` and :func:`open_npz` parse the ``.npy`` header themselves
(:mod:`numpy.lib.format`), check its dtype and shape against what the caller expects and
only then read exactly the bytes that shape needs, so a 200-byte file that claims a huge
array is refused before anything is allocated. Pickled (object) arrays, structured dtypes
and truncated data are refused; every error is a :class:`DataFileError` naming the file
(and the archive member).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npy_format

from .files import DataFileError, require_regular_file

__all__ = [
    "check_label_array",
    "check_mask_array",
    "require_file",
    "read_npy",
    "open_npz",
    "NpzReader",
    "LABEL_KINDS",
    "read_raw",
    "read_packed_bits",
    "read_small_text",
]

#: dtype kinds a label or mask array may have: bool, signed and unsigned integers.
LABEL_KINDS = "biu"
# upper bound on what one array may occupy once read (also bounds zip members): 2 GiB
_MAX_BYTES = 1 << 31


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a regular file; see :func:`~gaussrender.data.files.require_regular_file`."""
    return require_regular_file(path, what)


def _check_header(
    shape: tuple[int, ...],
    dtype: np.dtype,
    expected: Sequence[int | None],
    kinds: str,
    max_rows: int | None,
    where: str,
    path: Path,
) -> int:
    """Validate a parsed header against the expectation; return the byte count of the data."""
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DataFileError(f"{where}: invalid shape {shape} in the header", path)
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise DataFileError(f"{where}: refusing dtype {dtype} (object/structured arrays are not label data)", path)
    if dtype.kind not in kinds:
        raise DataFileError(f"{where}: expected dtype kind in {kinds!r} (bool/int/uint/float), got {dtype}", path)
    want = tuple(expected)
    if len(shape) != len(want) or any(w is not None and s != w for s, w in zip(shape, want)):
        shown = tuple("N" if w is None else w for w in want)
        raise DataFileError(f"{where}: expected shape {shown}, got {tuple(shape)}".replace("'N'", "N"), path)
    free = [s for s, w in zip(shape, want) if w is None]
    if max_rows is not None and any(s > max_rows for s in free):
        raise DataFileError(f"{where}: {tuple(shape)} has more than {max_rows} rows", path)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > _MAX_BYTES:
        raise DataFileError(f"{where}: header claims {nbytes} bytes, more than the {_MAX_BYTES} allowed", path)
    return nbytes


def _read_array(
    f: IO[bytes],
    expected: Sequence[int | None],
    kinds: str,
    max_rows: int | None,
    where: str,
    path: Path,
) -> np.ndarray:
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:  # 3.0 only adds UTF-8 field names, i.e. structured dtypes
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as err:  # numpy parses the header with tokenize/ast: any of their errors
        raise DataFileError(f"{where}: not a valid .npy array ({type(err).__name__}: {err})", path) from err
    nbytes = _check_header(tuple(shape), dtype, expected, kinds, max_rows, where, path)
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise DataFileError(f"{where}: truncated, header says {nbytes} data bytes, file has {len(data)}", path)
    if dtype.kind == "b" and np.frombuffer(data, dtype=np.uint8).max(initial=0) > 1:
        # numpy's bool must hold 0 or 1; other bytes would make comparisons inconsistent
        raise DataFileError(f"{where}: bool array holds bytes other than 0 and 1", path)
    order: Literal["C", "F"] = "F" if fortran else "C"
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy(order="C")


def read_npy(
    path: str | Path,
    what: str,
    shape: Sequence[int | None],
    kinds: str = LABEL_KINDS,
    max_rows: int | None = None,
) -> np.ndarray:
    """Read a ``.npy`` file whose header must announce ``shape`` and a dtype kind in ``kinds``.

    Args:
        path: the file.
        what: what it is, for the missing-file message (``"SurroundOcc label file"``).
        shape: expected shape; ``None`` marks a free dimension (bounded by ``max_rows``).
        kinds: accepted :attr:`numpy.dtype.kind` letters (``"biuf"``); object, structured
            and sub-array dtypes are always refused.
        max_rows: upper bound of every free dimension.

    Returns:
        A writable, C-ordered array in the file's dtype (byte order as stored).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: unreadable file, bad magic/header, refused dtype, wrong shape, a size
            over 2 GiB, or fewer data bytes than the header announces.
    """
    path = require_file(Path(path), what)
    try:
        with path.open("rb") as f:
            return _read_array(f, shape, kinds, max_rows, str(path), path)
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror or err})", path) from err


class NpzReader:
    """An open ``.npz`` archive whose members are read with the checks of :func:`read_npy`.

    Use through :func:`open_npz` as a context manager. :attr:`files` lists the array names.
    """

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self._zip = archive
        self._members = {n[: -len(".npy")]: n for n in archive.namelist() if n.endswith(".npy")}
        self.files = list(self._members)

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()

    def read(
        self, key: str, shape: Sequence[int | None], kinds: str = LABEL_KINDS, max_rows: int | None = None
    ) -> np.ndarray:
        """Read member ``key`` (see :func:`read_npy` for the arguments and checks)."""
        where = f"{self.path} {key}"
        if key not in self._members:
            raise DataFileError(f"{self.path}: missing array {key!r}, has {self.files}", self.path)
        try:
            with self._zip.open(self._members[key]) as member:
                return _read_array(member, shape, kinds, max_rows, where, self.path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as err:
            # a corrupt stream (CRC, deflate), an unsupported compression or an encrypted member
            raise DataFileError(f"{where}: corrupt archive member ({err})", self.path) from err


def open_npz(path: str | Path, what: str) -> NpzReader:
    """Open a ``.npz`` archive for checked reads; never unpickles.

    Raises:
        FileNotFoundError: missing file.
        DataFileError: not a zip archive, or unreadable.
    """
    path = require_file(Path(path), what)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as err:
        raise DataFileError(f"{path}: not a valid .npz archive ({err})", path) from err
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror or err})", path) from err
    return NpzReader(path, archive)


def _fail(where: str, message: str, path: Path | None) -> Exception:
    return DataFileError(f"{where}: {message}", path) if path is not None else ValueError(f"{where}: {message}")


def check_label_array(
    array: np.ndarray,
    shape: tuple[int, ...],
    where: str,
    num_classes: int,
    ignore_index: int,
    path: Path | None = None,
) -> np.ndarray:
    """Check an integer label volume of ``shape`` whose values are classes or ``ignore_index``.

    Raises :class:`DataFileError` when ``path`` (the file the array came from) is given,
    else ValueError (a caller's argument).
    """
    if array.shape != tuple(shape):
        raise _fail(where, f"expected shape {tuple(shape)}, got {array.shape}", path)
    if not np.issubdtype(array.dtype, np.integer):
        raise _fail(where, f"expected an integer dtype (uint8/int), got {array.dtype}", path)
    bad = (array != ignore_index) & ((array < 0) | (array >= num_classes))
    if bad.any():
        values = np.unique(array[bad])[:10].tolist()
        raise _fail(where, f"labels must be in [0, {num_classes}) or {ignore_index}, found {values}", path)
    return array


def check_mask_array(array: np.ndarray, shape: tuple[int, ...], where: str, path: Path | None = None) -> np.ndarray:
    """Check a 0/1 (or bool) mask volume of ``shape`` and return it as bool."""
    if array.shape != tuple(shape):
        raise _fail(where, f"expected shape {tuple(shape)}, got {array.shape}", path)
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.integer):
            raise _fail(where, f"expected a bool/uint8 mask, got dtype {array.dtype}", path)
        if array.size and (array.min() < 0 or array.max() > 1):
            raise _fail(where, f"mask values must be 0 or 1, found range [{array.min()}, {array.max()}]", path)
    return array.astype(bool)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror or err})", path) from err


def read_raw(path: str | Path, what: str, dtype: npt.DTypeLike, shape: Sequence[int]) -> np.ndarray:
    """Read a headerless binary array (``numpy.tofile`` layout, C order) of known ``dtype`` and ``shape``.

    The file's size is compared with ``prod(shape) * itemsize`` before anything is read, so a
    file of the wrong size (another grid, a truncated download, another format) is refused by
    name and nothing is allocated for it.

    Args:
        path: the file.
        what: what it is, for the messages (``"SemanticKITTI voxel label file"``).
        dtype: the stored dtype with its byte order (``"<u2"``).
        shape: the array's shape.

    Raises:
        FileNotFoundError: missing file.
        DataFileError: a size other than the expected one, or an unreadable file.
    """
    path = require_file(Path(path), what)
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    size = _file_size(path)
    if size != nbytes:
        raise DataFileError(
            f"{path}: {what} must hold {nbytes} bytes ({tuple(shape)} {dt.name}), the file has {size}", path
        )
    try:
        with path.open("rb") as f:
            data = f.read(nbytes + 1)
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror or err})", path) from err
    if len(data) != nbytes:  # the file changed under us
        raise DataFileError(f"{path}: {what} must hold {nbytes} bytes, read {len(data)}", path)
    return np.frombuffer(data, dtype=dt).reshape(tuple(shape)).copy()


def read_packed_bits(path: str | Path, what: str, shape: Sequence[int]) -> np.ndarray:
    """Read a bit-packed boolean volume, 8 voxels per byte, most significant bit first (C order).

    The SemanticKITTI layout (``.invalid``, ``.bin``, ``.occluded``): byte ``i`` holds voxels
    ``8i`` (bit 7) to ``8i + 7`` (bit 0) of the flattened volume. The size is checked before
    reading (:func:`read_raw`).

    Raises:
        FileNotFoundError: missing file.
        DataFileError: a size other than ``prod(shape) / 8`` bytes, or ``prod(shape)`` not a
            multiple of 8.
    """
    n = math.prod(shape)
    if n % 8:
        raise ValueError(f"shape {tuple(shape)} holds {n} voxels, not a multiple of 8")
    packed = read_raw(path, what, np.uint8, (n // 8,))
    return np.unpackbits(packed, bitorder="big").reshape(tuple(shape)).astype(bool)


def read_small_text(path: str | Path, what: str, max_bytes: int = 1 << 20) -> str:
    """Read a small UTF-8 text file (calibration), refusing one over ``max_bytes`` before reading it.

    Raises:
        FileNotFoundError: missing file.
        DataFileError: too large, unreadable or not UTF-8.
    """
    path = require_file(Path(path), what)
    size = _file_size(path)
    if size > max_bytes:
        raise DataFileError(f"{path}: {what} is {size} bytes, more than the {max_bytes} allowed", path)
    try:
        return path.read_bytes()[: max_bytes + 1].decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: {what} is not UTF-8 text ({err})", path) from err
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror or err})", path) from err
