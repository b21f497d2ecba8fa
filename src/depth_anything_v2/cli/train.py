"""``depth-anything train``: the teacher, student and metric stages from one config file.

    depth-anything train --config configs/train/teacher_vitg.yaml
    depth-anything train --config configs/train/student_vits.yaml train.batch_size=32 optim.lr_decoder=1e-4
    torchrun --nproc_per_node 8 -m depth_anything_v2.cli.train --config configs/train/student_vitl.yaml
    depth-anything train --config run.yaml --resume auto          # continue from the newest checkpoint

Exit codes: 0 finished, 1 training failed (e.g. persistent non-finite losses), 2 configuration or usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import EXIT_FAILURES, EXIT_OK, UsageError

logger = logging.getLogger(__name__)

EPILOG = """\
overrides:
  key=value pairs after the options, dotted into the config's sections; values are YAML:
    train.max_steps=1000  optim.lr_encoder=1e-5  model.init=weights/dinov2_vits14_pretrain.pth
    data.crop_size=[518,518]  'data.train=[{type: synthetic, n: 64}]'  model.max_depth=null

stages:
  teacher  synthetic data, disparity, L_ssi + 2 L_gm
  student  pseudo-label shards, trimmed L_ssi + 2 L_gm + feature alignment (frozen initial encoder)
  metric   metric depth, SiLog, encoder from a relative checkpoint (model.init), model.max_depth required

outputs (OUTPUT_DIR from the config):
  config.yaml (resolved), train_log.jsonl, checkpoints/step_N.pt (full state, resumable),
  best.pt (best val.metric), final.pt; best/final load with depth_anything_v2.load_model and
  'depth-anything predict --weights PATH'.

multi-GPU / multi-node (same config; train.batch_size is the global batch):
  torchrun --nproc_per_node 8 -m depth_anything_v2.cli.train --config C
  torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
      -m depth_anything_v2.cli.train --config C train.strategy=fsdp
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a teacher, a student or a metric model from a config file",
        description="Train Depth Anything V2 models: teacher (synthetic), student (pseudo labels), metric fine-tuning.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML, JSON or TOML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (see below)")
    p.add_argument("--resume", metavar="PATH|auto", help="resume from a checkpoint, or 'auto' for the newest one")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the per-GPU memory estimate, then run one step and one validation sample, writing nothing",
    )
    p.add_argument(
        "--estimate-memory",
        type=int,
        metavar="GPUS",
        help="print the per-GPU memory estimate on GPUS GPUs (model built on the meta device) and exit",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.config import ConfigError, config_to_dict, load_config
    from ..training.trainer import TrainingError, train
    from ..weights.checkpoints import CheckpointError

    overrides = list(args.overrides)
    if args.resume is not None:
        overrides.append(f"train.resume={args.resume}")
    if args.dry_run:
        overrides.append("train.dry_run=true")
    try:
        config = load_config(args.config, overrides)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=2))
        return EXIT_OK
    if args.estimate_memory is not None or args.dry_run:
        from ..distributed import env_rank
        from ..training.memory import estimate_memory

        rank, world, _ = env_rank()
        try:
            estimate = estimate_memory(config, args.estimate_memory or world)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if rank == 0:
            print("\n".join(estimate.lines()))
        if args.estimate_memory is not None:
            return EXIT_OK
    try:
        result = train(config)
    except (ConfigError, CheckpointError) as e:
        raise UsageError(str(e)) from None
    except TrainingError as e:
        print(f"depth-anything train: training failed: {e}", file=sys.stderr)
        return EXIT_FAILURES
    from ..distributed import env_rank

    if env_rank()[0] == 0:
        print(f"finished {config.stage} training at step {result.step} in {result.output_dir}")
        if result.best is not None:
            print(f"best {result.best['metric']} = {result.best['value']:.4f} at step {result.best['step']}")
        if result.final_checkpoint is not None:
            print(f"final weights: {result.final_checkpoint}")
        if result.skipped_steps:
            print(f"warning: {result.skipped_steps} step(s) skipped for non-finite losses/gradients", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m depth_anything_v2.cli.train ...`` (for torchrun): the ``train`` command."""
    from . import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
