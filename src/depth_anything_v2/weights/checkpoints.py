"""Reading checkpoints of every format, and the one place where key names are converted.

Formats: official ``.pth`` state dicts (the model's own key names), ``.safetensors`` with the same keys,
transformers-format (``-hf``) models (``config.json`` + ``model.safetensors``, key names of transformers 4.x;
5.x names are read too), and training checkpoints (state dict under ``model`` / ``state_dict`` /
``model_state_dict``, ``module.`` / ``_orig_mod.`` prefixes). Loading is safe and loud: ``weights_only=True``,
strict key checking, and errors that say what was expected and what was found.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..configs import VARIANTS, Variant, get_variant
from ..io.atomic import atomic_directory, atomic_path

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")
_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names expected vs found."""


# ---------------------------------------------------------------------------------------------------------
# Reading files


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any pickle that would import or call arbitrary Python code ("GLOBAL ..."); other
        # unpickling errors are plain corruption.
        detail = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), None)
        if detail is None:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint or corrupt (unpickling failed)") from None
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than tensors and plain containers, "
            f"which could run code when unpickled ({detail})"
        ) from None
    except Exception as e:  # a corrupt file can fail anywhere in the unpickler (KeyError, EOFError, ...)
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or corrupt ({type(e).__name__}: {e})") from None


