"""Strategies that move cameras before rendering (the rigs themselves are :mod:`.rigs`).

All poses are ``cam_from_grid`` ``[..., 4, 4]`` rigid transforms from the grid frame (metres,
x forward, y left, z up) to the OpenCV camera frame (x right, y down, z forward). Every
strategy is batched over leading dimensions and draws its randomness from an optional
``torch.Generator`` (seeded runs are reproducible). Angles are degrees, distances metres.

The release's strategies (docs/method.md#cameras) move each camera in its **own** frame with
:func:`modify_cameras`: ``T' = Rx(phi) · Ry(theta) · T``, then ``T'[1, 3] += ty`` and
``T'[2, 3] += tz``. ``Rx(+phi)`` pitches the camera down; each translation term moves the
camera centre by minus that amount along the rotated camera's axis (``ty > 0``: up along its
own up axis, ``tz < 0``: forward along its optical axis).

* ``sensor``: the cameras as they are.
* ``elevated``: phi = 20, theta ~ U[-5, 5], ty = 8: the camera rises 8 m along its pitched
  up axis, i.e. 8·cos 20° ≈ 7.5 m up and 8·sin 20° ≈ 2.7 m forward for a level camera.
* ``random`` (function :func:`random_view`, so as not to shadow the standard library's
  ``random``): phi ~ U[0, 20], theta ~ U[-10, 10], ty = 0.4·phi, tz ~ U[-10, 10].
* ``stereo``: keep each camera and add a copy with ty ~ U[-1, 1], tz ~ U[-1, 1] (camera
  y and z, no rotation); doubles the number of views.
* ``trajectory``: one r ~ U[0, 1] per call adds ``((ymax - |ymin|)/2 · r, 2, -(xmax - |xmin|)
  · 0.7 · r)`` to the camera-frame translation: on a grid symmetric about the ego (Occ3D,
  SurroundOcc) a fixed 2 m rise; on KITTI-360 (x in [0, 51.2]) also up to 0.7 · 51.2 m
  forward along the optical axis.

One grid-frame strategy, not in the release, built on :func:`move_cameras`:

* ``drive``: move along the horizontal viewing direction (the road) by U[0, 0.7] of the
  distance to the grid's boundary in that direction, and lift 2 m along grid z. Unlike
  ``trajectory``, which on grids symmetric about the ego (Occ3D, SurroundOcc) only raises the
  camera 2 m, it moves every camera (front, side or back) along the road on any grid, and
  never beyond the grid's boundary.
"""

from __future__ import annotations

from typing import Literal

import torch

from .._checks import check_rigid
from .grid import VoxelGrid, get_grid
from .transforms import rotation_x, rotation_y, rotation_z

__all__ = [
    "STRATEGIES",
    "apply_strategy",
    "modify_cameras",
    "move_cameras",
    "sensor",
    "elevated",
    "random_view",
    "stereo",
    "trajectory",
    "drive",
]

Strategy = Literal["sensor", "elevated", "random", "stereo", "trajectory", "drive"]
STRATEGIES: tuple[str, ...] = ("sensor", "elevated", "random", "stereo", "trajectory", "drive")


