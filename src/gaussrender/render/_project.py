"""Projection of isotropic 3D Gaussians into the image planes (shared by all backends).

Everything here is plain differentiable PyTorch; the backends differ only in how they blend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..geometry.cameras import Cameras

__all__ = [
    "Projected",
    "project_gaussians",
    "GaussianSet",
    "Splats",
    "splat",
    "TileBins",
    "bin_splats",
    "ALPHA_MIN",
    "ALPHA_MAX",
    "T_MIN",
    "DILATION",
    "CULL_MODES",
]

#: A Gaussian contributes to a pixel only where its alpha reaches 1/255 (3DGS rasteriser).
ALPHA_MIN = 1.0 / 255.0
#: Alpha is clamped to 0.99 so that transmittance never reaches exactly 0.
ALPHA_MAX = 0.99
#: A pixel stops blending before a Gaussian would bring its transmittance below 1e-4.
T_MIN = 1e-4
#: Screen-space low-pass filter added to the 2D covariance, pixels².
DILATION = 0.3
#: Which Gaussians a view keeps: every one whose alpha >= 1/255 footprint reaches a pixel
#: centre (``"footprint"``, exact splatting), or only those whose centre projects strictly
#: inside the image, ``0.5 < u < W - 0.5`` and ``0.5 < v < H - 0.5`` (``"center"``, what the
#: GaussRender release does for its camera views before splatting).
CULL_MODES = ("footprint", "center")


@dataclass
class Projected:
    """Per-view screen-space Gaussians; every tensor has leading dims ``[V, N]``.

    Attributes:
        means2d: ``[V, N, 2]`` (u, v) pixels.
        conics: ``[V, N, 3]`` (a, b, c) of the inverse 2D covariance ``[[a, b], [b, c]]``.
        depths: ``[V, N]`` camera-space z, metres.
        extents: ``[V, N, 2]`` half-size (u, v) of the box holding every point where the
            Gaussian's alpha can reach 1/255, pixels (already padded against rounding).
        valid: ``[V, N]`` bool: in front of ``near``, opaque enough, and its footprint box
            holds at least one pixel centre.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    extents: torch.Tensor
    valid: torch.Tensor


def project_gaussians(
    means: torch.Tensor,
    opacities: torch.Tensor,
    scales: torch.Tensor,
    cameras: Cameras,
    cull: str = "footprint",
) -> Projected:
    """Project Gaussians ``means [N, 3]`` (metres, world frame) with isotropic ``scales [N]``.

    ``cull`` is one of :data:`CULL_MODES`; ``"center"`` additionally drops, per view, every
    Gaussian whose projected centre is not strictly inside ``(0.5, W - 0.5) x (0.5, H - 0.5)``.

    The 2D covariance is ``Σ' = s² J Jᵀ + 0.3 I`` with ``J`` the Jacobian of the projection
    at the mean, whose direction is clamped as in the 3DGS rasteriser: ``x/z`` to
    ``±1.3 · W / (2 fx)`` and ``y/z`` to ``±1.3 · H / (2 fy)`` (1.3 tan of the half field of
    view, symmetric around the optical axis, independent of the principal point).
    """
    w = cameras.cam_from_world.to(means.dtype)
    k = cameras.intrinsics.to(means.dtype)
    # cam[v, n, i] = Σ_j R[v, i, j] mean[n, j] + t[v, i], summed in this order by elementwise
    # products: a matrix product (einsum) rounds differently with the thread count, and the
    # images would then depend on it
    rot = w[:, None, :3, :3]
    cam = (
        rot[..., 0] * means[None, :, None, 0]
        + rot[..., 1] * means[None, :, None, 1]
        + rot[..., 2] * means[None, :, None, 2]
        + w[:, None, :3, 3]
    )
    z = cam[..., 2]
    in_front = z > cameras.near
    fx, s, cx = k[:, 0, 0, None], k[:, 0, 1, None], k[:, 0, 2, None]
    fy, cy = k[:, 1, 1, None], k[:, 1, 2, None]
    if cameras.model == "pinhole":
        # Gaussians behind the near plane are dropped; give them a harmless depth so that
        # neither the forward nor the gradients see a division by ~0.
        z_safe = torch.where(in_front, z, torch.ones_like(z))
        inv_z = 1.0 / z_safe
        x, y = cam[..., 0] * inv_z, cam[..., 1] * inv_z
        # As in the 3DGS rasteriser, the Jacobian is evaluated at the mean's direction
        # clamped to +-1.3 tan(fov/2), tan(fovx/2) = W / (2 fx) (y: H / (2 fy)): far
        # off-screen, the linearisation would otherwise smear near-plane Gaussians across the
        # whole image. The limits are symmetric around the optical axis whatever the principal
        # point (with cx != W/2, e.g. the KITTI-360 BEV, they are not the image borders + 15%).
        # |f|: a mirrored camera (fx < 0, flip augmentation) has the same field of view
        lim_x = 1.3 * cameras.width / (2.0 * fx.abs())
        lim_y = 1.3 * cameras.height / (2.0 * fy.abs())
        xc = torch.minimum(torch.maximum(x, -lim_x), lim_x)
        yc = torch.minimum(torch.maximum(y, -lim_y), lim_y)
        # J = A @ [[1/z, 0, -x/z], [0, 1/z, -y/z]] with A = [[fx, s], [0, fy]]
        j00 = fx * inv_z
        j01 = s * inv_z
        j02 = -(fx * xc + s * yc) * inv_z
        j11 = fy * inv_z
        j12 = -fy * yc * inv_z
    else:
        x, y = cam[..., 0], cam[..., 1]
        j00 = fx.expand_as(z)
        j01 = s.expand_as(z)
        j02 = torch.zeros_like(z)
        j11 = fy.expand_as(z)
        j12 = torch.zeros_like(z)
    u = fx * x + s * y + cx
    v = fy * y + cy
    s2 = (scales * scales)[None, :]
    cov_xx = s2 * (j00 * j00 + j01 * j01 + j02 * j02) + DILATION
    cov_xy = s2 * (j01 * j11 + j02 * j12)
    cov_yy = s2 * (j11 * j11 + j12 * j12) + DILATION
    det = cov_xx * cov_yy - cov_xy * cov_xy
    conics = torch.stack([cov_yy / det, -cov_xy / det, cov_xx / det], dim=-1)

    # alpha >= 1/255  <=>  opacity * exp(-m²/2) >= 1/255  <=>  m² <= 2 ln(255 opacity),
    # where m is the Mahalanobis distance; the box of that ellipse is exact.
    with torch.no_grad():
        opaque = opacities >= ALPHA_MIN
        r2 = 2.0 * torch.log((opacities.detach() * 255.0).clamp_min(1.0))
        ext = torch.stack([torch.sqrt(r2 * cov_xx.detach()), torch.sqrt(r2 * cov_yy.detach())], dim=-1)
        ext = ext * 1.001 + 0.01  # rounding margin: the per-pixel test decides exactly
        uv = torch.stack([u, v], dim=-1).detach()
        size = torch.tensor([cameras.width, cameras.height], dtype=uv.dtype, device=uv.device)
        lo = torch.ceil(uv - ext - 0.5)
        hi = torch.floor(uv + ext - 0.5)
        on_screen = ((hi >= 0) & (lo <= size - 1) & (lo <= hi)).all(dim=-1)
        valid = in_front & opaque[None, :] & on_screen & torch.isfinite(uv).all(dim=-1)
        if cull == "center":
            valid = valid & ((uv > 0.5) & (uv < size - 0.5)).all(dim=-1)
        elif cull != "footprint":
            raise ValueError(f"cull must be one of {CULL_MODES}, got {cull!r}")
    return Projected(
        means2d=torch.stack([u, v], dim=-1),
        conics=conics,
        depths=z,
        extents=ext,
        valid=valid,
    )


