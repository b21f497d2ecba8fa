"""Video files and streams: exact rate and count, flat memory, one display range, stabilisation, atomicity."""

from __future__ import annotations

import json
import re
import struct
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_anything_v2.inference import video
from depth_anything_v2.inference.predictor import DepthResult
from depth_anything_v2.inference.video import TemporalStabilizer, VideoReadError, process_video, run_stream
from depth_anything_v2.io import outputs

NTSC = Fraction(30000, 1001)


class FakePredictor:
    """Depth = a function of the frame (mean brightness / 25.5, times an optional per-frame jitter)."""

    is_metric = False

    def __init__(self, jitter: dict[int, tuple[float, float]] | None = None, fail_at: int | None = None):
        self.calls: list[int] = []
        self.jitter = jitter or {}
        self.fail_at = fail_at

    def depth(self, rgb: np.ndarray) -> np.ndarray:
        return rgb.astype(np.float32).mean(axis=2) / 25.5

    def predict_iter(self, items, batch_size=1):
        for key, rgb in items:
            if key == self.fail_at:
                raise RuntimeError("model failed")
            self.calls.append(key)
            s, t = self.jitter.get(key, (1.0, 0.0))
            yield key, DepthResult(s * self.depth(rgb) + t, "disparity")

    def predict(self, image, *, channel_order="rgb", batch_size=1):
        rgb = image[..., ::-1] if channel_order == "bgr" else image
        return DepthResult(self.depth(rgb), "disparity")


def gradient_frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * ((i % 10) + 1) / 10
    return np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)


def make_video(
    path: Path, n: int, rate: Fraction = Fraction(25), frame=gradient_frame, w: int = 64, h: int = 48,
    *, require_pyav: bool = False,
) -> Path:  # fmt: skip
    """An H.264 test clip via PyAV (exact rational rate); without PyAV an MPEG-4 clip via OpenCV, unless
    ``require_pyav`` (then the test is skipped)."""
    try:
        import av
    except ImportError:
        if require_pyav:
            pytest.skip("needs PyAV (pip install av)")
        return make_video_cv2(path, n, float(rate), w, h, frame=frame)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height = w, h
        s.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"  # 4:2:0 needs even sides
        s.options = {"crf": "0"}  # lossless-ish: the test frames decode back almost exactly
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame(i, w, h)), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_video_cv2(path: Path, n: int, fps: float = 12.5, w: int = 64, h: int = 48, frame=gradient_frame) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.ascontiguousarray(frame(i, w, h)[..., ::-1]))
    writer.release()
    return path


