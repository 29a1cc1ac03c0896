"""Benchmark readers: Occ3D-nuScenes, SurroundOcc-nuScenes, SSCBench-KITTI360, Occ3D-Waymo,
OpenOcc v2, nuScenes-Occupancy (OpenOccupancy) and SemanticKITTI SSC.

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
from .openocc import OpenOccNuScenes, openocc_label_path, read_openocc_labels, read_openocc_voxels, write_openocc_sample
from .openoccupancy import (
    OpenOccupancyNuScenes,
    nuscenes_occupancy_label_path,
    read_nuscenes_occupancy_voxels,
    write_nuscenes_occupancy_sample,
)
from .pose import Pose
from .semantickitti import (
    SEMANTICKITTI_LEARNING_MAP,
    SEMANTICKITTI_SPLITS,
    SemanticKITTI,
    SemanticKittiCalibration,
    read_semantickitti_calibration,
    read_semantickitti_invalid,
    read_semantickitti_occluded,
    read_semantickitti_occupancy,
    read_semantickitti_raw_labels,
    read_semantickitti_voxels,
    write_semantickitti_sample,
)
from .surroundocc import (
    SurroundOccNuScenes,
    read_surroundocc_labels,
    surroundocc_label_path,
    write_surroundocc_sample,
)
from .waymo import (
    Occ3DWaymo,
    occ3d_waymo_label_path,
    read_occ3d_waymo_labels,
    read_occ3d_waymo_voxels,
    write_occ3d_waymo_sample,
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
    "Occ3DWaymo",
    "occ3d_waymo_label_path",
    "read_occ3d_waymo_labels",
    "read_occ3d_waymo_voxels",
    "write_occ3d_waymo_sample",
    "OpenOccNuScenes",
    "openocc_label_path",
    "read_openocc_labels",
    "read_openocc_voxels",
    "write_openocc_sample",
    "OpenOccupancyNuScenes",
    "nuscenes_occupancy_label_path",
    "read_nuscenes_occupancy_voxels",
    "write_nuscenes_occupancy_sample",
    "SEMANTICKITTI_LEARNING_MAP",
    "SEMANTICKITTI_SPLITS",
    "SemanticKITTI",
    "SemanticKittiCalibration",
    "read_semantickitti_calibration",
    "read_semantickitti_invalid",
    "read_semantickitti_occluded",
    "read_semantickitti_occupancy",
    "read_semantickitti_raw_labels",
    "read_semantickitti_voxels",
    "write_semantickitti_sample",
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
