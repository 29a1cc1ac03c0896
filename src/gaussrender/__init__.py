"""gaussrender: supervise 3D semantic occupancy in 2D with differentiable Gaussian rendering.

Five-minute tour::

    import gaussrender as gr
    grid = gr.OCC3D_NUSCENES                      # range, voxel size, classes, defaults
    loss_fn = gr.GaussRenderLoss(grid)            # the plug-in loss
    out = loss_fn(logits, labels, intrinsics=K, cam_from_grid=T, image_size=(900, 1600))
    out["loss"].backward()

Lower level: :func:`voxels_to_gaussians`, :class:`Cameras`, :func:`render`.
Layout: :mod:`gaussrender.geometry` (grid, cameras, rigs, camera strategies, transforms, rays),
:mod:`gaussrender.render` (voxels to Gaussians, the renderer), :mod:`gaussrender.losses`
(the render loss in :mod:`gaussrender.losses.render`, the 3D losses), :mod:`gaussrender.metrics`,
:mod:`gaussrender.data`, :mod:`gaussrender.models`, :mod:`gaussrender.train`, :mod:`gaussrender.scene`,
:mod:`gaussrender.commands`.
Evaluation: :class:`OccupancyMetrics`, :class:`RayIoU` (:mod:`gaussrender.metrics`).
Data: :mod:`gaussrender.data` (Occ3D, SurroundOcc, SSCBench-KITTI360 readers).
Models: :mod:`gaussrender.models` (TPVFormer, SurroundOcc); training: :mod:`gaussrender.train`.
Pictures: :func:`make_scene` (procedural scenes), :mod:`gaussrender.viz`.
"""

from importlib import metadata as _metadata

from . import data, geometry, losses, metrics, models, viz
from ._checks import set_checks
from .geometry import (
    NUSCENES_CAMERA_WEIGHTS,
    NUSCENES_OCCUPANCY,
    OCC3D_NUSCENES,
    OCC3D_WAYMO,
    OPENOCC_NUSCENES,
    PRESETS,
    SEMANTICKITTI,
    SSCBENCH_KITTI360,
    SURROUNDOCC_NUSCENES,
    Cameras,
    VoxelGrid,
    adjacent_cam_from_grid,
    bev_camera,
    camera_strategies,
    get_grid,
    look_at,
    nuscenes_rig,
    points_in_boxes,
    project_points,
    voxels_from_points,
)
from .geometry.camera_strategies import apply_strategy
from .losses import GaussRenderLoss, RenderLossOptions, gauss_render_loss
from .losses import occupancy as losses3d  # the 3D losses' public name before losses/ existed
from .losses import scal as losses_scal  # likewise, MonoScene's SSC losses
from .metrics import OccupancyMetrics, RayIoU
from .render import Gaussians, RenderResult, available_backends, render, voxels_to_gaussians
from .scene import degrade, make_scene

try:  # the installed distribution's version: pyproject.toml is its one source
    __version__ = _metadata.version("gaussrender")
except _metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

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
    "render",
    "RenderResult",
    "available_backends",
    "Gaussians",
    "voxels_to_gaussians",
    "project_points",
    "voxels_from_points",
    "points_in_boxes",
    "adjacent_cam_from_grid",
    "GaussRenderLoss",
    "gauss_render_loss",
    "RenderLossOptions",
    "bev_camera",
    "nuscenes_rig",
    "apply_strategy",
    "NUSCENES_CAMERA_WEIGHTS",
    "camera_strategies",
    "geometry",
    "make_scene",
    "degrade",
    "OccupancyMetrics",
    "RayIoU",
    "metrics",
    "data",
    "models",
    "losses",
    "losses3d",
    "losses_scal",
    "viz",
    "set_checks",
    "__version__",
]
