"""Training-time transforms (the paper's resize / crop / flip, and V1's colour jitter, blur and CutMix).

Transforms act on the *numpy sample dict* the readers build before tensor conversion (see
:func:`depth_anything_v2.data.datasets.make_sample`): ``"image_rgb"`` (H, W, 3) uint8 and label maps (H, W)
(``"disparity"`` / ``"depth_m"`` float32, ``"valid_mask"`` / ``"sky_mask"`` bool). Geometric transforms apply
to every array in the dict: (H, W, C) arrays are images (bicubic, as the reference), (H, W) arrays are labels
(nearest, so no label is ever interpolated across a depth edge). Other values pass through untouched.

Randomness comes from torch's generator (the default one unless a ``torch.Generator`` is passed), so it is
seeded per DataLoader worker by torch, reproducible with ``torch.manual_seed`` and captured by a trainer that
checkpoints torch's RNG state. (NumPy's global RNG is *not* reseeded per worker by torch.)

CutMix mixes *batches* of tensors (:func:`cutmix_batch`); it returns the region mask that
``DepthLoss(..., regions=...)`` needs to align the two parts separately.

Example (the paper's training pipeline)::

    transform = train_transform(518)               # shorter side -> 518, random 518 x 518 crop, flip
    dataset = Hypersim(root, transform=transform)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch

__all__ = [
    "ColorJitter",
    "Compose",
    "GaussianBlur",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ResizeShorterSide",
    "cutmix_batch",
    "eval_transform",
    "train_transform",
]

Sample = dict[str, Any]
_INTERPOLATION = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * _rand(generator)


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high]."""
    return int(torch.randint(0, high + 1, (), generator=generator))


def _spatial(sample: Sample) -> tuple[int, int]:
    shapes = {v.shape[:2] for v in sample.values() if isinstance(v, np.ndarray) and v.ndim in (2, 3)}
    if len(shapes) != 1:
        raise ValueError(f"expected every array of the sample to share one (H, W), got {sorted(shapes)}")
    return shapes.pop()