def probe(path: Path) -> tuple[Fraction, int, tuple[int, int]]:
    """(rate, decoded frame count, (W, H)) read back with PyAV."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return Fraction(s.average_rate), n, (s.width, s.height)


def decode_rgb(path: Path) -> list[np.ndarray]:
    reader = video.open_video(path)
    try:
        return list(reader.frames())
    finally:
        reader.close()


def test_source_kinds():
    assert video.is_video_path("a/b/Clip.MP4") and video.is_video_path("x.mkv")
    assert not video.is_video_path("photo.jpg") and not video.is_video_path("noext")
    for s in ("0", "2", "rtsp://cam/stream", "http://host/live.m3u8", "udp://0.0.0.0:5000", "/dev/video1"):
        assert video.is_stream_source(s), s
    for s in ("clip.mp4", "folder/", "ftp:/x", "C:\\video.mp4", "-1"):
        assert not video.is_stream_source(s), s


def test_exact_fractional_rate_frame_count_and_raw_values(tmp_path):
    src = make_video(tmp_path / "in.mp4", 30, NTSC, require_pyav=True)
    pred = FakePredictor()
    summary = process_video(
        pred, src, tmp_path / "out", "clip", formats={"color", "sbs", "gray", "npy", "png16"},
        colormap="Spectral_r", stabilize=False,
    )  # fmt: skip
    assert summary["frames"] == 30 and summary["fps_rational"] == "30000/1001"
    assert summary["ignored_formats"] == ["png16"] and summary["backend"] == "pyav"
    assert sorted(pred.calls) == list(range(30))  # each frame predicted exactly once (pass-1 samples reused)
    for name, size in (("color", (64, 48)), ("gray", (64, 48)), ("sbs", (64 * 2 + outputs.SBS_GAP_PX, 48))):
        rate, n, wh = probe(Path(summary["outputs"][name]))
        assert (rate, n, wh) == (NTSC, 30, size), name
    raw = np.load(summary["outputs"]["npy"], mmap_mode="r")
    assert raw.shape == (30, 48, 64) and raw.dtype == np.float32
    frames = decode_rgb(src)
    np.testing.assert_array_equal(raw[7], pred.depth(frames[7]))
    meta = json.loads(Path(summary["outputs"]["json"]).read_text())
    assert meta["shape"] == [30, 48, 64] and meta["fps_rational"] == "30000/1001" and meta["kind"] == "disparity"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "clip_depth.json", "clip_depth.mp4", "clip_depth.npy", "clip_gray.mp4", "clip_sbs.mp4",
    ]  # fmt: skip  # no temporary files left behind


def test_opencv_backend_keeps_frame_count_and_decimal_rate(tmp_path):
    src = make_video_cv2(tmp_path / "in.mp4", 25, fps=12.5)
    summary = process_video(
        FakePredictor(), src, tmp_path, "clip", formats={"color"}, colormap="viridis", stabilize=False,
        backend="opencv",
    )  # fmt: skip
    assert summary["backend"] == "opencv" and summary["frames"] == 25
    cap = cv2.VideoCapture(summary["outputs"]["color"])
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5, abs=1e-9)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 25


def test_odd_size_and_rotation_metadata(tmp_path):
    src = make_video(tmp_path / "in.mp4", 5, w=66, h=47, require_pyav=True)
    # Set the track's display matrix to a 90 degree rotation (what phones write for portrait videos).
    data = bytearray(src.read_bytes())
    p = data.find(b"tkhd")
    assert data[p + 4] == 0  # version 0 box: the matrix starts 44 bytes after the type
    data[p + 44 : p + 80] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    src.write_bytes(bytes(data))
    summary = process_video(
        FakePredictor(), src, tmp_path, "rot", formats={"npy", "color"}, colormap="gray", stabilize=False
    )
    raw = np.load(summary["outputs"]["npy"])
    assert raw.shape == (5, 66, 47)  # displayed upright: 47 wide, 66 tall
    # The ramp ran left->right in the stored frame; rotated 90 degrees clockwise for display it runs top->bottom.
    assert raw[4, -1].mean() > raw[4, 0].mean() + 4
    rate, n, (w, h) = probe(Path(summary["outputs"]["color"]))
    assert (rate, n, w, h) == (Fraction(25), 5, 48, 66)  # odd width padded by one column for 4:2:0


def test_memory_stays_flat(tmp_path):
    def peak(n: int) -> int:
        src = make_video(tmp_path / f"in{n}.mp4", n, rate=Fraction(25))
        tracemalloc.start()
        try:
            summary = process_video(
                FakePredictor(), src, tmp_path, f"c{n}", formats={"color", "npy"}, colormap="Spectral_r",
                stabilize=True,
            )  # fmt: skip
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert summary["frames"] == n

    short, long = peak(30), peak(300)
    # 270 more frames of 64x48 float32 are 3.3 MB of raw depth alone; the peak must not grow with the clip.
    assert long < short * 1.25 + 256 * 1024, (short, long)


def test_one_display_range_for_the_whole_clip(tmp_path):
    levels = np.linspace(20, 230, 40).round()

    def flat(i, w, h):
        return np.full((h, w, 3), levels[i], np.uint8)

    src = make_video(tmp_path / "in.mp4", 40, rate=Fraction(25), frame=flat)
    pred = FakePredictor()
    summary = process_video(
        pred, src, tmp_path, "clip", formats={"color"}, colormap="viridis", stabilize=False, range_samples=8,
        batch_size=3,
    )  # fmt: skip
    assert sorted(pred.calls) == list(range(40))  # 8 sampled in pass 1, the other 32 in pass 2
    # What the model saw: the decoded input frames (the test codec may shift flat levels slightly).
    seen = np.array([float(pred.depth(f).mean()) for f in decode_rgb(src)])
    vmin, vmax = summary["display_range"]
    assert vmin == pytest.approx(seen.min(), abs=0.05) and vmax == pytest.approx(seen.max(), abs=0.05)
    colors = [f.reshape(-1, 3).mean(axis=0) for f in decode_rgb(Path(summary["outputs"]["color"]))]
    lut = outputs.get_colormap("viridis").astype(np.float32)
    for i, c in enumerate(colors):
        # Per-frame normalisation would paint every (constant) frame the same colour; one range gives a ramp.
        expected = outputs.colorize(np.full((1, 1), seen[i], np.float32), "viridis", vmin, vmax)[0, 0]
        assert np.abs(c - expected).max() < 8, (i, c, expected)
    assert np.abs(colors[0] - lut[0]).max() < 8 and np.abs(colors[-1] - lut[-1]).max() < 8


def _scene(t: int, pan: int = 1, h: int = 96, w: int = 128) -> np.ndarray:
    """A static smooth disparity field seen by a camera panning ``pan`` px per frame, with a moving blob."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx = xx + pan * t
    d = 1.0 + 0.02 * yy + 0.5 * np.sin(xx / 17.0) + 0.3 * np.cos(yy / 11.0)
    blob = (yy - 40) ** 2 + (xx - (pan + 2) * t - 30) ** 2 < 150  # an object moving across the scene
    d[blob] += 2.0
    return d.astype(np.float32)


