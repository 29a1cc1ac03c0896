"""nuScenes calibration and ego poses: BEVDet/mmdet3d-style info files and the official tables.

Three sources give the same :class:`SampleInfo` list:

* an info file ``.pkl`` (BEVDet / mmdet3d v0.x ``{"infos": [...], "metadata": ...}``), read
  with a restricted unpickler that admits only numpy arrays, dtypes and plain containers;
* the same structure as ``.json`` (what :func:`write_infos_json` writes);
* the official metadata tables ``<dataroot>/<version>/{scene,sample,sample_data,
  calibrated_sensor,ego_pose,sensor}.json``, read directly (no nuscenes-devkit).

Frames (nuScenes): ``sensor2ego`` maps sensor points into the ego frame at that sensor's
timestamp; ``ego2global`` maps that ego frame into the map frame. The LiDAR's pair defines
the sample's reference ego frame (the Occ3D grid frame). Quaternions are (w, x, y, z).
"""

from __future__ import annotations

import io
import json
import pickle
import re
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._io import atomic_write_text
from ..geometry.rigs import NUSCENES_CAMERA_NAMES
from .files import DataFileError, read_json, safe_name
from .pose import Pose

__all__ = [
    "CAMERA_NAMES",
    "CameraInfo",
    "SampleInfo",
    "load_infos",
    "write_infos_json",
    "load_nuscenes_tables",
    "safe_pickle_load",
]

#: nuScenes camera order used everywhere in gaussrender (views ``V`` follow it).
CAMERA_NAMES: tuple[str, ...] = NUSCENES_CAMERA_NAMES

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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"info file not found: {path}")
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


@dataclass(frozen=True)
class CameraInfo:
    """One camera of one sample.

    Attributes:
        name: channel, e.g. ``"CAM_FRONT"``.
        image_path: path as stored in the metadata (``\\`` normalised to ``/``).
        intrinsics: ``[3, 3]`` float64, pixels, for the stored image (nuScenes: 1600x900).
        sensor2ego: camera → ego frame at the camera timestamp.
        ego2global: ego frame at the camera timestamp → map frame.
    """

    name: str
    image_path: str
    intrinsics: np.ndarray
    sensor2ego: Pose
    ego2global: Pose


@dataclass(frozen=True)
class SampleInfo:
    """One key frame: its LiDAR reference frame and its cameras.

    Attributes:
        token: nuScenes sample token.
        scene: scene name (``"scene-0103"``) when known, else the scene token.
        scene_token: nuScenes scene token ("" when unknown).
        timestamp: LiDAR timestamp, microseconds.
        lidar_path: LiDAR file path as stored (``/``-normalised), "" when absent.
        lidar2ego: LiDAR → ego frame.
        ego2global: ego frame at the LiDAR timestamp → map frame.
        cameras: channel → :class:`CameraInfo`.
        occ_path: the info file's ``occ_path`` when present.
    """

    token: str
    scene: str
    scene_token: str
    timestamp: int
    lidar_path: str
    lidar2ego: Pose
    ego2global: Pose
    cameras: dict[str, CameraInfo] = field(default_factory=dict)
    occ_path: str | None = None


def _norm_path(p: object) -> str:
    return str(p).replace("\\", "/") if p is not None else ""


