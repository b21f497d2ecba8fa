"""Readers for depth training data: the paper's five synthetic sets in their published layouts, and a generic
image + depth folder.

Every reader is a map-style torch ``Dataset`` whose items are the common *sample dict* built by
:func:`make_sample`:

=================  ====================================================================================
key                value
=================  ====================================================================================
``"image"``        float32 tensor (3, H, W), RGB, ImageNet-normalised (``(x / 255 - mean) / std``)
``"disparity"``    float32 (H, W), ``1 / depth_m`` (1/m); sky 0 — with ``target="disparity"`` (default)
``"depth_m"``      float32 (H, W), metres, 0 where invalid — with ``target="depth"`` (metric fine-tuning)
``"valid_mask"``   bool (H, W): pixels that carry a label
``"sky_mask"``     bool (H, W): sky (known only where the dataset marks it)
``"key"``          str, a stable id (the image path relative to the dataset root, without suffix)
=================  ====================================================================================

Sky and invalid pixels: for relative (disparity) training sky is a *valid* label with disparity 0 (infinitely
far), as the paper's synthetic data allows; pixels without ground truth are invalid. For metric training
(``target="depth"``) sky is invalid and so is every depth outside ``[min_depth, max_depth]`` (the reference
metric trainer's rule, ``min_depth = 0.001``).

Layouts and encodings (``root`` is the directory the dataset was extracted into):

* :class:`Hypersim` — ``<scene>/images/scene_cam_XX_final_preview/frame.NNNN.tonemap.jpg`` and
  ``<scene>/images/scene_cam_XX_geometry_hdf5/frame.NNNN.depth_meters.hdf5`` (HDF5 dataset ``"dataset"``:
  distance along the ray in metres, NaN = no geometry). Converted to planar depth with the reference's focal
  886.81 px at 1024 x 768 (scaled with the width for other sizes). Needs ``h5py``.
* :class:`VirtualKITTI2` — ``<SceneXX>/<variation>/frames/rgb/Camera_N/rgb_NNNNN.jpg`` and
  ``.../frames/depth/Camera_N/depth_NNNNN.png`` (uint16 centimetres; 65535 = 655.35 m = sky).
* :class:`TartanAir` — ``<env>/<Easy|Hard>/<PNNN>/image_left/NNNNNN_left.png`` and
  ``.../depth_left/NNNNNN_left_depth.npy`` (float32 metres). Assumed, as reported by users training Depth
  Anything V2 on it (DepthAnything/Depth-Anything-V2#144): depth 0 = invalid, depth > 10000 m = sky (the
  sky is a far dome); the ``amusement`` environment's sky dome is closer and corrupt (tartanair_tools#46),
  exclude it with ``exclude=("amusement",)`` if that matters.
* :class:`IRS` — ``<Home|Office|Restaurant|Store>/<scene>/l_N.png`` and ``.../d_N.exr`` (float32 disparity
  in pixels for the left view). Depth = ``baseline * focal / disparity`` with baseline 0.1 m and focal
  480 px (assumed: the values public IRS preprocessing scripts use for its 960 x 540 images; override with
  ``baseline_m`` / ``focal_px``); disparity <= 0 is invalid. Needs the ``OpenEXR`` package.
* :class:`BlendedMVS` — ``<scan id>/blended_images/NNNNNNNN.jpg`` (the ``*_masked.jpg`` variants are
  skipped) and ``<scan id>/rendered_depth_maps/NNNNNNNN.pfm`` (float32 depth, scan units, 0 = invalid;
  the scan's scale is arbitrary, which the scale-invariant losses do not mind).
* :class:`ImageDepthFolder` — ``images/<name>.<jpg|png|...>`` and ``depth/<name>.<npy|png|pfm|exr>``
  (nested folders allowed, mirrored). ``depth_unit`` states the unit of the stored numbers (``"m"``,
  ``"cm"``, ``"mm"`` or metres per stored unit as a float, e.g. ``1/256`` for KITTI-style PNG);
  ``label="disparity"`` when the files hold disparity instead of depth. In ``.npy``/``.pfm``/``.exr`` depth
  files ``+inf`` marks sky and NaN / values <= 0 mark invalid pixels; in PNG files 0 is invalid and
  ``png_sky_value`` (if given) marks sky.

Instead of walking the folders (slow on millions of files), every reader accepts ``list_file``: a text file
with one sample per line, the image path relative to ``root``, optionally followed by whitespace and the
label path (otherwise derived from the image path as above).

A file that cannot be read raises :class:`SampleReadError` (a ``ValueError`` naming the file and the reason).
With ``on_error="skip"`` the reader logs a warning, remembers the key in ``failed_keys`` (per process) and
returns the next readable sample instead, so one corrupt file among thousands does not stop a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..configs import IMAGENET_MEAN, IMAGENET_STD
from ..io.depth_files import hypersim_distance_to_depth, read_pfm, read_png16, write_pfm
from ..io.images import IMAGE_EXTENSIONS, ImageReadError, read_image

log = logging.getLogger(__name__)

__all__ = [
    "IRS",
    "BlendedMVS",
    "DepthDataset",
    "Hypersim",
    "ImageDepthFolder",
    "Record",
    "SampleReadError",
    "TartanAir",
    "VirtualKITTI2",
    "check_target",
    "depth_to_disparity",
    "hypersim_distance_to_depth",
    "make_sample",
    "normalize_image",
    "read_exr",
    "read_pfm",
    "write_pfm",
]

Target = Literal["disparity", "depth"]
Transform = Callable[[dict[str, Any]], dict[str, Any]]
_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}


class SampleReadError(ValueError):
    """A training sample could not be read; the message names the file and the reason."""


def check_target(target: str) -> None:
    if target not in ("disparity", "depth"):
        raise ValueError(f"expected target 'disparity' or 'depth', got {target!r}")


# ------------------------------------------------------------------------------------------ conversion
def depth_to_disparity(
    depth_m: np.ndarray,
    valid_mask: np.ndarray | None = None,
    sky_mask: np.ndarray | None = None,
    *,
    sky_valid: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert depth to disparity ``1 / depth`` with explicit invalid and sky handling.

    Args:
        depth_m: (H, W) depth (any positive unit; metres give 1/m). Non-finite or <= 0 values are invalid,
            except ``+inf`` which is sky when ``sky_mask`` is not given.
        valid_mask: optional (H, W) bool of pixels with ground truth (combined with the finiteness test).
        sky_mask: optional (H, W) bool of sky pixels (disparity 0); default: ``depth_m == +inf``.
        sky_valid: whether sky counts as a valid label (True for relative training, as in the paper).

    Returns:
        ``(disparity float32 (H, W), valid bool (H, W))``; disparity is 0 wherever it is not a finite inverse
        depth (sky and invalid pixels).
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    sky = np.isposinf(depth) if sky_mask is None else np.asarray(sky_mask, bool)
    ok = np.isfinite(depth) & (depth > 0) & ~sky
    if valid_mask is not None:
        ok &= np.asarray(valid_mask, bool)
    disparity = np.zeros(depth.shape, np.float32)
    np.divide(1.0, depth, out=disparity, where=ok, casting="unsafe")
    valid = ok | (sky & sky_valid)
    return disparity, valid


def normalize_image(image_rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> float32 tensor (3, H, W) ImageNet-normalised (the network's input space)."""
    x = image_rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def make_sample(
    image_rgb: np.ndarray,
    depth_m: np.ndarray,
    *,
    valid_mask: np.ndarray | None = None,
    sky_mask: np.ndarray | None = None,
    target: Target = "disparity",
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    transform: Transform | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Build the common sample dict from an RGB image and its depth (the one path every reader takes).

    Order: depth -> target (disparity with sky valid, or depth in range), then ``transform`` on the numpy
    dict ``{"image_rgb", "disparity"|"depth_m", "valid_mask", "sky_mask"}`` (see
    :mod:`depth_anything_v2.data.transforms`), then conversion to tensors (``"image_rgb"`` becomes the
    normalised ``"image"``; other arrays become tensors; other values pass through).
    """
    check_target(target)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected image_rgb (H, W, 3) uint8, got {image_rgb.dtype} {image_rgb.shape}")
    if depth_m.shape != image_rgb.shape[:2]:
        raise ValueError(f"expected depth of shape {image_rgb.shape[:2]} (the image's), got {depth_m.shape}")
    depth = np.asarray(depth_m, np.float32)
    sky = np.isposinf(depth) if sky_mask is None else np.asarray(sky_mask, bool)
    sample: dict[str, Any] = {"image_rgb": image_rgb}
    if target == "disparity":
        disparity, valid = depth_to_disparity(depth, valid_mask, sky, sky_valid=True)
        sample["disparity"] = disparity
    else:
        valid = np.isfinite(depth) & (depth >= min_depth) & ~sky
        if max_depth is not None:
            valid &= depth <= max_depth
        if valid_mask is not None:
            valid &= np.asarray(valid_mask, bool)
        sample["depth_m"] = np.where(valid, depth, 0.0).astype(np.float32)
    sample["valid_mask"] = valid
    sample["sky_mask"] = sky
    if transform is not None:
        sample = transform(sample)
    return to_tensors(sample, key)


def to_tensors(sample: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """Numpy sample dict -> tensors: ``"image_rgb"`` -> normalised ``"image"``; arrays -> tensors."""
    out: dict[str, Any] = {}
    for name, value in sample.items():
        if name == "image_rgb":
            out["image"] = normalize_image(value)
        elif isinstance(value, np.ndarray):
            out[name] = torch.from_numpy(np.ascontiguousarray(value))
        else:
            out[name] = value
    if key is not None:
        out["key"] = key
    return out


# ----------------------------------------------------------------------------------------- file formats
def read_exr(path: str | Path) -> np.ndarray:
    """Read the first channel (``Y``, ``R`` or the only one) of an OpenEXR file as float32 (H, W).

    Needs the ``OpenEXR`` package (``pip install OpenEXR``); OpenCV wheels usually lack EXR support.
    """
    try:
        import OpenEXR
    except ImportError:
        raise ImportError("reading .exr files needs the OpenEXR package: pip install OpenEXR") from None
    try:
        with OpenEXR.File(str(path)) as exr:
            channels = exr.channels()
            for name in ("Y", "R", "RGB", "RGBA", "G"):
                if name in channels:
                    pixels = channels[name].pixels
                    break
            else:
                pixels = next(iter(channels.values())).pixels
    except (OSError, RuntimeError, ValueError, StopIteration) as e:
        raise SampleReadError(f"{path}: not a readable EXR file ({e})") from None
    pixels = np.asarray(pixels, np.float32)
    return pixels[..., 0] if pixels.ndim == 3 else pixels


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise SampleReadError(f"{path}: not a readable .npy file ({e})") from None
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise SampleReadError(f"{path}: expected a 2-D depth array, got shape {array.shape}")
    return array.astype(np.float32)


# ----------------------------------------------------------------------------------------- base reader
@dataclass(frozen=True)
class Record:
    """One sample on disk: a stable ``key``, the image path, the label path."""

    key: str
    image: Path
    label: Path


@dataclass
class RawSample:
    """What a reader decodes before targets and transforms: depth in metres (or dataset units)."""

    image_rgb: np.ndarray
    depth_m: np.ndarray
    valid_mask: np.ndarray
    sky_mask: np.ndarray


class DepthDataset(Dataset):
    """Base of the readers: a list of :class:`Record` s plus a label decoder.

    Subclasses define ``image_patterns`` (globs relative to ``root``), ``label_path(image_rel)`` and
    ``read_label(path, image_shape) -> (depth, valid, sky)``.

    Args:
        root: the dataset directory.
        target: ``"disparity"`` (relative training) or ``"depth"`` (metric fine-tuning).
        transform: optional callable on the numpy sample dict (see :mod:`depth_anything_v2.data.transforms`).
        min_depth, max_depth: the valid depth range for ``target="depth"``.
        list_file: optional text file listing the samples (see the module docstring) instead of a folder walk.
        on_error: ``"raise"`` (default) or ``"skip"`` (warn, record in ``failed_keys``, return the next sample).
        exclude: substrings; images whose relative path contains one are left out.
    """

    name = "depth"
    image_patterns: tuple[str, ...] = ()

    def __init__(
        self,
        root: str | Path,
        *,
        target: Target = "disparity",
        transform: Transform | None = None,
        min_depth: float = 1e-3,
        max_depth: float | None = None,
        list_file: str | Path | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        exclude: Iterable[str] = (),
    ) -> None:
        check_target(target)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"expected on_error 'raise' or 'skip', got {on_error!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name}: dataset root {self.root} is not a directory")
        self.target, self.transform = target, transform
        self.min_depth, self.max_depth = min_depth, max_depth
        self.on_error = on_error
        self.failed_keys: list[str] = []
        exclude = tuple(exclude)
        records = self._records_from_list(Path(list_file)) if list_file is not None else self._scan()
        self.records = [r for r in records if not any(e in str(r.image.relative_to(self.root)) for e in exclude)]
        if not self.records:
            raise FileNotFoundError(
                f"{self.name}: no samples found under {self.root}"
                + (f" from list {list_file}" if list_file else f" (expected files like {self.image_patterns[0]})")
            )
        log.info("%s: %d samples under %s", self.name, len(self.records), self.root)

    # -- discovery
    def _scan(self) -> list[Record]:
        images: set[Path] = set()
        for pattern in self.image_patterns:
            images.update(p for p in self.root.glob(pattern) if self.accept_image(p))
        return [self._record(p.relative_to(self.root)) for p in sorted(images)]

    def _records_from_list(self, list_file: Path) -> list[Record]:
        records = []
        for line_no, line in enumerate(list_file.read_text().splitlines(), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) > 2:
                raise ValueError(f"{list_file}:{line_no}: expected 'image [label]', got {len(parts)} fields")
            image = Path(parts[0])
            if len(parts) == 2:
                records.append(Record(self.key_for(image), self.root / image, self.root / parts[1]))
            else:
                records.append(self._record(image))
        return records

    def _record(self, image_rel: Path) -> Record:
        return Record(self.key_for(image_rel), self.root / image_rel, self.root / self.label_path(image_rel))

    def accept_image(self, path: Path) -> bool:
        return path.is_file()

    def key_for(self, image_rel: Path) -> str:
        return image_rel.with_suffix("").as_posix()

    def label_path(self, image_rel: Path) -> Path:
        raise NotImplementedError

    def read_label(self, path: Path, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode a label file to ``(depth (H, W) float32, valid bool, sky bool)``."""
        raise NotImplementedError

    # -- access
    def __len__(self) -> int:
        return len(self.records)

    def read_raw(self, index: int) -> RawSample:
        """Decode sample ``index`` (image and depth, no target conversion or transform)."""
        record = self.records[index]
        try:
            image = read_image(record.image)
        except ImageReadError as e:
            raise SampleReadError(str(e)) from None
        if not record.label.is_file():
            raise SampleReadError(f"{record.label}: no such label file (for image {record.image})")
        try:
            depth, valid, sky = self.read_label(record.label, image.shape[:2])
        except SampleReadError:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise SampleReadError(f"{record.label}: cannot read label ({e})") from None
        if depth.shape != image.shape[:2]:
            raise SampleReadError(
                f"{record.label}: expected a label of the image's size {image.shape[:2]}, got {depth.shape}"
            )
        return RawSample(image, depth, valid, sky)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.records)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} samples")
        index %= n
        attempts = 1 if self.on_error == "raise" else min(n, 16)
        for offset in range(attempts):
            i = (index + offset) % n
            try:
                raw = self.read_raw(i)
            except SampleReadError as e:
                if self.on_error == "raise":
                    raise
                log.warning("%s: skipping unreadable sample: %s", self.name, e)
                self.failed_keys.append(self.records[i].key)
                continue
            return make_sample(
                raw.image_rgb,
                raw.depth_m,
                valid_mask=raw.valid_mask,
                sky_mask=raw.sky_mask,
                target=self.target,
                min_depth=self.min_depth,
                max_depth=self.max_depth,
                transform=self.transform,
                key=self.records[i].key,
            )
        raise SampleReadError(f"{self.name}: {attempts} consecutive unreadable samples from index {index}")


