"""Files in and out: image decoding (``images``), input expansion and naming (``inputs``), depth outputs and
their file formats (``outputs``), point clouds (``pointcloud``).

    from depth_anything_v2.io import read_image
    rgb = read_image("photo.jpg")          # uint8 (H, W, 3) RGB, EXIF-upright
"""

from .images import ImageReadError, ImageTooLargeError, NotAnImageError, pil_to_rgb, read_image, read_image_size

__all__ = [
    "ImageReadError",
    "ImageTooLargeError",
    "NotAnImageError",
    "pil_to_rgb",
    "read_image",
    "read_image_size",
]
