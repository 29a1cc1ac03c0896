"""First occupied voxel along many rays: exact voxel traversal (Amanatides & Woo), vectorised.

All rays advance together, one voxel per iteration of a Python loop; rays that have hit in
every grid, or left the grid, are dropped from the working set, so the cost follows the number
of voxels actually crossed. Pure PyTorch, CPU or GPU, float64 arithmetic.

Conventions (those of the ``dvr`` extension SparseOcc uses for RayIoU):

* coordinates are in voxel units: voxel ``(i, j, k)`` is the cube ``[i, i+1) x [j, j+1) x
  [k, k+1)``; a ray starts in the voxel that contains its origin, and that voxel is tested too;
* the distance of a hit is where the ray *leaves* the hit voxel (not where it enters);
* when two boundaries are crossed at the same distance the traversal steps z first, then y,
  then x (the dvr kernel's comparison order);
* a ray whose origin is outside the grid is advanced to the grid's box first; the voxels it
  then visits are those of a traversal started at the origin. (The dvr kernel walks from the
  origin instead and, for a ray that never enters the grid, reports voxel (0, 0, 0); here such
  a ray has no hit.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_finite, check_floating, check_shape, check_tensor

__all__ = ["RayHits", "first_hits"]


@dataclass
class RayHits:
    """Result of :func:`first_hits` for ``G`` grids and ``N`` rays.

    Attributes:
        hit: ``[G, N]`` bool, the ray met an occupied voxel of grid ``g``.
        voxel: ``[G, N, 3]`` int64 index of the first occupied voxel, -1 where no hit.
        distance: ``[G, N]`` float64 distance from the origin to where the ray leaves that
            voxel, in voxel units along the unit direction; NaN where no hit.
    """

    hit: torch.Tensor
    voxel: torch.Tensor
    distance: torch.Tensor


def _grid_entry(o: torch.Tensor, d: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances ``[N]`` at which rays enter and leave the box ``[0, size]`` (slab method)."""
    zero = d == 0
    safe = torch.where(zero, torch.ones_like(d), d)
    ta = (0.0 - o) / safe
    tb = (size - o) / safe
    near = torch.minimum(ta, tb)
    far = torch.maximum(ta, tb)
    # A ray parallel to a slab is inside it for all t or for none.
    inside_slab = (o >= 0) & (o < size)
    inf = torch.full_like(o, float("inf"))
    near = torch.where(zero, torch.where(inside_slab, -inf, inf), near)
    far = torch.where(zero, torch.where(inside_slab, inf, -inf), far)
    return near.amax(dim=1).clamp_min(0.0), far.amin(dim=1)


