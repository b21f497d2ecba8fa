"""Frame sources: one interface, two implementations (a live OAK camera and a recording).

Everything after the camera (model, fusion, readouts, writing) consumes :class:`Frame` objects from a
:class:`FrameSource` and never knows which one it is, so a recording replays exactly the code that runs live
(``tests/oak/test_sources.py`` feeds the live source DepthAI messages made from a recording and checks the
outputs are byte-identical to the replay's).

Live (:class:`OakSource`, DepthAI v3, ``pip install depth-anything-v2[oak]``)::

    Camera CAM_A --requestOutput((W, H), BGR888i, fps)--> Sync["rgb"] --+
    Camera CAM_B, CAM_C --> StereoDepth (aligned to CAM_A, W x H) ------+--> Sync["depth"] --> host queue
    (optional) Camera CAM_A --> NeuralNetwork(NN archive) --> Sync["nn"]          (on-device inference, RVC4)

Depth arrives as uint16 millimetres (0 = invalid); intrinsics come from the device calibration at W x H.
"""

from __future__ import annotations

import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.pointcloud import Intrinsics
from .recording import FrameError, iter_frames, open_recording

__all__ = ["Frame", "FrameSource", "OakSource", "OakUnavailableError", "RecordingSource", "import_depthai"]

log = logging.getLogger(__name__)

DEFAULT_SIZE = (640, 400)  # (W, H): the OAK-D stereo sensors' native resolution, so depth needs no upscaling
DEFAULT_FPS = 15.0
#: Stereo input size (W, H) of the mono cameras.
MONO_SIZE = (640, 400)
#: DepthAI searches this long (ms) for a camera unless DEPTHAI_SEARCH_TIMEOUT says otherwise.
DEFAULT_SEARCH_TIMEOUT_MS = 3000


class OakUnavailableError(RuntimeError):
    """DepthAI is not installed, or no (matching) OAK camera answered; the message says which and what to do."""


@dataclass
class Frame:
    """One frame after the camera.

    Attributes:
        name: frame name (``"000042"``), also the stem of its output files.
        timestamp_s: seconds since the first frame (device clock).
        image_rgb: uint8 ``(H, W, 3)`` RGB.
        stereo_depth_mm: uint16 ``(H, W)`` stereo depth aligned to the RGB camera, millimetres, 0 = invalid;
            ``None`` without stereo.
        intrinsics: RGB camera intrinsics at ``W x H``.
        network_output: the on-device network's raw output (float32 ``(h, w)`` at the archive's size) when the
            model runs on the camera, else ``None`` (the host runs the model).
    """

    name: str
    timestamp_s: float
    image_rgb: np.ndarray
    stereo_depth_mm: np.ndarray | None
    intrinsics: Intrinsics
    network_output: np.ndarray | None = None


class FrameSource(ABC):
    """Yields :class:`Frame` objects, or a :class:`FrameError` for a frame that could not be read."""

    intrinsics: Intrinsics
    baseline_mm: float | None
    has_stereo: bool
    description: str

    @abstractmethod
    def frames(self) -> Iterator[Frame | FrameError]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the camera or files."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordingSource(FrameSource):
    """Frames of a recording folder (:mod:`depth_anything_v2.oak.recording`), host-only."""

    def __init__(self, root: str | Path) -> None:
        self.recording = open_recording(root)
        self.intrinsics = self.recording.intrinsics
        self.baseline_mm = self.recording.baseline_mm
        self.has_stereo = self.recording.has_stereo
        self.description = f"recording {self.recording.root} ({len(self.recording.frames)} frames)"

    def frames(self) -> Iterator[Frame | FrameError]:
        for entry, item in iter_frames(self.recording):
            if isinstance(item, FrameError):
                yield item
            else:
                rgb, stereo = item
                yield Frame(entry.name, entry.timestamp_s, rgb, stereo, self.intrinsics)


def import_depthai() -> Any:
    """``import depthai``, or :class:`OakUnavailableError` with the install hint."""
    try:
        import depthai
    except ImportError:
        raise OakUnavailableError(
            "OAK cameras need DepthAI: pip install 'depth-anything-v2[oak]' (depthai>=3.12)"
        ) from None
    return depthai


def _open_device(dai: Any, device_id: str | None) -> Any:
    # DepthAI otherwise searches for a camera for several seconds; a missing camera should fail quickly.
    os.environ.setdefault("DEPTHAI_SEARCH_TIMEOUT", str(DEFAULT_SEARCH_TIMEOUT_MS))
    try:
        return dai.Device(dai.DeviceInfo(device_id)) if device_id else dai.Device()
    except RuntimeError as e:
        found = [info.getDeviceId() for info in dai.Device.getAllAvailableDevices()]
        which = f"OAK camera {device_id!r}" if device_id else "an OAK camera"
        raise OakUnavailableError(
            f"cannot open {which}: {str(e).strip() or type(e).__name__} "
            f"(cameras found: {', '.join(found) if found else 'none'}; check the USB/PoE connection and udev "
            "rules, or replay a recording folder instead)"
        ) from None


