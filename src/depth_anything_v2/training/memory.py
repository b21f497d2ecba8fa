"""Per-GPU memory estimate of a training configuration, from a model built on the ``meta`` device (no memory).

    depth-anything train --config configs/train/teacher_vitg.yaml --estimate-memory 8

The estimate (bytes per GPU; ``P`` parameters, ``Pt`` trainable, ``W`` world size, ``e`` bytes of an activation
under the configured autocast: 2 for bf16 / fp16, 4 for fp32; ``p`` bytes of FSDP's gathered parameters: 2 when
``train.fsdp_param_dtype`` is bf16, else 4):

* **parameters**: DDP ``4 P``; FSDP ``4 P / W`` (fp32 shards) + the gathered units in flight: the root (patch
  embedding, tokens, norm, head) and two encoder blocks (one computing, one prefetched), ``p`` bytes each.
* **gradients**: DDP ``8 Pt`` (the gradients and DDP's reduction buckets); FSDP ``4 Pt / W`` + one block's
  unsharded gradient.
* **optimiser**: Adam(W) keeps two fp32 moments: ``8 Pt`` (DDP) or ``8 Pt / W`` (FSDP).
* **activations** of one micro-batch of ``b`` crops with ``s = h w / 14**2 + 1`` tokens of width ``d`` and FFN
  width ``f``, per encoder block (what autograd saves, with fused (flash) attention, so no ``s**2`` term; after
  Korthikanti et al. 2022): ``s b d (8 + 9 e) + k e s b f`` (two fp32 LayerNorm inputs; qkv input and outputs,
  attention output, projection input, the two LayerScale and the FFN input in ``e``; ``k = 2`` for the GELU MLP,
  4 for SwiGLU). With ``train.activation_checkpointing`` each block keeps only its fp32 input ``4 s b d``, plus
  one block's full activations while it is recomputed. The DPT head's saved tensors are measured on the meta
  device (fp32 sizes scaled by ``e / 4``). A frozen encoder (students' feature alignment) adds ``4 P_enc``.

It leaves out the CUDA context and allocator fragmentation (budget ~1-3 GB more) and the data loader's pinned
memory; treat it as a planning number, to be checked against ``torch.cuda.max_memory_allocated`` of a short run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..configs import PATCH_SIZE, get_variant
from .config import TrainConfig, fsdp_param_dtype

__all__ = ["MemoryEstimate", "estimate_memory"]

GIB = 1024**3


@dataclass
class MemoryEstimate:
    """Bytes per GPU, by kind (see the module docstring for the formulas)."""

    parameters: float
    gradients: float
    optimizer: float
    activations: float
    frozen: float
    num_parameters: int
    world_size: int
    micro_batch: int

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer + self.activations + self.frozen

    def lines(self) -> list[str]:
        rows = [
            ("parameters", self.parameters),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer),
            ("activations", self.activations),
            ("frozen encoder", self.frozen),
            ("total", self.total),
        ]
        head = (
            f"per-GPU memory estimate ({self.num_parameters / 1e6:.1f}M parameters, {self.world_size} GPU(s), "
            f"micro-batch {self.micro_batch}):"
        )
        return [head] + [f"  {name:<16} {value / GIB:8.2f} GiB" for name, value in rows]


def _head_saved_bytes(model, micro_batch: int, crop_hw: tuple[int, int]) -> float:
    """Bytes autograd saves in the DPT head for one micro-batch (fp32), measured on the meta device."""
    h, w = crop_hw[0] // PATCH_SIZE, crop_hw[1] // PATCH_SIZE
    dim = model.pretrained.embed_dim
    features = [torch.empty(micro_batch, h * w, dim, device="meta", requires_grad=True) for _ in range(4)]
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.depth_head(features, h, w)
    return float(saved)


def estimate_memory(config: TrainConfig, world_size: int = 1) -> MemoryEstimate:
    """The per-GPU estimate for ``config`` on ``world_size`` GPUs (see the module docstring)."""
    from .trainer import UNUSED_PARAMETERS

    t = config.train
    if t.batch_size % (world_size * t.grad_accum_steps):
        raise ValueError(
            f"train.batch_size {t.batch_size} is not divisible by world size {world_size} x grad_accum_steps "
            f"{t.grad_accum_steps}"
        )
    micro = t.batch_size // (world_size * t.grad_accum_steps)
    v = get_variant(config.model.encoder)
    with torch.device("meta"):
        from ..dpt import DepthAnythingV2

        model = DepthAnythingV2(v.name, v.features, list(v.out_channels), max_depth=config.model.max_depth)
    params = dict(model.named_parameters())
    num = sum(p.numel() for p in params.values())
    trainable = sum(p.numel() for n, p in params.items() if not n.startswith(UNUSED_PARAMETERS))
    block = sum(p.numel() for p in model.pretrained.blocks[0].parameters())
    root = num - block * len(model.pretrained.blocks)
    encoder = sum(p.numel() for p in model.pretrained.parameters())
    e = 4 if t.precision == "fp32" else 2
    fsdp = t.strategy == "fsdp" and world_size > 1
    if fsdp:
        p_bytes = 2 if fsdp_param_dtype(config) == torch.bfloat16 else 4
        parameters = 4 * num / world_size + p_bytes * (root + 2 * block)
        gradients = 4 * trainable / world_size + 4 * block
        optimizer = 8 * trainable / world_size
    else:
        parameters, gradients, optimizer = 4 * num, 8 * trainable, 8 * trainable
    crop_h, crop_w = config.crop_hw
    s = (crop_h // PATCH_SIZE) * (crop_w // PATCH_SIZE) + 1
    d = v.encoder.embed_dim
    f = (
        model.pretrained.blocks[0].mlp.w3.in_features
        if v.encoder.ffn == "swiglufused"
        else int(d * v.encoder.mlp_ratio)
    )
    k = 4 if v.encoder.ffn == "swiglufused" else 2
    per_block = s * micro * d * (8 + 9 * e) + k * e * s * micro * f
    depth = len(model.pretrained.blocks)
    blocks = depth * 4 * s * micro * d + per_block if t.activation_checkpointing else depth * per_block
    activations = blocks + _head_saved_bytes(model, micro, (crop_h, crop_w)) * e / 4
    frozen = 4 * encoder if config.stage == "student" and config.loss.feature_weight > 0 else 0.0
    return MemoryEstimate(
        float(parameters), float(gradients), float(optimizer), float(activations), float(frozen), num, world_size, micro
    )
