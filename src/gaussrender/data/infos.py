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

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .._io import atomic_write_text
from ..camera_strategies import NUSCENES_CAMERA_NAMES

from ._geometry import Pose

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

# Everything a BEVDet/mmdet3d info pickle legitimately needs: numpy arrays and scalars.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self._path}: refusing to unpickle {module}.{name}; info files may hold only "
                "numpy arrays/dtypes and plain containers"
            )
        return super().find_class(module, name)


def safe_pickle_load(path: str | Path) -> Any:
    """Unpickle ``path`` admitting only numpy arrays/dtypes/scalars and plain Python containers.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        pickle.UnpicklingError: the file references any other class or function.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"info file not found: {path}")
    with path.open("rb") as f:
        return _RestrictedUnpickler(f, path).load()


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
        raise TypeError(f"{where}: expected a dict per sample, got {type(record).__name__}")
    token = str(_require(record, "token", where))
    where = f"{where} (token {token})"
    cams_raw = _require(record, "cams", where)
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
        scene=_scene_name(record),
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
        ValueError, KeyError, TypeError: unknown suffix, malformed structure (the message names
            the file, the sample token and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"info file not found: {path}")
    if path.suffix == ".pkl":
        data = safe_pickle_load(path)
    elif path.suffix == ".json":
        with path.open() as f:
            data = json.load(f)
    else:
        raise ValueError(f"info file must end in .pkl or .json, got {path}")
    if isinstance(data, Mapping):
        records = _require(data, "infos", str(path))
    else:
        records = data
    if not isinstance(records, (list, tuple)):
        raise TypeError(f"{path}: 'infos' must be a list of samples, got {type(records).__name__}")
    return [_parse_sample(r, f"{path} infos[{i}]") for i, r in enumerate(records)]


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
    if not path.is_file():
        raise FileNotFoundError(f"nuScenes table not found: {path}")
    with path.open() as f:
        table = json.load(f)
    if not isinstance(table, list):
        raise TypeError(f"{path}: expected a JSON list of records, got {type(table).__name__}")
    return table


def load_nuscenes_tables(dataroot: str | Path, version: str = "v1.0-trainval") -> list[SampleInfo]:
    """Read key frames straight from the official tables ``<dataroot>/<version>/*.json``.

    Uses ``scene``, ``sample``, ``sample_data``, ``calibrated_sensor``, ``ego_pose`` and
    ``sensor`` (for channel names). Samples come scene by scene in time order; each has the
    key-frame LIDAR_TOP pose and the key-frame image of every camera. Image paths are the
    tables' ``filename`` (relative to ``dataroot``).

    Raises:
        FileNotFoundError: a table is missing (the message names it).
        KeyError: a sample lacks its LIDAR_TOP key frame.
    """
    directory = Path(dataroot) / version
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
    for scene in scenes:
        token = scene["first_sample_token"]
        while token:
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
                    scene=scene["name"],
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
