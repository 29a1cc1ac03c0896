"""A procedural driving scene in Occ3D format, and a degraded "prediction" of it.

:func:`make_scene` builds, from one integer seed, a street scene on a nuScenes-style grid
(default :data:`gaussrender.OCC3D_NUSCENES`): a road along the ego's x axis with lanes,
optional parking strips and a cross street, sidewalks, grass, trees and bushes, buildings of
varied heights set back from the road, parked and moving cars, trucks (some with trailers),
buses, motorcycles, bicycles, pedestrians and a construction zone fenced by barriers and
traffic cones. It also computes the two visibility masks a real Occ3D ``labels.npz`` carries:

* ``mask_camera``: voxels crossed by rays cast from the six nuScenes camera centres through
  a sub-sampled pixel grid of each camera, up to and including the first occupied voxel;
* ``mask_lidar``: the same from a roof LiDAR (0.94 m ahead of the rear axle, 1.84 m up,
  32 beams from -30.67° to +10.67°, 1° azimuth steps), cast from every ego pose of the short
  trajectory (Occ3D accumulates sweeps over time), expressed in the key frame.

Sub-sampled rays thin out on distant ground, so both masks also include every occupied
surface voxel that has a line of sight to the sensor (cameras: inside the image; LiDAR: from
the key frame, inside the beams' elevation range). Rays walk the grid with the exact voxel
traversal RayIoU uses (:mod:`gaussrender.geometry.raycast`).

:func:`degrade` turns labels into the logits of a plausible imperfect prediction.

Frames: the grid is the key frame's ego frame (metres, x forward along the road, y left,
z up, ``z = 0`` on the ground, which lands in z index 2 of the Occ3D grid). Everything is
drawn from ``numpy.random.default_rng(seed)`` and ``torch.Generator``; the same seed gives the
same scene on every machine.

Modules: :mod:`.make` (:func:`make_scene`, :class:`Scene`), :mod:`.canvas` (painting voxels in
metres, the street layout), :mod:`.paint` (the scene's parts), :mod:`.visibility` (camera and
LiDAR masks), :mod:`.sensors` (simulated LiDAR returns and dense per-pixel depth/class targets),
:mod:`.degrade` (the imperfect prediction).
"""

from .degrade import degrade
from .make import Scene, make_scene
from .sensors import camera_targets, first_entries, lidar_scan
from .visibility import LIDAR_ORIGIN, camera_rays, lidar_rays, line_of_sight, visibility_mask

__all__ = [
    "Scene",
    "make_scene",
    "degrade",
    "visibility_mask",
    "line_of_sight",
    "camera_rays",
    "lidar_rays",
    "LIDAR_ORIGIN",
    "lidar_scan",
    "camera_targets",
    "first_entries",
]