#: Columns of the packed table every backend reads (:class:`Splats`): u, v (pixels), conic
#: a, b, c (pixels⁻²), opacity, camera depth z (metres), then the C features.
COL_U, COL_V, COL_A, COL_B, COL_C, COL_OPACITY, COL_DEPTH = range(7)
FEATURE_COLUMN = 7


@dataclass
class GaussianSet:
    """Gaussians and the views they are rendered into: one member of a batched render call
    (say one sample's prediction and its cameras). Inputs already validated and in the
    compute dtype.

    Attributes:
        means: ``[N, 3]`` centres, metres, world frame.
        opacities: ``[N]`` in ``[0, 1]``.
        features: ``[N, C]``.
        scales: ``[N]`` isotropic standard deviations, metres.
        cameras: the set's views; every set of one call has the same image size.
    """

    means: torch.Tensor
    opacities: torch.Tensor
    features: torch.Tensor
    scales: torch.Tensor
    cameras: Cameras


@dataclass
class Splats:
    """Every visible (view, Gaussian) pair of one render call, packed: what a backend blends.

    The views of all sets are numbered consecutively in set order (set 0's views first). The
    rows of one view are in depth order (a stable sort: equal depths keep the Gaussians' input
    order); rows of different views never meet in a tile, so no order between views is needed.

    Attributes:
        table: ``[Mv, 7 + C]`` differentiable rows u, v, conic a, b, c, opacity, depth,
            features (columns :data:`COL_U` ... :data:`FEATURE_COLUMN`); autograd takes its
            gradient back to every set's means, opacities, features and scales.
        view: ``[Mv]`` int64 view of each row.
        extents: ``[Mv, 2]`` half-size of each row's alpha >= 1/255 box, pixels (no grad).
        num_views, width, height: the call's views and their common image size, pixels.
    """

    table: torch.Tensor
    view: torch.Tensor
    extents: torch.Tensor
    num_views: int
    width: int
    height: int


