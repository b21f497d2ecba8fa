"""Initialising from DINOv2: the published torch-hub files and transformers ``Dinov2Model``, with loud checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))

from training_fixtures import live_teacher

from depth_anything_v2.weights.checkpoints import CheckpointError, reference_to_hf
from depth_anything_v2.weights.dinov2 import load_encoder_init


def _encoder(seed: int = 3) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in live_teacher(seed=seed).pretrained.state_dict().items()}


def test_hub_files_prefixed_files_and_transformers_layout_load_the_encoder_only(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    encoder = _encoder()
    # torch-hub DINOv2 files: bare keys, without the (unused) mask token, under the published name.
    bare = {k: v for k, v in encoder.items() if k != "mask_token"}
    torch.save(bare, tmp_path / "dinov2_bare.pth")
    save_file({f"pretrained.{k}": v for k, v in encoder.items()}, tmp_path / "prefixed.safetensors")
    hf = reference_to_hf({f"pretrained.{k}": v for k, v in encoder.items()})
    save_file({k[len("backbone.") :]: v.contiguous() for k, v in hf.items()}, tmp_path / "model.safetensors")
    for path in (tmp_path / "dinov2_bare.pth", tmp_path / "prefixed.safetensors", tmp_path / "model.safetensors"):
        model = live_teacher(seed=4)
        head_before = model.depth_head.scratch.output_conv1.weight.clone()
        load_encoder_init(model, path)
        assert all(torch.equal(v, encoder[k]) for k, v in model.pretrained.state_dict().items() if k != "mask_token")
        assert torch.equal(model.depth_head.scratch.output_conv1.weight, head_before)  # head untouched
    with pytest.raises(CheckpointError, match="has no depth_head"):
        load_encoder_init(live_teacher(), tmp_path / "dinov2_bare.pth", include_head=True)


def test_a_real_transformers_dinov2model_gives_the_same_tokens(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128, image_size=518
    )
    torch.manual_seed(0)
    hf_model = transformers.Dinov2Model(config).eval()
    with torch.no_grad():  # non-trivial layer scales and norms
        for name, p in hf_model.named_parameters():
            if "lambda1" in name or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    hf_model.save_pretrained(tmp_path / "dinov2-tiny")
    model = live_teacher(seed=4).eval()
    load_encoder_init(model, tmp_path / "dinov2-tiny")
    x = torch.randn(1, 3, 518, 518)  # the 37 x 37 grid: both use the stored position embedding unchanged
    with torch.no_grad():
        ours = model.pretrained.get_intermediate_layers(x, [3])[0]
        theirs = hf_model(pixel_values=x).last_hidden_state[:, 1:]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_mismatches_are_refused_by_name(tmp_path: Path) -> None:
    bare = {k: v for k, v in _encoder().items() if k != "mask_token"}
    # A published name that says another variant than the model: refused before any key is compared.
    vitb_like = {**bare, "pos_embed": torch.zeros(1, 1370, 768), "cls_token": torch.zeros(1, 1, 768)}
    vitb_like = {k: v for k, v in vitb_like.items() if not k.startswith("blocks.")} | {
        f"blocks.{i}.norm1.weight": torch.ones(768) for i in range(12)
    }
    torch.save(vitb_like, tmp_path / "dinov2_vitb14_pretrain.pth")
    with pytest.raises(CheckpointError, match="the weights are for encoder 'vitb', but the model is 'tiny'"):
        load_encoder_init(live_teacher(), tmp_path / "dinov2_vitb14_pretrain.pth")
    torch.save(bare, tmp_path / "dinov2_vits14_pretrain.pth")
    with pytest.raises(CheckpointError, match="the file name says vits, but its tensors are 'tiny'"):
        load_encoder_init(live_teacher(), tmp_path / "dinov2_vits14_pretrain.pth")
    torch.save(bare, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    with pytest.raises(CheckpointError, match="register tokens"):
        load_encoder_init(live_teacher(), tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    torch.save({**bare, "register_tokens": torch.zeros(1, 4, 32)}, tmp_path / "reg.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected \['pretrained.register_tokens'\]"):
        load_encoder_init(live_teacher(), tmp_path / "reg.pth")
    torch.save({**bare, "pos_embed": torch.zeros(1, 5, 32)}, tmp_path / "pos.pth")
    with pytest.raises(CheckpointError, match=r"pos_embed: expected \(1, 1370, 32\), found \(1, 5, 32\)"):
        load_encoder_init(live_teacher(), tmp_path / "pos.pth")
