"""Build a model from a :class:`ModelConfig`."""

from __future__ import annotations

from torch import nn

from .config import ModelConfig

__all__ = ["build_model"]


def build_model(cfg: ModelConfig) -> nn.Module:
    """Return the :class:`TPVFormer`, :class:`SurroundOcc` or :class:`Symphonies` that ``cfg`` describes.

    Example:
        >>> import dataclasses, gaussrender as gr
        >>> from gaussrender.models import ModelConfig, build_model
        >>> grid = dataclasses.replace(gr.OCC3D_NUSCENES, shape=(25, 25, 2), voxel_size=3.2,
        ...                            range_max=(40.0, 40.0, 5.4))
        >>> model = build_model(ModelConfig("tpvformer", "tiny", grid, num_cameras=2, image_size=(64, 96)))
        >>> type(model).__name__
        'TPVFormer'
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if cfg.name == "tpvformer":
        from .tpvformer import TPVFormer

        return TPVFormer(cfg)
    if cfg.name == "symphonies":
        from .symphonies import Symphonies

        return Symphonies(cfg)
    from .surroundocc import SurroundOcc

    return SurroundOcc(cfg)
