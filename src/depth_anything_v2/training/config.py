"""Training configuration: typed dataclasses, YAML / JSON / TOML files, ``key=value`` overrides, stage defaults.

A configuration file has one section per dataclass below (``model``, ``data``, ``optim``, ``loss``, ``train``,
``val``) plus ``stage``, ``output_dir`` and ``seed``::

    stage: student                      # teacher | student | metric
    output_dir: runs/student-vits
    model: {encoder: vits, init: weights/dinov2_vits14_pretrain.pth}
    data:
      train: [{type: shards, shards: "pseudo/pseudo-{000000..000999}.tar"}]
      val: [{type: folder, root: data/val, depth_unit: m, limit: 200}]
    train: {batch_size: 192, max_steps: 480000, precision: bf16}

Values are resolved in this order, later wins: dataclass defaults < the stage's defaults (:data:`STAGE_DEFAULTS`,
e.g. the trimmed loss and feature alignment for students, AdamW with weight decay for metric fine-tuning) < the
file < command-line overrides (``train.max_steps=10``, ``data.train=[{type: synthetic, n: 64}]``; values parse as
YAML). Every value is checked against its field's type, unknown keys are rejected with the closest known name,
and cross-field rules (crop a multiple of 14, metric stage needs ``max_depth``, ...) are checked in
:func:`validate`. Errors are :class:`ConfigError` (a ``ValueError``) that say which key, what was expected and
what came.

YAML needs PyYAML (installed with ``huggingface_hub``, a core dependency); ``.json`` needs nothing and ``.toml``
uses the standard library's ``tomllib`` (Python 3.11+).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from ..configs import PATCH_SIZE, VARIANTS

__all__ = [
    "DATASET_TYPES",
    "STAGES",
    "STAGE_DEFAULTS",
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainLoopConfig",
    "ValConfig",
    "apply_overrides",
    "config_to_dict",
    "dump_config",
    "from_dict",
    "fsdp_param_dtype",
    "load_config",
    "parse_override",
    "validate",
]

Stage = Literal["teacher", "student", "metric"]
STAGES: tuple[str, ...] = ("teacher", "student", "metric")
#: ``type`` values of a dataset entry in ``data.train`` / ``data.val`` (see ``trainer.build_dataset``).
DATASET_TYPES: tuple[str, ...] = (
    "synthetic",
    "hypersim",
    "vkitti2",
    "tartanair",
    "irs",
    "blendedmvs",
    "folder",
    "shards",
)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key, what was expected and what came."""


@dataclass
class ModelConfig:
    """The network.

    Attributes:
        encoder: a name of :data:`depth_anything_v2.configs.VARIANTS` (``vits``/``vitb``/``vitl``/``vitg``, or
            ``tiny`` for tests and the miniature pipeline).
        max_depth: metres; required for the metric stage (20 indoor, 80 outdoor), ``None`` otherwise.
        init: encoder initialisation: a DINOv2 state dict (``pretrained.``-prefixed, bare DINOv2 keys, or a
            transformers ``Dinov2Model``) for the teacher and students, a relative Depth Anything checkpoint for
            metric fine-tuning (only its encoder is taken). ``None``: random (DINOv2-style) initialisation.
        init_head: also copy the DPT head from ``init`` (when it has one), e.g. to continue training a model.
    """

    encoder: str = "vits"
    max_depth: float | None = None
    init: str | None = None
    init_head: bool = False


