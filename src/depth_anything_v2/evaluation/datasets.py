"""Readers for the evaluation benchmarks in their published on-disk layouts, and the one table of defaults.

Every reader is a lazy, indexable sequence of :class:`Sample` (``image_rgb`` uint8 ``(H, W, 3)``, ``depth_m``
float32 ``(H, W)`` in metres, ``valid`` bool ``(H, W)``, ``meta``). Construction only lists the split (cheap, and
it fails early with :class:`DatasetNotFoundError` naming the expected layout); files are decoded in
``__getitem__``, which raises :class:`DatasetError` for a corrupt or missing file so a runner can report and skip
it. ``valid`` is the dataset's own validity (non-zero, finite, its mask files); depth caps and crops are
evaluation settings (:class:`EvalSettings`), applied by the runner, listed per benchmark in :data:`BENCHMARKS`.

Images are decoded without applying EXIF orientation: ground truth is aligned with the stored pixel grid.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..io import depth_files
from ..io.depth_files import hypersim_distance_to_depth

__all__ = [
    "BENCHMARKS",
    "DIODE",
    "ETH3D",
    "KITTI",
    "VKITTI2",
    "BenchmarkReader",
    "BenchmarkSpec",
    "DatasetError",
    "DatasetNotFoundError",
    "EvalSettings",
    "Hypersim",
    "NYUv2",
    "Sample",
    "Sintel",
    "get_benchmark",
    "hypersim_distance_to_depth",
    "read_dpt",
    "read_eth3d_depth",
    "read_png16",
]


class DatasetError(ValueError):
    """One sample's files are missing or corrupt; the message names the file and the reason."""


class DatasetNotFoundError(FileNotFoundError):
    """A benchmark's root folder, split file or layout is not where the reader expects it."""


@dataclass
class Sample:
    """One evaluation sample.

    Attributes:
        key: a stable identifier (relative path of the image, or ``"nyu/0001"``).
        image_rgb: uint8 ``(H, W, 3)``, RGB.
        depth_m: float32 ``(H, W)`` ground-truth depth in metres (arbitrary where not ``valid``).
        valid: bool ``(H, W)``: pixels with ground truth according to the dataset itself.
        meta: free-form details (source paths, scene).
    """

    key: str
    image_rgb: np.ndarray
    depth_m: np.ndarray
    valid: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- file formats


