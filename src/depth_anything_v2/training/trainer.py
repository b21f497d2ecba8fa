"""The trainer: teacher on synthetic data, student on pseudo labels, metric fine-tuning; one loop for all three.

    from depth_anything_v2.training.config import load_config
    from depth_anything_v2.training.trainer import train

    result = train(load_config("configs/train/teacher_vitg.yaml", ["train.max_steps=100"]))
    print(result.best, result.final_checkpoint)

Stages (REFERENCE section 4):

* ``teacher``: disparity targets from precise synthetic depth; ``L_ssi + 2 L_gm``.
* ``student``: pseudo-labelled shards; the trimmed loss (top 10% per-pixel loss of each sample ignored) plus
  V1's feature alignment: ``1 - cos`` between the student encoder's last-layer patch tokens and those of a
  frozen copy of its *initial* encoder (DINOv2), tokens already above 0.85 ignored.
* ``metric``: depth targets in metres; SiLog; the encoder initialised from a relative checkpoint, a fresh
  Sigmoid x ``max_depth`` head.

The loop: per-rank micro-batches (global batch / (world size x accumulation)), autocast in bf16 / fp16 (with a
gradient scaler for fp16), gradient accumulation (no all-reduce on the inner micro-steps), global gradient-norm
clipping, Adam(W) with separate encoder / decoder learning rates and the poly schedule stepped per optimiser
step, non-finite steps skipped (and counted), DDP or FSDP2 under torchrun. Rank 0 writes JSON-lines logs
(``train_log.jsonl``; TensorBoard optionally), a tqdm bar, ``config.yaml`` (the resolved configuration) and
checkpoints (:mod:`.checkpointing`; atomic; every rank's RNG state). Resuming restores model, optimiser,
scheduler, scaler, step, data position and RNG state, so the run continues exactly as an uninterrupted one
(bitwise on the same hardware and world size). Validation scores a held-out set (AbsRel / delta1 after
least-squares scale and shift in disparity space, :mod:`depth_anything_v2.evaluation.metrics`) and keeps
``best.pt`` by ``val.metric``. ``final.pt`` / ``best.pt`` load with :func:`depth_anything_v2.load_model`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import PATCH_SIZE
from ..devices import precision_dtype
from ..distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    init_distributed,
    wrap_model,
)
from ..dpt import DepthAnythingV2
from ..weights.checkpoints import CheckpointError
from ..weights.dinov2 import load_encoder_init
from . import checkpointing as ckpt_io
from .config import ConfigError, TrainConfig, config_to_dict, dump_config, fsdp_param_dtype
from .data import StreamBatches, build_train_batches, build_val_dataset, mix_seed

log = logging.getLogger(__name__)

__all__ = [
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingModule",
    "build_training_model",
    "checkpoint_blocks",
    "evaluate_model",
    "load_encoder_init",
    "train",
]

#: Parameters the forward pass never uses (stored for strict loading of official files): frozen, so DDP does not
#: wait for their gradients.
UNUSED_PARAMETERS = ("pretrained.mask_token", "depth_head.scratch.refinenet4.resConfUnit1.")
HIGHER_IS_BETTER = frozenset({"d1", "d2", "d3"})


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite steps)."""


# ------------------------------------------------------------------------------------------------- model
def build_training_model(config: TrainConfig) -> DepthAnythingV2:
    """The stage's network: seeded random init, ``model.init`` loaded, unused parameters frozen."""
    from ..weights.loading import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix_seed(config.seed, 0x6D6F64))
        model = build_model(config.model.encoder, config.model.max_depth)
    if not model.is_metric:
        # A random head often ends below zero everywhere, and the relative head's final ReLU then passes no
        # gradient at all: start the last bias at 1 so the output is alive (SSI losses ignore the offset).
        with torch.no_grad():
            model.depth_head.scratch.output_conv2[2].bias.fill_(1.0)
    if config.model.init:
        try:
            load_encoder_init(model, config.model.init, include_head=config.model.init_head)
        except FileNotFoundError as e:
            raise ConfigError(f"model.init: {e}") from None
    for name, p in model.named_parameters():
        if name.startswith(UNUSED_PARAMETERS):
            p.requires_grad_(False)
    return model


