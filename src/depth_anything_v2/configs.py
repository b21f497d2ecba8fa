"""The one table of model variants and published checkpoints.

Everything that needs an architecture (the model builder, the checkpoint loader, the CLI, training, export and
the tests) reads it from here; nothing keeps its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FFNType = Literal["mlp", "swiglufused"]

PATCH_SIZE = 14
#: The DINOv2 position embedding was trained on a 37 x 37 token grid (518 px).
PRETRAIN_IMAGE_SIZE = 518
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderConfig:
    """A DINOv2 ViT encoder. ``layer_idx`` are the 0-based blocks whose outputs feed the DPT head."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    ffn: FFNType
    layer_idx: tuple[int, int, int, int]
    mlp_ratio: float = 4.0
    patch_size: int = PATCH_SIZE
    img_size: int = PRETRAIN_IMAGE_SIZE


@dataclass(frozen=True)
class Variant:
    """An encoder plus the DPT head sizes that go with it (the reference's ``model_configs`` entry)."""

    encoder: EncoderConfig
    features: int
    out_channels: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        return self.encoder.name


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(EncoderConfig("vits", 384, 12, 6, "mlp", (2, 5, 8, 11)), 64, (48, 96, 192, 384)),
        Variant(EncoderConfig("vitb", 768, 12, 12, "mlp", (2, 5, 8, 11)), 128, (96, 192, 384, 768)),
        Variant(EncoderConfig("vitl", 1024, 24, 16, "mlp", (4, 11, 17, 23)), 256, (256, 512, 1024, 1024)),
        Variant(EncoderConfig("vitg", 1536, 40, 24, "swiglufused", (9, 19, 29, 39)), 384, (1536, 1536, 1536, 1536)),
        # Not a published model: a few-hundred-kB network with the full architecture, for tests and demos.
        Variant(EncoderConfig("tiny", 32, 4, 2, "mlp", (0, 1, 2, 3)), 16, (8, 16, 32, 32)),
    )
}


def get_variant(encoder: str) -> Variant:
    """Return the variant called ``encoder``; raise ``ValueError`` naming the known ones otherwise."""
    try:
        return VARIANTS[encoder]
    except KeyError:
        raise ValueError(f"unknown encoder {encoder!r}; expected one of {sorted(VARIANTS)}") from None


APACHE = "Apache-2.0"
CC_BY_NC = "CC-BY-NC-4.0 (non-commercial use only)"


@dataclass(frozen=True)
class PublishedModel:
    """A checkpoint published on the Hugging Face Hub, addressable by ``name`` in ``load_model`` and the CLI."""

    name: str
    encoder: str
    repo_id: str
    filename: str
    license: str
    max_depth: float | None = None  # None: relative (disparity) model
    description: str = ""

    @property
    def is_metric(self) -> bool:
        return self.max_depth is not None


_SIZE = {"vits": "Small", "vitb": "Base", "vitl": "Large"}
_LICENSE = {"vits": APACHE, "vitb": CC_BY_NC, "vitl": CC_BY_NC}
_METRIC = {"hypersim": ("Hypersim", 20.0, "indoor"), "vkitti": ("VKITTI", 80.0, "outdoor")}

PUBLISHED_MODELS: dict[str, PublishedModel] = {}
for _enc, _size in _SIZE.items():
    PUBLISHED_MODELS[_enc] = PublishedModel(
        _enc,
        _enc,
        f"depth-anything/Depth-Anything-V2-{_size}",
        f"depth_anything_v2_{_enc}.pth",
        _LICENSE[_enc],
        description=f"relative depth (disparity), {_size}",
    )
for _ds, (_repo_ds, _max, _where) in _METRIC.items():
    for _enc, _size in _SIZE.items():
        _name = f"metric-{_ds}-{_enc}"
        PUBLISHED_MODELS[_name] = PublishedModel(
            _name,
            _enc,
            f"depth-anything/Depth-Anything-V2-Metric-{_repo_ds}-{_size}",
            f"depth_anything_v2_metric_{_ds}_{_enc}.pth",
            _LICENSE[_enc],
            max_depth=_max,
            description=f"metric depth in metres, {_where} (max {_max:g} m), {_size}",
        )
del _enc, _size, _ds, _repo_ds, _max, _where, _name