def _is_image(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 3


def _is_label(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 2


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def _snap_up(x: float, minimum: int, multiple: int) -> int:
    if multiple <= 1:
        return max(minimum, round(x))
    # Round-half-to-even to a multiple, falling back to ceil below the minimum (the reference's lower_bound).
    y = int(np.round(x / multiple) * multiple)
    if y < minimum:
        y = int(np.ceil(x / multiple) * multiple)
    return y


def _resize_label(value: np.ndarray, width: int, height: int) -> np.ndarray:
    if value.dtype == np.bool_:
        return cv2.resize(value.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(value, (width, height), interpolation=cv2.INTER_NEAREST)


class ResizeShorterSide:
    """Resize so the shorter side is ``size`` (aspect ratio kept; the longer side rounds up to at least it).

    Images use ``image_interpolation`` (``"cubic"``, the reference's OpenCV bicubic, by default), labels and
    masks nearest. ``multiple_of`` snaps both sides to a multiple (14 for the ViT patch) with the reference's
    lower-bound rule.
    """

    def __init__(self, size: int = 518, *, multiple_of: int = 1, image_interpolation: str = "cubic") -> None:
        if size < 1:
            raise ValueError(f"expected a positive size, got {size}")
        if image_interpolation not in _INTERPOLATION:
            raise ValueError(f"expected image_interpolation in {sorted(_INTERPOLATION)}, got {image_interpolation!r}")
        self.size, self.multiple_of, self.image_interpolation = size, multiple_of, image_interpolation

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.size / min(height, width)
        return (
            _snap_up(height * scale, self.size, self.multiple_of),
            _snap_up(width * scale, self.size, self.multiple_of),
        )

    def __call__(self, sample: Sample) -> Sample:
        height, width = _spatial(sample)
        new_h, new_w = self.target_size(height, width)
        if (new_h, new_w) == (height, width):
            return sample
        out = dict(sample)
        for name, value in sample.items():
            if _is_image(value):
                out[name] = cv2.resize(value, (new_w, new_h), interpolation=_INTERPOLATION[self.image_interpolation])
            elif _is_label(value):
                out[name] = _resize_label(value, new_w, new_h)
        return out

    def __repr__(self) -> str:
        return f"ResizeShorterSide({self.size}, multiple_of={self.multiple_of})"


class RandomCrop:
    """Random ``size`` crop (an int or ``(height, width)``) of every array, at one random offset.

    A sample smaller than the crop is padded at the bottom/right: images with 0, labels with 0, masks with
    False (so padding is never a valid label).
    """

    def __init__(self, size: int | tuple[int, int] = 518, *, generator: torch.Generator | None = None) -> None:
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if min(self.size) < 1:
            raise ValueError(f"expected a positive crop size, got {size}")
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        height, width = _spatial(sample)
        ch, cw = self.size
        top = _randint(max(height - ch, 0), self.generator)
        left = _randint(max(width - cw, 0), self.generator)
        out = dict(sample)
        for name, value in sample.items():
            if not (_is_image(value) or _is_label(value)):
                continue
            crop = value[top : top + ch, left : left + cw]
            if crop.shape[:2] != (ch, cw):
                padded = np.zeros((ch, cw, *value.shape[2:]), dtype=value.dtype)
                padded[: crop.shape[0], : crop.shape[1]] = crop
                crop = padded
            out[name] = np.ascontiguousarray(crop)
        return out

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class RandomHorizontalFlip:
    """Mirror every array left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, *, generator: torch.Generator | None = None) -> None:
        self.p, self.generator = p, generator

    def __call__(self, sample: Sample) -> Sample:
        _spatial(sample)
        if _rand(self.generator) >= self.p:
            return sample
        return {k: np.ascontiguousarray(v[:, ::-1]) if (_is_image(v) or _is_label(v)) else v for k, v in sample.items()}

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ColorJitter:
    """Random brightness, contrast, saturation (factors in ``[1 - x, 1 + x]``) and hue (shift in turns,
    ``[-hue, hue]``) of ``"image_rgb"``, applied with probability ``p``; labels untouched."""

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p: float = 0.8,
        *,
        key: str = "image_rgb",
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0 <= hue <= 0.5:
            raise ValueError(f"expected hue in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.p, self.key, self.generator = p, key, generator

    def __call__(self, sample: Sample) -> Sample:
        if _rand(self.generator) >= self.p:
            return sample
        g = self.generator
        x = sample[self.key].astype(np.float32)
        b = _uniform(1 - self.brightness, 1 + self.brightness, g)
        c = _uniform(1 - self.contrast, 1 + self.contrast, g)
        s = _uniform(1 - self.saturation, 1 + self.saturation, g)
        h = _uniform(-self.hue, self.hue, g)
        x = x * b
        grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = (x - grey.mean()) * c + grey.mean()
        grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        x = (x - grey) * s + grey
        x = np.clip(x, 0, 255).astype(np.uint8)
        if h != 0.0:
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # OpenCV hue in [0, 180)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + round(h * 180)) % 180).astype(np.uint8)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        out = dict(sample)
        out[self.key] = x
        return out

    def __repr__(self) -> str:
        return f"ColorJitter({self.brightness}, {self.contrast}, {self.saturation}, {self.hue}, p={self.p})"


class GaussianBlur:
    """Gaussian blur of ``"image_rgb"`` with sigma drawn from ``sigma`` (pixels), with probability ``p``."""

    def __init__(
        self,
        sigma: tuple[float, float] = (0.1, 2.0),
        p: float = 0.5,
        *,
        key: str = "image_rgb",
        generator: torch.Generator | None = None,
    ) -> None:
        self.sigma, self.p, self.key, self.generator = sigma, p, key, generator

    def __call__(self, sample: Sample) -> Sample:
        if _rand(self.generator) >= self.p:
            return sample
        sigma = _uniform(*self.sigma, self.generator)
        out = dict(sample)
        out[self.key] = cv2.GaussianBlur(sample[self.key], (0, 0), sigmaX=sigma, sigmaY=sigma)
        return out

    def __repr__(self) -> str:
        return f"GaussianBlur(sigma={self.sigma}, p={self.p})"


def train_transform(
    size: int | tuple[int, int] = 518,
    *,
    flip: bool = True,
    color_jitter: bool = False,
    blur: bool = False,
    generator: torch.Generator | None = None,
) -> Compose:
    """The paper's training pipeline: shorter side to the crop's larger side, random crop, horizontal flip;
    optionally V1's colour jitter and Gaussian blur (for unlabeled / pseudo-labelled images)."""
    crop = (size, size) if isinstance(size, int) else size
    steps: list[Callable[[Sample], Sample]] = [ResizeShorterSide(max(crop)), RandomCrop(crop, generator=generator)]
    if flip:
        steps.append(RandomHorizontalFlip(generator=generator))
    if color_jitter:
        steps.append(ColorJitter(generator=generator))
    if blur:
        steps.append(GaussianBlur(generator=generator))
    return Compose(steps)


def eval_transform(size: int = 518) -> Compose:
    """Validation: shorter side to ``size`` snapped to multiples of 14 (the network's working size), no crop."""
    return Compose([ResizeShorterSide(size, multiple_of=14)])


def cutmix_batch(
    batch: dict[str, Any],
    *,
    p: float = 0.5,
    keys: Sequence[str] = ("image", "disparity", "valid_mask"),
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """CutMix within a batch of tensors (V1's augmentation for unlabeled / pseudo-labelled images).

    With probability ``p`` per sample, a random box (area fraction ~ U(0, 1), CutMix's Beta(1, 1)) of sample
    ``i`` is replaced by the same box of sample ``(i + 1) % B``, in every tensor named in ``keys`` (images
    ``(B, C, H, W)``, labels and masks ``(B, H, W)``; keys missing from the batch are skipped). Returns a new
    dict with those tensors mixed and ``"cutmix_region"``: bool (B, H, W), True inside the pasted box. Pass it
    as ``regions`` to ``DepthLoss`` so the two parts (labels with different scales and shifts) are aligned
    separately. A batch of one is returned unmixed (with an all-False region).
    """
    present = [k for k in keys if k in batch]
    if not present:
        raise ValueError(f"expected at least one of {list(keys)} in the batch, got keys {sorted(batch)}")
    ref = batch[present[0]]
    b, height, width = ref.shape[0], ref.shape[-2], ref.shape[-1]
    region = torch.zeros(b, height, width, dtype=torch.bool, device=ref.device)
    if b > 1:
        for i in range(b):
            if _rand(generator) >= p:
                continue
            ratio = float(np.sqrt(_rand(generator)))
            bh, bw = max(1, round(height * ratio)), max(1, round(width * ratio))
            top = _randint(height - bh, generator)
            left = _randint(width - bw, generator)
            region[i, top : top + bh, left : left + bw] = True
    out = dict(batch)
    partner = torch.roll(torch.arange(b), -1)
    for k in present:
        value = batch[k]
        if value.shape[0] != b or value.shape[-2:] != (height, width):
            raise ValueError(
                f"cutmix_batch: expected {k!r} of shape (B={b}, ..., {height}, {width}), got {tuple(value.shape)}"
            )
        mask = region if value.ndim == 3 else region[:, None]
        out[k] = torch.where(mask, value[partner], value)
    out["cutmix_region"] = region
    return out