def checkpoint_blocks(blocks: nn.ModuleList) -> None:
    """Activation checkpointing per encoder block: each block keeps only its input and recomputes the rest in
    the backward pass (``torch.utils.checkpoint``, non-reentrant). The parameters and their names are unchanged
    (``forward`` is wrapped on the instance), so checkpoints and FSDP's per-block sharding are unaffected."""
    from torch.utils.checkpoint import checkpoint

    for block in blocks:
        inner = block.forward
        block.forward = lambda x, inner=inner: checkpoint(inner, x, use_reentrant=False)  # type: ignore[method-assign]


class TrainingModule(nn.Module):
    """What DDP / FSDP wrap: ``forward(x, with_features)`` -> ``(prediction (B, H, W), last-layer tokens or None)``.

    The prediction equals ``DepthAnythingV2.forward`` (the same four lines: encoder -> head -> ReLU or Sigmoid x
    max_depth); going through one module's ``forward`` keeps DDP's gradient hooks and FSDP's all-gathers
    in charge while the student also gets its encoder tokens for the feature-alignment loss.
    """

    def __init__(self, model: DepthAnythingV2) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, with_features: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        m = self.model
        patch_h, patch_w = x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE
        features = m.pretrained.get_intermediate_layers(x, m.intermediate_layer_idx)
        depth = m.depth_head(features, patch_h, patch_w)
        depth = depth * m.max_depth if m.is_metric else F.relu(depth)
        # clone: FSDP2 cannot hook a view returned from a wrapped module.
        return depth.squeeze(1).clone(), (features[-1] if with_features else None)


# ------------------------------------------------------------------------------------------- evaluation
def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision_dtype(precision))


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Any,
    *,
    input_size: int = 518,
    alignment: str = "auto",
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    limit: int | None = None,
    precision: str = "fp32",
    is_metric: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
    forward: Any = None,
) -> dict[str, Any]:
    """Score a model on a dataset of ``{"image", "depth_m", "valid_mask"}`` samples (native resolution).

    Each image goes through :meth:`DepthPredictor.predict_tensor
    <depth_anything_v2.inference.predictor.DepthPredictor.predict_tensor>`: the reference pre-processing at
    ``input_size`` and the prediction resized back to ``(H, W)``, the path ``depth-anything eval`` takes, so a
    validation score is what ``eval`` reports for the checkpoint. ``alignment="auto"``: relative models
    get least-squares scale and shift in disparity space (the paper's protocol), metric ones none. Metrics
    (:data:`depth_anything_v2.evaluation.metrics.METRIC_NAMES`) are averaged per image, in dataset order, so the
    result is the same on any number of ranks (each rank scores indices ``rank::world_size``; every rank must
    call this). ``forward`` overrides the call used for prediction (FSDP needs every rank to run it equally).

    Returns:
        ``{"metrics": {...}, "num_images": n, "num_skipped": k, "alignment": ...}``.
    """
    from ..evaluation.metrics import METRIC_NAMES, score_pairs
    from ..inference.predictor import DepthPredictor

    core = model.model if isinstance(model, TrainingModule) else model
    metric = bool(core.is_metric) if is_metric is None else is_metric
    if alignment == "auto":
        alignment = "none" if metric else "scale_shift_disparity"
    kind = "metric" if metric else "disparity"
    device = next(model.parameters()).device
    n = len(dataset) if limit is None else min(limit, len(dataset))
    mine = list(range(rank, n, world_size))
    rounds = math.ceil(n / world_size) if n else 0  # FSDP: every rank runs the same number of forwards
    was_training = model.training
    model.eval()
    predictor = DepthPredictor(core, input_size=input_size)  # keeps the model's device and (fp32) dtype

    def run(x: torch.Tensor) -> torch.Tensor:
        with _autocast(device, precision):
            out = forward(x) if forward is not None else model(x)
        return out[0] if isinstance(out, tuple) else out

    records = []
    try:
        for r in range(rounds):
            index = mine[r] if r < len(mine) else (mine[-1] if mine else 0)
            sample = dataset[index]
            pred = predictor.predict_tensor(_to_uint8_rgb(sample["image"]), forward=run)[0].cpu().numpy()
            if r >= len(mine):
                continue  # padding round
            res = score_pairs(
                [(pred, sample["depth_m"].numpy(), sample["valid_mask"].numpy())],
                alignment=alignment,
                kind=kind,
                min_depth=min_depth,
                max_depth=math.inf if max_depth is None else max_depth,
            )
            records.append((index, res["metrics"] if res["num_images"] else None))
    finally:
        model.train(was_training)
    gathered = sorted(rec for part in all_gather_objects(records) for rec in part)
    scored = [m for _, m in gathered if m is not None]
    metrics = {k: (math.fsum(m[k] for m in scored) / len(scored) if scored else math.nan) for k in METRIC_NAMES}
    return {
        "metrics": metrics,
        "num_images": len(scored),
        "num_skipped": len(gathered) - len(scored),
        "alignment": alignment,
    }


