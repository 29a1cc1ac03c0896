"""Voxel grids of the occupancy benchmarks.

A :class:`VoxelGrid` says where the voxels are (metres, in the benchmark's ego/LiDAR frame,
x forward, y left, z up), what their labels mean and how GaussRender renders them by
default. Dataset differences live here as data, never as ``if dataset == ...`` branches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from .._checks import MAX_COORDINATE, MAX_SCALE, check_int, check_real

__all__ = [
    "VoxelGrid",
    "OCC3D_NUSCENES",
    "SURROUNDOCC_NUSCENES",
    "SSCBENCH_KITTI360",
    "OCC3D_WAYMO",
    "OPENOCC_NUSCENES",
    "NUSCENES_OCCUPANCY",
    "SEMANTICKITTI",
    "SYNTHETIC_SMALL",
    "SYNTHETIC_MEDIUM",
    "PRESETS",
    "NUSCENES_CLASSES",
    "OCC3D_WAYMO_CLASSES",
    "OPENOCC_CLASSES",
    "SEMANTICKITTI_CLASSES",
    "get_grid",
]

#: The 16 nuScenes occupancy classes shared by Occ3D and SurroundOcc (without others/free/empty).
NUSCENES_CLASSES = (
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
)


@dataclass(frozen=True)
class VoxelGrid:
    """A regular voxel grid and its label set.

    Attributes:
        name: short identifier, the preset's name (``"occ3d"``, ``"surroundocc"``, ``"kitti360"``,
            ``"occ3d_waymo"``, ``"openocc"``, ``"nuscenes_occupancy"``, ``"semantickitti"``).
        range_min: (x, y, z) of the grid's lower corner, metres.
        range_max: (x, y, z) of the grid's upper corner, metres.
        voxel_size: edge length of a cubic voxel, metres.
        shape: number of voxels (X, Y, Z).
        class_names: one name per class index.
        empty_index: the class index of free space.
        ignore_index: label of voxels that carry no supervision.
        gaussian_scale: default isotropic standard deviation of a voxel's Gaussian, metres.
        camera_strategy: default strategy to move the sampled sensor camera.
        semantic_classes: class indices averaged by mIoU (every class but ``empty_index``).

    Raises:
        TypeError, ValueError: naming the field: ranges not finite or beyond 1e6 m,
            ``voxel_size`` not finite and > 0, ``gaussian_scale`` not in ``(0, 1e4]``,
            a shape that is not 3 positive ints, or a range that disagrees with
            ``shape x voxel_size``.
    """

    name: str
    range_min: tuple[float, float, float]
    range_max: tuple[float, float, float]
    voxel_size: float
    shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    empty_index: int
    ignore_index: int = 255
    gaussian_scale: float = 0.27
    camera_strategy: Literal["sensor", "elevated", "random", "stereo", "trajectory", "drive"] = "sensor"
    semantic_classes: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        # every field is a Python value: all checks are cheap and always run
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")
        for fname in ("range_min", "range_max", "shape"):
            value = getattr(self, fname)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
                raise ValueError(f"{fname} must be 3 values (x, y, z), got {value!r}")
        object.__setattr__(
            self,
            "range_min",
            tuple(
                check_real(f"range_min[{i}]", v, -MAX_COORDINATE, MAX_COORDINATE, unit="metres")
                for i, v in enumerate(self.range_min)
            ),
        )
        object.__setattr__(
            self,
            "range_max",
            tuple(
                check_real(f"range_max[{i}]", v, -MAX_COORDINATE, MAX_COORDINATE, unit="metres")
                for i, v in enumerate(self.range_max)
            ),
        )
        object.__setattr__(self, "shape", tuple(check_int(f"shape[{i}]", v, 1) for i, v in enumerate(self.shape)))
        object.__setattr__(
            self, "voxel_size", check_real("voxel_size", self.voxel_size, 0.0, low_open=True, unit="metres")
        )
        object.__setattr__(
            self,
            "gaussian_scale",
            check_real("gaussian_scale", self.gaussian_scale, 0.0, MAX_SCALE, low_open=True, unit="metres"),
        )
        if (
            isinstance(self.class_names, (str, bytes))
            or not isinstance(self.class_names, Sequence)
            or not all(isinstance(c, str) for c in self.class_names)
            or not self.class_names
        ):
            raise ValueError(f"class_names must be a non-empty sequence of str, got {self.class_names!r}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "empty_index", check_int("empty_index", self.empty_index))
        object.__setattr__(self, "ignore_index", check_int("ignore_index", self.ignore_index))
        for i in range(3):
            extent = self.range_max[i] - self.range_min[i]
            expected = self.shape[i] * self.voxel_size
            if abs(extent - expected) > 1e-4 * max(1.0, abs(expected)):
                raise ValueError(
                    f"VoxelGrid {self.name!r}: range along axis {i} is {extent} m but shape "
                    f"{self.shape[i]} x voxel_size {self.voxel_size} = {expected} m"
                )
        if not 0 <= self.empty_index < self.num_classes:
            raise ValueError(f"empty_index must be in [0, {self.num_classes}), got {self.empty_index}")
        if 0 <= self.ignore_index < self.num_classes:
            raise ValueError(
                f"ignore_index {self.ignore_index} must not be a class index (num_classes={self.num_classes})"
            )
        if not self.semantic_classes:
            object.__setattr__(
                self,
                "semantic_classes",
                tuple(c for c in range(self.num_classes) if c != self.empty_index),
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def extent(self) -> tuple[float, float, float]:
        """Size of the grid along x, y, z in metres."""
        (x0, y0, z0), (x1, y1, z1) = self.range_min, self.range_max
        return (x1 - x0, y1 - y0, z1 - z0)

    @property
    def center(self) -> tuple[float, float, float]:
        """Centre of the grid's box in metres."""
        (x0, y0, z0), (x1, y1, z1) = self.range_min, self.range_max
        return (0.5 * (x1 + x0), 0.5 * (y1 + y0), 0.5 * (z1 + z0))

    def voxel_centers(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Centres of all voxels, ``[X, Y, Z, 3]`` metres: ``range_min + (index + 0.5) * voxel_size``."""
        axes = [torch.arange(n, device=device, dtype=torch.float64) for n in self.shape]
        ix, iy, iz = torch.meshgrid(*axes, indexing="ij")
        idx = torch.stack([ix, iy, iz], dim=-1)
        lo = torch.tensor(self.range_min, device=device, dtype=torch.float64)
        return (lo + (idx + 0.5) * self.voxel_size).to(dtype)

    def voxel_index(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer voxel index of points ``[..., 3]`` (metres) and a mask of points inside."""
        lo = torch.tensor(self.range_min, device=points.device, dtype=points.dtype)
        idx = torch.floor((points - lo) / self.voxel_size).long()
        size = torch.tensor(self.shape, device=points.device)
        inside = ((idx >= 0) & (idx < size)).all(dim=-1)
        return idx, inside


OCC3D_NUSCENES = VoxelGrid(
    name="occ3d",
    range_min=(-40.0, -40.0, -1.0),
    range_max=(40.0, 40.0, 5.4),
    voxel_size=0.4,
    shape=(200, 200, 16),
    class_names=("others",) + NUSCENES_CLASSES + ("free",),
    empty_index=17,
    gaussian_scale=0.27,
    camera_strategy="sensor",
)

SURROUNDOCC_NUSCENES = VoxelGrid(
    name="surroundocc",
    range_min=(-50.0, -50.0, -5.0),
    range_max=(50.0, 50.0, 3.0),
    voxel_size=0.5,
    shape=(200, 200, 16),
    class_names=("empty",) + NUSCENES_CLASSES,
    empty_index=0,
    gaussian_scale=0.25,
    camera_strategy="trajectory",
)

SSCBENCH_KITTI360 = VoxelGrid(
    name="kitti360",
    range_min=(0.0, -25.6, -2.0),
    range_max=(51.2, 25.6, 4.4),
    voxel_size=0.2,
    shape=(256, 256, 32),
    class_names=(
        "empty",
        "car",
        "bicycle",
        "motorcycle",
        "truck",
        "other-vehicle",
        "person",
        "road",
        "parking",
        "sidewalk",
        "other-ground",
        "building",
        "fence",
        "vegetation",
        "terrain",
        "pole",
        "traffic-sign",
        "other-structure",
        "other-object",
    ),
    empty_index=0,
    gaussian_scale=0.10,
    camera_strategy="sensor",
)


#: Occ3D-Waymo's 15 classes (label ids 0-14, the order of the Occ3D README's list); the files store
#: free space as 23, the readers move it to 15 (what the release's data loaders do).
OCC3D_WAYMO_CLASSES = (
    "general_object",
    "vehicle",
    "pedestrian",
    "sign",
    "cyclist",
    "traffic_light",
    "pole",
    "construction_cone",
    "bicycle",
    "motorcycle",
    "building",
    "vegetation",
    "tree_trunk",
    "road",
    "walkable",
)

OCC3D_WAYMO = VoxelGrid(
    name="occ3d_waymo",
    range_min=(-40.0, -40.0, -1.0),
    range_max=(40.0, 40.0, 5.4),
    voxel_size=0.4,
    shape=(200, 200, 16),
    class_names=OCC3D_WAYMO_CLASSES + ("free",),
    empty_index=15,
    gaussian_scale=0.27,  # Occ3D-nuScenes' value: the same 0.4 m voxels
    camera_strategy="sensor",
)

#: OpenOcc v2's 16 classes (ids 0-15, OccNet's ``occ_class_names``); 16 is free.
OPENOCC_CLASSES = (
    "car",
    "truck",
    "trailer",
    "bus",
    "construction_vehicle",
    "bicycle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "barrier",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
)

OPENOCC_NUSCENES = VoxelGrid(
    name="openocc",
    range_min=(-40.0, -40.0, -1.0),
    range_max=(40.0, 40.0, 5.4),
    voxel_size=0.4,
    shape=(200, 200, 16),
    class_names=OPENOCC_CLASSES + ("free",),
    empty_index=16,
    gaussian_scale=0.27,  # Occ3D-nuScenes' value: the same grid
    camera_strategy="sensor",
)

NUSCENES_OCCUPANCY = VoxelGrid(
    name="nuscenes_occupancy",
    range_min=(-51.2, -51.2, -5.0),
    range_max=(51.2, 51.2, 3.0),
    voxel_size=0.2,
    shape=(512, 512, 40),
    class_names=("empty",) + NUSCENES_CLASSES,
    empty_index=0,
    # half the voxel, the ratio of the release's SurroundOcc (0.25 m at 0.5 m) and KITTI-360 (0.10 m at 0.2 m)
    gaussian_scale=0.10,
    # the release's choice for SurroundOcc, the closest benchmark it trained on (surround nuScenes, 0 = empty)
    camera_strategy="trajectory",
)

#: SemanticKITTI SSC's 19 classes (learning ids 1-19 of ``semantic-kitti.yaml``); 0 is empty.
SEMANTICKITTI_CLASSES = (
    "car",
    "bicycle",
    "motorcycle",
    "truck",
    "other-vehicle",
    "person",
    "bicyclist",
    "motorcyclist",
    "road",
    "parking",
    "sidewalk",
    "other-ground",
    "building",
    "fence",
    "vegetation",
    "trunk",
    "terrain",
    "pole",
    "traffic-sign",
)

SEMANTICKITTI = VoxelGrid(
    name="semantickitti",
    range_min=(0.0, -25.6, -2.0),
    range_max=(51.2, 25.6, 4.4),
    voxel_size=0.2,
    shape=(256, 256, 32),
    class_names=("empty",) + SEMANTICKITTI_CLASSES,
    empty_index=0,
    gaussian_scale=0.10,  # SSCBench-KITTI360's value: the same grid
    camera_strategy="sensor",
)


def _coarser_occ3d(name: str, shape: tuple[int, int, int]) -> VoxelGrid:
    """Occ3D's range and classes on a coarser ``shape``; the Gaussian scale grows with the
    voxel (0.27 m at 0.4 m voxels), so that a voxel's Gaussian covers the same fraction of it."""
    voxel = OCC3D_NUSCENES.extent[0] / shape[0]
    return VoxelGrid(
        name=name,
        range_min=OCC3D_NUSCENES.range_min,
        range_max=OCC3D_NUSCENES.range_max,
        voxel_size=voxel,
        shape=shape,
        class_names=OCC3D_NUSCENES.class_names,
        empty_index=OCC3D_NUSCENES.empty_index,
        gaussian_scale=OCC3D_NUSCENES.gaussian_scale * voxel / OCC3D_NUSCENES.voxel_size,
        camera_strategy=OCC3D_NUSCENES.camera_strategy,
    )


#: Occ3D's range and classes at 1.6 m voxels (50x50x4): CPU-sized experiments on synthetic data.
SYNTHETIC_SMALL = _coarser_occ3d("synthetic_small", (50, 50, 4))
#: Occ3D's range and classes at 0.8 m voxels (100x100x8).
SYNTHETIC_MEDIUM = _coarser_occ3d("synthetic_medium", (100, 100, 8))

PRESETS: dict[str, VoxelGrid] = {
    g.name: g
    for g in (
        OCC3D_NUSCENES,
        SURROUNDOCC_NUSCENES,
        SSCBENCH_KITTI360,
        OCC3D_WAYMO,
        OPENOCC_NUSCENES,
        NUSCENES_OCCUPANCY,
        SEMANTICKITTI,
        SYNTHETIC_SMALL,
        SYNTHETIC_MEDIUM,
    )
}


def get_grid(grid: VoxelGrid | str) -> VoxelGrid:
    """Return ``grid`` itself, or the preset named by it (``"occ3d"``, ``"surroundocc"``,
    ``"kitti360"``, ``"occ3d_waymo"``, ``"openocc"``, ``"nuscenes_occupancy"``,
    ``"semantickitti"``, ``"synthetic_small"``, ``"synthetic_medium"``)."""
    if isinstance(grid, VoxelGrid):
        return grid
    if isinstance(grid, str) and grid.lower() in PRESETS:
        return PRESETS[grid.lower()]
    raise ValueError(f"grid must be a VoxelGrid or one of {sorted(PRESETS)}, got {grid!r}")