def _uniform(
    shape: torch.Size | tuple[int, ...], lo: float, hi: float, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """U[lo, hi] of ``shape``; drawn as float64 on the CPU so that a seed gives the same
    numbers whatever the cameras' dtype and device."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return (lo + (hi - lo) * u).to(device=like.device, dtype=like.dtype)


def _check_poses(cam_from_grid: torch.Tensor) -> None:
    # dtype and shape always; finite, rigid, |t| <= 1e6 m unless gr.set_checks(False)
    check_rigid("cam_from_grid", cam_from_grid)


def _expand(x: torch.Tensor | float, name: str, like: torch.Tensor) -> torch.Tensor:
    """``x`` as a ``[...]`` tensor matching the batch of poses ``like [..., 4, 4]``."""
    batch = like.shape[:-2]
    t = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    try:
        return t.expand(batch)
    except RuntimeError:
        raise ValueError(
            f"{name} must be a float or broadcast to the cameras' batch shape {list(batch)}, got shape {list(t.shape)}"
        ) from None


def modify_cameras(
    cam_from_grid: torch.Tensor,
    phi: torch.Tensor | float = 0.0,
    theta: torch.Tensor | float = 0.0,
    ty: torch.Tensor | float = 0.0,
    tz: torch.Tensor | float = 0.0,
    tx: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Move cameras in their own frame, as the release does (docs/method.md#cameras).

    ``T' = Rx(phi) · Ry(theta) · T``, then ``T'[0, 3] += tx``, ``T'[1, 3] += ty``,
    ``T'[2, 3] += tz``, with ``T`` = ``cam_from_grid`` and ``Rx``, ``Ry`` the right-handed
    rotations about the camera's x (right) and y (down) axes. The rotations turn the camera
    about its centre: ``phi > 0`` pitches it down, ``theta > 0`` turns it left (for a level
    camera). A translation term ``t`` moves the centre by ``-t`` along the rotated camera's
    axis: ``ty > 0`` raises it along its own up axis, ``tz < 0`` moves it forward along its
    optical axis, ``tx > 0`` moves it to its left.

    Args:
        cam_from_grid: ``[..., 4, 4]`` grid-to-camera (OpenCV) rigid transforms.
        phi, theta: degrees; floats or tensors broadcastable to ``[...]``.
        ty, tz, tx: metres, camera frame; floats or tensors broadcastable to ``[...]``.

    Returns:
        ``[..., 4, 4]`` moved poses (differentiable in every argument).
    """
    _check_poses(cam_from_grid)
    args = {
        n: _expand(v, n, cam_from_grid) for n, v in (("phi", phi), ("theta", theta), ("tx", tx), ("ty", ty), ("tz", tz))
    }
    rot = rotation_x(args["phi"]) @ rotation_y(args["theta"])
    top = rot @ cam_from_grid[..., :3, :]  # [..., 3, 4]: the rotation acts on R and t alike
    shift = torch.stack([args["tx"], args["ty"], args["tz"]], dim=-1)
    top = torch.cat([top[..., :3], top[..., 3:] + shift[..., None]], dim=-1)
    return torch.cat([top, cam_from_grid[..., 3:, :]], dim=-2)


def _horizontal_forward(rot: torch.Tensor) -> torch.Tensor:
    """Unit vector ``[..., 3]`` of the optical axis projected on the ground plane."""
    fwd = rot[..., 2, :].clone()
    fwd[..., 2] = 0
    norm = fwd.norm(dim=-1, keepdim=True)
    # a camera looking straight down has no horizontal direction: use its image "up" (-y)
    up_dir = -rot[..., 1, :].clone()
    up_dir[..., 2] = 0
    fwd = torch.where(norm > 1e-6, fwd, up_dir)
    return fwd / fwd.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def move_cameras(
    cam_from_grid: torch.Tensor,
    pitch_down: torch.Tensor | float = 0.0,
    yaw_left: torch.Tensor | float = 0.0,
    lift: torch.Tensor | float = 0.0,
    forward: torch.Tensor | float = 0.0,
    right: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Move cameras ``[..., 4, 4]`` in the grid frame (not the release's convention, see
    :func:`modify_cameras`): turn left about the grid's vertical by ``yaw_left`` degrees, tilt
    down about the camera's x axis by ``pitch_down`` degrees, and translate the centre by
    ``forward`` metres along the horizontal viewing direction, ``right`` metres along the
    camera's x axis and ``lift`` metres up (grid z). Scalars broadcast; tensors are ``[...]``.
    """
    _check_poses(cam_from_grid)

    def full(x: torch.Tensor | float, name: str) -> torch.Tensor:
        return _expand(x, name, cam_from_grid)

    rot = cam_from_grid[..., :3, :3]
    centre = -(rot.transpose(-1, -2) @ cam_from_grid[..., :3, 3:])[..., 0]
    centre = (
        centre
        + full(forward, "forward")[..., None] * _horizontal_forward(rot)
        + full(right, "right")[..., None] * rot[..., 0, :]
        + full(lift, "lift")[..., None] * torch.tensor([0.0, 0.0, 1.0], dtype=rot.dtype, device=rot.device)
    )
    new_rot = (
        rotation_x(full(pitch_down, "pitch_down")) @ rot @ rotation_z(full(yaw_left, "yaw_left")).transpose(-1, -2)
    )
    out = torch.zeros_like(cam_from_grid)
    out[..., :3, :3] = new_rot
    out[..., :3, 3] = -(new_rot @ centre[..., None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def sensor(cam_from_grid: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The sensor cameras, unchanged."""
    _check_poses(cam_from_grid)
    return cam_from_grid


def elevated(
    cam_from_grid: torch.Tensor,
    generator: torch.Generator | None = None,
    pitch: float = 20.0,
    max_yaw: float = 5.0,
    lift: float = 8.0,
) -> torch.Tensor:
    """The release's ``elevated``: ``modify_cameras(T, phi=pitch, theta=U[-max_yaw, max_yaw],
    ty=lift)``, one theta per camera (drawn as ``torch.rand(T.shape[:-2])``, float64).

    With the defaults a level camera ends up 8·cos 20° ≈ 7.52 m higher and 8·sin 20° ≈ 2.74 m
    further along its viewing direction, looking 20° down.
    """
    _check_poses(cam_from_grid)
    theta = _uniform(cam_from_grid.shape[:-2], -max_yaw, max_yaw, cam_from_grid, generator)
    return modify_cameras(cam_from_grid, phi=pitch, theta=theta, ty=lift)


def random_view(
    cam_from_grid: torch.Tensor,
    generator: torch.Generator | None = None,
    max_pitch: float = 20.0,
    max_yaw: float = 10.0,
    lift_per_degree: float = 0.4,
    max_shift: float = 10.0,
) -> torch.Tensor:
    """The release's ``random``: ``modify_cameras(T, phi, theta, ty=lift_per_degree · phi, tz)``
    with phi ~ U[0, max_pitch], theta ~ U[-max_yaw, max_yaw], tz ~ U[-max_shift, max_shift],
    one of each per camera, drawn in that order (``torch.rand(T.shape[:-2])``, float64).
    ``tz`` moves the camera along its pitched optical axis."""
    _check_poses(cam_from_grid)
    batch = cam_from_grid.shape[:-2]
    phi = _uniform(batch, 0.0, max_pitch, cam_from_grid, generator)
    theta = _uniform(batch, -max_yaw, max_yaw, cam_from_grid, generator)
    tz = _uniform(batch, -max_shift, max_shift, cam_from_grid, generator)
    return modify_cameras(cam_from_grid, phi=phi, theta=theta, ty=lift_per_degree * phi, tz=tz)


def stereo(
    cam_from_grid: torch.Tensor, generator: torch.Generator | None = None, max_offset: float = 1.0
) -> torch.Tensor:
    """The release's ``stereo``: each camera followed by ``modify_cameras(T, ty=U[-1, 1],
    tz=U[-1, 1])``, a copy shifted along its own y (down) and z (optical) axes, not sideways
    (``ty`` then ``tz`` drawn as ``torch.rand(T.shape[:-2])``, float64).

    ``[..., V, 4, 4]`` becomes ``[..., 2V, 4, 4]`` (camera i at 2i, its copy at 2i + 1).
    """
    _check_poses(cam_from_grid)
    batch = cam_from_grid.shape[:-2]
    ty = _uniform(batch, -max_offset, max_offset, cam_from_grid, generator)
    tz = _uniform(batch, -max_offset, max_offset, cam_from_grid, generator)
    copy = modify_cameras(cam_from_grid, ty=ty, tz=tz)
    if cam_from_grid.dim() == 2:
        return torch.stack([cam_from_grid, copy])
    return torch.stack([cam_from_grid, copy], dim=-3).flatten(-4, -3)


def trajectory(
    cam_from_grid: torch.Tensor,
    grid: VoxelGrid | str,
    generator: torch.Generator | None = None,
    max_fraction: float = 0.7,
    lift: float = 2.0,
) -> torch.Tensor:
    """The release's ``trajectory``: with ONE r ~ U[0, 1] for all cameras of the call
    (``torch.rand(())``, float64; the release draws one per batch), ``modify_cameras(T,
    tx=(ymax - |ymin|)/2 · r, ty=lift, tz=-(xmax - |xmin|) · max_fraction · r)`` with the
    grid's range in metres.

    On a grid symmetric about the ego (Occ3D, SurroundOcc) this is a fixed ``lift`` m rise
    along each camera's up axis; on KITTI-360 (x in [0, 51.2]) the camera also moves up to
    0.7 · 51.2 m along its optical axis. See :func:`drive` for a grid-frame variant.
    """
    grid = get_grid(grid)
    _check_poses(cam_from_grid)
    (xmin, ymin, _), (xmax, ymax, _) = grid.range_min, grid.range_max
    r = _uniform((), 0.0, 1.0, cam_from_grid, generator)
    tx = (ymax - abs(ymin)) / 2 * r
    tz = -(xmax - abs(xmin)) * max_fraction * r
    return modify_cameras(cam_from_grid, tx=tx, ty=lift, tz=tz)


def drive(
    cam_from_grid: torch.Tensor,
    grid: VoxelGrid | str,
    generator: torch.Generator | None = None,
    max_fraction: float = 0.7,
    lift: float = 2.0,
) -> torch.Tensor:
    """Grid-frame camera moves, not the release's: drive each camera forward along its
    horizontal viewing direction by U[0, max_fraction] of the distance to the grid's xy
    boundary in that direction (one draw per camera, ``torch.rand(T.shape[:-2])``, float64),
    and lift it ``lift`` m along grid z, keeping its orientation.

    Why it differs from :func:`trajectory`: the release's formula moves cameras only on grids
    that are asymmetric in x (on Occ3D it is a fixed 2 m rise) and along the optical axis,
    whatever way the camera looks. ``drive`` simulates views from further along the road for
    every camera on every grid, stays level and never leaves the grid. This was our
    ``trajectory`` before it followed the release.
    """
    grid = get_grid(grid)
    _check_poses(cam_from_grid)
    batch = cam_from_grid.shape[:-2]
    rot = cam_from_grid[..., :3, :3]
    centre = -(rot.transpose(-1, -2) @ cam_from_grid[..., :3, 3:])[..., 0]
    direction = _horizontal_forward(rot)
    lo = torch.tensor(grid.range_min[:2], dtype=rot.dtype, device=rot.device)
    hi = torch.tensor(grid.range_max[:2], dtype=rot.dtype, device=rot.device)
    d = direction[..., :2]
    moving = d.abs() > 1e-9
    safe = torch.where(moving, d, torch.ones_like(d))
    to_wall = torch.where(d > 0, (hi - centre[..., :2]) / safe, (lo - centre[..., :2]) / safe)
    to_wall = torch.where(moving, to_wall, torch.full_like(to_wall, float("inf")))
    distance = to_wall.amin(dim=-1).clamp_min(0.0)
    fraction = _uniform(batch, 0.0, max_fraction, cam_from_grid, generator)
    return move_cameras(cam_from_grid, forward=fraction * distance, lift=lift)


def apply_strategy(
    strategy: Strategy,
    cam_from_grid: torch.Tensor,
    grid: VoxelGrid | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply the named strategy (one of :data:`STRATEGIES`, see the module docstring) to
    cameras ``[..., V, 4, 4]`` of ``grid`` (``stereo`` doubles ``V``)."""
    if strategy == "sensor":
        return sensor(cam_from_grid, generator)
    if strategy == "elevated":
        return elevated(cam_from_grid, generator)
    if strategy == "random":
        return random_view(cam_from_grid, generator)
    if strategy == "stereo":
        return stereo(cam_from_grid, generator)
    if strategy == "trajectory":
        return trajectory(cam_from_grid, grid, generator)
    if strategy == "drive":
        return drive(cam_from_grid, grid, generator)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
