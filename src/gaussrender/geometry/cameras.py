"""Cameras: a batch of views sharing one image size and camera model.

Frames. World (or grid) frame: the benchmark's ego/LiDAR frame, metres, x forward, y left,
z up. Camera frame: OpenCV, x right, y down, z forward (the optical axis). Image plane:
``u`` to the right and ``v`` down, pixels; pixel (row r, column c) samples (u, v) =
(c + 0.5, r + 0.5).

Models:
    pinhole: ``u = fx * x/z + s * y/z + cx``, ``v = fy * y/z + cy``.
    orthographic: ``u = fx * x + s * y + cx``, ``v = fy * y + cy`` with x, y in metres
    (fx, fy in pixels per metre).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .._checks import check_int, check_intrinsics, check_real, check_rigid, check_shape

__all__ = ["Cameras", "look_at", "scale_intrinsics"]

CameraModel = Literal["pinhole", "orthographic"]


@dataclass(frozen=True)
class Cameras:
    """``V`` views of one image size and one camera model.

    Args:
        cam_from_world: ``[V, 4, 4]`` rigid transforms (rotation + translation, metres)
            taking world points to the OpenCV camera frame.
        intrinsics: ``[V, 3, 3]`` matrices ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``, pixels
            (orthographic: fx, fy in pixels per metre).
        width: image width in pixels.
        height: image height in pixels.
        model: ``"pinhole"`` or ``"orthographic"``.
        near: Gaussians whose camera-space depth is ``<= near`` metres are dropped (0.2 as
            in the 3D Gaussian splatting rasteriser); finite and > 0.

    Any real floating dtype is accepted; float16/bfloat16 poses are checked in float64 with
    a tolerance of their own precision, and :func:`gaussrender.render` projects in float32
    at least.

    Raises:
        TypeError, ValueError: wrong shapes/dtypes (complex, integer), meta tensors,
            non-finite values, a non-rigid ``cam_from_world`` (Gaussians stay isotropic only
            under rotations) or a translation beyond 1e6 m, intrinsics that are not
            ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` with ``|fx|, |fy| >= 1e-6`` (negative:
            a mirrored image), an image size that is not a positive int (bool refused), or
            ``near`` not finite and > 0. Value checks read the matrices back to the host;
            ``gr.set_checks(False)`` skips them.

    Example:
        >>> import torch, gaussrender as gr
        >>> cams = gr.Cameras(torch.eye(4)[None], torch.tensor([[[100., 0, 50], [0, 100, 40], [0, 0, 1]]]), 100, 80)
        >>> len(cams)
        1
    """

    cam_from_world: torch.Tensor
    intrinsics: torch.Tensor
    width: int
    height: int
    model: CameraModel = "pinhole"
    near: float = 0.2

    def __post_init__(self) -> None:
        # cheap checks (Python values, shapes, dtypes, devices) always run
        sizes = check_shape("cam_from_world", self.cam_from_world, ["V", 4, 4])
        check_shape("intrinsics", self.intrinsics, [sizes["V"], 3, 3])
        if self.intrinsics.device != self.cam_from_world.device:
            raise ValueError(
                f"intrinsics is on {self.intrinsics.device} but cam_from_world on "
                f"{self.cam_from_world.device}; expected one device"
            )
        for name in ("width", "height"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), 1, unit="pixels"))
        if self.model not in ("pinhole", "orthographic"):
            raise ValueError(f"model must be 'pinhole' or 'orthographic', got {self.model!r}")
        # near = 0 puts a Gaussian's projection at 1/z -> inf; an infinite near hides all
        object.__setattr__(self, "near", check_real("near", self.near, 0.0, low_open=True, unit="metres"))
        # value checks (one read-back each, in float64 whatever the dtype) unless checks are off
        check_rigid("cam_from_world", self.cam_from_world)
        check_intrinsics("intrinsics", self.intrinsics)

    def __len__(self) -> int:
        return int(self.cam_from_world.shape[0])

    @property
    def device(self) -> torch.device:
        return self.cam_from_world.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Cameras:
        return Cameras(
            self.cam_from_world.to(device=device, dtype=dtype),
            self.intrinsics.to(device=device, dtype=dtype),
            self.width,
            self.height,
            self.model,
            self.near,
        )

    def __getitem__(self, index: int | slice | torch.Tensor) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(
            self.cam_from_world[index], self.intrinsics[index], self.width, self.height, self.model, self.near
        )

    @property
    def world_from_cam(self) -> torch.Tensor:
        """``[V, 4, 4]`` camera poses (camera-to-world)."""
        return torch.linalg.inv(self.cam_from_world)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points ``[N, 3]`` into every view.

        Returns:
            uv ``[V, N, 2]`` pixel coordinates and depth ``[V, N]`` (camera z, metres).
        """
        check_shape("points", points, ["N", 3])
        pts = points.to(self.cam_from_world.dtype)
        cam = pts @ self.cam_from_world[:, :3, :3].transpose(1, 2) + self.cam_from_world[:, None, :3, 3]
        z = cam[..., 2]
        if self.model == "pinhole":
            xy = cam[..., :2] / z[..., None]
        else:
            xy = cam[..., :2]
        k = self.intrinsics
        u = k[:, None, 0, 0] * xy[..., 0] + k[:, None, 0, 1] * xy[..., 1] + k[:, None, 0, 2]
        v = k[:, None, 1, 1] * xy[..., 1] + k[:, None, 1, 2]
        return torch.stack([u, v], dim=-1), z


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """``cam_from_world`` ``[..., 4, 4]`` of OpenCV cameras at ``eye`` looking at ``target``.

    Args:
        eye: ``[..., 3]`` camera centres, metres.
        target: ``[..., 3]`` points on the optical axis, metres.
        up: ``[3]`` world up direction (default +z); image "up" (-v) follows it.
    """
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device)
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    up = up.to(eye).expand_as(forward)
    right = torch.linalg.cross(forward, up, dim=-1)
    norm = right.norm(dim=-1, keepdim=True)
    if (norm < 1e-8).any():
        raise ValueError("look_at: the viewing direction is parallel to 'up'; pass another 'up'")
    right = right / norm
    down = torch.linalg.cross(forward, right, dim=-1)
    rot = torch.stack([right, down, forward], dim=-2)  # rows: camera axes in world frame
    out = torch.zeros(eye.shape[:-1] + (4, 4), dtype=eye.dtype, device=eye.device)
    out[..., :3, :3] = rot
    out[..., :3, 3] = -(rot @ eye[..., None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def scale_intrinsics(intrinsics: torch.Tensor, sx: float, sy: float | None = None) -> torch.Tensor:
    """Intrinsics ``[..., 3, 3]`` of an image resized by ``sx`` (width) and ``sy`` (height).

    Exact for the pixel-centre convention (u, v) = (c + 0.5, r + 0.5): resizing maps the
    continuous image plane linearly, so ``fx, s, cx`` scale by ``sx`` and ``fy, cy`` by ``sy``.
    """
    sy = sx if sy is None else sy
    scale = torch.tensor([sx, sy, 1.0], dtype=intrinsics.dtype, device=intrinsics.device)
    return intrinsics * scale[:, None]
