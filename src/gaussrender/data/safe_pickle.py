"""A restricted unpickler for BEVDet/mmdet3d info files: numpy arrays, dtypes and plain containers only.

Info files (``.pkl``) come from third parties; :func:`safe_pickle_load` rebuilds their arrays
from checked (dtype, shape, raw bytes) and refuses every other global, so no code of the
file's choosing runs (see ``docs/security.md``). Used by :func:`gaussrender.data.load_infos`.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .files import DataFileError, require_regular_file

__all__ = ["safe_pickle_load"]

# dtype kinds an info pickle may hold: bool, ints, floats, complex, fixed-width bytes and
# unicode. Never object ("O": pointers), void/structured ("V") or datetimes ("M", "m").
_DTYPE_KINDS = "biufcSU"
_DTYPE_STRING = re.compile(r"[<>|=]?(b1|\?|[iu][1248]|f[248]|c(8|16)|[SU]\d{1,9})")
# one array, once rebuilt, may not exceed this (the bytes are in the file anyway; this keeps
# a shape/size mismatch from ever being computed on absurd numbers)
_MAX_ARRAY_BYTES = 1 << 32
_MAX_NDIM = 32
_MAX_DEPTH = 100


class _StandIn:
    """Base of every object the unpickler hands out while loading.

    A pickle's BUILD opcode calls ``__setstate__`` on whatever is on its stack; every
    stand-in either validates the state itself or refuses it, so a file can neither reach
    numpy's ``__setstate__`` nor set attributes on these module-level objects.
    """

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise pickle.UnpicklingError(f"refusing BUILD on {type(self).__name__.lstrip('_')}")


class _Ndarray(_StandIn):
    """Stands for ``numpy.ndarray`` inside a pickle; only :func:`_reconstruct` may receive it."""

    __slots__ = ()


_NDARRAY = _Ndarray()


class _Callable(_StandIn):
    """A safe factory standing for an allowed global (functions would accept BUILD on their ``__dict__``)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


