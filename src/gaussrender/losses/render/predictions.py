"""Step 3 of :func:`~gaussrender.gauss_render_loss`, the options' part: what the predicted
Gaussians' opacity and rendered features are made of (``opacity``, ``classes`` of
:class:`~gaussrender.losses.render.options.RenderLossOptions`), before
:func:`~gaussrender.render.gaussians.build_predictions` builds them.

The release's defaults (``"sharpened"``, ``"joint"``) pass the inputs through unchanged.
"""

from __future__ import annotations

import torch

from ...geometry.grid import VoxelGrid
from ...render.gaussians import sharpen
from .options import RenderLossOptions

__all__ = ["prediction_inputs"]


def prediction_inputs(
    grid: VoxelGrid, logits: torch.Tensor, opacity: torch.Tensor | None, options: RenderLossOptions
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, opacity)`` to build the predicted Gaussians from (``logits [B, C, X, Y, Z]``,
    ``opacity [B, X, Y, Z]`` or None), differentiable with respect to both inputs.

    * ``opacity="linear"`` without an ``opacity`` volume: the volume ``1 - p_empty`` of the
      joint softmax (the release's ``1 - sharpen(p_empty)`` is built by ``build_predictions``
      itself when ``opacity`` stays None);
    * ``classes="conditional"``: the empty class's logit becomes ``-inf``, so the rendered
      features are ``p_c / (1 - p_empty)`` over the other classes (``softmax`` of the rest), and
      the opacity is made here from the *joint* ``p_empty`` (sharpened or linear, as the
      option says) unless a volume is given.
    """
    if options.classes == "joint" and (options.opacity == "sharpened" or opacity is not None):
        return logits, opacity
    if opacity is None:
        p_empty = torch.softmax(logits, dim=1)[:, grid.empty_index]
        opacity = 1.0 - (p_empty if options.opacity == "linear" else sharpen(p_empty))
    if options.classes == "conditional":
        logits = logits.index_fill(1, torch.tensor([grid.empty_index], device=logits.device), float("-inf"))
    return logits, opacity