def _fitted_scales(frames: list[np.ndarray], truth: list[np.ndarray]) -> np.ndarray:
    out = []
    for f, g in zip(frames, truth, strict=True):
        a = np.vstack([g.ravel(), np.ones(g.size)]).T
        out.append(np.linalg.lstsq(a, f.ravel(), rcond=None)[0][0])
    return np.array(out)


@pytest.mark.parametrize(("pan", "n", "max_drift"), [(0, 60, 0.002), (1, 120, 0.06)])
def test_stabilizer_removes_scale_shift_jitter(pan, n, max_drift):
    rng = np.random.default_rng(0)
    truth = [_scene(t, pan) for t in range(n)]
    s = rng.uniform(0.7, 1.3, n)
    t = rng.uniform(-0.3, 0.3, n)
    s[0], t[0] = 1.0, 0.0
    noisy = [s[i] * truth[i] + t[i] + rng.normal(0, 0.01, truth[i].shape).astype(np.float32) for i in range(n)]
    stab = TemporalStabilizer("disparity")
    out = [stab(f)[0] for f in noisy]
    before = np.std(np.diff(_fitted_scales(noisy, truth)))
    after = np.std(np.diff(_fitted_scales(out, truth)))
    assert before > 0.15 and after < before / 50, (before, after)
    assert stab.resets == 0
    # The clip stays in the first frame's scale (a chain: slow drift under camera motion is the known limit).
    drift = np.abs(_fitted_scales(out, truth) - 1).max()
    assert drift < max_drift, drift


def test_stabilizer_scene_cut_keeps_scale_and_metric_is_scale_only():
    stab = TemporalStabilizer("disparity")
    a = _scene(0)
    stab(a)
    stab(2 * a)  # same scene, twice the scale: mapped back
    assert stab.scale == pytest.approx(0.5, rel=1e-3)
    cut = np.random.default_rng(1).uniform(0, 5, a.shape).astype(np.float32)  # unrelated content
    _, s, b = stab(cut)
    assert stab.resets == 1 and s == pytest.approx(0.5, rel=1e-3)  # previous mapping carried over the cut
    metric = TemporalStabilizer("metric")
    depth = 1.0 / _scene(0)
    metric(depth)
    out, s, b = metric(1.25 * depth)
    assert b == 0.0 and s == pytest.approx(0.8, rel=1e-4)
    np.testing.assert_allclose(out, depth, rtol=1e-4)


def test_stabilize_in_process_video_inverts_known_jitter(tmp_path):
    src = make_video(tmp_path / "in.mp4", 12, rate=Fraction(25), frame=lambda i, w, h: gradient_frame(3, w, h))
    rng = np.random.default_rng(2)
    jitter = {i: (float(rng.uniform(0.7, 1.3)), float(rng.uniform(-0.5, 0.5))) for i in range(1, 12)}
    summary = process_video(
        FakePredictor(jitter), src, tmp_path, "clip", formats={"npy", "color"}, colormap="Spectral_r", stabilize=True
    )
    meta = json.loads(Path(summary["outputs"]["json"]).read_text())
    scale, shift = meta["stabilization"]["scale"], meta["stabilization"]["shift"]
    for i in range(1, 12):  # stabilised = scale * (s_i * d + t_i) + shift == d
        s_i, t_i = jitter[i]
        assert scale[i] * s_i == pytest.approx(1.0, abs=0.01) and scale[i] * t_i + shift[i] == pytest.approx(
            0, abs=0.02
        )
    raw = np.load(summary["outputs"]["npy"])  # the raw file keeps the model's (jittered) values
    assert np.ptp(raw.reshape(12, -1).max(axis=1)) > 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"", "empty file"), (b"not a video at all" * 50, "not a readable video")],
)
def test_unreadable_video_is_a_clear_error_and_leaves_nothing(tmp_path, content, message):
    src = tmp_path / "bad.mp4"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(VideoReadError, match=message):
        process_video(
            FakePredictor(), src, out, "bad", formats={"color", "npy"}, colormap="Spectral_r", stabilize=False
        )
    assert not out.exists() or list(out.iterdir()) == []


