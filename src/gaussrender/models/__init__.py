"""Reference camera-only occupancy models in pure PyTorch: TPVFormer, SurroundOcc and Symphonies.

::

    from gaussrender.models import ModelConfig, build_model
    model = build_model(ModelConfig("tpvformer", "base", gr.OCC3D_NUSCENES, num_cameras=6,
                                    image_size=(896, 1600), learned_opacity=True))
    out = model(images, intrinsics, cam_from_grid)   # out["logits"]: [B, C, X, Y, Z]

Building blocks: :func:`ms_deform_attn` (deformable attention with ``grid_sample``),
:class:`ResNet` + :func:`load_torchvision_weights`, :class:`FPN`, :class:`OpacityHead`.
"""

from .backbone import ResNet, load_torchvision_weights
from .build import build_model
from .config import ModelConfig
from .deform_attn import ms_deform_attn
from .fpn import FPN
from .opacity_head import OpacityHead
from .surroundocc import SURROUNDOCC_SIZES, SurroundOcc, SurroundOccSize
from .symphonies import SYMPHONIES_SIZES, Symphonies, SymphoniesSize
from .tpvformer import TPVFORMER_SIZES, TPVFormer, TPVFormerSize

__all__ = [
    "ModelConfig",
    "build_model",
    "TPVFormer",
    "TPVFormerSize",
    "TPVFORMER_SIZES",
    "SurroundOcc",
    "SurroundOccSize",
    "SURROUNDOCC_SIZES",
    "Symphonies",
    "SymphoniesSize",
    "SYMPHONIES_SIZES",
    "ResNet",
    "load_torchvision_weights",
    "FPN",
    "ms_deform_attn",
    "OpacityHead",
]
