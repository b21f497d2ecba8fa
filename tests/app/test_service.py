"""Handlers without a web framework: decoding and limits, the model lock, encoders, downloads and views."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from depth_anything_v2.app import service as svc
from depth_anything_v2.app.service import (
    DepthService,
    InvalidImageError,
    InvalidParameterError,
    Limits,
    ModelChoice,
    ModelManager,
    ModelUnavailableError,
    PayloadTooLargeError,
    ResultStore,
    ServiceBusyError,
)
from depth_anything_v2.app.views import (
    colorbar_html,
    depth_color,
    summary_markdown,
    value_readout,
    video_summary_markdown,
)
from depth_anything_v2.io import outputs
from depth_anything_v2.io.pointcloud import read_ply

from .helpers import (
    EXAMPLES,
    RecordingPredictor,
    image_bytes,
    make_clip,
    one_torch_thread,
    png_header_only,
    tiny_predictor,
)

_one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def relative_predictor():
    return tiny_predictor()


@pytest.fixture(scope="module")
def metric_predictor():
    return tiny_predictor(max_depth=20.0)


# ---------------------------------------------------------------------------------------------------------------
# Decoding and limits


def test_decode_good_image_and_exif_orientation():
    rgb = svc.decode_image(image_bytes(48, 64))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 and rgb.flags.writeable
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = svc.decode_image(image_bytes(48, 64, fmt="JPEG", exif=exif.tobytes()))
    assert rotated.shape == (64, 48, 3)


def test_decode_bundled_examples():
    for path in sorted(EXAMPLES.glob("*.jpg")):
        rgb = svc.decode_image(path.read_bytes())
        assert rgb.ndim == 3 and min(rgb.shape[:2]) >= 300, path.name
    sizes = [p.stat().st_size for p in EXAMPLES.glob("*.jpg")]
    assert len(sizes) == 3 and sum(sizes) < 300_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty upload"),
        (b"certainly not an image", "not an image"),
        (image_bytes(fmt="JPEG")[:300], "truncated or corrupt"),
    ],
)
def test_decode_bad_bytes_is_400(data, message):
    with pytest.raises(InvalidImageError, match=message) as e:
        svc.decode_image(data)
    assert e.value.status_code == 400


def test_oversize_upload_is_413_before_decoding():
    limits = Limits(max_upload_bytes=1000)
    # Garbage that would be a 400 if it were decoded: the size check comes first.
    with pytest.raises(PayloadTooLargeError, match=r"expected at most 1000 bytes, got 1.95 KiB") as e:
        svc.decode_image(b"x" * 2000, limits)
    assert e.value.status_code == 413
    # Just over the limit: the two sizes never read the same (20 MiB vs 20 MiB).
    with pytest.raises(PayloadTooLargeError, match=r"expected at most 20 MiB \(20971520 bytes\), got 20971620 bytes$"):
        svc.check_upload_size(20 * 2**20 + 100, Limits(max_upload_bytes=20 * 2**20))


def test_oversize_dimensions_are_413_from_the_header():
    with pytest.raises(PayloadTooLargeError, match=r"16 megapixels, got 8000x8000 = 64.0 megapixels"):
        svc.decode_image(png_header_only(8000, 8000))  # no pixel data: proves nothing was decoded
    with pytest.raises(PayloadTooLargeError, match="decompression bomb"):
        svc.decode_image(png_header_only(40000, 40000), Limits(max_pixels=10**10))
    with pytest.raises(PayloadTooLargeError, match=r"64x48 = 0\.0 megapixels"):
        svc.decode_image(image_bytes(48, 64), Limits(max_pixels=1000))


def test_elongated_image_is_422():
    with pytest.raises(InvalidParameterError, match=r"side ratio of at most 4, got 100x10 \(10.0\)") as e:
        svc.decode_image(image_bytes(10, 100), Limits(max_aspect=4))
    assert e.value.status_code == 422


def test_limits_validate():
    with pytest.raises(ValueError, match="max_pixels >= 1"):
        Limits(max_pixels=0)


# ---------------------------------------------------------------------------------------------------------------
# The service


def test_predict_relative_and_cache(relative_predictor):
    service = DepthService.from_predictor(relative_predictor, "tiny")
    data = image_bytes(48, 64)
    first = service.predict(data)
    assert first.depth.shape == (48, 64) and first.depth.dtype == np.float32
    assert first.kind == "disparity" and first.unit is None and not first.cached
    assert np.ptp(first.depth) > 0
    again = service.predict(data)
    assert again.cached and again.inference_s == 0.0 and np.array_equal(again.depth, first.depth)
    assert service.model_runs == 1 and service.requests_served == 2
    assert service.cached(first.key) is not None
    meta = first.metadata()
    assert meta["kind"] == "disparity" and meta["unit"] is None and (meta["width"], meta["height"]) == (64, 48)
    assert meta["min"] == pytest.approx(float(first.depth.min()))


def test_png16_round_trip_relative(relative_predictor, tmp_path):
    prediction = DepthService.from_predictor(relative_predictor, "tiny").predict(image_bytes(48, 64, seed=1))
    body, media_type, filename, meta = svc.encode(prediction, "png16")
    assert media_type == "image/png" and filename == "depth16.png"
    outputs.write_depth_png16(tmp_path / "d.png", prediction.depth, prediction.kind)
    assert (tmp_path / "d.png").read_bytes() == body  # the same file the predict command writes
    back = outputs.read_depth_png16(io.BytesIO(body))
    span = float(prediction.depth.max() - prediction.depth.min())
    assert np.abs(back - prediction.depth).max() <= span / 131070 * 1.01 + 1e-7
    # The header numbers say the same: value = offset + scale * stored.
    stored = np.asarray(Image.open(io.BytesIO(body))).astype(np.float64)
    assert np.allclose(meta["offset"] + meta["scale"] * stored, prediction.depth, atol=span / 131070 * 1.01 + 1e-7)
    assert meta["encoding"]["kind"] == "disparity" and meta["invalid"] is None


def test_metric_metadata_png16_and_npy(metric_predictor):
    prediction = DepthService.from_predictor(metric_predictor, "tiny-metric").predict(image_bytes(48, 64, seed=2))
    assert prediction.kind == "metric" and prediction.unit == "m" and prediction.max_depth == 20.0
    assert prediction.depth.min() > 0 and prediction.depth.max() < 20.0
    body, _, _, meta = svc.encode(prediction, "png16")
    expected = {"kind": "metric", "unit": "m", "scale": 0.001, "offset": 0.0, "invalid": 0}
    assert {k: meta[k] for k in expected} == expected
    assert meta["max_depth"] == 20.0 and meta["model"] == "tiny-metric"
    back = outputs.read_depth_png16(io.BytesIO(body))
    assert np.abs(back - prediction.depth).max() <= 0.0005 + 1e-6  # half a millimetre
    body, media_type, filename, meta = svc.encode(prediction, "npy")
    assert media_type == "application/octet-stream" and filename == "depth.npy" and meta["scale"] == 1.0
    assert np.array_equal(np.load(io.BytesIO(body), allow_pickle=False), prediction.depth)


def test_unknown_format_and_model_are_422(relative_predictor):
    service = DepthService.from_predictor(relative_predictor, "tiny")
    prediction = service.predict(image_bytes())
    with pytest.raises(InvalidParameterError, match="unknown format 'tiff'; expected one of png16, npy"):
        svc.encode(prediction, "tiff")
    with pytest.raises(InvalidParameterError, match="unknown model 'vitz'; expected one of tiny"):
        service.predict(image_bytes(), "vitz")


def test_model_manager_loads_once_switches_and_reports_failures(relative_predictor, metric_predictor):
    loads: list[str] = []

    def loader(choice: ModelChoice):
        loads.append(choice.name)
        if choice.name == "broken":
            raise FileNotFoundError("model 'broken' needs broken.pth, which is not in the Hugging Face cache")
        return metric_predictor if choice.max_depth else relative_predictor

    choices = [ModelChoice("rel", "rel"), ModelChoice("met", "met", max_depth=20.0), ModelChoice("broken", "b")]
    service = DepthService(ModelManager(choices, loader=loader, max_loaded=1))
    assert service.models.kind_of("met") == "metric" and service.models.kind_of("rel") is None  # not loaded yet
    assert service.predict(image_bytes(seed=3)).kind == "disparity"
    assert service.predict(image_bytes(seed=4)).kind == "disparity"
    assert service.predict(image_bytes(seed=3), "met").kind == "metric"
    assert loads == ["rel", "met"]  # loaded once each
    assert not service.models.is_loaded("rel")  # evicted: max_loaded=1
    with pytest.raises(
        ModelUnavailableError, match=r"^model 'broken' could not be loaded on this server \(the server"
    ) as e:
        service.predict(image_bytes(seed=5), "broken")
    assert e.value.status_code == 503 and "Hugging Face cache" in str(e.value.__cause__)  # details: log only
    assert service.models.is_loaded("met")  # a failed load unloads nothing
    info = service.info()
    assert [m["name"] for m in info["models"]] == ["rel", "met", "broken"] and info["default_model"] == "rel"
    assert info["limits"]["max_pixels"] == svc.DEFAULT_MAX_PIXELS


def test_requests_never_download_or_show_server_paths(tmp_path, monkeypatch, relative_predictor):
    # A published model that is not cached: a request gets a 503 at once (no download, no lock held for it),
    # with no server path in the message, and the working model stays loaded.
    import huggingface_hub
    import huggingface_hub.constants

    from depth_anything_v2.weights.loading import ModelUnavailableError as NotCached

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: pytest.fail("went to the network"))
    choices = [ModelChoice("rel", "rel"), ModelChoice.published("vitb")]
    service = DepthService(ModelManager(choices, preloaded={"rel": relative_predictor}))
    with pytest.raises(ModelUnavailableError, match=r"^model 'vitb' is not available on this server: it has not") as e:
        service.predict(image_bytes(seed=1), "vitb")
    assert isinstance(e.value.__cause__, NotCached) and str(tmp_path) not in str(e.value)
    assert service.models.is_loaded("rel") and service.predict(image_bytes(seed=1)).kind == "disparity"


def test_info_reports_the_metric_range_of_a_published_metric_file(relative_predictor, metric_predictor):
    choice = ModelChoice.weights("/models/depth_anything_v2_metric_hypersim_vits.pth")
    assert (choice.max_depth, choice.description) == (
        20.0, "weights file depth_anything_v2_metric_hypersim_vits.pth (metric, max 20 m)",
    )  # fmt: skip
    loaded = ModelChoice.weights("/models/mine.pth")  # the name cannot tell; the loaded model can
    service = DepthService(ModelManager([loaded], preloaded={"mine.pth": metric_predictor}))
    assert service.info()["models"][0]["max_depth"] == metric_predictor.model.max_depth


def test_published_choice_knows_kind_and_licence():
    choice = ModelChoice.published("metric-hypersim-vits")
    assert (choice.encoder, choice.max_depth, choice.is_published) == ("vits", 20.0, True)
    assert choice.license.startswith("Apache")
    assert len(svc.published_choices()) == 9
    with pytest.raises(ValueError, match="unknown model name 'vitz'"):
        ModelChoice.published("vitz")


def test_concurrent_requests_are_serialised_and_excess_is_503(relative_predictor):
    recorder = RecordingPredictor(relative_predictor, delay_s=0.3)
    service = DepthService.from_predictor(recorder, "tiny", max_pending=2)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = service.predict(image_bytes(seed=10 + i))
        except ServiceBusyError as e:
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while service.pending < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    call(2)  # a third request while two are in: refused at once
    for t in threads:
        t.join()
    assert isinstance(results[2], ServiceBusyError) and results[2].status_code == 503
    assert "2 requests are already waiting" in str(results[2])
    assert all(results[i].kind == "disparity" for i in range(2))
    assert recorder.calls == 2 and recorder.max_active == 1 and service.pending == 0


# ---------------------------------------------------------------------------------------------------------------
# Downloads


def test_write_downloads_metric_and_relative(tmp_path, relative_predictor, metric_predictor):
    metric = DepthService.from_predictor(metric_predictor, "m").predict(image_bytes(48, 64, seed=6))
    paths = svc.write_downloads(metric, tmp_path / "m", "photo")
    assert [p.name for p in paths] == ["photo_gray.png", "photo_depth16.png", "photo.npy", "photo.ply"]
    assert np.array_equal(np.load(paths[2]), metric.depth)
    assert np.abs(outputs.read_depth_png16(paths[1]) - metric.depth).max() <= 0.0005 + 1e-6
    gray = np.asarray(Image.open(paths[0]))
    assert gray.shape == (48, 64) and gray.dtype == np.uint8
    points, colors = read_ply(paths[3])
    assert 0 < len(points) <= 48 * 64 and colors is not None
    assert np.all((points[:, 2] > 0) & (points[:, 2] < 20))  # z is the metric depth
    relative = DepthService.from_predictor(relative_predictor, "r").predict(image_bytes(48, 64, seed=6))
    names = [p.name for p in svc.write_downloads(relative, tmp_path / "r", "photo")]
    assert names == ["photo_gray.png", "photo_depth16.png", "photo.npy"]  # no point cloud without metric depth
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(names)  # no temporary files left


def test_result_store_reuses_and_sweeps(tmp_path):
    store = ResultStore(tmp_path / "results", ttl_s=3600, max_results=2)
    a, new_a = store.folder_for("a")
    assert new_a and store.folder_for("a") == (a, False)
    b, _ = store.folder_for("b")
    c, _ = store.folder_for("c")  # max_results=2: the oldest of a, b goes when c is made
    assert not a.exists() and b.exists() and c.exists()
    store.ttl_s = 0.0
    time.sleep(0.01)
    d, _ = store.folder_for("d")
    assert [p.name for p in (tmp_path / "results").iterdir()] == [d.name]
    store.close()
    assert not (tmp_path / "results").exists()


def test_safe_stem():
    assert svc.safe_stem("My Photo (1).JPG") == "My_Photo_1"
    assert svc.safe_stem("../../etc/passwd") == "passwd"
    assert svc.safe_stem("") == "image" and svc.safe_stem("...") == "image"
    assert len(svc.safe_stem("x" * 300 + ".png")) == 64


# ---------------------------------------------------------------------------------------------------------------
# Views


def test_views_metric_show_metres(metric_predictor):
    prediction = DepthService.from_predictor(metric_predictor, "m").predict(image_bytes(48, 64, seed=7))
    lo, hi = float(prediction.depth.min()), float(prediction.depth.max())
    bar = colorbar_html(prediction, "Spectral_r", ticks=5)
    assert 'data-kind="metric"' in bar and "depth in metres" in bar
    assert f">{lo:.3g} m<" in bar and f">{hi:.3g} m<" in bar  # near (left) to far (right)
    assert bar.index(f">{lo:.3g} m<") < bar.index(f">{hi:.3g} m<")
    # The bar's left end is the colour of the nearest pixel.
    near_rgb = depth_color(prediction)[np.unravel_index(np.argmin(prediction.depth), prediction.depth.shape)]
    assert f"rgb({near_rgb[0]},{near_rgb[1]},{near_rgb[2]}) 0.0%" in bar
    assert "metric depth in metres" in summary_markdown(prediction) and ".ply" in summary_markdown(prediction)
    y, x = 5, 7
    assert value_readout(prediction, x, y) == f"depth at (7, 5): **{prediction.depth[y, x]:.3f} m**"
    assert "outside" in value_readout(prediction, 64, 0)


def test_views_relative_have_no_unit(relative_predictor):
    prediction = DepthService.from_predictor(relative_predictor, "r").predict(image_bytes(48, 64, seed=8))
    bar = colorbar_html(prediction, "viridis")
    assert ">near<" in bar and ">far<" in bar and " m<" not in bar and "no unit" in bar
    assert "no point cloud" in summary_markdown(prediction)
    assert "(relative, no unit)" in value_readout(prediction, 0, 0)
    assert depth_color(prediction, "viridis").shape == (48, 64, 3)


# ---------------------------------------------------------------------------------------------------------------
# Video


def test_process_video_writes_sbs_npy_and_metadata(tmp_path, metric_predictor):
    clip = make_clip(tmp_path / "clip.mp4", frames=6)
    service = DepthService.from_predictor(metric_predictor, "m")
    summary = service.process_video(clip, tmp_path / "out", "clip", colormap="viridis")
    assert summary["frames"] == 6 and summary["kind"] == "metric" and summary["model"] == "m"
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["clip_depth.json", "clip_depth.npy", "clip_sbs.mp4"]
    frames = np.load(out / "clip_depth.npy")
    assert frames.shape == (6, 48, 64) and frames.dtype == np.float32 and frames.min() > 0 and frames.max() < 20
    meta = json.loads((out / "clip_depth.json").read_text())
    text = video_summary_markdown(meta)
    assert text.startswith("6 frames · 64×48 px · 10 fps (10/1) · metric depth in metres")
    assert service.pending == 0


def test_video_limits_and_bad_files(tmp_path, relative_predictor):
    service = DepthService.from_predictor(relative_predictor, "r", limits=Limits(max_video_frames=3))
    clip = make_clip(tmp_path / "long.mp4", frames=5)
    with pytest.raises(PayloadTooLargeError, match="video too long: expected at most 3 frames, got 5"):
        service.process_video(clip, tmp_path / "out", "long")
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(InvalidImageError, match="not a readable video") as e:
        service.process_video(bad, tmp_path / "out", "notes")
    assert str(tmp_path) not in str(e.value)  # the server's paths stay private
    small = DepthService.from_predictor(relative_predictor, "r", limits=Limits(max_pixels=1000))
    with pytest.raises(PayloadTooLargeError, match=r"video frames too large: .* got 64x48"):
        small.process_video(clip, tmp_path / "out", "long")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
