"""A degraded "prediction" of a labelled scene: :func:`degrade` returns logits whose errors look
like a weak model's (objects grown or shrunk, similar classes confused, in smooth patches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_integer, check_shape
from ..geometry.grid import OCC3D_NUSCENES, VoxelGrid, get_grid

__all__ = ["degrade"]


# classes a weak model confuses, by name; pairs absent from a grid are skipped
_CONFUSIONS = {
    "car": "truck",
    "truck": "car",
    "bus": "truck",
    "trailer": "truck",
    "construction_vehicle": "truck",
    "motorcycle": "bicycle",
    "bicycle": "motorcycle",
    "pedestrian": "barrier",
    "traffic_cone": "barrier",
    "barrier": "manmade",
    "driveable_surface": "other_flat",
    "other_flat": "driveable_surface",
    "sidewalk": "driveable_surface",
    "terrain": "vegetation",
    "vegetation": "manmade",
    "manmade": "vegetation",
}


def _smooth_field(shape: tuple[int, int], cells: int, generator: torch.Generator) -> torch.Tensor:
    """``[X, Y]`` smooth noise in [0, 1]: uniform values on a coarse lattice, bilinearly
    upsampled, so degradations come in patches rather than salt-and-pepper."""
    coarse = torch.rand(1, 1, cells, cells, generator=generator)
    return F.interpolate(coarse, size=shape, mode="bilinear", align_corners=True)[0, 0]


def degrade(
    labels: torch.Tensor,
    seed: int,
    grid: VoxelGrid | str = OCC3D_NUSCENES,
    *,
    confidence: float = 6.0,
    free_confidence: float = 10.0,
    noise: float = 1.0,
    morph_fraction: float = 0.25,
    confuse_fraction: float = 0.12,
) -> torch.Tensor:
    """A plausible imperfect prediction of ``labels``, as logits.

    Built in three steps, each in random smooth patches of the scene (so errors look like a
    model's, not like noise): objects grow by one voxel into free space in a
    ``morph_fraction`` of the area and shrink by one voxel in another ``morph_fraction``
    (thin objects may vanish); in a ``confuse_fraction`` of the area classes are swapped for
    a similar one (car → truck, sidewalk → driveable surface, ...). The logits are
    ``margin · onehot + noise · N(0, 1)`` with ``margin = free_confidence`` where free space is
    predicted and ``confidence · (1 - 0.3 · r / r_max)`` elsewhere: objects are confident
    near the ego (horizontal distance ``r`` from the frame's origin) and softer far away.
    Ignore voxels (255) are predicted free.

    Args:
        labels: ``[X, Y, Z]`` integer classes (``grid.ignore_index`` allowed).
        seed: seed of the torch generator.
        grid: the voxel grid.
        confidence: logit margin of a predicted occupied class near the ego.
        free_confidence: logit margin of predicted free space.
        noise: standard deviation of the Gaussian logit noise.
        morph_fraction: fraction of the area dilated, and of the area eroded, in [0, 0.5].
        confuse_fraction: fraction of the area whose classes are swapped, in [0, 1].

    Returns:
        ``[C, X, Y, Z]`` float32 logits.
    """
    grid = get_grid(grid)
    check_shape("labels", labels, list(grid.shape))
    check_integer("labels", labels)
    if not 0 <= morph_fraction <= 0.5:
        raise ValueError(f"morph_fraction must be in [0, 0.5], got {morph_fraction}")
    if not 0 <= confuse_fraction <= 1:
        raise ValueError(f"confuse_fraction must be in [0, 1], got {confuse_fraction}")
    lab = labels.long().clone()
    bad = (lab != grid.ignore_index) & ((lab < 0) | (lab >= grid.num_classes))
    if bool(bad.any()):
        raise ValueError(
            f"labels must be class indices in [0, {grid.num_classes}) or {grid.ignore_index}, "
            f"got values {sorted(set(lab[bad].tolist()))[:5]}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    empty, c = grid.empty_index, grid.num_classes
    lab[lab == grid.ignore_index] = empty
    xy = grid.shape[:2]

    def patches(fraction: float) -> torch.Tensor:
        field = _smooth_field(xy, 16, gen)
        thr = torch.quantile(field.flatten(), 1.0 - fraction) if fraction > 0 else torch.tensor(2.0)
        return (field >= thr)[:, :, None]

    # one-voxel morphology in x and y over the 8 neighbours; outside the grid counts as free
    x, y = lab.shape[:2]
    padded = F.pad(lab[None].float(), (0, 0, 1, 1, 1, 1), value=float(empty))[0].long()
    shifts = [padded[1 + dx : 1 + dx + x, 1 + dy : 1 + dy + y] for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
    # dilation: a free voxel takes the (largest) class of an occupied neighbour
    grown = torch.full_like(lab, -1)
    for s in shifts:
        grown = torch.maximum(grown, torch.where(s == empty, torch.full_like(s, -1), s))
    dilated = torch.where((lab == empty) & (grown >= 0), grown, lab)
    # erosion: an object voxel next to any other class turns free (ground classes stay)
    interior = torch.ones_like(lab, dtype=torch.bool)
    for s in shifts:
        interior &= s == lab
    is_ground = torch.zeros_like(lab, dtype=torch.bool)
    for name in ("driveable_surface", "other_flat", "sidewalk", "terrain"):
        if name in grid.class_names:
            is_ground |= lab == grid.class_names.index(name)
    eroded = torch.where(interior | is_ground, lab, torch.full_like(lab, empty))

    pred = lab.clone()
    dil, ero = patches(morph_fraction), patches(morph_fraction)
    pred = torch.where(dil.expand_as(pred), dilated, pred)
    pred = torch.where(ero.expand_as(pred) & ~dil.expand_as(pred), eroded, pred)
    swap = torch.arange(c)
    for a, b in _CONFUSIONS.items():
        if a in grid.class_names and b in grid.class_names:
            swap[grid.class_names.index(a)] = grid.class_names.index(b)
    conf = patches(confuse_fraction).expand_as(pred)
    pred = torch.where(conf, swap[pred], pred)

    r = grid.voxel_centers()[..., :2].norm(dim=-1)
    scale = confidence * (1.0 - 0.3 * r / r.max())  # [X, Y, Z]
    # free space is predicted with a larger margin, as trained models do: otherwise every free
    # voxel would keep a faint opacity and the prediction would render as fog
    scale = torch.where(pred == empty, torch.full_like(scale, free_confidence), scale)
    logits = noise * torch.randn((c,) + tuple(grid.shape), generator=gen)
    logits.scatter_add_(0, pred[None], scale[None])
    return logits
