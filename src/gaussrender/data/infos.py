"""nuScenes calibration and ego poses: BEVDet/mmdet3d-style info files and the official tables.

Three sources give the same :class:`SampleInfo` list:

* an info file ``.pkl`` (BEVDet / mmdet3d v0.x ``{"infos": [...], "metadata": ...}``), read
  with a restricted unpickler that admits only numpy arrays, dtypes and plain containers
  (:mod:`.safe_pickle`);
* the same structure as ``.json`` (what :func:`write_infos_json` writes);
* the official metadata tables ``<dataroot>/<version>/{scene,sample,sample_data,
  calibrated_sensor,ego_pose,sensor}.json``, read directly (no nuscenes-devkit).

Frames (nuScenes): ``sensor2ego`` maps sensor points into the ego frame at that sensor's
timestamp; ``ego2global`` maps that ego frame into the map frame. The LiDAR's pair defines
the sample's reference ego frame (the Occ3D grid frame). Quaternions are (w, x, y, z).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from .._untrusted import brief
from ..geometry.rigs import NUSCENES_CAMERA_NAMES
from .boxes import BOX_FORMATS, parse_info_boxes
from .files import DataFileError, optional_regular_file, read_json, require_regular_file, safe_name
from .pose import Pose
from .safe_pickle import safe_pickle_load

__all__ = [
    "CAMERA_NAMES",
    "CameraInfo",
    "SampleInfo",
    "load_infos",
    "write_infos_json",
    "load_nuscenes_tables",
    "safe_pickle_load",
    "check_unique_tokens",
]

#: nuScenes camera order used everywhere in gaussrender (views ``V`` follow it).
CAMERA_NAMES: tuple[str, ...] = NUSCENES_CAMERA_NAMES


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
        lidarseg_path: the nuScenes-lidarseg label file of the LiDAR key frame as stored
            (``/``-normalised; info files' ``pts_semantic_mask_path`` or ``lidarseg_path``, the
            tables' ``lidarseg.json``), None when absent.
        gt_boxes: ``[M, 7]`` float64 object boxes in the LiDAR frame, ``(x, y, z, l, w, h,
            yaw)`` (see :mod:`gaussrender.data.boxes`), when the infos hold them and the
            reader was given their ``box_format``; else None.
        gt_names: ``M`` class names of ``gt_boxes`` (None when absent).
        gt_velocity: ``[M, 2]`` float64 box velocities, m/s, LiDAR frame x/y (NaN where
            nuScenes has none); None when absent.
        lidar_token: the LIDAR_TOP key frame's sample_data token ("" when unknown): names
            OpenOccupancy's label files (info files' ``lidar_token``, the tables' sample_data).
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
    lidarseg_path: str | None = None
    gt_boxes: np.ndarray | None = None
    gt_names: tuple[str, ...] | None = None
    gt_velocity: np.ndarray | None = None
    lidar_token: str = ""


def _norm_path(p: object) -> str:
    return str(p).replace("\\", "/") if p is not None else ""


def _require(record: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(record, Mapping):
        raise DataFileError(f"{where}: expected a dict holding {key!r}, got {type(record).__name__}")
    if key not in record:
        raise KeyError(f"{where}: missing key {key!r} (has {brief(sorted(str(k) for k in record))})")
    return record[key]


def _intrinsics(value: object, where: str) -> np.ndarray:
    """A calibration ``[3, 3]`` matrix (info files' ``cam_intrinsic``, the tables'
    ``camera_intrinsic``): finite, pinhole (last row ``[0, 0, 1]``), checked alike for both."""
    try:
        k = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: must be a finite 3x3 matrix of numbers, got {type(value).__name__}") from None
    if k.shape != (3, 3) or not np.all(np.isfinite(k)):
        bad = "" if k.shape != (3, 3) else f" with {int((~np.isfinite(k)).sum())} NaN/inf value(s)"
        raise ValueError(f"{where}: must be a finite 3x3 matrix, got shape {k.shape}{bad}")
    if not np.array_equal(k[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"{where}: must be a pinhole matrix with last row [0, 0, 1], got {k[2].tolist()}")
    return k


def check_unique_tokens(samples: list[SampleInfo], source: object, path: Path | None) -> None:
    """Refuse two samples with one token: they would be read, trained on and scored twice,
    and their predictions would overwrite each other (``<token>.npz``)."""
    first: dict[str, int] = {}
    for i, s in enumerate(samples):
        j = first.setdefault(s.token, i)
        if j != i:
            raise DataFileError(
                f"{source}: token {s.token[:64]!r} appears twice (samples {j} and {i}); each sample must "
                "appear once (it would be scored twice)",
                path,
            )


def _scene_name(record: Mapping[str, Any]) -> str:
    # BEVDet infos with occupancy carry scene_name; others only occ_path .../gts/<scene>/<token>.
    if record.get("scene_name"):
        return str(record["scene_name"])
    occ = _norm_path(record.get("occ_path") or "")
    parts = [p for p in occ.split("/") if p]
    if len(parts) >= 2 and parts[-2].startswith("scene-"):
        return parts[-2]
    return str(record.get("scene_token", ""))


def _lidarseg_path(record: Mapping[str, Any], where: str) -> str | None:
    for key in ("pts_semantic_mask_path", "lidarseg_path"):  # mmdet3d's name, then ours
        value = record.get(key)
        if value:
            if not isinstance(value, str):
                raise ValueError(f"{where}: {key} must be a string, got {type(value).__name__}")
            return _norm_path(value)
    return None


def _parse_sample(record: Mapping[str, Any], where: str, box_format: str | None = None) -> SampleInfo:
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
        k = _intrinsics(_require(cam, "cam_intrinsic", cw), f"{cw}: cam_intrinsic")
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
    boxes, names, velocity = parse_info_boxes(record, box_format, where)
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
        lidarseg_path=_lidarseg_path(record, where),
        gt_boxes=boxes,
        gt_names=names,
        gt_velocity=velocity,
        lidar_token=str(record.get("lidar_token", "") or ""),
    )


def load_infos(path: str | Path, *, box_format: str | None = None) -> list[SampleInfo]:
    """Read a BEVDet/mmdet3d-style info file (``.pkl`` or ``.json``) into :class:`SampleInfo` s.

    Accepted top levels: ``{"infos": [...], ...}`` or a bare list of sample dicts. Each sample
    needs ``token``, ``lidar2ego_{translation,rotation}``, ``ego2global_{translation,rotation}``
    and ``cams[<CAM>]`` with ``data_path``, ``cam_intrinsic``, ``sensor2ego_*``,
    ``ego2global_*``. The order of the file is kept. Optional: ``lidar_path``,
    ``pts_semantic_mask_path`` (or ``lidarseg_path``), ``occ_path``, ``scene_name``, ``lidar_token`` and the
    object boxes ``gt_boxes``/``gt_names``/``gt_velocity``.

    Args:
        path: the info file.
        box_format: the layout of the file's ``gt_boxes`` (``"mmdet3d-v1"``: BEVDet and
            mmdetection3d >= 1.0; ``"mmdet3d-v0"``: mmdetection3d 0.x; see
            :mod:`gaussrender.data.boxes`): the two cannot be told apart from the numbers, so
            boxes are read only when it is known. None: the file's own top-level
            ``"box_format"`` when it has one (what :func:`write_infos_json` writes), else the
            boxes are not read (``SampleInfo.gt_boxes`` is None).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown suffix or ``box_format``, or a ``box_format`` that contradicts
            the one the file declares.
        DataFileError: unreadable, corrupt or refused file (see :func:`safe_pickle_load`), a
            token or scene name that is not a plain file name, a missing or malformed field
            (the message names the file, the sample token and the field).
    """
    path = require_regular_file(path, "info file")
    if path.suffix == ".pkl":
        data = safe_pickle_load(path)
    elif path.suffix == ".json":
        data = read_json(path, "info file")
    else:
        raise ValueError(f"info file must end in .pkl or .json, got {path}")
    if box_format is not None and box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be None or one of {BOX_FORMATS}, got {box_format!r}")
    declared = data.get("box_format") if isinstance(data, Mapping) else None
    if declared is not None:
        if declared not in BOX_FORMATS:
            raise DataFileError(f"{path}: unknown box_format {brief(declared)} (expected one of {BOX_FORMATS})", path)
        if box_format is not None and box_format != declared:
            raise ValueError(f"box_format={box_format!r} but {path} declares its boxes {declared!r}")
        box_format = declared
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
            samples.append(_parse_sample(record, where, box_format))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as err:
            raise _named(err, where, path) from err
    check_unique_tokens(samples, path, path)
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
    Boxes are written in the ``"mmdet3d-v1"`` layout, declared at the top level (``box_format``)
    so that :func:`load_infos` reads them back without being told; unknown velocities (NaN)
    are written as ``null``.
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
        if s.lidarseg_path is not None:
            record["pts_semantic_mask_path"] = s.lidarseg_path
        if s.lidar_token:
            record["lidar_token"] = s.lidar_token
        if s.gt_boxes is not None:
            record["gt_boxes"] = np.asarray(s.gt_boxes, dtype=np.float64).tolist()  # our layout is mmdet3d-v1's
            if s.gt_names is not None:
                record["gt_names"] = list(s.gt_names)
            if s.gt_velocity is not None:
                v = np.asarray(s.gt_velocity, dtype=np.float64)
                record["gt_velocity"] = [[None if np.isnan(x) else float(x) for x in row] for row in v]
        infos.append(record)
    top = {"version": version, "quaternion_order": "w,x,y,z", "box_format": "mmdet3d-v1", "infos": infos}
    return atomic_write_text(path, json.dumps(top, allow_nan=False))


#: Largest image side a table may state, pixels (nuScenes: 1600 x 900).
_MAX_IMAGE_SIDE = 1 << 16


def _image_dimensions(record: Mapping[str, Any], where: str) -> None:
    """A camera ``sample_data`` record's ``width``/``height``, when present: whole numbers of
    pixels in [1, 65536] (nuScenes writes 1600 and 900; 0 only for LiDAR and radar rows)."""
    for key in ("width", "height"):
        if key not in record:
            continue
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_IMAGE_SIDE:
            raise ValueError(f"{where}: {key} must be an integer in [1, {_MAX_IMAGE_SIDE}] pixels, got {value!r:.40}")


def _read_table(directory: Path, name: str) -> list[dict[str, Any]]:
    path = directory / f"{name}.json"
    table = read_json(path, "nuScenes table")
    if not isinstance(table, list) or not all(isinstance(r, dict) for r in table):
        raise DataFileError(f"{path}: expected a JSON list of records (objects), got {type(table).__name__}", path)
    return table


def load_nuscenes_tables(dataroot: str | Path, version: str = "v1.0-trainval") -> list[SampleInfo]:
    """Read key frames straight from the official tables ``<dataroot>/<version>/*.json``.

    Uses ``scene``, ``sample``, ``sample_data``, ``calibrated_sensor``, ``ego_pose`` and
    ``sensor`` (for channel names), and ``lidarseg`` when present (nuScenes-lidarseg: the
    LiDAR key frame's label file becomes ``lidarseg_path``). Object boxes are not read from
    the tables (``gt_boxes`` stays None). Samples come scene by scene in time order; each has the
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
    # nuScenes-lidarseg adds lidarseg.json (sample_data_token -> label file) to the same folder
    lidarseg: dict[str, str] = {}
    if optional_regular_file(directory / "lidarseg.json", "nuScenes table"):
        lidarseg = {r["sample_data_token"]: _norm_path(r["filename"]) for r in _read_table(directory, "lidarseg")}

    out: list[SampleInfo] = []
    visited: set[str] = set()
    for scene in scenes:
        scene_name = safe_name(scene["name"], "scene name", f"{directory / 'scene.json'}")
        token = scene["first_sample_token"]
        while token:
            if token in visited:
                raise DataFileError(
                    f"{directory}: sample {brief(token)} is reached twice (a 'next' chain loops)", directory
                )
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
                where = f"{directory / 'calibrated_sensor.json'} {calib.get('token', '?')!s:.64} ({channel})"
                _image_dimensions(sd, f"{directory / 'sample_data.json'} {sd.get('token', '?')!s:.64} ({channel})")
                cameras[channel] = CameraInfo(
                    name=channel,
                    image_path=_norm_path(sd["filename"]),
                    intrinsics=_intrinsics(calib["camera_intrinsic"], f"{where}: camera_intrinsic"),
                    sensor2ego=Pose.from_fields(calib["translation"], calib["rotation"], name=f"{where} sensor2ego"),
                    ego2global=Pose.from_fields(
                        pose["translation"],
                        pose["rotation"],
                        name=f"{directory / 'ego_pose.json'} {pose.get('token', '?')!s:.64} ({channel}) ego2global",
                    ),
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
                    lidarseg_path=lidarseg.get(lidar["token"]) if lidarseg else None,
                    lidar_token=str(lidar["token"]),
                )
            )
            token = sample.get("next", "")
    return out
