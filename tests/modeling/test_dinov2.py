import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depth_anything_v2.configs import VARIANTS
from depth_anything_v2.modeling.dinov2 import PatchEmbed, bicubic_matrix, interpolate_pos_embed, linear


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel with PyTorch's a = -0.75."""
    t = np.abs(t)
    return np.where(
        t <= 1,
        (a + 2) * t**3 - (a + 3) * t**2 + 1,
        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
    )


def _bicubic_axis(n_in: int, n_out: int, coord_scale: float) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D bicubic resampling with src = (dst + 0.5) * coord_scale - 0.5, edges clamped."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) * coord_scale - 0.5
        base = int(np.floor(src))
        for k in range(base - 1, base + 3):
            m[i, min(max(k, 0), n_in - 1)] += _cubic(np.array(src - k))
    return m


def reference_pos_embed(pos: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Independent numpy model of the reference resize: scale_factor = (g + 0.1) / 37 per axis, so PyTorch maps
    output to input coordinates through 37 / (g + 0.1) (REFERENCE section 1)."""
    n = math.isqrt(pos.shape[1] - 1)
    grid = pos[0, 1:].reshape(n, n, -1)
    mh = _bicubic_axis(n, gh, n / (gh + 0.1))
    mw = _bicubic_axis(n, gw, n / (gw + 0.1))
    out = np.einsum("ai,bj,ijd->abd", mh, mw, grid).reshape(gh * gw, -1)
    return np.concatenate([pos[0, :1], out])[None]


@pytest.mark.parametrize("grid", [(37, 49), (37, 66), (29, 29), (74, 52)])
def test_pos_embed_resize_matches_independent_model(grid):
    torch.manual_seed(0)
    pos = torch.randn(1, 37 * 37 + 1, 8)
    ours = interpolate_pos_embed(pos, *grid).numpy()
    expected = reference_pos_embed(pos.double().numpy(), *grid)
    assert ours.shape == (1, grid[0] * grid[1] + 1, 8)
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_pos_embed_square_trained_grid_is_unchanged():
    pos = torch.randn(1, 37 * 37 + 1, 8)
    assert interpolate_pos_embed(pos, 37, 37) is pos


def test_pos_embed_scale_factor_form_differs_from_size_form():
    # transformers resizes to size=(gh, gw); the reference's offset scale factor gives other numbers, even
    # along the axis that stays 37 long. Parity needs the scale-factor form.
    torch.manual_seed(0)
    pos = torch.randn(1, 37 * 37 + 1, 16)
    ours = interpolate_pos_embed(pos, 37, 49)[0, 1:].reshape(37, 49, 16)
    size_form = F.interpolate(
        pos[:, 1:].reshape(1, 37, 37, 16).permute(0, 3, 1, 2), size=(37, 49), mode="bicubic", align_corners=False
    )[0].permute(1, 2, 0)
    assert (ours - size_form).abs().max() > 0.05


def test_bicubic_matrices_equal_the_scale_factor_resize():
    # The export path (two matmuls built from the symbolic grid) against F.interpolate, down- and upsampling.
    torch.manual_seed(0)
    pos = torch.randn(1, 4, 37, 37)
    for gh in (*range(1, 120, 9), 36, 37, 38, 64, 79):
        for gw in (1, 37, 49):
            ref = F.interpolate(
                pos, scale_factor=((gh + 0.1) / 37, (gw + 0.1) / 37), mode="bicubic", align_corners=False
            )
            out = bicubic_matrix(gh, 37) @ pos @ bicubic_matrix(gw, 37).T
            assert (out - ref).abs().max() < 1e-5, (gh, gw)
    # on the trained grid the reference skips the resize: the identity flag makes the matrix exactly the identity
    assert torch.equal(bicubic_matrix(37, 37, identity=torch.tensor(True)), torch.eye(37))


def test_pos_embed_rejects_non_square_table():
    with pytest.raises(ValueError, match="square"):
        interpolate_pos_embed(torch.zeros(1, 1 + 37 * 36, 4), 10, 10)


def test_patch_embed_equals_convolution():
    torch.manual_seed(0)
    pe = PatchEmbed(14, 32)
    x = torch.randn(2, 3, 70, 98)
    expected = pe.proj(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(pe(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gelu", [False, True])
def test_fast_linear_equals_plain_linear(gelu):
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 96)
    x = torch.randn(2, 50, 64)
    expected = F.gelu(layer(x)) if gelu else layer(x)
    with torch.inference_mode():
        fast = linear(x, layer, gelu=gelu)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)
    # with autograd on, the plain (differentiable) path is taken
    out = linear(x, layer, gelu=gelu)
    out.sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_vitg_ffn_is_fused_swiglu_of_4096():
    from depth_anything_v2.modeling.dinov2 import Block

    with torch.device("meta"):
        block = Block(VARIANTS["vitg"].encoder)
    assert tuple(block.mlp.w12.weight.shape) == (2 * 4096, 1536)
    assert tuple(block.mlp.w3.weight.shape) == (1536, 4096)


@pytest.mark.slow
def test_torch_compile_runs_and_matches_eager(make_model):
    # The oneDNN fast path is an opaque op to the compiler; under torch.compile the plain path must be taken. The
    # whole model must be captured as one graph (fullgraph: no break) and traced by AOTAutograd; inductor's C++
    # code generation (PyTorch's own, 35 s on 2 cores) is left out to keep the suite fast.
    model = make_model("tiny")
    x = torch.randn(1, 3, 42, 56, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        eager = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)
