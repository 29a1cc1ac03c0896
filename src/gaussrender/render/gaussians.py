"""Voxels to Gaussians: one isotropic Gaussian per voxel, at the voxel centre (docs/method.md#gaussians)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from .._checks import (
    MAX_SCALE,
    check_finite,
    check_floating,
    check_integer,
    check_real,
    check_shape,
    checks_enabled,
)
from ..geometry.grid import VoxelGrid, get_grid
from ._project import ALPHA_MIN

__all__ = ["Gaussians", "voxels_to_gaussians", "build_gaussians", "build_predictions", "sharpen", "check_labels"]


@dataclass
class Gaussians:
    """A set of ``N`` isotropic Gaussians, ready for :func:`gaussrender.render`.

    Attributes:
        means: ``[N, 3]`` voxel centres, metres, grid frame.
        opacities: ``[N]`` in ``[1/255, 1]`` (fainter voxels can never be seen and are dropped).
        features: ``[N, C]`` class probabilities (prediction) or one-hot labels (ground truth).
        scales: ``[N]`` standard deviation, metres.
        voxel_index: ``[N, 3]`` integer (x, y, z) index of each Gaussian's voxel.
    """

    means: torch.Tensor
    opacities: torch.Tensor
    features: torch.Tensor
    scales: torch.Tensor
    voxel_index: torch.Tensor

    def __len__(self) -> int:
        return int(self.means.shape[0])


def sharpen(p: torch.Tensor) -> torch.Tensor:
    """The release's sharpening of the empty-class probability: ``p²`` below 0.5, ``1 - (1-p)²`` above."""
    return torch.where(p < 0.5, p * p, 1.0 - (1.0 - p) * (1.0 - p))


def check_labels(name: str, labels: torch.Tensor, grid: VoxelGrid, batch: bool = False) -> None:
    """Labels must be integers in ``[0, num_classes)`` or ``grid.ignore_index``, shaped like the grid."""
    check_integer(name, labels)
    check_shape(name, labels, (["B"] if batch else []) + list(grid.shape))
    if checks_enabled() and labels.numel():
        bad = (labels < 0) | ((labels >= grid.num_classes) & (labels != grid.ignore_index))
        if bool(bad.any()):
            values = torch.unique(labels[bad])[:5].tolist()
            raise ValueError(
                f"{name} must hold class indices in [0, {grid.num_classes}) or the ignore index "
                f"{grid.ignore_index}; found {values}"
            )


def voxels_to_gaussians(
    grid: VoxelGrid | str,
    *,
    logits: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    opacity: torch.Tensor | None = None,
    scale: float | None = None,
) -> Gaussians:
    """Turn one sample's voxels into Gaussians.

    Ground truth (``labels`` only): every voxel that is neither empty nor ignore, one-hot
    features, opacity 1.

    Prediction (``logits`` given): every voxel whose label is not ignore (all voxels when
    ``labels`` is None), features ``softmax(logits)``, opacity ``1 - sharpen(p_empty)`` or the
    given ``opacity`` volume (e.g. a learned opacity head). Voxels whose opacity is below 1/255
    are dropped: the renderer could never show them, so this is exact.

    Args:
        grid: the voxel grid (or a preset name).
        logits: ``[C, X, Y, Z]`` class scores, C = ``grid.num_classes``.
        labels: ``[X, Y, Z]`` integer labels, ``grid.ignore_index`` for unsupervised voxels.
        opacity: ``[X, Y, Z]`` in ``[0, 1]``; replaces the opacity derived from ``p_empty``.
        scale: Gaussian standard deviation in metres, in ``(0, 1e4]`` (default
            ``grid.gaussian_scale``).

    Returns:
        :class:`Gaussians`; differentiable w.r.t. ``logits`` and ``opacity``.

    Example:
        >>> import torch, gaussrender as gr
        >>> labels = torch.full(gr.OCC3D_NUSCENES.shape, 17)
        >>> labels[100, 100, 2] = 4  # one car voxel
        >>> g = gr.voxels_to_gaussians(gr.OCC3D_NUSCENES, labels=labels)
        >>> g.means.tolist(), g.features.argmax(1).tolist()
        ([[0.20000000298023224, 0.20000000298023224, 0.0]], [4])
    """
    grid = get_grid(grid)
    if labels is not None:
        check_labels("labels", labels, grid)
    if logits is None and labels is None:
        raise ValueError("voxels_to_gaussians needs logits (prediction) or labels (ground truth)")
    scale = (
        grid.gaussian_scale
        if scale is None
        else check_real("scale", scale, 0.0, MAX_SCALE, low_open=True, unit="metres")
    )

    if logits is not None:
        check_floating("logits", logits)
        check_shape("logits", logits, [grid.num_classes] + list(grid.shape))
        check_finite("logits", logits)
        if labels is not None and labels.device != logits.device:
            raise ValueError(f"labels is on {labels.device} but logits on {logits.device}")
        if opacity is not None:
            check_floating("opacity", opacity)
            check_shape("opacity", opacity, list(grid.shape))
            check_finite("opacity", opacity)
            if checks_enabled() and bool(((opacity < 0) | (opacity > 1)).any()):
                raise ValueError("opacity must lie in [0, 1]")
    return build_gaussians(grid, logits=logits, labels=labels, opacity=opacity, scale=scale)


