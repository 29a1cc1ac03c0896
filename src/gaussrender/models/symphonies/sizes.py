"""The sizes of Symphonies (:data:`SYMPHONIES_SIZES`) and its scene volume's downsampling."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SymphoniesSize", "SYMPHONIES_SIZES", "SCENE_DOWNSAMPLE"]


@dataclass(frozen=True)
class SymphoniesSize:
    """Hyper-parameters of one Symphonies size (see :data:`SYMPHONIES_SIZES`)."""

    backbone_depth: int
    backbone_width: int
    frozen_stages: int
    norm_eval: bool
    pixel_dims: int  # MaskDINO pixel decoder width
    pixel_layers: int
    pixel_heads: int
    pixel_ffn: int
    pixel_points: int
    gn_groups: int
    embed_dims: int
    num_queries: int
    num_layers: int
    num_heads: int
    num_points: int
    aspp_dilations: tuple[int, ...]


SYMPHONIES_SIZES: dict[str, SymphoniesSize] = {
    "base": SymphoniesSize(
        backbone_depth=50,
        backbone_width=64,
        frozen_stages=-1,
        norm_eval=True,
        pixel_dims=256,
        pixel_layers=6,
        pixel_heads=8,
        pixel_ffn=2048,
        pixel_points=4,
        gn_groups=32,
        embed_dims=128,
        num_queries=100,
        num_layers=3,
        num_heads=8,
        num_points=4,
        aspp_dilations=(1, 3),
    ),
    "tiny": SymphoniesSize(
        backbone_depth=18,
        backbone_width=16,
        frozen_stages=-1,
        norm_eval=False,
        pixel_dims=32,
        pixel_layers=1,
        pixel_heads=4,
        pixel_ffn=64,
        pixel_points=2,
        gn_groups=8,
        embed_dims=16,
        num_queries=8,
        num_layers=2,
        num_heads=4,
        num_points=2,
        aspp_dilations=(1, 3),
    ),
}

#: Scene volume = grid shape divided by these factors (rounded up): the release's
#: ``project_scale=2`` and ``downsample_z=2``.
SCENE_DOWNSAMPLE = (2, 2, 4)
