"""What to build: :class:`ModelConfig`, a plain frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..geometry.grid import OCC3D_NUSCENES, VoxelGrid, get_grid
from .backbone import RESNET_BLOCKS

__all__ = ["ModelConfig", "MODEL_NAMES", "MODEL_SIZES"]

MODEL_NAMES = ("tpvformer", "surroundocc", "symphonies")
MODEL_SIZES = ("tiny", "base")


@dataclass(frozen=True)
class ModelConfig:
    """Configuration of a reference occupancy model.

    Attributes:
        name: ``"tpvformer"``, ``"surroundocc"`` or ``"symphonies"`` (monocular: ``num_cameras=1``,
            and its call takes a ``depth`` map).
        size: ``"base"`` (the published sizes, derived from the grid) or ``"tiny"`` (a few
            hundred thousand parameters, for CPU tests and smoke runs).
        grid: the output voxel grid (a :class:`~gaussrender.VoxelGrid` or a preset name);
            logits come out at its full ``shape`` with ``grid.num_classes`` channels.
        num_cameras: cameras per sample ``V`` (the models learn one embedding per camera).
        image_size: ``(H, W)`` of the input images, pixels; intrinsics refer to it.
        learned_opacity: add the opacity head (``out["opacity"]``).
        backbone_depth: override the ResNet depth (18, 34, 50, 101); None keeps the
            size's default (101 for base, 18 for tiny).
        dropout: dropout of the attention and feed-forward blocks.
    """

    name: Literal["tpvformer", "surroundocc", "symphonies"]
    size: Literal["tiny", "base"] = "base"
    grid: VoxelGrid = OCC3D_NUSCENES
    num_cameras: int = 6
    image_size: tuple[int, int] = (896, 1600)
    learned_opacity: bool = False
    backbone_depth: int | None = None
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise ValueError(f"name must be one of {MODEL_NAMES}, got {self.name!r}")
        if self.size not in MODEL_SIZES:
            raise ValueError(f"size must be one of {MODEL_SIZES}, got {self.size!r}")
        object.__setattr__(self, "grid", get_grid(self.grid))
        if isinstance(self.num_cameras, bool) or not isinstance(self.num_cameras, int) or self.num_cameras <= 0:
            raise ValueError(f"num_cameras must be a positive int, got {self.num_cameras!r}")
        size = tuple(self.image_size)
        if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
            raise ValueError(f"image_size must be (H, W) positive ints in pixels, got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        if self.backbone_depth is not None and self.backbone_depth not in RESNET_BLOCKS:
            raise ValueError(
                f"backbone_depth must be None or one of {sorted(RESNET_BLOCKS)}, got {self.backbone_depth!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