def test_failure_mid_clip_leaves_no_partial_output(tmp_path):
    src = make_video(tmp_path / "in.mp4", 30, rate=Fraction(25))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="model failed"):
        process_video(
            FakePredictor(fail_at=17), src, out, "clip", formats={"color", "npy"}, colormap="Spectral_r",
            stabilize=False, range_samples=4,
        )  # fmt: skip
    assert list(out.iterdir()) == []


def test_failure_in_the_writer_thread_surfaces_and_leaves_nothing(tmp_path, monkeypatch):
    src = make_video(tmp_path / "in.mp4", 30)
    calls = []
    colorize = outputs.colorize

    def failing(values, *args):
        calls.append(1)
        if len(calls) == 12:
            raise OSError("disk full")
        return colorize(values, *args)

    monkeypatch.setattr(video.outputs, "colorize", failing)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        process_video(FakePredictor(), src, out, "clip", formats={"sbs", "npy"}, colormap="Spectral_r", stabilize=False)
    assert list(out.iterdir()) == []


def test_run_stream_headless_on_a_file(tmp_path):
    src = make_video_cv2(tmp_path / "in.mp4", 20, fps=25.0)
    out = tmp_path / "live" / "depth.mp4"
    summary = run_stream(FakePredictor(), str(src), out=out, show=False, colormap="Spectral_r", max_frames=12)
    assert summary["frames"] == 12 and summary["stopped_by"] == "max_frames" and summary["fps"] > 0
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    summary = run_stream(FakePredictor(), str(src), out=None, show=False, colormap="Spectral_r", max_frames=None)
    assert summary["frames"] == 20 and summary["stopped_by"] == "end" and summary["output"] is None


def test_live_recordings_are_stamped_with_wall_clock_time(tmp_path):
    av = pytest.importorskip("av")
    writer = video._PyAVWriter(tmp_path / "live.mp4", 64, 48, Fraction(30), timestamps="wallclock")
    for i in range(5):
        writer.write(gradient_frame(i))
        time.sleep(0.05)  # a model slower than the camera: 20 frames/s, not the nominal 30
    writer.close()
    with av.open(str(tmp_path / "live.mp4")) as c:
        times = [float(f.time) for f in c.decode(c.streams.video[0])]
    assert len(times) == 5 and times[0] == 0.0 and np.all(np.diff(times) >= 0.05 - 1e-3)


def test_run_stream_errors(tmp_path):
    with pytest.raises(VideoReadError, match="cannot open"):
        run_stream(FakePredictor(), str(tmp_path / "missing.mp4"), out=None, show=False, colormap="Spectral_r",
                   max_frames=1)  # fmt: skip
    if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):  # opencv-python-headless
        with pytest.raises(video.DisplayUnavailableError, match="window"):
            run_stream(FakePredictor(), "0", out=None, show=True, colormap="Spectral_r", max_frames=1)


def test_real_tiny_model_end_to_end(tmp_path):
    from depth_anything_v2 import build_model
    from depth_anything_v2.inference.predictor import DepthPredictor

    predictor = DepthPredictor(build_model("tiny"), input_size=28, device="cpu")
    src = make_video_cv2(tmp_path / "in.mp4", 6, fps=12.5)
    summary = process_video(predictor, src, tmp_path, "clip", formats={"npy", "sbs"}, colormap="Spectral_r",
                            stabilize=True, batch_size=2)  # fmt: skip
    raw = np.load(summary["outputs"]["npy"])
    assert raw.shape == (6, 48, 64) and np.isfinite(raw).all()
    frames = decode_rgb(src)
    expected = predictor.predict(frames[3]).depth
    np.testing.assert_allclose(raw[3], expected, rtol=1e-4, atol=1e-5)
    assert summary["frames"] == 6 and summary["kind"] == "disparity"
