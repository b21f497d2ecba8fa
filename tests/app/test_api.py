"""The HTTP API over a real server on 127.0.0.1 (random free port), with the Gradio page mounted."""

from __future__ import annotations

import http.client
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from depth_anything_v2.app.service import DepthService, Limits
from depth_anything_v2.io import outputs

from .helpers import EXAMPLES, RecordingPredictor, image_bytes, one_torch_thread, png_header_only, tiny_predictor

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("gradio")

from depth_anything_v2.app.api import running_app  # noqa: E402

# Gradio's queue calls pandas APIs that pandas 3 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

REPO = Path(__file__).resolve().parents[2]
MAX_UPLOAD = 200_000
_one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def recorder() -> RecordingPredictor:
    return RecordingPredictor(tiny_predictor(max_depth=20.0), delay_s=0.05)


@pytest.fixture(scope="module")
def server(recorder):
    limits = Limits(max_upload_bytes=MAX_UPLOAD, max_pixels=1_000_000)
    service = DepthService.from_predictor(recorder, "tiny-metric", limits=limits, max_pending=8)
    with running_app(service, "127.0.0.1", 0) as srv:
        yield srv


def post(server, data: bytes | None = None, *, files=None, params=None, headers=None, content=None):
    body = content if content is not None else data
    return httpx.post(server.url + "/api/depth", files=files, content=body, params=params, headers=headers, timeout=60)


