"""The GaussRender loss (docs/method.md#loss): render prediction and ground truth, penalise the difference.

One concept a module, in the order a call runs them:

* :mod:`.options`: :class:`RenderLossOptions`, the one source of the options;
* :mod:`.inputs`: step 1, every input validated by name (:func:`validate_inputs`);
* :mod:`.cameras`: step 2, the sampled sensor cameras, the BEV, the 2D targets' cameras;
* :mod:`.renders`: step 4, the batch rendered in few calls and compared per sample;
* :mod:`.terms`: the per-view image terms (and the 2D targets' checks);
* :mod:`.loss`: :func:`gauss_render_loss` (the steps in order) and :class:`GaussRenderLoss`.
"""

from .loss import TARGET_TERMS, TERMS, GaussRenderLoss, gauss_render_loss
from .options import RenderLossOptions

__all__ = ["GaussRenderLoss", "gauss_render_loss", "RenderLossOptions", "TERMS", "TARGET_TERMS"]