def _safetensors_load(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file or corrupt ({e})") from None


def _as_state_dict(obj: Any, path: Path) -> StateDict:
    """Unwrap a training checkpoint and strip ``module.`` / ``_orig_mod.`` prefixes."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = type(obj).__name__
        if isinstance(obj, Mapping):
            found = f"a dict with keys {sorted(obj)[:8]}"
        raise CheckpointError(
            f"{path}: expected a state dict of tensors (or a training checkpoint holding one under "
            f"{'/'.join(_WRAPPER_KEYS)}), found {found}"
        )
    out: StateDict = {}
    for k, v in obj.items():
        for prefix in _PREFIXES:
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def read_hf_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable config.json ({e})") from None


#: The ``format`` tag of this toolkit's training checkpoints, which also record ``encoder`` and ``max_depth``.
TRAINING_FORMAT_PREFIX = "depth_anything_v2.training/"


class RawCheckpoint(NamedTuple):
    """A checkpoint as read: key names as stored (prefixes stripped, training wrappers removed)."""

    state_dict: StateDict
    hf_config: dict | None = None  # config.json of a transformers-format model
    recorded: dict | None = None  # {"encoder", "max_depth"} recorded by this toolkit's training checkpoints


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Read any supported checkpoint file or transformers-format directory."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    config_path = None
    if path.is_dir():
        config_path = path / "config.json"
        weights = next((path / f for f in HF_WEIGHT_FILES if (path / f).is_file()), None)
        if weights is None:
            raise CheckpointError(
                f"{path}: expected a transformers-format model directory holding config.json and one of "
                f"{', '.join(HF_WEIGHT_FILES)}, found {sorted(p.name for p in path.iterdir())[:10]}"
            )
        path = weights
    elif (path.parent / "config.json").is_file() and path.name in HF_WEIGHT_FILES:
        config_path = path.parent / "config.json"
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    raw = _safetensors_load(path) if path.suffix == ".safetensors" else _torch_load(path)
    state_dict = _as_state_dict(raw, path)
    if isinstance(raw, Mapping) and str(raw.get("format", "")).startswith(TRAINING_FORMAT_PREFIX):
        return RawCheckpoint(state_dict, recorded={"encoder": raw.get("encoder"), "max_depth": raw.get("max_depth")})
    if config_path is not None and config_path.is_file():
        return RawCheckpoint(state_dict, hf_config=read_hf_config(config_path))
    if is_hf_state_dict(state_dict):
        raise CheckpointError(f"{path}: transformers-format weights need their config.json beside them")
    return RawCheckpoint(state_dict)


# ---------------------------------------------------------------------------------------------------------
# Key conversion: reference <-> transformers (4.x names; 5.x names are normalised to 4.x first)

# (reference template, transformers template) for every key that is a pure rename; "{}" is one key segment.
_RENAMES: list[tuple[str, str]] = [
    ("pretrained.cls_token", "backbone.embeddings.cls_token"),
    ("pretrained.mask_token", "backbone.embeddings.mask_token"),
    ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
    ("pretrained.patch_embed.proj.{}", "backbone.embeddings.patch_embeddings.projection.{}"),
    ("pretrained.blocks.{}.norm{}.{}", "backbone.encoder.layer.{}.norm{}.{}"),
    ("pretrained.blocks.{}.attn.proj.{}", "backbone.encoder.layer.{}.attention.output.dense.{}"),
    ("pretrained.blocks.{}.ls{}.gamma", "backbone.encoder.layer.{}.layer_scale{}.lambda1"),
    ("pretrained.blocks.{}.mlp.fc{}.{}", "backbone.encoder.layer.{}.mlp.fc{}.{}"),
    ("pretrained.blocks.{}.mlp.w12.{}", "backbone.encoder.layer.{}.mlp.weights_in.{}"),
    ("pretrained.blocks.{}.mlp.w3.{}", "backbone.encoder.layer.{}.mlp.weights_out.{}"),
    ("pretrained.norm.{}", "backbone.layernorm.{}"),
    ("depth_head.projects.{}.{}", "neck.reassemble_stage.layers.{}.projection.{}"),
    ("depth_head.resize_layers.{}.{}", "neck.reassemble_stage.layers.{}.resize.{}"),
    ("depth_head.scratch.layer{}_rn.weight", "neck.convs.{}.weight"),  # index shifted by one, see _shift
    ("depth_head.scratch.refinenet{}.out_conv.{}", "neck.fusion_stage.layers.{}.projection.{}"),
    (
        "depth_head.scratch.refinenet{}.resConfUnit{}.conv{}.{}",
        "neck.fusion_stage.layers.{}.residual_layer{}.convolution{}.{}",
    ),
    ("depth_head.scratch.output_conv1.{}", "head.conv1.{}"),
    ("depth_head.scratch.output_conv2.0.{}", "head.conv2.{}"),
    ("depth_head.scratch.output_conv2.2.{}", "head.conv3.{}"),
]
_QKV = ("query", "key", "value")
_QKV_LONG = {"q": "query", "k": "key", "v": "value"}


def _template_regex(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{\}", r"([^.]+)"))


_COMPILED = [(_template_regex(ref), ref, _template_regex(hf), hf) for ref, hf in _RENAMES]


def _shift(template: str, groups: tuple[str, ...], to_hf: bool) -> tuple[str, ...]:
    """Index changes between the formats: ``layerN_rn`` is ``convs.N-1``; ``refinenetN`` is fusion layer 4-N
    (transformers runs the fusion stages deepest first)."""
    if "layer{}_rn" in template or "convs.{}" in template:
        return (str(int(groups[0]) - 1 if to_hf else int(groups[0]) + 1), *groups[1:])
    if "refinenet{}" in template or "fusion_stage" in template:
        return (str(4 - int(groups[0])), *groups[1:])
    return groups


def _convert_key(key: str, to_hf: bool) -> str | None:
    for ref_re, ref, hf_re, hf in _COMPILED:
        src_re, src, dst = (ref_re, ref, hf) if to_hf else (hf_re, hf, ref)
        m = src_re.fullmatch(key)
        if m:
            return dst.format(*_shift(src, m.groups(), to_hf))
    return None


def is_hf_state_dict(state_dict: Mapping[str, Any]) -> bool:
    return any(k.startswith("backbone.embeddings.") for k in state_dict)


def _normalise_hf_names(state_dict: StateDict) -> StateDict:
    """transformers 5.x key names (``q_proj``, ``o_proj``, ``gate_proj``/``up_proj``) -> 4.x names."""
    out: StateDict = {}
    gate_up: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state_dict.items():
        k = re.sub(r"\.attention\.([qkv])_proj\.", lambda m: f".attention.attention.{_QKV_LONG[m.group(1)]}.", k)
        k = k.replace(".attention.o_proj.", ".attention.output.dense.")
        k = k.replace(".mlp.down_proj.", ".mlp.weights_out.")
        m = re.fullmatch(r"(.*\.mlp)\.(gate|up)_proj\.(\w+)", k)
        if m:
            gate_up.setdefault(f"{m.group(1)}.weights_in.{m.group(3)}", {})[m.group(2)] = v
            continue
        out[k] = v
    for k, parts in gate_up.items():
        out[k] = torch.cat([parts["gate"], parts["up"]], dim=0)
    return out


def reference_to_hf(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Official (reference) key names -> transformers 4.x names (the published ``-hf`` layout)."""
    out: StateDict = {}
    for k, v in state_dict.items():
        m = re.fullmatch(r"pretrained\.blocks\.(\d+)\.attn\.qkv\.(\w+)", k)
        if m:  # one fused qkv projection -> separate query/key/value
            for name, part in zip(_QKV, v.chunk(3, dim=0), strict=True):
                out[f"backbone.encoder.layer.{m.group(1)}.attention.attention.{name}.{m.group(2)}"] = part.clone()
            continue
        new = _convert_key(k, to_hf=True)
        if new is None:
            raise CheckpointError(f"cannot convert key {k!r} to the transformers format: not a Depth Anything V2 key")
        out[new] = v
    return out


def hf_to_reference(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """transformers key names (4.x or 5.x) -> official (reference) key names."""
    out: StateDict = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in _normalise_hf_names(dict(state_dict)).items():
        m = re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(\w+)", k)
        if m:
            qkv.setdefault(f"pretrained.blocks.{m.group(1)}.attn.qkv.{m.group(3)}", {})[m.group(2)] = v
            continue
        new = _convert_key(k, to_hf=False)
        if new is None:
            raise CheckpointError(f"unexpected key {k!r} in a transformers-format Depth Anything checkpoint")
        out[new] = v
    for k, parts in qkv.items():
        if set(parts) != set(_QKV):
            raise CheckpointError(f"incomplete attention weights for {k}: found only {sorted(parts)}")
        out[k] = torch.cat([parts[name] for name in _QKV], dim=0)
    return out


# ---------------------------------------------------------------------------------------------------------
# Which model does a state dict need?


def infer_encoder(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The encoder name of a reference-format state dict, from its tensor shapes."""
    pos = state_dict.get("pretrained.pos_embed")
    if pos is None or pos.ndim != 3:
        raise CheckpointError(
            "not a Depth Anything V2 checkpoint: expected a tensor 'pretrained.pos_embed' of shape (1, N, D); "
            f"found keys such as {sorted(state_dict)[:5]}"
        )
    dim = pos.shape[-1]
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("pretrained.blocks.")})
    for name, v in VARIANTS.items():
        if v.encoder.embed_dim == dim and v.encoder.depth == depth:
            return name
    raise CheckpointError(
        f"no known encoder has embedding dim {dim} and {depth} blocks; known: "
        + ", ".join(f"{n} ({v.encoder.embed_dim}, {v.encoder.depth})" for n, v in VARIANTS.items())
    )


def hf_config_model_args(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> dict:
    """``encoder`` and ``max_depth`` of a transformers-format model from its ``config.json``."""
    kind = config.get("depth_estimation_type", "relative")
    if kind not in ("relative", "metric"):
        raise CheckpointError(f"config.json: expected depth_estimation_type 'relative' or 'metric', got {kind!r}")
    max_depth = None
    if kind == "metric":
        max_depth = config.get("max_depth")
        if not isinstance(max_depth, int | float) or max_depth <= 0:
            raise CheckpointError(f"config.json: a metric model needs max_depth > 0, got {max_depth!r}")
    return {"encoder": infer_encoder(state_dict), "max_depth": None if max_depth is None else float(max_depth)}


def hf_config_for(variant: Variant, max_depth: float | None) -> dict:
    """A transformers ``config.json`` for a Depth Anything V2 variant (as the published ``-hf`` models)."""
    enc = variant.encoder
    out_indices = [i + 1 for i in enc.layer_idx]  # hidden_states[0] is the embeddings
    return {
        "architectures": ["DepthAnythingForDepthEstimation"],
        "model_type": "depth_anything",
        "backbone_config": {
            "model_type": "dinov2",
            "architectures": ["Dinov2Model"],
            "hidden_size": enc.embed_dim,
            "num_hidden_layers": enc.depth,
            "num_attention_heads": enc.num_heads,
            "mlp_ratio": _num(enc.mlp_ratio),
            "use_swiglu_ffn": enc.ffn == "swiglufused",
            "image_size": enc.img_size,
            "patch_size": enc.patch_size,
            "layerscale_value": 1.0,
            "layer_norm_eps": 1e-6,
            "out_indices": out_indices,
            "out_features": [f"stage{i}" for i in out_indices],
            "stage_names": ["stem"] + [f"stage{i}" for i in range(1, enc.depth + 1)],
            "reshape_hidden_states": False,
            "apply_layernorm": True,
        },
        "patch_size": enc.patch_size,
        "reassemble_hidden_size": enc.embed_dim,
        "reassemble_factors": [4, 2, 1, 0.5],
        "neck_hidden_sizes": list(variant.out_channels),
        "fusion_hidden_size": variant.features,
        "head_in_index": -1,
        "head_hidden_size": 32,
        "depth_estimation_type": "relative" if max_depth is None else "metric",
        "max_depth": _num(max_depth) if max_depth is not None else 1,
        "torch_dtype": "float32",
    }


def _num(x: float) -> int | float:
    # transformers' strict configs want ints where the value is integral (mlp_ratio, max_depth)
    return int(x) if float(x).is_integer() else float(x)


def expected_shapes(encoder: str, max_depth: float | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the reference-format state dict for ``encoder`` (built on the meta device)."""
    from ..dpt import build_model

    with torch.device("meta"):
        model = build_model(encoder, max_depth, init=False)
    return {k: tuple(t.shape) for k, t in model.state_dict().items()}


def check_state_dict(state_dict: Mapping[str, torch.Tensor], encoder: str) -> None:
    """Raise ``CheckpointError`` unless ``state_dict`` has exactly the keys and shapes ``encoder`` needs."""
    expected = expected_shapes(encoder)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    found = None
    with contextlib.suppress(CheckpointError):
        found = infer_encoder(state_dict)
    if found is not None and found != encoder:
        raise CheckpointError(f"the checkpoint is for encoder {found!r}, but encoder {encoder!r} was requested")
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint keys do not match encoder {encoder!r}: {len(missing)} missing "
            f"{_short(missing)}, {len(unexpected)} unexpected {_short(unexpected)}"
        )
    bad = [
        f"{k}: expected {expected[k]}, found {tuple(t.shape)}"
        for k, t in state_dict.items()
        if tuple(t.shape) != expected[k]
    ]
    if bad:
        raise CheckpointError(f"checkpoint shapes do not match encoder {encoder!r}: " + "; ".join(bad[:5]))


def _short(keys: list[str], n: int = 6) -> str:
    return "[" + ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + "]"


# ---------------------------------------------------------------------------------------------------------
# Writing (atomic: a killed write never leaves a half file under the final name)


def save_reference(state_dict: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write a reference-format state dict as ``.pth`` (torch.save) or ``.safetensors``, atomically."""
    path = Path(path)
    if path.suffix not in (".pth", ".pt", ".safetensors"):
        raise ValueError(f"expected a .pth, .pt or .safetensors file name, got {path.name!r}")
    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, tmp, metadata={"format": "pt"})
        else:
            torch.save(tensors, tmp)
    return path


def save_hf(
    state_dict: Mapping[str, torch.Tensor], directory: str | Path, encoder: str, max_depth: float | None
) -> Path:
    """Write a transformers-format model directory (``config.json`` + ``model.safetensors``), atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        hf = {k: v.detach().contiguous() for k, v in reference_to_hf(state_dict).items()}
        with atomic_path(tmp / "model.safetensors") as weights_tmp:  # keeps the umask's mode (save_file: 0600)
            save_file(hf, weights_tmp, metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config_for(get_variant(encoder), max_depth), indent=2) + "\n")
    return directory
