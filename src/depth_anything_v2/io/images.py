"""Image decoding for every input path of the toolkit (predictor, CLI, evaluation, training).

``read_image`` returns an RGB uint8 array and raises ``ImageReadError`` (a ``ValueError``) with the file name
and the reason for anything it cannot decode. What it does with each kind of image:

- EXIF orientation is applied (the array is upright as a viewer shows it).
- Grayscale (``L``, ``1``) is replicated to three channels; palette images are expanded.
- Alpha (``RGBA``, ``LA``, palette transparency) is *dropped* by default, like ``cv2.imread`` in the reference
  scripts (so results match the reference); pass ``background=(r, g, b)`` to composite over a colour instead.
- 16-bit images (``I;16`` grayscale, 16-bit RGB PNG/TIFF) are scaled to 8 bits by taking the high byte
  (``v >> 8``, what ``cv2.imread`` does), never clipped. 32-bit integer images are read as 16-bit data;
  32-bit float images as values in ``[0, 1]``.
- CMYK (including Adobe's inverted CMYK JPEGs) and YCbCr are converted to RGB by Pillow.
- Multi-frame files (GIF, TIFF) give their first frame.
- Truncated files raise (Pillow's ``LOAD_TRUNCATED_IMAGES`` must stay ``False``, its default; if another library
  switched it on, truncated files could decode partially, and ``read_image`` logs a warning once).
- Size limits: the pixel count is read from the header *before* decoding. Without ``max_side``, images above
  ``max_pixels`` (default ``DEFAULT_MAX_PIXELS`` = 100 megapixels, about 300 MB decoded) raise, and so does
  anything above Pillow's decompression-bomb guard (``2 * PIL.Image.MAX_IMAGE_PIXELS``, 179 MP).
- ``max_side=N`` asks for a downscaled image (longer side exactly ``N``, area interpolation) and lifts both
  limits for the file: ``max_pixels`` then applies to the downscaled result. JPEGs are decoded at 1/2, 1/4 or
  1/8 scale directly (little memory, even for a huge JPEG); other formats are decoded at full size, which is
  allowed while its estimated memory (``decode_memory_bytes``) fits in half the memory available now
  (``decode_budget_bytes``), and refused with the estimate otherwise.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: Default pixel limit of ``read_image`` (100 MP: a 12000 x 8000 photo passes, a 100000 x 2000 panorama not).
DEFAULT_MAX_PIXELS = 100_000_000

#: The formats every common decoder reads (OpenCV, Pillow, webdataset-style shard readers): what shards may store
#: as a sample's own bytes (``data.shards.IMAGE_EXTS``). Lower case, with the dot.
PORTABLE_IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

#: The one list of file extensions that ``read_image`` is expected to decode (lower case, with the dot): how
#: ``inputs``, dataset folders and calibration folders pick images out of a folder.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(PORTABLE_IMAGE_EXTENSIONS) | {
    ".jpe", ".jfif", ".dib", ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".avif", ".heic", ".heif"
}  # fmt: skip

_warned_truncated = False
_pillow_guard_lock = threading.Lock()

#: How a refusal tells the user to get the image in anyway (library and command line use the same words).
DOWNSCALE_HINT = "downscale while decoding with max_side (--max-side N on the command line)"


class ImageReadError(ValueError):
    """An input file is not a decodable image; the message names the file and the reason."""


class NotAnImageError(ImageReadError):
    """The file's format is not one Pillow recognises (a text file named ``.jpg``, ...)."""


