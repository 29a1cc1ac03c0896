"""Losses: the GaussRender render loss and the models' own 3D losses.

* :mod:`gaussrender.losses.render`: :class:`GaussRenderLoss` (render prediction and ground
  truth into cameras and a BEV, L1 on the images; the paper's contribution);
* :mod:`gaussrender.losses.occupancy`: the voxel losses (class-weighted cross-entropy,
  Lovasz-softmax, multi-scale :class:`Occupancy3DLoss`);
* :mod:`gaussrender.losses.scal`: MonoScene's scene-class affinity and frustum losses;
* :mod:`gaussrender.losses.class_weights`: cross-entropy class weights (counted, or the
  release's tables).
"""

from . import class_weights, occupancy, render, scal
from .occupancy import Occupancy3DLoss, cross_entropy_3d, lovasz_softmax
from .render import GaussRenderLoss, RenderLossOptions, gauss_render_loss

__all__ = [
    "GaussRenderLoss",
    "RenderLossOptions",
    "gauss_render_loss",
    "Occupancy3DLoss",
    "cross_entropy_3d",
    "lovasz_softmax",
    "render",
    "occupancy",
    "scal",
    "class_weights",
]
