import cv2
import numpy as np
import pytest
import torch

from depth_anything_v2.inference.transforms import _snap, preprocess, resize_prediction, working_size


@pytest.mark.parametrize(
    ("w", "h", "expected_w", "expected_h"),
    # REFERENCE section 3's examples (W x H)
    [(1920, 1080, 924, 518), (640, 480, 686, 518), (1242, 375, 1722, 518), (300, 200, 784, 518)],
)
def test_working_size_reference_examples(w, h, expected_w, expected_h):
    assert working_size(h, w) == (expected_h, expected_w)


def test_working_size_rounds_half_to_even():
    # 567 / 14 = 40.5 -> 40 (even), 581 / 14 = 41.5 -> 42 (even); Python's round-half-up would give 574 / 588
    assert working_size(518, 567) == (518, 560)
    assert working_size(518, 581) == (518, 588)
    assert working_size(567, 518) == (560, 518)


def test_snap_falls_back_to_ceil_below_the_minimum():
    assert _snap(510.0, 518, 14) == 518  # round gives 504 < 518 -> ceil
    assert _snap(530.0, 518, 14) == 532


def test_working_size_other_input_size_and_errors():
    assert working_size(480, 640, input_size=364) == (364, 490)  # 485.3 / 14 = 34.7 -> 35
    with pytest.raises(ValueError, match="multiple of 14"):
        working_size(480, 640, input_size=500)
    with pytest.raises(ValueError, match="positive image size"):
        working_size(0, 640)


def _reference_image2tensor(raw_bgr: np.ndarray, input_size: int = 518) -> np.ndarray:
    """The reference's image2tensor written out step by step (cvtColor, /255 in float64, Resize with
    lower_bound + multiple of 14, INTER_CUBIC, NormalizeImage, PrepareForNet)."""
    image = cv2.cvtColor(raw_bgr, cv2.COLOR_BGR2RGB) / 255.0
    h, w = image.shape[:2]
    scale_h, scale_w = input_size / h, input_size / w
    if scale_w > scale_h:
        scale_h = scale_w
    else:
        scale_w = scale_h

    def constrain(x):
        y = (np.round(x / 14) * 14).astype(int)
        if y < input_size:
            y = (np.ceil(x / 14) * 14).astype(int)
        return y

    new_h, new_w = constrain(scale_h * h), constrain(scale_w * w)
    image = cv2.resize(image, (int(new_w), int(new_h)), interpolation=cv2.INTER_CUBIC)
    image = (image - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return np.ascontiguousarray(np.transpose(image, (2, 0, 1))).astype(np.float32)[None]


@pytest.mark.parametrize("shape", [(48, 64), (375, 1242), (200, 133)])
def test_preprocess_equals_reference_pipeline(shape):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours = preprocess(bgr, 518, channel_order="bgr").numpy()
    expected = _reference_image2tensor(bgr)
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)
    # the same image given as RGB gives the same tensor
    np.testing.assert_array_equal(preprocess(bgr[..., ::-1].copy(), 518).numpy(), expected)


def test_preprocess_rejects_bad_images():
    with pytest.raises(ValueError, match=r"expected dtype uint8"):
        preprocess(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected an image of shape \(H, W, 3\), got \(10, 10\)"):
        preprocess(np.zeros((10, 10), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        preprocess([[1, 2, 3]])
    with pytest.raises(ValueError, match="channel_order"):
        preprocess(np.zeros((10, 10, 3), np.uint8), channel_order="rbg")


def test_resize_prediction_is_bilinear_align_corners():
    depth = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    out = resize_prediction(depth, (3, 5))
    # align_corners=True keeps the corner values and interpolates linearly between them
    torch.testing.assert_close(out[0, 0], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert resize_prediction(depth, (2, 2)) is depth