def _require(record: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(record, Mapping):
        raise DataFileError(f"{where}: expected a dict holding {key!r}, got {type(record).__name__}")
    if key not in record:
        raise KeyError(f"{where}: missing key {key!r} (has {sorted(record)[:20]})")
    return record[key]


def _scene_name(record: Mapping[str, Any]) -> str:
    # BEVDet infos with occupancy carry scene_name; others only occ_path .../gts/<scene>/<token>.
    if record.get("scene_name"):
        return str(record["scene_name"])
    occ = _norm_path(record.get("occ_path") or "")
    parts = [p for p in occ.split("/") if p]
    if len(parts) >= 2 and parts[-2].startswith("scene-"):
        return parts[-2]
    return str(record.get("scene_token", ""))


def _parse_sample(record: Mapping[str, Any], where: str) -> SampleInfo:
    if not isinstance(record, Mapping):
        raise DataFileError(f"{where}: expected a dict per sample, got {type(record).__name__}")
    # the token and the scene name become file names (labels, predictions): checked here once
    token = safe_name(_require(record, "token", where), "token", where)
    where = f"{where} (token {token})"
    cams_raw = _require(record, "cams", where)
    if not isinstance(cams_raw, Mapping):
        raise DataFileError(f"{where}: 'cams' must be a dict of cameras, got {type(cams_raw).__name__}")
    scene = _scene_name(record)
    if scene:
        safe_name(scene, "scene name", where)
    cameras: dict[str, CameraInfo] = {}
    for name, cam in cams_raw.items():
        cw = f"{where} cams[{name}]"
        k = np.asarray(_require(cam, "cam_intrinsic", cw), dtype=np.float64)
        if k.shape != (3, 3) or not np.all(np.isfinite(k)):
            raise ValueError(f"{cw}: cam_intrinsic must be a finite 3x3 matrix, got shape {k.shape}")
        cameras[str(name)] = CameraInfo(
            name=str(name),
            image_path=_norm_path(_require(cam, "data_path", cw)),
            intrinsics=k,
            sensor2ego=Pose.from_fields(
                _require(cam, "sensor2ego_translation", cw),
                _require(cam, "sensor2ego_rotation", cw),
                name=f"{cw} sensor2ego",
            ),
            ego2global=Pose.from_fields(
                _require(cam, "ego2global_translation", cw),
                _require(cam, "ego2global_rotation", cw),
                name=f"{cw} ego2global",
            ),
        )
    return SampleInfo(
        token=token,
        scene=scene,
        scene_token=str(record.get("scene_token", "")),
        timestamp=int(record.get("timestamp", 0)),
        lidar_path=_norm_path(record.get("lidar_path", "")),
        lidar2ego=Pose.from_fields(
            _require(record, "lidar2ego_translation", where),
            _require(record, "lidar2ego_rotation", where),
            name=f"{where} lidar2ego",
        ),
        ego2global=Pose.from_fields(
            _require(record, "ego2global_translation", where),
            _require(record, "ego2global_rotation", where),
            name=f"{where} ego2global",
        ),
        cameras=cameras,
        occ_path=_norm_path(record["occ_path"]) if record.get("occ_path") else None,
    )


def load_infos(path: str | Path) -> list[SampleInfo]:
    """Read a BEVDet/mmdet3d-style info file (``.pkl`` or ``.json``) into :class:`SampleInfo` s.

    Accepted top levels: ``{"infos": [...], ...}`` or a bare list of sample dicts. Each sample
    needs ``token``, ``lidar2ego_{translation,rotation}``, ``ego2global_{translation,rotation}``
    and ``cams[<CAM>]`` with ``data_path``, ``cam_intrinsic``, ``sensor2ego_*``,
    ``ego2global_*``. The order of the file is kept.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown suffix.
        DataFileError: unreadable, corrupt or refused file (see :func:`safe_pickle_load`), a
            token or scene name that is not a plain file name, a missing or malformed field
            (the message names the file, the sample token and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"info file not found: {path}")
    if path.suffix == ".pkl":
        data = safe_pickle_load(path)
    elif path.suffix == ".json":
        data = read_json(path, "info file")
    else:
        raise ValueError(f"info file must end in .pkl or .json, got {path}")
    if isinstance(data, Mapping):
        records = _require(data, "infos", str(path))
    else:
        records = data
    if not isinstance(records, (list, tuple)):
        raise DataFileError(f"{path}: 'infos' must be a list of samples, got {type(records).__name__}", path)
    samples = []
    for i, record in enumerate(records):
        where = f"{path} infos[{i}]"
        try:
            samples.append(_parse_sample(record, where))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as err:
            raise _named(err, where, path) from err
    return samples


def _named(err: BaseException, where: str, path: Path) -> DataFileError:
    """``err`` as a DataFileError whose message names the file (and the record) exactly once."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    if str(path) not in str(message):
        message = f"{where}: {type(err).__name__}: {message}"
    return DataFileError(str(message), path)


def _pose_fields(prefix: str, pose: Pose) -> dict[str, list[float]]:
    return {f"{prefix}_translation": list(pose.translation), f"{prefix}_rotation": list(pose.rotation)}


def write_infos_json(path: str | Path, samples: Iterable[SampleInfo], *, version: str = "") -> Path:
    """Write ``samples`` as a JSON info file that :func:`load_infos` reads back unchanged.

    The layout is the BEVDet one (``{"infos": [...]}``, per-camera ``cams`` dicts,
    quaternions w, x, y, z); ``scene_name`` is written so that the scene survives the round trip.
    """
    infos = []
    for s in samples:
        cams = {}
        for name, cam in s.cameras.items():
            cams[name] = {
                "data_path": cam.image_path,
                "type": name,
                "cam_intrinsic": np.asarray(cam.intrinsics, dtype=np.float64).tolist(),
                **_pose_fields("sensor2ego", cam.sensor2ego),
                **_pose_fields("ego2global", cam.ego2global),
            }
        record: dict[str, Any] = {
            "token": s.token,
            "scene_name": s.scene,
            "scene_token": s.scene_token,
            "timestamp": int(s.timestamp),
            "lidar_path": s.lidar_path,
            **_pose_fields("lidar2ego", s.lidar2ego),
            **_pose_fields("ego2global", s.ego2global),
            "cams": cams,
        }
        if s.occ_path is not None:
            record["occ_path"] = s.occ_path
        infos.append(record)
    return atomic_write_text(path, json.dumps({"version": version, "quaternion_order": "w,x,y,z", "infos": infos}))


def _read_table(directory: Path, name: str) -> list[dict[str, Any]]:
    path = directory / f"{name}.json"
    table = read_json(path, "nuScenes table")
    if not isinstance(table, list) or not all(isinstance(r, dict) for r in table):
        raise DataFileError(f"{path}: expected a JSON list of records (objects), got {type(table).__name__}", path)
    return table


def load_nuscenes_tables(dataroot: str | Path, version: str = "v1.0-trainval") -> list[SampleInfo]:
    """Read key frames straight from the official tables ``<dataroot>/<version>/*.json``.

    Uses ``scene``, ``sample``, ``sample_data``, ``calibrated_sensor``, ``ego_pose`` and
    ``sensor`` (for channel names). Samples come scene by scene in time order; each has the
    key-frame LIDAR_TOP pose and the key-frame image of every camera. Image paths are the
    tables' ``filename`` (relative to ``dataroot``).

    Raises:
        FileNotFoundError: a table is missing (the message names it).
        DataFileError: a sample lacks its LIDAR_TOP key frame, a table is not valid JSON, a record
            lacks a field or references a missing record, a scene's ``next`` chain loops, or a token/scene name is not a
            plain file name (the message names the tables' folder).
    """
    directory = Path(dataroot) / version
    try:
        return _samples_from_tables(directory)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as err:
        raise _named(err, f"{directory}: malformed nuScenes tables", directory) from err


def _samples_from_tables(directory: Path) -> list[SampleInfo]:
    scenes = _read_table(directory, "scene")
    samples = {r["token"]: r for r in _read_table(directory, "sample")}
    calibs = {r["token"]: r for r in _read_table(directory, "calibrated_sensor")}
    poses = {r["token"]: r for r in _read_table(directory, "ego_pose")}
    sensors = {r["token"]: r for r in _read_table(directory, "sensor")}
    key_data: dict[str, dict[str, dict[str, Any]]] = {}
    for sd in _read_table(directory, "sample_data"):
        if not sd.get("is_key_frame"):
            continue
        calib = calibs[sd["calibrated_sensor_token"]]
        channel = sensors[calib["sensor_token"]]["channel"]
        key_data.setdefault(sd["sample_token"], {})[channel] = sd

    out: list[SampleInfo] = []
    visited: set[str] = set()
    for scene in scenes:
        scene_name = safe_name(scene["name"], "scene name", f"{directory / 'scene.json'}")
        token = scene["first_sample_token"]
        while token:
            if token in visited:
                raise DataFileError(f"{directory}: sample {token!r} is reached twice (a 'next' chain loops)", directory)
            visited.add(token)
            safe_name(token, "sample token", f"{directory / 'sample.json'}")
            sample = samples[token]
            data = key_data.get(token, {})
            if "LIDAR_TOP" not in data:
                raise KeyError(f"{directory}: sample {token} has no LIDAR_TOP key frame")
            lidar = data["LIDAR_TOP"]
            lidar_calib = calibs[lidar["calibrated_sensor_token"]]
            lidar_pose = poses[lidar["ego_pose_token"]]
            cameras = {}
            for channel, sd in data.items():
                calib = calibs[sd["calibrated_sensor_token"]]
                if not channel.startswith("CAM") or not calib.get("camera_intrinsic"):
                    continue
                pose = poses[sd["ego_pose_token"]]
                cameras[channel] = CameraInfo(
                    name=channel,
                    image_path=_norm_path(sd["filename"]),
                    intrinsics=np.asarray(calib["camera_intrinsic"], dtype=np.float64),
                    sensor2ego=Pose.from_fields(calib["translation"], calib["rotation"], name=f"{channel} sensor2ego"),
                    ego2global=Pose.from_fields(pose["translation"], pose["rotation"], name=f"{channel} ego2global"),
                )
            out.append(
                SampleInfo(
                    token=token,
                    scene=scene_name,
                    scene_token=scene["token"],
                    timestamp=int(sample["timestamp"]),
                    lidar_path=_norm_path(lidar["filename"]),
                    lidar2ego=Pose.from_fields(lidar_calib["translation"], lidar_calib["rotation"], name="lidar2ego"),
                    ego2global=Pose.from_fields(lidar_pose["translation"], lidar_pose["rotation"], name="ego2global"),
                    cameras=cameras,
                )
            )
            token = sample.get("next", "")
    return out
