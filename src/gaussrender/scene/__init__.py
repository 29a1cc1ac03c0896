"""A procedural driving scene in Occ3D format, and a degraded "prediction" of it (:mod:`.paint`)."""

from .paint import LIDAR_ORIGIN, Scene, camera_rays, degrade, lidar_rays, line_of_sight, make_scene, visibility_mask

__all__ = [
    "Scene",
    "make_scene",
    "degrade",
    "visibility_mask",
    "line_of_sight",
    "camera_rays",
    "lidar_rays",
    "LIDAR_ORIGIN",
]
