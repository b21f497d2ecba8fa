"""Image decoding for every input path of the toolkit (predictor, CLI, evaluation, training).

``read_image`` returns an RGB uint8 array and raises ``ImageReadError`` (a ``ValueError``) with the file name
and the reason for anything it cannot decode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ImageReadError(ValueError):
    """An input file is not a decodable image; the message names the file and the reason."""


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an RGB ``uint8`` array of shape ``(H, W, 3)``, EXIF orientation applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None
