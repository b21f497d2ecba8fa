"""The DINOv2 ViT encoder of Depth Anything V2.

Attribute names follow the official checkpoint keys under ``pretrained.`` (``cls_token``, ``pos_embed``,
``mask_token``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.*,ls2.gamma}``,
``norm``), so official files load strictly with no remapping.

Differences from the reference code that keep its numbers: attention runs through
``scaled_dot_product_attention`` (no N x N matrix materialised, no xformers), and when the parameters are in
fp16/bf16 the residual stream and the LayerNorms stay in fp32, so low-precision inference cannot overflow
where fp32 does not. For fp32 parameters every cast below is a no-op.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import EncoderConfig

_ONEDNN_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


def linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False) -> torch.Tensor:
    """``layer(x)``, optionally followed by exact (erf) GELU.

    Inference on CPU in fp32 goes through oneDNN's matmul with the bias and GELU fused (the kernel PyTorch's
    own compiler emits); it is ~20% faster here than MKL's addmm + a separate GELU and equal to it within
    fp32 rounding (``tests/modeling/test_dinov2.py``). Anything that needs autograd, another device or dtype, or
    runs under ``torch.compile``, takes the plain path.
    """
    if (
        _ONEDNN_LINEAR is not None
        and not torch.compiler.is_compiling()  # the compiler makes its own fused kernels
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))
    ):
        return _ONEDNN_LINEAR(x, layer.weight, layer.bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    y = F.linear(x, layer.weight, layer.bias)
    return F.gelu(y) if gelu else y


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 3, H, W) -> (B, H/14 * W/14, D). A stride-14 14x14 convolution is a matmul over the flattened
        # non-overlapping patches, which is several times faster than the convolution kernel on CPU.
        b, c, h, w = x.shape
        p = self.proj.kernel_size[0]
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = linear(x, self.qkv).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return linear(x.transpose(1, 2).reshape(b, n, c), self.proj)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(linear(x, self.fc1, gelu=True), self.fc2)


class SwiGLUFFNFused(nn.Module):
    """The vitg feed-forward: one fused ``w12`` projection, SiLU gate, ``w3`` back."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8  # 6144 -> 4096 for vitg, as in dinov2
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _layer_norm_fp32(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm computed in fp32 whatever the parameter dtype (``x`` is the fp32 residual stream)."""
    if norm.weight.dtype == torch.float32:
        return norm(x)
    return F.layer_norm(x, norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps)


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale; no drop-path (every released model uses 0)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        dim, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, cfg.num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLUFFNFused(dim, hidden) if cfg.ffn == "swiglufused" else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.norm1.weight.dtype
        # x + gamma * f(x), in one pass (addcmul), accumulated in fp32
        x = torch.addcmul(x, self.ls1.gamma.float(), self.attn(_layer_norm_fp32(self.norm1, x).to(dtype)).float())
        return torch.addcmul(x, self.ls2.gamma.float(), self.mlp(_layer_norm_fp32(self.norm2, x).to(dtype)).float())


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int, offset: float = 0.1) -> torch.Tensor:
    """Resize a ``(1, 1 + N, D)`` position embedding (class token first) to a ``grid_h x grid_w`` token grid.

    Matches the reference DINOv2 exactly: unchanged for a square grid of the trained size; otherwise bicubic
    (align_corners False, no antialias) in fp32 with ``scale_factor=((grid + 0.1) / sqrt(N))`` per axis. The
    scale-factor form with the +0.1 offset is what the released models run; it is *not* equal to resizing to
    ``size=(grid_h, grid_w)`` (transformers does the latter), since PyTorch maps output to input coordinates
    through the given scale factor.

    Under ``torch.export`` (the ONNX / OpenVINO export) the grid sizes are symbolic, so neither the trained-grid
    shortcut nor ``scale_factor`` can be Python arithmetic: the same resize runs as two matmuls with
    :func:`bicubic_matrix` (equal within fp32 rounding), the shortcut as a tensor condition. Eager PyTorch keeps
    ``F.interpolate``.
    """
    n = pos_embed.shape[1] - 1
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"expected a square position-embedding grid, got {n} patch positions")
    dim = pos_embed.shape[-1]
    pos = pos_embed.float()
    if torch.compiler.is_exporting():  # the grid is symbolic: no Python branch on it, no scale_factor
        patch = pos[:, 1:].reshape(side, side, dim)
        identity = (_as_tensor(grid_h) == side) & (_as_tensor(grid_w) == side)
        rows, cols = (bicubic_matrix(g, side, offset, identity) for g in (grid_h, grid_w))
        patch = torch.einsum("hi,ijd,wj->hwd", rows, patch, cols).reshape(1, -1, dim)
        return torch.cat((pos[:, :1], patch), dim=1).to(pos_embed.dtype)
    if grid_h == grid_w == side:
        return pos_embed
    patch = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(
        patch,
        scale_factor=((grid_h + offset) / side, (grid_w + offset) / side),
        mode="bicubic",
        align_corners=False,
        antialias=False,
    )
    if patch.shape[-2:] != (grid_h, grid_w):  # the reference asserts the same
        raise RuntimeError(f"position-embedding resize gave {tuple(patch.shape[-2:])}, expected {(grid_h, grid_w)}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
    return torch.cat((pos[:, :1], patch), dim=1).to(pos_embed.dtype)


def _as_tensor(n) -> torch.Tensor:
    """A (possibly symbolic) int as a 0-d tensor, so that comparisons on it stay in the exported graph."""
    return torch.full((), n, dtype=torch.int64)


def bicubic_matrix(out_size, in_size: int, offset: float = 0.1, identity: torch.Tensor | None = None) -> torch.Tensor:
    """The ``(out_size, in_size)`` matrix of PyTorch's bicubic resize along one axis with
    ``scale_factor=(out_size + offset) / in_size``, ``align_corners=False`` (what :func:`interpolate_pos_embed`
    runs), built from tensor arithmetic on ``out_size`` so that it works for a symbolic size in an export.

    It reproduces the CPU kernel step by step: inverse scale ``float32(1 / scale)`` from a double, source
    coordinate ``inv * (i + 0.5) - 0.5`` in fp32, floor index capped at ``in_size - 1``, fraction clamped to
    [0, 1], Keys' cubic with A = -0.75, taps clamped at the borders. Where ``identity`` is true the inverse scale
    is 1, which makes the matrix the identity exactly (the reference skips the resize on its trained grid).
    Unlike ONNX ``Resize``, two matmuls mean the same thing in every runtime (OpenVINO's ``Resize`` treats a
    37 -> 37 axis as untouched, REFERENCE section 8).
    """
    scale = (_as_tensor(out_size).double() + offset) / in_size
    inv = (1.0 / scale).float()
    if identity is not None:
        inv = torch.where(identity, torch.ones_like(inv), inv)
    # one rounding, as the kernel's fused multiply-add
    src = (inv.double() * (torch.arange(out_size, dtype=torch.float64) + 0.5) - 0.5).float()
    index = torch.floor(src).clamp(max=in_size - 1)
    t = (src - index).clamp(0.0, 1.0)[:, None]
    a = -0.75
    # Keys' cubic convolution weights for the taps at index - 1, index, index + 1, index + 2 (as upsample_bicubic2d)
    x1, x2 = t + 1.0, 1.0 - t
    weights = (
        ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * x2 - (a + 3)) * x2 * x2 + 1,
        ((a * (x2 + 1.0) - 5 * a) * (x2 + 1.0) + 8 * a) * (x2 + 1.0) - 4 * a,
    )
    columns = torch.arange(in_size, dtype=torch.float32)
    matrix = torch.zeros_like(src[:, None] * columns)
    for k, w in enumerate(weights):
        tap = (index + (k - 1)).clamp(0, in_size - 1)[:, None]
        matrix = matrix + w * (tap == columns)
    return matrix


class DinoVisionTransformer(nn.Module):
    """DINOv2 encoder: patch 14, one class token, no register tokens, LayerNorm eps 1e-6."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed_dim = cfg.embed_dim
        self.patch_size = cfg.patch_size
        grid = cfg.img_size // cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, cfg.embed_dim))
        # Stored in every checkpoint (used only by DINOv2's masked pre-training), kept for strict loading.
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)

    def init_weights(self) -> None:
        """DINOv2's initialisation (truncated normal, std 0.02; LayerScale 1.0 as ``init_values``)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> fp32 tokens ``(B, 1 + H/14 * W/14, D)`` with class token and positions."""
        b, _, h, w = x.shape
        tokens = self.patch_embed(x).float()
        pos = interpolate_pos_embed(self.pos_embed, h // self.patch_size, w // self.patch_size).float()
        return torch.cat((self.cls_token.float().expand(b, -1, -1), tokens), dim=1) + pos

    def get_intermediate_layers(self, x: torch.Tensor, layer_idx: tuple[int, ...]) -> list[torch.Tensor]:
        """Outputs of the blocks in ``layer_idx``, each through the final norm, class token dropped.

        Returns ``len(layer_idx)`` tensors of shape ``(B, H/14 * W/14, D)`` in the parameter dtype.
        """
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f"expected height and width divisible by {self.patch_size}, got {tuple(x.shape[-2:])}")
        wanted = set(layer_idx)
        last = max(wanted)
        dtype = self.norm.weight.dtype
        x = self.prepare_tokens(x)
        outputs = []
        for i, block in enumerate(self.blocks[: last + 1]):
            x = block(x)
            if i in wanted:
                outputs.append(_layer_norm_fp32(self.norm, x[:, 1:]).to(dtype))
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final-norm class token ``(B, D)``, as DINOv2's default head-less forward."""
        x = self.prepare_tokens(x)
        for block in self.blocks:
            x = block(x)
        return _layer_norm_fp32(self.norm, x[:, 0]).to(self.norm.weight.dtype)
