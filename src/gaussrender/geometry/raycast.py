"""Rays through a voxel grid: exact voxel traversal (Amanatides & Woo), vectorised.

:class:`VoxelWalk` steps many rays together, one voxel per call of :meth:`VoxelWalk.step`;
rays a caller is done with, or that left the grid, are dropped from the working set, so the
cost follows the number of voxels actually crossed. Pure PyTorch, CPU or GPU, float64
arithmetic. Two uses are built on it here: :func:`first_hits` (RayIoU's first occupied voxel)
and :func:`crossed_voxels` (every voxel a ray crosses up to its first occupied one: the
visibility masks of :mod:`gaussrender.scene`).

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

__all__ = ["RayHits", "VoxelWalk", "first_hits", "crossed_voxels"]


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


class VoxelWalk:
    """``N`` rays stepping together through the voxels of an ``[X, Y, Z]`` grid, in order.

    Coordinates are voxel units (see the module docstring). At any time the walk holds the
    rays still walking, :attr:`ray` ``[A]`` (indices into the ``N`` rays, ascending), each in
    one voxel, :attr:`voxel` ``[A, 3]`` / :attr:`flat` ``[A]`` (``(i * Y + j) * Z + k``), which
    it crossed from distance :attr:`t_enter` to :attr:`t_exit` ``[A]`` (float64, along the unit
    direction). Rays that never enter the grid are never held; a ray starts in the voxel
    holding its origin, or where it enters the grid.

    Typical loop::

        walk = VoxelWalk((X, Y, Z), origins, directions)
        while walk.size:
            ...  # look at walk.ray, walk.flat, walk.t_exit
            walk.step(done)  # done [A] bool: rays the caller has finished with

    Args:
        shape: ``(X, Y, Z)`` voxels.
        origins: ``[N, 3]`` float64 ray origins, voxel units.
        directions: ``[N, 3]`` float64 unit directions (normalised by the caller).
    """

    def __init__(self, shape: tuple[int, int, int], origins: torch.Tensor, directions: torch.Tensor) -> None:
        X, Y, Z = shape
        o, d = origins, directions
        device = o.device
        self.shape = (X, Y, Z)
        size_f = torch.tensor([X, Y, Z], dtype=torch.float64, device=device)
        t_in, t_out = _grid_entry(o, d, size_f)
        ids = (t_in < t_out).nonzero().squeeze(1)
        o, d, t_in = o[ids], d[ids], t_in[ids]

        start = o + t_in[:, None] * d
        v = torch.minimum(torch.floor(start).long().clamp_min(0), size_f.long() - 1)
        step = torch.where(d >= 0, 1, -1).long()
        nonzero = d != 0
        safe = torch.where(nonzero, d, torch.ones_like(d))
        t_max = torch.where(nonzero, (v + (step > 0).long() - o) / safe, torch.inf)
        t_delta = torch.where(nonzero, 1.0 / safe.abs(), torch.inf)
        stride = torch.tensor([Y * Z, Z, 1], dtype=torch.int64, device=device)
        self._numel = X * Y * Z
        self.ray = ids
        self.flat = (v * stride).sum(dim=1)
        self.t_enter = t_in
        # Per-axis 1-D state (contiguous, cheap elementwise ops).
        self._v = list(v.T.contiguous())
        self._s = list(step.T.contiguous())
        self._t = list(t_max.T.contiguous())
        self._dt = list(t_delta.T.contiguous())
        self._f = list((step * stride).T.contiguous())
        self._walking = torch.ones(ids.shape, dtype=torch.bool, device=device)

    @property
    def size(self) -> int:
        """Number of rays held (some may be finished and only riding along, see :meth:`step`)."""
        return int(self.ray.numel())

    @property
    def walking(self) -> torch.Tensor:
        """``[A]`` bool: the ray is still walking (not finished, not out of the grid)."""
        return self._walking

    @property
    def voxel(self) -> torch.Tensor:
        """``[A, 3]`` int64 index of each held ray's current voxel."""
        return torch.stack(self._v, dim=1)

    @property
    def t_exit(self) -> torch.Tensor:
        """``[A]`` distance at which each held ray leaves its current voxel."""
        tx, ty, tz = self._t
        return torch.minimum(torch.minimum(tx, ty), tz)

    def step(self, done: torch.Tensor | None = None) -> torch.Tensor | None:
        """Move every held ray to its next voxel; rays marked ``done`` ``[A]``, and rays that
        leave the grid, stop walking.

        Finished rays ride along (:attr:`walking` False, their :attr:`flat` clamped into the
        grid so gathers stay in range) until they are a quarter of the held rays; then they are
        dropped and the kept positions ``[A']`` (into the previous ``[A]``) are returned so the
        caller can compact its own per-ray state. Otherwise returns None.
        """
        vx, vy, vz = self._v
        tx, ty, tz = self._t
        # The dvr kernel's order on ties: z, then y, then x.
        take_z = (tz <= ty) & (tz <= tx)
        take_y = ~take_z & (ty <= tx)
        take_x = ~(take_z | take_y)
        self.t_enter = torch.minimum(torch.minimum(tx, ty), tz)
        sx, sy, sz = self._s
        dx, dy, dz = self._dt
        fx, fy, fz = self._f
        vx = torch.where(take_x, vx + sx, vx)
        vy = torch.where(take_y, vy + sy, vy)
        vz = torch.where(take_z, vz + sz, vz)
        self.flat = self.flat + torch.where(take_x, fx, torch.where(take_y, fy, fz))
        self._t = [torch.where(take_x, tx + dx, tx), torch.where(take_y, ty + dy, ty), torch.where(take_z, tz + dz, tz)]
        self._v = [vx, vy, vz]
        X, Y, Z = self.shape
        inside = (vx >= 0) & (vx < X) & (vy >= 0) & (vy < Y) & (vz >= 0) & (vz < Z)
        walking = self._walking & inside
        if done is not None:
            walking = walking & ~done
        self._walking = walking
        if int(walking.sum()) < 0.75 * walking.numel():
            keep = walking.nonzero().squeeze(1)
            self.ray, self.flat, self.t_enter, self._walking = (
                self.ray[keep],
                self.flat[keep],
                self.t_enter[keep],
                self._walking[keep],
            )
            self._v, self._s, self._t = (
                [t[keep] for t in self._v],
                [t[keep] for t in self._s],
                [t[keep] for t in self._t],
            )
            self._dt, self._f = [t[keep] for t in self._dt], [t[keep] for t in self._f]
            return keep
        # A finished ray may step outside the grid: keep its (unused) gather in range.
        self.flat = self.flat.clamp_(0, self._numel - 1)
        return None


