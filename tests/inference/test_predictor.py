import numpy as np
import pytest
import torch
from PIL import Image

from depth_anything_v2 import DepthPredictor, DepthResult


@pytest.fixture
def rgb_images():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(60, 80, 3), (61, 80, 3), (60, 80, 3), (50, 50, 3)]
    ]


def test_single_image_matches_reference_infer_image(tiny_model, rgb_images):
    predictor = DepthPredictor(tiny_model)
    rgb = rgb_images[0]
    result = predictor.predict(rgb)
    assert isinstance(result, DepthResult)
    assert result.depth.dtype == np.float32 and result.depth.shape == (60, 80)
    assert result.kind == "disparity" and result.unit is None and not result.is_metric and result.max_depth is None
    expected = tiny_model.infer_image(np.ascontiguousarray(rgb[..., ::-1]))  # the reference API takes BGR
    np.testing.assert_array_equal(result.depth, expected)


def test_batching_groups_same_working_size_and_keeps_order(tiny_model, rgb_images, monkeypatch):
    predictor = DepthPredictor(tiny_model)
    singles = [predictor.predict(im).depth for im in rgb_images]
    calls = []
    forward = tiny_model.forward
    monkeypatch.setattr(tiny_model, "forward", lambda x: calls.append(x.shape[0]) or forward(x))
    batched = predictor.predict(rgb_images, batch_size=8)
    # 60x80 and 61x80 share the working size 518x686 -> one batch of 3; 50x50 -> its own
    assert calls == [3, 1]
    for a, b in zip(batched, singles, strict=True):
        assert a.depth.shape == b.shape
        np.testing.assert_allclose(a.depth, b, rtol=1e-4, atol=1e-5 * float(np.ptp(b)) + 1e-7)


def test_input_kinds_agree(tiny_model, rgb_images, tmp_path):
    predictor = DepthPredictor(tiny_model)
    rgb = rgb_images[0]
    Image.fromarray(rgb).save(tmp_path / "x.png")
    base = predictor.predict(rgb).depth
    from_bgr = predictor.predict(np.ascontiguousarray(rgb[..., ::-1]), channel_order="bgr")
    from_pil = predictor.predict(Image.fromarray(rgb))
    from_path = predictor.predict(tmp_path / "x.png")
    from_str = predictor.predict(str(tmp_path / "x.png"))
    for r in (from_bgr, from_pil, from_path, from_str):
        np.testing.assert_array_equal(r.depth, base)
    assert from_path.source == str(tmp_path / "x.png") and from_pil.source is None
    gray = predictor.predict(rgb[..., 0])
    assert gray.depth.shape == (60, 80)


def test_predict_iter_is_lazy_and_keyed(tiny_model, rgb_images):
    predictor = DepthPredictor(tiny_model)
    pulled = []

    def gen():
        for i, im in enumerate(rgb_images):
            pulled.append(i)
            yield f"k{i}", im

    it = predictor.predict_iter(gen(), batch_size=2)
    key, first = next(it)
    assert key == "k0" and first.depth.shape == (60, 80)
    assert pulled == [0, 1, 2]  # one batch (2 items) plus the look-ahead that closed it
    assert [k for k, _ in it] == ["k1", "k2", "k3"]


def test_metric_result(tiny_metric_model, rgb_images):
    result = DepthPredictor(tiny_metric_model).predict(rgb_images[3])
    assert result.kind == "metric" and result.unit == "m" and result.max_depth == 20.0
    assert (result.depth > 0).all() and (result.depth < 20).all()


def test_bad_inputs_are_rejected_with_clear_errors(tiny_model, tmp_path):
    predictor = DepthPredictor(tiny_model)
    with pytest.raises(ValueError, match="expected dtype uint8"):
        predictor.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected an image of shape \(H, W, 3\)"):
        predictor.predict(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError, match="channel_order"):
        predictor.predict(np.zeros((10, 10, 3), np.uint8), channel_order="xyz")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        predictor.predict(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="precision"):
        DepthPredictor(tiny_model, precision="fp8")
    with pytest.raises(ValueError, match="batch_size"):
        predictor.predict([np.zeros((10, 10, 3), np.uint8)], batch_size=0)


