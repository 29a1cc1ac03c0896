"""Evaluation metrics of semantic occupancy: voxel IoU/mIoU, RayIoU and rendered-view metrics.

All are :class:`torchmetrics.Metric` objects holding integer counts pooled over the whole
dataset (``update`` per batch, ``compute`` once, ``reset``), summed across processes when
``torch.distributed`` is initialised.

Every metric is built the same way: the labels' grid first, a :class:`~gaussrender.VoxelGrid`
or a preset name (``"occ3d"``, ``"surroundocc"``, ``"kitti360"``, ``"occ3d_waymo"``, ``"openocc"``,
``"nuscenes_occupancy"``, ``"semantickitti"``), then keyword-only options,
e.g. ``OccupancyMetrics("occ3d")``, ``RayIoU(grid, thresholds=(1.0, 2.0, 4.0))``,
``RenderedViewMetrics(grid, image_scale=0.5)``.
"""

from .occupancy import (
    CONVENTIONS,
    OCC3D_CONVENTION,
    OPENOCCUPANCY_CONVENTION,
    SEMANTICKITTI_CONVENTION,
    SSCBENCH_CONVENTION,
    SURROUNDOCC_CONVENTION,
    IoUConvention,
    OccupancyMetrics,
)
from .rayiou import RayIoU, lidar_ray_directions
from .rendered import RENDER_CONVENTIONS, RenderedViewMetrics

__all__ = [
    "OccupancyMetrics",
    "IoUConvention",
    "OCC3D_CONVENTION",
    "SURROUNDOCC_CONVENTION",
    "SSCBENCH_CONVENTION",
    "OPENOCCUPANCY_CONVENTION",
    "SEMANTICKITTI_CONVENTION",
    "CONVENTIONS",
    "RayIoU",
    "RenderedViewMetrics",
    "RENDER_CONVENTIONS",
    "lidar_ray_directions",
]