@dataclass
class DataConfig:
    """Training and validation data.

    ``train`` and ``val`` are lists of dataset entries ``{type: ..., **reader arguments}`` with ``type`` one of
    :data:`DATASET_TYPES`; an entry may add ``limit: N`` (first N samples). Examples:
    ``{type: synthetic, n: 2000, size: [192, 256], seed: 0}``, ``{type: hypersim, root: /data/hypersim}``,
    ``{type: folder, root: data/x, depth_unit: mm}``, ``{type: shards, shards: "p/pseudo-{000000..000099}.tar"}``.
    Map-style readers are concatenated; shards stream (they cannot be mixed with map-style readers).

    Attributes:
        crop_size: training crop, an int (square) or ``[height, width]``, multiples of 14 (518 in the paper).
        flip, color_jitter, blur: augmentations (the paper: flip; V1 adds jitter and blur on unlabeled images).
        cutmix: CutMix probability per sample (V1 on pseudo-labelled images; 0 disables).
        num_workers: DataLoader worker processes per rank.
        shuffle_buffer: sample shuffle buffer of streamed shards.
    """

    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    crop_size: int | list[int] = 518
    flip: bool = True
    color_jitter: bool = False
    blur: bool = False
    cutmix: float = 0.0
    num_workers: int = 2
    shuffle_buffer: int = 1000


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (the paper: Adam, 5e-6 encoder / 5e-5 decoder, poly decay).

    ``schedule: poly`` multiplies both rates by ``(1 - step / max_steps) ** poly_power`` after every optimiser
    step (the reference metric trainer's rule), after an optional linear warm-up of ``warmup_steps``.
    ``grad_clip``: clip the global gradient norm (``None``: no clipping; the norm is still logged).
    """

    name: Literal["adam", "adamw"] = "adam"
    lr_encoder: float = 5e-6
    lr_decoder: float = 5e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: Literal["poly", "constant"] = "poly"
    poly_power: float = 0.9
    warmup_steps: int = 0
    grad_clip: float | None = None


@dataclass
class LossConfig:
    """Losses (see :mod:`depth_anything_v2.training.losses`).

    Relative stages: ``L_ssi + gradient_weight * L_gm`` on disparity (``form``, ``scales``, ``trim``,
    ``normalize_target``, ``reduction`` as :class:`~depth_anything_v2.training.losses.DepthLossConfig`), plus
    ``feature_weight * L_feat`` (feature alignment against the frozen initial encoder, tokens above
    ``feature_threshold`` cosine similarity ignored) for students. Metric stage: SiLog with ``silog_lambda``
    over depths in ``[min_depth, model.max_depth]``.
    """

    form: Literal["mse", "mae", "median_mad"] = "mse"
    gradient_weight: float = 2.0
    scales: int = 4
    trim: float = 0.0
    normalize_target: bool = True
    reduction: Literal["batch", "image"] = "batch"
    feature_weight: float = 0.0
    feature_threshold: float = 0.85
    silog_lambda: float = 0.5
    min_depth: float = 1e-3


@dataclass
class TrainLoopConfig:
    """The loop.

    Attributes:
        batch_size: the *global* batch of one optimiser step (all ranks, all accumulation steps). Each rank's
            micro-batch is ``batch_size / (world_size * grad_accum_steps)``, which must be a whole number, so
            the same file gives the same optimisation on 1 or 64 GPUs.
        grad_accum_steps: micro-batches per optimiser step on each rank.
        max_steps: optimiser steps in total (the poly schedule's horizon).
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast + gradient scaling).
        device: ``auto`` (cuda if available; under torchrun ``cuda:LOCAL_RANK``), ``cpu``, ``cuda``.
        strategy: ``ddp`` or ``fsdp`` (parameters, gradients and optimiser state sharded per encoder block:
            for the giant encoder). Applies when more than one process runs; one process trains unwrapped.
        log_every, val_every, ckpt_every: in optimiser steps (``val_every: 0``: validate only at the end).
        keep_last: how many step checkpoints to keep (the newest; ``best.pt`` is kept apart).
        resume: ``None``, ``auto`` (newest checkpoint in ``output_dir/checkpoints`` if any) or a path.
        dry_run: one optimiser step and one validation sample, nothing written: checks a config end to end.
        progress: a tqdm bar on rank 0. tensorboard: also write TensorBoard events (if installed).
        compile: ``torch.compile`` the model.
        max_bad_steps: consecutive steps with a non-finite loss or gradient (skipped) before giving up.
        activation_checkpointing: recompute each encoder block's activations in the backward pass instead of
            storing them (per block: ~1/3 more compute, activations of ``depth`` blocks -> one; for vitg at 518).
        fsdp_param_dtype: the dtype FSDP gathers parameters in (its compute copy; the shards and the optimiser stay
            fp32): ``auto`` = bf16 under ``precision: bf16``, else fp32.
        fsdp_reduce_dtype: the dtype of FSDP's gradient reduce-scatter (fp32 keeps the sum exact to fp32).
    """

    batch_size: int = 64
    grad_accum_steps: int = 1
    max_steps: int = 1000
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"
    strategy: Literal["ddp", "fsdp"] = "ddp"
    log_every: int = 10
    val_every: int = 0
    ckpt_every: int = 1000
    keep_last: int = 2
    resume: str | None = None
    dry_run: bool = False
    progress: bool = True
    tensorboard: bool = False
    compile: bool = False
    max_bad_steps: int = 10
    activation_checkpointing: bool = False
    fsdp_param_dtype: Literal["auto", "fp32", "bf16"] = "auto"
    fsdp_reduce_dtype: Literal["fp32", "bf16"] = "fp32"


def fsdp_param_dtype(config: TrainConfig) -> Any:
    """The torch dtype FSDP gathers parameters in for ``config`` (``train.fsdp_param_dtype``, ``auto`` resolved)."""
    import torch

    name = config.train.fsdp_param_dtype
    if name == "auto":
        name = "bf16" if config.train.precision == "bf16" else "fp32"
    return torch.bfloat16 if name == "bf16" else torch.float32


@dataclass
class ValConfig:
    """Validation on held-out data with depth ground truth (``data.val``).

    Relative models are scored after least-squares scale and shift alignment in disparity space (the paper's
    protocol, :mod:`depth_anything_v2.evaluation.metrics`); metric models as metres (``alignment: none``).
    ``metric`` picks the best checkpoint (``abs_rel``: lower is better; ``d1``: higher is better).
    ``limit``: score only the first N samples (a ``limit_batches`` knob). The network sees each image at
    :func:`~depth_anything_v2.inference.transforms.working_size` for ``input_size``; predictions are resized back to the
    ground truth's resolution.
    """

    metric: str = "abs_rel"
    input_size: int = 518
    min_depth: float = 1e-3
    max_depth: float | None = None
    alignment: Literal["auto", "scale_shift_disparity", "none", "scale", "scale_shift_depth", "median"] = "auto"
    limit: int | None = None


@dataclass
class TrainConfig:
    """The whole training configuration (see the module docstring)."""

    stage: Stage = "teacher"
    output_dir: str = "runs/train"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    val: ValConfig = field(default_factory=ValConfig)

    @property
    def crop_hw(self) -> tuple[int, int]:
        c = self.data.crop_size
        return (c, c) if isinstance(c, int) else (int(c[0]), int(c[1]))


#: Defaults that depend on the stage (applied under the file's values).
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Paper: L_ssi + 2 L_gm on precise synthetic labels, Adam.
    "teacher": {"optim": {"name": "adam", "weight_decay": 0.0}, "loss": {"trim": 0.0, "feature_weight": 0.0}},
    # Paper: pseudo labels -> ignore the top 10% per-pixel loss; V1's feature alignment against frozen DINOv2.
    "student": {"optim": {"name": "adam", "weight_decay": 0.0}, "loss": {"trim": 0.1, "feature_weight": 1.0}},
    # Reference metric trainer: AdamW (0.9, 0.999), weight decay 0.01, SiLog; scored as metres.
    "metric": {"optim": {"name": "adamw", "weight_decay": 0.01}, "val": {"metric": "abs_rel"}},
}


# ------------------------------------------------------------------------------------------- conversion
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked / converted to the annotation ``tp``; ConfigError naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
        else:
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return _coerce(value, arg, key)
                except ConfigError:
                    continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {value!r}")
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-6" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {tp!r}")  # pragma: no cover - a programming error


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f"; did you mean {(prefix + '.' if prefix else '') + close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {key!r}; expected one of {names}{hint}")
        kwargs[k] = _coerce(v, hints[k], key)
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a plain dict (stage defaults applied underneath), validated."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected the configuration to be a mapping, got {type(data).__name__}")
    stage = data.get("stage", "teacher")
    if stage not in STAGES:
        raise ConfigError(f"stage: expected one of {list(STAGES)}, got {stage!r}")
    merged = _merge(copy.deepcopy(STAGE_DEFAULTS[stage]), data)
    config = _build(TrainConfig, merged)
    validate(config)
    return config


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The resolved configuration as plain data (what checkpoints and ``config.yaml`` store)."""
    return dataclasses.asdict(config)


# ----------------------------------------------------------------------------------------------- files
def _yaml():
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - PyYAML comes with huggingface_hub
        raise ConfigError("YAML configuration files need PyYAML: pip install pyyaml (or use .json)") from e
    return yaml


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a ``.yaml``/``.yml``, ``.json`` or ``.toml`` file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = _yaml().safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            raise ConfigError(f"{path}: expected a .yaml, .yml, .json or .toml file, got {suffix or 'no suffix'!r}")
    except ConfigError:
        raise
    except Exception as e:  # the parsers' own error types differ; all mean "not parseable"
        raise ConfigError(f"{path}: cannot parse ({type(e).__name__}: {e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (``["a", "b"]``, parsed value). The value is YAML (``10``, ``1e-5``, ``null``,
    ``[56, 56]``, ``{type: synthetic, n: 8}``); anything YAML cannot parse stays a string."""
    if "=" not in text:
        raise ConfigError(f"expected an override of the form key=value (e.g. train.max_steps=100), got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"expected a dotted key before '=' in {text!r}")
    try:
        value = _yaml().safe_load(raw) if raw.strip() else None
    except Exception as e:  # PyYAML's errors; a plain word that YAML cannot read stays a string
        if raw.lstrip()[:1] in "[{":
            first = str(e).splitlines()[0]
            raise ConfigError(
                f"override {key!r}: cannot parse {raw!r} as YAML ({first}); quote strings holding braces or colons, "
                'e.g. data.train=[{type: shards, shards: "p/pseudo-{000000..000009}.tar"}]'
            ) from None
        value = raw
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # YAML 1.1 leaves "1e-5" a string; numbers are numbers
            value = float(value) if any(c in value for c in "eE.") else int(value)
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a config dict (new nested keys are created; checked later)."""
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section (it holds {child!r})")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a config file (or start from the defaults when ``path`` is None) and apply overrides."""
    data = read_config_file(path) if path is not None else {}
    return from_dict(apply_overrides(data, list(overrides)))


def dump_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved configuration as YAML (or JSON for a ``.json`` path), atomically."""
    from .checkpointing import atomic_write_text

    data = config_to_dict(config)
    path = Path(path)
    text = json.dumps(data, indent=2) + "\n" if path.suffix == ".json" else _yaml().safe_dump(data, sort_keys=False)
    return atomic_write_text(path, text)


# ---------------------------------------------------------------------------------------------- checks
def validate(config: TrainConfig) -> None:
    """Cross-field checks; raises :class:`ConfigError`."""
    m, d, o, lo, t, v = config.model, config.data, config.optim, config.loss, config.train, config.val
    if m.encoder not in VARIANTS:
        raise ConfigError(f"model.encoder: expected one of {sorted(VARIANTS)}, got {m.encoder!r}")
    if config.stage == "metric":
        if m.max_depth is None or not m.max_depth > 0:
            raise ConfigError(
                f"model.max_depth: the metric stage needs the depth range in metres (20 indoor, 80 outdoor), "
                f"got {m.max_depth!r}"
            )
    elif m.max_depth is not None:
        raise ConfigError(
            f"model.max_depth: only the metric stage has a depth range; stage {config.stage!r} trains a "
            f"relative (disparity) model, got max_depth={m.max_depth}"
        )
    crop = config.crop_hw if isinstance(d.crop_size, int) or len(d.crop_size) == 2 else None
    if crop is None:
        raise ConfigError(f"data.crop_size: expected an int or [height, width], got {d.crop_size!r}")
    if any(c <= 0 or c % PATCH_SIZE for c in crop):
        raise ConfigError(f"data.crop_size: expected positive multiples of {PATCH_SIZE}, got {d.crop_size!r}")
    if not d.train:
        raise ConfigError("data.train: expected at least one dataset entry ({type: ..., ...}), got none")
    for section, entries in (("data.train", d.train), ("data.val", d.val)):
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "type" not in entry:
                raise ConfigError(f"{section}[{i}]: expected a mapping with a 'type' key, got {entry!r}")
            if entry["type"] not in DATASET_TYPES:
                raise ConfigError(f"{section}[{i}].type: expected one of {list(DATASET_TYPES)}, got {entry['type']!r}")
    if any(e["type"] == "shards" for e in d.val):
        raise ConfigError("data.val: validation needs ground-truth depth; shards of pseudo labels cannot be used")
    kinds = {e["type"] == "shards" for e in d.train}
    if len(kinds) > 1:
        raise ConfigError("data.train: shards (streamed) cannot be mixed with map-style datasets in one run")
    if not 0.0 <= d.cutmix <= 1.0:
        raise ConfigError(f"data.cutmix: expected a probability in [0, 1], got {d.cutmix}")
    if d.num_workers < 0 or d.shuffle_buffer < 0:
        raise ConfigError(f"data.num_workers / shuffle_buffer: expected >= 0, got {d.num_workers} / {d.shuffle_buffer}")
    if o.lr_encoder < 0 or o.lr_decoder < 0:
        raise ConfigError(f"optim: expected learning rates >= 0, got {o.lr_encoder} / {o.lr_decoder}")
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise ConfigError(f"optim.betas: expected two numbers in [0, 1), got {o.betas}")
    if o.weight_decay < 0 or o.warmup_steps < 0 or (o.grad_clip is not None and o.grad_clip <= 0):
        raise ConfigError("optim: expected weight_decay >= 0, warmup_steps >= 0 and grad_clip > 0 (or null)")
    if o.name == "adam" and o.weight_decay > 0:
        raise ConfigError("optim: Adam's L2 weight decay is not supported; use name: adamw for weight decay")
    if not 0.0 <= lo.trim < 1.0:
        raise ConfigError(f"loss.trim: expected a fraction in [0, 1), got {lo.trim}")
    if lo.gradient_weight < 0 or lo.feature_weight < 0 or lo.scales < 1:
        raise ConfigError("loss: expected gradient_weight >= 0, feature_weight >= 0 and scales >= 1")
    if lo.feature_weight > 0 and config.stage == "metric":
        raise ConfigError("loss.feature_weight: feature alignment is for relative students, not the metric stage")
    for name in ("batch_size", "grad_accum_steps", "max_steps", "log_every", "ckpt_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name}: expected >= 1, got {getattr(t, name)}")
    if t.val_every < 0 or t.keep_last < 1 or t.max_bad_steps < 1:
        raise ConfigError("train: expected val_every >= 0, keep_last >= 1 and max_bad_steps >= 1")
    if t.batch_size % t.grad_accum_steps:
        raise ConfigError(
            f"train.batch_size: the global batch {t.batch_size} is not divisible by grad_accum_steps "
            f"{t.grad_accum_steps}"
        )
    from ..evaluation.metrics import METRIC_NAMES

    if v.metric not in METRIC_NAMES:
        raise ConfigError(f"val.metric: expected one of {list(METRIC_NAMES)}, got {v.metric!r}")
    if v.input_size <= 0 or v.input_size % PATCH_SIZE:
        raise ConfigError(f"val.input_size: expected a positive multiple of {PATCH_SIZE}, got {v.input_size}")
    if v.max_depth is not None and not (v.max_depth > v.min_depth >= 0 and math.isfinite(v.max_depth)):
        raise ConfigError(f"val: expected 0 <= min_depth < max_depth, got {v.min_depth} / {v.max_depth}")
    if v.limit is not None and v.limit < 1:
        raise ConfigError(f"val.limit: expected >= 1 or null, got {v.limit}")
