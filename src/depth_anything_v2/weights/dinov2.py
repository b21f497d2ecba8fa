"""Initialising a Depth Anything V2 model from DINOv2 (or Depth Anything) weights, with ``load_model``'s checks.

The teacher and the students start from DINOv2 (REFERENCE section 4). Accepted sources, all read by
:func:`~depth_anything_v2.weights.checkpoints.read_checkpoint` (``weights_only=True`` / safetensors):

* the published torch-hub files ``dinov2_vit{s,b,l,g}14_pretrain.pth``: bare encoder keys (``cls_token``,
  ``blocks.N.attn.qkv.weight``, ...; the same names as this model's ``pretrained`` module, which follows them);
* a transformers ``Dinov2Model`` (``save_pretrained`` directory, or its ``model.safetensors``): keys
  ``embeddings.*``, ``encoder.layer.N.*``, ``layernorm.*``, converted by
  :func:`~depth_anything_v2.weights.checkpoints.hf_to_reference` (the one key-conversion function);
* any Depth Anything checkpoint ``load_model`` reads (its ``pretrained.*`` part; the head on request).

Checks are loud, as in ``load_model``: the encoder is inferred from the tensor shapes and must be the model's
(``dinov2_vitb14_pretrain.pth`` for a ``vits`` model is refused by name, as is a file whose name says another
variant than its tensors), DINOv2 variants with register tokens (``*_reg4_*``) are refused, and missing /
unexpected keys and wrong shapes are listed by name.

    from depth_anything_v2.weights.dinov2 import load_encoder_init

    load_encoder_init(model, "weights/dinov2_vitl14_pretrain.pth")
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from .checkpoints import (
    CheckpointError,
    StateDict,
    expected_shapes,
    hf_to_reference,
    infer_encoder,
    is_hf_state_dict,
    read_checkpoint,
)

log = logging.getLogger(__name__)

__all__ = ["HUB_FILE_PATTERN", "encoder_init_state_dict", "load_encoder_init"]

#: Names of the published DINOv2 checkpoints (torch hub), e.g. ``dinov2_vitg14_pretrain.pth``.
HUB_FILE_PATTERN = re.compile(r"dinov2_vit([sblg])14(_reg\d+)?_pretrain")


def encoder_init_state_dict(source: str | Path) -> StateDict:
    """Any supported weights file -> reference key names (encoder under ``pretrained.``), not yet checked."""
    state, hf_config, _ = read_checkpoint(source)
    if any(k.startswith("embeddings.") for k in state):  # transformers Dinov2Model
        if any(k.startswith("embeddings.register_tokens") for k in state):
            raise CheckpointError(f"{source}: DINOv2 with register tokens is not the Depth Anything V2 encoder")
        return hf_to_reference({f"backbone.{k}": v for k, v in state.items()})
    if hf_config is not None or is_hf_state_dict(state):  # transformers Depth Anything
        return hf_to_reference(state)
    if not any(k.startswith(("pretrained.", "depth_head.")) for k in state):  # torch-hub DINOv2 files
        return {f"pretrained.{k}": v for k, v in state.items()}
    return state


def _check_name(source: str | Path, found: str) -> None:
    m = HUB_FILE_PATTERN.search(Path(source).name)
    if m is None:
        return
    if m.group(2):
        raise CheckpointError(
            f"{source}: DINOv2 with register tokens ({m.group(2)[1:]}) is not the Depth Anything V2 encoder; "
            f"use dinov2_vit{m.group(1)}14_pretrain.pth"
        )
    if f"vit{m.group(1)}" != found:
        raise CheckpointError(f"{source}: the file name says vit{m.group(1)}, but its tensors are {found!r}")


def _check_part(part: StateDict, expected: dict[str, tuple[int, ...]], what: str, source: str | Path) -> None:
    missing = sorted(set(expected) - set(part))
    unexpected = sorted(set(part) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: the {what} weights do not match the model: {len(missing)} missing {missing[:6]}, "
            f"{len(unexpected)} unexpected {unexpected[:6]}"
        )
    bad = [
        f"{k}: expected {expected[k]}, found {tuple(v.shape)}" for k, v in part.items() if tuple(v.shape) != expected[k]
    ]
    if bad:
        raise CheckpointError(f"{source}: {what} shapes do not match the model: " + "; ".join(bad[:4]))


def load_encoder_init(model: torch.nn.Module, source: str | Path, *, include_head: bool = False) -> None:
    """Initialise ``model``'s encoder (and with ``include_head`` its DPT head) from ``source`` (see the module
    docstring). A missing ``mask_token`` (never used) is filled with zeros. Raises ``CheckpointError`` naming
    the mismatch: another encoder, missing / unexpected keys, shapes."""
    state = encoder_init_state_dict(source)
    encoder = {k: v for k, v in state.items() if k.startswith("pretrained.")}
    if not encoder:
        raise CheckpointError(f"{source}: no encoder weights found (expected pretrained.* or DINOv2 keys)")
    wanted = model.encoder
    try:
        found = infer_encoder(encoder)
    except CheckpointError:
        found = None  # no variant has these sizes: the key / shape check below names what differs
    if found is not None:
        _check_name(source, found)
        if found != wanted:
            raise CheckpointError(f"{source}: the weights are for encoder {found!r}, but the model is {wanted!r}")
    expected = expected_shapes(wanted)
    encoder.setdefault("pretrained.mask_token", torch.zeros(expected["pretrained.mask_token"]))
    _check_part(encoder, {k: s for k, s in expected.items() if k.startswith("pretrained.")}, "encoder", source)
    model.pretrained.load_state_dict({k[len("pretrained.") :]: v for k, v in encoder.items()}, strict=True)
    if include_head:
        head = {k: v for k, v in state.items() if k.startswith("depth_head.")}
        if not head:
            raise CheckpointError(f"{source}: model.init_head is set, but the file has no depth_head.* weights")
        _check_part(head, {k: s for k, s in expected.items() if k.startswith("depth_head.")}, "head", source)
        model.depth_head.load_state_dict({k[len("depth_head.") :]: v for k, v in head.items()}, strict=True)
    log.info("initialised the %s encoder%s from %s", wanted, " and head" if include_head else "", source)
