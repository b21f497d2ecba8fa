"""Checkpoint key names, shapes and parameter counts against the official list (REFERENCE sections 1-2),
built at real size on the meta device."""

import pytest
import torch

from depth_anything_v2.configs import VARIANTS
from depth_anything_v2.dpt import DepthAnythingV2
from depth_anything_v2.weights.checkpoints import expected_shapes, hf_to_reference, reference_to_hf

DEPTH = {"vits": 12, "vitb": 12, "vitl": 24, "vitg": 40}


def official_keys(encoder: str) -> set[str]:
    """The official key list, written out from REFERENCE section 2's patterns."""
    ffn = ("mlp.w12", "mlp.w3") if encoder == "vitg" else ("mlp.fc1", "mlp.fc2")
    keys = {"pretrained.cls_token", "pretrained.pos_embed", "pretrained.mask_token"}
    keys |= {f"pretrained.patch_embed.proj.{p}" for p in ("weight", "bias")}
    keys |= {f"pretrained.norm.{p}" for p in ("weight", "bias")}
    for i in range(DEPTH[encoder]):
        for m in ("norm1", "attn.qkv", "attn.proj", "norm2", *ffn):
            keys |= {f"pretrained.blocks.{i}.{m}.{p}" for p in ("weight", "bias")}
        keys |= {f"pretrained.blocks.{i}.ls1.gamma", f"pretrained.blocks.{i}.ls2.gamma"}
    wb = ("weight", "bias")
    keys |= {f"depth_head.projects.{i}.{p}" for i in range(4) for p in wb}
    keys |= {f"depth_head.resize_layers.{i}.{p}" for i in (0, 1, 3) for p in wb}
    keys |= {f"depth_head.scratch.layer{i}_rn.weight" for i in range(1, 5)}
    for i in range(1, 5):
        keys |= {f"depth_head.scratch.refinenet{i}.out_conv.{p}" for p in wb}
        keys |= {
            f"depth_head.scratch.refinenet{i}.resConfUnit{u}.conv{c}.{p}" for u in (1, 2) for c in (1, 2) for p in wb
        }
    keys |= {f"depth_head.scratch.output_conv1.{p}" for p in wb}
    keys |= {f"depth_head.scratch.output_conv2.{j}.{p}" for j in (0, 2) for p in wb}
    return keys


@pytest.mark.parametrize(
    ("encoder", "n_keys", "n_params"),
    [("vits", 239, 24_785_089), ("vitb", 239, 97_470_785), ("vitl", 407, 335_315_649), ("vitg", 631, 1_258_132_225)],
)
@pytest.mark.parametrize("max_depth", [None, 20.0])
def test_keys_shapes_and_parameter_counts(encoder, n_keys, n_params, max_depth):
    v = VARIANTS[encoder]
    with torch.device("meta"):
        model = DepthAnythingV2(encoder, v.features, list(v.out_channels), max_depth=max_depth)
    sd = model.state_dict()
    assert set(sd) == official_keys(encoder)
    assert len(sd) == n_keys
    assert sum(p.numel() for p in model.parameters()) == n_params
    dim = v.encoder.embed_dim
    assert tuple(sd["pretrained.pos_embed"].shape) == (1, 37 * 37 + 1, dim)
    assert tuple(sd["pretrained.mask_token"].shape) == (1, dim)
    assert tuple(sd["pretrained.blocks.0.attn.qkv.weight"].shape) == (3 * dim, dim)
    assert tuple(sd["depth_head.projects.0.weight"].shape) == (v.out_channels[0], dim, 1, 1)
    assert tuple(sd["depth_head.resize_layers.0.weight"].shape) == (v.out_channels[0],) * 2 + (4, 4)
    assert tuple(sd["depth_head.scratch.layer4_rn.weight"].shape) == (v.features, v.out_channels[3], 3, 3)
    assert tuple(sd["depth_head.scratch.output_conv2.0.weight"].shape) == (32, v.features // 2, 3, 3)
    assert expected_shapes(encoder) == {k: tuple(t.shape) for k, t in sd.items()}


@pytest.mark.parametrize("encoder", ["vits", "vitg"])
def test_hf_conversion_round_trips_every_key(encoder):
    v = VARIANTS[encoder]
    with torch.device("meta"):
        sd = DepthAnythingV2(encoder, v.features, list(v.out_channels)).state_dict()
    hf = reference_to_hf(sd)
    assert all(k.split(".")[0] in ("backbone", "neck", "head") for k in hf)
    assert "neck.fusion_stage.layers.0.projection.weight" in hf  # refinenet4 is transformers' first fusion layer
    back = hf_to_reference(hf)
    assert set(back) == set(sd)
    assert all(back[k].shape == sd[k].shape for k in sd)


def test_hf_conversion_reads_transformers_5_names():
    torch.manual_seed(0)
    w = {n: torch.randn(4, 4) for n in ("q", "k", "v", "o")}
    g, u = torch.randn(8, 4), torch.randn(8, 4)
    v5 = {
        "backbone.encoder.layer.0.attention.q_proj.weight": w["q"],
        "backbone.encoder.layer.0.attention.k_proj.weight": w["k"],
        "backbone.encoder.layer.0.attention.v_proj.weight": w["v"],
        "backbone.encoder.layer.0.attention.o_proj.weight": w["o"],
        "backbone.encoder.layer.0.mlp.gate_proj.weight": g,
        "backbone.encoder.layer.0.mlp.up_proj.weight": u,
    }
    ref = hf_to_reference(v5)
    torch.testing.assert_close(ref["pretrained.blocks.0.attn.qkv.weight"], torch.cat([w["q"], w["k"], w["v"]]))
    torch.testing.assert_close(ref["pretrained.blocks.0.attn.proj.weight"], w["o"])
    torch.testing.assert_close(ref["pretrained.blocks.0.mlp.w12.weight"], torch.cat([g, u]))
