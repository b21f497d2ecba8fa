"""End to end in a real headless browser: ``depth-anything app`` as a subprocess, driven by Playwright + chromium:
upload, depth view, downloads (checked byte for byte), value readout, an example, the video tab, a model that is not
available, and a clean stop.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$CHROMIUM``) and ``pip install playwright`` (its own
browser download is not used); skipped with the reason when either is missing, unless ``DA2_REQUIRE_BROWSER=1``
(CI), which turns the skip into a failure.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_anything_v2.io import outputs

from .helpers import EXAMPLES, make_clip, png_header_only, tiny_model

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _unavailable(reason: str):
    # CI sets DA2_REQUIRE_BROWSER=1 so that a missing browser fails the run instead of skipping silently.
    if os.environ.get("DA2_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DA2_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        _unavailable(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    for module in ("gradio", "fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            _unavailable(f"{module} is not installed (pip install -e '.[app]')")
    return sync_playwright


@pytest.fixture
def sync_playwright():
    """Playwright's entry point, or a skip (before any server is started)."""
    return _playwright()


@pytest.fixture
def app_process(sync_playwright, tmp_path):
    """The CLI serving a tiny random metric model on 127.0.0.1 (free port), offline, with its own TMPDIR."""
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_model(max_depth=20.0).state_dict(), weights)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(tmpdir),  # the app's temporary folder goes here: checked empty after it stops
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache: published models are "not downloaded"
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("GRADIO_TEMP_DIR", None)
    main = "import sys; from depth_anything_v2.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", main, "app", "--weights", str(weights), "--encoder", "tiny"]
    cmd += ["--max-depth", "20", "--input-size", "56", "--host", "127.0.0.1", "--port", "0"]
    log = tmp_path / "app.log"  # a file, not a pipe: a chatty server must never block on a full pipe
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = proc.stdout.readline()  # "depth-anything app: serving tiny.pth on http://127.0.0.1:PORT/ ..."
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if match is None:
            proc.kill()
            pytest.fail(f"the app did not start: {line!r} {log.read_text()[-3000:]}")
        yield match.group(0), proc, tmpdir
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_upload_depth_view_and_downloads(sync_playwright, app_process, tmp_path):
    url, proc, tmpdir = app_process
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            upload = page.locator("#input-image input[type=file]")
            upload.wait_for(state="attached", timeout=30_000)
            upload.set_input_files(str(EXAMPLES / "coffee.jpg"))

            # The downloads appear: grayscale PNG, 16-bit PNG, .npy and, for a metric model, the point cloud.
            page.wait_for_function("document.querySelectorAll('#downloads a[download]').length >= 4", timeout=60_000)
            links = {
                a.get_attribute("download"): a.get_attribute("href")
                for a in page.locator("#downloads a[download]").all()
            }
            assert sorted(links) == ["coffee.npy", "coffee.ply", "coffee_depth16.png", "coffee_gray.png"]

            # The comparison slider shows the photo and its depth, both decoded by the browser at full size.
            slider_images = page.locator("#depth-slider img")
            assert slider_images.count() == 2
            widths = [slider_images.nth(i).evaluate("e => e.complete ? e.naturalWidth : 0") for i in range(2)]
            assert widths == [600, 600]
            assert "metric depth in metres" in page.inner_text("#summary")
            assert re.search(r"\d+(\.\d+)? m", page.inner_text("#colorbar"))  # the colour bar's ticks in metres

            # The downloads are the right files: 16-bit PNG in millimetres, .npy exact, PLY a point cloud.
            depth16 = outputs.read_depth_png16(io.BytesIO(page.request.get(links["coffee_depth16.png"]).body()))
            depth = np.load(io.BytesIO(page.request.get(links["coffee.npy"]).body()), allow_pickle=False)
            assert depth.shape == depth16.shape == (400, 600)
            assert np.abs(depth16 - depth).max() <= 0.0005 + 1e-6 and depth.min() > 0 and depth.max() < 20
            assert page.request.get(links["coffee.ply"]).body().startswith(b"ply\nformat binary_little_endian 1.0\n")

            # Clicking the depth map reads out the value under the cursor, in metres.
            page.get_by_role("tab", name="Depth values").click()
            depth_image = page.locator("#depth-image img").first
            depth_image.wait_for(timeout=10_000)
            box = depth_image.bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_function("document.querySelector('#readout').innerText.includes('depth at')", timeout=20_000)
            readout = page.inner_text("#readout")
            x, y, value = re.search(r"depth at \((\d+), (\d+)\): ([\d.]+) m", readout).groups()
            assert abs(int(x) - 300) <= 2 and abs(int(y) - 200) <= 2
            assert float(value) == pytest.approx(float(depth[int(y), int(x)]), abs=0.0006)

            # A bundled example runs too.
            page.locator("img[src*='rocket']").first.click()
            page.wait_for_function("document.querySelector('#summary').innerText.includes('640×427')", timeout=60_000)

            # Uploads the service refuses: the page says why (not a bare "Error") and clears the previous result.
            (tmp_path / "notes.jpg").write_text("hello, I am text")
            (tmp_path / "empty.png").write_bytes(b"")
            (tmp_path / "bomb.png").write_bytes(png_header_only(20_000, 20_000))  # 400 MP, no pixel data
            for name, reason in [
                ("notes.jpg", "not an image: expected a JPEG, PNG"),
                ("empty.png", "empty upload"),
                ("bomb.png", "image too large (decompression bomb guard): Image size (400000000 pixels)"),
            ]:
                upload.set_input_files(str(tmp_path / name))
                page.wait_for_function(
                    "r => document.querySelector('#summary').innerText.includes(r)", arg=reason, timeout=30_000
                )
                assert page.inner_text("#colorbar").strip() == ""
                assert page.locator("#depth-slider img").count() == 0
                assert page.locator(".toast-body", has_text=reason).count() >= 1
            # One upload over an existing image is one prediction (the second of two would be served "cached").
            upload.set_input_files(str(EXAMPLES / "chelsea.jpg"))
            page.wait_for_function("document.querySelector('#summary').innerText.includes(' ms')", timeout=60_000)
            upload.set_input_files(str(EXAMPLES / "coffee.jpg"))
            page.wait_for_function("document.querySelector('#summary').innerText.includes('600×400')", timeout=60_000)
            page.wait_for_timeout(1500)  # a second prediction, if any, would have landed by now
            assert "cached" in page.inner_text("#summary")  # coffee was computed above: one run, from the cache
            upload.set_input_files(str(EXAMPLES / "chelsea.jpg"))
            page.wait_for_function("document.querySelector('#summary').innerText.includes('cached')", timeout=60_000)

            # The video tab: side-by-side video that the browser plays, and the float32 frames.
            page.get_by_role("tab", name="Video").click()
            page.locator("#input-video input[type=file]").set_input_files(str(clip))
            page.locator("#run-video").click()
            page.wait_for_function(
                "document.querySelectorAll('#video-downloads a[download]').length >= 3", timeout=60_000
            )
            assert page.inner_text("#video-summary").startswith("8 frames · 64×48 px · 10 fps")
            video = page.locator("#depth-video video").first
            video.wait_for(timeout=10_000)
            page.wait_for_function("document.querySelector('#depth-video video').readyState >= 2", timeout=20_000)
            assert video.evaluate("e => e.videoWidth") == 2 * 64 + 50  # frame | 50 px gap | depth
            page.get_by_role("tab", name="Image").click()

            # A published model that is not downloaded (offline) gives a message, not a hang or a crash.
            page.locator("#model input").click()
            page.locator("ul[role=listbox] li", has_text="vits (relative").first.click()
            toast = page.locator(".toast-body", has_text="is not available on this server")
            toast.first.wait_for(timeout=30_000)
            assert "it has not been downloaded" in toast.first.inner_text()
            assert "/" not in page.inner_text("#summary").split("server", 1)[1]  # no server path shown
        finally:
            browser.close()

    # SIGTERM: a clean stop that deletes the app's temporary folder (uploads, rendered images, downloads).
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert list(tmpdir.iterdir()) == []
    assert not (Path(tmpdir).parent / ".gradio").exists()  # nothing in the working directory either