class ImageTooLargeError(ImageReadError):
    """Refused for its size before decoding: the pixel limit (``width``, ``height`` and ``limit`` set), Pillow's
    decompression-bomb guard, or the memory decoding would take."""

    def __init__(
        self, message: str, *, width: int | None = None, height: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.width, self.height, self.limit = width, height, limit


def _register_optional_plugins() -> None:
    """HEIC/HEIF support when ``pillow-heif`` is installed (optional; iPhone photos)."""
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return
    pillow_heif.register_heif_opener()


def pil_to_rgb(im, background: tuple[int, int, int] | None = None) -> np.ndarray:
    """A decoded PIL image of any mode -> RGB uint8 (H, W, 3): alpha dropped (or composited on `background`),
    16-bit scaled by the high byte like cv2.imread, float images clipped to [0, 1]."""
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer, read as 16-bit) grayscale: keep the high byte like cv2.imread; Pillow's
        # own convert("RGB") would clip everything above 255 to white.
        values = np.asarray(im)
        gray = (np.clip(values.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        gray = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        if background is None:
            return np.asarray(rgba)[:, :, :3].copy()
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return np.asarray(Image.alpha_composite(base, rgba).convert("RGB"))
    if mode == "RGB":
        return np.asarray(im)
    return np.asarray(im.convert("RGB"))


def read_image(
    path: str | Path,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    background: tuple[int, int, int] | None = None,
    data: bytes | None = None,
) -> np.ndarray:
    """Decode an image file to an RGB ``uint8`` array of shape ``(H, W, 3)`` (writable, C-contiguous), upright.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (checked from the header, before decoding);
            ``None`` for no limit of our own (Pillow's decompression-bomb limit still applies).
        max_side: downscale images whose longer side is larger than this to exactly this (aspect kept);
            ``None`` keeps the full resolution.
        background: composite transparent images over this RGB colour; ``None`` drops alpha (reference).
        data: the file's bytes when the caller has already read them (``path`` then only names the image in
            messages and picks optional decoders by its suffix): the file is not read again.

    Raises:
        ImageReadError: missing, empty, unreadable, truncated, unsupported or oversized files; the message
            starts with the path and says why.

    Example::

        image_rgb = read_image("photo.jpg")  # (H, W, 3) uint8
    """
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    global _warned_truncated
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated:
        _warned_truncated = True
        logger.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on: truncated images may decode partially")
    if max_side is not None and max_side < 1:
        raise ValueError(f"expected max_side >= 1 or None, got {max_side}")
    path = Path(path)
    if data is not None:
        size = len(data)
    else:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise ImageReadError(f"{path}: no such file") from None
        except OSError as e:
            raise ImageReadError(f"{path}: cannot access ({e.strerror or e})") from None
        if path.is_dir():
            raise ImageReadError(f"{path}: is a directory, not an image")
    if size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    if path.suffix.lower() in (".heic", ".heif", ".avif"):
        _register_optional_plugins()
    try:
        with _bomb_guard_lifted(max_side is not None):
            im = Image.open(path if data is None else io.BytesIO(data))
        with im:
            width, height = im.size
            if max_side is None:
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageTooLargeError(
                        f"{path}: image too large: {width}x{height} = {width * height / 1e6:.1f} megapixels, "
                        f"limit {max_pixels / 1e6:g} megapixels (raise the limit, or {DOWNSCALE_HINT})",
                        width=width,
                        height=height,
                        limit=max_pixels,
                    )
            else:
                _prepare_reduced_decode(im, path, max_side, max_pixels)
            with _bomb_guard_lifted(max_side is not None and _above_bomb_guard(im.size)):
                im.load()  # decode now: truncation surfaces here as OSError
            image_rgb = pil_to_rgb(ImageOps.exif_transpose(im), background)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{path}: image too large (decompression bomb guard): {e}; {DOWNSCALE_HINT}") from None
    except UnidentifiedImageError:
        raise NotAnImageError(f"{path}: not an image (unrecognised format, {size} bytes)") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except MemoryError:
        raise ImageReadError(f"{path}: out of memory while decoding") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower():
            reason = f"truncated or corrupt file ({reason})"
        raise ImageReadError(f"{path}: cannot decode: {reason}") from None
    if not image_rgb.flags.writeable:  # Pillow's array interface hands out read-only views
        image_rgb = image_rgb.copy()
    height, width = image_rgb.shape[:2]
    if max_side is not None and max(height, width) > max_side:
        import cv2

        image_rgb = cv2.resize(image_rgb, _scaled_size(width, height, max_side), interpolation=cv2.INTER_AREA)
    return image_rgb


@contextlib.contextmanager
def _bomb_guard_lifted(lifted: bool) -> Iterator[None]:
    """Pillow's decompression-bomb guard switched off inside the block (when ``lifted``), for a caller that
    checks the size itself. Pillow reads the guard from a module global (when it parses a header, and for TIFF
    and GIF again when it decodes), so this takes a lock and lasts only as long as the block: the header
    parse, and the decoding only of images above the guard."""
    if not lifted:
        yield
        return
    from PIL import Image

    with _pillow_guard_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _above_bomb_guard(size: tuple[int, int]) -> bool:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS is not None and size[0] * size[1] > 2 * Image.MAX_IMAGE_PIXELS


def _prepare_reduced_decode(im, path: Path, max_side: int, max_pixels: int | None) -> None:
    """Before ``im.load()`` with ``max_side``: decode JPEGs at reduced scale; refuse what cannot fit in memory
    at the size it will decode at, or what stays above ``max_pixels`` after the downscale."""
    width, height = im.size
    if max(width, height) > max_side and im.format == "JPEG":
        # Decode at 1/2, 1/4 or 1/8 scale directly (libjpeg DCT scaling): a fraction of the memory.
        im.draft("RGB", _scaled_size(width, height, max_side))
        width, height = im.size
    out_w, out_h = _scaled_size(width, height, max_side) if max(width, height) > max_side else (width, height)
    if max_pixels is not None and out_w * out_h > max_pixels:
        raise ImageTooLargeError(
            f"{path}: image too large: {out_w}x{out_h} = {out_w * out_h / 1e6:.1f} megapixels after the "
            f"downscale to max_side {max_side}, limit {max_pixels / 1e6:g} megapixels (lower --max-side)",
            width=out_w,
            height=out_h,
            limit=max_pixels,
        )
    needed, budget = decode_memory_bytes(im), decode_budget_bytes()
    if needed > budget:
        raise ImageTooLargeError(
            f"{path}: image too large to decode: {width}x{height} {im.format or ''} needs about "
            f"{needed / 2**30:.1f} GiB, only {budget / 2**30:.1f} GiB can be spared (half the available memory); "
            "only JPEGs decode at reduced size"
        )


def decode_memory_bytes(im) -> int:
    """Estimated peak memory of decoding the opened (not yet loaded) PIL image ``im`` to RGB: the decoded
    image, its RGB/upright copy and the array, each ``W x H x max(3, bands)`` samples."""
    width, height = im.size
    bands = max(3, len(im.getbands()))
    sample_bytes = 4 if im.mode in ("I", "F") else 2 if im.mode.startswith("I;16") else 1
    return 3 * width * height * bands * sample_bytes


def decode_budget_bytes() -> int:
    """Half the memory available now (Linux ``MemAvailable``; elsewhere the physical memory), at least 1 GiB."""
    available = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    if available is None:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(2**30, (available or 2**32) // 2)


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(w, h)`` with the longer side equal to ``max_side``, aspect kept (each side at least 1)."""
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image after EXIF orientation, from the header only (no decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{path}: image too large (decompression bomb guard): {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)