# ------------------------------------------------------------------------------------------ the readers
class Hypersim(DepthDataset):
    """Hypersim (Apple): tonemapped JPEGs + HDF5 ray distances (see the module docstring)."""

    name = "hypersim"
    image_patterns = ("*/images/scene_cam_*_final_preview/frame.*.tonemap.jpg",)

    def label_path(self, image_rel: Path) -> Path:
        folder = image_rel.parent.name.replace("_final_preview", "_geometry_hdf5")
        name = image_rel.name.replace(".tonemap.jpg", ".depth_meters.hdf5")
        return image_rel.parent.parent / folder / name

    def key_for(self, image_rel: Path) -> str:
        return image_rel.as_posix().removesuffix(".tonemap.jpg")

    def read_label(self, path: Path, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        try:
            import h5py
        except ImportError:
            raise ImportError("reading Hypersim needs h5py: pip install h5py") from None
        try:
            with h5py.File(path, "r") as f:
                distance = np.asarray(f["dataset"], dtype=np.float64)
        except OSError as e:
            raise SampleReadError(f"{path}: not a readable HDF5 file ({e})") from None
        valid = np.isfinite(distance) & (distance > 0)
        depth = hypersim_distance_to_depth(np.where(valid, distance, 0.0))
        return depth, valid, np.zeros_like(valid)


class VirtualKITTI2(DepthDataset):
    """Virtual KITTI 2: RGB JPEGs + uint16 PNG depth in centimetres, 65535 = sky."""

    name = "vkitti2"
    image_patterns = ("*/*/frames/rgb/Camera_*/rgb_*.jpg",)
    SKY_VALUE = 65535

    def label_path(self, image_rel: Path) -> Path:
        parts = list(image_rel.parts)
        parts[parts.index("rgb")] = "depth"
        name = image_rel.name.replace("rgb_", "depth_", 1).replace(".jpg", ".png")
        return Path(*parts[:-1], name)

    def read_label(self, path: Path, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raw = read_png16(path, strict=False)
        if raw.dtype != np.uint16:
            raise SampleReadError(f"{path}: expected a 16-bit PNG (centimetres), got {raw.dtype}")
        sky = raw == self.SKY_VALUE
        valid = (raw > 0) & ~sky
        depth = raw.astype(np.float32) / 100.0
        depth[sky] = np.inf
        return depth, valid, sky


class TartanAir(DepthDataset):
    """TartanAir: PNG images + float32 ``.npy`` depth in metres; 0 invalid, > ``sky_depth_m`` sky."""

    name = "tartanair"

    def __init__(
        self,
        root: str | Path,
        *,
        camera: Literal["left", "right"] = "left",
        sky_depth_m: float = 10000.0,
        **kwargs: Any,
    ) -> None:
        if camera not in ("left", "right"):
            raise ValueError(f"expected camera 'left' or 'right', got {camera!r}")
        self.camera, self.sky_depth_m = camera, sky_depth_m
        self.image_patterns = (f"**/image_{camera}/*_{camera}.png",)
        super().__init__(root, **kwargs)

    def label_path(self, image_rel: Path) -> Path:
        stem = image_rel.stem  # 000000_left
        return image_rel.parent.parent / f"depth_{self.camera}" / f"{stem}_depth.npy"

    def read_label(self, path: Path, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        depth = _read_npy(path)
        sky = depth > self.sky_depth_m
        valid = np.isfinite(depth) & (depth > 0) & ~sky
        return np.where(sky, np.inf, depth).astype(np.float32), valid, sky


class IRS(DepthDataset):
    """IRS: left PNG images + EXR disparity (pixels); depth = baseline * focal / disparity."""

    name = "irs"
    image_patterns = ("**/l_*.png",)

    def __init__(self, root: str | Path, *, baseline_m: float = 0.1, focal_px: float = 480.0, **kwargs: Any) -> None:
        self.baseline_m, self.focal_px = baseline_m, focal_px
        super().__init__(root, **kwargs)

    def label_path(self, image_rel: Path) -> Path:
        return image_rel.parent / ("d_" + image_rel.stem[2:] + ".exr")

    def read_label(self, path: Path, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        disparity = read_exr(path)
        valid = np.isfinite(disparity) & (disparity > 0)
        depth = np.zeros(disparity.shape, np.float32)
        np.divide(self.baseline_m * self.focal_px, disparity, out=depth, where=valid)
        return depth, valid, np.zeros_like(valid)


class BlendedMVS(DepthDataset):
    """BlendedMVS: blended JPEGs + rendered PFM depth (scan units, 0 = invalid); ``*_masked.jpg`` skipped."""

    name = "blendedmvs"
    image_patterns = ("*/blended_images/*.jpg",)

    def accept_image(self, path: Path) -> bool:
        return path.is_file() and not path.stem.endswith("_masked")

    def label_path(self, image_rel: Path) -> Path:
        return image_rel.parent.parent / "rendered_depth_maps" / f"{image_rel.stem}.pfm"

    def read_label(self, path: Path, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        depth = read_pfm(path)
        if depth.ndim != 2:
            raise SampleReadError(f"{path}: expected a single-channel PFM depth map, got shape {depth.shape}")
        valid = np.isfinite(depth) & (depth > 0)
        return np.where(valid, depth, 0.0).astype(np.float32), valid, np.zeros_like(valid)


class ImageDepthFolder(DepthDataset):
    """Generic ``images/<name>.<ext>`` + ``depth/<name>.<npy|png|pfm|exr>`` folder (see the module docstring).

    Args:
        depth_unit: unit of the stored numbers: ``"m"``, ``"cm"``, ``"mm"``, or metres per stored unit.
        label: ``"depth"`` (default) or ``"disparity"`` (files hold disparity; converted to ``1 / disparity``
            as depth so the rest of the pipeline is shared; 0 disparity in float files = sky).
        png_sky_value: stored PNG value that marks sky (e.g. 65535), or None.
        image_dir, depth_dir: the two sub-folder names.
    """

    name = "folder"
    label_suffixes = (".npy", ".png", ".pfm", ".exr")

    def __init__(
        self,
        root: str | Path,
        *,
        depth_unit: str | float = "m",
        label: Literal["depth", "disparity"] = "depth",
        png_sky_value: int | None = None,
        image_dir: str = "images",
        depth_dir: str = "depth",
        **kwargs: Any,
    ) -> None:
        if isinstance(depth_unit, str):
            if depth_unit not in _UNITS:
                raise ValueError(f"expected depth_unit in {sorted(_UNITS)} or a float, got {depth_unit!r}")
            self.unit_scale = _UNITS[depth_unit]
        else:
            if not depth_unit > 0:
                raise ValueError(f"expected a positive depth_unit scale, got {depth_unit}")
            self.unit_scale = float(depth_unit)
        if label not in ("depth", "disparity"):
            raise ValueError(f"expected label 'depth' or 'disparity', got {label!r}")
        self.label, self.png_sky_value = label, png_sky_value
        self.image_dir, self.depth_dir = image_dir, depth_dir
        self.image_patterns = (f"{image_dir}/**/*",)  # suffixes filtered case-insensitively below
        super().__init__(root, **kwargs)

    def accept_image(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS

    def key_for(self, image_rel: Path) -> str:
        rel = image_rel.relative_to(self.image_dir) if image_rel.parts[0] == self.image_dir else image_rel
        return rel.with_suffix("").as_posix()

    def label_path(self, image_rel: Path) -> Path:
        stem = Path(self.depth_dir) / Path(self.key_for(image_rel))
        for suffix in self.label_suffixes:
            candidate = stem.with_name(stem.name + suffix)
            if (self.root / candidate).is_file():
                return candidate
        return stem.with_name(stem.name + self.label_suffixes[0])  # reported as missing when read

    def read_label(self, path: Path, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        suffix = path.suffix.lower()
        if suffix == ".png":
            raw = read_png16(path, strict=False)
            sky = raw == self.png_sky_value if self.png_sky_value is not None else np.zeros(raw.shape, bool)
            value = raw.astype(np.float64) * self.unit_scale
            valid = (raw > 0) & ~sky
        else:
            raw = _read_npy(path) if suffix == ".npy" else read_pfm(path) if suffix == ".pfm" else read_exr(path)
            if raw.ndim != 2:
                raise SampleReadError(f"{path}: expected a single-channel map, got shape {raw.shape}")
            if self.label == "disparity":
                sky = raw == 0
                valid = np.isfinite(raw) & (raw > 0)
            else:
                sky = np.isposinf(raw)
                valid = np.isfinite(raw) & (raw > 0)
            value = np.where(valid, raw, 0.0).astype(np.float64) * self.unit_scale
        if self.label == "disparity":
            depth = np.zeros(value.shape, np.float32)
            np.divide(1.0, value, out=depth, where=valid, casting="unsafe")
        else:
            depth = value.astype(np.float32)
        depth[sky] = np.inf
        return depth, valid, sky