def splat(sets: Sequence[GaussianSet], cull: str = "footprint") -> Splats:
    """Project every set into its own views and pack the visible pairs (:class:`Splats`).

    One render call of several sets costs one blending pass over all their views: this is how
    :class:`gaussrender.GaussRenderLoss` renders a whole batch (and every camera) at once.

    Raises:
        ValueError: the sets' cameras differ in image size, or no set is given.
    """
    if not sets:
        raise ValueError("sets must hold at least one GaussianSet")
    width, height = sets[0].cameras.width, sets[0].cameras.height
    tables, views, extents = [], [], []
    first_view = 0
    for i, s in enumerate(sets):
        if (s.cameras.width, s.cameras.height) != (width, height):
            raise ValueError(
                f"sets[{i}].cameras are {s.cameras.width}x{s.cameras.height} pixels but sets[0]'s "
                f"{width}x{height}; one render call needs one image size"
            )
        proj = project_gaussians(s.means, s.opacities, s.scales, s.cameras, cull)
        with torch.no_grad():
            view_id, gauss_id = proj.valid.nonzero(as_tuple=True)  # row-major: (view, gauss) order
            order = torch.sort(proj.depths.detach()[view_id, gauss_id], stable=True).indices
            view_id, gauss_id = view_id[order], gauss_id[order]  # depth order (within a view)
            flat = view_id * s.means.shape[0] + gauss_id
        tables.append(
            torch.cat(
                [
                    proj.means2d.reshape(-1, 2).index_select(0, flat),
                    proj.conics.reshape(-1, 3).index_select(0, flat),
                    s.opacities.index_select(0, gauss_id)[:, None],
                    proj.depths.reshape(-1).index_select(0, flat)[:, None],
                    s.features.index_select(0, gauss_id),
                ],
                dim=1,
            )
        )
        views.append(view_id + first_view)
        extents.append(proj.extents.reshape(-1, 2).index_select(0, flat))
        first_view += len(s.cameras)
    one = len(sets) == 1
    return Splats(
        table=tables[0] if one else torch.cat(tables),
        view=views[0] if one else torch.cat(views),
        extents=extents[0] if one else torch.cat(extents),
        num_views=first_view,
        width=width,
        height=height,
    )


@dataclass
class TileBins:
    """(Splat row, tile) pairs of all views, sorted by (view, tile, depth, input index).

    Tiles are numbered ``(view * tiles_y + tile_row) * tiles_x + tile_col``.

    Attributes:
        pair_row: ``[M]`` each (row, tile) pair's row of :attr:`Splats.table`.
        tile_start: ``[V * tiles_y * tiles_x]`` first pair of each tile.
        tile_count: ``[V * tiles_y * tiles_x]`` number of pairs of each tile.
        tiles_x, tiles_y: tiles per image row / column.
    """

    pair_row: torch.Tensor
    tile_start: torch.Tensor
    tile_count: torch.Tensor
    tiles_x: int
    tiles_y: int


@torch.no_grad()
def bin_splats(splats: Splats, tile: int) -> TileBins:
    """List every (row, tile) pair whose footprint box touches the tile, depth-sorted.

    The rows are in depth order within each view (:func:`splat`); their tile pairs are listed
    in that order and stably sorted by tile id alone, which keeps the depth order within each
    tile. The per-pair work is a few sequential passes over ``[M]`` int32 arrays: the (row,
    tile) list of a nearly opaque prediction has millions of entries.
    """
    device = splats.table.device
    width, height = splats.width, splats.height
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    num_tiles = splats.num_views * tiles_x * tiles_y
    uv = splats.table[:, COL_U : COL_V + 1].detach()
    ext = splats.extents
    size = torch.tensor([width, height], device=device, dtype=uv.dtype)
    lo = torch.ceil(uv - ext - 0.5).clamp(min=0)
    hi = torch.minimum(torch.floor(uv + ext - 0.5), size - 1)
    tlo = torch.div(lo.long(), tile, rounding_mode="floor")
    span = torch.div(hi.long(), tile, rounding_mode="floor") - tlo + 1  # [Mv, 2] tiles per axis
    counts = span[:, 0] * span[:, 1]
    # the first tile of each pair's box, and the box width: int32 (tile ids < 2^31)
    base = ((splats.view * tiles_y + tlo[:, 1]) * tiles_x + tlo[:, 0]).int()
    width_tiles = span[:, 0].int().contiguous()
    first = (torch.cumsum(counts, 0) - counts).int()
    entry = torch.repeat_interleave(torch.arange(counts.numel(), device=device, dtype=torch.int32), counts)
    entry_long = entry.long()
    local = torch.arange(entry.numel(), device=device, dtype=torch.int32) - first.index_select(0, entry_long)
    box_w = width_tiles.index_select(0, entry_long)
    row = torch.div(local, box_w, rounding_mode="floor")
    tile_id = base.index_select(0, entry_long) + row * tiles_x + (local - row * box_w)
    # entries are in depth order: a stable sort by tile keeps that order inside every tile
    perm = torch.sort(tile_id, stable=True).indices
    tile_count = torch.bincount(tile_id, minlength=num_tiles)
    return TileBins(
        pair_row=entry_long.index_select(0, perm),
        tile_start=torch.cumsum(tile_count, 0) - tile_count,
        tile_count=tile_count,
        tiles_x=tiles_x,
        tiles_y=tiles_y,
    )
