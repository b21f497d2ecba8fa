"""The DPT decoder of Depth Anything V2.

Attribute names follow the official checkpoint keys under ``depth_head.`` (``projects``, ``resize_layers``,
``scratch.layer{1-4}_rn``, ``scratch.refinenet{1-4}.{out_conv,resConfUnit1,resConfUnit2}``,
``scratch.output_conv1``, ``scratch.output_conv2``) so official files load strictly with no remapping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import PATCH_SIZE


def upsample_and_predict(
    x: torch.Tensor, size: tuple[int, int], layers: nn.Module, band_bytes: int = 4 << 20
) -> torch.Tensor:
    """``layers(F.interpolate(x, size, mode="bilinear", align_corners=True))``, for ``layers`` whose output row
    depends on input rows one above and below at most (``output_conv1``, a 3x3 convolution; ``output_conv2``, a
    3x3 then 1x1 convolutions).

    Inference on CPU runs it in bands of output rows of about ``band_bytes``. At full size the upsampled map and
    the 3x3 convolution's output are 32-64 channels at 2x or full resolution (34 MB each at 518x518): blocks that
    large are mapped fresh from the OS on every call, and their page faults cost more than the resize itself.
    Banded, they stay in the heap and in cache: the last stage ran 30% faster here (60 -> 43 ms), and the peak
    memory of a vits forward at 518x518 fell from 155 to 85-112 MB (``benchmarks/bench_forward.py``). Each
    band resizes the source rows it needs horizontally, then vertically with the same source rows and weights as
    PyTorch's align_corners resize: equal within fp32 rounding (``tests/modeling/test_dpt_head.py``). Autograd,
    other devices and ``torch.compile`` take the plain path.
    """
    if x.device.type != "cpu" or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return layers(F.interpolate(x, size, mode="bilinear", align_corners=True))
    b, c, h = x.shape[:3]
    out_h, out_w = size
    src = torch.arange(out_h, dtype=torch.float32) * ((h - 1) / (out_h - 1) if out_h > 1 else 0.0)
    i0 = src.long()
    i1 = (i0 + 1).clamp(max=h - 1)
    weight = (src - i0).to(x.dtype)[:, None, None]
    step = max(8, band_bytes // (b * out_w * c * x.element_size()))
    out = None
    for r0 in range(0, out_h, step):
        r1 = min(r0 + step, out_h)
        lo, hi = max(r0 - 1, 0), min(r1 + 1, out_h)  # one halo row each side for the 3x3 convolution
        s0, s1 = int(i0[lo]), int(i1[hi - 1]) + 1  # the source rows this band reads
        # Horizontal pass on those rows only (their count is kept, so the vertical scale is 1: exact copies).
        xw = F.interpolate(x[:, :, s0:s1], (s1 - s0, out_w), mode="bilinear", align_corners=True)
        xw = xw.permute(0, 2, 3, 1)  # (B, rows, W, C): a view of the channels-last result
        band = torch.lerp(xw[:, i0[lo:hi] - s0], xw[:, i1[lo:hi] - s0], weight[lo:hi]).permute(0, 3, 1, 2)
        y = layers(band)[:, :, r0 - lo : r1 - lo]
        if out is None:  # channels-last, as the whole head
            out = torch.empty(
                (b, y.shape[1], out_h, out_w), dtype=y.dtype, device=y.device, memory_format=torch.channels_last
            )
        out[:, :, r0:r1] = y
    return out


class ResidualConvUnit(nn.Module):
    """relu -> conv3x3 -> relu -> conv3x3 -> + input (the first relu must not be in place: the input is reused)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        return self.conv2(F.relu(out, inplace=True)) + x


class FeatureFusionBlock(nn.Module):
    """out = x0 (+ resConfUnit1(x1)); resConfUnit2; bilinear resize (align_corners=True); 1x1 out_conv."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        # refinenet4 stores resConfUnit1 but never calls it; it stays for strict loading.
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        # align_corners=True as the reference (and transformers); size None means x2.
        x = self.fuse(x, skip)
        size = (2 * x.shape[2], 2 * x.shape[3]) if size is None else size
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    def fuse(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Everything but the final resize."""
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        # The reference resizes, then applies the 1x1 out_conv. Both are linear and bilinear weights sum to one,
        # so the 1x1 convolution commutes with the resize (bias included); running it at the lower resolution is
        # the same function with 4x fewer operations (equal within fp32 rounding).
        return self.out_conv(x)


class Scratch(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], features: int, metric: bool) -> None:
        super().__init__()
        for i, c in enumerate(in_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self, f"refinenet{i}", FeatureFusionBlock(features))
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(32, 1, 1),
            nn.Sigmoid() if metric else nn.ReLU(True),
            nn.Identity(),
        )


class DPTHead(nn.Module):
    """Reassembles four ``(B, N, D)`` token maps into a ``(B, 1, 14*h, 14*w)`` prediction."""

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...], metric: bool = False) -> None:
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in out_channels)
        c0, c1, _, c3 = out_channels
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4),
                nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(tuple(out_channels), features, metric)

    def forward(self, features: list[torch.Tensor], patch_h: int, patch_w: int) -> torch.Tensor:
        s = self.scratch
        layers = []
        for i, tokens in enumerate(features):
            # (B, h*w, D) -> (B, D, h, w); a 1x1 conv on tokens is a linear layer, applied before the reshape.
            proj = self.projects[i]
            # The (B, h, w, C) -> (B, C, h, w) permute is a channels-last view: no copy, and oneDNN's
            # channels-last convolutions (which every later layer then inherits) are the fastest on CPU.
            x = F.linear(tokens, proj.weight.flatten(1), proj.bias)
            x = x.reshape(x.shape[0], patch_h, patch_w, -1).permute(0, 3, 1, 2)
            layers.append(self.resize_layers[i](x))
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(x) for i, x in enumerate(layers, start=1))
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        # refinenet1's x2 resize goes with output_conv1, and the resize to the input size with output_conv2, each
        # in bands of rows on CPU (see upsample_and_predict).
        path = s.refinenet1.fuse(path, l1)
        path = upsample_and_predict(path, (2 * path.shape[2], 2 * path.shape[3]), s.output_conv1)
        return upsample_and_predict(path, (patch_h * PATCH_SIZE, patch_w * PATCH_SIZE), s.output_conv2)
