"""Image augmentation that keeps the camera matrices consistent.

Geometric steps (resize, random resize-crop, horizontal flip) are affine maps of the pixel
coordinates ``(u, v) -> (a u + tx, b v + ty)``; the intrinsics are updated by the same map
(``K' = A K``) so that a 3D point still projects onto the same image content. Pixel column
``c`` covers ``u`` in ``[c, c + 1)`` (centre ``c + 0.5``), so a resize by ``s`` maps ``u``
to ``s u`` exactly and a flip of a width-``W`` image maps ``u`` to ``W - u``. Extrinsics are
unchanged. Photometric jitter (brightness, contrast, saturation) and the release's
photometric distortion (:mod:`gaussrender.train.photometric`) touch pixels only.

Randomness comes from an explicit :class:`torch.Generator`, seeded per (run seed, epoch,
sample index) by :class:`AugmentedDataset`, so the augmentation of a sample does not depend
on data-loader workers or on where a resumed run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .._checks import check_floating, check_shape
from .config import AugmentConfig
from .photometric import draw_photometric, photometric_distortion
from .seeds import sample_seed

__all__ = [
    "PixelAffine",
    "warp_image",
    "photometric_jitter",
    "augment_views",
    "AugmentedDataset",
]


@dataclass(frozen=True)
class PixelAffine:
    """Pixel map ``u' = a u + tx``, ``v' = b v + ty`` (``a < 0``: horizontal flip)."""

    a: float = 1.0
    b: float = 1.0
    tx: float = 0.0
    ty: float = 0.0

    def then(self, other: PixelAffine) -> PixelAffine:
        """This map followed by ``other``."""
        return PixelAffine(
            other.a * self.a, other.b * self.b, other.a * self.tx + other.tx, other.b * self.ty + other.ty
        )

    def matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.tensor([[self.a, 0.0, self.tx], [0.0, self.b, self.ty], [0.0, 0.0, 1.0]], dtype=dtype)

    def apply_intrinsics(self, intrinsics: torch.Tensor) -> torch.Tensor:
        """``A @ K`` for ``K [..., 3, 3]``."""
        return self.matrix(torch.float64).to(intrinsics.device) @ intrinsics.double()


def warp_image(image: torch.Tensor, affine: PixelAffine, out_size: tuple[int, int]) -> torch.Tensor:
    """Resample ``image [3, H, W]`` so that output pixel ``(u', v')`` shows input ``(u, v)``.

    Output pixels that map outside the input are zero. Bilinear sampling at pixel centres;
    downscaling first blurs with an antialiased resize so that small objects do not alias.
    """
    h, w = image.shape[-2:]
    ho, wo = out_size
    src = image
    # anti-alias: pre-shrink with interpolate(antialias) when the map shrinks the image, then
    # sample the shrunk image (its own pixel map is a pure scale, folded in below)
    pre = PixelAffine()
    sx, sy = abs(affine.a), abs(affine.b)
    if sx < 1.0 or sy < 1.0:
        nh, nw = max(1, round(h * min(sy, 1.0))), max(1, round(w * min(sx, 1.0)))
        src = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
        pre = PixelAffine(nw / w, nh / h)
    # remaining map from the pre-shrunk image to the output
    rest = PixelAffine(affine.a / pre.a, affine.b / pre.b, affine.tx, affine.ty)
    sh, sw = src.shape[-2:]
    v_out = torch.arange(ho, dtype=torch.float64) + 0.5
    u_out = torch.arange(wo, dtype=torch.float64) + 0.5
    u_src = (u_out - rest.tx) / rest.a
    v_src = (v_out - rest.ty) / rest.b
    # grid_sample with align_corners=False: -1 and 1 are the outer pixel edges
    gx = (2.0 * u_src / sw - 1.0).to(image.dtype)
    gy = (2.0 * v_src / sh - 1.0).to(image.dtype)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
    out = F.grid_sample(src[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0]


def _gray(image: torch.Tensor) -> torch.Tensor:
    # ITU-R BT.601 luma weights
    w = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device)
    return (image * w[:, None, None]).sum(0, keepdim=True)


def photometric_jitter(image: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """Scale brightness, contrast (around the mean gray) and saturation (around the pixel's
    gray) of ``image [3, H, W]`` in ``[0, 1]`` by the given factors; clamp to ``[0, 1]``."""
    out = image * brightness
    mean = _gray(out).mean()
    out = (out - mean) * contrast + mean
    gray = _gray(out)
    out = (out - gray) * saturation + gray
    return out.clamp(0.0, 1.0)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def augment_views(
    images: torch.Tensor,
    intrinsics: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment each view independently; the output keeps the input image size.

    Args:
        images: ``[V, 3, H, W]`` RGB in ``[0, 1]``.
        intrinsics: ``[V, 3, 3]`` pixels.
        cfg: what to apply (:class:`~gaussrender.train.config.AugmentConfig`).
        generator: source of randomness.

    Returns:
        images ``[V, 3, H, W]`` and intrinsics ``[V, 3, 3]`` (same dtype as given).
    """
    v = check_shape("images", images, ["V", 3, "H", "W"])["V"]
    check_shape("intrinsics", intrinsics, [v, 3, 3])
    check_floating("images", images)
    h, w = images.shape[-2:]
    out_images, out_k = [], []
    for i in range(v):
        s = _uniform(generator, *cfg.resize_scale)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        affine = PixelAffine(nw / w, nh / h)
        # crop (nw > w) or pad (nw < w) at a random offset back to (h, w)
        x0 = round(_uniform(generator, min(0, nw - w), max(0, nw - w)))
        y0 = round(_uniform(generator, min(0, nh - h), max(0, nh - h)))
        affine = affine.then(PixelAffine(1.0, 1.0, -x0, -y0))
        if cfg.flip and float(torch.rand((), generator=generator)) < 0.5:
            affine = affine.then(PixelAffine(-1.0, 1.0, float(w), 0.0))
        img = images[i]
        if affine != PixelAffine():
            img = warp_image(img, affine, (h, w))
        factors = [_uniform(generator, 1 - a, 1 + a) for a in (cfg.brightness, cfg.contrast, cfg.saturation)]
        if any(f != 1.0 for f in factors):
            img = photometric_jitter(img, *factors)
        if cfg.photometric:  # the release's, after its resize-crop-flip
            img = photometric_distortion(img, draw_photometric(generator))
        out_images.append(img)
        out_k.append(affine.apply_intrinsics(intrinsics[i]).to(intrinsics.dtype))
    return torch.stack(out_images), torch.stack(out_k)


class AugmentedDataset(torch.utils.data.Dataset):
    """Wrap a dataset of sample dicts (``images [V, 3, H, W]``, ``intrinsics [V, 3, 3]``, ...)
    and augment them reproducibly: sample ``i`` of epoch ``e`` uses a generator seeded from
    ``(seed, e, i)``. Call :meth:`set_epoch` before each epoch."""

    def __init__(self, base: torch.utils.data.Dataset, cfg: AugmentConfig, seed: int = 0) -> None:
        self.base, self.cfg, self.seed = base, cfg, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        # torch types Dataset without __len__; the map-style datasets wrapped here all define it
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.base[index])
        if "depth" in sample and (self.cfg.flip or tuple(self.cfg.resize_scale) != (1.0, 1.0)):
            # the depth map would have to follow the pixel map; not implemented
            raise ValueError(
                "data.augment: flip and resize_scale move the pixels, but this sample's depth map "
                "would not follow; turn them off for models that read depth (Symphonies)"
            )
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        sample["images"], sample["intrinsics"] = augment_views(sample["images"], sample["intrinsics"], self.cfg, g)
        return sample
