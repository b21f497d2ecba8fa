"""End-to-end tests of ``depth-anything predict`` with a tiny random-weight model and generated files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depth_anything_v2 import build_model, outputs
from depth_anything_v2.cli import main
from depth_anything_v2.inference.predictor import DepthPredictor
from depth_anything_v2.io.images import read_image

INPUT_SIZE = "56"  # 4x4 tokens: fast on 2 cores


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # The pipeline runs decoding/writing threads beside the model; with the tiny model, one intra-op thread is
    # fastest and avoids OpenMP spin-waiting against them on a 2-core runner (restored afterwards).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("tiny")
    with torch.no_grad():  # keep the random relative head above the final ReLU's floor: a non-constant output
        model.depth_head.scratch.output_conv2[2].bias.fill_(1.0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(model.state_dict(), path)
    return path


def _predictor(weights: Path, max_depth: float | None = None) -> DepthPredictor:
    return DepthPredictor.from_pretrained(
        weights, encoder="tiny", max_depth=max_depth, device="cpu", input_size=int(INPUT_SIZE)
    )


def _image(path: Path, height: int = 42, width: int = 56, seed: int = 0, **save_kwargs) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 4 % 256, y * 6 % 256, rng.integers(0, 256, (height, width))], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **save_kwargs)
    return rgb


def _run(weights: Path, *args: str) -> int:
    return main(["predict", *args, "--weights", str(weights), "--encoder", "tiny", "--input-size", INPUT_SIZE,
                 "--device", "cpu", "--no-progress", "--workers", "2"])  # fmt: skip


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_folder_with_bad_files_and_same_names(tmp_path, tiny_weights, capsys):
    src = tmp_path / "in"
    _image(src / "cam1" / "img.jpg", seed=1)
    _image(src / "cam2" / "img.jpg", seed=2)
    _image(src / "cam2" / "other.png", 30, 40, seed=3)
    (src / "cam1" / "broken.jpg").write_bytes((src / "cam1" / "img.jpg").read_bytes()[:300])  # truncated
    (src / "cam2" / "empty.png").write_bytes(b"")
    (src / "cam2" / "fake.png").write_text("not an image at all")
    out = tmp_path / "out"
    assert _run(tiny_weights, str(src), "--out", str(out), "--format", "npy,color") == 1
    assert _files(out) == [
        "cam1/img.npy",
        "cam1/img_color.png",
        "cam2/img.npy",
        "cam2/img_color.png",
        "cam2/other.npy",
        "cam2/other_color.png",
    ]
    assert not np.array_equal(np.load(out / "cam1/img.npy"), np.load(out / "cam2/img.npy"))  # both written
    err = capsys.readouterr().err
    assert "predict: 3 done, 3 failed" in err
    assert "broken.jpg: cannot decode: truncated or corrupt file" in err
    assert "empty.png: empty file (0 bytes)" in err
    assert "fake.png: not an image (unrecognised format, 19 bytes)" in err


def test_every_format_matches_the_predictor(tmp_path, tiny_weights):
    rgb = _image(tmp_path / "in" / "a.png", 42, 70)
    out = tmp_path / "out"
    assert _run(tiny_weights, str(tmp_path / "in" / "a.png"), "--out", str(out), "--format", "all") == 0
    assert _files(out) == ["a.npy", "a.pfm", "a_color.png", "a_depth16.png", "a_gray.png", "a_sbs.png"]
    expected = _predictor(tiny_weights).predict(rgb).depth
    depth = np.load(out / "a.npy")
    assert depth.dtype == np.float32 and depth.shape == (42, 70) and depth.max() > 1.01 * depth.min() > 0
    np.testing.assert_allclose(depth, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs.read_pfm(out / "a.pfm"), depth)
    lo, hi = float(depth.min()), float(depth.max())
    back = outputs.read_depth_png16(out / "a_depth16.png")
    assert np.abs(back - depth).max() <= (hi - lo) / 65535 / 2 + 1e-6 * hi
    np.testing.assert_array_equal(read_image(out / "a_color.png"), outputs.colorize(depth, "Spectral_r"))
    assert read_image(out / "a_sbs.png").shape == (42, 70 + 50 + 70, 3)
    np.testing.assert_array_equal(read_image(out / "a_sbs.png")[:, :70], rgb)
    gray = read_image(out / "a_gray.png")[:, :, 0]
    assert gray.reshape(-1)[depth.argmax()] == 255 and gray.reshape(-1)[depth.argmin()] == 0


class _CountingPredictor(DepthPredictor):
    """A real predictor that counts the images it runs and can simulate a kill after ``kill_after`` images."""

    calls = 0
    kill_after: int | None = None

    def predict_iter(self, items, *, batch_size=1):
        for key, result in super().predict_iter(items, batch_size=batch_size):
            type(self).calls += 1
            if self.kill_after is not None and type(self).calls > self.kill_after:
                raise KeyboardInterrupt
            yield key, result


def test_resume_after_kill_with_skip_existing(tmp_path, tiny_weights, monkeypatch):
    for i in range(6):
        _image(tmp_path / "in" / f"{i}.jpg", seed=i)
    model = _predictor(tiny_weights).model
    load = classmethod(lambda cls, *a, **k: _CountingPredictor(model, input_size=k["input_size"]))
    monkeypatch.setattr(DepthPredictor, "from_pretrained", load)
    out = tmp_path / "out"
    _CountingPredictor.kill_after = 2
    assert _run(tiny_weights, str(tmp_path / "in"), "--out", str(out), "--format", "npy,png16") == 130
    done = _files(out)
    assert done == ["0.npy", "0_depth16.png", "1.npy", "1_depth16.png"]  # only complete outputs, no temp files
    mtimes = {p: (out / p).stat().st_mtime_ns for p in done}
    _CountingPredictor.calls, _CountingPredictor.kill_after = 0, None
    assert _run(tiny_weights, str(tmp_path / "in"), "--out", str(out), "--format", "npy,png16", "--skip-existing") == 0
    assert _CountingPredictor.calls == 4  # the two finished images were not run again
    assert {p: (out / p).stat().st_mtime_ns for p in done} == mtimes
    assert len(_files(out)) == 12
    # A new format makes the finished images due again (their outputs are no longer all there).
    _CountingPredictor.calls = 0
    assert _run(tiny_weights, str(tmp_path / "in"), "--out", str(out), "--format", "npy,gray", "--skip-existing") == 0
    assert _CountingPredictor.calls == 6


def test_batching_mixed_sizes_equals_single(tmp_path, tiny_weights):
    for i, (h, w) in enumerate([(42, 56), (42, 56), (56, 42), (42, 56), (30, 30)]):
        _image(tmp_path / "in" / f"{i}.png", h, w, seed=i)
    assert _run(tiny_weights, str(tmp_path / "in"), "--out", str(tmp_path / "b1"), "--format", "npy") == 0
    args = ("--out", str(tmp_path / "b3"), "--format", "npy", "--batch-size", "3")
    assert _run(tiny_weights, str(tmp_path / "in"), *args) == 0
    for i in range(5):
        np.testing.assert_allclose(
            np.load(tmp_path / "b3" / f"{i}.npy"), np.load(tmp_path / "b1" / f"{i}.npy"), rtol=1e-4, atol=1e-5
        )


def test_list_glob_and_image_kinds(tmp_path, tiny_weights, monkeypatch, capsys):
    src = tmp_path / "in"
    rgb = _image(src / "rot.jpg", 28, 56, quality=95, exif=_exif_rotate_90())
    gray16 = (np.linspace(0, 65535, 30 * 40).reshape(30, 40)).astype(np.uint16)
    Image.fromarray(gray16).save(src / "g16.png")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(src / "cmyk.jpg")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(src / "pal.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(src / "rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(src / "gray.png")
    (tmp_path / "list.txt").write_text("# images\nin/rot.jpg\n\nin/g16.png\nin/missing.png\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert _run(tiny_weights, "list.txt", "in/*.*g", "--out", str(out), "--format", "npy") == 1  # missing.png
    assert "missing.png: no such file or folder" in capsys.readouterr().err
    shapes = {p: np.load(out / p).shape for p in _files(out)}
    assert shapes == {
        "in/rot.npy": (56, 28),  # EXIF orientation applied: portrait
        "in/g16.npy": (30, 40),
        "in/cmyk.npy": (30, 40),
        "in/pal.npy": (28, 56),
        "in/rgba.npy": (28, 56),
        "in/gray.npy": (28, 56),
    }


def _exif_rotate_90() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


def test_oversize_and_extreme_aspect_are_reported(tmp_path, tiny_weights, capsys):
    _image(tmp_path / "in" / "ok.png", 42, 56)
    _image(tmp_path / "in" / "pano.png", 14, 400)
    _image(tmp_path / "in" / "big.png", 300, 400)
    out = tmp_path / "out"
    assert _run(tiny_weights, str(tmp_path / "in"), "--out", str(out), "--format", "npy", "--max-pixels", "0.1") == 1
    err = capsys.readouterr().err
    assert "big.png: image too large: 400x300 = 0.1 megapixels, limit 0.1 megapixels" in err
    assert "--max-side N" in err  # the way out, named as the flag
    assert "pano.png: extreme aspect ratio 28.6:1 (400x14): the model would run at 1596x56; limit 16:1" in err
    assert _files(out) == ["ok.npy"]
    # --max-side downscales (the outputs have the reduced size) and lifts the pixel limit for any format: a JPEG
    # is decoded at reduced size directly, a PNG in full (bounded by memory) and then downscaled.
    _image(tmp_path / "in2" / "big.jpg", 300, 400)
    args = ("--out", str(out), "--format", "npy", "--max-side", "100")
    assert _run(tiny_weights, str(tmp_path / "in" / "big.png"), *args) == 0
    assert np.load(out / "big.npy").shape == (75, 100)
    assert _run(tiny_weights, str(tmp_path / "in2" / "big.jpg"), *args, "--max-pixels", "0.1") == 0
    assert _run(tiny_weights, str(tmp_path / "in" / "big.png"), *args, "--max-pixels", "0.1") == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "npy,jpg"], "--format: expected a comma-separated list of npy, png16"),
        (["--colormap", "nope"], "--colormap: unknown colormap 'nope'"),
        (["--fov", "60", "--fx", "500"], "--fov: give either --fov or --fx/--fy, not both"),
        (["--batch-size", "0"], "--batch-size: expected >= 1, got 0"),
        (["--format", "ply"], "--format: ply needs metric depth"),
        (["--align-to", "/nonexistent/depth.png"], "--align-to: /nonexistent/depth.png: no such file or folder"),
    ],
)
def test_usage_errors_exit_2(tmp_path, tiny_weights, capsys, args, message):
    _image(tmp_path / "a.png")
    assert _run(tiny_weights, str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_usage_errors_inputs_and_model(tmp_path, tiny_weights, capsys):
    _image(tmp_path / "in" / "a.png")
    assert _run(tiny_weights, str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")) == 2
    assert "nope.jpg: no such file or folder" in capsys.readouterr().err
    assert _run(tiny_weights, str(tmp_path / "in"), "--out", str(tmp_path / "in")) == 2
    assert "is also an input folder" in capsys.readouterr().err
    assert _run(tiny_weights, str(tmp_path / "in")) == 2
    assert "--out: required" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert _run(tiny_weights, str(tmp_path / "in"), "--out", str(tmp_path / "file" / "out")) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    args = ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--weights", str(tmp_path / "w.pth")]
    assert main(args) == 2
    assert "cannot load model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: exit 2
        main(["predict", str(tmp_path / "in"), "--device", "tpu"])
    assert e.value.code == 2


def test_metric_point_cloud_with_exif_focal_and_fov(tmp_path, tiny_weights, capsys):
    from depth_anything_v2.io import pointcloud

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm = 26 mm
    rgb = _image(tmp_path / "in" / "a.jpg", 42, 56, quality=95, exif=exif.tobytes())
    out = tmp_path / "out"
    args = ["--out", str(out), "--format", "npy,ply,color", "--max-depth", "20", "--keep-edges"]
    assert _run(tiny_weights, str(tmp_path / "in" / "a.jpg"), *args) == 0
    depth_m = np.load(out / "a.npy")
    assert depth_m.min() > 0 and depth_m.max() < 20
    points, colors = pointcloud.read_ply(out / "a.ply")
    assert points.shape == (42 * 56, 3)
    f_px = 26 * np.hypot(56, 42) / np.hypot(36, 24)  # 35 mm-equivalent focal on the diagonal
    u0 = points[0, 0] * f_px / points[0, 2] + 27.5  # pixel (0, 0) projects back with the EXIF focal
    assert u0 == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(points[:, 2], depth_m.reshape(-1), rtol=1e-6)
    assert np.abs(colors.astype(int) - read_image(tmp_path / "in" / "a.jpg").reshape(-1, 3)).max() == 0
    assert _run(tiny_weights, str(tmp_path / "in" / "a.jpg"), *args, "--fov", "90") == 0
    points, _ = pointcloud.read_ply(out / "a.ply")
    assert points[0, 0] * 28.0 / points[0, 2] + 27.5 == pytest.approx(0.0, abs=1e-3)  # fx = (W/2)/tan(45)
    del rgb


def test_align_to_known_depth_makes_relative_output_metric(tmp_path, tiny_weights, capsys):
    _image(tmp_path / "in" / "a.png", 42, 56)
    disparity = _predictor(tiny_weights).predict(read_image(tmp_path / "in" / "a.png")).depth
    known = 1.0 / (0.5 * disparity + 0.25)  # metres, a known scale and shift
    np.save(tmp_path / "known.npy", known.astype(np.float32))
    out = tmp_path / "out"
    args = ["--out", str(out), "--format", "npy,png16,ply", "--align-to", str(tmp_path / "known.npy")]
    assert _run(tiny_weights, str(tmp_path / "in" / "a.png"), *args) == 0
    np.testing.assert_allclose(np.load(out / "a.npy"), known, rtol=1e-3)
    fit = json.loads((out / "a_align.json").read_text())
    assert fit["scale"] == pytest.approx(0.5, rel=1e-3) and fit["shift"] == pytest.approx(0.25, abs=1e-3)
    assert fit["inlier_ratio"] == 1.0
    np.testing.assert_allclose(outputs.read_depth_png16(out / "a_depth16.png"), known, atol=5e-4)  # millimetres
    assert (out / "a.ply").stat().st_size > 0
    # A folder of known depths: one file per input stem; an input without one fails alone.
    (tmp_path / "known").mkdir()
    np.save(tmp_path / "known" / "a.npy", known.astype(np.float32))
    _image(tmp_path / "in" / "b.png", 42, 56, seed=5)
    out2 = tmp_path / "out2"
    args = ["--out", str(out2), "--format", "npy", "--align-to", str(tmp_path / "known")]
    assert _run(tiny_weights, str(tmp_path / "in"), *args) == 1
    assert _files(out2) == ["a.npy", "a_align.json"]
    assert f"no known-depth file {tmp_path / 'known' / 'b'}.(.csv|.npy|.png|" in capsys.readouterr().err


def test_video_and_stream_routing(tmp_path, tiny_weights, monkeypatch):
    import cv2

    from depth_anything_v2.inference import video

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (56, 42))
    for i in range(5):
        writer.write(np.full((42, 56, 3), 40 * i, np.uint8))
    writer.release()
    calls = []
    monkeypatch.setattr(video, "run_stream", lambda predictor, source, **kw: calls.append((source, kw)) or
                        {"frames": 3, "fps": 9.0, "output": kw["out"]})  # fmt: skip
    out = tmp_path / "out"
    assert _run(tiny_weights, str(path), "0", "--out", str(out), "--format", "npy,color", "--max-frames", "3") == 0
    assert _files(out) == ["clip_depth.json", "clip_depth.mp4", "clip_depth.npy"]
    assert np.load(out / "clip_depth.npy", mmap_mode="r").shape == (5, 42, 56)
    assert calls == [
        ("0", {"out": out / "camera0_depth.mp4", "show": False, "colormap": "Spectral_r", "max_frames": 3,
               "stabilize": False, "sbs": False})
    ]  # fmt: skip
    mtime = (out / "clip_depth.mp4").stat().st_mtime_ns
    assert _run(tiny_weights, str(path), "--out", str(out), "--format", "npy,color", "--skip-existing") == 0
    assert (out / "clip_depth.mp4").stat().st_mtime_ns == mtime


def test_image_only_options_on_a_video_are_reported(tmp_path, tiny_weights, caplog):
    import cv2

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (56, 42))
    for _ in range(2):
        writer.write(np.full((42, 56, 3), 90, np.uint8))
    writer.release()
    known = tmp_path / "known.npy"
    np.save(known, np.full((42, 56), 2.0, np.float32))
    out = tmp_path / "out"
    args = ("--out", str(out), "--format", "gray,pfm,ply", "--align-to", str(known))
    assert _run(tiny_weights, str(path), *args) == 0
    assert _files(out) == ["clip_gray.mp4"]
    assert "pfm, ply, align_to: for images only, not applied to the 1 video(s); videos get gray" in caplog.text


def test_help_documents_naming(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    for needle in ("<stem>_depth16.png", "<stem>_color.png", "OUT/cam1/x_color.png", "exit status"):
        assert needle in text


def test_pipeline_overlaps_and_stays_bounded(tmp_path, tiny_weights, monkeypatch):
    import threading
    import time

    from depth_anything_v2.io import images as da_io

    for i in range(16):
        _image(tmp_path / "in" / f"{i:02d}.png", seed=i)
    lock = threading.Lock()
    state = {"decoded": 0, "written": 0, "max_ahead": 0, "writing": 0, "max_writing": 0}
    real_read, real_write = da_io.read_image, outputs.write_depth_outputs

    def read(*a, **k):
        image = real_read(*a, **k)
        with lock:
            state["decoded"] += 1
            state["max_ahead"] = max(state["max_ahead"], state["decoded"] - state["written"])
        return image

    def slow_write(*a, **k):  # a slow disk
        with lock:
            state["writing"] += 1
            state["max_writing"] = max(state["max_writing"], state["writing"])
        time.sleep(0.03)
        result = real_write(*a, **k)
        with lock:
            state["writing"] -= 1
            state["written"] += 1
        return result

    monkeypatch.setattr(da_io, "read_image", read)
    monkeypatch.setattr(outputs, "write_depth_outputs", slow_write)
    assert _run(tiny_weights, str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--format", "npy") == 0
    assert state["written"] == 16 and len(_files(tmp_path / "out")) == 16
    assert state["max_writing"] >= 2  # writes run in parallel, beside the model
    # Decoding ran ahead of the slow writer, but never further than the bounded queues allow (--workers 2:
    # decode window 4 + writer slots 3 + the batch in the model).
    assert 2 <= state["max_ahead"] <= 4 + 3 + 1