def _check_rays(occupied: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor, dims: list) -> dict:
    check_tensor("occupied", occupied)
    if occupied.dtype != torch.bool:
        raise TypeError(f"occupied must be a bool tensor, got dtype {occupied.dtype}")
    sizes = check_shape("occupied", occupied, dims)
    check_floating("origins", origins)
    check_floating("directions", directions)
    n = check_shape("origins", origins, ["N", 3])["N"]
    check_shape("directions", directions, [n, 3])
    check_finite("origins", origins)
    check_finite("directions", directions)
    return sizes


def _unit(directions: torch.Tensor, device: torch.device) -> torch.Tensor:
    d = directions.to(device=device, dtype=torch.float64)
    length = torch.linalg.vector_norm(d, dim=1, keepdim=True)
    if d.shape[0] and bool((length == 0).any()):
        raise ValueError("directions must be non-zero vectors")
    return d / length


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
    sizes = _check_rays(occupied, origins, directions, ["G", "X", "Y", "Z"])
    device = occupied.device
    G, X, Y, Z = (sizes[k] for k in ("G", "X", "Y", "Z"))
    if not 1 <= G <= 8:
        raise ValueError(f"occupied must stack 1 to 8 grids (one bit each in a byte), got G={G}")
    n = origins.shape[0]
    o = origins.to(device=device, dtype=torch.float64)
    d = _unit(directions, device)

    hit = torch.zeros(G, n, dtype=torch.bool, device=device)
    voxel = torch.full((G, n, 3), -1, dtype=torch.int64, device=device)
    distance = torch.full((G, n), float("nan"), dtype=torch.float64, device=device)

    walk = VoxelWalk((X, Y, Z), o, d)
    # Voxel codes are one byte, bit g set when grid g is occupied, so one gather per step
    # serves every grid.
    bits = (1 << torch.arange(G, device=device, dtype=torch.int64)).view(G, 1, 1, 1)
    code = (occupied.long() * bits).sum(dim=0).reshape(-1).to(torch.uint8)
    pending = torch.full((walk.size,), (1 << G) - 1, dtype=torch.uint8, device=device)

    # Entering the grid, a ray crosses at most X + Y + Z - 3 internal boundaries.
    for _ in range(X + Y + Z):
        if walk.size == 0:
            break
        new = code[walk.flat] & pending
        if bool(new.any()):
            t_exit = walk.t_exit
            for g in range(G):
                got = ((new >> g) & 1).bool()
                if bool(got.any()):
                    r = walk.ray[got]
                    hit[g, r] = True
                    voxel[g, r] = walk.voxel[got]
                    distance[g, r] = t_exit[got]
            pending = pending & ~new
        keep = walk.step(pending == 0)
        if keep is not None:
            pending = pending[keep]
        pending = pending * walk.walking
    return RayHits(hit=hit, voxel=voxel, distance=distance)


def crossed_voxels(occupied: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Every voxel some ray crosses, up to and including the ray's first occupied voxel.

    The exact traversal of :class:`VoxelWalk`: a ray that clips the corner of a voxel marks
    it. A ray stops at its first occupied voxel (marked) or where it leaves the grid.

    Args:
        occupied: ``[X, Y, Z]`` bool, True where a voxel stops rays.
        origins: ``[N, 3]`` ray origins, voxel units (``(point - range_min) / voxel_size``).
        directions: ``[N, 3]`` ray directions, any non-zero length (normalised here).

    Returns:
        ``[X, Y, Z]`` bool mask on the device of ``occupied``.

    Example:
        >>> import torch
        >>> occ = torch.zeros(4, 1, 1, dtype=torch.bool); occ[2] = True
        >>> crossed_voxels(occ, torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]]))[:, 0, 0].tolist()
        [True, True, True, False]
    """
    sizes = _check_rays(occupied, origins, directions, ["X", "Y", "Z"])
    device = occupied.device
    shape = (sizes["X"], sizes["Y"], sizes["Z"])
    walk = VoxelWalk(shape, origins.to(device=device, dtype=torch.float64), _unit(directions, device))
    code = occupied.reshape(-1)
    seen = torch.zeros(code.numel(), dtype=torch.bool, device=device)
    for _ in range(sum(shape)):
        if walk.size == 0:
            break
        walking = walk.walking
        seen[walk.flat[walking]] = True
        walk.step(code[walk.flat])
    return seen.reshape(shape)
