"""Geometry shared by every other part: the voxel grid, cameras and where they are, rigid
transforms, and rays through the grid.

* :mod:`.grid`: :class:`VoxelGrid` (range, voxel size, classes) and the benchmark presets.
* :mod:`.cameras`: :class:`Cameras` (pinhole or orthographic views), :func:`look_at`,
  :func:`scale_intrinsics`.
* :mod:`.rigs`: the nuScenes-like six-camera rig, its camera names and odds, the BEV camera.
* :mod:`.camera_strategies`: seeded, batched moves of cameras (``sensor``, ``elevated``,
  ``random``, ``stereo``, ``trajectory``, ``drive``).
* :mod:`.transforms`: quaternions <-> matrices, axis rotations, poses from info files.
* :mod:`.raycast`: exact voxel traversal (first hits, voxels crossed), used by RayIoU and by
  the procedural scene's visibility masks.
* :mod:`.origins`: the LiDAR positions of a scene's frames (RayIoU's ray origins).
* :mod:`.adjacent`: :func:`adjacent_cam_from_grid` (cameras of frame t ± k against frame t's grid).
* :mod:`.boxes`: :func:`points_in_boxes` (points of annotated objects).
* :mod:`.points`: point clouds as supervision: :func:`project_points` (sparse depth/label
  images), :func:`voxels_from_points` (sparse voxel labels).
"""

from . import camera_strategies
from .adjacent import adjacent_cam_from_grid
from .boxes import points_in_boxes
from .cameras import Cameras, look_at, scale_intrinsics
from .grid import (
    NUSCENES_OCCUPANCY,
    OCC3D_NUSCENES,
    OCC3D_WAYMO,
    OPENOCC_NUSCENES,
    PRESETS,
    SEMANTICKITTI,
    SSCBENCH_KITTI360,
    SURROUNDOCC_NUSCENES,
    VoxelGrid,
    get_grid,
)
from .origins import ray_origins
from .points import project_points, voxels_from_points
from .raycast import RayHits, first_hits
from .rigs import NUSCENES_CAMERA_NAMES, NUSCENES_CAMERA_WEIGHTS, bev_camera, nuscenes_rig
from .transforms import matrix_to_quaternion, pose_matrix, quaternion_to_matrix

__all__ = [
    "VoxelGrid",
    "OCC3D_NUSCENES",
    "SURROUNDOCC_NUSCENES",
    "SSCBENCH_KITTI360",
    "OCC3D_WAYMO",
    "OPENOCC_NUSCENES",
    "NUSCENES_OCCUPANCY",
    "SEMANTICKITTI",
    "PRESETS",
    "get_grid",
    "Cameras",
    "look_at",
    "scale_intrinsics",
    "NUSCENES_CAMERA_NAMES",
    "NUSCENES_CAMERA_WEIGHTS",
    "bev_camera",
    "nuscenes_rig",
    "camera_strategies",
    "pose_matrix",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "RayHits",
    "first_hits",
    "ray_origins",
    "project_points",
    "voxels_from_points",
    "points_in_boxes",
    "adjacent_cam_from_grid",
]
