"""Pictures: class palettes, colourised semantic and depth images, PNG and animated GIF files.

Everything returns or takes ``uint8`` RGB images ``[H, W, 3]`` as numpy arrays (tensors are
accepted as inputs) and uses Pillow only. :func:`render_pictures` and :func:`orbit_cameras`
turn Gaussians into such images (the ``demo`` and ``view`` commands use them);
:func:`comparison_rows` lays out ground truth | prediction | error, the one order of every
picture (demo, view, the Lightning callback). Files are
written atomically: to a temporary file in the target folder, then renamed, so a reader never sees half a picture.
"""

from .._io import atomic_write
from .colors import (
    EMPTY_COLOR,
    IGNORE_COLOR,
    NUSCENES_COLORS,
    SEMANTICKITTI_COLORS,
    WAYMO_OCC_COLORS,
    colorize_depth,
    colorize_semantics,
    palette,
)
from .compare import ORDER, class_error_image, comparison_rows, depth_error_image, enlarge
from .layout import legend, save_gif, save_png, tile_images
from .pictures import orbit_cameras, orbit_frames, render_pictures, render_views

__all__ = [
    "NUSCENES_COLORS",
    "SEMANTICKITTI_COLORS",
    "WAYMO_OCC_COLORS",
    "EMPTY_COLOR",
    "IGNORE_COLOR",
    "palette",
    "colorize_semantics",
    "colorize_depth",
    "legend",
    "tile_images",
    "save_png",
    "save_gif",
    "atomic_write",
    "render_pictures",
    "render_views",
    "ORDER",
    "comparison_rows",
    "class_error_image",
    "depth_error_image",
    "enlarge",
    "orbit_cameras",
    "orbit_frames",
]
