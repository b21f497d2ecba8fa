"""OAK recordings: a documented folder that replays everything that comes after the camera.

Layout (written by :class:`RecordingWriter`, ``depth-anything oak record``; read by :func:`open_recording`)::

    DIR/
      calib.json          {"format": "depth-anything-oak-recording", "version": 1,
                           "width": W, "height": H,                      # size of every frame below
                           "intrinsics": {"fx", "fy", "cx", "cy"},     # RGB camera, pixels, at W x H
                           "baseline_mm": 75.0 | null,                 # stereo baseline (null: no stereo)
                           "device": {...}}                            # free-form (MXID, product name)
      frames.jsonl        one line per frame: {"name": "000000", "timestamp_s": 0.033,
                           "rgb": "rgb/000000.png", "stereo": "stereo/000000.png" | null}
      rgb/NNNNNN.png      RGB frames (8-bit colour PNG, W x H)
      stereo/NNNNNN.png   stereo depth aligned to the RGB camera: 16-bit PNG, millimetres, 0 = invalid, W x H

Intrinsics are those of the RGB camera *at the stored size* (DepthAI's ``getCameraIntrinsics(CAM_A, W, H)``),
so point clouds and spatial readouts need no rescaling. Timestamps are seconds from the device clock, relative
to the first frame. Every file is written atomically and ``frames.jsonl`` gets its line only after the frame's
files exist, so a recording cut short (Ctrl-C, unplugged camera) is a valid recording of the frames it holds.

Errors: a folder that is not a recording (no ``calib.json`` or ``frames.jsonl``, bad JSON, missing keys) raises
:class:`RecordingError` when opened; a bad frame (unreadable or truncated PNG, a stereo frame of another size)
raises :class:`FrameError` when that frame is read, so a reader can report it and go on with the next one.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.pointcloud import Intrinsics

__all__ = [
    "CALIB_FILE",
    "FRAMES_FILE",
    "FrameError",
    "Recording",
    "RecordingError",
    "RecordingWriter",
    "is_recording",
    "open_recording",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "depth-anything-oak-recording"
FORMAT_VERSION = 1
CALIB_FILE = "calib.json"
FRAMES_FILE = "frames.jsonl"


class RecordingError(ValueError):
    """The folder is not a usable recording (the message names the file and what is wrong)."""


class FrameError(ValueError):
    """One frame of a recording cannot be used; the others can. ``name`` is the frame's name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class FrameEntry:
    """One line of ``frames.jsonl``: paths relative to the recording folder."""

    name: str
    timestamp_s: float
    rgb: str
    stereo: str | None


def is_recording(path: str | Path) -> bool:
    """Whether ``path`` is a folder that looks like a recording (has ``frames.jsonl`` or ``calib.json``)."""
    p = Path(path)
    return p.is_dir() and ((p / FRAMES_FILE).is_file() or (p / CALIB_FILE).is_file())


def _intrinsics_from(d: Any, where: str) -> Intrinsics:
    if not isinstance(d, dict) or not all(k in d for k in ("fx", "fy", "cx", "cy")):
        raise RecordingError(f"{where}: expected 'intrinsics' with fx, fy, cx, cy (pixels), got {d!r}")
    values = [float(d[k]) for k in ("fx", "fy", "cx", "cy")]
    if not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise RecordingError(f"{where}: expected finite intrinsics with fx, fy > 0, got {d!r}")
    return Intrinsics(*values, source="calibration")


@dataclass
class Recording:
    """An opened recording: calibration plus the frame list (frames are read lazily by :meth:`read`)."""

    root: Path
    width: int
    height: int
    intrinsics: Intrinsics
    baseline_mm: float | None
    frames: list[FrameEntry]
    device: dict

    @property
    def has_stereo(self) -> bool:
        return any(f.stereo for f in self.frames)

    def read(self, entry: FrameEntry) -> tuple[np.ndarray, np.ndarray | None]:
        """``(image_rgb uint8 (H, W, 3), stereo_depth_mm uint16 (H, W) or None)``; raises :class:`FrameError`."""
        import cv2

        from ..io.images import ImageReadError, read_image

        try:
            rgb = read_image(self.root / entry.rgb)
        except (ImageReadError, OSError) as e:
            raise FrameError(entry.name, f"frame {entry.name}: {e}") from None
        self._check_size(entry, "RGB", rgb.shape[:2])
        if entry.stereo is None:
            return rgb, None
        path = self.root / entry.stereo
        stereo = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
        if stereo is None:
            raise FrameError(entry.name, f"frame {entry.name}: {path}: missing, truncated or not a PNG")
        if stereo.dtype != np.uint16 or stereo.ndim != 2:
            raise FrameError(
                entry.name,
                f"frame {entry.name}: {path}: expected a 16-bit single-channel depth PNG (mm), "
                f"got {stereo.dtype} {stereo.shape}",
            )
        self._check_size(entry, "stereo", stereo.shape)
        return rgb, stereo

    def _check_size(self, entry: FrameEntry, what: str, shape: tuple[int, ...]) -> None:
        if tuple(shape) != (self.height, self.width):
            raise FrameError(
                entry.name,
                f"frame {entry.name}: expected a {what} frame of {self.width}x{self.height} (calib.json), "
                f"got {shape[1]}x{shape[0]}",
            )