def test_good_image_png16_and_npy(server):
    data = image_bytes(96, 128, seed=1, fmt="JPEG")
    r = post(server, files={"image": ("photo.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert (r.headers["x-depth-kind"], r.headers["x-depth-unit"]) == ("metric", "m")
    assert [r.headers[f"x-depth-{k}"] for k in ("scale", "offset", "invalid")] == ["0.001", "0.0", "0"]
    meta = json.loads(r.headers["x-depth-metadata"])
    assert (meta["width"], meta["height"], meta["max_depth"], meta["model"]) == (128, 96, 20.0, "tiny-metric")
    depth_png = outputs.read_depth_png16(io.BytesIO(r.content))
    # The same image as the raw body, as .npy: the exact values, which the PNG matches to half a millimetre.
    r2 = post(server, data, params={"format": "npy"}, headers={"content-type": "application/octet-stream"})
    assert r2.status_code == 200 and r2.headers["content-type"] == "application/octet-stream"
    depth = np.load(io.BytesIO(r2.content), allow_pickle=False)
    assert depth.shape == (96, 128) and depth.dtype == np.float32
    assert np.abs(depth_png - depth).max() <= 0.0005 + 1e-6
    assert meta["min"] == pytest.approx(float(depth.min())) and meta["max"] == pytest.approx(float(depth.max()))
    assert json.loads(r2.headers["x-depth-metadata"])["scale"] == 1.0


def test_bad_image_is_400_with_a_message(server):
    r = post(server, b"GIF89a but not really", headers={"content-type": "image/gif"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("not an image: expected a JPEG, PNG")
    r = post(server, image_bytes(fmt="JPEG")[:400], headers={"content-type": "image/jpeg"})
    assert r.status_code == 400 and "truncated or corrupt" in r.json()["detail"]
    r = post(server, b"")
    assert r.status_code == 400 and r.json()["detail"].startswith("empty upload")
    r = httpx.post(server.url + "/api/depth", files={"note": (None, "no file here")}, timeout=30)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail == "expected the image as a file field 'image' (curl -F image=@photo.jpg), got fields ['note']"


def test_oversize_upload_and_image_are_413(server):
    big = os.urandom(MAX_UPLOAD + 100_000)
    r = post(server, big, headers={"content-type": "application/octet-stream"})  # Content-Length declared
    assert r.status_code == 413 and "expected at most" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while reading
        for _ in range(10):
            yield os.urandom(40_000)

    r = httpx.post(server.url + "/api/depth", content=chunks(), timeout=30)
    assert r.status_code == 413 and "request too large" in r.json()["detail"]
    r = post(server, files={"image": ("big.bin", os.urandom(MAX_UPLOAD + 1000), "image/jpeg")})
    assert r.status_code == 413 and "upload too large" in r.json()["detail"]
    r = post(server, png_header_only(2000, 1000), headers={"content-type": "image/png"})
    assert r.status_code == 413
    assert r.json()["detail"] == "image too large: expected at most 1 megapixels, got 2000x1000 = 2.0 megapixels"


def test_bad_parameters_are_422(server):
    data = image_bytes(seed=2)
    r = post(server, data, params={"format": "tiff"})
    assert r.status_code == 422
    r = post(server, data, params={"model": "vitz"})
    assert r.status_code == 422 and r.json()["detail"] == "unknown model 'vitz'; expected one of tiny-metric"


def test_concurrent_requests_all_succeed_one_at_a_time(server, recorder):
    images = [image_bytes(64, 80, seed=100 + i) for i in range(4)]  # distinct: no cache hits
    calls_before = recorder.calls
    results: list = [None] * len(images)
    barrier = threading.Barrier(len(images))

    def call(i: int) -> None:
        barrier.wait()
        results[i] = post(server, images[i], params={"format": "npy"})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in results] == [200] * 4
    assert all(np.load(io.BytesIO(r.content)).shape == (64, 80) for r in results)
    assert recorder.calls - calls_before == 4 and recorder.max_active == 1


def test_info_and_health(server):
    info = httpx.get(server.url + "/api/info").json()
    assert info["default_model"] == "tiny-metric" and info["formats"] == ["png16", "npy"]
    assert info["models"][0]["kind"] == "metric" and info["models"][0]["unit"] == "m"
    limits = {"max_upload_bytes": MAX_UPLOAD, "max_pixels": 1_000_000, "max_aspect": 16.0, "max_video_frames": 300}
    assert info["limits"] == limits
    assert httpx.get(server.url + "/api/health").json() == {"status": "ok"}
    assert httpx.get(server.url + "/api/openapi.json").json()["paths"]["/api/depth"]["post"]


def _raw_get(server, path: str) -> tuple[int, bytes]:
    """GET with the path sent as written (httpx would normalise the ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_nothing_outside_the_app_is_readable(server):
    passwd = "/etc/passwd"
    pyproject = str(REPO / "pyproject.toml")
    workspace = str(server.workspace.gradio_dir)
    probes = [
        f"/gradio_api/file={passwd}",
        f"/gradio_api/file={pyproject}",
        f"/gradio_api/file={EXAMPLES / 'CREDITS.md'}",  # the package folder itself is not served
        f"/gradio_api/file={workspace}/../../../../../etc/passwd",
        f"/gradio_api/file={workspace}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/gradio_api/file=../../../../../../etc/passwd",
        "/gradio_api/file=%2Fetc%2Fpasswd",
        "/../../../../etc/passwd",
        "/static/../../../../../etc/passwd",
        "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/api/../../etc/passwd",
        "/file=/etc/passwd",
    ]
    secret = (REPO / "pyproject.toml").read_bytes()[:40]
    for path in probes:
        status, body = _raw_get(server, path)
        assert status in (400, 403, 404), (path, status)
        assert b"root:" not in body and secret not in body, path
    # The app's own files are served: the page and the copies of the examples in Gradio's cache.
    assert _raw_get(server, "/")[0] == 200
    names = {e.name for e in EXAMPLES.glob("*.jpg")}
    copies = [p for p in server.workspace.gradio_dir.rglob("*.jpg") if p.name in names]
    assert copies and _raw_get(server, f"/gradio_api/file={copies[0]}")[0] == 200


def test_forged_file_path_is_refused(server):
    # A Gradio event whose image input names a server file instead of an upload (what a hand-made API call can
    # send): Gradio must refuse it, not copy the file into its cache where /gradio_api/file= would serve it.
    payload = {"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "tiny-metric", "Spectral_r"]}
    r = httpx.post(server.url + "/gradio_api/call/predict", json=payload, timeout=30)
    assert r.status_code == 200
    events = httpx.get(server.url + f"/gradio_api/call/predict/{r.json()['event_id']}", timeout=30).text
    assert "event: error" in events and "root:" not in events
    assert not [p for p in server.workspace.path.rglob("passwd")]


def test_api_requests_leave_no_files(server):
    for seed in range(3):
        assert post(server, image_bytes(seed=200 + seed)).status_code == 200
    files = [p for p in server.workspace.path.rglob("*") if p.is_file()]
    example_names = {e.name for e in EXAMPLES.glob("*.jpg")}
    assert files and all(p.name in example_names for p in files), files  # only Gradio's copies of the examples


def test_workspace_is_removed_and_environment_restored():
    before = os.environ.get("GRADIO_TEMP_DIR")
    service = DepthService.from_predictor(tiny_predictor(), "tiny")
    with running_app(service, "127.0.0.1", 0, ui=False) as srv:
        root = srv.workspace.path
        assert root.is_dir() and os.environ["GRADIO_TEMP_DIR"] == str(srv.workspace.gradio_dir)
        r = httpx.post(srv.url + "/api/depth", content=image_bytes(seed=5), timeout=60)
        assert r.status_code == 200 and r.headers["x-depth-kind"] == "disparity" and r.headers["x-depth-unit"] == "none"
        assert httpx.get(srv.url + "/").status_code == 404  # --no-ui: no page
    assert not root.exists()
    assert os.environ.get("GRADIO_TEMP_DIR") == before