def build_pipeline(
    dai: Any,
    pipeline: Any,
    size: tuple[int, int],
    fps: float,
    *,
    stereo: bool,
    archive: Any | None = None,
) -> Any:
    """Add the camera, stereo and (optional) network nodes to ``pipeline``; returns the host output queue.

    The queue gives a ``dai.MessageGroup`` with ``"rgb"`` (``ImgFrame`` BGR888i ``size``), ``"depth"``
    (``ImgFrame`` RAW16 mm, aligned to CAM_A at ``size``) with ``stereo``, and ``"nn"`` (``NNData``) with
    ``archive`` (a ``dai.NNArchive``).
    """
    sync = pipeline.create(dai.node.Sync)
    cam = pipeline.create(dai.node.Camera).build(dai.CameraBoardSocket.CAM_A)
    cam.requestOutput(size, dai.ImgFrame.Type.BGR888i, fps=fps).link(sync.inputs["rgb"])
    if stereo:
        left = pipeline.create(dai.node.Camera).build(dai.CameraBoardSocket.CAM_B)
        right = pipeline.create(dai.node.Camera).build(dai.CameraBoardSocket.CAM_C)
        depth = pipeline.create(dai.node.StereoDepth).build(
            left.requestOutput(MONO_SIZE, fps=fps),
            right.requestOutput(MONO_SIZE, fps=fps),
            presetMode=dai.node.StereoDepth.PresetMode.DEFAULT,
        )
        depth.setLeftRightCheck(True)  # drops occluded pixels (0) instead of inventing them
        depth.setSubpixel(True)
        depth.setDepthAlign(dai.CameraBoardSocket.CAM_A)  # depth in the RGB camera's frame and pixels
        depth.setOutputSize(*size)
        depth.depth.link(sync.inputs["depth"])
    if archive is not None:
        nn = pipeline.create(dai.node.NeuralNetwork).build(cam, archive, fps)
        nn.out.link(sync.inputs["nn"])
    return sync.out.createOutputQueue()


def frame_from_messages(group: Any, name: str, t0: float | None, intrinsics: Intrinsics) -> tuple[Frame, float]:
    """A :class:`Frame` from one synced ``MessageGroup``; returns ``(frame, t0)`` (the first frame's time)."""
    rgb_msg = group["rgb"]
    t = rgb_msg.getTimestampDevice().total_seconds()
    t0 = t if t0 is None else t0
    image_rgb = np.ascontiguousarray(rgb_msg.getCvFrame()[..., ::-1])  # BGR888i -> RGB
    names = set(group.getMessageNames())
    stereo = np.asarray(group["depth"].getFrame(), np.uint16) if "depth" in names else None
    network = None
    if "nn" in names:
        network = np.squeeze(np.asarray(group["nn"].getFirstTensor(), np.float32))
    return Frame(name, round(t - t0, 6), image_rgb, stereo, intrinsics, network), t0


class OakSource(FrameSource):
    """A live OAK camera through DepthAI v3 (see the module docstring).

    Args:
        device_id: MXID / device id of one camera among several (``oak:MXID``); ``None``: the first found.
        size: RGB (and aligned depth) size ``(W, H)``.
        fps: frame rate.
        stereo: add the StereoDepth node (``--stereo``).
        archive: path of a Luxonis NN archive to run on the camera (RVC4); ``None``: the host runs the model.

    Raises:
        OakUnavailableError: DepthAI missing or no camera (quickly: ``DEPTHAI_SEARCH_TIMEOUT``, default 3 s).
    """

    def __init__(
        self,
        device_id: str | None = None,
        *,
        size: tuple[int, int] = DEFAULT_SIZE,
        fps: float = DEFAULT_FPS,
        stereo: bool = True,
        archive: str | Path | None = None,
    ) -> None:
        if len(size) != 2 or min(size) < 1 or not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"expected size (W, H) > 0 and fps > 0, got {size} and {fps}")
        dai = import_depthai()
        self.size, self.fps, self.has_stereo = (int(size[0]), int(size[1])), float(fps), stereo
        self.device = _open_device(dai, device_id)
        calib = self.device.readCalibration()
        k = np.asarray(calib.getCameraIntrinsics(dai.CameraBoardSocket.CAM_A, *self.size), np.float64)
        self.intrinsics = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], source="calibration")
        # getBaselineDistance() is in centimetres.
        self.baseline_mm = float(calib.getBaselineDistance()) * 10.0 if stereo else None
        self.pipeline = dai.Pipeline(self.device)
        nn_archive = dai.NNArchive(str(archive)) if archive is not None else None
        self.queue = build_pipeline(dai, self.pipeline, self.size, self.fps, stereo=stereo, archive=nn_archive)
        self.description = f"OAK camera {self.device.getDeviceId()} ({self.size[0]}x{self.size[1]} @ {fps:g} fps)"

    def frames(self) -> Iterator[Frame | FrameError]:
        self.pipeline.start()
        t0 = None
        index = 0
        while self.pipeline.isRunning():
            group = self.queue.get()
            if group is None:
                break
            frame, t0 = frame_from_messages(group, f"{index:06d}", t0, self.intrinsics)
            index += 1
            yield frame

    def close(self) -> None:
        try:
            self.pipeline.stop()
        finally:
            self.device.close()
