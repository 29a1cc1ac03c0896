"""Camera images: load as RGB float tensors and keep intrinsics consistent with a resize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._untrusted import brief
from .files import DataFileError, optional_regular_file, require_regular_file

__all__ = [
    "load_image",
    "stored_image_size",
    "common_image_size",
    "check_image_size",
    "render_cameras",
    "monocular_camera",
    "IMAGE_FITS",
    "crop_origin",
    "fit_intrinsics",
]

#: How a stored image becomes the network input of ``image_size``: ``"resize"`` (bilinear, K
#: scaled) or ``"crop"`` (the release's nuScenes input: keep the pixels, drop the top rows and
#: the columns on both sides, K shifted).
IMAGE_FITS: tuple[str, ...] = ("resize", "crop")


def load_image(
    path: str | Path, size: tuple[int, int] | None = None, fit: str = "resize"
) -> tuple[torch.Tensor, tuple[float, float]]:
    """Read an image file as RGB ``[3, H, W]`` float32 in [0, 1], optionally resized or cropped.

    Args:
        path: image file (any format Pillow reads).
        size: ``(H, W)`` pixels to return, or None to keep the stored size.
        fit: ``"resize"`` (bilinear) or ``"crop"`` (the pixels of :func:`crop_origin`'s box;
            ``size`` must fit inside the stored image).

    Returns:
        The image and ``(sx, sy)``, the factors from stored to returned pixel coordinates
        (pass them to :func:`gaussrender.geometry.cameras.scale_intrinsics`; ``(1, 1)`` for a
        crop, whose K follows with :func:`fit_intrinsics`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFileError: not a readable image, corrupt data, or more than
            :data:`MAX_IMAGE_PIXELS` pixels.
    """
    from PIL import Image

    path = require_regular_file(path, "image")
    if size is not None:
        size = check_image_size(size)
    if fit not in IMAGE_FITS:
        raise ValueError(f"fit must be one of {IMAGE_FITS}, got {fit!r}")
    with _open_image(path) as img:
        try:
            img = img.convert("RGB")  # decodes: a truncated or corrupt file fails here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise DataFileError(f"{path}: cannot decode the image ({err})", path) from err
        w0, h0 = img.size
        if size is not None and fit == "crop":
            top, left = crop_origin((h0, w0), size, where=str(path))
            img = img.crop((left, top, left + size[1], top + size[0]))
        elif size is not None:
            h, w = size
            if (h, w) != (h0, w0):
                # Image.BILINEAR exists at runtime in every Pillow; Pillow's own stubs declare only
                # Image.Resampling.BILINEAR, which Pillow 9.0 (allowed by pyproject) lacks
                img = img.resize((w, h), Image.BILINEAR)  # type: ignore[attr-defined]
        array = np.asarray(img, dtype=np.float32) / 255.0
    h, w = array.shape[:2]
    scale = (1.0, 1.0) if fit == "crop" else (w / w0, h / h0)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous(), scale


def crop_origin(stored: tuple[int, int], size: tuple[int, int], where: str = "image") -> tuple[int, int]:
    """``(top, left)`` pixel of the network input's crop in a stored image, the release's rule.

    The release (``ResizeCropFlipImage`` with ``resize_lim=(1, 1)``, ``bot_pct_lim=(0, 0)``;
    its ``dataset/nuscenes.py`` ``_sample_augmentation``) keeps the bottom rows: ``top = H0 -
    H`` (nuScenes 900 -> 896: the top 4 rows go), and centres the columns, ``left = (W0 - W) //
    2`` (its eval's rule; nuScenes keeps all 1600).

    Raises:
        ValueError: ``size`` does not fit inside ``stored``.
    """
    (h0, w0), (h, w) = stored, size
    if h > h0 or w > w0:
        raise ValueError(f"{where}: cannot crop {h}x{w} (H x W) out of a {h0}x{w0} image; use image fit 'resize'")
    return h0 - h, (w0 - w) // 2


def fit_intrinsics(k: torch.Tensor, stored: tuple[int, int], size: tuple[int, int], fit: str) -> torch.Tensor:
    """The pinhole ``k`` ``[..., 3, 3]`` of a stored image of ``stored`` (H, W) pixels, for the
    network input of ``size``: ``"resize"`` scales rows 0 and 1 by ``W / W0`` and ``H / H0``,
    ``"crop"`` moves the principal point by the crop's origin (``cx - left``, ``cy - top``:
    pixel ``(r, c)`` of the crop is pixel ``(r + top, c + left)`` of the stored image)."""
    from ..geometry.cameras import scale_intrinsics

    if fit not in IMAGE_FITS:
        raise ValueError(f"fit must be one of {IMAGE_FITS}, got {fit!r}")
    if fit == "resize":
        return scale_intrinsics(k, size[1] / stored[1], size[0] / stored[0])
    top, left = crop_origin(stored, size)
    out = k.clone()
    out[..., 0, 2] -= left
    out[..., 1, 2] -= top
    return out


def stored_image_size(path: str | Path, default: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` of the image at ``path`` from its header, or ``default`` when the file is absent.

    Raises:
        DataFileError: something other than a regular file is there (a directory, FIFO or
            device), or the image header is unreadable or claims too many pixels.
    """
    path = Path(path)
    if not optional_regular_file(path, "image"):
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
    """Validate an ``image_size`` argument: ``(H, W)`` positive ints, pixels, at most
    :data:`MAX_IMAGE_PIXELS` in all (an image is resized to it: a larger one cannot fit)."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"image_size must be (H, W) positive ints (pixels), got {brief(size)}")
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"image_size {tuple(size)} has more than {MAX_IMAGE_PIXELS} pixels")
    return int(size[0]), int(size[1])


def common_image_size(image_paths: list[str], default: tuple[int, int], what: str = "stored images") -> tuple[int, int]:
    """The one ``(H, W)`` the stored images of a sample share (an absent file counts as ``default``).

    Raises:
        DataFileError: (a ValueError) they differ; the message names the image(s) whose size
            differs from the others' (the most common size), not only the set of sizes.
    """
    sizes = [stored_image_size(p, default) for p in image_paths]
    if len(set(sizes)) <= 1:
        return sizes[0] if sizes else default
    counts: dict[tuple[int, int], int] = {}
    for s in sizes:
        counts[s] = counts.get(s, 0) + 1
    usual = max(counts, key=lambda s: (counts[s], s == default))
    odd = [
        f"{p} is {w}x{h}" + (" (absent: assumed)" if not Path(p).exists() else "")
        for p, (h, w) in zip(image_paths, sizes)
        if (h, w) != usual
    ]
    first = next(p for p, s in zip(image_paths, sizes) if s != usual)
    raise DataFileError(
        f"{what} differ in size: {'; '.join(odd[:3])}{' ...' if len(odd) > 3 else ''}, the other "
        f"{counts[usual]} are {usual[1]}x{usual[0]} (W x H); one sample's cameras need one size",
        first,
    )


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
    size = common_image_size(list(image_paths), default)
    return {
        "render_intrinsics": intrinsics.detach().clone().float(),
        "render_image_size": torch.tensor(size, dtype=torch.int64),
    }


def monocular_camera(
    camera_name: str,
    image_path: Path,
    intrinsics: np.ndarray,
    cam_from_velo: np.ndarray,
    stored_size: tuple[int, int],
    image_size: tuple[int, int] | None,
    load_images: bool,
) -> dict[str, Any]:
    """The camera entries of a one-camera sample (SSCBench-KITTI360, SemanticKITTI).

    Args:
        camera_name: the camera's folder name (``image_00``, ``image_2``).
        image_path: its stored image of the sample.
        intrinsics: ``[3, 3]`` pixels of the stored image (the calibration's K).
        cam_from_velo: ``[4, 4]`` grid (velodyne) to camera, metres, OpenCV camera frame.
        stored_size: ``(H, W)`` assumed when the image file is absent.
        image_size: ``(H, W)`` the network reads the image at; None: the stored size.
        load_images: read the image (``images`` ``[1, 3, H, W]``); otherwise only its header.

    Returns:
        ``camera_names``, ``image_paths``, the render cameras (:func:`render_cameras`: the
        calibration's K at the stored size, whatever ``image_size`` is), ``images`` when loaded,
        ``intrinsics`` ``[1, 3, 3]`` scaled to the network's input and ``cam_from_grid`` ``[1, 4, 4]``.
    """
    from ..geometry.cameras import scale_intrinsics

    k = torch.from_numpy(intrinsics).float()[None]
    out: dict[str, Any] = {"camera_names": [camera_name], "image_paths": [str(image_path)]}
    out.update(render_cameras(k, [str(image_path)], stored_size))
    if load_images:
        image, (sx, sy) = load_image(image_path, image_size)
        out["images"] = image[None]
        k = scale_intrinsics(k, sx, sy)
    elif image_size is not None:
        h0, w0 = stored_image_size(image_path, stored_size)
        k = scale_intrinsics(k, image_size[1] / w0, image_size[0] / h0)
    out["intrinsics"] = k
    out["cam_from_grid"] = torch.from_numpy(cam_from_velo).float()[None]
    return out