def _to_uint8_rgb(image: torch.Tensor) -> torch.Tensor:
    """A dataset's ImageNet-normalised ``(3, H, W)`` float image back to the RGB uint8 pixels it was made from
    (exact: ``make_sample`` normalises ``uint8 / 255`` in float32, far from the 0.5 rounding boundary)."""
    from ..configs import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)[:, None, None]
    return ((image.double().cpu() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------- trainer
@dataclass
class TrainResult:
    """What a run produced (on every rank; paths are written by rank 0)."""

    output_dir: Path
    step: int
    final_checkpoint: Path | None
    best_checkpoint: Path | None
    best: dict[str, Any] | None
    last_val: dict[str, Any] | None
    skipped_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class _Logger:
    """Rank 0: JSON lines, optional TensorBoard. Others: nothing."""

    def __init__(self, path: Path | None, tensorboard_dir: Path | None, resume_step: int | None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self.tb = None
        if path is not None and resume_step is not None and path.is_file():
            # Drop lines written after the checkpoint we resume from: the log continues without duplicates.
            kept = [ln for ln in path.read_text().splitlines() if _log_step(ln) <= resume_step]
            ckpt_io.atomic_write_text(path, "".join(ln + "\n" for ln in kept))
        elif path is not None and resume_step is None and path.exists():
            path.unlink()
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning("train.tensorboard is set, but TensorBoard is not installed (pip install tensorboard)")
            else:
                self.tb = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.path is None:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        if self.tb is not None:
            step = record["step"]
            for k, v in _flatten(record).items():
                if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                    self.tb.add_scalar(k.replace(".", "/"), v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _log_step(line: str) -> float:
    """The step of a log line; a line cut short by a kill (or otherwise unreadable) sorts after everything."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Trainer:
    """One training run of ``config`` (see the module docstring). ``fit()`` returns a :class:`TrainResult`.

    ``resume`` (``None``, ``"auto"`` or a checkpoint path) overrides ``config.train.resume``. Under torchrun
    every process constructs a ``Trainer`` and calls ``fit``; the process group is created (and destroyed) here
    unless one exists already.
    """

    def __init__(self, config: TrainConfig, *, resume: str | Path | None = None) -> None:
        self.config = config
        self.resume = str(resume) if resume is not None else config.train.resume
        self.output_dir = Path(config.output_dir)
        self.ckpt_dir = self.output_dir / "checkpoints"

    # -- setup
    def _setup(self) -> None:
        cfg = self.config
        t = cfg.train
        self.dist: DistInfo = init_distributed(t.device)
        self.device = self.dist.device
        world = self.dist.world_size
        if t.batch_size % (world * t.grad_accum_steps):
            raise ConfigError(
                f"train.batch_size: the global batch {t.batch_size} must be divisible by world size {world} x "
                f"grad_accum_steps {t.grad_accum_steps}"
            )
        self.micro_batch = t.batch_size // (world * t.grad_accum_steps)
        if t.precision == "fp16" and self.device.type == "cpu":
            log.warning("fp16 autocast on the CPU is slow and only for testing; use bf16 there")
        self.write = self.dist.is_main and not t.dry_run

        self.model = build_training_model(cfg)
        self.frozen_encoder = None
        if cfg.stage == "student" and cfg.loss.feature_weight > 0:
            # The frozen reference is the encoder as initialised (DINOv2), before any training step.
            self.frozen_encoder = copy.deepcopy(self.model.pretrained).requires_grad_(False).eval().to(self.device)
        self.model.to(self.device)
        if t.activation_checkpointing:
            checkpoint_blocks(self.model.pretrained.blocks)
        self.module = TrainingModule(self.model)
        self.wrapped = wrap_model(
            self.module,
            t.strategy,
            self.dist,
            list(self.model.pretrained.blocks),
            param_dtype=fsdp_param_dtype(cfg),
            reduce_dtype=torch.bfloat16 if t.fsdp_reduce_dtype == "bf16" else torch.float32,
        )
        self.runner = torch.compile(self.wrapped) if t.compile else self.wrapped
        self.fsdp = self.dist.is_distributed and t.strategy == "fsdp"

        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self._make_loss()

        self.step = 0
        self.micro_batches = 0
        self.data_cursors: list | None = None
        self.best: dict[str, Any] | None = None
        self.last_val: dict[str, Any] | None = None
        self.skipped_steps = 0
        resume_state = self._find_resume()
        if resume_state is not None:
            self._restore(resume_state)
        self.val_set = build_val_dataset(cfg)
        self.batches = build_train_batches(
            cfg,
            micro_batch=self.micro_batch,
            rank=self.dist.rank,
            world_size=world,
            pin_memory=self.device.type == "cuda",
            position=self.micro_batches,
            cursors=self.data_cursors,
        )
        if resume_state is not None:
            self._restore_rng(resume_state)
        if self.write:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.output_dir / "config.yaml")
        self.logger = _Logger(
            self.output_dir / "train_log.jsonl" if self.write else None,
            self.output_dir / "tensorboard" if (self.write and t.tensorboard) else None,
            self.step if resume_state is not None else None,
        )

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.config.optim
        encoder, decoder = [], []
        for name, p in self.module.named_parameters():
            if p.requires_grad:
                (encoder if name.startswith("model.pretrained.") else decoder).append(p)
        groups = [
            {"params": encoder, "lr": o.lr_encoder, "name": "encoder"},
            {"params": decoder, "lr": o.lr_decoder, "name": "decoder"},
        ]
        kwargs = {"betas": tuple(o.betas), "eps": o.eps, "weight_decay": o.weight_decay}
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        return cls(groups, **kwargs)

    def _lr_factor(self, step: int) -> float:
        o, total = self.config.optim, self.config.train.max_steps
        factor = 1.0
        if o.schedule == "poly":
            factor = max(0.0, 1.0 - step / total) ** o.poly_power
        if o.warmup_steps and step < o.warmup_steps:
            factor *= (step + 1) / o.warmup_steps
        return factor

    def _make_loss(self) -> None:
        from .losses import DepthLoss, DepthLossConfig

        lo = self.config.loss
        self.criterion = None
        if self.config.stage != "metric":
            self.criterion = DepthLoss(
                DepthLossConfig(
                    form=lo.form,
                    gradient_weight=lo.gradient_weight,
                    scales=lo.scales,
                    trim=lo.trim,
                    normalize_target=lo.normalize_target,
                    reduction=lo.reduction,
                )
            )

    # -- resume
    def _find_resume(self) -> dict[str, Any] | None:
        if self.resume is None:
            return None
        if self.resume == "auto":
            path = ckpt_io.latest_checkpoint(self.ckpt_dir)
            if path is None:
                log.info("resume=auto: no checkpoint in %s, starting from scratch", self.ckpt_dir)
                return None
        else:
            path = Path(self.resume)
        try:
            state = ckpt_io.load_training_checkpoint(path)
        except CheckpointError as e:
            raise ConfigError(f"train.resume: {e}") from None
        cfg = self.config
        if state.get("encoder") != cfg.model.encoder or state.get("stage") != cfg.stage:
            raise ConfigError(
                f"train.resume: {path} is a {state.get('stage')!r} checkpoint of encoder {state.get('encoder')!r}; "
                f"this run is stage {cfg.stage!r} with encoder {cfg.model.encoder!r}"
            )
        old_batch = state.get("config", {}).get("train", {}).get("batch_size")
        if old_batch is not None and old_batch != cfg.train.batch_size:
            log.warning("resuming with batch_size %s (the checkpoint used %s)", cfg.train.batch_size, old_batch)
        log.info("resuming from %s (step %d)", path, state["step"])
        state["__path__"] = str(path)
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, strict=True)
        set_model_state_dict(self.module, {f"model.{k}": v for k, v in state["model"].items()}, options=options)
        set_optimizer_state_dict(self.module, self.optimizer, state["optimizer"], options=options)
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best = state.get("best")
        self.last_val = state.get("val")
        self.skipped_steps = int(state.get("skipped_steps", 0))
        ranks = state.get("ranks") or []
        if len(ranks) == self.dist.world_size:
            self.micro_batches = int(ranks[self.dist.rank]["micro_batches"])
            self.data_cursors = ranks[self.dist.rank].get("cursors")
        else:
            # Another world size: continue at the same global sample count, in a fresh order.
            self.micro_batches = self.step * self.config.train.grad_accum_steps
            log.warning(
                "the checkpoint was written by %d rank(s), this run has %d: the data order and RNG streams restart "
                "at the same step (not bitwise identical to an uninterrupted run)",
                len(ranks),
                self.dist.world_size,
            )

    def _restore_rng(self, state: dict[str, Any]) -> None:
        ranks = state.get("ranks") or []
        if len(ranks) == self.dist.world_size:
            ckpt_io.set_rng_state(ranks[self.dist.rank]["rng"])
            before = ranks[self.dist.rank].get("num_workers")
            now = getattr(self.batches, "num_workers", None)
            if isinstance(self.batches, StreamBatches) and before is not None and before != now:
                # Shards are split over ranks x workers: another worker count reads them in another order.
                log.warning(
                    "resuming streamed shards with %s DataLoader workers (the checkpoint used %s): the sample "
                    "order differs from an uninterrupted run",
                    now,
                    before,
                )

    # -- checkpoints
    def _state_dicts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_sd = get_model_state_dict(self.module, options=options)
        optim_sd = get_optimizer_state_dict(self.module, self.optimizer, options=options)
        model_sd = {k[len("model.") :]: v.detach().cpu() for k, v in model_sd.items()}
        return model_sd, optim_sd

    def _checkpoint(self, model_sd: dict[str, torch.Tensor], optim_sd: dict[str, Any], ranks: list) -> dict[str, Any]:
        cfg = self.config
        return {
            "format": ckpt_io.CHECKPOINT_FORMAT,
            "model": model_sd,
            "encoder": cfg.model.encoder,
            "max_depth": cfg.model.max_depth,
            "stage": cfg.stage,
            "step": self.step,
            "optimizer": optim_sd,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "ranks": ranks,
            "world_size": self.dist.world_size,
            "config": config_to_dict(cfg),
            "best": self.best,
            "val": self.last_val,
            "skipped_steps": self.skipped_steps,
        }

    def save_checkpoint(self, *, best: bool = False, final: bool = False) -> Path | None:
        """Write ``checkpoints/step_N.pt`` (and ``best.pt`` / ``final.pt`` when asked). Every rank must call it
        (state is gathered); rank 0 writes. Returns the step checkpoint's path on rank 0."""
        if self.config.train.dry_run:
            return None
        model_sd, optim_sd = self._state_dicts()
        rank_state = {
            "rng": ckpt_io.get_rng_state(),
            "micro_batches": self.batches.position,
            "num_workers": getattr(self.batches, "num_workers", self.config.data.num_workers),
            "cursors": getattr(self.batches, "cursors", None),
        }
        ranks = all_gather_objects(rank_state)
        path = None
        if self.dist.is_main:
            state = self._checkpoint(model_sd, optim_sd, ranks)
            path = ckpt_io.atomic_torch_save(state, ckpt_io.checkpoint_path(self.ckpt_dir, self.step))
            ckpt_io.prune_checkpoints(self.ckpt_dir, self.config.train.keep_last)
            if best:
                ckpt_io.atomic_torch_save(ckpt_io.slim_checkpoint(state), self.output_dir / "best.pt")
            if final:
                ckpt_io.atomic_torch_save(ckpt_io.slim_checkpoint(state), self.output_dir / "final.pt")
            log.info("saved %s", path)
        barrier()
        return path

    # -- loop pieces
    def _loss(
        self,
        pred: torch.Tensor,
        features: torch.Tensor | None,
        batch: dict[str, Any],
        regions: torch.Tensor | None,
        totals: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """This micro-batch's share of the global batch's loss (``totals``: the global denominators)."""
        cfg = self.config
        pred = pred.float()
        mask = batch["valid_mask"]
        if cfg.stage == "metric":
            from .losses import silog_loss

            loss = silog_loss(
                pred,
                batch["depth_m"],
                mask,
                lambd=cfg.loss.silog_lambda,
                min_depth=cfg.loss.min_depth,
                max_depth=cfg.model.max_depth,
                reduction=cfg.loss.reduction,
                totals=totals["silog"],
            )
            return {"loss": loss, "silog": loss.detach()}
        terms = self.criterion.compute(pred, batch["disparity"], mask, regions, totals["depth"])
        if features is not None and self.frozen_encoder is not None:
            from .losses import feature_alignment_loss

            with torch.no_grad(), _autocast(self.device, cfg.train.precision):
                reference = self.frozen_encoder.get_intermediate_layers(
                    batch["image"], (self.model.intermediate_layer_idx[-1],)
                )[0]
            feat = feature_alignment_loss(
                features.float(), reference.float(), threshold=cfg.loss.feature_threshold, total=totals["tokens"]
            )
            terms["loss"] = terms["loss"] + cfg.loss.feature_weight * feat
            terms["feat"] = feat.detach()
        return terms

    def _silog_totals(self, pred: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        from .losses import silog_totals

        cfg = self.config
        return silog_totals(
            pred.float(),
            batch["depth_m"],
            batch["valid_mask"],
            min_depth=cfg.loss.min_depth,
            max_depth=cfg.model.max_depth,
            reduction=cfg.loss.reduction,
        )

    def _global_totals(self, window: list[tuple[dict[str, Any], Any]]) -> dict[str, torch.Tensor] | None:
        """The loss denominators of the global batch (all ranks, all micro-batches of this step), all-reduced.

        Relative stages: from the labels alone (:meth:`DepthLoss.totals`) and the token count. The metric stage's
        SiLog needs the predictions' pooled statistics: with accumulation, a no-grad forward pass over the window
        gets them first (one extra forward per step, the price of an exact square root over the global batch);
        without accumulation they are taken from the training forward itself (``None`` here).
        """
        cfg = self.config
        if cfg.stage == "metric":
            if cfg.train.grad_accum_steps == 1:
                return None
            parts = []
            with torch.no_grad():
                for batch, _ in window:
                    with _autocast(self.device, cfg.train.precision):
                        pred, _ = self.runner(batch["image"], False)
                    parts.append(self._silog_totals(pred, batch))
            return {"silog": all_reduce_sum(torch.stack(parts).sum(0).to(self.device))}
        local = torch.stack([self.criterion.totals(b["disparity"], b["valid_mask"], r) for b, r in window]).sum(0)
        tokens = sum(
            b["image"].shape[0] * (b["image"].shape[-2] // PATCH_SIZE) * (b["image"].shape[-1] // PATCH_SIZE)
            for b, _ in window
        )
        packed = all_reduce_sum(torch.cat([local, local.new_tensor([tokens])]).to(self.device))
        return {"depth": packed[:-1], "tokens": packed[-1]}

    def _batch_iter(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches:
            yield {
                k: (v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                for k, v in batch.items()
            }

    def _micro_batches(self, data: Iterator[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
        """The step's ``grad_accum_steps`` micro-batches of this rank, CutMix applied: ``(batch, regions)``."""
        cfg = self.config
        window = []
        for micro in range(cfg.train.grad_accum_steps):
            batch = next(data)
            regions = None
            if cfg.data.cutmix > 0 and cfg.stage != "metric":
                from ..data.transforms import cutmix_batch

                g = torch.Generator(device="cpu")
                g.manual_seed(mix_seed(cfg.seed, self.step, micro, self.dist.rank, 0xC07))
                batch = cutmix_batch(batch, p=cfg.data.cutmix, generator=g)
                regions = batch["cutmix_region"]
            window.append((batch, regions))
        return window

    def _train_step(self, data: Iterator[dict[str, Any]]) -> dict[str, float]:
        """One optimiser step. Every loss term is normalised by the *global* batch's denominators (all ranks, all
        micro-batches), so each micro-batch's backward adds its exact share of the global loss's gradient; the
        factor ``world_size`` undoes DDP's / FSDP's averaging of the ranks' gradients. The result equals one
        process with the whole batch in one micro-batch, within float rounding."""
        cfg = self.config
        t = cfg.train
        accum = t.grad_accum_steps
        world = self.dist.world_size
        sums: dict[str, torch.Tensor] = {}
        finite = True
        window = self._micro_batches(data)
        totals = self._global_totals(window)
        for micro, (batch, regions) in enumerate(window):
            sync = micro == accum - 1 or not self.dist.is_distributed or self.fsdp
            context = contextlib.nullcontext() if sync else self.wrapped.no_sync()
            if self.fsdp:
                self.wrapped.set_requires_gradient_sync(micro == accum - 1)
            with context:
                with _autocast(self.device, t.precision):
                    pred, features = self.runner(batch["image"], self.frozen_encoder is not None)
                if totals is None:  # metric stage without accumulation: SiLog's statistics from this forward
                    totals = {"silog": all_reduce_sum(self._silog_totals(pred.detach(), batch).to(self.device))}
                terms = self._loss(pred, features, batch, regions, totals)
                loss = terms["loss"]
                finite = finite and bool(torch.isfinite(loss.detach()))
                self.scaler.scale(loss * world).backward()
            for k, v in terms.items():
                # Shares of the global loss: summed over micro-batches here, averaged over ranks when logged.
                sums[k] = sums.get(k, 0.0) + v.detach().float() * world
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.module.parameters() if p.requires_grad]
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        grad_norm = float(norm)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the step itself on inf / NaN gradients
            self.scaler.update()
            ok = finite
        else:
            ok = finite and math.isfinite(grad_norm)
            if ok:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # A skipped update (scaler or non-finite step) still advances the schedule: it counts steps.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()
        self.step += 1
        if not ok:
            self.skipped_steps += 1
            self._bad_in_a_row += 1
            log.warning("step %d: non-finite loss or gradient, update skipped", self.step)
            if self._bad_in_a_row >= t.max_bad_steps:
                raise TrainingError(
                    f"{self._bad_in_a_row} consecutive steps with a non-finite loss or gradient (last at step "
                    f"{self.step}); lower the learning rates, use bf16 instead of fp16, or check the data"
                )
        else:
            self._bad_in_a_row = 0
        out = {k: float(v) for k, v in sums.items()}
        out["grad_norm"] = grad_norm
        return out

    def validate(self) -> dict[str, Any] | None:
        """Score the held-out set (every rank must call it); None without ``data.val``."""
        if self.val_set is None:
            return None
        cfg = self.config
        v = cfg.val
        limit = 1 if cfg.train.dry_run else v.limit
        forward = (lambda x: self.wrapped(x, False)) if self.fsdp else (lambda x: self.module(x, False))
        return evaluate_model(
            self.module,
            self.val_set,
            input_size=v.input_size,
            alignment=v.alignment,
            min_depth=v.min_depth,
            max_depth=v.max_depth,
            limit=limit,
            precision=cfg.train.precision,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            forward=forward,
        )

    def _is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        name = self.config.val.metric
        return value > self.best["value"] if name in HIGHER_IS_BETTER else value < self.best["value"]

    # -- the loop
    def fit(self) -> TrainResult:
        try:
            self._setup()
            return self._fit()
        finally:
            if hasattr(self, "logger"):
                self.logger.close()
            if hasattr(self, "dist"):
                cleanup_distributed(self.dist)

    def _fit(self) -> TrainResult:
        cfg = self.config
        t = cfg.train
        max_steps = min(t.max_steps, self.step + 1) if t.dry_run else t.max_steps
        self._bad_in_a_row = 0
        self.module.train()
        progress = None
        if self.dist.is_main and t.progress:
            from tqdm.auto import tqdm

            progress = tqdm(
                total=max_steps, initial=self.step, desc=f"train {cfg.stage}", unit="step", dynamic_ncols=True
            )
        data = self._batch_iter()
        samples_per_step = t.batch_size
        window_start, window_steps = time.perf_counter(), 0
        best_path = self.output_dir / "best.pt" if self.write else None
        if best_path is not None and not best_path.exists():
            best_path = None
        try:
            while self.step < max_steps:
                terms = self._train_step(data)
                window_steps += 1
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{terms['loss']:.4f}")
                last = self.step == max_steps
                if self.step % t.log_every == 0 or last:
                    terms = all_reduce_mean(terms, self.device)
                    elapsed = time.perf_counter() - window_start
                    record = {
                        "step": self.step,
                        **{k: round(v, 6) for k, v in terms.items()},
                        "lr_encoder": self.optimizer.param_groups[0]["lr"],
                        "lr_decoder": self.optimizer.param_groups[1]["lr"],
                        "samples_per_s": round(window_steps * samples_per_step / max(elapsed, 1e-9), 2),
                        "skipped_steps": self.skipped_steps,
                        "time": round(time.time(), 3),
                    }
                    if self.scaler.is_enabled():
                        record["loss_scale"] = float(self.scaler.get_scale())
                    self.logger.write(record)
                    window_start, window_steps = time.perf_counter(), 0
                validate_now = last or (t.val_every and self.step % t.val_every == 0)
                improved = False
                if validate_now and self.val_set is not None:
                    self.last_val = self.validate()
                    value = self.last_val["metrics"][cfg.val.metric]
                    improved = self._is_better(value)
                    if improved:
                        self.best = {"metric": cfg.val.metric, "value": value, "step": self.step}
                    self.logger.write({"step": self.step, "val": self.last_val["metrics"], "best": self.best})
                    if progress is not None:
                        progress.set_postfix(loss=f"{terms['loss']:.4f}", **{cfg.val.metric: f"{value:.4f}"})
                if last or self.step % t.ckpt_every == 0 or improved:
                    self.save_checkpoint(best=improved, final=last)
                    if improved and self.write:
                        best_path = self.output_dir / "best.pt"
        finally:
            if progress is not None:
                progress.close()
        final = self.output_dir / "final.pt" if self.write and self.step == max_steps else None
        return TrainResult(
            output_dir=self.output_dir,
            step=self.step,
            final_checkpoint=final,
            best_checkpoint=best_path,
            best=self.best,
            last_val=self.last_val,
            skipped_steps=self.skipped_steps,
            history=list(self.logger.records),
        )


def train(config: TrainConfig, *, resume: str | Path | None = None) -> TrainResult:
    """Run one training job (see :class:`Trainer`)."""
    return Trainer(config, resume=resume).fit()
