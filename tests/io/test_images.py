"""Tests for ``depth_anything_v2.io.images.read_image``: every common image kind and every way a file can be bad."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from depth_anything_v2.io.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image, read_image_size


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` (8-bit gray) in its header and has no pixel data: what a size check
    must catch before any decoding starts."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _gradient_rgb(height: int = 24, width: int = 36) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 77)], -1).astype(np.uint8)


def test_rgb_png_roundtrip_exact(tmp_path):
    rgb = _gradient_rgb()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (24, 36, 3)
    assert out.flags.writeable and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_exif_orientation_applied(tmp_path):
    rgb = _gradient_rgb(20, 30)
    rgb[:5, :5] = (255, 0, 0)  # red marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(tmp_path / "r.png", exif=exif.tobytes())
    out = read_image(tmp_path / "r.png")
    assert out.shape == (30, 20, 3)  # H and W swapped
    np.testing.assert_array_equal(out, np.rot90(rgb, k=-1))
    assert out[0, -1].tolist() == [255, 0, 0]  # the marker is now at the top-right
    assert read_image_size(tmp_path / "r.png") == (30, 20)


def test_grayscale_and_bilevel(tmp_path):
    gray = _gradient_rgb()[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (24, 36, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    Image.fromarray(gray > 127).save(tmp_path / "b.png")
    assert sorted(np.unique(read_image(tmp_path / "b.png")).tolist()) == [0, 255]


def test_sixteen_bit_scaled_not_clipped(tmp_path):
    gray16 = np.linspace(0, 65535, 24 * 36).reshape(24, 36).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[:, :, 0], (gray16 >> 8).astype(np.uint8))
    assert out.max() == 255 and out.min() == 0 and len(np.unique(out)) > 200  # not clipped to white
    import cv2

    rgb16 = np.stack([gray16, 65535 - gray16, np.full_like(gray16, 256 * 100)], -1)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1])  # cv2 writes BGR
    out = read_image(tmp_path / "c16.png")
    np.testing.assert_array_equal(out, (rgb16 >> 8).astype(np.uint8))


def test_rgba_drops_alpha_or_composites(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    dropped = read_image(tmp_path / "t.png")
    assert dropped.shape == (4, 4, 3) and (dropped == [200, 0, 0]).all()  # like cv2.imread: alpha ignored
    over_white = read_image(tmp_path / "t.png", background=(255, 255, 255))
    assert over_white[0, 0].tolist() == [200, 0, 0] and over_white[1, 1].tolist() == [255, 255, 255]


def test_palette_with_and_without_transparency(tmp_path):
    rgb = _gradient_rgb()
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (24, 36, 3) and 2 < len(np.unique(out.reshape(-1, 3), axis=0)) <= 16
    assert np.abs(out.astype(int) - rgb).mean() < 20
    pal = Image.new("P", (3, 2))
    pal.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    pal.putdata([0, 1, 0, 1, 0, 1])
    pal.save(tmp_path / "pt.png", transparency=1)
    out = read_image(tmp_path / "pt.png")
    assert out[0].tolist() == [[10, 20, 30], [40, 50, 60], [10, 20, 30]]
    assert read_image(tmp_path / "pt.png", background=(0, 0, 0))[0, 1].tolist() == [0, 0, 0]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)  # pure red in CMYK
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (8, 16, 3)
    assert out[..., 0].mean() > 240 and out[..., 1].mean() < 15 and out[..., 2].mean() < 15


def test_float_and_int32_images(tmp_path):
    f = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(f, "F").save(tmp_path / "f.tiff")
    assert read_image(tmp_path / "f.tiff")[:, :, 0].tolist() == np.round(f * 255).astype(np.uint8).tolist()


def test_first_frame_of_gif(tmp_path):
    frames = [Image.new("RGB", (5, 5), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert read_image(tmp_path / "a.gif")[2, 2].tolist() == [255, 0, 0]


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif")])
def test_truncated_files_are_errors(tmp_path, fmt, suffix):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((64, 96, 3)) * 255).astype(np.uint8)).save(buf, fmt)
    data = buf.getvalue()
    for keep in (0.5, 0.97):
        path = tmp_path / f"t{keep}{suffix}"
        path.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(ImageReadError, match=rf"^{path}: (cannot decode|not an image)"):
            read_image(path)


def test_truncated_jpeg_message_says_truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_gradient_rgb(64, 64)).save(buf, "JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[:-2])  # only the end-of-image marker missing
    with pytest.raises(ImageReadError, match="truncated or corrupt file"):
        read_image(tmp_path / "t.jpg")


def test_empty_missing_directory_and_non_image(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty.jpg: empty file \(0 bytes\)$"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageReadError, match=r"nope\.png: no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)
    (tmp_path / "notes.png").write_text("hello, I am text")
    with pytest.raises(ImageReadError, match=r"notes.png: not an image \(unrecognised format, 16 bytes\)"):
        read_image(tmp_path / "notes.png")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_oversize_refused_from_header_without_decoding(tmp_path):
    # A 100000 x 1500 panorama (150 MP): refused from the header, before decoding (it has no pixel data).
    (tmp_path / "pano.png").write_bytes(_png_header_only(100_000, 1_500))
    with pytest.raises(ImageReadError, match=r"pano.png: image too large: 100000x1500 = 150.0 megapixels"):
        read_image(tmp_path / "pano.png")
    assert DEFAULT_MAX_PIXELS == 100_000_000
    # A custom limit applies the same way.
    Image.new("RGB", (50, 40)).save(tmp_path / "small.png")
    with pytest.raises(ImageReadError, match=r"50x40 = 0.0 megapixels, limit 0.001 megapixels"):
        read_image(tmp_path / "small.png", max_pixels=1000)


def test_decompression_bomb_refused(tmp_path):
    # 400 MP: above Pillow's own bomb limit too, even with our limit switched off.
    (tmp_path / "bomb.png").write_bytes(_png_header_only(20_000, 20_000))
    with pytest.raises(ImageReadError, match=r"bomb\.png: image too large \(decompression bomb guard\)"):
        read_image(tmp_path / "bomb.png", max_pixels=None)


def test_max_side_downscales(tmp_path):
    rgb = _gradient_rgb(300, 400)
    Image.fromarray(rgb).save(tmp_path / "big.png")
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=95)
    for name in ("big.png", "big.jpg"):
        out = read_image(tmp_path / name, max_side=100)
        assert out.shape == (75, 100, 3), name
        assert abs(int(out[37, 50, 0]) - int(rgb[150, 200, 0])) < 8
    # The limit applies to the decoded size: a JPEG decoded at 1/4 scale passes a limit the full size fails.
    assert read_image(tmp_path / "big.jpg", max_side=100, max_pixels=100 * 100).shape == (75, 100, 3)
    with pytest.raises(ValueError, match="expected max_side >= 1 or None, got 0"):
        read_image(tmp_path / "big.png", max_side=0)


def test_bytes_already_read_are_decoded_without_touching_the_file(tmp_path):
    rgb = _gradient_rgb()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    gone = tmp_path / "gone.png"  # never written: the bytes alone must do
    np.testing.assert_array_equal(read_image(gone, data=buf.getvalue()), rgb)
    with pytest.raises(ImageReadError, match=r"gone.png: empty file \(0 bytes\)$"):
        read_image(gone, data=b"")
    with pytest.raises(ImageReadError, match=r"gone.png: cannot decode: truncated"):
        read_image(gone, data=buf.getvalue()[:60])


@pytest.fixture
def small_bomb_guard(monkeypatch):
    """Pillow's decompression-bomb guard at 2 x 5000 pixels: a 200 x 100 image exercises the paths of a 180 MP
    one without the cost."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    return 5000


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("fmt", ["png", "jpg", "tif"])
def test_max_side_rescues_images_above_both_limits(tmp_path, small_bomb_guard, fmt):
    rgb = _gradient_rgb(100, 200)
    Image.fromarray(rgb).save(tmp_path / f"big.{fmt}")
    # Without max_side: refused by the bomb guard, and the message names the way out.
    with pytest.raises(ImageReadError, match=r"decompression bomb guard.*--max-side"):
        read_image(tmp_path / f"big.{fmt}", max_pixels=None)
    with pytest.raises(ImageReadError, match=r"limit 0\.001 megapixels .*--max-side"):
        Image.MAX_IMAGE_PIXELS = None
        read_image(tmp_path / f"big.{fmt}", max_pixels=1000)
    Image.MAX_IMAGE_PIXELS = small_bomb_guard
    # With max_side: decoded (JPEG at reduced scale, the others in full) and downscaled; max_pixels applies
    # to the result.
    out = read_image(tmp_path / f"big.{fmt}", max_side=40, max_pixels=1000)
    assert out.shape == (20, 40, 3)
    assert abs(int(out[10, 20, 0]) - int(rgb[50, 100, 0])) < 8
    assert Image.MAX_IMAGE_PIXELS == 5000  # the guard is back for everyone else
    with pytest.raises(ImageReadError, match=r"20x10 = 0\.0 megapixels after the downscale to max_side 20"):
        read_image(tmp_path / f"big.{fmt}", max_side=20, max_pixels=100)


def test_max_side_decoding_is_bounded_by_memory(tmp_path, monkeypatch):
    from depth_anything_v2.io import images

    Image.new("RGB", (400, 300)).save(tmp_path / "big.png")
    assert images.decode_budget_bytes() >= 2**30
    monkeypatch.setattr(images, "decode_budget_bytes", lambda: 100_000)
    # PNG has no reduced decoding: 3 copies of 400 x 300 x 3 bytes = 1.08 MB > the 0.1 MB budget.
    with pytest.raises(ImageReadError, match=r"big\.png: image too large to decode: 400x300 PNG needs about"):
        read_image(tmp_path / "big.png", max_side=50)
    # The 20000 x 20000 header-only "bomb" is refused the same way, before any decoding.
    (tmp_path / "bomb.png").write_bytes(_png_header_only(20_000, 20_000))
    monkeypatch.setattr(images, "decode_budget_bytes", lambda: 2**30)
    with pytest.raises(ImageReadError, match=r"bomb\.png: image too large to decode: 20000x20000"):
        read_image(tmp_path / "bomb.png", max_side=50)