def read_rgb(path: str | Path) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` from an image file, *without* EXIF rotation; :class:`DatasetError` on failure."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable image ({e})") from None


def read_png16(path: str | Path) -> np.ndarray:
    """A 16-bit single-channel PNG as uint16 ``(H, W)`` (KITTI and Virtual KITTI 2 depth):
    :func:`depth_anything_v2.io.depth_files.read_png16`, its errors as ``DatasetError`` (reported and skipped)."""
    try:
        return depth_files.read_png16(path)
    except (FileNotFoundError, depth_files.DepthFileError) as e:
        raise DatasetError(str(e)) from None


#: The float32 tag that opens a Sintel ``.dpt`` file ("PIEH" read as a little-endian float).
DPT_TAG = 202021.25


def read_dpt(path: str | Path) -> np.ndarray:
    """MPI Sintel ``.dpt`` depth: float32 tag 202021.25, int32 width, int32 height, float32 ``height*width``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    if len(raw) < 12:
        raise DatasetError(f"{path}: expected a .dpt header of 12 bytes, got a {len(raw)}-byte file")
    tag = np.frombuffer(raw, dtype="<f4", count=1)[0]
    if tag != np.float32(DPT_TAG):
        raise DatasetError(f"{path}: expected the .dpt tag {DPT_TAG}, got {tag} (wrong endianness or not a .dpt)")
    width, height = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=2, offset=4))
    if not (0 < width < 100_000 and 0 < height < 100_000):
        raise DatasetError(f"{path}: implausible .dpt size {width} x {height}")
    expected = 12 + 4 * width * height
    if len(raw) != expected:
        raise DatasetError(f"{path}: expected {expected} bytes for {width} x {height}, got {len(raw)}")
    return np.frombuffer(raw, dtype="<f4", offset=12).reshape(height, width).copy()


def read_eth3d_depth(path: str | Path, height: int, width: int) -> np.ndarray:
    """ETH3D ground-truth depth: headerless row-major float32, ``height x width``, ``inf`` where unknown.

    (The files carry a ``.JPG`` extension, as the image they belong to.)
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    if len(raw) != 4 * height * width:
        raise DatasetError(
            f"{path}: expected {4 * height * width} bytes (float32 {width} x {height}, the image size), got {len(raw)}"
        )
    return np.frombuffer(raw, dtype="<f4").reshape(height, width).copy()


#: Hypersim's camera: 1024 x 768 pixels with a focal length of 886.81 px (the reference's conversion).
def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "reading NYU Depth v2 / Hypersim needs h5py: pip install 'depth-anything-v2[eval]' (or pip install h5py)"
        ) from None
    return h5py


# ----------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EvalSettings:
    """Everything besides the model that changes the numbers (recorded in every result).

    Attributes:
        min_depth, max_depth: ground truth outside ``[min_depth, max_depth]`` metres is ignored, and aligned
            predictions are clipped to it (``max_depth = inf``: no cap).
        crop: evaluation crop (``none``, ``garg``, ``eigen``, ``nyu_eigen``), see ``metrics.crop_mask``.
        alignment: ``none`` | ``scale`` | ``scale_shift_disparity`` | ``scale_shift_depth`` | ``median``.
        min_valid_pixels: images with fewer valid pixels are skipped (the reference trainer: 10).
    """

    min_depth: float = 1e-3
    max_depth: float = math.inf
    crop: str = "none"
    alignment: str = "scale_shift_disparity"
    min_valid_pixels: int = 10

    def replace(self, **changes: Any) -> EvalSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_depth"] = None if math.isinf(self.max_depth) else self.max_depth
        return d


# ------------------------------------------------------------------------------------------------ readers


class BenchmarkReader(Sequence[Sample]):
    """Base class: a lazy sequence of :class:`Sample` over a benchmark's split.

    Subclasses fill ``self._items`` in ``__init__`` and implement ``_load(item) -> Sample``.
    """

    name: ClassVar[str] = ""
    layout: ClassVar[str] = ""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(
                f"{self.name}: data folder {self.root} does not exist; expected layout:\n{self.layout}"
            )
        self._items: list[Any] = []
        self.split_info: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        return self._load(self._items[index])

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def key(self, index: int) -> str:
        return self._key(self._items[index])

    def _key(self, item: Any) -> str:
        return str(item)

    def _load(self, item: Any) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What was read: root, split details and sample count (goes into the results JSON)."""
        return {"root": str(self.root.resolve()), "num_samples": len(self), **self.split_info}

    def _missing(self, what: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(f"{self.name}: {what}; expected layout under {self.root}:\n{self.layout}")


def _reroot(path_text: str, root: Path, anchor: re.Pattern[str]) -> Path:
    """A split-file path as given if it exists, else relative to ``root``, else re-rooted at the first path
    component matching ``anchor`` (so the reference's absolute ``/mnt/...`` lists work on any machine)."""
    p = Path(path_text)
    if p.is_absolute() and p.exists():
        return p
    if not p.is_absolute() and (root / p).exists():
        return root / p
    parts = p.parts
    for i, part in enumerate(parts):
        if anchor.fullmatch(part):
            return root.joinpath(*parts[i:])
    return p if p.is_absolute() else root / p


class KITTI(BenchmarkReader):
    """KITTI, Eigen test split with the annotated (Uhrig et al.) depth maps: 697 entries, 652 with ground truth.

    Split file lines (BTS ``eigen_test_files_with_gt.txt``)::

        2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png 2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377

    The image path is looked up under ``raw_data/`` (with or without the date folder); the depth path under
    ``data_depth_annotated/{val,train}/``; ``None`` as depth marks an entry without ground truth (skipped, as
    everybody does: hence 652). Depth: 16-bit PNG / 256 m, 0 = invalid.

    Args:
        kb_crop: crop image and depth to the KITTI benchmark size 352 x 1216 (bottom rows, centred), as Marigold
            and most zero-shot papers do before the evaluation crop.
    """

    name = "kitti"
    SPLIT_FILES = ("eigen_test_files_with_gt.txt", "kitti_eigen_split_test.txt", "eigen_test.txt")
    layout = (
        "  kitti/eigen_test_files_with_gt.txt            (split file; or pass split_file=)\n"
        "  kitti/raw_data/2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png\n"
        "  kitti/data_depth_annotated/{train,val}/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/"
        "0000000069.png"
    )
    _DATE = re.compile(r"\d{4}_\d{2}_\d{2}")
    _DRIVE = re.compile(r"\d{4}_\d{2}_\d{2}_drive_\d{4}_sync")

    def __init__(self, root: str | Path, *, split_file: str | Path | None = None, kb_crop: bool = True) -> None:
        super().__init__(root)
        if split_file is None:
            found = [self.root / n for n in self.SPLIT_FILES if (self.root / n).is_file()]
            if not found:
                raise self._missing(f"no split file ({' or '.join(self.SPLIT_FILES)})")
            split_file = found[0]
        split_file = Path(split_file)
        if not split_file.is_file():
            raise self._missing(f"split file {split_file} does not exist")
        entries = 0
        for line_no, line in enumerate(split_file.read_text().splitlines(), 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise DatasetNotFoundError(
                    f"{split_file}:{line_no}: expected 'IMAGE DEPTH [FOCAL]', got {line.strip()!r}"
                )
            entries += 1
            if tokens[1] != "None":
                self._items.append((tokens[0], tokens[1]))
        self.kb_crop = kb_crop
        self.split_info = {
            "split": "eigen_test",
            "split_file": str(split_file),
            "split_entries": entries,
            "with_ground_truth": len(self._items),
            "kb_crop": kb_crop,
        }

    def _key(self, item: tuple[str, str]) -> str:
        return item[0]

    def _image_path(self, token: str) -> Path:
        p = Path(token)
        if p.is_absolute() and p.is_file():
            return p
        # Re-root at the date folder (or the drive folder, adding its date), wherever the list was written.
        parts, rel = p.parts, p
        for i, part in enumerate(parts):
            if self._DATE.fullmatch(part):
                rel = Path(*parts[i:])
                break
            if self._DRIVE.fullmatch(part):
                rel = Path(part[:10], *parts[i:])
                break
        candidates = [self.root / "raw_data" / rel, self.root / rel]
        return next((c for c in candidates if c.is_file()), candidates[0])

    def _depth_path(self, token: str) -> Path:
        p = Path(token)
        if p.is_absolute() and p.is_file():
            return p
        parts = p.parts
        drive_at = next((i for i, part in enumerate(parts) if self._DRIVE.fullmatch(part)), None)
        rel = Path(*parts[drive_at:]) if drive_at is not None else p
        candidates = [
            self.root / "data_depth_annotated" / "val" / rel,
            self.root / "data_depth_annotated" / "train" / rel,
            self.root / "data_depth_annotated" / rel,
            self.root / rel,
        ]
        return next((c for c in candidates if c.is_file()), candidates[0])

    @staticmethod
    def benchmark_crop(array: np.ndarray) -> np.ndarray:
        """The KITTI benchmark crop: the bottom 352 rows and the central 1216 columns."""
        height, width = array.shape[:2]
        top = max(height - 352, 0)
        left = max((width - 1216) // 2, 0)
        return array[top : top + 352, left : left + 1216]

    def _load(self, item: tuple[str, str]) -> Sample:
        image_path = self._image_path(item[0])
        depth_path = self._depth_path(item[1])
        image = read_rgb(image_path)
        depth = read_png16(depth_path).astype(np.float32) / 256.0
        if image.shape[:2] != depth.shape:
            raise DatasetError(f"{depth_path}: depth {depth.shape} does not match image {image.shape[:2]}")
        if self.kb_crop:
            image, depth = self.benchmark_crop(image), self.benchmark_crop(depth)
        return Sample(
            item[0],
            np.ascontiguousarray(image),
            np.ascontiguousarray(depth),
            depth > 0,
            {"image": str(image_path), "depth": str(depth_path)},
        )


class NYUv2(BenchmarkReader):
    """NYU Depth v2, labelled set: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5) + ``splits.mat``.

    The 654 official test images are ``testNdxs`` of ``splits.mat`` (1-based). In h5py order the arrays are
    stored transposed: ``images`` is ``(1449, 3, 640, 480)`` and ``depths`` ``(1449, 640, 480)``; a sample is
    transposed back to ``(480, 640, 3)`` / ``(480, 640)``. Depth in metres (``depths``: the in-painted maps the
    protocol uses; ``depth_field="rawDepths"`` for the raw Kinect depth with holes as 0).

    Args:
        split: ``"test"`` (654), ``"train"`` (795) or ``"all"`` (1449).
    """

    name = "nyu"
    layout = (
        "  nyu/nyu_depth_v2_labeled.mat   (http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/)\n"
        "  nyu/splits.mat                 (http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat)"
    )

    def __init__(self, root: str | Path, *, split: str = "test", depth_field: str = "depths") -> None:
        super().__init__(root)
        self.mat_path = self.root / "nyu_depth_v2_labeled.mat"
        if not self.mat_path.is_file():
            raise self._missing(f"{self.mat_path.name} not found")
        if split not in ("test", "train", "all"):
            raise ValueError(f"expected NYU split 'test', 'train' or 'all', got {split!r}")
        if depth_field not in ("depths", "rawDepths"):
            raise ValueError(f"expected depth_field 'depths' or 'rawDepths', got {depth_field!r}")
        self.depth_field = depth_field
        self._file = None
        if split == "all":
            with _h5py().File(self.mat_path, "r") as f:
                n = f["images"].shape[0]
            self._items = list(range(n))
        else:
            splits_path = self.root / "splits.mat"
            if not splits_path.is_file():
                raise self._missing("splits.mat not found (the official train/test split)")
            key = "testNdxs" if split == "test" else "trainNdxs"
            self._items = [int(i) - 1 for i in _read_mat_vector(splits_path, key)]  # 1-based in MATLAB
        self.split_info = {"split": split, "depth_field": depth_field, "mat": str(self.mat_path)}

    def _key(self, item: int) -> str:
        return f"nyu/{item + 1:04d}"

    def _h5(self):
        if self._file is None:
            try:
                self._file = _h5py().File(self.mat_path, "r")
            except OSError as e:
                raise DatasetError(f"{self.mat_path}: not a MATLAB v7.3 (HDF5) file ({e})") from None
        return self._file

    def _load(self, item: int) -> Sample:
        f = self._h5()
        try:
            image = np.asarray(f["images"][item]).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
            depth = np.asarray(f[self.depth_field][item], dtype=np.float32).T  # (W, H) -> (H, W)
        except (KeyError, OSError, ValueError, IndexError) as e:
            raise DatasetError(f"{self.mat_path}: sample {item + 1}: {e}") from None
        if image.dtype != np.uint8 or image.shape[2] != 3:
            raise DatasetError(f"{self.mat_path}: expected uint8 images (N, 3, W, H), got {image.dtype} {image.shape}")
        return Sample(
            self._key(item),
            np.ascontiguousarray(image),
            np.ascontiguousarray(depth),
            np.isfinite(depth) & (depth > 0),
            {"index_1based": item + 1},
        )

    def __getstate__(self) -> dict:  # h5py handles do not pickle; reopen in the other process
        state = self.__dict__.copy()
        state["_file"] = None
        return state


def _read_mat_vector(path: Path, key: str) -> list[int]:
    """A vector from a .mat file: MATLAB v5 via scipy, v7.3 (HDF5) via h5py."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if b"\x89HDF" in head or head.startswith(b"MATLAB 7.3"):
        with _h5py().File(path, "r") as f:
            if key not in f:
                raise DatasetNotFoundError(f"{path}: no variable {key!r} (found {sorted(f.keys())})")
            return [int(v) for v in np.asarray(f[key]).ravel()]
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError(
            f"reading {path.name} (MATLAB v5) needs scipy: pip install 'depth-anything-v2[eval]' (or pip install scipy)"
        ) from None
    data = loadmat(str(path))
    if key not in data:
        raise DatasetNotFoundError(f"{path}: no variable {key!r} (found {sorted(k for k in data if k[0] != '_')})")
    return [int(v) for v in np.asarray(data[key]).ravel()]


class Sintel(BenchmarkReader):
    """MPI Sintel, training set, final pass (1064 frames): ``training/final/<scene>/frame_XXXX.png`` with
    ``training/depth/<scene>/frame_XXXX.dpt`` (from the separate depth download). Depth in the ``.dpt`` unit
    (Sintel's world units, treated as metres); valid where finite and > 0.

    Args:
        render_pass: ``"final"`` (the benchmark's) or ``"clean"``.
    """

    name = "sintel"
    layout = (
        "  sintel/training/final/alley_1/frame_0001.png       (MPI-Sintel-complete.zip)\n"
        "  sintel/training/depth/alley_1/frame_0001.dpt       (MPI-Sintel-depth-training-20150305.zip)"
    )

    def __init__(self, root: str | Path, *, render_pass: str = "final") -> None:
        super().__init__(root)
        if render_pass not in ("final", "clean"):
            raise ValueError(f"expected render_pass 'final' or 'clean', got {render_pass!r}")
        self.render_pass = render_pass
        depth_root = self.root / "training" / "depth"
        if not depth_root.is_dir():
            raise self._missing(f"{depth_root} not found")
        if not (self.root / "training" / render_pass).is_dir():
            raise self._missing(f"{self.root / 'training' / render_pass} not found")
        self._items = sorted(p.relative_to(depth_root).with_suffix("") for p in depth_root.glob("*/*.dpt"))
        self.split_info = {"split": "training", "pass": render_pass}

    def _key(self, item: Path) -> str:
        return item.as_posix()

    def _load(self, item: Path) -> Sample:
        image_path = self.root / "training" / self.render_pass / item.with_suffix(".png")
        depth_path = self.root / "training" / "depth" / item.with_suffix(".dpt")
        image = read_rgb(image_path)
        depth = read_dpt(depth_path)
        if image.shape[:2] != depth.shape:
            raise DatasetError(f"{depth_path}: depth {depth.shape} does not match image {image.shape[:2]}")
        return Sample(item.as_posix(), image, depth, np.isfinite(depth) & (depth > 0), {"scene": item.parts[0]})


class ETH3D(BenchmarkReader):
    """ETH3D high-resolution multi-view *training* set (13 scenes, 454 DSLR images, 6048 x 4032).

    Images: ``<scene>/images/dslr_images/DSC_XXXX.JPG`` (``multi_view_training_dslr_jpg.7z``). Ground truth:
    ``<scene>/ground_truth_depth/dslr_images/DSC_XXXX.JPG`` (``multi_view_training_dslr_depth.7z`` or the
    per-scene ``<scene>_dslr_depth.7z``): despite the extension, raw row-major float32 of the image's size,
    ``inf`` where the laser scan gives no depth. The depth maps belong to the distorted original images.
    """

    name = "eth3d"
    DEPTH_DIRS = ("ground_truth_depth/dslr_images", "ground_truth_masked_depth/dslr_images")
    layout = (
        "  eth3d/<scene>/images/dslr_images/DSC_0219.JPG\n"
        "  eth3d/<scene>/ground_truth_depth/dslr_images/DSC_0219.JPG   (raw float32, not a JPEG)"
    )

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        for scene in sorted(p for p in self.root.iterdir() if (p / "images" / "dslr_images").is_dir()):
            for image in sorted((scene / "images" / "dslr_images").iterdir()):
                if image.suffix.lower() in (".jpg", ".jpeg", ".png"):
                    self._items.append(image.relative_to(self.root))
        if not self._items:
            raise self._missing("no <scene>/images/dslr_images/*.JPG found")
        self.split_info = {"split": "multi_view_training_dslr", "scenes": len({p.parts[0] for p in self._items})}

    def _key(self, item: Path) -> str:
        return item.as_posix()

    def _load(self, item: Path) -> Sample:
        scene = item.parts[0]
        image = read_rgb(self.root / item)
        for d in self.DEPTH_DIRS:
            depth_path = self.root / scene / d / item.name
            if depth_path.is_file():
                break
        else:
            raise DatasetError(f"{self.root / scene / self.DEPTH_DIRS[0] / item.name}: no such file")
        depth = read_eth3d_depth(depth_path, *image.shape[:2])
        return Sample(item.as_posix(), image, depth, np.isfinite(depth) & (depth > 0), {"scene": scene})


class DIODE(BenchmarkReader):
    """DIODE validation set (771 images: 325 indoors, 446 outdoor), 768 x 1024.

    ``val/{indoors,outdoor}/scene_XXXXX/scan_XXXXX/<name>.png`` with ``<name>_depth.npy`` (float32
    ``(H, W, 1)`` metres) and ``<name>_depth_mask.npy`` (``(H, W)``, 1 = valid).

    Args:
        scene_types: which of ``("indoors", "outdoor")`` to include.
    """

    name = "diode"
    layout = (
        "  diode/val/indoors/scene_00019/scan_00183/00019_00183_indoors_000_010.png\n"
        "  diode/val/indoors/scene_00019/scan_00183/00019_00183_indoors_000_010_depth.npy\n"
        "  diode/val/indoors/scene_00019/scan_00183/00019_00183_indoors_000_010_depth_mask.npy\n"
        "  diode/val/outdoor/...                                      (val.tar.gz from diode-dataset.org)"
    )

    def __init__(self, root: str | Path, *, scene_types: Sequence[str] = ("indoors", "outdoor")) -> None:
        super().__init__(root)
        base = self.root / "val" if (self.root / "val").is_dir() else self.root
        for t in scene_types:
            if t not in ("indoors", "outdoor"):
                raise ValueError(f"expected DIODE scene types 'indoors'/'outdoor', got {t!r}")
            folder = base / t
            if not folder.is_dir():
                raise self._missing(f"{folder} not found")
            self._items += sorted(p.relative_to(base) for p in folder.glob("scene_*/scan_*/*.png"))
        self.base = base
        if not self._items:
            raise self._missing("no images found")
        self.split_info = {"split": "val", "scene_types": list(scene_types)}

    def _key(self, item: Path) -> str:
        return item.as_posix()

    def _load(self, item: Path) -> Sample:
        image_path = self.base / item
        stem = image_path.with_suffix("")
        image = read_rgb(image_path)
        try:
            depth = np.load(f"{stem}_depth.npy").astype(np.float32)
            mask = np.load(f"{stem}_depth_mask.npy")
        except (OSError, ValueError) as e:
            raise DatasetError(f"{stem}_depth(.npy|_mask.npy): {e}") from None
        depth = depth.reshape(depth.shape[:2])
        if depth.shape != image.shape[:2] or mask.shape[:2] != depth.shape:
            raise DatasetError(f"{stem}: depth {depth.shape} / mask {mask.shape} do not match image {image.shape}")
        valid = mask.reshape(depth.shape).astype(bool) & np.isfinite(depth) & (depth > 0)
        return Sample(item.as_posix(), image, depth, valid, {"scene_type": item.parts[0]})


def _read_pair_list(path: Path, root: Path, anchor: re.Pattern[str]) -> list[tuple[Path, Path]]:
    """A reference-style split file: ``IMAGE DEPTH`` per line (extra tokens ignored)."""
    if not path.is_file():
        raise DatasetNotFoundError(f"split file {path} does not exist")
    pairs = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            raise DatasetNotFoundError(f"{path}:{line_no}: expected 'IMAGE DEPTH', got {line.strip()!r}")
        pairs.append((_reroot(tokens[0], root, anchor), _reroot(tokens[1], root, anchor)))
    return pairs


class _ImageDepthPairs(BenchmarkReader):
    """A reader whose items are ``(image path, depth path)``; a sample's key is its image path under the root."""

    def _key(self, item: tuple[Path, Path]) -> str:
        try:
            return item[0].relative_to(self.root).as_posix()
        except ValueError:
            return item[0].as_posix()


class Hypersim(_ImageDepthPairs):
    """Hypersim (metric, indoor). ``<scene>/images/scene_cam_XX_final_preview/frame.XXXX.tonemap.jpg`` with
    ``<scene>/images/scene_cam_XX_geometry_hdf5/frame.XXXX.depth_meters.hdf5`` (dataset ``"dataset"``: float16
    distance along the ray in metres, NaN invalid), converted to planar depth (focal 886.81 px at 1024 x 768).

    The split comes from ``split_file`` (the reference's ``IMAGE DEPTH`` lists; absolute paths are re-rooted at
    the ``ai_XXX_YYY`` scene folder) or, by default, Hypersim's ``metadata_images_split_scene_v1.csv`` in the
    root (rows with ``included_in_public_release`` true and ``split_partition_name == split``).
    """

    name = "hypersim"
    SPLIT_CSV = "metadata_images_split_scene_v1.csv"
    layout = (
        "  hypersim/metadata_images_split_scene_v1.csv   (from github.com/apple/ml-hypersim evermotion_dataset/analysis)\n"
        "  hypersim/ai_001_001/images/scene_cam_00_final_preview/frame.0000.tonemap.jpg\n"
        "  hypersim/ai_001_001/images/scene_cam_00_geometry_hdf5/frame.0000.depth_meters.hdf5"
    )
    _SCENE = re.compile(r"ai_\d{3}_\d{3}")

    def __init__(self, root: str | Path, *, split: str = "test", split_file: str | Path | None = None) -> None:
        super().__init__(root)
        if split_file is not None:
            self._items = _read_pair_list(Path(split_file), self.root, self._SCENE)
            self.split_info = {"split": "split_file", "split_file": str(split_file)}
            return
        csv_path = self.root / self.SPLIT_CSV
        if not csv_path.is_file():
            raise self._missing(f"{self.SPLIT_CSV} not found (or pass split_file=)")
        with open(csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("included_in_public_release", "True").strip().lower() != "true":
                    continue
                if row["split_partition_name"].strip() != split:
                    continue
                scene, cam, frame = row["scene_name"], row["camera_name"], int(row["frame_id"])
                images = self.root / scene / "images"
                self._items.append(
                    (
                        images / f"scene_{cam}_final_preview" / f"frame.{frame:04d}.tonemap.jpg",
                        images / f"scene_{cam}_geometry_hdf5" / f"frame.{frame:04d}.depth_meters.hdf5",
                    )
                )
        if not self._items:
            raise self._missing(f"no rows with split_partition_name == {split!r} in {csv_path.name}")
        self.split_info = {"split": split, "split_csv": str(csv_path)}

    def _load(self, item: tuple[Path, Path]) -> Sample:
        image_path, depth_path = item
        image = read_rgb(image_path)
        if not depth_path.is_file():
            raise DatasetError(f"{depth_path}: no such file")
        try:
            with _h5py().File(depth_path, "r") as f:
                distance = np.asarray(f["dataset"], dtype=np.float32)
        except (OSError, KeyError) as e:
            raise DatasetError(f"{depth_path}: not a Hypersim depth HDF5 with a 'dataset' array ({e})") from None
        if distance.shape != image.shape[:2]:
            raise DatasetError(f"{depth_path}: depth {distance.shape} does not match image {image.shape[:2]}")
        depth = hypersim_distance_to_depth(distance)
        valid = np.isfinite(depth) & (depth > 0)
        return Sample(self._key(item), image, np.where(valid, depth, 0).astype(np.float32), valid, {})


class VKITTI2(_ImageDepthPairs):
    """Virtual KITTI 2 (metric, driving). ``Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg`` with
    ``Scene01/clone/frames/depth/Camera_0/depth_00000.png`` (16-bit PNG in centimetres; the sky is 65535 =
    655.35 m and is excluded by the 80 m cap).

    VKITTI2 has no official test split: by default every frame of the ``variations`` of the ``scenes`` from
    ``cameras`` is used; ``split_file`` takes a reference-style ``IMAGE DEPTH`` list instead (absolute paths
    are re-rooted at the ``SceneXX`` folder).
    """

    name = "vkitti2"
    layout = (
        "  vkitti2/Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg        (vkitti_2.0.3_rgb.tar)\n"
        "  vkitti2/Scene01/clone/frames/depth/Camera_0/depth_00000.png    (vkitti_2.0.3_depth.tar)"
    )
    _SCENE = re.compile(r"Scene\d{2}")

    def __init__(
        self,
        root: str | Path,
        *,
        split_file: str | Path | None = None,
        scenes: Sequence[str] | None = None,
        variations: Sequence[str] = ("clone",),
        cameras: Sequence[str] = ("Camera_0",),
    ) -> None:
        super().__init__(root)
        if split_file is not None:
            self._items = _read_pair_list(Path(split_file), self.root, self._SCENE)
            self.split_info = {"split": "split_file", "split_file": str(split_file)}
            return
        scene_dirs = sorted(p for p in self.root.iterdir() if self._SCENE.fullmatch(p.name))
        if scenes is not None:
            scene_dirs = [p for p in scene_dirs if p.name in set(scenes)]
        for scene in scene_dirs:
            for variation in variations:
                for cam in cameras:
                    rgb_dir = scene / variation / "frames" / "rgb" / cam
                    for rgb in sorted(rgb_dir.glob("rgb_*.jpg")):
                        depth = scene / variation / "frames" / "depth" / cam / f"depth_{rgb.stem[4:]}.png"
                        self._items.append((rgb, depth))
        if not self._items:
            raise self._missing("no SceneXX/<variation>/frames/rgb/<camera>/rgb_*.jpg found")
        self.split_info = {
            "split": "all_frames",
            "scenes": [p.name for p in scene_dirs],
            "variations": list(variations),
            "cameras": list(cameras),
        }

    def _load(self, item: tuple[Path, Path]) -> Sample:
        image = read_rgb(item[0])
        depth = read_png16(item[1]).astype(np.float32) / 100.0  # centimetres -> metres
        if depth.shape != image.shape[:2]:
            raise DatasetError(f"{item[1]}: depth {depth.shape} does not match image {image.shape[:2]}")
        return Sample(self._key(item), image, depth, depth > 0, {})


# ------------------------------------------------------------------------------------------- the one table


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark: its reader, where it lives under ``--data-root``, and its default evaluation settings."""

    name: str
    title: str
    reader: type[BenchmarkReader]
    folder: str
    settings: EvalSettings
    split: str
    download: str
    reader_kwargs: dict[str, Any] = field(default_factory=dict)
    metric: bool = False

    def open(self, root: str | Path, **reader_kwargs: Any) -> BenchmarkReader:
        return self.reader(root, **{**self.reader_kwargs, **reader_kwargs})


_ZERO_SHOT = "scale_shift_disparity"

#: Default settings per benchmark. The paper states none of caps/crops/splits; these follow the protocol most
#: zero-shot papers reuse (MiDaS / Marigold), and every one of them is recorded with the results.
BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in (
        BenchmarkSpec(
            "kitti", "KITTI", KITTI, "kitti", EvalSettings(1e-3, 80.0, "eigen", _ZERO_SHOT),
            "Eigen test, 652 of 697 with annotated depth, KB crop 352x1216",
            "https://www.cvlibs.net/datasets/kitti/eval_depth_all.php (raw + annotated depth)",
        ),
        BenchmarkSpec(
            "nyu", "NYU-D", NYUv2, "nyu", EvalSettings(1e-3, 10.0, "nyu_eigen", _ZERO_SHOT),
            "official test, 654 images",
            "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",
        ),
        BenchmarkSpec(
            "sintel", "Sintel", Sintel, "sintel", EvalSettings(1e-3, 72.0, "none", _ZERO_SHOT),
            "training, final pass, 1064 frames",
            "http://sintel.is.tue.mpg.de/downloads (MPI-Sintel-complete + depth training)",
        ),
        BenchmarkSpec(
            "eth3d", "ETH3D", ETH3D, "eth3d", EvalSettings(1e-3, math.inf, "none", _ZERO_SHOT),
            "high-res multi-view training, 454 images",
            "https://www.eth3d.net/datasets (multi_view_training_dslr_jpg + _dslr_depth)",
        ),
        BenchmarkSpec(
            "diode", "DIODE", DIODE, "diode", EvalSettings(0.6, 350.0, "none", _ZERO_SHOT),
            "val, indoors + outdoor, 771 images",
            "https://diode-dataset.org (val.tar.gz)",
        ),
        BenchmarkSpec(
            "diode_indoors", "DIODE-in", DIODE, "diode", EvalSettings(0.6, 350.0, "none", _ZERO_SHOT),
            "val, indoors, 325 images", "https://diode-dataset.org (val.tar.gz)",
            reader_kwargs={"scene_types": ("indoors",)},
        ),
        BenchmarkSpec(
            "diode_outdoor", "DIODE-out", DIODE, "diode", EvalSettings(0.6, 350.0, "none", _ZERO_SHOT),
            "val, outdoor, 446 images", "https://diode-dataset.org (val.tar.gz)",
            reader_kwargs={"scene_types": ("outdoor",)},
        ),
        BenchmarkSpec(
            "hypersim", "Hypersim", Hypersim, "hypersim", EvalSettings(1e-3, 20.0, "none", "none"),
            "official test partition (metadata_images_split_scene_v1.csv)",
            "https://github.com/apple/ml-hypersim", metric=True,
        ),
        BenchmarkSpec(
            "vkitti2", "VKITTI2", VKITTI2, "vkitti2", EvalSettings(1e-3, 80.0, "none", "none"),
            "all scenes, clone, Camera_0", "https://europe.naverlabs.com/research/proxy-virtual-worlds/",
            metric=True,
        ),
    )
}  # fmt: skip

#: The benchmarks of the paper's Table 2, in its column order.
PAPER_BENCHMARKS: tuple[str, ...] = ("kitti", "nyu", "sintel", "eth3d", "diode")


def get_benchmark(name: str) -> BenchmarkSpec:
    """The :data:`BENCHMARKS` entry called ``name`` (``da2k`` lives in ``evaluation.da2k``)."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {[*BENCHMARKS, 'da2k']}") from None
