"""Recordings, the runner (replay == live), bad input, and a missing camera or DepthAI."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
from oak_fixtures import INPUT_SIZE, make_session, stand_in_for

from depth_anything_v2.inference.predictor import DepthPredictor
from depth_anything_v2.io.pointcloud import Intrinsics
from depth_anything_v2.oak import sources
from depth_anything_v2.oak.recording import RecordingError, RecordingWriter, open_recording
from depth_anything_v2.oak.runner import OakRunOptions, run_source
from depth_anything_v2.oak.sources import OakSource, OakUnavailableError, RecordingSource
from depth_anything_v2.oak.spatial import RoiSpec, parse_roi

N_FRAMES = 3


@pytest.fixture(scope="module")
def session():
    return make_session(n_frames=N_FRAMES)


@pytest.fixture
def recording(tmp_path, session):
    root = tmp_path / "rec"
    k = session.intrinsics  # float32 values, as a device's calibration stores them
    k32 = Intrinsics(*(float(np.float32(v)) for v in (k.fx, k.fy, k.cx, k.cy)))
    with RecordingWriter(root, 160, 120, k32, baseline_mm=75.0, device={"id": "test"}) as w:
        for i, (image, stereo) in enumerate(zip(session.images_rgb, session.stereo_mm, strict=True)):
            w.write(image, stereo, 10.0 + i / 15)
    return root


def predictor_for(session):
    return DepthPredictor(stand_in_for(session), input_size=INPUT_SIZE)


def options(out, **kw):
    kw.setdefault("formats", ("png16", "npy", "ply"))
    kw.setdefault("rois", RoiSpec(every=(parse_roi("60,40,20,20"),)))
    return OakRunOptions(out=out, fuse="fill", **kw)


def test_recording_round_trip(recording, session):
    rec = open_recording(recording)
    assert (rec.width, rec.height, rec.baseline_mm, rec.has_stereo) == (160, 120, 75.0, True)
    assert rec.intrinsics.fx == pytest.approx(session.intrinsics.fx)
    assert [f.timestamp_s for f in rec.frames] == pytest.approx([0.0, 1 / 15, 2 / 15], abs=1e-6)  # microseconds
    rgb, stereo = rec.read(rec.frames[1])
    np.testing.assert_array_equal(rgb, session.images_rgb[1])
    np.testing.assert_array_equal(stereo, session.stereo_mm[1])  # uint16 mm, exactly
    with pytest.raises(RecordingError, match="a recording already exists"):
        RecordingWriter(recording, 160, 120, session.intrinsics)


def test_replay_writes_fused_depth_logs_and_readouts(recording, session, tmp_path):
    out = tmp_path / "out"
    report = run_source(RecordingSource(recording), predictor_for(session), options(out))
    assert report.ok and report.frames == N_FRAMES
    depth = np.load(out / "000002.npy")
    assert np.isfinite(depth).all()
    assert np.mean(np.abs(depth - session.depth_m) / session.depth_m) <= 0.02
    assert (out / "000000_depth16.png").is_file() and (out / "000000.ply").stat().st_size > 1000
    fits = [json.loads(line) for line in (out / "fusion.jsonl").read_text().splitlines()]
    assert [f["frame"] for f in fits] == ["000000", "000001", "000002"]
    assert all(f["status"] in ("ok", "reset") and f["rmse_mm"] > 0 and 0.5 < f["coverage"] < 0.75 for f in fits)
    readouts = [json.loads(line) for line in (out / "readouts.jsonl").read_text().splitlines()]
    z_true = np.median(session.depth_m[40:60, 60:80]) * 1000
    assert readouts[2]["readouts"][0]["z_mm"] == pytest.approx(z_true, rel=0.01)


def test_bad_frames_are_reported_and_the_rest_is_processed(recording, session, tmp_path):
    from depth_anything_v2.io.outputs import write_depth_png16

    write_depth_png16(recording / "stereo/000000.png", np.ones((60, 80)), "metric")  # another size
    data = (recording / "rgb/000001.png").read_bytes()
    (recording / "rgb/000001.png").write_bytes(data[: len(data) // 2])  # truncated
    spec = RoiSpec(per_frame={"000002": (parse_roi("500,500,10,10"), parse_roi("0,0,10,10"))})
    report = run_source(RecordingSource(recording), predictor_for(session), options(tmp_path / "o", rois=None))
    assert report.frames == 1 and [name for name, _ in report.failed] == ["000000", "000001"]
    assert "expected a stereo frame of 160x120 (calib.json), got 80x60" in report.failed[0][1]
    assert "000001" in report.failed[1][1]
    opts = OakRunOptions(out=tmp_path / "p", fuse="fill", rois=spec)
    report = run_source(RecordingSource(recording), predictor_for(session), opts)
    assert report.frames == 1 and report.readout_errors == [
        ("000002", "box 500,500,10,10 is outside the 160x120 image")
    ]
    line = json.loads((tmp_path / "p/readouts.jsonl").read_text())
    assert len(line["readouts"]) == 1 and line["errors"] == ["box 500,500,10,10 is outside the 160x120 image"]


def test_missing_calibration_is_a_clear_error(recording):
    (recording / "calib.json").unlink()
    with pytest.raises(RecordingError, match=r"calib.json: missing; expected the calibration"):
        RecordingSource(recording)


# ------------------------------------------------------------------------------------------------ live


def _message_group(dai, image_rgb, stereo_mm, t):
    rgb = dai.ImgFrame()
    rgb.setCvFrame(np.ascontiguousarray(image_rgb[..., ::-1]), dai.ImgFrame.Type.BGR888i)
    rgb.setTimestampDevice(datetime.timedelta(seconds=t))
    depth = dai.ImgFrame()
    depth.setType(dai.ImgFrame.Type.RAW16)
    depth.setWidth(stereo_mm.shape[1])
    depth.setHeight(stereo_mm.shape[0])
    depth.setFrame(stereo_mm)
    group = dai.MessageGroup()
    group["rgb"], group["depth"] = rgb, depth
    return group


class FakePipeline:
    """Stands in for ``dai.Pipeline(device)``: nodes are mocks specced on DepthAI's real node classes, so a
    method the real class lacks fails; the host queue serves real ``MessageGroup``s."""

    def __init__(self, messages):
        self.nodes: dict = {}
        self.queue = mock.Mock()
        self.queue.get.side_effect = [*messages, None]
        self.running = True

    def create(self, cls):
        node = mock.MagicMock(spec=cls)
        if hasattr(cls, "build"):
            node.build.return_value = node
        self.nodes.setdefault(cls.__name__, []).append(node)
        if cls.__name__ == "Sync":
            node.out.createOutputQueue.return_value = self.queue
        return node

    def start(self):
        pass

    def isRunning(self):
        return self.running

    def stop(self):
        self.running = False


def fake_device(dai, intrinsics, size):
    calib = dai.CalibrationHandler()  # the real class, filled as a device's EEPROM would be
    k = [[intrinsics.fx, 0, intrinsics.cx], [0, intrinsics.fy, intrinsics.cy], [0, 0, 1]]
    for socket in (dai.CameraBoardSocket.CAM_A, dai.CameraBoardSocket.CAM_B, dai.CameraBoardSocket.CAM_C):
        calib.setCameraIntrinsics(socket, k, *size)
    eye = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    calib.setCameraExtrinsics(dai.CameraBoardSocket.CAM_C, dai.CameraBoardSocket.CAM_B, eye, [-7.5, 0, 0], [-7.5, 0, 0])
    device = mock.Mock()
    device.readCalibration.return_value = calib
    device.getDeviceId.return_value = "FAKE-MXID"
    return device


def test_live_runs_the_replay_code_path(recording, session, tmp_path):
    dai = sources.import_depthai()
    rec = open_recording(recording)
    messages = [_message_group(dai, *rec.read(f), f.timestamp_s) for f in rec.frames]
    pipeline = FakePipeline(messages)
    device = fake_device(dai, rec.intrinsics, (160, 120))
    with (
        mock.patch.object(sources, "_open_device", return_value=device),
        mock.patch.object(dai, "Pipeline", return_value=pipeline),
    ):
        live = OakSource("FAKE-MXID", size=(160, 120), fps=15, stereo=True)
    assert live.baseline_mm == pytest.approx(75.0)
    assert live.intrinsics.fx == pytest.approx(rec.intrinsics.fx)
    stereo = pipeline.nodes["StereoDepth"][0]
    stereo.setDepthAlign.assert_called_once_with(dai.CameraBoardSocket.CAM_A)
    stereo.setOutputSize.assert_called_once_with(160, 120)
    cams = pipeline.nodes["Camera"]
    assert [c.build.call_args.args[0] for c in cams] == [
        dai.CameraBoardSocket.CAM_A,
        dai.CameraBoardSocket.CAM_B,
        dai.CameraBoardSocket.CAM_C,
    ]
    cams[0].requestOutput.assert_called_once_with((160, 120), dai.ImgFrame.Type.BGR888i, fps=15.0)

    with mock.patch.object(sources, "frame_from_messages", wraps=sources.frame_from_messages) as spy:
        live_report = run_source(live, predictor_for(session), options(tmp_path / "live"))
    assert spy.call_count == N_FRAMES and live_report.ok
    replay_report = run_source(RecordingSource(recording), predictor_for(session), options(tmp_path / "replay"))
    assert live_report.frames == replay_report.frames == N_FRAMES
    names = sorted(p.name for p in (tmp_path / "replay").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "live").iterdir())
    for name in names:  # byte for byte: the same frames through the same code
        assert (tmp_path / "live" / name).read_bytes() == (tmp_path / "replay" / name).read_bytes(), name
    live.close()
    device.close.assert_called_once()


def test_missing_depthai_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "depthai", None)
    with pytest.raises(OakUnavailableError, match=r"pip install 'depth-anything-v2\[oak\]'"):
        OakSource()


def test_missing_camera_is_a_quick_clear_error():
    code = (
        "import os; os.environ['DEPTHAI_SEARCH_TIMEOUT'] = '500'\n"
        "from depth_anything_v2.oak.sources import OakSource, OakUnavailableError\n"
        "try:\n    OakSource('1844301011B546F500')\nexcept OakUnavailableError as e:\n    print('ERR', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "ERR cannot open OAK camera '1844301011B546F500'" in done.stdout, done.stdout + done.stderr
    assert "cameras found: none" in done.stdout
