"""gaussrender: supervise 3D semantic occupancy in 2D with differentiable Gaussian rendering.

Five-minute tour::

    import gaussrender as gr
    grid = gr.OCC3D_NUSCENES                      # range, voxel size, classes, defaults
    loss_fn = gr.GaussRenderLoss(grid)            # the plug-in loss
    out = loss_fn(logits, labels, intrinsics=K, cam_from_grid=T, image_size=(900, 1600))
    out["loss"].backward()

Lower level: :func:`voxels_to_gaussians`, :class:`Cameras`, :func:`render`.
Evaluation: :class:`OccupancyMetrics`, :class:`RayIoU` (:mod:`gaussrender.metrics`).
Data: :mod:`gaussrender.data` (Occ3D, SurroundOcc, SSCBench-KITTI360 readers).
Models: :mod:`gaussrender.models` (TPVFormer, SurroundOcc); training: :mod:`gaussrender.train`.
Pictures: :func:`make_scene` (procedural scenes), :mod:`gaussrender.viz`.
"""

from importlib import metadata as _metadata

from . import camera_strategies, data, losses3d, metrics, models, viz
from ._checks import set_checks
from .camera_strategies import NUSCENES_CAMERA_WEIGHTS, apply_strategy, bev_camera, nuscenes_rig
from .cameras import Cameras, look_at
from .gaussians import Gaussians, voxels_to_gaussians
from .grid import OCC3D_NUSCENES, PRESETS, SSCBENCH_KITTI360, SURROUNDOCC_NUSCENES, VoxelGrid, get_grid
from .loss import GaussRenderLoss, RenderLossOptions, gauss_render_loss
from .metrics import OccupancyMetrics, RayIoU
from .render import RenderResult, available_backends, render
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
    "PRESETS",
    "get_grid",
    "Cameras",
    "look_at",
    "render",
    "RenderResult",
    "available_backends",
    "Gaussians",
    "voxels_to_gaussians",
    "GaussRenderLoss",
    "gauss_render_loss",
    "RenderLossOptions",
    "bev_camera",
    "nuscenes_rig",
    "apply_strategy",
    "NUSCENES_CAMERA_WEIGHTS",
    "camera_strategies",
    "make_scene",
    "degrade",
    "OccupancyMetrics",
    "RayIoU",
    "metrics",
    "data",
    "models",
    "losses3d",
    "viz",
    "set_checks",
    "__version__",
]
