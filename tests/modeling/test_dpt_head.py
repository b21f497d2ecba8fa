"""The DPT head's banded final stage equals the plain resize + convolutions it replaces."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depth_anything_v2.modeling.dpt_head import upsample_and_predict


def _output_conv2(metric: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(True), nn.Conv2d(32, 1, 1), nn.Sigmoid() if metric else nn.ReLU(True)
    ).eval()


@pytest.mark.parametrize(
    ("batch", "in_size", "out_size", "band_bytes", "metric"),
    [
        (1, (20, 20), (70, 70), 1, False),  # the smallest bands (8 rows), 70 rows: a short last band
        (2, (16, 22), (56, 84), 4096, True),  # batch of two, non-square
        (1, (12, 12), (42, 42), 4 << 20, False),  # one band holds everything
        (1, (1, 9), (14, 28), 1, False),  # a single source row
    ],
)
def test_banded_equals_plain(batch, in_size, out_size, band_bytes, metric):
    layers = _output_conv2(metric)
    x = torch.randn(batch, 16, *in_size).contiguous(memory_format=torch.channels_last)
    expected = layers(F.interpolate(x, out_size, mode="bilinear", align_corners=True)).detach()
    calls = []
    layers.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        got = upsample_and_predict(x, out_size, layers, band_bytes=band_bytes)
    step = max(8, band_bytes // (batch * out_size[1] * 16 * 4))
    assert len(calls) == math.ceil(out_size[0] / step)  # the banded path ran, in the bands it should
    assert got.shape == expected.shape == (batch, 1, *out_size)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6 * float(expected.abs().max()))


def test_autograd_takes_the_plain_path():
    layers = _output_conv2(False)
    x = torch.randn(1, 16, 10, 10, requires_grad=True)
    calls = []
    layers.register_forward_hook(lambda *_: calls.append(1))
    out = upsample_and_predict(x, (40, 40), layers, band_bytes=1)
    out.sum().backward()
    assert len(calls) == 1 and x.grad is not None and x.grad.abs().sum() > 0
