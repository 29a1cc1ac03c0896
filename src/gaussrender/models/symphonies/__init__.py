"""Symphonies (Jiang et al., CVPR 2024): semantic scene completion from one image with instance queries.

Pipeline (``base`` follows the release's SSCBench-KITTI-360 configuration):

1. **Image encoder** (the release wraps a MaskDINO R50): ResNet-50 (stages at strides 4,
   8, 16, 32; BatchNorm frozen) and MaskDINO's pixel decoder, a 6-layer multi-scale
   deformable transformer encoder (256-d, 8 heads, 4 points, FFN 2048, post-norm, sine
   positions + level embeddings) over the strides 32, 16, 8 and an extra stride-64 level.
   The decoder reads three maps, each projected to ``embed_dims`` (1x1 conv, BatchNorm,
   ReLU, 1x1 conv): the ResNet's stride-4 map and the encoder's stride-32 and stride-16
   outputs (what the release's ``(feats[0], *multi_scale_feats[:2])`` selects, since
   MaskDINO orders its levels low resolution first).
2. **Scene queries**: a learned embedding per voxel of the scene volume (grid / 2 in x
   and y, grid / 4 in z: 128x128x8 on KITTI-360) plus a factorised learned position.
3. **Depth-based voxel proposals**: every pixel of the given depth map is lifted to the
   grid frame; the scene voxels hit by at least one pixel read the image features through
   deformable attention at the projection of their centre (3 levels, 4 points).
4. **Contextual instance queries**: ``num_queries`` learned queries, each with a learned
   image point (sigmoid, normalised image coordinates); its 3D reference is that pixel
   lifted with the depth map.
5. **Symphonies layers** (3; the last skips the query update): instance queries read the
   image (deformable attention around their point); the scene voxels inside the camera's
   view cross-attend to the instance queries (multi-head attention), then to the scene
   itself through deformable attention on the volume squeezed to 2D (z folded into
   x: a ``[X * Z, Y]`` map); the instance queries then read the squeezed scene at their
   3D reference and self-attend. After the last layer an ASPP (dilations 1, 3) refines
   the volume.
6. **Head**: a 3x3x3 transposed convolution doubling z, one doubling every axis (each
   with BatchNorm and ReLU), a 1x1x1 classifier; logits at the full grid. In training
   every layer's volume is decoded (``aux_logits``, deepest first).

Depth maps are an input: ``depth [B, 1, H_d, W_d]``, metres along the optical axis
(z-depth), any resolution (the intrinsics are rescaled to it), ``<= 0`` or non-finite
where unknown. The release uses MobileStereoNet disparities of the KITTI-360 stereo
pair, converted to depth (see :mod:`gaussrender.data.kitti360`).

Differences from the release are listed in ``docs/models.md``.
"""

from .attention import DeformableAttention
from .geometry import lift_depth, squeeze_points, squeeze_volume
from .model import Symphonies
from .sizes import SYMPHONIES_SIZES, SymphoniesSize

__all__ = [
    "Symphonies",
    "SymphoniesSize",
    "SYMPHONIES_SIZES",
    "DeformableAttention",
    "lift_depth",
    "squeeze_volume",
    "squeeze_points",
]