# Documented tolerances of low-precision inference against fp32, as a fraction of the output range
# (measured on random tiny weights; README "Precision").
TOLERANCE = {"fp16": 0.01, "bf16": 0.05}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_close_to_fp32(rgb_images, precision, make_model):
    rgb = rgb_images[3]
    ref = DepthPredictor(make_model("tiny")).predict(rgb).depth
    low = DepthPredictor(make_model("tiny"), precision=precision)
    assert low.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    out = low.predict(rgb).depth
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out - ref).max() <= TOLERANCE[precision] * np.ptp(ref)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_does_not_overflow_where_fp32_does_not(rgb_images, precision, make_model):
    # Residual-stream values beyond fp16's range (65504): a plain .half() network overflows to inf/NaN here;
    # ours keeps the residual stream and LayerNorms in fp32.
    def big(model):
        with torch.no_grad():
            for block in model.pretrained.blocks:  # fc2 outputs stay inside fp16, gamma * fc2 does not
                block.mlp.fc2.weight.mul_(1000.0)
                block.ls2.gamma.fill_(2e3)
        return model

    rgb = rgb_images[3]
    fp32 = DepthPredictor(big(make_model("tiny")))
    with torch.inference_mode():
        tokens = fp32.model.pretrained.prepare_tokens(torch.randn(1, 3, 28, 28))
        for block in fp32.model.pretrained.blocks:
            tokens = block(tokens)
    assert tokens.abs().max() > 65504  # the stream really leaves fp16's range
    ref = fp32.predict(rgb).depth
    assert np.isfinite(ref).all()
    out = DepthPredictor(big(make_model("tiny")), precision=precision).predict(rgb).depth
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() <= TOLERANCE[precision] * np.ptp(ref)


def test_from_pretrained_file(tmp_path, make_model):
    model = make_model("tiny", max_depth=80.0)
    torch.save(model.state_dict(), tmp_path / "depth_anything_v2_metric_vkitti_vits_like.pth")
    predictor = DepthPredictor.from_pretrained(tmp_path / "depth_anything_v2_metric_vkitti_vits_like.pth", device="cpu")
    assert predictor.is_metric and predictor.model.max_depth == 80.0 and predictor.device.type == "cpu"


def test_the_result_says_which_space_it_is_in(tiny_model, tiny_metric_model):
    image = np.random.default_rng(0).integers(0, 256, (42, 56, 3), dtype=np.uint8)
    relative = DepthPredictor(tiny_model, input_size=56).predict(image)
    assert relative.disparity is relative.prediction is relative.depth  # `depth`: the earlier name, kept
    with pytest.raises(ValueError, match=r"relative disparity .* read result\.disparity"):
        _ = relative.depth_m
    metric = DepthPredictor(tiny_metric_model, input_size=56).predict(image)
    assert metric.depth_m is metric.prediction and metric.unit == "m"
    with pytest.raises(ValueError, match=r"metric prediction .* read result\.depth_m"):
        _ = metric.disparity
    metric.depth = metric.prediction * 2  # the old attribute stays writable
    np.testing.assert_array_equal(metric.depth_m, metric.depth)


def test_auto_precision_and_the_cpu_half_precision_warning(make_model, caplog, monkeypatch):
    from depth_anything_v2 import devices

    monkeypatch.setattr(devices, "_warned_cpu_precisions", set())
    auto = DepthPredictor(make_model("tiny"), device="cpu", precision="auto")
    assert (auto.precision, auto.dtype) == ("fp32", torch.float32)
    assert devices.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert not caplog.records
    for _ in range(2):
        DepthPredictor(make_model("tiny"), device="cpu", precision="fp16")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "precision fp16 on the CPU is usually several times slower" in warnings[0]
    with pytest.raises(ValueError, match=r"expected precision 'auto' or one of \['bf16', 'fp16', 'fp32'\], got 'fp8'"):
        DepthPredictor(make_model("tiny"), precision="fp8")
