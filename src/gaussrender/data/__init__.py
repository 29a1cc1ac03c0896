"""Benchmark readers: Occ3D-nuScenes, SurroundOcc-nuScenes, SSCBench-KITTI360.

Each dataset yields dicts with ``token``, ``scene``, ``camera_names``, ``image_paths``,
``intrinsics`` ``[V, 3, 3]`` (pixels), ``cam_from_grid`` ``[V, 4, 4]`` (grid frame → OpenCV
camera, metres), ``labels`` int64 ``[X, Y, Z]`` and, where the benchmark has them,
``mask_camera``/``mask_lidar`` bool ``[X, Y, Z]``, ``origins`` ``[K, 3]`` (RayIoU) and
``images`` float32 ``[V, 3, H, W]``. :func:`collate` batches them. Writers produce each
layout, e.g. to build synthetic datasets and tests. :func:`loss_cameras` turns one infos
entry (or a list of them) into the loss's ``intrinsics``, ``cam_from_grid`` and ``image_size``.
"""

from .boxes import BOX_FORMATS
from .collate import collate
from .files import DataFileError
from .frames import adjacent_cam_from_ego, adjacent_samples
from .images import load_image, stored_image_size
from .infos import (
    CAMERA_NAMES,
    CameraInfo,
    SampleInfo,
    load_infos,
    load_nuscenes_tables,
    safe_pickle_load,
    write_infos_json,
)
from .kitti360 import (
    KITTI360_SPLITS,
    Kitti360Calibration,
    SSCBenchKITTI360,
    kitti360_sequence,
    read_kitti360_calibration,
    read_kitti360_depth,
    read_kitti360_invalid,
    read_kitti360_labels,
    write_kitti360_depth,
    write_kitti360_sample,
)
from .lidar import (
    LIDARSEG_CLASSES,
    LIDARSEG_TO_OCC3D,
    OCC3D_TO_LIDARSEG,
    lidarseg_to_occ3d,
    load_lidar,
    read_lidar_points,
    read_lidarseg_labels,
    write_lidar_points,
    write_lidarseg_labels,
)
from .loss_cameras import LossCameras, loss_cameras
from .nuscenes import NUSCENES_IMAGE_SIZE, NuScenesOccupancy, cam_from_ego, group_scenes, resolve_data_path
from .occ3d import Occ3DNuScenes, occ3d_label_path, read_occ3d_labels, write_occ3d_sample
from .pose import Pose
from .surroundocc import (
    SurroundOccNuScenes,
    read_surroundocc_labels,
    surroundocc_label_path,
    write_surroundocc_sample,
)

__all__ = [
    "loss_cameras",
    "LossCameras",
    "DataFileError",
    "CAMERA_NAMES",
    "CameraInfo",
    "SampleInfo",
    "Pose",
    "load_infos",
    "load_nuscenes_tables",
    "safe_pickle_load",
    "write_infos_json",
    "load_image",
    "stored_image_size",
    "NUSCENES_IMAGE_SIZE",
    "NuScenesOccupancy",
    "cam_from_ego",
    "group_scenes",
    "resolve_data_path",
    "Occ3DNuScenes",
    "occ3d_label_path",
    "read_occ3d_labels",
    "write_occ3d_sample",
    "SurroundOccNuScenes",
    "read_surroundocc_labels",
    "surroundocc_label_path",
    "write_surroundocc_sample",
    "KITTI360_SPLITS",
    "Kitti360Calibration",
    "SSCBenchKITTI360",
    "kitti360_sequence",
    "read_kitti360_calibration",
    "read_kitti360_depth",
    "write_kitti360_depth",
    "read_kitti360_invalid",
    "read_kitti360_labels",
    "write_kitti360_sample",
    "collate",
    "BOX_FORMATS",
    "LIDARSEG_CLASSES",
    "LIDARSEG_TO_OCC3D",
    "lidarseg_to_occ3d",
    "load_lidar",
    "read_lidar_points",
    "read_lidarseg_labels",
    "OCC3D_TO_LIDARSEG",
    "write_lidar_points",
    "write_lidarseg_labels",
    "adjacent_samples",
    "adjacent_cam_from_ego",
]