class _PickledDtype(_StandIn):
    """A dtype being unpickled: built from a checked type string, its state checked, never numpy's ``__setstate__``."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: object) -> None:
        # numpy pickles a dtype as dtype(str, False, True) + BUILD(state); the state carries the
        # byte order and, for a hostile file, flags/fields that would turn it into something else.
        # Accept only the state numpy itself writes for this plain dtype in some byte order.
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"refusing dtype state {_short(state)} for {self.dtype}")
        dtype = self.dtype.newbyteorder(state[1]) if state[1] in "<>" else self.dtype
        if state != dtype.__reduce__()[2]:
            raise pickle.UnpicklingError(
                f"refusing dtype state {_short(state)} for {self.dtype}: only the state of a plain "
                f"{self.dtype} is accepted"
            )
        self.dtype = dtype


class _PickledArray(_StandIn):
    """An array or scalar being unpickled; replaced by the real array or scalar after loading.

    ``_reconstruct`` returns an empty one that BUILD fills; ``_frombuffer`` and ``scalar``
    return filled ones, which refuse any BUILD.
    """

    __slots__ = ("array", "scalar")

    def __init__(self, array: np.ndarray | None = None, scalar: bool = False) -> None:
        self.array = array
        self.scalar = scalar

    def __setstate__(self, state: object) -> None:
        if self.array is not None:
            raise pickle.UnpicklingError("refusing a second state for an array")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError(f"refusing ndarray state {_short(state)}")
        if len(state) == 5:
            if state[0] != 1:
                raise pickle.UnpicklingError(f"refusing ndarray state version {state[0]!r}")
            state = state[1:]
        shape, dtype, fortran, raw = state
        if not isinstance(fortran, bool):
            raise pickle.UnpicklingError(f"refusing ndarray state: is_fortran must be a bool, got {_short(fortran)}")
        self.array = _build_array(raw, dtype, shape, "F" if fortran else "C")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _dtype_of(value: object) -> np.dtype:
    if not isinstance(value, _PickledDtype):
        raise pickle.UnpicklingError(f"expected a pickled numpy dtype, got {_short(value)}")
    return value.dtype


def _build_array(raw: object, dtype: object, shape: object, order: Literal["C", "F"]) -> np.ndarray:
    """Rebuild an array from (raw bytes, checked dtype, shape): numpy never sees a pickled state."""
    dt = _dtype_of(dtype)
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise pickle.UnpicklingError(f"refusing ndarray data of type {type(raw).__name__} (expected raw bytes)")
    if (
        not isinstance(shape, tuple)
        or len(shape) > _MAX_NDIM
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise pickle.UnpicklingError(f"refusing ndarray shape {_short(shape)}")
    count = 1
    for n in shape:
        count *= n  # Python ints: no overflow
    if count * dt.itemsize > _MAX_ARRAY_BYTES or count * dt.itemsize != len(raw):
        raise pickle.UnpicklingError(
            f"refusing ndarray: shape {shape} x {dt.itemsize} bytes does not match the {len(raw)} data bytes"
        )
    return np.frombuffer(raw, dtype=dt).reshape(shape, order=order).copy(order="K")


def _dtype_factory(spec: object, align: object = False, copy: object = True) -> _PickledDtype:
    if (
        not isinstance(spec, str)
        or not _DTYPE_STRING.fullmatch(spec)
        or not isinstance(align, bool)
        or not isinstance(copy, bool)
    ):
        raise pickle.UnpicklingError(
            f"refusing numpy dtype {_short(spec)}: info files may hold only bool, int, float, complex, "
            "bytes and unicode arrays"
        )
    dtype = np.dtype(spec)
    if dtype.kind not in _DTYPE_KINDS or dtype.hasobject or dtype.fields is not None:
        raise pickle.UnpicklingError(f"refusing numpy dtype {spec!r}")
    return _PickledDtype(dtype)


def _reconstruct(cls: object, shape: object, typecode: object) -> _PickledArray:
    # numpy writes _reconstruct(ndarray, (0,), b'b'); the real content follows in BUILD
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError(f"refusing _reconstruct of {_short(cls)} (only numpy.ndarray)")
    return _PickledArray()


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> _PickledArray:
    # numpy's protocol-5 pickles: _frombuffer(bytes, dtype, shape, order)
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"refusing array order {_short(order)}")
    return _PickledArray(_build_array(buffer, dtype, shape, "F" if order == "F" else "C"))  # checked above


def _scalar(dtype: object, raw: object = b"") -> _PickledArray:
    return _PickledArray(_build_array(raw, dtype, (), "C"), scalar=True)


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    # protocol 2 (mmcv's default) writes bytes as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode({_short(text)}, {_short(encoding)})")
    return text.encode("latin1")


def _container(kind: type) -> Any:
    # protocol 2 writes b"", bytearrays, sets and frozensets as calls to the builtin types
    def build(*args: object) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, bytes))):
            raise pickle.UnpicklingError(f"refusing {kind.__name__}{_short(args)}")
        return kind(*args)

    return build


def _ordered_dict(*args: object) -> OrderedDict:
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple))):
        raise pickle.UnpicklingError(f"refusing OrderedDict{_short(args)}")
    return OrderedDict(*args)


# Everything a BEVDet/mmdet3d info pickle legitimately needs, each mapped to a safe stand-in:
# numpy's own callables would run whatever dtype/array state the file holds.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Callable(_dtype_factory),
    ("numpy.core.multiarray", "_reconstruct"): _Callable(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Callable(_reconstruct),
    ("numpy.core.numeric", "_frombuffer"): _Callable(_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): _Callable(_frombuffer),
    ("numpy.core.multiarray", "scalar"): _Callable(_scalar),
    ("numpy._core.multiarray", "scalar"): _Callable(_scalar),
    ("collections", "OrderedDict"): _Callable(_ordered_dict),
    ("_codecs", "encode"): _Callable(_latin1),
    ("builtins", "bytes"): _Callable(_container(bytes)),
    ("builtins", "bytearray"): _Callable(_container(bytearray)),
    ("builtins", "set"): _Callable(_container(set)),
    ("builtins", "frozenset"): _Callable(_container(frozenset)),
}
# protocol <= 2 pickles name Python 2's module
_ALLOWED_GLOBALS.update({("__builtin__", n): f for (m, n), f in list(_ALLOWED_GLOBALS.items()) if m == "builtins"})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}; info files may hold only "
                "numpy arrays/dtypes and plain containers"
            )
        return _ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id (info files have none)")


def _finish(obj: Any) -> Any:
    """Replace the unpickling stand-ins by real arrays and dtypes, iteratively (no recursion limit)."""
    done: dict[int, Any] = {}

    def resolve(x: Any) -> Any:
        if isinstance(x, _PickledArray):
            if x.array is None:
                raise pickle.UnpicklingError("an ndarray was reconstructed without its state")
            return x.array[()] if x.scalar else x.array
        if isinstance(x, _PickledDtype):
            return x.dtype
        if isinstance(x, _StandIn):
            raise pickle.UnpicklingError(
                "numpy.ndarray, numpy.dtype and friends may appear only as calls that build data"
            )
        return x

    # containers are visited once each (the memo may share them); tuples are rebuilt bottom-up
    order: list[Any] = []
    stack = [(obj, 0)]
    seen: set[int] = set()
    while stack:
        x, depth = stack.pop()
        if not isinstance(x, (list, dict, tuple, set, frozenset)) or id(x) in seen:
            continue
        if depth > _MAX_DEPTH:  # info files nest a few levels; deeper data only breaks consumers
            raise pickle.UnpicklingError(f"refusing containers nested more than {_MAX_DEPTH} deep")
        seen.add(id(x))
        order.append(x)
        stack.extend((v, depth + 1) for v in (x.values() if isinstance(x, dict) else x))
        if isinstance(x, dict):
            stack.extend((k, depth + 1) for k in x)
    for x in reversed(order):  # children before parents
        if isinstance(x, list):
            for i, v in enumerate(x):
                x[i] = done.get(id(v), resolve(v))
        elif isinstance(x, dict):
            items = [(done.get(id(k), resolve(k)), done.get(id(v), resolve(v))) for k, v in x.items()]
            x.clear()
            x.update(items)
        else:  # tuple, set, frozenset: immutable or hashed, rebuilt
            done[id(x)] = type(x)(done.get(id(v), resolve(v)) for v in x)
    # a list reached again through one of its own tuples was filled before that tuple was
    # rebuilt and would keep the stale one (and its stand-ins): refuse such cycles
    for x in order:
        if isinstance(x, (list, dict)) and any(
            id(v) in done for v in (x if isinstance(x, list) else [*x, *x.values()])
        ):
            raise pickle.UnpicklingError("refusing a recursive structure that runs through a tuple")
    return done.get(id(obj), resolve(obj))


def safe_pickle_load(path: str | Path) -> Any:
    """Unpickle ``path`` admitting only numpy arrays/dtypes/scalars and plain Python containers.

    Arrays are rebuilt by gaussrender from (dtype, shape, raw bytes) after checking them:
    dtypes must be plain bool/int/float/complex/bytes/unicode ones with the state numpy writes
    for them, and shape x item size must equal the data length. No numpy ``__setstate__``
    and no other callable runs on the file's data (see ``docs/security.md``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFileError: unreadable, truncated or corrupt pickle, or one that references any
            other class or function, or a refused dtype/array.
    """
    path = require_regular_file(path, "info file")
    try:
        data = path.read_bytes()  # whole file: a length field in the pickle can't make us allocate more
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err.strerror or err})", path) from err
    try:
        return _finish(_RestrictedUnpickler(io.BytesIO(data), path).load())
    except pickle.UnpicklingError as err:
        raise DataFileError(f"{path}: {err}", path) from err
    except (
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        OverflowError,
        UnicodeDecodeError,
        RecursionError,
        MemoryError,
        struct.error,
    ) as err:
        # whatever a malformed opcode stream raises inside the unpickler
        raise DataFileError(f"{path}: not a valid info pickle ({type(err).__name__}: {err})", path) from err
