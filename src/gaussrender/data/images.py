"""Camera images: load as RGB float tensors and keep intrinsics consistent with a resize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import DataFileError

__all__ = ["load_image", "stored_image_size", "check_image_size", "render_cameras"]


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[float, float]]:
    """Read an image file as RGB ``[3, H, W]`` float32 in [0, 1], optionally resized.

    Args:
        path: image file (any format Pillow reads).
        size: ``(H, W)`` pixels to resize to (bilinear), or None to keep the stored size.

    Returns:
        The image and ``(sx, sy)``, the factors from stored to returned pixel coordinates
        (pass them to :func:`gaussrender.geometry.cameras.scale_intrinsics`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFileError: not a readable image, corrupt data, or more than
            :data:`MAX_IMAGE_PIXELS` pixels.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if size is not None:
        size = check_image_size(size)
    with _open_image(path) as img:
        try:
            img = img.convert("RGB")  # decodes: a truncated or corrupt file fails here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise DataFileError(f"{path}: cannot decode the image ({err})", path) from err
        w0, h0 = img.size
        if size is not None:
            h, w = size
            if (h, w) != (h0, w0):
                # Image.BILINEAR exists at runtime in every Pillow; Pillow's own stubs declare only
                # Image.Resampling.BILINEAR, which Pillow 9.0 (allowed by pyproject) lacks
                img = img.resize((w, h), Image.BILINEAR)  # type: ignore[attr-defined]
        array = np.asarray(img, dtype=np.float32) / 255.0
    h, w = array.shape[:2]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous(), (w / w0, h / h0)


def stored_image_size(path: str | Path, default: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` of the image at ``path`` from its header, or ``default`` when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return default
    with _open_image(path) as img:
        w, h = img.size
    return h, w


#: Largest image accepted, pixels (nuScenes: 1.44 M); the header is checked before decoding.
MAX_IMAGE_PIXELS = 1 << 26


def _open_image(path: Path) -> Any:
    """Open ``path`` with Pillow (header only), refusing unreadable files and huge images by name."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # UnidentifiedImageError is an OSError
        raise DataFileError(f"{path}: not a readable image ({err})", path) from err
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        img.close()
        raise DataFileError(f"{path}: image header claims {w}x{h} pixels, more than {MAX_IMAGE_PIXELS}", path)
    return img


def check_image_size(size: tuple[int, int]) -> tuple[int, int]:
    """Validate an ``image_size`` argument: ``(H, W)`` positive ints, pixels."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"image_size must be (H, W) positive ints (pixels), got {size!r}")
    return int(size[0]), int(size[1])


def render_cameras(
    intrinsics: torch.Tensor, image_paths: list[str], default: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """The render cameras of a sample: the calibration's own K at the stored image size.

    GaussRender renders the sensor cameras at their native resolution with the uncropped K
    (docs/method.md#cameras), whatever size the network reads the images at, so these are kept apart
    from the network's (resized, augmented) ``intrinsics``.

    Args:
        intrinsics: ``[V, 3, 3]`` pixels, the calibration for the stored images.
        image_paths: the ``V`` stored image files; an existing file's header gives its size.
        default: ``(H, W)`` assumed for an image file that is absent.

    Returns:
        ``render_intrinsics`` float32 ``[V, 3, 3]`` and ``render_image_size`` int64 ``[2]``
        (H, W) pixels.

    Raises:
        ValueError: the stored images of one sample differ in size (one render size per
            sample).
    """
    sizes = {stored_image_size(p, default) for p in image_paths}
    if len(sizes) != 1:
        raise ValueError(
            f"stored images {list(image_paths)} differ in size {sorted(sizes)}; the render cameras need one size"
        )
    (size,) = sizes
    return {
        "render_intrinsics": intrinsics.detach().clone().float(),
        "render_image_size": torch.tensor(size, dtype=torch.int64),
    }
