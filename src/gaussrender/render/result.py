"""What every backend returns: :class:`RenderResult`.

Its own module so that the backends (``_torch``, ``_triton``) and :func:`render` (``dispatch``)
share it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RenderResult"]


@dataclass
class RenderResult:
    """Rendered images of ``V`` views.

    Attributes:
        features: ``[V, H, W, C]`` blended features plus ``T · background``.
        depth: ``[V, H, W]`` alpha-weighted camera depth, metres (not normalised).
        alpha: ``[V, H, W]`` accumulated opacity ``1 - T``.
    """

    features: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor
