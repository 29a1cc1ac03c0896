"""Pieces both occupancy models share: feed-forward block, input checks, feature flattening."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_finite, check_floating, check_shape

__all__ = ["FFN", "check_model_inputs", "flatten_camera_features"]


class FFN(nn.Module):
    """Transformer feed-forward block with its residual: ``x + drop(W2 drop(relu(W1 x)))``."""

    def __init__(self, embed_dims: int, hidden_dims: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(embed_dims, hidden_dims),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dims, embed_dims),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


def check_model_inputs(
    images: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_from_grid: torch.Tensor,
    num_cameras: int,
    image_size: Sequence[int],
) -> None:
    """Validate a model call; errors name the argument, the expected and the actual value."""
    sizes = check_shape("images", images, ["B", "V", 3, "H", "W"])
    check_floating("images", images)
    if sizes["V"] != num_cameras:
        raise ValueError(
            f"images has {sizes['V']} cameras but the model was built for "
            f"num_cameras={num_cameras} (shape {list(images.shape)})"
        )
    if (sizes["H"], sizes["W"]) != tuple(image_size):
        raise ValueError(
            f"images are {sizes['H']}x{sizes['W']} (HxW) but the model was built for "
            f"image_size={tuple(image_size)}; intrinsics must match the image size"
        )
    check_shape("intrinsics", intrinsics, [sizes["B"], sizes["V"], 3, 3])
    check_shape("cam_from_grid", cam_from_grid, [sizes["B"], sizes["V"], 4, 4])
    check_floating("intrinsics", intrinsics)
    check_floating("cam_from_grid", cam_from_grid)
    check_finite("intrinsics", intrinsics)
    check_finite("cam_from_grid", cam_from_grid)
    for name, t in (("intrinsics", intrinsics), ("cam_from_grid", cam_from_grid)):
        if t.device != images.device:
            raise ValueError(f"{name} is on {t.device} but images on {images.device}; expected one device")


def flatten_camera_features(
    feats: Sequence[torch.Tensor], cams_embeds: torch.Tensor, level_embeds: torch.Tensor
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Flatten ``L`` maps ``[B, V, C, h_l, w_l]`` into ``[B, V, S, C]`` with camera and level embeddings.

    The learned embeddings tell the attention which camera and which pyramid level a
    feature comes from (BEVFormer's ``cams_embeds``/``level_embeds``).
    """
    flat, shapes = [], []
    for lvl, f in enumerate(feats):
        b, v, c, h, w = f.shape
        x = f.flatten(3).transpose(2, 3)  # [B, V, h*w, C]
        x = x + cams_embeds.view(1, v, 1, c).to(x.dtype) + level_embeds[lvl].view(1, 1, 1, c).to(x.dtype)
        flat.append(x)
        shapes.append((h, w))
    return torch.cat(flat, dim=2), shapes
