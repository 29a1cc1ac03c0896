"""Differentiable N-channel rendering of isotropic 3D Gaussians.

* :mod:`.gaussians`: voxels -> :class:`Gaussians` (means, opacities, features, scale), for
  predictions and ground truth.
* :mod:`.dispatch`: :func:`render`, the one entry point and its contract; it checks the inputs
  and picks a backend.
* :mod:`.result`: :class:`RenderResult`, what every backend returns.
* private: ``_project`` (projection and tile binning shared by the backends), ``_torch``
  (vectorised PyTorch), ``_triton`` and ``_triton_kernels`` (fused GPU kernels, imported only
  when used).
"""

from ._project import CULL_MODES
from .dispatch import available_backends, render
from .gaussians import Gaussians, voxels_to_gaussians
from .result import RenderResult

__all__ = ["render", "RenderResult", "available_backends", "Gaussians", "voxels_to_gaussians", "CULL_MODES"]