def open_recording(root: str | Path) -> Recording:
    """Open and validate a recording folder (see the module docstring); raises :class:`RecordingError`."""
    root = Path(root)
    if not root.is_dir():
        raise RecordingError(f"{root}: expected a recording folder, got no such folder")
    calib_path = root / CALIB_FILE
    if not calib_path.is_file():
        raise RecordingError(
            f"{calib_path}: missing; expected the calibration (intrinsics at the frame size, baseline) "
            "written by 'depth-anything oak record'"
        )
    try:
        calib = json.loads(calib_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordingError(f"{calib_path}: not readable JSON ({e})") from None
    if not isinstance(calib, dict) or calib.get("format") != FORMAT_NAME:
        raise RecordingError(f"{calib_path}: expected format {FORMAT_NAME!r}, got {calib.get('format')!r}")
    if int(calib.get("version", 0)) > FORMAT_VERSION:
        raise RecordingError(f"{calib_path}: expected version <= {FORMAT_VERSION}, got {calib.get('version')}")
    try:
        width, height = int(calib["width"]), int(calib["height"])
    except (KeyError, TypeError, ValueError):
        raise RecordingError(f"{calib_path}: expected integer 'width' and 'height'") from None
    if width < 1 or height < 1:
        raise RecordingError(f"{calib_path}: expected a positive frame size, got {width}x{height}")
    intrinsics = _intrinsics_from(calib.get("intrinsics"), str(calib_path))
    baseline = calib.get("baseline_mm")
    frames = _read_frame_list(root / FRAMES_FILE)
    return Recording(
        root,
        width,
        height,
        intrinsics,
        None if baseline is None else float(baseline),
        frames,
        dict(calib.get("device") or {}),
    )


def _read_frame_list(path: Path) -> list[FrameEntry]:
    if not path.is_file():
        raise RecordingError(f"{path}: missing; expected one JSON line per frame")
    frames = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            frames.append(FrameEntry(str(d["name"]), float(d["timestamp_s"]), str(d["rgb"]), d.get("stereo")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            # A recording killed mid-write can end in a partial line: report it and keep the frames before it.
            log.warning("%s:%d: skipping a malformed frame line %r", path, lineno, line[:80])
    if not frames:
        raise RecordingError(f"{path}: expected at least one frame, found none")
    return frames


def iter_frames(recording: Recording) -> Iterator[tuple[FrameEntry, tuple[np.ndarray, np.ndarray | None] | FrameError]]:
    """Each frame entry with its decoded ``(rgb, stereo)`` or the :class:`FrameError` that stopped it."""
    for entry in recording.frames:
        try:
            yield entry, recording.read(entry)
        except FrameError as e:
            yield entry, e


class RecordingWriter:
    """Write a recording frame by frame (see the module docstring). Use as a context manager.

    Args:
        root: the recording folder (created; an existing recording there is refused, not overwritten).
        width, height: frame size.
        intrinsics: RGB intrinsics at ``width x height``.
        baseline_mm: stereo baseline, or ``None`` without stereo.
        device: free-form device description stored in ``calib.json``.
    """

    def __init__(
        self,
        root: str | Path,
        width: int,
        height: int,
        intrinsics: Intrinsics,
        baseline_mm: float | None = None,
        device: dict | None = None,
    ) -> None:
        from ..io.atomic import atomic_write

        self.root = Path(root)
        if is_recording(self.root):
            raise RecordingError(f"{self.root}: a recording already exists there; choose another folder")
        self.width, self.height = int(width), int(height)
        self.count = 0
        self._t0: float | None = None
        (self.root / "rgb").mkdir(parents=True, exist_ok=True)
        calib = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "width": self.width,
            "height": self.height,
            "intrinsics": {"fx": intrinsics.fx, "fy": intrinsics.fy, "cx": intrinsics.cx, "cy": intrinsics.cy},
            "baseline_mm": baseline_mm,
            "device": device or {},
        }
        with atomic_write(self.root / CALIB_FILE, "w") as f:
            json.dump(calib, f, indent=2)
        self._frames = open(self.root / FRAMES_FILE, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, image_rgb: np.ndarray, stereo_depth_mm: np.ndarray | None, timestamp_s: float) -> str:
        """Append one frame; returns its name. ``stereo_depth_mm``: uint16 ``(H, W)`` millimetres, 0 = invalid."""
        from ..io.outputs import write_depth_png16, write_rgb_png

        if image_rgb.shape != (self.height, self.width, 3) or image_rgb.dtype != np.uint8:
            raise ValueError(
                f"expected an RGB uint8 frame of shape {(self.height, self.width, 3)}, "
                f"got {image_rgb.dtype} {image_rgb.shape}"
            )
        name = f"{self.count:06d}"
        entry = {"name": name, "timestamp_s": 0.0, "rgb": f"rgb/{name}.png", "stereo": None}
        self._t0 = timestamp_s if self._t0 is None else self._t0
        entry["timestamp_s"] = round(float(timestamp_s - self._t0), 6)
        write_rgb_png(self.root / entry["rgb"], image_rgb)
        if stereo_depth_mm is not None:
            if stereo_depth_mm.shape != (self.height, self.width) or stereo_depth_mm.dtype != np.uint16:
                raise ValueError(
                    f"expected stereo depth uint16 of shape {(self.height, self.width)} (mm), "
                    f"got {stereo_depth_mm.dtype} {stereo_depth_mm.shape}"
                )
            entry["stereo"] = f"stereo/{name}.png"
            # Metric 16-bit PNG in millimetres: the raw uint16 values are the camera's, any reader gets them.
            write_depth_png16(self.root / entry["stereo"], stereo_depth_mm.astype(np.float64) / 1000.0, "metric")
        self._frames.write(json.dumps(entry) + "\n")
        self._frames.flush()
        self.count += 1
        return name

    def close(self) -> None:
        self._frames.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