def build_gaussians(
    grid: VoxelGrid,
    *,
    logits: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    opacity: torch.Tensor | None = None,
    scale: float,
    dtype: torch.dtype = torch.float32,
) -> Gaussians:
    """:func:`voxels_to_gaussians` for inputs already validated (``GaussRenderLoss`` checks its
    whole batch once): the same result, without the value checks. ``dtype`` is that of the
    ground-truth Gaussians (labels only); a prediction takes the logits' dtype."""
    if logits is None:
        assert labels is not None
        keep = (labels != grid.empty_index) & (labels != grid.ignore_index)
        # one host sync (the number of Gaussians is data); reading the labels through the
        # index and comparing with arange avoid a second one (boolean indexing) and
        # one_hot's own value checks (a read-back on the CPU)
        index = keep.nonzero()
        values = labels[tuple(index.t())].long()
        features = (values[:, None] == torch.arange(grid.num_classes, device=labels.device)).to(dtype)
        opacities = torch.ones(values.shape[0], device=labels.device, dtype=dtype)
        return _assemble(grid, index, opacities, features, scale)

    batched_opacity = None if opacity is None else opacity[None]
    return build_predictions(grid, logits[None], None if labels is None else labels[None], batched_opacity, scale)[0]


class _GatherColumns(torch.autograd.Function):
    """``[B, C, V]`` -> one ``[C, N_b]`` gather of columns per sample, whose backward writes every
    sample's gradient into ONE zero tensor ``[B, C, V]``.

    Per-sample ``x.unbind(0)[b].index_select(1, idx)`` gives each sample a zero-filled
    full-grid gradient, then stacks them: for Occ3D logits (11.5 M values a sample) two
    full-grid passes and a fresh allocation per sample, in every training step.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, *indices: torch.Tensor):
        ctx.save_for_backward(*indices)
        ctx.shape = x.shape
        return tuple(x[b].index_select(1, idx) for b, idx in enumerate(indices))

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: torch.Tensor):
        indices = ctx.saved_tensors
        grad = grads[0].new_zeros(ctx.shape)
        for b, (g, idx) in enumerate(zip(grads, indices, strict=True)):
            if g is not None:
                grad[b].index_add_(1, idx, g)
        return (grad, *([None] * len(indices)))


def build_predictions(
    grid: VoxelGrid,
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    opacity: torch.Tensor | None,
    scale: float,
) -> list[Gaussians]:
    """:func:`build_gaussians` for a batch of predictions (inputs validated): ``logits [B, C, X,
    Y, Z]``, ``labels [B, X, Y, Z]`` or None, ``opacity [B, X, Y, Z]`` or None; one
    :class:`Gaussians` per sample, differentiable w.r.t. ``logits`` and ``opacity``."""
    batch = logits.shape[0]
    scores = logits.flatten(2)  # [B, C, X*Y*Z]
    if opacity is None:
        # which voxels are visible is decided without autograd on the whole grid (one pass);
        # the softmax and its gradient are then computed only for the kept voxels, a small
        # fraction of the grid once a model is trained
        with torch.no_grad():
            alpha_all = 1.0 - sharpen(torch.exp(scores[:, grid.empty_index] - torch.logsumexp(scores, dim=1)))
    else:
        alpha_all = opacity.flatten(1).to(scores.dtype)
    keep = alpha_all.detach() >= ALPHA_MIN
    if labels is not None:
        keep = keep & (labels.flatten(1) != grid.ignore_index)
    # the host syncs: how many voxels are visible is data (one per sample)
    flats = []
    for b in range(batch):
        flats.append(keep[b].nonzero()[:, 0])
    columns = _GatherColumns.apply(scores, *flats)
    if opacity is not None:
        alphas = _GatherColumns.apply(alpha_all[:, None], *flats)
    out = []
    for b, flat in enumerate(flats):
        index = torch.stack(torch.unravel_index(flat, grid.shape), dim=-1)
        probs = torch.softmax(columns[b], dim=0).t()  # [N, C]
        alpha = 1.0 - sharpen(probs[:, grid.empty_index]) if opacity is None else alphas[b][0]
        out.append(_assemble(grid, index, alpha, probs, scale))
    return out


def _assemble(
    grid: VoxelGrid, index: torch.Tensor, opacities: torch.Tensor, features: torch.Tensor, scale: float
) -> Gaussians:
    dtype = features.dtype
    # per axis with Python scalars: a constant tensor would be a host-to-device copy (a
    # stream synchronisation on CUDA) at every call
    centre = (index.double() + 0.5) * grid.voxel_size
    means = torch.stack([centre[:, i] + grid.range_min[i] for i in range(3)], dim=-1).to(dtype)
    return Gaussians(
        means=means,
        opacities=opacities.to(dtype),
        features=features,
        scales=torch.full((index.shape[0],), scale, dtype=dtype, device=index.device),
        voxel_index=index,
    )
