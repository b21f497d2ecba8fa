"""The folder pipeline as a library call: ``predict_to_folder`` / ``plan`` + ``run``, and the shared prefetcher."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from depth_anything_v2.inference.pipeline import PipelineError, PipelineOptions, plan, predict_to_folder, run
from depth_anything_v2.inference.predictor import DepthPredictor
from depth_anything_v2.inference.prefetch import Background, prefetch_map
from depth_anything_v2.io.outputs import read_pfm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_image(path, seed: int, size=(42, 56)) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return rgb


@pytest.fixture
def predictor(tiny_model) -> DepthPredictor:
    return DepthPredictor(tiny_model, input_size=56, device="cpu")


def test_folder_run_writes_what_predict_returns_and_reports_a_corrupt_file(tmp_path, predictor):
    rgbs = {name: _write_image(tmp_path / "in" / f"{name}.png", i) for i, name in enumerate(["a", "b", "sub/c"])}
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    failed = []
    options = PipelineOptions(formats=("pfm",), batch_size=2, workers=2, progress=False)
    report = predict_to_folder(
        predictor, [tmp_path / "in"], tmp_path / "out", options, on_failure=lambda *f: failed.append(f)
    )
    assert (report.done, report.skipped) == (3, 0)
    assert [s for s, _ in report.failures] == [str(tmp_path / "in" / "broken.png")] == [s for s, _ in failed]
    for name, rgb in rgbs.items():
        expected = predictor.predict(rgb).depth
        np.testing.assert_allclose(read_pfm(tmp_path / "out" / f"{name}.pfm"), expected, rtol=1e-5, atol=1e-6)
    # Resuming skips the finished inputs, before any model is needed.
    again = plan([tmp_path / "in"], tmp_path / "out", PipelineOptions(formats=("pfm",), skip_existing=True))
    assert again.skipped == 3 and [i.stem for i in again.images] == ["broken"]  # the failed one is tried again


def test_a_batch_that_fails_is_retried_image_by_image(tmp_path, predictor, monkeypatch):
    for i in range(4):
        _write_image(tmp_path / "in" / f"{i}.png", i)
    real = predictor._infer

    def infer(batch):  # image 2 makes any batch it is in fail, as a corrupt-but-decodable input could
        if any(np.array_equal(rgb, poison) for _, rgb, _ in batch):
            raise RuntimeError("kernel failed")
        return real(batch)

    poison = np.asarray(Image.open(tmp_path / "in" / "2.png"))
    monkeypatch.setattr(predictor, "_infer", infer)
    report = predict_to_folder(
        predictor, [tmp_path / "in"], tmp_path / "out", PipelineOptions(formats=("npy",), batch_size=4, progress=False)
    )
    assert report.done == 3 and len(report.failures) == 1
    assert report.failures[0][1] == "inference failed: kernel failed"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.npy", "1.npy", "3.npy"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"formats": ("npy", "jpg")}, "format: expected a non-empty list"),
        ({"batch_size": 0}, "batch_size: expected >= 1, got 0"),
        ({"colormap": "nope"}, "colormap: unknown colormap"),
        ({"align_to": "/nonexistent.png"}, "align_to: /nonexistent.png: no such file or folder"),
    ],
)
def test_bad_options_name_the_option(kwargs, message):
    with pytest.raises(PipelineError, match=message):
        PipelineOptions(**kwargs)


def test_usage_problems_are_raised_before_any_work(tmp_path, predictor):
    _write_image(tmp_path / "in" / "a.png", 0)
    with pytest.raises(PipelineError, match="no such file"):
        plan([tmp_path / "missing"], tmp_path / "out", PipelineOptions())
    with pytest.raises(PipelineError, match="out: required"):
        plan([tmp_path / "in"], None, PipelineOptions())
    work = plan([tmp_path / "in"], tmp_path / "out", PipelineOptions(formats=("ply",)))
    with pytest.raises(PipelineError, match="ply needs metric depth"):
        run(predictor, work, PipelineOptions(formats=("ply",)))
    assert not (tmp_path / "out").exists()


def test_prefetch_map_keeps_order_bounds_the_window_and_yields_errors():
    in_flight, peak, lock = [0], [0], threading.Lock()

    def load(i: int) -> int:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.002 * (i % 3))
        with lock:
            in_flight[0] -= 1
        if i == 5:
            raise ValueError("bad item")
        return i * i

    started = []
    items = (started.append(i) or i for i in range(20))
    out = []
    for i, value in prefetch_map(load, items, workers=3, ahead=4):
        assert len(started) - len(out) <= 4  # never more than `ahead` items taken before they are consumed
        out.append((i, value))
    assert [i for i, _ in out] == list(range(20))
    assert isinstance(out[5][1], ValueError) and [v for i, v in out if i != 5] == [i * i for i in range(20) if i != 5]
    assert peak[0] <= 3
    with pytest.raises(KeyError):  # exceptions outside `catch` propagate
        list(prefetch_map(lambda i: {}[i], [1], workers=1, ahead=1, catch=(ValueError,)))


def test_background_iterator_reraises_and_closes_when_blocked():
    def gen():
        yield 1
        raise OSError("decoder died")

    bg = Background(gen(), maxsize=1, name="test")
    it = iter(bg)
    assert next(it) == 1
    with pytest.raises(OSError, match="decoder died"):
        next(it)
    bg.close()
    blocked = Background(iter(range(100)), maxsize=1, name="test")  # producer blocks on the full queue
    blocked.close()
    assert not blocked._thread.is_alive()