def first_hits(occupied: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor) -> RayHits:
    """First occupied voxel of each ray in each of ``G`` grids of the same shape.

    Args:
        occupied: ``[G, X, Y, Z]`` bool occupancy, ``1 <= G <= 8`` (e.g. prediction and
            ground truth stacked, so one traversal serves both).
        origins: ``[N, 3]`` ray origins in voxel units (``(point - range_min) / voxel_size``).
        directions: ``[N, 3]`` ray directions, any non-zero length (normalised here).

    Returns:
        :class:`RayHits`; distances are in voxel units along the unit direction, so multiply
        by the voxel size for metres.
    """
    check_tensor("occupied", occupied)
    if occupied.dtype != torch.bool:
        raise TypeError(f"occupied must be a bool tensor, got dtype {occupied.dtype}")
    sizes = check_shape("occupied", occupied, ["G", "X", "Y", "Z"])
    check_floating("origins", origins)
    check_floating("directions", directions)
    n = check_shape("origins", origins, ["N", 3])["N"]
    check_shape("directions", directions, [n, 3])
    check_finite("origins", origins)
    check_finite("directions", directions)
    device = occupied.device
    G, X, Y, Z = (sizes[k] for k in ("G", "X", "Y", "Z"))
    if not 1 <= G <= 8:
        raise ValueError(f"occupied must stack 1 to 8 grids (one bit each in a byte), got G={G}")

    o = origins.to(device=device, dtype=torch.float64)
    d = directions.to(device=device, dtype=torch.float64)
    length = torch.linalg.vector_norm(d, dim=1, keepdim=True)
    if n and bool((length == 0).any()):
        raise ValueError("directions must be non-zero vectors")
    d = d / length

    hit = torch.zeros(G, n, dtype=torch.bool, device=device)
    voxel = torch.full((G, n, 3), -1, dtype=torch.int64, device=device)
    distance = torch.full((G, n), float("nan"), dtype=torch.float64, device=device)

    size_f = torch.tensor([X, Y, Z], dtype=torch.float64, device=device)
    size_i = size_f.long()
    t_in, t_out = _grid_entry(o, d, size_f)
    ids = (t_in < t_out).nonzero().squeeze(1)
    o, d, t_in = o[ids], d[ids], t_in[ids]

    start = o + t_in[:, None] * d
    v = torch.minimum(torch.floor(start).long().clamp_min(0), size_i - 1)
    step = torch.where(d >= 0, 1, -1).long()
    nonzero = d != 0
    safe = torch.where(nonzero, d, torch.ones_like(d))
    t_max = torch.where(nonzero, (v + (step > 0).long() - o) / safe, torch.inf)
    t_delta = torch.where(nonzero, 1.0 / safe.abs(), torch.inf)
    stride = torch.tensor([Y * Z, Z, 1], dtype=torch.int64, device=device)
    flat = (v * stride).sum(dim=1)

    # Per-axis 1-D state (contiguous, cheap elementwise ops). Voxel codes are one byte, bit g
    # set when grid g is occupied, so one gather per step serves every grid.
    vx, vy, vz = v.T.contiguous()
    sx, sy, sz = step.T.contiguous()
    tx, ty, tz = t_max.T.contiguous()
    dx, dy, dz = t_delta.T.contiguous()
    fx, fy, fz = (step * stride).T.contiguous()
    bits = (1 << torch.arange(G, device=device, dtype=torch.int64)).view(G, 1, 1, 1)
    code = (occupied.long() * bits).sum(dim=0).reshape(-1).to(torch.uint8)
    pending = torch.full(ids.shape, (1 << G) - 1, dtype=torch.uint8, device=device)

    # Entering the grid, a ray crosses at most X + Y + Z - 3 internal boundaries.
    for _ in range(X + Y + Z):
        if ids.numel() == 0:
            break
        # The dvr kernel's order on ties: z, then y, then x.
        take_z = (tz <= ty) & (tz <= tx)
        take_y = ~take_z & (ty <= tx)
        take_x = ~(take_z | take_y)
        t_exit = torch.minimum(torch.minimum(tx, ty), tz)
        new = code[flat] & pending
        if bool(new.any()):
            for g in range(G):
                got = ((new >> g) & 1).bool()
                if bool(got.any()):
                    r = ids[got]
                    hit[g, r] = True
                    voxel[g, r] = torch.stack([vx[got], vy[got], vz[got]], dim=1)
                    distance[g, r] = t_exit[got]
            pending = pending & ~new

        vx = torch.where(take_x, vx + sx, vx)
        vy = torch.where(take_y, vy + sy, vy)
        vz = torch.where(take_z, vz + sz, vz)
        flat = flat + torch.where(take_x, fx, torch.where(take_y, fy, fz))
        tx = torch.where(take_x, tx + dx, tx)
        ty = torch.where(take_y, ty + dy, ty)
        tz = torch.where(take_z, tz + dz, tz)
        inside = (vx >= 0) & (vx < X) & (vy >= 0) & (vy < Y) & (vz >= 0) & (vz < Z)
        pending = pending * inside
        # Finished rays (all hit, or out of the grid) ride along with pending == 0 until they
        # are a quarter of the working set, then they are dropped.
        alive = pending != 0
        n_alive = int(alive.sum())
        if n_alive < 0.75 * alive.numel():
            keep = alive.nonzero().squeeze(1)
            ids, flat, pending = ids[keep], flat[keep], pending[keep]
            vx, vy, vz, sx, sy, sz = (t[keep] for t in (vx, vy, vz, sx, sy, sz))
            tx, ty, tz, dx, dy, dz = (t[keep] for t in (tx, ty, tz, dx, dy, dz))
            fx, fy, fz = (t[keep] for t in (fx, fy, fz))
        else:
            # A finished ray may step outside the grid: keep its (unused) gather in range.
            flat = flat.clamp_(0, code.numel() - 1)
    return RayHits(hit=hit, voxel=voxel, distance=distance)
