"""Evaluation metrics of semantic occupancy: voxel IoU/mIoU, RayIoU and rendered-view metrics.

All are :class:`torchmetrics.Metric` objects holding integer counts pooled over the whole
dataset (``update`` per batch, ``compute`` once, ``reset``), summed across processes when
``torch.distributed`` is initialised.
"""

from .occupancy import (
    CONVENTIONS,
    OCC3D_CONVENTION,
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
    "CONVENTIONS",
    "RayIoU",
    "RenderedViewMetrics",
    "RENDER_CONVENTIONS",
    "lidar_ray_directions",
]
